//! virtmasq's XML namespace in a libvirt network's `<metadata>`: the DHCP intent of a network
//! that libvirt does not serve itself. libvirt keeps any namespaced element there (one per
//! namespace) and hands it back in `net-dumpxml` and the hook's `<hookData>`; libvirt >= 9.7 can
//! also set it through `virNetworkSetMetadata`.
//!
//! ```xml
//! <virtmasq:dhcp xmlns:virtmasq="http://virtmasq.org/xmlns/network/1.0" dns="yes">
//!   <virtmasq:range start="10.77.0.100" end="10.77.0.150" lease="1h"/>
//!   <virtmasq:host mac="52:54:00:aa:bb:cc" ip="10.77.0.10" name="node1"/>
//!   <virtmasq:domain name="lab.example"/>
//! </virtmasq:dhcp>
//! ```
//!
//! Unlike libvirt's own elements, whose unknowns are ignored, everything inside our element is
//! checked: a misspelt element or attribute is an error, not a silently unserved host.

use roxmltree::Node;

use super::read::{at, tag, yes_no, Cx, XmlError};
pub use super::read::{NAMESPACE, PREFIX};
use crate::model::{DhcpIntent, DhcpRange, Ipv4Range, LeaseTime, StaticHost};

const NOT_IPV4: &str = "not an IPv4 address";

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
            "range" if is_ours(&el) => intent.ranges.push(range(&cx, el)?),
            "host" if is_ours(&el) => intent.hosts.push(host(&cx, el)?),
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

fn range(cx: &Cx, el: Node) -> Result<DhcpRange, XmlError> {
    only_attributes(cx, el, &["start", "end", "lease"])?;
    let start = cx.required_as(el, "start", NOT_IPV4)?;
    let end = cx.required_as(el, "end", NOT_IPV4)?;
    let range = Ipv4Range::new(start, end).map_err(|e| cx.invalid(tag(el), e))?;
    let lease: Option<LeaseTime> = cx.parsed(el, "lease")?;
    Ok(DhcpRange { range, lease })
}

fn host(cx: &Cx, el: Node) -> Result<StaticHost, XmlError> {
    only_attributes(cx, el, &["mac", "ip", "name", "lease"])?;
    let mac = cx.parsed_req(el, "mac")?;
    let ip = cx.attr_as(el, "ip", NOT_IPV4)?;
    let name = cx.parsed(el, "name")?;
    let lease = cx.parsed(el, "lease")?;
    Ok(StaticHost {
        mac,
        ip,
        name,
        lease,
    })
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
        let cases: [(String, &[&str]); 13] = [
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
                &["start='fd00::2'", "not an IPv4 address"],
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
