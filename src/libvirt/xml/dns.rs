//! libvirt's `<dns>` records and forwarders, read for a network virtmasq serves. For an adopted
//! network they are in the copy `adopt` saved in `<metadata>` (its `<dns>` is then
//! `enable='no'`, so that libvirt starts no dnsmasq).

use roxmltree::Node;

use super::super::read::{child, is_libvirt, yes_no, Cx, XmlError, SAVED_ELEMENT, SAVED_NAMESPACE};
use crate::model::{DnsHost, DnsName, DnsRecords, Forwarder, SrvRecord, TxtRecord};

/// The `<dns>` whose records are served: the saved copy of an adopted network, else the
/// network's own.
pub(in crate::libvirt) fn served_dns<'a, 'i>(net: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    let saved = child(net, "metadata")
        .into_iter()
        .flat_map(|m| m.children())
        .find(|n| {
            n.is_element()
                && n.tag_name().namespace() == Some(SAVED_NAMESPACE)
                && n.tag_name().name() == SAVED_ELEMENT
        })
        .and_then(|s| child(s, "dns"));
    saved.or_else(|| child(net, "dns"))
}

/// libvirt's namespace for raw dnsmasq options (`<dnsmasq:options>`).
pub(in crate::libvirt) const DNSMASQ_NAMESPACE: &str =
    "http://libvirt.org/schemas/network/dnsmasq/1.0";

/// The values of `<dnsmasq:options><dnsmasq:option value=...>`, in order.
pub(in crate::libvirt) fn raw_options(net: Node) -> Vec<String> {
    let ours = |n: &Node, name: &str| {
        n.is_element()
            && n.tag_name().namespace() == Some(DNSMASQ_NAMESPACE)
            && n.tag_name().name() == name
    };
    net.children()
        .filter(|n| ours(n, "options"))
        .flat_map(|o| o.children())
        .filter(|n| ours(n, "option"))
        .filter_map(|n| n.attribute("value").map(str::to_owned))
        .collect()
}

/// The reverse zones of the `<ip localPtr='yes'>` elements of `net` (`ips` are their parsed
/// forms, in order): answered locally only, as libvirt does. libvirt can make a zone only for
/// a prefix on an octet (IPv4) or nibble (IPv6) boundary, and so can virtmasq.
pub(in crate::libvirt) fn local_ptr_zones(
    cx: &Cx,
    net: Node,
    ips: &[super::IpXml],
) -> Result<Vec<DnsName>, XmlError> {
    let mut out = Vec::new();
    let nodes = net.children().filter(|n| is_libvirt(n, "ip"));
    for (node, ip) in nodes.zip(ips) {
        if yes_no(cx, node, "localPtr")? != Some(true) {
            continue;
        }
        let zone = ptr_zone(ip.address, ip.prefix).ok_or_else(|| {
            cx.value(
                format!(
                    "<ip address='{}' prefix='{}' localPtr='yes'>",
                    ip.address, ip.prefix
                ),
                "a reverse zone needs a prefix on an octet (IPv4) or nibble (IPv6) boundary",
            )
        })?;
        out.push(zone);
    }
    Ok(out)
}

/// The reverse (PTR) zone of `addr`/`prefix`, if the prefix falls on a label boundary.
fn ptr_zone(addr: std::net::IpAddr, prefix: u8) -> Option<DnsName> {
    let text = match addr {
        std::net::IpAddr::V4(a) if prefix % 8 == 0 && prefix > 0 => {
            let labels: Vec<String> = a.octets()[..usize::from(prefix / 8)]
                .iter()
                .rev()
                .map(u8::to_string)
                .collect();
            format!("{}.in-addr.arpa", labels.join("."))
        }
        std::net::IpAddr::V6(a) if prefix % 4 == 0 && prefix > 0 => {
            let nibbles: Vec<String> = a
                .octets()
                .iter()
                .flat_map(|b| [b >> 4, b & 0xf])
                .take(usize::from(prefix / 4))
                .map(|n| format!("{n:x}"))
                .collect();
            let rev: Vec<String> = nibbles.into_iter().rev().collect();
            format!("{}.ip6.arpa", rev.join("."))
        }
        _ => return None,
    };
    text.parse().ok()
}

