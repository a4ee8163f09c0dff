//! `[networks.<name>]`: the DHCP intent of a libvirt network kept in virtmasq's configuration
//! (the alternative to the network's `<metadata>`, for those who keep intent out of libvirt).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::{
    Dhcp6Range, DhcpIntent, DhcpRange, DnsName, Duid, InvalidValue, Ipv4Range, Ipv6Range,
    LeaseTime, MacAddr, StaticHost, StaticHost6,
};

/// One network's intent as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Dynamic ranges, IPv4 or IPv6 (by their addresses).
    #[serde(default)]
    pub ranges: Vec<RangeConfig>,
    /// Static hosts: IPv4 by MAC, or DHCPv6 (an `id`, or an IPv6 `ip`).
    #[serde(default)]
    pub hosts: Vec<HostConfig>,
    /// DNS domain of the guests.
    #[serde(default)]
    pub domain: Option<DnsName>,
    /// Answer DNS on the bridge address.
    #[serde(default = "yes")]
    pub dns: bool,
    /// PXE boot profile (`[networks.<name>.pxe]`).
    #[serde(default)]
    pub pxe: Option<crate::pxe::PxeProfile>,
}

fn yes() -> bool {
    true
}

/// A range of either family; start and end are checked when the file is read, so an inverted
/// range is reported with its line and column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRange", into = "RawRange")]
pub enum RangeConfig {
    /// An IPv4 range.
    V4(DhcpRange),
    /// A DHCPv6 range.
    V6(Dhcp6Range),
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    start: IpAddr,
    end: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<LeaseTime>,
}

impl TryFrom<RawRange> for RangeConfig {
    type Error = InvalidValue;
    fn try_from(r: RawRange) -> Result<Self, Self::Error> {
        let lease = r.lease;
        match (r.start, r.end) {
            (IpAddr::V4(a), IpAddr::V4(b)) => Ok(Self::V4(DhcpRange {
                range: Ipv4Range::new(a, b)?,
                lease,
            })),
            (IpAddr::V6(a), IpAddr::V6(b)) => Ok(Self::V6(Dhcp6Range {
                range: Ipv6Range::new(a, b)?,
                lease,
            })),
            (a, b) => Err(InvalidValue::new(
                "address range",
                &format!("{a}-{b}"),
                "its start and end are of different address families",
            )),
        }
    }
}

impl From<RangeConfig> for RawRange {
    fn from(r: RangeConfig) -> Self {
        match r {
            RangeConfig::V4(r) => Self {
                start: r.range.start().into(),
                end: r.range.end().into(),
                lease: r.lease,
            },
            RangeConfig::V6(r) => Self {
                start: r.range.start().into(),
                end: r.range.end().into(),
                lease: r.lease,
            },
        }
    }
}

/// A host of either family: IPv4 hosts are found by `mac`; a host with an `id` (DUID) or an
/// IPv6 `ip` is a DHCPv6 host, found by its `id`, `mac` or `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawHost", into = "RawHost")]
pub enum HostConfig {
    /// An IPv4 host.
    V4(StaticHost),
    /// A DHCPv6 host.
    V6(StaticHost6),
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<MacAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<Duid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<DnsName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<LeaseTime>,
}

impl TryFrom<RawHost> for HostConfig {
    type Error = InvalidValue;
    fn try_from(h: RawHost) -> Result<Self, Self::Error> {
        let refuse = |why: &str| {
            let shown = [
                h.mac.map(|m| m.to_string()),
                h.id.as_ref().map(ToString::to_string),
            ]
            .into_iter()
            .flatten()
            .next()
            .unwrap_or_default();
            Err(InvalidValue::new("host", &shown, why))
        };
        match (h.ip, &h.id) {
            (Some(IpAddr::V6(ip)), _) => Ok(Self::V6(StaticHost6::new(
                h.id, h.mac, h.name, ip, h.lease,
            )?)),
            (None, Some(_)) => refuse("a DHCPv6 host (with an id) needs an IPv6 ip"),
            (Some(IpAddr::V4(_)), Some(_)) => {
                refuse("an id (DUID) is for DHCPv6 hosts, whose ip is IPv6")
            }
            (Some(IpAddr::V4(ip)), None) => Self::v4(h, Some(ip)),
            (None, None) => Self::v4(h, None),
        }
    }
}

impl HostConfig {
    fn v4(h: RawHost, ip: Option<std::net::Ipv4Addr>) -> Result<Self, InvalidValue> {
        let shown = h.mac.map(|m| m.to_string()).unwrap_or_default();
        let Some(mac) = h.mac else {
            let why = "an IPv4 host needs a mac (or give an IPv6 ip for a DHCPv6 host)";
            return Err(InvalidValue::new("host", &shown, why));
        };
        Ok(Self::V4(StaticHost {
            mac,
            ip,
            name: h.name,
            lease: h.lease,
        }))
    }
}

impl From<HostConfig> for RawHost {
    fn from(h: HostConfig) -> Self {
        match h {
            HostConfig::V4(h) => Self {
                mac: Some(h.mac),
                id: None,
                ip: h.ip.map(IpAddr::V4),
                name: h.name,
                lease: h.lease,
            },
            HostConfig::V6(h) => Self {
                mac: h.mac,
                id: h.id,
                ip: Some(IpAddr::V6(h.ip)),
                name: h.name,
                lease: h.lease,
            },
        }
    }
}

impl NetworkConfig {
    /// The section that carries `intent` (`adopt --to-config`).
    pub fn from_intent(intent: &DhcpIntent) -> Self {
        let v4 = intent.ranges.iter().cloned().map(RangeConfig::V4);
        let v6 = intent.ranges6.iter().cloned().map(RangeConfig::V6);
        let h4 = intent.hosts.iter().cloned().map(HostConfig::V4);
        let h6 = intent.hosts6.iter().cloned().map(HostConfig::V6);
        Self {
            ranges: v4.chain(v6).collect(),
            hosts: h4.chain(h6).collect(),
            domain: intent.domain.clone(),
            dns: intent.dns,
            pxe: intent.pxe.clone(),
        }
    }

    /// The intent this section describes (checked against the network's subnets later, when
    /// the network is known).
    pub fn intent(&self) -> DhcpIntent {
        let mut intent = DhcpIntent {
            domain: self.domain.clone(),
            dns: self.dns,
            pxe: self.pxe.clone(),
            ..DhcpIntent::default()
        };
        for r in &self.ranges {
            match r {
                RangeConfig::V4(r) => intent.ranges.push(r.clone()),
                RangeConfig::V6(r) => intent.ranges6.push(r.clone()),
            }
        }
        for h in &self.hosts {
            match h {
                HostConfig::V4(h) => intent.hosts.push(h.clone()),
                HostConfig::V6(h) => intent.hosts6.push(h.clone()),
            }
        }
        intent
    }
}
