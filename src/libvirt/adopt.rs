//! `adopt` and `release` as pure text transforms of a network's XML (`net-dumpxml --inactive`).
//!
//! Adopting moves a network that libvirt serves itself over to virtmasq: every `<ip>` loses
//! its `<tftp>` and `<dhcp>`, `<dns>` becomes `<dns enable='no'/>` (so libvirt starts no dnsmasq), and two
//! elements go into `<metadata>`: virtmasq's intent ([`metadata::render_intent`]) and, in a
//! second namespace ([`SAVED_NAMESPACE`]), verbatim copies of what was removed. Releasing puts
//! those copies back, so `release(adopt(x))` equals `x` once parsed, whatever libvirt wrote in
//! them; nothing has to be rebuilt from the intent.
//!
//! IPv6 comes along: DHCPv6 ranges with their leases, hosts by DUID or name with their own
//! leases, and router advertisements for every IPv6 `<ip>`. So do `<bootp>`, `<tftp>`, per-host
//! leases, `<dns>` records and forwarders, `localPtr` and `<dnsmasq:options>` (read by
//! `xml` from the saved copies). What virtmasq cannot serve (IPv4 client ids, an element it
//! does not know: [`known`]) is refused, every reason at once: a network is never moved over
//! with part of its service silently dropped.
//!
//! The edits are splices of the original text at the byte ranges roxmltree reports, so
//! everything else (comments, other programs' metadata, attribute order) stays as it was.

use std::net::IpAddr;

use roxmltree::Node;
use thiserror::Error;

use super::metadata::{self, render_intent};
use super::xml::{NetworkXml, XmlError};
use crate::model::{
    Dhcp6Range, DhcpIntent, DhcpRange, InvalidValue, Ipv4Range, Ipv6Range, ManagedNetwork,
    NetworkName, StaticHost, StaticHost6,
};

pub use super::read::{SAVED_ELEMENT, SAVED_NAMESPACE, SAVED_PREFIX};

/// libvirt's namespace for raw dnsmasq options (`<dnsmasq:options>`).
const DNSMASQ_NAMESPACE: &str = "http://libvirt.org/schemas/network/dnsmasq/1.0";

/// The outcome of [`adopt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    /// The network XML to define.
    pub xml: String,
    /// The intent virtmasq serves from now on (also in the XML's `<metadata>`).
    pub intent: DhcpIntent,
}

/// Why a network cannot be adopted or released. Nothing has been changed when one is returned.
#[derive(Debug, Error)]
pub enum AdoptError {
    /// libvirt's XML could not be read.
    #[error("the network's XML is not usable")]
    Xml(#[from] XmlError),
    /// The network already carries virtmasq's metadata.
    #[error("network '{0}' is already adopted: its <metadata> holds virtmasq's elements")]
    AlreadyAdopted(NetworkName),
    /// libvirt starts no dnsmasq for it, so there is nothing to take over.
    #[error(
        "network '{0}' is not served by libvirt (no <dhcp> range or host, DNS disabled, or a \
         forward mode without a dnsmasq): there is nothing to adopt; to have virtmasq serve it, \
         give it virtmasq <metadata> or a [networks.{0}] section"
    )]
    NotServedByLibvirt(NetworkName),
    /// It uses something virtmasq does not serve.
    #[error(
        "network '{name}' cannot be adopted without losing part of its service:\n  - {}",
        reasons.join("\n  - ")
    )]
    Unsupported {
        /// The network.
        name: NetworkName,
        /// One line per refused element.
        reasons: Vec<String>,
    },
    /// The intent taken from its `<dhcp>` is not one virtmasq accepts.
    #[error("network '{name}': the DHCP settings to take over are refused")]
    Invalid {
        /// The network.
        name: NetworkName,
        /// Why.
        #[source]
        source: InvalidValue,
    },
    /// `release` of a network that `adopt` did not move over.
    #[error(
        "network '{0}' was not adopted by `virtmasq adopt`: its <metadata> has no saved libvirt \
         settings to give back"
    )]
    NotAdopted(NetworkName),
    /// The network or its intent changed since it was adopted; releasing would lose that.
    #[error("network '{name}' changed since it was adopted, and release would undo it: {reason}")]
    Changed {
        /// The network.
        name: NetworkName,
        /// What changed, and what to do.
        reason: String,
    },
}

