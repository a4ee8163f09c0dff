//! Per-network mode, pure part: in system mode, which dnsmasq serves each network. A network
//! is a fragment of the system dnsmasq unless that dnsmasq cannot serve it on this host (its
//! configuration excludes the bridge, or the network needs a setting a shared instance could
//! only apply to every interface); then it gets a private instance beside the system dnsmasq,
//! where the two can coexist. Where they cannot, the network is served by nothing, and the
//! reason says so.

use super::effective::{BindMode, EffectiveConfig};
use super::plan::{excluded, ipv6_refusal};
use crate::model::ManagedNetwork;

/// Which dnsmasq serves a network in system mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A fragment in the system dnsmasq.
    System,
    /// A private instance beside the system dnsmasq; why the system dnsmasq cannot serve it.
    Private(PrivateReason),
    /// Nothing can serve it on this host; why.
    Nowhere(String),
}

/// Why a network is served by a private instance in system mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateReason {
    /// For people.
    pub why: String,
    /// The system dnsmasq may still answer DNS on the bridge (only `except-interface` keeps
    /// it off): the private instance then serves DHCP only, so that the two never compete for
    /// the bridge's port 53.
    pub dns_elsewhere: bool,
}

/// Where `net` is served. `shared_refusal` is why its settings cannot go into a shared
/// instance, if they cannot (e.g. proxy DHCP's `pxe-service`).
pub fn place(
    net: &ManagedNetwork,
    effective: &EffectiveConfig,
    shared_refusal: Option<String>,
) -> Placement {
    let bridge = net.bridge.as_str();
    let except = |e: &String| match e.strip_suffix('*') {
        Some(prefix) => bridge.starts_with(prefix),
        None => e == bridge,
    };
    let shared_refusal = shared_refusal.or_else(|| ipv6_refusal(net, effective));
    let why = match (excluded(effective, bridge), shared_refusal) {
        (None, None) => return Placement::System,
        (Some(why), _) | (None, Some(why)) => why,
    };
    // A private instance needs udp/67, which a default-mode dnsmasq holds on the wildcard
    // address as soon as it serves any DHCP range.
    if effective.bind_mode == BindMode::Default {
        return Placement::Nowhere(format!(
            "{why}; and a private dnsmasq cannot serve it beside the system dnsmasq, which \
             binds every address (no bind-interfaces or bind-dynamic): add bind-interfaces \
             (or bind-dynamic) to the system dnsmasq's configuration, or use mode = \"private\""
        ));
    }
    Placement::Private(PrivateReason {
        why,
        dns_elsewhere: !effective.except_interfaces.iter().any(except),
    })
}

#[cfg(test)]
mod tests;
