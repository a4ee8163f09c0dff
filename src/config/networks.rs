//! `[networks.<name>]`: the DHCP intent of a libvirt network kept in virtmasq's configuration
//! (the alternative to the network's `<metadata>`, for those who keep intent out of libvirt).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::model::{DhcpIntent, DhcpRange, DnsName, Ipv4Range, LeaseTime, StaticHost};

/// One network's intent as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Dynamic ranges.
    #[serde(default)]
    pub ranges: Vec<RangeConfig>,
    /// Static hosts by MAC.
    #[serde(default)]
    pub hosts: Vec<StaticHost>,
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

/// A range; start and end are checked when the file is read, so an inverted range is reported
/// with its line and column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRange", into = "RawRange")]
pub struct RangeConfig(pub DhcpRange);

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    start: Ipv4Addr,
    end: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<LeaseTime>,
}

impl TryFrom<RawRange> for RangeConfig {
    type Error = crate::model::InvalidValue;
    fn try_from(r: RawRange) -> Result<Self, Self::Error> {
        Ok(Self(DhcpRange {
            range: Ipv4Range::new(r.start, r.end)?,
            lease: r.lease,
        }))
    }
}

impl From<RangeConfig> for RawRange {
    fn from(r: RangeConfig) -> Self {
        Self {
            start: r.0.range.start(),
            end: r.0.range.end(),
            lease: r.0.lease,
        }
    }
}

impl NetworkConfig {
    /// The intent this section describes (checked against the network's subnets later, when
    /// the network is known).
    pub fn intent(&self) -> DhcpIntent {
        DhcpIntent {
            ranges: self.ranges.iter().map(|r| r.0.clone()).collect(),
            hosts: self.hosts.clone(),
            domain: self.domain.clone(),
            dns: self.dns,
            pxe: self.pxe.clone(),
        }
    }
}
