//! The DHCP intent of a network and the validated network virtmasq manages.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::network6::{self, Dhcp6Range, StaticHost6};
use super::{
    DnsName, IfName, InvalidValue, Ipv4Net, Ipv4Range, Ipv6Net, LeaseTime, MacAddr, NetworkName,
};

/// One DHCP range with its lease time (dnsmasq's default of one hour when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRange {
    /// The addresses handed out.
    pub range: Ipv4Range,
    /// Lease time for this range.
    pub lease: Option<LeaseTime>,
}

/// A host with a fixed address and/or name, keyed by MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticHost {
    /// The client's MAC.
    pub mac: MacAddr,
    /// Its fixed address, if any.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// Its host name, if any (also served in DNS).
    #[serde(default)]
    pub name: Option<DnsName>,
    /// Its own lease time (libvirt's per-host `<lease>`); the range's otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseTime>,
}

/// What a network should be served: the DHCP intent of a network that libvirt does not serve
/// itself, from the network's `<metadata>` or virtmasq's configuration. Not yet checked against
/// the network's subnets: [`ManagedNetwork::new`] does that.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpIntent {
    /// Dynamic ranges.
    pub ranges: Vec<DhcpRange>,
    /// Static hosts.
    pub hosts: Vec<StaticHost>,
    /// DHCPv6 ranges.
    pub ranges6: Vec<Dhcp6Range>,
    /// DHCPv6 hosts.
    pub hosts6: Vec<StaticHost6>,
    /// DNS domain of the network's guests.
    pub domain: Option<DnsName>,
    /// Whether to answer DNS on the bridge address (libvirt's dnsmasq does).
    pub dns: bool,
    /// The network's PXE boot profile, if any.
    pub pxe: Option<crate::model::pxe::profile::PxeProfile>,
}

/// Where a network's intent came from, so `status` can say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IntentSource {
    /// The network's `<metadata>` in virtmasq's XML namespace.
    Metadata,
    /// A `[networks.<name>]` section of virtmasq's configuration.
    Config,
}

/// A libvirt network that virtmasq serves, fully validated: every range and host lies inside one
/// of the bridge's subnets of its family, MACs, DUIDs and addresses are unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedNetwork {
    /// libvirt's name for the network.
    pub name: NetworkName,
    /// The bridge that carries it.
    pub bridge: IfName,
    /// The bridge's IPv4 addresses with their prefixes (libvirt's `<ip>` elements).
    pub subnets: Vec<Ipv4Net>,
    /// Validated dynamic ranges.
    pub ranges: Vec<DhcpRange>,
    /// Validated static hosts.
    pub hosts: Vec<StaticHost>,
    /// The bridge's IPv6 addresses with their prefixes: each gets router advertisements.
    pub subnets6: Vec<Ipv6Net>,
    /// Validated DHCPv6 ranges.
    pub ranges6: Vec<Dhcp6Range>,
    /// Validated DHCPv6 hosts.
    pub hosts6: Vec<StaticHost6>,
    /// DNS domain.
    pub domain: Option<DnsName>,
    /// Whether DNS is served on the bridge.
    pub dns: bool,
    /// The PXE boot profile (checked against the network in `agent::desired`).
    pub pxe: Option<crate::model::pxe::profile::PxeProfile>,
    /// What the network's libvirt definition asks beyond addresses (isolation, MTU, domain).
    pub settings: super::NetworkSettings,
}

impl ManagedNetwork {
    /// Checks `intent` against the network's IPv4 subnets (a network without IPv6).
    pub fn new(
        name: NetworkName,
        bridge: IfName,
        subnets: Vec<Ipv4Net>,
        intent: DhcpIntent,
    ) -> Result<Self, InvalidValue> {
        Self::dual(name, bridge, subnets, Vec::new(), intent)
    }

