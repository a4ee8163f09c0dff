//! IPv6 subnets, address ranges and DHCPv6 client identifiers (DUIDs), checked to be well formed
//! and, for ranges, to lie inside their subnet.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::InvalidValue;

/// dnsmasq serves DHCPv6 only on subnets of a /64 or longer ("prefix length must be at least
/// 64"), and advertises prefixes for SLAAC only as a /64.
pub const DHCP6_MIN_PREFIX: u8 = 64;

/// An interface address with its prefix, as in libvirt's `<ip family='ipv6' address='fd00::1'
/// prefix='64'>`: the host address is kept, the subnet is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Net {
    addr: Ipv6Addr,
    prefix: u8,
}

impl Ipv6Net {
    /// An address with a prefix length of 1 to 128.
    pub fn new(addr: Ipv6Addr, prefix: u8) -> Result<Self, InvalidValue> {
        if !(1..=128).contains(&prefix) {
            return Err(InvalidValue::new(
                "IPv6 prefix",
                &prefix.to_string(),
                "must be 1 to 128",
            ));
        }
        Ok(Self { addr, prefix })
    }

    /// The interface's own address.
    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u128 {
        u128::MAX
            .checked_shl(128 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The subnet's network address.
    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) & self.mask())
    }

    /// The /64 that holds the interface's address: what router advertisements announce for
    /// SLAAC (libvirt writes `dhcp-range=<address>,ra-only`, which dnsmasq takes as that /64).
    pub fn slaac_prefix(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) & (u128::MAX << 64))
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask() == u128::from(self.network())
    }

    /// Whether `ip` can be handed to a host: inside the subnet, not the subnet-router anycast
    /// address (all host bits zero) and not the interface's own address.
    pub fn is_host_addr(&self, ip: Ipv6Addr) -> bool {
        self.contains(ip) && (self.prefix >= 127 || ip != self.network()) && ip != self.addr
    }

    /// Checks that dnsmasq can serve DHCPv6 on this subnet.
    pub fn check_dhcp6(&self) -> Result<(), InvalidValue> {
        if self.prefix < DHCP6_MIN_PREFIX {
            return Err(InvalidValue::new(
                "IPv6 subnet",
                &self.to_string(),
                "dnsmasq serves DHCPv6 only on a /64 or a longer prefix",
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Ipv6Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv6Net {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidValue::new("IPv6 address/prefix", s, "expected an IPv6 address/N");
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Self::new(addr, prefix)
    }
}

/// An inclusive range of IPv6 addresses, start <= end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Range {
    start: Ipv6Addr,
    end: Ipv6Addr,
}

impl Ipv6Range {
    /// A range whose start is not after its end.
    pub fn new(start: Ipv6Addr, end: Ipv6Addr) -> Result<Self, InvalidValue> {
        if start > end {
            return Err(InvalidValue::new(
                "address range",
                &format!("{start}-{end}"),
                "its start is after its end",
            ));
        }
        Ok(Self { start, end })
    }

    /// First address.
    pub fn start(&self) -> Ipv6Addr {
        self.start
    }

    /// Last address.
    pub fn end(&self) -> Ipv6Addr {
        self.end
    }

    /// Number of addresses in the range (saturating at `u128::MAX`).
    pub fn len(&self) -> u128 {
        (u128::from(self.end) - u128::from(self.start)).saturating_add(1)
    }

    /// Never true: a range holds at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        (self.start..=self.end).contains(&ip)
    }

    /// Checks that every address of the range can be handed out on `net` and that the range
    /// does not include the interface's own address.
    pub fn check_within(&self, net: &Ipv6Net) -> Result<(), InvalidValue> {
        let shown = self.to_string();
        if !net.contains(self.start) || !net.contains(self.end) {
            return Err(InvalidValue::new(
                "DHCPv6 range",
                &shown,
                &format!(
                    "it is not inside the network's subnet {}/{}",
                    net.network(),
                    net.prefix()
                ),
            ));
        }
        if self.contains(net.addr()) {
            return Err(InvalidValue::new(
                "DHCPv6 range",
                &shown,
                &format!("it includes the bridge's own address {}", net.addr()),
            ));
        }
        if net.prefix() < 127 && self.contains(net.network()) {
            return Err(InvalidValue::new(
                "DHCPv6 range",
                &shown,
                &format!(
                    "it includes the subnet-router anycast address {}",
                    net.network()
                ),
            ));
        }
        net.check_dhcp6()
    }
}

impl fmt::Display for Ipv6Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// A DHCPv6 client identifier (DUID), as libvirt's `<host id=...>` and dnsmasq's
/// `dhcp-host=id:...` write it: bytes in hex, separated by colons (`00:01:00:01:2c:...`). Kept
/// lowercase, each byte as two digits, so two spellings of one DUID compare equal. 2 to 130
/// bytes (a type code and up to 128 bytes, RFC 8415).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Duid(String);

impl Duid {
    /// The canonical form: two lowercase digits a byte, colon-separated.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Duid {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| InvalidValue::new("DUID", s, reason);
        let mut bytes = Vec::new();
        for group in s.split(':') {
            let ok = (1..=2).contains(&group.len()) && group.bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err(bad(
                    "expected bytes in hex separated by ':' (00:01:00:01:...)",
                ));
            }
            bytes.push(format!("{:0>2}", group.to_ascii_lowercase()));
        }
        if !(2..=130).contains(&bytes.len()) {
            return Err(bad("a DUID is 2 to 130 bytes"));
        }
        Ok(Self(bytes.join(":")))
    }
}

