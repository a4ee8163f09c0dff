//! `adopt` and `release` as pure text transforms of a network's XML (`net-dumpxml --inactive`).
//!
//! Adopting moves a network that libvirt serves itself over to virtmasq: every IPv4 `<ip>` loses
//! its `<dhcp>`, `<dns>` becomes `<dns enable='no'/>` (so libvirt starts no dnsmasq), and two
//! elements go into `<metadata>`: virtmasq's intent ([`metadata::render_intent`]) and, in a
//! second namespace ([`SAVED_NAMESPACE`]), verbatim copies of what was removed. Releasing puts
//! those copies back, so `release(adopt(x))` equals `x` once parsed, whatever libvirt wrote in
//! them; nothing has to be rebuilt from the intent.
//!
//! What virtmasq cannot serve (DHCPv6 and router advertisements, `<bootp>`, `<tftp>`, per-host
//! leases, `<dns>` records and forwarders, raw `<dnsmasq:options>`) is refused, every reason at
//! once: a network is never moved over with part of its service silently dropped.
//!
//! The edits are splices of the original text at the byte ranges roxmltree reports, so
//! everything else (comments, other programs' metadata, attribute order) stays as it was.

use std::net::IpAddr;

use roxmltree::Node;
use thiserror::Error;

use super::metadata::{self, render_intent};
use super::xml::{IpFamily, NetworkXml, XmlError};
use crate::model::{
    DhcpIntent, DhcpRange, InvalidValue, Ipv4Range, ManagedNetwork, NetworkName, StaticHost,
};

/// The namespace of the element that keeps what `adopt` took out of libvirt's XML.
pub const SAVED_NAMESPACE: &str = "http://virtmasq.org/xmlns/libvirt-saved/1.0";

/// The prefix virtmasq writes for [`SAVED_NAMESPACE`].
pub const SAVED_PREFIX: &str = "virtmasq-saved";

/// The local name of the saved element: `<virtmasq-saved:libvirt>`.
const SAVED_ELEMENT: &str = "libvirt";

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
    let reasons = unsupported(root, &net);
    if !reasons.is_empty() {
        return Err(AdoptError::Unsupported { name, reasons });
    }
    let intent = intent_of(&net);
    let bridge = net.bridge.clone().ok_or_else(|| AdoptError::Unsupported {
        name: name.clone(),
        reasons: vec!["it has no <bridge>".into()],
    })?;
    ManagedNetwork::new(name.clone(), bridge, net.ipv4_subnets(), intent.clone()).map_err(
        |source| AdoptError::Invalid {
            name: name.clone(),
            source,
        },
    )?;
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

/// The intent libvirt's own settings describe: every IPv4 `<dhcp>`'s ranges and hosts, the
/// network's `<domain>`, and DNS as libvirt served it.
pub fn intent_of(net: &NetworkXml) -> DhcpIntent {
    let mut intent = DhcpIntent {
        domain: net.domain.clone(),
        dns: net.dns_enabled,
        pxe: None,
        ..DhcpIntent::default()
    };
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    };
    for dhcp in net.ips.iter().filter_map(|ip| ip.dhcp.as_ref()) {
        for r in &dhcp.ranges {
            let (Some(start), Some(end)) = (v4(r.start), v4(r.end)) else {
                continue;
            };
            // The XML parser already checked start <= end.
            if let Ok(range) = Ipv4Range::new(start, end) {
                let lease = r.lease;
                intent.ranges.push(DhcpRange { range, lease });
            }
        }
        for h in &dhcp.hosts {
            let Some(mac) = h.mac else { continue };
            intent.hosts.push(StaticHost {
                mac,
                ip: h.ip.and_then(v4),
                name: h.name.clone(),
            });
        }
    }
    intent
}

/// Everything in the network that virtmasq would not serve, one line each.
fn unsupported(root: Node, net: &NetworkXml) -> Vec<String> {
    let mut out = unsupported_ips(net);
    let local_ptr = root
        .children()
        .filter(|n| is_libvirt(n, "ip"))
        .filter_map(|n| n.attribute("localPtr").map(|v| (n, v)));
    for (ip, v) in local_ptr {
        let address = ip.attribute("address").unwrap_or_default();
        out.push(format!(
            "<ip address='{address}' localPtr='{v}'> is not carried over"
        ));
    }
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
    let raw = |n: &Node| n.is_element() && n.tag_name().namespace() == Some(DNSMASQ_NAMESPACE);
    if root.children().any(|n| raw(&n)) {
        out.push("<dnsmasq:options> (raw dnsmasq options) are not carried over".into());
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
            if h.lease.is_some() {
                out.push(format!(
                    "{at}: <host> {who}: a per-host <lease> is not carried over"
                ));
            }
        }
    }
    out
}

/// What `<dns>` and `<domain>` hold beyond what virtmasq serves (DNS on or off, a domain).
fn unsupported_dns(root: Node) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(dns) = child(root, "dns") {
        if let Some(a) = dns.attributes().find(|a| a.name() != "enable") {
            out.push(format!(
                "<dns {}='{}'> is not carried over",
                a.name(),
                a.value()
            ));
        }
        let mut kinds: Vec<&str> = dns
            .children()
            .filter(Node::is_element)
            .map(|c| c.tag_name().name())
            .collect();
        kinds.dedup();
        if !kinds.is_empty() {
            let kinds = kinds.iter().map(|k| format!("<{k}>")).collect::<Vec<_>>();
            out.push(format!(
                "<dns> {} (DNS records and forwarders) are not carried over",
                kinds.join(", ")
            ));
        }
    }
    if let Some(d) = child(root, "domain") {
        if let Some(a) = d
            .attributes()
            .find(|a| !["name", "localOnly"].contains(&a.name()))
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
        let Some(dhcp) = child(*ip, "dhcp") else {
            continue;
        };
        let address = ip.attribute("address").unwrap_or_default();
        let text = reindent(&xml[dhcp.range()], column(dhcp), 4);
        saved += &format!("\n  <ip address='{address}'>\n    {text}\n  </ip>");
        edits.push((removal(dhcp), String::new()));
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

/// Puts the `<dhcp>` saved in `copy` back into the network's `<ip>` of the same address, which
/// is returned with the edit.
fn restore_dhcp(xml: &str, root: Node, copy: Node) -> Result<(Edit, IpAddr), String> {
    let address = |n: Node| {
        n.attribute("address")
            .and_then(|a| a.parse::<IpAddr>().ok())
    };
    let want = address(copy).ok_or("a saved <ip> has no address")?;
    let dhcp = child(copy, "dhcp").ok_or("a saved <ip> has no <dhcp>")?;
    let ip = root
        .children()
        .filter(|n| is_libvirt(n, "ip"))
        .find(|n| address(*n) == Some(want))
        .ok_or_else(|| {
            format!("it no longer has an <ip address='{want}'> to give its <dhcp> back to")
        })?;
    if child(ip, "dhcp").is_some() {
        return Err(format!(
            "<ip address='{want}'> has a <dhcp> again; remove it first"
        ));
    }
    let text = reindent(&xml[dhcp.range()], column(dhcp), 4);
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

mod text;

pub use text::difference;
use text::{closing, column, indent_before, reindent, removal, splice, Edit};

#[cfg(test)]
mod tests;
