//! The IPv6 lines of a network, for a private instance and a system fragment alike: what
//! libvirt's `networkDnsmasqConfContents` writes, per IPv6 subnet of the bridge.
//!
//! - A subnet with DHCPv6 (a range or a host address in it): `dhcp-range=<start>,<end>,<prefix>
//!   [,<lease>]` per range, or `dhcp-range=<network>,static,<prefix>` for hosts alone, and
//!   `enable-ra` once, so that router advertisements carry the M and O flags and no
//!   autonomous prefix: clients take their address from DHCPv6.
//! - A subnet without: `dhcp-range=<its /64>,ra-only,64`, router advertisements with the A
//!   flag (SLAAC) and no DHCPv6. libvirt writes `<address>,ra-only`, which dnsmasq reads as
//!   the same /64. A subnet longer than /64 cannot be advertised for SLAAC and gets nothing,
//!   as from libvirt.
//!
//! On an isolated network (no `<forward>`) the advertisements carry a router lifetime of 0,
//! as libvirt's `ra-param`, so guests get no default route through a host that does not
//! forward.
//!
//! dnsmasq ties an IPv6 range to an interface by subnet (only an interface holding an address
//! in it sends its advertisements or answers DHCPv6 from it); `scope` adds the arrival
//! interface's tag on top, as for IPv4, so a relayed request from elsewhere never matches.

use std::fmt::Write as _;

use crate::model::{IfName, ManagedNetwork, StaticHost6, DHCP6_MIN_PREFIX};

/// The `dhcp-range` lines and `enable-ra` for the network's IPv6 subnets.
pub fn range6_lines(net: &ManagedNetwork, scope: Option<&IfName>) -> String {
    let tag = scope.map(|i| format!("tag:{i},")).unwrap_or_default();
    let mut out = String::new();
    let mut advertised = false;
    for subnet in &net.subnets6 {
        let prefix = subnet.prefix();
        if !net.dhcp6_on(subnet) {
            if prefix <= DHCP6_MIN_PREFIX {
                let _ = writeln!(out, "dhcp-range={tag}{},ra-only,64", subnet.slaac_prefix());
                advertised = true;
            }
            continue;
        }
        advertised = true;
        let ranges: Vec<_> = net
            .ranges6
            .iter()
            .filter(|r| subnet.contains(r.range.start()))
            .collect();
        for r in &ranges {
            let _ = write!(
                out,
                "dhcp-range={tag}{},{},{prefix}",
                r.range.start(),
                r.range.end()
            );
            if let Some(lease) = r.lease {
                let _ = write!(out, ",{}", lease.dnsmasq());
            }
            out.push('\n');
        }
        if ranges.is_empty() {
            let _ = writeln!(out, "dhcp-range={tag}{},static,{prefix}", subnet.network());
        }
    }
    if net.has_dhcp6() {
        out.push_str("enable-ra\n");
    }
    // An isolated network has no router: advertisements must not offer a default route
    // (libvirt writes `ra-param=*,0,0`; this one names the bridge, so it is scoped too).
    if advertised && net.settings.isolated {
        let _ = writeln!(out, "ra-param={},0,0", net.bridge);
    }
    out
}

/// One `dhcp-hostsfile` line of a DHCPv6 host: `[id:<duid>,][<mac>,][<name>,][<address>]
/// [,<lease>]` (dnsmasq tells the fields apart by their form).
pub fn host6_line(h: &StaticHost6, with_name: bool) -> String {
    let mut fields = Vec::new();
    if let Some(id) = &h.id {
        fields.push(format!("id:{id}"));
    }
    if let Some(mac) = h.mac {
        fields.push(mac.to_string());
    }
    // A host known by its name alone keeps it: without it nothing would find the host.
    let keyless = h.id.is_none() && h.mac.is_none();
    if let Some(name) = h.name.as_ref().filter(|_| with_name || keyless) {
        fields.push(name.to_string());
    }
    fields.push(format!("[{}]", h.ip));
    if let Some(lease) = h.lease {
        fields.push(lease.dnsmasq());
    }
    fields.join(",")
}

/// What the IPv6 subnets add to `dhcp-lease-max`: every address of each DHCPv6 range, and
/// 65,536 a subnet for its hosts (libvirt's largest range), so that adding a host stays a
/// SIGHUP.
pub fn lease_max6(net: &ManagedNetwork) -> u64 {
    let ranges: u128 = net.ranges6.iter().map(|r| r.range.len()).sum();
    let hosts = net.subnets6.iter().filter(|s| net.dhcp6_on(s)).count() as u128 * 65_536;
    u64::try_from(ranges.saturating_add(hosts)).unwrap_or(u64::MAX)
}
