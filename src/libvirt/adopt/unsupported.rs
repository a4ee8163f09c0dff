//! What `adopt` refuses: everything in a network that virtmasq would not serve, or could not
//! give back exactly with `release`, one line each.

use roxmltree::Node;

use super::{child, is_libvirt, DNSMASQ_NAMESPACE};
use crate::libvirt::xml::{IpFamily, NetworkXml};

/// Everything in the network that virtmasq would not serve, one line each.
pub(super) fn unsupported(root: Node, net: &NetworkXml) -> Vec<String> {
    let mut out = unsupported_ips(net);
    out.extend(unsupported_dns(root));
    // The saved copies are re-indented, which only line breaks between tags survive (libvirt
    // writes a line break in a value as `&#10;`, never as it is).
    let saved = child(root, "dns").into_iter().chain(
        root.children()
            .filter(|n| is_libvirt(n, "ip"))
            .filter_map(|ip| child(ip, "dhcp")),
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
        if ip.children().filter(|n| is_libvirt(n, "dhcp")).count() > 1 {
            let address = ip.attribute("address").unwrap_or_default();
            out.push(format!("<ip address='{address}'> has more than one <dhcp>"));
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
        if ip.family == IpFamily::V6 {
            out.push(format!(
                "{at}: IPv6 (DHCPv6 and router advertisements) is not served by virtmasq yet"
            ));
            continue;
        }
        if ip.tftp_root.is_some() {
            out.push(format!("{at}: <tftp> is not carried over"));
        }
        let Some(dhcp) = &ip.dhcp else { continue };
        if dhcp.bootp.is_some() {
            out.push(format!("{at}: <bootp> (PXE boot file) is not carried over"));
        }
        for h in &dhcp.hosts {
            let who = h
                .mac
                .map_or_else(|| h.id.clone().unwrap_or_default(), |m| m.to_string());
            if h.mac.is_none() || h.id.is_some() {
                out.push(format!(
                    "{at}: <host> {who}: a client id (DUID) is not carried over"
                ));
            }
        }
    }
    out
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
