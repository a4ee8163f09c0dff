//! Which DNS names a network may make the system dnsmasq answer. A fragment is read by the
//! host's shared dnsmasq, so its `domain=` and `local=` lines and its hosts' names are answered
//! to every client of the host, not only on the bridge. The rules, in system mode only (a
//! private instance answers on its bridge alone):
//!
//! - `dns = "no"`: no DNS line at all, no names in the hosts file, and the names clients send
//!   are ignored (`dhcp-ignore-names=tag:<bridge>`), so nothing of the network enters the
//!   host's DNS.
//! - A domain must have at least two labels (`com` would make the host answer all of `com`
//!   locally), and must be neither equal to, nor a parent or a child of, a domain the system's
//!   own configuration already serves: the first field of `domain=` (and `-s`), the domains of
//!   `local=/d/`, `server=/d/`, `address=/d/`, and the zone of `synth-domain=` and `auth-zone=`
//!   (virtmasq's own fragments left out).
//! - A host name with a dot must lie inside the network's domain; without a domain, host names
//!   must be single labels, and the system may not have a domain of its own that dnsmasq would
//!   give them (a guest named `www` would become `www.<that domain>` for every client).

use crate::model::ManagedNetwork;

use super::conf::Opt;

/// Options whose value names domains the system answers for.
const DOMAIN_OPTIONS: [&str; 6] = [
    "domain",
    "local",
    "server",
    "address",
    "synth-domain",
    "auth-zone",
];

/// The domains the options `opts` make dnsmasq answer for or route, lower-case without a
/// trailing dot, and whether one `domain=` is global (no subnet: every DHCP name gets it).
pub fn served(opts: &[&Opt]) -> (Vec<String>, Option<String>) {
    let mut domains = Vec::new();
    let mut global = None;
    for o in opts {
        let Some(value) = o.value.as_deref() else {
            continue;
        };
        if !DOMAIN_OPTIONS.contains(&o.name.as_str()) {
            continue;
        }
        if let Some(list) = value.strip_prefix('/') {
            // `/d1/d2/[target]`: every field but the last is a domain.
            let mut fields: Vec<&str> = list.split('/').collect();
            fields.pop();
            domains.extend(fields.into_iter().filter_map(normal));
        } else if o.name != "local" && o.name != "server" && o.name != "address" {
            let mut fields = value.split(',');
            let first = fields.next().and_then(normal);
            if o.name == "domain" && fields.next().is_none() {
                global = first.clone().or(global);
            }
            domains.extend(first);
        }
    }
    domains.sort();
    domains.dedup();
    (domains, global)
}

/// A domain as compared: trimmed, lower-case, without the trailing dot; None for the empty
/// name and dnsmasq's `#` (all domains, or resolv.conf's search domain).
fn normal(d: &str) -> Option<String> {
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    (!d.is_empty() && d != "#").then_some(d)
}

/// Whether `a` is `b` or lies on the same branch of the tree (one inside the other).
fn overlaps(a: &str, b: &str) -> bool {
    a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
}

/// Why `net` may not be a system fragment because of the names it would make the host answer,
/// given the system's `domains` and `global` domain ([`served`]).
pub fn refusal(net: &ManagedNetwork, domains: &[String], global: Option<&str>) -> Option<String> {
    if !net.dns {
        return None;
    }
    let refuse = |what: String| {
        Some(format!(
            "network '{}': {what}; in system mode the host's dnsmasq would answer for it to \
             every client. Use private mode (mode = \"private\") or dns = \"no\"",
            net.name
        ))
    };
    let own = net.domain.as_ref().map(|d| d.as_str().to_ascii_lowercase());
    if let Some(own) = &own {
        if !own.contains('.') {
            return refuse(format!(
                "domain '{own}' is a single label (a top-level domain); give it at least two"
            ));
        }
        if let Some(d) = domains.iter().find(|d| overlaps(own, d)) {
            return refuse(format!(
                "domain '{own}' overlaps '{d}', which the system dnsmasq already serves"
            ));
        }
    } else if let Some(g) = global {
        return refuse(format!(
            "it has no domain, so its guests' names would be given the system's domain '{g}'; \
             give it a domain of its own"
        ));
    }
    for name in net.hosts.iter().filter_map(|h| h.name.as_ref()) {
        let name = name.as_str().to_ascii_lowercase();
        let inside = match (&own, name.split_once('.')) {
            (_, None) => true,
            (Some(own), Some(_)) => name.ends_with(&format!(".{own}")),
            (None, Some(_)) => false,
        };
        if !inside {
            return refuse(format!(
                "host name '{name}' lies outside the network's domain ({})",
                own.as_deref().unwrap_or("none")
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests;
