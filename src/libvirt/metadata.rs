//! virtmasq's XML namespace in a libvirt network's `<metadata>`: the DHCP intent of a network
//! that libvirt does not serve itself. libvirt keeps any namespaced element there (one per
//! namespace) and hands it back in `net-dumpxml` and the hook's `<hookData>`; libvirt >= 9.7 can
//! also set it through `virNetworkSetMetadata`.
//!
//! ```xml
//! <virtmasq:dhcp xmlns:virtmasq="http://virtmasq.org/xmlns/network/1.0" dns="yes">
//!   <virtmasq:range start="10.77.0.100" end="10.77.0.150" lease="1h"/>
//!   <virtmasq:host mac="52:54:00:aa:bb:cc" ip="10.77.0.10" name="node1"/>
//!   <virtmasq:range start="fd00:77::100" end="fd00:77::1ff" lease="1h"/>
//!   <virtmasq:host id="00:01:00:01:2c:ab:cd:ef:52:54:00:aa:bb:cc" ip="fd00:77::10" lease="2h"/>
//!   <virtmasq:domain name="lab.example"/>
//! </virtmasq:dhcp>
//! ```
//!
//! A range is IPv4 or DHCPv6 by its addresses. A host with an `id` (DUID) or an IPv6 `ip` is a
//! DHCPv6 host (found by `id`, `mac` or `name`, with an optional `lease`); the others are IPv4
//! hosts found by `mac`.
//!
//! Unlike libvirt's own elements, whose unknowns are ignored, everything inside our element is
//! checked: a misspelt element or attribute is an error, not a silently unserved host.

use roxmltree::Node;

use super::read::{at, tag, yes_no, Cx, XmlError};
pub use super::read::{NAMESPACE, PREFIX};
use std::net::IpAddr;

use crate::model::{
    Dhcp6Range, DhcpIntent, DhcpRange, Ipv4Range, Ipv6Range, LeaseTime, StaticHost, StaticHost6,
};

const NOT_IP: &str = "not an IP address";

/// Reads virtmasq's `<dhcp>` element among the children of a network's `<metadata>`, if there
/// is one. Elements of other namespaces belong to other programs and are skipped.
pub fn find_intent(metadata: Node) -> Result<Option<DhcpIntent>, XmlError> {
    let cx = Cx::new("virtmasq metadata");
    let mut found = None;
    for el in metadata.children().filter(is_ours) {
        if el.tag_name().name() != "dhcp" {
            return Err(cx.value(tag(el), "unknown element (expected virtmasq:dhcp)"));
        }
        if found.is_some() {
            return Err(cx.value(tag(el), "there is more than one"));
        }
        found = Some(parse_intent(el)?);
    }
    Ok(found)
}

/// Parses a `<virtmasq:dhcp>` element into a [`DhcpIntent`]. Addresses are not yet checked
/// against the network's subnets: `ManagedNetwork::new` does that.
pub fn parse_intent(node: Node) -> Result<DhcpIntent, XmlError> {
    let cx = Cx::new("virtmasq metadata");
    if !is_ours(&node) || node.tag_name().name() != "dhcp" {
        return Err(cx.value(
            tag(node),
            format!("expected <dhcp> in namespace {NAMESPACE}"),
        ));
    }
    only_attributes(&cx, node, &["dns"])?;
    let mut intent = DhcpIntent {
        dns: yes_no(&cx, node, "dns")?.unwrap_or(true),
        ..DhcpIntent::default()
    };
    for el in node.children().filter(Node::is_element) {
        let local = el.tag_name().name();
        match local {
            "range" if is_ours(&el) => match range(&cx, el)? {
                Family::V4(r) => intent.ranges.push(r),
                Family::V6(r) => intent.ranges6.push(r),
            },
            "host" if is_ours(&el) => match host(&cx, el)? {
                Family::V4(h) => intent.hosts.push(h),
                Family::V6(h) => intent.hosts6.push(h),
            },
            "domain" if is_ours(&el) => {
                if intent.domain.is_some() {
                    return Err(cx.value(tag(el), "there is more than one"));
                }
                only_attributes(&cx, el, &["name"])?;
                intent.domain = Some(cx.parsed_req(el, "name")?);
            }
            _ => {
                return Err(cx.value(
                    tag(el),
                    "unknown element (expected virtmasq:range, virtmasq:host or virtmasq:domain)",
                ))
            }
        }
    }
    Ok(intent)
}

/// An element of one family or the other.
enum Family<A, B> {
    V4(A),
    V6(B),
}