/// Adopts the network in `xml`: see the module documentation.
pub fn adopt(xml: &str) -> Result<Adoption, AdoptError> {
    let net = NetworkXml::parse(xml)?;
    let doc = crate::libvirt::depth::parse(xml)?;
    let root = doc.root_element();
    let name = net.name.clone();
    if child(root, "metadata").is_some_and(|m| m.children().any(|c| is_ours(&c))) {
        return Err(AdoptError::AlreadyAdopted(name));
    }
    if !net.served_by_libvirt() {
        return Err(AdoptError::NotServedByLibvirt(name));
    }
    let mut reasons = known::unknown(root);
    reasons.extend(unsupported(root, &net));
    if !reasons.is_empty() {
        return Err(AdoptError::Unsupported { name, reasons });
    }
    let intent = intent_of(&net);
    let bridge = net.bridge.clone().ok_or_else(|| AdoptError::Unsupported {
        name: name.clone(),
        reasons: vec!["it has no <bridge>".into()],
    })?;
    let (v4, v6) = (net.ipv4_subnets(), net.ipv6_subnets());
    ManagedNetwork::dual(name.clone(), bridge, v4, v6, intent.clone()).map_err(|source| {
        AdoptError::Invalid {
            name: name.clone(),
            source,
        }
    })?;
    let edits = adopt_edits(xml, root, &intent);
    let xml = splice(xml, edits).map_err(|why| AdoptError::Unsupported {
        name,
        reasons: vec![why],
    })?;
    Ok(Adoption { xml, intent })
}

/// Releases the network in `xml` (as libvirt dumps an adopted one): its saved `<dns>` and
/// `<dhcp>` elements go back, virtmasq's metadata goes. Refused when the network or its intent
/// changed since `adopt`, since putting the old settings back would silently undo that.
pub fn release(xml: &str) -> Result<String, AdoptError> {
    let net = NetworkXml::parse(xml)?;
    let doc = crate::libvirt::depth::parse(xml)?;
    let root = doc.root_element();
    let name = net.name.clone();
    let changed = |reason: String| AdoptError::Changed {
        name: name.clone(),
        reason,
    };
    let meta = child(root, "metadata");
    let saved = meta
        .and_then(|m| m.children().find(is_saved))
        .ok_or_else(|| AdoptError::NotAdopted(name.clone()))?;
    if net.served_by_libvirt() {
        return Err(changed(
            "libvirt serves it again (it has <dhcp> or DNS enabled); remove those first".into(),
        ));
    }
    let edits = release_edits(xml, root, saved).map_err(changed)?;
    let released = splice(xml, edits).map_err(changed)?;
    let expected = intent_of(&NetworkXml::parse(&released)?);
    if net.metadata.as_ref() != Some(&expected) {
        let now = net.metadata.as_ref().map_or("none".into(), render_intent);
        return Err(changed(format!(
            "virtmasq's intent is now\n{now}\nbut the saved libvirt settings give\n{}\n\
             put the intent back as it was, or edit the saved <dhcp> to match",
            render_intent(&expected)
        )));
    }
    Ok(released)
}

