//! Every element and attribute of a libvirt network definition that `adopt` knows, and what
//! becomes of it. Anything else (an element a later libvirt adds, a typo libvirt kept) is
//! refused by name: a network is never moved over with a setting nobody looked at.
//!
//! Three fates:
//! - **libvirt's**: libvirt applies it itself (the bridge, forwarding, routes, QoS, ...); it
//!   stays in the XML and works the same after adopt. Its whole subtree is libvirt's.
//! - **carried**: libvirt gives it to its dnsmasq, and virtmasq serves it instead (DHCP ranges
//!   and hosts, DNS on or off, the domain, isolation, MTU).
//! - **checked**: libvirt gives it to its dnsmasq and virtmasq may not serve all of it; the
//!   rules in `unsupported` refuse what it does not, naming it.

use roxmltree::Node;

/// What becomes of an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// libvirt applies it; its whole subtree stays as it is.
    Libvirts,
    /// virtmasq serves it, or `unsupported` refuses the parts it does not serve.
    Served,
}

/// One known element: its path under `<network>`, its attributes, its fate.
pub struct Known {
    /// Element names from `<network>` down, `/`-separated (`ip/dhcp/range`).
    pub path: &'static str,
    /// The attributes it may carry.
    pub attributes: &'static [&'static str],
    /// What becomes of it.
    pub fate: Fate,
}

const fn libvirts(path: &'static str) -> Known {
    Known {
        path,
        attributes: &[],
        fate: Fate::Libvirts,
    }
}

const fn served(path: &'static str, attributes: &'static [&'static str]) -> Known {
    Known {
        path,
        attributes,
        fate: Fate::Served,
    }
}

/// The elements of a network definition (libvirt's `formatnetwork` and its schema) and their
/// fate under adopt.
pub const KNOWN: &[Known] = &[
    served("", &["connections", "ipv6", "trustGuestRxFilters"]),
    libvirts("name"),
    libvirts("uuid"),
    libvirts("title"),
    libvirts("description"),
    libvirts("metadata"),
    // Read for isolation (no <forward>); forwarding itself is libvirt's.
    libvirts("forward"),
    libvirts("bridge"),
    libvirts("mac"),
    libvirts("route"),
    libvirts("portgroup"),
    libvirts("virtualport"),
    libvirts("vlan"),
    libvirts("bandwidth"),
    libvirts("port"),
    served("mtu", &["size"]),
    // `register` is libvirt's (systemd-resolved), the rest is served.
    served("domain", &["name", "localOnly", "register"]),
    served("dns", &["enable", "forwardPlainNames"]),
    served("dns/forwarder", &["addr", "domain"]),
    served("dns/host", &["ip"]),
    served("dns/host/hostname", &[]),
    served(
        "dns/srv",
        &[
            "service", "protocol", "domain", "target", "port", "priority", "weight",
        ],
    ),
    served("dns/txt", &["name", "value"]),
    served(
        "ip",
        &["address", "prefix", "netmask", "family", "localPtr"],
    ),
    served("ip/tftp", &["root"]),
    served("ip/dhcp", &[]),
    served("ip/dhcp/range", &["start", "end"]),
    served("ip/dhcp/range/lease", &["expiry", "unit"]),
    served("ip/dhcp/host", &["mac", "id", "name", "ip"]),
    served("ip/dhcp/host/lease", &["expiry", "unit"]),
    served("ip/dhcp/bootp", &["file", "server"]),
];

/// What in the network under `root` adopt does not know, one line each.
pub(super) fn unknown(root: Node) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out
}

fn walk(el: Node, path: &str, out: &mut Vec<String>) {
    let Some(known) = KNOWN.iter().find(|k| k.path == path) else {
        out.push(format!(
            "<{}> is not known to virtmasq, so it would not be carried over",
            shown(path)
        ));
        return;
    };
    if known.fate == Fate::Libvirts {
        return;
    }
    // Namespaced attributes (xmlns and other programs') are not libvirt's settings.
    for a in el.attributes().filter(|a| a.namespace().is_none()) {
        if !known.attributes.contains(&a.name()) {
            out.push(format!(
                "<{} {}='{}'> is not known to virtmasq, so it would not be carried over",
                if path.is_empty() {
                    "network"
                } else {
                    path.rsplit('/').next().unwrap_or(path)
                },
                a.name(),
                a.value().chars().take(40).collect::<String>()
            ));
        }
    }
    for c in el.children().filter(Node::is_element) {
        // Other namespaces: virtmasq's own metadata is under <metadata>; `<dnsmasq:options>`
        // is refused by `unsupported`.
        if c.tag_name().namespace().is_some() {
            continue;
        }
        let name = c.tag_name().name();
        let child_path = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}/{name}")
        };
        walk(c, &child_path, out);
    }
}

fn shown(path: &str) -> String {
    path.replace('/', "><")
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect()
}

#[cfg(test)]
mod tests;