fn range(cx: &Cx, el: Node) -> Result<Family<DhcpRange, Dhcp6Range>, XmlError> {
    only_attributes(cx, el, &["start", "end", "lease"])?;
    let start: IpAddr = cx.required_as(el, "start", NOT_IP)?;
    let end: IpAddr = cx.required_as(el, "end", NOT_IP)?;
    let lease: Option<LeaseTime> = cx.parsed(el, "lease")?;
    match (start, end) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let range = Ipv4Range::new(a, b).map_err(|e| cx.invalid(tag(el), e))?;
            Ok(Family::V4(DhcpRange { range, lease }))
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let range = Ipv6Range::new(a, b).map_err(|e| cx.invalid(tag(el), e))?;
            Ok(Family::V6(Dhcp6Range { range, lease }))
        }
        _ => Err(cx.value(
            at(el, "end", &end.to_string()),
            "start and end are of different address families",
        )),
    }
}

fn host(cx: &Cx, el: Node) -> Result<Family<StaticHost, StaticHost6>, XmlError> {
    only_attributes(cx, el, &["mac", "id", "ip", "name", "lease"])?;
    let ip: Option<IpAddr> = cx.attr_as(el, "ip", NOT_IP)?;
    let mac = cx.parsed(el, "mac")?;
    let id = cx.parsed(el, "id")?;
    let name = cx.parsed(el, "name")?;
    let lease: Option<LeaseTime> = cx.parsed(el, "lease")?;
    match (ip, &id) {
        (Some(IpAddr::V6(ip)), _) => StaticHost6::new(id, mac, name, ip, lease)
            .map(Family::V6)
            .map_err(|e| cx.invalid(tag(el), e)),
        (None, Some(_)) => Err(cx.value(tag(el), "a DHCPv6 host (with an id) needs an IPv6 ip")),
        (Some(IpAddr::V4(_)), Some(_)) => Err(cx.value(
            tag(el),
            "an id (DUID) is for DHCPv6 hosts, whose ip is IPv6",
        )),
        (ip, None) => {
            cx.parsed_req::<crate::model::MacAddr>(el, "mac")?;
            let ip = match ip {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            };
            let mac = mac.expect("checked above");
            Ok(Family::V4(StaticHost {
                mac,
                ip,
                name,
                lease,
            }))
        }
    }
}

fn is_ours(node: &Node) -> bool {
    node.is_element() && node.tag_name().namespace() == Some(NAMESPACE)
}