/// The intent libvirt's own settings describe: every `<dhcp>`'s ranges and hosts, IPv4 and
/// IPv6, the network's `<domain>`, and DNS as libvirt served it.
pub fn intent_of(net: &NetworkXml) -> DhcpIntent {
    let mut intent = DhcpIntent {
        domain: net.domain.clone(),
        dns: net.dns_enabled,
        pxe: None,
        ..DhcpIntent::default()
    };
    for dhcp in net.ips.iter().filter_map(|ip| ip.dhcp.as_ref()) {
        for r in &dhcp.ranges {
            // The XML parser already checked start <= end, both of the <ip>'s family.
            match (r.start, r.end) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    if let Ok(range) = Ipv4Range::new(a, b) {
                        intent.ranges.push(DhcpRange {
                            range,
                            lease: r.lease,
                        });
                    }
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => {
                    if let Ok(range) = Ipv6Range::new(a, b) {
                        intent.ranges6.push(Dhcp6Range {
                            range,
                            lease: r.lease,
                        });
                    }
                }
                _ => {}
            }
        }
        for h in &dhcp.hosts {
            match h.ip {
                Some(IpAddr::V6(ip)) => {
                    // What cannot be carried over is refused first (`unsupported`).
                    let id = h.id.as_deref().and_then(|d| d.parse().ok());
                    let host = StaticHost6::new(id, h.mac, h.name.clone(), ip, h.lease);
                    intent.hosts6.extend(host.ok());
                }
                ip => {
                    let Some(mac) = h.mac else { continue };
                    let ip = ip.and_then(|ip| match ip {
                        IpAddr::V4(a) => Some(a),
                        IpAddr::V6(_) => None,
                    });
                    let (name, lease) = (h.name.clone(), h.lease);
                    intent.hosts.push(StaticHost {
                        mac,
                        ip,
                        name,
                        lease,
                    });
                }
            }
        }
    }
    intent
}

fn adopt_edits(xml: &str, root: Node, intent: &DhcpIntent) -> Vec<Edit> {
    let mut edits = Vec::new();
    let mut saved = String::new();
    let dns = child(root, "dns");
    if let Some(dns) = dns {
        saved += &format!("\n  {}", &xml[dns.range()]);
        edits.push((dns.range(), "<dns enable='no'/>".to_owned()));
    }
    let ips: Vec<Node> = root.children().filter(|n| is_libvirt(n, "ip")).collect();
    for ip in &ips {
        // What libvirt starts its dnsmasq for: <tftp> and <dhcp>, moved together, in order.
        let moved: Vec<Node> = ip
            .children()
            .filter(|n| is_libvirt(n, "tftp") || is_libvirt(n, "dhcp"))
            .collect();
        if moved.is_empty() {
            continue;
        }
        let address = ip.attribute("address").unwrap_or_default();
        let texts: Vec<String> = moved
            .iter()
            .map(|el| reindent(&xml[el.range()], column(*el), 4))
            .collect();
        saved += &format!(
            "\n  <ip address='{address}'>\n    {}\n  </ip>",
            texts.join("\n    ")
        );
        edits.extend(moved.iter().map(|el| (removal(*el), String::new())));
    }
    if dns.is_none() {
        let anchor = ips.first().copied().unwrap_or(root);
        let at = if ips.is_empty() {
            closing(xml, root)
        } else {
            anchor.range().start
        };
        edits.push((
            at..at,
            format!("<dns enable='no'/>{}", indent_before(anchor)),
        ));
    }
    let block = format!(
        "{}\n<{SAVED_PREFIX}:{SAVED_ELEMENT} xmlns:{SAVED_PREFIX}=\"{SAVED_NAMESPACE}\">{saved}\n\
         </{SAVED_PREFIX}:{SAVED_ELEMENT}>",
        render_intent(intent)
    );
    edits.push(metadata_insertion(xml, root, &block));
    edits
}

/// Where and what to insert so that `<metadata>` ends with `block`.
fn metadata_insertion(xml: &str, root: Node, block: &str) -> Edit {
    let indent = |n: usize| block.replace('\n', &format!("\n{}", " ".repeat(n)));
    match child(root, "metadata") {
        Some(meta) if xml[meta.range()].ends_with("/>") => (
            meta.range(),
            format!("<metadata>\n    {}\n  </metadata>", indent(4)),
        ),
        Some(meta) => {
            let at = closing(xml, meta);
            (at..at, format!("  {}\n  ", indent(4)))
        }
        None => {
            let anchor = child(root, "uuid").or_else(|| child(root, "name"));
            let at = anchor.map_or_else(|| closing(xml, root), |a| a.range().end);
            (
                at..at,
                format!("\n  <metadata>\n    {}\n  </metadata>", indent(4)),
            )
        }
    }
}

