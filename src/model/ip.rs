//! IPv4 subnets and address ranges, checked to be well formed and to lie inside their subnet.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::InvalidValue;

/// An interface address with its prefix, as in libvirt's `<ip address='10.0.0.1' prefix='24'>`:
/// the host address is kept, the subnet is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// An address with a prefix length of 0 to 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, InvalidValue> {
        if prefix > 32 {
            return Err(InvalidValue::new(
                "IPv4 prefix",
                &prefix.to_string(),
                "must be 0 to 32",
            ));
        }
        Ok(Self { addr, prefix })
    }

    /// An address with a dotted netmask, which must be contiguous (`255.255.255.0`).
    pub fn with_netmask(addr: Ipv4Addr, mask: Ipv4Addr) -> Result<Self, InvalidValue> {
        let bits = u32::from(mask);
        let prefix = bits.leading_ones();
        if bits.checked_shl(prefix).unwrap_or(0) != 0 {
            return Err(InvalidValue::new(
                "netmask",
                &mask.to_string(),
                "its one-bits are not contiguous",
            ));
        }
        Self::new(addr, prefix as u8)
    }

    /// The interface's own address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask in dotted form.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(
            u32::MAX
                .checked_shl(32 - u32::from(self.prefix))
                .unwrap_or(0),
        )
    }

    /// The subnet's network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & u32::from(self.netmask()))
    }

    /// The subnet's broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) | !u32::from(self.netmask()))
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.netmask()) == u32::from(self.network())
    }

    /// Whether `ip` can be handed to a host: inside the subnet and neither its network nor its
    /// broadcast address (for prefixes shorter than 31).
    pub fn is_host_addr(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && (self.prefix >= 31 || (ip != self.network() && ip != self.broadcast()))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidValue::new("IPv4 address/prefix", s, "expected a.b.c.d/N");
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Self::new(addr, prefix)
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An inclusive range of IPv4 addresses, start <= end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Range {
    start: Ipv4Addr,
    end: Ipv4Addr,
}

impl Ipv4Range {
    /// A range whose start is not after its end.
    pub fn new(start: Ipv4Addr, end: Ipv4Addr) -> Result<Self, InvalidValue> {
        if u32::from(start) > u32::from(end) {
            return Err(InvalidValue::new(
                "address range",
                &format!("{start}-{end}"),
                "its start is after its end",
            ));
        }
        Ok(Self { start, end })
    }

    /// First address.
    pub fn start(&self) -> Ipv4Addr {
        self.start
    }

    /// Last address.
    pub fn end(&self) -> Ipv4Addr {
        self.end
    }

    /// Number of addresses in the range.
    pub fn len(&self) -> u64 {
        u64::from(u32::from(self.end)) - u64::from(u32::from(self.start)) + 1
    }

    /// Never true: a range holds at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.start)..=u32::from(self.end)).contains(&u32::from(ip))
    }

    /// Checks that every address of the range can be handed out on `net`, and that the range
    /// does not include the interface's own address.
    pub fn check_within(&self, net: &Ipv4Net) -> Result<(), InvalidValue> {
        let shown = self.to_string();
        if !net.is_host_addr(self.start) || !net.is_host_addr(self.end) {
            return Err(InvalidValue::new(
                "DHCP range",
                &shown,
                &format!(
                    "it is not inside the network's subnet {}/{} (usable hosts only)",
                    net.network(),
                    net.prefix()
                ),
            ));
        }
        if self.contains(net.addr()) {
            return Err(InvalidValue::new(
                "DHCP range",
                &shown,
                &format!("it includes the bridge's own address {}", net.addr()),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Ipv4Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn subnet_arithmetic() {
        let net: Ipv4Net = "192.168.122.1/24".parse().unwrap();
        assert_eq!(net.network(), ip("192.168.122.0"));
        assert_eq!(net.broadcast(), ip("192.168.122.255"));
        assert_eq!(net.netmask(), ip("255.255.255.0"));
        assert!(net.contains(ip("192.168.122.200")));
        assert!(!net.contains(ip("192.168.123.1")));
        assert!(!net.is_host_addr(ip("192.168.122.255")));
        let zero = Ipv4Net::new(ip("10.0.0.1"), 0).unwrap();
        assert_eq!(zero.netmask(), ip("0.0.0.0"));
        let host = Ipv4Net::new(ip("10.0.0.1"), 32).unwrap();
        assert!(host.is_host_addr(ip("10.0.0.1")));
    }

    #[test]
    fn netmasks() {
        let net = Ipv4Net::with_netmask(ip("10.1.2.3"), ip("255.255.240.0")).unwrap();
        assert_eq!(net.prefix(), 20);
        assert!(Ipv4Net::with_netmask(ip("10.1.2.3"), ip("255.0.255.0")).is_err());
        assert!(Ipv4Net::new(ip("10.1.2.3"), 33).is_err());
        assert!("10.1.2.3".parse::<Ipv4Net>().is_err());
    }

    #[test]
    fn ranges_must_lie_inside_the_subnet() {
        let net: Ipv4Net = "10.77.0.1/24".parse().unwrap();
        let ok = Ipv4Range::new(ip("10.77.0.100"), ip("10.77.0.150")).unwrap();
        assert!(ok.check_within(&net).is_ok());
        assert_eq!(ok.len(), 51);
        let outside = Ipv4Range::new(ip("10.77.0.100"), ip("10.77.1.10")).unwrap();
        let err = outside.check_within(&net).unwrap_err().to_string();
        assert!(
            err.contains("10.77.0.100-10.77.1.10") && err.contains("10.77.0.0/24"),
            "{err}"
        );
        let own = Ipv4Range::new(ip("10.77.0.1"), ip("10.77.0.9")).unwrap();
        assert!(own.check_within(&net).is_err());
        let bcast = Ipv4Range::new(ip("10.77.0.200"), ip("10.77.0.255")).unwrap();
        assert!(bcast.check_within(&net).is_err());
        assert!(Ipv4Range::new(ip("10.77.0.9"), ip("10.77.0.2")).is_err());
    }
}