/// The `<bootp>` served: from the IPv4 `<dhcp>` copies `adopt` saved in `<metadata>`, else from
/// the network's own IPv4 `<dhcp>` (`ips`, parsed).
pub(in crate::libvirt) fn served_bootp(
    cx: &Cx,
    net: Node,
    ips: &[super::IpXml],
) -> Result<Option<super::BootpXml>, XmlError> {
    let saved = saved(net)
        .into_iter()
        .flat_map(|s| s.children())
        .filter(|n| is_libvirt(n, "ip"))
        .filter(|ip| {
            ip.attribute("address")
                .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                .is_some_and(|a| a.is_ipv4())
        })
        .filter_map(|ip| child(ip, "dhcp"));
    for dhcp in saved {
        let parsed = super::parse_dhcp(cx, dhcp, super::IpFamily::V4)?;
        if parsed.bootp.is_some() {
            return Ok(parsed.bootp);
        }
    }
    let own = ips
        .iter()
        .filter(|ip| ip.family == super::IpFamily::V4)
        .find_map(|ip| ip.dhcp.as_ref()?.bootp.clone());
    Ok(own)
}

/// The `<tftp root>` served: from the `<ip>` copies `adopt` saved in `<metadata>`, else from the
/// network's own `<ip>` elements (`ips`, parsed).
pub(in crate::libvirt) fn served_tftp(
    cx: &Cx,
    net: Node,
    ips: &[super::IpXml],
) -> Result<Option<std::path::PathBuf>, XmlError> {
    let saved = saved(net)
        .into_iter()
        .flat_map(|s| s.children())
        .filter(|n| is_libvirt(n, "ip"))
        .find_map(|ip| child(ip, "tftp"));
    match saved {
        Some(tftp) => super::tftp_root(cx, tftp).map(Some),
        None => Ok(ips.iter().find_map(|ip| ip.tftp_root.clone())),
    }
}

/// virtmasq's saved copy of what `adopt` took out, if the network has one.
fn saved<'a, 'i>(net: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    child(net, "metadata")?.children().find(|n| {
        n.is_element()
            && n.tag_name().namespace() == Some(SAVED_NAMESPACE)
            && n.tag_name().name() == SAVED_ELEMENT
    })
}

/// The records and forwarders of `dns`.
pub(in crate::libvirt) fn records(cx: &Cx, dns: Node) -> Result<DnsRecords, XmlError> {
    let mut out = DnsRecords {
        forward_plain_names: yes_no(cx, dns, "forwardPlainNames")?,
        ..DnsRecords::default()
    };
    for el in dns.children().filter(Node::is_element) {
        match el.tag_name().name() {
            "host" if is_libvirt(&el, "host") => out.hosts.push(DnsHost {
                ip: cx.required_as(el, "ip", "not an IP address")?,
                names: el
                    .children()
                    .filter(|n| is_libvirt(n, "hostname"))
                    .map(|n| {
                        let text = n.text().unwrap_or_default();
                        text.parse::<DnsName>()
                            .map_err(|e| cx.invalid(format!("<hostname>{text}</hostname>"), e))
                    })
                    .collect::<Result<_, _>>()?,
            }),
            "srv" if is_libvirt(&el, "srv") => out.srv.push(srv(cx, el)?),
            "txt" if is_libvirt(&el, "txt") => out.txt.push(TxtRecord {
                name: cx.parsed_req(el, "name")?,
                value: cx.parsed_req(el, "value")?,
            }),
            "forwarder" if is_libvirt(&el, "forwarder") => out.forwarders.push(Forwarder {
                domain: cx.parsed(el, "domain")?,
                addr: cx.attr_as(el, "addr", "not an IP address")?,
            }),
            _ => {}
        }
    }
    Ok(out)
}

fn srv(cx: &Cx, el: Node) -> Result<SrvRecord, XmlError> {
    let number = |attr: &str| -> Result<u16, XmlError> {
        Ok(cx
            .attr_as(el, attr, "not a number from 0 to 65535")?
            .unwrap_or(0))
    };
    let target = match el.attribute("target") {
        None | Some(".") => None,
        Some(_) => Some(cx.parsed_req(el, "target")?),
    };
    Ok(SrvRecord {
        service: cx.parsed_req(el, "service")?,
        protocol: cx.parsed_req(el, "protocol")?,
        domain: cx.parsed(el, "domain")?,
        target,
        port: number("port")?,
        priority: number("priority")?,
        weight: number("weight")?,
    })
}
