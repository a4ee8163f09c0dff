//! The IPv6 part of a network's intent: DHCPv6 ranges and hosts, and what the bridge's IPv6
//! subnets get from them. Every IPv6 subnet of a served network gets router advertisements, as
//! libvirt's own dnsmasq gives them: with DHCPv6 (the M and O flags) where the intent has a
//! range or a host address in it, for SLAAC (the A flag on its /64) where it has none.

use std::collections::HashSet;
use std::net::Ipv6Addr;

use super::{DnsName, Duid, InvalidValue, Ipv6Net, Ipv6Range, LeaseTime, MacAddr};

/// One DHCPv6 range with its lease time (dnsmasq's default of one day when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp6Range {
    /// The addresses handed out.
    pub range: Ipv6Range,
    /// Lease time for this range.
    pub lease: Option<LeaseTime>,
}

/// A DHCPv6 host with a fixed address, found by its DUID, its MAC (dnsmasq learns a DHCPv6
/// client's MAC from the neighbour table or a link-layer DUID) or the name it sends; at least
/// one of the three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticHost6 {
    /// The client's DUID.
    pub id: Option<Duid>,
    /// The client's MAC.
    pub mac: Option<MacAddr>,
    /// Its host name (matched against the name the client sends, and served in DNS).
    pub name: Option<DnsName>,
    /// Its fixed address.
    pub ip: Ipv6Addr,
    /// Its own lease time, if set.
    pub lease: Option<LeaseTime>,
}

impl StaticHost6 {
    /// A host with at least one key (DUID, MAC or name).
    pub fn new(
        id: Option<Duid>,
        mac: Option<MacAddr>,
        name: Option<DnsName>,
        ip: Ipv6Addr,
        lease: Option<LeaseTime>,
    ) -> Result<Self, InvalidValue> {
        if id.is_none() && mac.is_none() && name.is_none() {
            return Err(InvalidValue::new(
                "DHCPv6 host",
                &ip.to_string(),
                "it needs an id (DUID), a mac or a name to be recognised by",
            ));
        }
        Ok(Self {
            id,
            mac,
            name,
            ip,
            lease,
        })
    }

    /// What the host is known by, for errors.
    pub fn key(&self) -> String {
        match (&self.id, &self.mac, &self.name) {
            (Some(id), _, _) => format!("id {id}"),
            (None, Some(mac), _) => format!("mac {mac}"),
            (None, None, Some(name)) => format!("name {name}"),
            (None, None, None) => self.ip.to_string(),
        }
    }
}

/// Checks the IPv6 intent against the bridge's IPv6 subnets: every range inside one (a /64 or
/// longer), no two ranges overlapping, every host address a usable address of a subnet, DUIDs,
/// MACs and addresses each used once.
pub(super) fn check(
    subnets: &[Ipv6Net],
    ranges: &[Dhcp6Range],
    hosts: &[StaticHost6],
) -> Result<(), InvalidValue> {
    let outside = |what: &str, shown: String| {
        let nets: Vec<String> = subnets.iter().map(ToString::to_string).collect();
        let reason = match nets.is_empty() {
            true => "the network has no IPv6 address".to_owned(),
            false => format!(
                "it is in none of the network's IPv6 subnets ({})",
                nets.join(", ")
            ),
        };
        InvalidValue::new(
            if what == "range" {
                "DHCPv6 range"
            } else {
                "DHCPv6 host"
            },
            &shown,
            &reason,
        )
    };
    for r in ranges {
        let net = subnet_of(subnets, r.range.start())
            .ok_or_else(|| outside("range", r.range.to_string()))?;
        r.range.check_within(net)?;
    }
    check_overlaps(ranges)?;
    let (mut ids, mut macs, mut ips) = (HashSet::new(), HashSet::new(), HashSet::new());
    for h in hosts {
        let net = subnet_of(subnets, h.ip).ok_or_else(|| outside("host", h.ip.to_string()))?;
        if !net.is_host_addr(h.ip) {
            return Err(InvalidValue::new(
                "DHCPv6 host",
                &format!("{},{}", h.key(), h.ip),
                "the address is the subnet's own (anycast) or the bridge's address",
            ));
        }
        net.check_dhcp6()?;
        let twice = |what: &str, v: String| {
            InvalidValue::new("DHCPv6 host", &v, &format!("this {what} is listed twice"))
        };
        if let Some(id) = &h.id {
            if !ids.insert(id.clone()) {
                return Err(twice("DUID", id.to_string()));
            }
        }
        if let Some(mac) = h.mac {
            if !macs.insert(mac) {
                return Err(twice("MAC", mac.to_string()));
            }
        }
        if !ips.insert(h.ip) {
            return Err(twice("address", h.ip.to_string()));
        }
    }
    Ok(())
}

