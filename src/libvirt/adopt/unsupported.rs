//! What `adopt` refuses: everything in a network that virtmasq would not serve, or could not
//! give back exactly with `release`, one line each.

use roxmltree::Node;

use super::{child, is_libvirt, DNSMASQ_NAMESPACE};
use crate::libvirt::xml::{HostXml, IpFamily, NetworkXml};
use crate::model::Duid;

/// Everything in the network that virtmasq would not serve, one line each.
pub(super) fn unsupported(root: Node, net: &NetworkXml) -> Vec<String> {
    let mut out = unsupported_ips(net);
    out.extend(unsupported_dns(root));
    // The saved copies are re-indented, which only line breaks between tags survive (libvirt
    // writes a line break in a value as `&#10;`, never as it is).
    let saved = child(root, "dns").into_iter().chain(
        root.children()
            .filter(|n| is_libvirt(n, "ip"))
            .flat_map(|ip| {
                ip.children()
                    .filter(|n| is_libvirt(n, "dhcp") || is_libvirt(n, "tftp"))
            }),
    );
    for el in saved {
        let text = &root.document().input_text()[el.range()];
        let formatting =
            |w: &[&str]| w[0].trim_end().ends_with('>') && w[1].trim_start().starts_with('<');
        let lines: Vec<&str> = text.split('\n').collect();
        if !lines.windows(2).all(formatting) || (lines.len() > 1 && text.contains("<!")) {
            out.push(format!(
                "<{}> has a line break inside a tag, value, comment or text; write it as \
                 libvirt does (net-dumpxml)",
                el.tag_name().name()
            ));
        }
    }
    // adopt removes one <dhcp> per <ip> (libvirt reads only the first): a second one would
    // stay behind, and libvirt would go on serving the network.
    for ip in root.children().filter(|n| is_libvirt(n, "ip")) {
        for name in ["dhcp", "tftp"] {
            if ip.children().filter(|n| is_libvirt(n, name)).count() > 1 {
                let address = ip.attribute("address").unwrap_or_default();
                out.push(format!(
                    "<ip address='{address}'> has more than one <{name}>"
                ));
            }
        }
    }
    // release gives each saved <dhcp> back to the <ip> of its address, which must be one.
    let addresses: Vec<&str> = root
        .children()
        .filter(|n| is_libvirt(n, "ip") && child(*n, "dhcp").is_some())
        .filter_map(|ip| ip.attribute("address"))
        .collect();
    if let Some(twice) = addresses
        .iter()
        .enumerate()
        .find(|(i, a)| addresses[..*i].contains(a))
    {
        out.push(format!(
            "<ip address='{}'> with a <dhcp> appears twice",
            twice.1
        ));
    }
    // Raw options are served in the network's own dnsmasq, except those that would take it
    // away from virtmasq.
    let raw = |n: &Node| n.is_element() && n.tag_name().namespace() == Some(DNSMASQ_NAMESPACE);
    for options in root.children().filter(|n| raw(n)) {
        for option in options.children().filter(|n| raw(n)) {
            match option.attribute("value") {
                Some(v) => {
                    if let Err(e) = v.parse::<crate::model::RawOption>() {
                        out.push(format!(
                            "<dnsmasq:option value='{}'>: {}",
                            e.input, e.reason
                        ));
                    }
                }
                None => out.push("<dnsmasq:option> without a value".into()),
            }
        }
    }
    out
}

/// What the `<ip>` elements hold that virtmasq would not serve.
fn unsupported_ips(net: &NetworkXml) -> Vec<String> {
    let mut out = Vec::new();
    for ip in &net.ips {
        let at = format!("<ip address='{}'>", ip.address);
        let Some(dhcp) = &ip.dhcp else { continue };
        for h in &dhcp.hosts {
            let who = h
                .mac
                .map_or_else(|| h.id.clone().unwrap_or_default(), |m| m.to_string());
            let reason = match ip.family {
                IpFamily::V4 => host4_refusal(h),
                IpFamily::V6 => host6_refusal(h),
            };
            if let Some(reason) = reason {
                out.push(format!("{at}: <host> {who}: {reason}"));
            }
        }
    }
    out
}

/// An IPv4 host is carried over by its MAC, with its own lease.
fn host4_refusal(h: &HostXml) -> Option<&'static str> {
    if h.id.is_some() {
        return Some("a client id (DUID) is not carried over");
    }
    h.mac
        .is_none()
        .then_some("an IPv4 host without a mac is not carried over")
}

/// A DHCPv6 host is carried over with its DUID, name, address and lease; libvirt writes its
/// `id` into dnsmasq as is, and dnsmasq reads it as bytes only with colons between them.
fn host6_refusal(h: &HostXml) -> Option<&'static str> {
    if h.ip.is_none() {
        return Some("a DHCPv6 host without an ip is not carried over");
    }
    let id_ok = h.id.as_deref().is_none_or(|id| id.parse::<Duid>().is_ok());
    (!id_ok).then_some("its id is not a DUID of colon-separated bytes (00:01:...)")
}

/// What `<dns>` and `<domain>` hold beyond what virtmasq serves (DNS on or off, its records
/// and forwarders, a domain).
fn unsupported_dns(root: Node) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(dns) = child(root, "dns") {
        let served = ["enable", "forwardPlainNames"];
        if let Some(a) = dns.attributes().find(|a| !served.contains(&a.name())) {
            out.push(format!(
                "<dns {}='{}'> is not carried over",
                a.name(),
                a.value()
            ));
        }
    }
    if let Some(d) = child(root, "domain") {
        if let Some(a) = d
            .attributes()
            .find(|a| !["name", "localOnly", "register"].contains(&a.name()))
        {
            out.push(format!(
                "<domain {}='{}'> is not carried over",
                a.name(),
                a.value()
            ));
        }
    }
    out
}
