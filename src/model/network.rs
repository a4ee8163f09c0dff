//! The DHCP intent of a network and the validated network virtmasq manages.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{DnsName, IfName, InvalidValue, Ipv4Net, Ipv4Range, LeaseTime, MacAddr, NetworkName};

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
    /// DNS domain of the network's guests.
    pub domain: Option<DnsName>,
    /// Whether to answer DNS on the bridge address (libvirt's dnsmasq does).
    pub dns: bool,
    /// The network's PXE boot profile, if any.
    pub pxe: Option<crate::pxe::PxeProfile>,
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
/// of the bridge's IPv4 subnets, MACs and addresses are unique.
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
    /// DNS domain.
    pub domain: Option<DnsName>,
    /// Whether DNS is served on the bridge.
    pub dns: bool,
    /// The PXE boot profile (checked against the network in `agent::desired`).
    pub pxe: Option<crate::pxe::PxeProfile>,
}

impl ManagedNetwork {
    /// Checks `intent` against the network's subnets.
    pub fn new(
        name: NetworkName,
        bridge: IfName,
        subnets: Vec<Ipv4Net>,
        intent: DhcpIntent,
    ) -> Result<Self, InvalidValue> {
        if subnets.is_empty() {
            return Err(InvalidValue::new(
                "network",
                name.as_str(),
                "it has no IPv4 address, so there is no subnet to serve",
            ));
        }
        let proxy = intent
            .pxe
            .as_ref()
            .is_some_and(|p| p.mode == crate::pxe::PxeMode::Proxy);
        if proxy && !intent.ranges.is_empty() {
            return Err(InvalidValue::new(
                "network",
                name.as_str(),
                "its PXE profile is proxy DHCP (another server hands out addresses) but it also has address ranges; drop one of them",
            ));
        }
        if !proxy && intent.ranges.is_empty() && !intent.hosts.iter().any(|h| h.ip.is_some()) {
            return Err(InvalidValue::new(
                "network",
                name.as_str(),
                "its DHCP intent has neither a range nor a host with an address",
            ));
        }
        for r in &intent.ranges {
            let net = subnet_of(&subnets, r.range.start()).unwrap_or(&subnets[0]);
            r.range.check_within(net)?;
        }
        check_overlaps(&intent.ranges)?;
        check_hosts(&subnets, &intent.hosts)?;
        Ok(Self {
            name,
            bridge,
            subnets,
            ranges: intent.ranges,
            hosts: intent.hosts,
            domain: intent.domain,
            dns: intent.dns,
            pxe: intent.pxe,
        })
    }

    /// Whether this network's PXE profile is proxy DHCP (another server hands out addresses).
    pub fn is_proxy(&self) -> bool {
        self.pxe
            .as_ref()
            .is_some_and(|p| p.mode == crate::pxe::PxeMode::Proxy)
    }

    /// The subnet that holds `ip`, if any.
    pub fn subnet_of(&self, ip: Ipv4Addr) -> Option<&Ipv4Net> {
        subnet_of(&self.subnets, ip)
    }
}

fn subnet_of(subnets: &[Ipv4Net], ip: Ipv4Addr) -> Option<&Ipv4Net> {
    subnets.iter().find(|n| n.contains(ip))
}

fn check_overlaps(ranges: &[DhcpRange]) -> Result<(), InvalidValue> {
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[i + 1..] {
            if a.range.contains(b.range.start()) || b.range.contains(a.range.start()) {
                return Err(InvalidValue::new(
                    "DHCP range",
                    &b.range.to_string(),
                    &format!("it overlaps {}", a.range),
                ));
            }
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
                })
                .collect(),
            domain: None,
            dns: true,
            pxe: None,
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
}