/// A misspelt attribute (`leas="1h"`) would otherwise be dropped without a word.
fn only_attributes(cx: &Cx, el: Node, known: &[&str]) -> Result<(), XmlError> {
    match el
        .attributes()
        .find(|a| a.namespace().is_some() || !known.contains(&a.name()))
    {
        Some(a) => Err(cx.value(
            at(el, a.name(), a.value()),
            format!("unknown attribute (expected {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// The `<virtmasq:dhcp>` element for `intent`, with its namespace declaration, ready to be put
/// in a network's `<metadata>`. Every value comes from a validated type, none of which can hold
/// `<`, `&` or a quote, so nothing needs escaping.
pub fn render_intent(intent: &DhcpIntent) -> String {
    let p = PREFIX;
    let dns = if intent.dns { "yes" } else { "no" };
    let mut out = format!("<{p}:dhcp xmlns:{p}=\"{NAMESPACE}\" dns=\"{dns}\">\n");
    for r in &intent.ranges {
        let (start, end) = (r.range.start(), r.range.end());
        out += &format!("  <{p}:range start=\"{start}\" end=\"{end}\"");
        if let Some(lease) = r.lease {
            out += &format!(" lease=\"{}\"", lease_text(lease));
        }
        out += "/>\n";
    }
    for h in &intent.hosts {
        out += &format!("  <{p}:host mac=\"{}\"", h.mac);
        if let Some(ip) = h.ip {
            out += &format!(" ip=\"{ip}\"");
        }
        if let Some(name) = &h.name {
            out += &format!(" name=\"{name}\"");
        }
        if let Some(lease) = h.lease {
            out += &format!(" lease=\"{}\"", lease_text(lease));
        }
        out += "/>\n";
    }
    for r in &intent.ranges6 {
        let (start, end) = (r.range.start(), r.range.end());
        out += &format!("  <{p}:range start=\"{start}\" end=\"{end}\"");
        if let Some(lease) = r.lease {
            out += &format!(" lease=\"{}\"", lease_text(lease));
        }
        out += "/>\n";
    }
    for h in &intent.hosts6 {
        out += &format!("  <{p}:host");
        if let Some(id) = &h.id {
            out += &format!(" id=\"{id}\"");
        }
        if let Some(mac) = h.mac {
            out += &format!(" mac=\"{mac}\"");
        }
        out += &format!(" ip=\"{}\"", h.ip);
        if let Some(name) = &h.name {
            out += &format!(" name=\"{name}\"");
        }
        if let Some(lease) = h.lease {
            out += &format!(" lease=\"{}\"", lease_text(lease));
        }
        out += "/>\n";
    }
    if let Some(domain) = &intent.domain {
        out += &format!("  <{p}:domain name=\"{domain}\"/>\n");
    }
    out += &format!("</{p}:dhcp>");
    out
}

/// The shortest form a person would write: `12h` rather than `43200`.
fn lease_text(lease: LeaseTime) -> String {
    match lease {
        LeaseTime::Seconds(s) if s % 3600 == 0 => format!("{}h", s / 3600),
        LeaseTime::Seconds(s) if s % 60 == 0 => format!("{}m", s / 60),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DnsName;

    fn parse(xml: &str) -> Result<Option<DhcpIntent>, XmlError> {
        let doc = roxmltree::Document::parse(xml).unwrap();
        find_intent(doc.root_element())
    }

    fn meta(inner: &str) -> String {
        let open = format!("<virtmasq:dhcp xmlns:virtmasq=\"{NAMESPACE}\">");
        format!("<metadata>{open}{inner}</virtmasq:dhcp></metadata>")
    }

    fn full_intent() -> DhcpIntent {
        DhcpIntent {
            ranges: vec![
                DhcpRange {
                    range: Ipv4Range::new([10, 77, 0, 100].into(), [10, 77, 0, 150].into())
                        .unwrap(),
                    lease: Some(LeaseTime::Seconds(3600)),
                },
                DhcpRange {
                    range: Ipv4Range::new([10, 77, 0, 200].into(), [10, 77, 0, 210].into())
                        .unwrap(),
                    lease: Some(LeaseTime::Infinite),
                },
                DhcpRange {
                    range: Ipv4Range::new([10, 77, 0, 220].into(), [10, 77, 0, 230].into())
                        .unwrap(),
                    lease: None,
                },
            ],
            hosts: vec![
                StaticHost {
                    mac: "52:54:00:aa:bb:cc".parse().unwrap(),
                    ip: Some([10, 77, 0, 10].into()),
                    name: Some("node1".parse().unwrap()),
                    lease: None,
                },
                StaticHost {
                    mac: "52:54:00:aa:bb:cd".parse().unwrap(),
                    ip: None,
                    name: None,
                    lease: None,
                },
            ],
            ranges6: vec![Dhcp6Range {
                range: Ipv6Range::new(
                    "fd00:77::100".parse().unwrap(),
                    "fd00:77::1ff".parse().unwrap(),
                )
                .unwrap(),
                lease: Some(LeaseTime::Seconds(7200)),
            }],
            hosts6: vec![
                StaticHost6::new(
                    Some("00:01:00:01:2c:ab:cd:ef:52:54:00:aa:bb:cc".parse().unwrap()),
                    None,
                    Some("node6".parse().unwrap()),
                    "fd00:77::10".parse().unwrap(),
                    Some(LeaseTime::Infinite),
                )
                .unwrap(),
                StaticHost6::new(
                    None,
                    Some("52:54:00:aa:bb:ce".parse().unwrap()),
                    None,
                    "fd00:77::11".parse().unwrap(),
                    None,
                )
                .unwrap(),
            ],
            domain: Some("lab.example".parse().unwrap()),
            dns: false,
            pxe: None,
        }
    }

    #[test]
    fn render_then_parse_round_trips() {
        for intent in [full_intent(), DhcpIntent::default()] {
            let rendered = render_intent(&intent);
            let doc = roxmltree::Document::parse(&rendered).unwrap();
            assert_eq!(
                parse_intent(doc.root_element()).unwrap(),
                intent,
                "{rendered}"
            );
            let wrapped = format!("<metadata>{rendered}</metadata>");
            assert_eq!(parse(&wrapped).unwrap(), Some(intent));
        }
    }

    #[test]
    fn renders_the_documented_form() {
        let rendered = render_intent(&full_intent());
        assert!(rendered.starts_with(
            "<virtmasq:dhcp xmlns:virtmasq=\"http://virtmasq.org/xmlns/network/1.0\" dns=\"no\">\n"
        ));
        assert!(rendered.contains(
            "  <virtmasq:range start=\"10.77.0.100\" end=\"10.77.0.150\" lease=\"1h\"/>\n"
        ));
        assert!(rendered.contains("lease=\"infinite\""));
        assert!(rendered.contains(
            "  <virtmasq:host mac=\"52:54:00:aa:bb:cc\" ip=\"10.77.0.10\" name=\"node1\"/>\n"
        ));
        assert!(rendered.contains(
            "  <virtmasq:range start=\"fd00:77::100\" end=\"fd00:77::1ff\" lease=\"2h\"/>\n"
        ));
        assert!(rendered.contains(
            "  <virtmasq:host id=\"00:01:00:01:2c:ab:cd:ef:52:54:00:aa:bb:cc\" ip=\"fd00:77::10\" \
             name=\"node6\" lease=\"infinite\"/>\n"
        ));
        assert!(rendered.ends_with("<virtmasq:domain name=\"lab.example\"/>\n</virtmasq:dhcp>"));
    }

    #[test]
    fn reads_any_prefix_and_defaults() {
        let xml = format!(
            "<metadata><other:x xmlns:other=\"urn:other\"/><vm:dhcp xmlns:vm=\"{NAMESPACE}\">\
             <vm:range start=\"10.0.0.2\" end=\"10.0.0.9\" lease=\"90m\"/></vm:dhcp></metadata>"
        );
        let intent = parse(&xml).unwrap().unwrap();
        assert!(intent.dns, "dns defaults to yes");
        assert_eq!(intent.ranges[0].lease, Some(LeaseTime::Seconds(5400)));
        assert_eq!(
            parse("<metadata><x xmlns=\"urn:a\"/></metadata>").unwrap(),
            None
        );
        let domain = parse(&meta("<virtmasq:domain name=\"a.example\"/>")).unwrap();
        assert_eq!(
            domain.unwrap().domain,
            Some(DnsName::try_from("a.example".to_owned()).unwrap())
        );
    }

    #[test]
    fn refuses_typos_and_bad_values() {
        let two = format!(
            "<metadata><a:dhcp xmlns:a=\"{NAMESPACE}\"/>\
             <b:dhcp xmlns:b=\"{NAMESPACE}\"/></metadata>"
        );
        let cases: [(String, &[&str]); 17] = [
            (
                meta("<virtmasq:host id=\"00:01\"/>"),
                &["a DHCPv6 host (with an id) needs an IPv6 ip"],
            ),
            (
                meta("<virtmasq:host id=\"00:01\" ip=\"10.0.0.5\"/>"),
                &["whose ip is IPv6"],
            ),
            (
                meta("<virtmasq:host id=\"00-01\" ip=\"fd00::5\"/>"),
                &["id='00-01'", "DUID"],
            ),
            (
                meta("<virtmasq:host ip=\"fd00::5\"/>"),
                &["<virtmasq:host>", "id (DUID), a mac or a name"],
            ),
            (
                meta("<virtmasq:rnage start=\"10.0.0.2\" end=\"10.0.0.9\"/>"),
                &["<virtmasq:rnage>", "unknown element"],
            ),
            (
                meta("<range start=\"10.0.0.2\" end=\"10.0.0.9\"/>"),
                &["<range>", "unknown element"],
            ),
            (
                meta("<virtmasq:range start=\"10.0.0.2\" end=\"10.0.0.9\" leas=\"1h\"/>"),
                &["leas='1h'", "unknown attribute"],
            ),
            (
                meta("<virtmasq:range start=\"10.0.0.2\" end=\"10.0.0.9\" lease=\"1x\"/>"),
                &["lease='1x'", "lease time"],
            ),
            (
                meta("<virtmasq:range start=\"10.0.0.9\" end=\"10.0.0.2\"/>"),
                &["start is after", "10.0.0.9-10.0.0.2"],
            ),
            (
                meta("<virtmasq:range start=\"fd00::2\" end=\"10.0.0.9\"/>"),
                &["end='10.0.0.9'", "different address families"],
            ),
            (
                meta("<virtmasq:range end=\"10.0.0.9\"/>"),
                &["'start' attribute is missing"],
            ),
            (
                meta("<virtmasq:host ip=\"10.0.0.5\"/>"),
                &["'mac' attribute is missing"],
            ),
            (
                meta("<virtmasq:host mac=\"zz:00:00:00:00:00\"/>"),
                &["mac='zz:00:00:00:00:00'", "MAC address"],
            ),
            (
                meta("<virtmasq:host mac=\"52:54:00:00:00:01\" name=\"a,b\"/>"),
                &["name='a,b'", "DNS name"],
            ),
            (
                meta("<virtmasq:domain name=\"a\"/><virtmasq:domain name=\"b\"/>"),
                &["more than one"],
            ),
            (
                meta("").replace("<virtmasq:dhcp ", "<virtmasq:dhcp dns=\"maybe\" "),
                &["dns='maybe'", "yes or no"],
            ),
            (two, &["<virtmasq:dhcp>", "more than one"]),
        ];
        for (xml, needles) in cases {
            let err = parse(&xml).unwrap_err();
            let text = format!(
                "{err}: {}",
                std::error::Error::source(&err)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            );
            assert!(text.starts_with("virtmasq metadata: "), "{text}");
            for needle in needles {
                assert!(text.contains(needle), "{xml}\n{text}\nmissing {needle:?}");
            }
        }
    }
}