impl fmt::Display for Duid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Duid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Duid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn subnet_arithmetic() {
        let net: Ipv6Net = "fd00:77::1/64".parse().unwrap();
        assert_eq!(net.network(), ip("fd00:77::"));
        assert!(net.contains(ip("fd00:77::ffff:1")));
        assert!(!net.contains(ip("fd00:78::1")));
        assert!(!net.is_host_addr(ip("fd00:77::")));
        assert!(!net.is_host_addr(ip("fd00:77::1")));
        assert!(net.is_host_addr(ip("fd00:77::2")));
        let wide: Ipv6Net = "2001:db8:1:2::1/48".parse().unwrap();
        assert_eq!(wide.slaac_prefix(), ip("2001:db8:1:2::"));
        assert!(wide.check_dhcp6().is_err());
        assert!("fd00::1/0".parse::<Ipv6Net>().is_err());
        assert!("fd00::1/129".parse::<Ipv6Net>().is_err());
        assert!("10.0.0.1/24".parse::<Ipv6Net>().is_err());
    }

    #[test]
    fn ranges_must_lie_inside_the_subnet() {
        let net: Ipv6Net = "fd00:77::5/64".parse().unwrap();
        let ok = Ipv6Range::new(ip("fd00:77::100"), ip("fd00:77::1ff")).unwrap();
        assert!(ok.check_within(&net).is_ok());
        assert_eq!(ok.len(), 256);
        let cases = [
            ("fd00:77::100", "fd00:78::1", "not inside"),
            ("fd00:77::", "fd00:77::2", "anycast"),
            ("fd00:77::4", "fd00:77::9", "own address"),
        ];
        for (a, b, needle) in cases {
            let r = Ipv6Range::new(ip(a), ip(b)).unwrap();
            let err = r.check_within(&net).unwrap_err().to_string();
            assert!(err.contains(needle), "{a}-{b}: {err}");
        }
        assert!(Ipv6Range::new(ip("fd00::9"), ip("fd00::2")).is_err());
        let wide: Ipv6Net = "fd00:1::1/48".parse().unwrap();
        let r = Ipv6Range::new(ip("fd00:1::100"), ip("fd00:1::200")).unwrap();
        assert!(r
            .check_within(&wide)
            .unwrap_err()
            .to_string()
            .contains("/64"));
    }

    #[test]
    fn duids_are_validated_and_canonical() {
        let d: Duid = "0:1:0:1:2C:AB:cd:ef:52:54:00:00:00:01".parse().unwrap();
        assert_eq!(d.as_str(), "00:01:00:01:2c:ab:cd:ef:52:54:00:00:00:01");
        for bad in [
            "",
            "01",
            "0:1:",
            "001:02",
            "zz:01",
            "00-01",
            "00:01,ignore",
            "00:01\n",
        ] {
            assert!(bad.parse::<Duid>().is_err(), "{bad:?}");
        }
        let long = vec!["ab"; 131].join(":");
        assert!(long.parse::<Duid>().is_err());
    }
}