    /// Checks `intent` against the network's IPv4 and IPv6 subnets. A network needs something
    /// to serve: an IPv4 range or host address, proxy DHCP, or an IPv6 subnet (which gets
    /// router advertisements even without DHCPv6).
    pub fn dual(
        name: NetworkName,
        bridge: IfName,
        subnets: Vec<Ipv4Net>,
        subnets6: Vec<Ipv6Net>,
        intent: DhcpIntent,
    ) -> Result<Self, InvalidValue> {
        let refuse = |reason: &str| Err(InvalidValue::new("network", name.as_str(), reason));
        if subnets.is_empty() && subnets6.is_empty() {
            return refuse("it has no IP address, so there is no subnet to serve");
        }
        let proxy = intent
            .pxe
            .as_ref()
            .is_some_and(|p| p.mode == crate::model::pxe::profile::PxeMode::Proxy);
        if proxy && !intent.ranges.is_empty() {
            return refuse("its PXE profile is proxy DHCP (another server hands out addresses) but it also has address ranges; drop one of them");
        }
        let v4_service = !intent.ranges.is_empty() || intent.hosts.iter().any(|h| h.ip.is_some());
        if subnets.is_empty() && (v4_service || intent.pxe.is_some()) {
            return refuse(
                "its DHCP intent has IPv4 ranges, hosts or PXE, but it has no IPv4 address",
            );
        }
        if !proxy && !v4_service && subnets6.is_empty() {
            return refuse("its DHCP intent has neither a range nor a host with an address");
        }
        for r in &intent.ranges {
            let net = subnet_of(&subnets, r.range.start()).unwrap_or(&subnets[0]);
            r.range.check_within(net)?;
        }
        check_overlaps(&intent.ranges)?;
        check_hosts(&subnets, &intent.hosts)?;
        network6::check(&subnets6, &intent.ranges6, &intent.hosts6)?;
        Ok(Self {
            name,
            bridge,
            subnets,
            ranges: intent.ranges,
            hosts: intent.hosts,
            subnets6,
            ranges6: intent.ranges6,
            hosts6: intent.hosts6,
            domain: intent.domain,
            dns: intent.dns,
            pxe: intent.pxe,
            settings: super::NetworkSettings::default(),
        })
    }

    /// Whether any IPv6 subnet is served with DHCPv6 (dnsmasq then needs `enable-ra` for the
    /// router advertisements that tell clients to ask).
    pub fn has_dhcp6(&self) -> bool {
        !self.ranges6.is_empty() || !self.hosts6.is_empty()
    }

    /// Whether `subnet` is served with DHCPv6 (a range or a host address in it); the others
    /// get router advertisements for SLAAC.
    pub fn dhcp6_on(&self, subnet: &Ipv6Net) -> bool {
        self.ranges6
            .iter()
            .any(|r| subnet.contains(r.range.start()))
            || self.hosts6.iter().any(|h| subnet.contains(h.ip))
    }

    /// Whether this network's PXE profile is proxy DHCP (another server hands out addresses).
    pub fn is_proxy(&self) -> bool {
        self.pxe
            .as_ref()
            .is_some_and(|p| p.mode == crate::model::pxe::profile::PxeMode::Proxy)
    }

    /// The subnet that holds `ip`, if any.
    pub fn subnet_of(&self, ip: Ipv4Addr) -> Option<&Ipv4Net> {
        subnet_of(&self.subnets, ip)
    }
}

fn subnet_of(subnets: &[Ipv4Net], ip: Ipv4Addr) -> Option<&Ipv4Net> {
    subnets.iter().find(|n| n.contains(ip))
}