/// The IPv6 subnet that holds `ip`, if any.
pub(super) fn subnet_of(subnets: &[Ipv6Net], ip: Ipv6Addr) -> Option<&Ipv6Net> {
    subnets.iter().find(|n| n.contains(ip))
}

/// Refuses overlapping ranges, sorted by start as for IPv4 (`network::check_overlaps`).
fn check_overlaps(ranges: &[Dhcp6Range]) -> Result<(), InvalidValue> {
    let mut order: Vec<(usize, &Dhcp6Range)> = ranges.iter().enumerate().collect();
    order.sort_by_key(|(i, r)| (r.range.start(), *i));
    let mut furthest: Option<(usize, &Dhcp6Range)> = None;
    for (i, r) in order {
        if let Some((j, f)) = furthest {
            if r.range.start() <= f.range.end() {
                let (first, later) = if j < i { (f, r) } else { (r, f) };
                return Err(InvalidValue::new(
                    "DHCPv6 range",
                    &later.range.to_string(),
                    &format!("it overlaps {}", first.range),
                ));
            }
        }
        if furthest.is_none_or(|(_, f)| r.range.end() > f.range.end()) {
            furthest = Some((i, r));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(a: &str, b: &str) -> Dhcp6Range {
        Dhcp6Range {
            range: Ipv6Range::new(a.parse().unwrap(), b.parse().unwrap()).unwrap(),
            lease: None,
        }
    }

    fn host(id: Option<&str>, mac: Option<&str>, ip: &str) -> StaticHost6 {
        let id = id.map(|d| d.parse().unwrap());
        let mac = mac.map(|m| m.parse().unwrap());
        StaticHost6::new(id, mac, None, ip.parse().unwrap(), None).unwrap()
    }

    #[test]
    fn accepts_a_valid_intent_and_refuses_each_mistake_by_name() {
        let nets: Vec<Ipv6Net> = vec!["fd00:77::1/64".parse().unwrap()];
        let good_r = [range("fd00:77::100", "fd00:77::1ff")];
        let good_h = [host(Some("00:01:02"), None, "fd00:77::10")];
        assert!(check(&nets, &good_r, &good_h).is_ok());
        let cases: [(Vec<Dhcp6Range>, Vec<StaticHost6>, &str); 7] = [
            (
                vec![range("fd00:78::1", "fd00:78::9")],
                vec![],
                "none of the network's IPv6 subnets",
            ),
            (
                vec![
                    range("fd00:77::10", "fd00:77::20"),
                    range("fd00:77::15", "fd00:77::30"),
                ],
                vec![],
                "overlaps fd00:77::10-fd00:77::20",
            ),
            (
                vec![],
                vec![host(Some("00:01"), None, "fd00:9::1")],
                "none of",
            ),
            (
                vec![],
                vec![host(Some("00:01"), None, "fd00:77::1")],
                "bridge's address",
            ),
            (
                vec![],
                vec![
                    host(Some("00:01"), None, "fd00:77::5"),
                    host(Some("0:1"), None, "fd00:77::6"),
                ],
                "DUID is listed twice",
            ),
            (
                vec![],
                vec![
                    host(None, Some("52:54:00:00:00:01"), "fd00:77::5"),
                    host(None, Some("52:54:00:00:00:01"), "fd00:77::6"),
                ],
                "MAC is listed twice",
            ),
            (
                vec![],
                vec![
                    host(Some("00:01"), None, "fd00:77::5"),
                    host(Some("00:02"), None, "fd00:77::5"),
                ],
                "address is listed twice",
            ),
        ];
        for (r, h, needle) in cases {
            let err = check(&nets, &r, &h).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}\nmissing {needle:?}");
        }
        let none = StaticHost6::new(None, None, None, "fd00:77::5".parse().unwrap(), None);
        assert!(none
            .unwrap_err()
            .to_string()
            .contains("id (DUID), a mac or a name"));
        assert!(check(&[], &good_r, &[])
            .unwrap_err()
            .to_string()
            .contains("no IPv6 address"));
    }
}
