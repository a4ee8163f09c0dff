//! What a network's libvirt definition asks of the dnsmasq that serves it beyond addresses and
//! hosts: libvirt's network driver writes these into its own dnsmasq's configuration, so a
//! network virtmasq serves must get them too (in its private instance, or scoped to its bridge
//! in the system dnsmasq).

use super::InvalidValue;

/// Settings from the network's own elements (`<forward>`, `<mtu>`, `<domain localOnly>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSettings {
    /// No `<forward>`: an isolated network. Its guests get no default route (an empty DHCP
    /// option 3) and their DNS queries are never forwarded upstream (`no-resolv`), as libvirt
    /// does for such a network.
    pub isolated: bool,
    /// `<mtu size=...>`: told to clients in DHCP option 26.
    pub mtu: Option<Mtu>,
    /// Whether the network's DNS domain is answered only locally (`local=/<domain>/`): libvirt
    /// does so only for `<domain localOnly='yes'>`; virtmasq's own `domain` intent always is.
    pub domain_local_only: bool,
    /// The network's own DNS records and forwarders (`<dns>`).
    pub dns: super::DnsRecords,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        Self {
            isolated: false,
            mtu: None,
            domain_local_only: true,
            dns: super::DnsRecords::default(),
        }
    }
}

/// An interface MTU that DHCP option 26 can carry: 68 (the least IPv4 allows) to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mtu(u16);

impl Mtu {
    /// The value.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl std::str::FromStr for Mtu {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<u16>() {
            Ok(v) if v >= 68 => Ok(Self(v)),
            _ => Err(InvalidValue::new(
                "MTU",
                s,
                "expected a whole number from 68 to 65535",
            )),
        }
    }
}

impl std::fmt::Display for Mtu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtus_dhcp_can_carry() {
        assert_eq!("9000".parse::<Mtu>().unwrap().get(), 9000);
        assert_eq!("68".parse::<Mtu>().unwrap().get(), 68);
        for bad in ["67", "0", "65536", "-1", "1500x", ""] {
            assert!(bad.parse::<Mtu>().is_err(), "{bad}");
        }
    }
}