fn release_edits(xml: &str, root: Node, saved: Node) -> Result<Vec<Edit>, String> {
    let meta = saved
        .parent()
        .expect("the saved element is inside <metadata>");
    let mut edits = Vec::new();
    // Anything else in <metadata>, text included, was there before `adopt` and stays.
    let others = meta.children().filter(|c| {
        (c.is_element() && !is_ours(c) && !is_saved(c))
            || (c.is_text() && c.text().is_some_and(|t| !t.trim().is_empty()))
    });
    if others.count() == 0 {
        edits.push((removal(meta), String::new()));
    } else {
        for c in meta.children().filter(|c| is_ours(c) || is_saved(c)) {
            edits.push((removal(c), String::new()));
        }
    }
    let saved_dns = child(saved, "dns").map(|d| xml[d.range()].to_owned());
    match (child(root, "dns"), saved_dns) {
        (Some(now), Some(old)) => edits.push((now.range(), old)),
        (Some(now), None) => edits.push((removal(now), String::new())),
        (None, Some(old)) => {
            let at = root
                .children()
                .find(|n| is_libvirt(n, "ip"))
                .map_or_else(|| closing(xml, root), |ip| ip.range().start);
            edits.push((at..at, old + "\n  "));
        }
        (None, None) => {}
    }
    let mut restored = Vec::new();
    for copy in saved.children().filter(|n| is_libvirt(n, "ip")) {
        let (edit, address) = restore_dhcp(xml, root, copy)?;
        if restored.contains(&address) {
            return Err(format!(
                "its saved libvirt settings hold <ip address='{address}'> twice; keep one of \
                 them in the <metadata>"
            ));
        }
        restored.push(address);
        edits.push(edit);
    }
    Ok(edits)
}

/// Puts the `<tftp>` and `<dhcp>` saved in `copy` back into the network's `<ip>` of the same
/// address, which is returned with the edit.
fn restore_dhcp(xml: &str, root: Node, copy: Node) -> Result<(Edit, IpAddr), String> {
    let address = |n: Node| {
        n.attribute("address")
            .and_then(|a| a.parse::<IpAddr>().ok())
    };
    let want = address(copy).ok_or("a saved <ip> has no address")?;
    let moved: Vec<Node> = copy
        .children()
        .filter(|n| is_libvirt(n, "tftp") || is_libvirt(n, "dhcp"))
        .collect();
    if moved.is_empty() {
        return Err("a saved <ip> has no <dhcp> or <tftp>".into());
    }
    let ip = root
        .children()
        .filter(|n| is_libvirt(n, "ip"))
        .find(|n| address(*n) == Some(want))
        .ok_or_else(|| {
            format!("it no longer has an <ip address='{want}'> to give its <dhcp> back to")
        })?;
    for el in &moved {
        let name = el.tag_name().name();
        if child(ip, name).is_some() {
            return Err(format!(
                "<ip address='{want}'> has a <{name}> again; remove it first"
            ));
        }
    }
    let text = moved
        .iter()
        .map(|el| reindent(&xml[el.range()], column(*el), 4))
        .collect::<Vec<_>>()
        .join("\n    ");
    let range = ip.range();
    if xml[range.clone()].ends_with("/>") {
        let edit = (
            range.end - 2..range.end,
            format!(">\n      {text}\n    </ip>"),
        );
        return Ok((edit, want));
    }
    let at = closing(xml, ip);
    Ok(((at..at, format!("  {text}\n  ")), want))
}

fn child<'a, 'i>(el: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    el.children().find(|n| is_libvirt(n, name))
}

fn is_libvirt(node: &Node, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace().is_none()
}

fn is_ours(node: &Node) -> bool {
    node.is_element()
        && matches!(
            node.tag_name().namespace(),
            Some(metadata::NAMESPACE | SAVED_NAMESPACE)
        )
}

fn is_saved(node: &Node) -> bool {
    node.is_element()
        && node.tag_name().namespace() == Some(SAVED_NAMESPACE)
        && node.tag_name().name() == SAVED_ELEMENT
}

pub mod known;
mod text;
mod unsupported;

pub use text::difference;
use text::{closing, column, indent_before, reindent, removal, splice, Edit};
use unsupported::unsupported;

#[cfg(test)]
mod tests;