/// Refuses overlapping ranges, in O(n log n): sorted by start, a range overlaps an earlier one
/// exactly when it starts before the furthest end seen so far. The error names the two in the
/// order they were given.
fn check_overlaps(ranges: &[DhcpRange]) -> Result<(), InvalidValue> {
    let mut order: Vec<(usize, &DhcpRange)> = ranges.iter().enumerate().collect();
    order.sort_by_key(|(i, r)| (r.range.start(), *i));
    let mut furthest: Option<(usize, &DhcpRange)> = None;
    for (i, r) in order {
        if let Some((j, f)) = furthest {
            if r.range.start() <= f.range.end() {
                let (first, later) = if j < i { (f, r) } else { (r, f) };
                return Err(InvalidValue::new(
                    "DHCP range",
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

fn check_hosts(subnets: &[Ipv4Net], hosts: &[StaticHost]) -> Result<(), InvalidValue> {
    let mut macs = HashSet::new();
    let mut ips = HashSet::new();
    for h in hosts {
        if !macs.insert(h.mac) {
            return Err(InvalidValue::new(
                "static host",
                &h.mac.to_string(),
                "this MAC is listed twice",
            ));
        }
        let Some(ip) = h.ip else { continue };
        match subnet_of(subnets, ip) {
            Some(net) if net.is_host_addr(ip) && ip != net.addr() => {}
            _ => {
                return Err(InvalidValue::new(
                    "static host address",
                    &format!("{},{ip}", h.mac),
                    "the address is not a usable host address of the network's subnets",
                ))
            }
        }
        if !ips.insert(ip) {
            return Err(InvalidValue::new(
                "static host address",
                &ip.to_string(),
                "two hosts have this address",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(ranges: &[(&str, &str)], hosts: &[(&str, Option<&str>)]) -> DhcpIntent {
        DhcpIntent {
            ranges: ranges
                .iter()
                .map(|(a, b)| DhcpRange {
                    range: Ipv4Range::new(a.parse().unwrap(), b.parse().unwrap()).unwrap(),
                    lease: None,
                })
                .collect(),
            hosts: hosts
                .iter()
                .map(|(m, ip)| StaticHost {
                    mac: m.parse().unwrap(),
                    ip: ip.map(|i| i.parse().unwrap()),
                    name: None,
                    lease: None,
                })
                .collect(),
            domain: None,
            dns: true,
            pxe: None,
            ..DhcpIntent::default()
        }
    }

    fn build(i: DhcpIntent) -> Result<ManagedNetwork, InvalidValue> {
        ManagedNetwork::new(
            "lab".parse().unwrap(),
            "vqbr0".parse().unwrap(),
            vec!["10.77.0.1/24".parse().unwrap()],
            i,
        )
    }

    #[test]
    fn valid_network() {
        let n = build(intent(
            &[("10.77.0.100", "10.77.0.150")],
            &[("52:54:00:00:00:01", Some("10.77.0.10"))],
        ))
        .unwrap();
        assert_eq!(n.ranges.len(), 1);
        assert!(n.subnet_of("10.77.0.10".parse().unwrap()).is_some());
    }

    #[test]
    fn refuses_bad_intent() {
        let cases = [
            intent(&[("10.77.1.1", "10.77.1.9")], &[]),
            intent(
                &[("10.77.0.10", "10.77.0.20"), ("10.77.0.15", "10.77.0.30")],
                &[],
            ),
            intent(&[], &[]),
            intent(
                &[("10.77.0.10", "10.77.0.20")],
                &[("52:54:00:00:00:01", Some("10.9.0.1"))],
            ),
            intent(
                &[("10.77.0.10", "10.77.0.20")],
                &[("52:54:00:00:00:01", None), ("52:54:00:00:00:01", None)],
            ),
            intent(
                &[("10.77.0.10", "10.77.0.20")],
                &[
                    ("52:54:00:00:00:01", Some("10.77.0.5")),
                    ("52:54:00:00:00:02", Some("10.77.0.5")),
                ],
            ),
            intent(
                &[("10.77.0.10", "10.77.0.20")],
                &[("52:54:00:00:00:01", Some("10.77.0.1"))],
            ),
        ];
        for c in cases {
            assert!(build(c.clone()).is_err(), "{c:?}");
        }
    }

    /// Overlaps are found wherever the two ranges are in the list, named in list order, and
    /// checking many ranges stays fast (a hookData may hold hundreds of thousands).
    #[test]
    fn overlaps_are_found_in_any_order_and_in_linear_log_time() {
        let r = |a: &str, b: &str| DhcpRange {
            range: Ipv4Range::new(a.parse().unwrap(), b.parse().unwrap()).unwrap(),
            lease: None,
        };
        /// The ranges, and the overlap found: (the later range, the earlier one).
        type Case<'a> = (&'a [DhcpRange], Option<(&'a str, &'a str)>);
        let cases: [Case; 5] = [
            (
                &[r("10.0.0.1", "10.0.0.9"), r("10.0.0.10", "10.0.0.20")],
                None,
            ),
            (
                &[r("10.0.0.30", "10.0.0.40"), r("10.0.0.1", "10.0.0.9")],
                None,
            ),
            (
                &[r("10.0.0.5", "10.0.0.30"), r("10.0.0.1", "10.0.0.6")],
                Some(("10.0.0.1-10.0.0.6", "10.0.0.5-10.0.0.30")),
            ),
            // Contained in an earlier, longer range that a range in between does not reach.
            (
                &[
                    r("10.0.0.1", "10.0.0.100"),
                    r("10.0.0.2", "10.0.0.3"),
                    r("10.0.0.50", "10.0.0.60"),
                ],
                Some(("10.0.0.2-10.0.0.3", "10.0.0.1-10.0.0.100")),
            ),
            (
                &[r("10.0.0.1", "10.0.0.1"), r("10.0.0.1", "10.0.0.1")],
                Some(("10.0.0.1-10.0.0.1", "10.0.0.1-10.0.0.1")),
            ),
        ];
        for (ranges, want) in cases {
            let got = check_overlaps(ranges).err();
            match (got, want) {
                (None, None) => {}
                (Some(e), Some((later, first))) => {
                    assert_eq!(e.input, later, "{e}");
                    assert!(e.reason.ends_with(first), "{e}");
                }
                (got, want) => panic!("{ranges:?}: {got:?}, wanted {want:?}"),
            }
        }
        // 200,000 disjoint ranges: the pairwise check took minutes (20 billion comparisons).
        let many: Vec<DhcpRange> = (0..200_000u32)
            .map(|i| {
                let a = std::net::Ipv4Addr::from(0x0a00_0000 + i * 4);
                let b = std::net::Ipv4Addr::from(0x0a00_0000 + i * 4 + 1);
                DhcpRange {
                    range: Ipv4Range::new(a, b).unwrap(),
                    lease: None,
                }
            })
            .collect();
        assert!(check_overlaps(&many).is_ok());
    }

    /// An IPv6 subnet is something to serve on its own (router advertisements), several IPv4
    /// and IPv6 subnets go together, and IPv4 intent still needs an IPv4 subnet.
    #[test]
    fn ipv6_subnets_alone_or_beside_ipv4() {
        let v6: Vec<Ipv6Net> = vec![
            "fd00:77::1/64".parse().unwrap(),
            "fd00:78::1/64".parse().unwrap(),
        ];
        let dual = |v4: Vec<Ipv4Net>, v6: Vec<Ipv6Net>, i: DhcpIntent| {
            ManagedNetwork::dual("lab".parse().unwrap(), "vqbr0".parse().unwrap(), v4, v6, i)
        };
        let slaac_only = dual(vec![], v6.clone(), DhcpIntent::default()).unwrap();
        assert!(!slaac_only.has_dhcp6());
        let mut i = intent(&[("10.77.0.100", "10.77.0.150")], &[]);
        i.ranges6.push(Dhcp6Range {
            range: crate::model::Ipv6Range::new(
                "fd00:78::100".parse().unwrap(),
                "fd00:78::1ff".parse().unwrap(),
            )
            .unwrap(),
            lease: None,
        });
        let both = dual(vec!["10.77.0.1/24".parse().unwrap()], v6.clone(), i.clone()).unwrap();
        assert!(both.has_dhcp6());
        assert!(!both.dhcp6_on(&v6[0]) && both.dhcp6_on(&v6[1]));
        let err = dual(vec![], v6.clone(), i).unwrap_err().to_string();
        assert!(err.contains("no IPv4 address"), "{err}");
        let err = dual(vec![], vec![], DhcpIntent::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no IP address"), "{err}");
    }

    #[test]
    fn a_huge_refused_value_is_not_kept_whole() {
        let huge = "x".repeat(10 << 20);
        let e = InvalidValue::new("interface name", &huge, "too long");
        assert!(
            e.input.len() < 200 && e.input.contains("10485760 bytes"),
            "{}",
            e.input.len()
        );
        assert!(e.to_string().len() < 300);
    }
}
