//! Whose network is it? Decided from the least of libvirt's XML that answers the question: the
//! network's name, whether libvirt starts its own dnsmasq for it, whether it has a bridge and
//! whether virtmasq's `<metadata>` element is there. Nothing else is validated here, so any
//! network libvirt accepts (names with spaces, IPv6 hosts given by name only, boot file URLs
//! with `&`, elements of a later libvirt) is read without error. Only a network found to be
//! virtmasq's is then parsed in full ([`super::xml`]), where every value is checked.
//!
//! The libvirt hook decides on this alone: a network that is not virtmasq's must never make
//! the hook fail, because a failing hook stops libvirt from starting the network.

use roxmltree::{Document, Node};

use super::metadata::NAMESPACE;
use super::read::XmlError;

/// What a network's XML says about its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// `<name>` as libvirt gave it, not validated (it may hold spaces or other characters
    /// virtmasq refuses in networks it serves).
    pub name: String,
    /// libvirt starts its own dnsmasq for it (see [`libvirt_serves`]).
    pub served_by_libvirt: bool,
    /// It has a `<bridge name=...>`.
    pub has_bridge: bool,
    /// Its `<metadata>` holds an element of virtmasq's namespace.
    pub has_intent: bool,
}

/// Forward modes in which libvirt owns the bridge and may start a dnsmasq on it
/// (`networkStartNetworkVirtual`); with no `<forward>` the network is isolated, also one of them.
const VIRTUAL_MODES: [&str; 3] = ["nat", "route", "open"];

/// libvirt's own rule (`networkStartDhcpDaemon`): it starts a dnsmasq for a network that is
/// isolated, nat, route or open, has an `<ip>`, and either serves DHCP or TFTP on an `<ip>`
/// (ranges, hosts or a TFTP root; an empty `<dhcp/>` starts nothing) or has DNS enabled.
/// `forward_mode` is None for an isolated network (a bare `<forward/>` is nat).
pub fn libvirt_serves(
    forward_mode: Option<&str>,
    has_ip: bool,
    dns_enabled: bool,
    dhcp_or_tftp: bool,
) -> bool {
    let owns_bridge = forward_mode.is_none_or(|m| VIRTUAL_MODES.contains(&m));
    owns_bridge && has_ip && (dns_enabled || dhcp_or_tftp)
}

impl Probe {
    /// Reads a `<network>` document (`virsh net-dumpxml`).
    pub fn network(xml: &str) -> Result<Probe, XmlError> {
        let doc = Document::parse(xml).map_err(XmlError::Syntax)?;
        Ok(Self::of(root(&doc, "network")?))
    }

    /// Reads the `<network>` of a hook's `<hookData>` document.
    pub fn hook_data(xml: &str) -> Result<Probe, XmlError> {
        let doc = Document::parse(xml).map_err(XmlError::Syntax)?;
        let hook = root(&doc, "hookData")?;
        let network = child(hook, "network").ok_or_else(|| XmlError::Value {
            context: "hookData".into(),
            at: "<hookData>".into(),
            reason: "it has no <network>".into(),
        })?;
        Ok(Self::of(network))
    }

    /// Whether virtmasq may serve it: libvirt does not, it has a bridge, and virtmasq has an
    /// intent for it (its metadata, or a configuration section: `configured`).
    pub fn claimed(&self, configured: bool) -> bool {
        !self.served_by_libvirt && self.has_bridge && (self.has_intent || configured)
    }

    fn of(net: Node) -> Probe {
        let ips: Vec<Node> = net.children().filter(|n| is_libvirt(n, "ip")).collect();
        let dhcp_or_tftp = ips.iter().any(|ip| {
            let dhcp = child(*ip, "dhcp").is_some_and(|d| {
                d.children()
                    .any(|n| is_libvirt(&n, "range") || is_libvirt(&n, "host"))
            });
            dhcp || child(*ip, "tftp").is_some_and(|t| t.has_attribute("root"))
        });
        let dns_enabled = child(net, "dns").and_then(|d| d.attribute("enable")) != Some("no");
        let forward = child(net, "forward").map(|f| f.attribute("mode").unwrap_or("nat"));
        Probe {
            name: child(net, "name")
                .and_then(|n| n.text())
                .unwrap_or("")
                .to_owned(),
            served_by_libvirt: libvirt_serves(forward, !ips.is_empty(), dns_enabled, dhcp_or_tftp),
            has_bridge: child(net, "bridge").is_some_and(|b| b.has_attribute("name")),
            has_intent: child(net, "metadata").is_some_and(|m| {
                m.children()
                    .any(|n| n.is_element() && n.tag_name().namespace() == Some(NAMESPACE))
            }),
        }
    }
}

fn root<'a, 'i>(doc: &'a Document<'i>, expected: &'static str) -> Result<Node<'a, 'i>, XmlError> {
    let root = doc.root_element();
    if !is_libvirt(&root, expected) {
        let found: String = root.tag_name().name().chars().take(64).collect();
        return Err(XmlError::Root { expected, found });
    }
    Ok(root)
}

fn child<'a, 'i>(el: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    el.children().find(|n| is_libvirt(n, name))
}

fn is_libvirt(node: &Node, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace().is_none()
}

#[cfg(test)]
mod tests;
