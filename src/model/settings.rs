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
    /// `<dnsmasq:options>`: raw lines for the network's own dnsmasq, after virtmasq's.
    pub raw_options: Vec<RawOption>,
    /// Reverse zones answered locally only (`<ip localPtr='yes'>`).
    pub local_ptr: Vec<super::DnsName>,
    /// libvirt's `<bootp>`: one boot file for every client, and its TFTP server.
    pub bootp: Option<Bootp>,
    /// libvirt's `<tftp root>`: TFTP served from this directory (checked to be one field of a
    /// dnsmasq line).
    pub tftp_root: Option<std::path::PathBuf>,
}

/// libvirt's `<bootp file= server=>` (IPv4): `dhcp-boot=<file>[,,<server>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootp {
    /// The boot file, a path or URL.
    pub file: BootpFile,
    /// The TFTP server, when it is not the bridge itself.
    pub server: Option<std::net::Ipv4Addr>,
}

/// A `<bootp file>`: a path or URL of 1 to 255 ASCII letters, digits and `._-/+:@~%`, so that
/// it is one field of `dhcp-boot=` as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootpFile(String);

impl BootpFile {
    /// The file.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for BootpFile {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = |c: char| c.is_ascii_alphanumeric() || "._-/+:@~%".contains(c);
        if s.is_empty() || s.len() > 255 {
            return Err(InvalidValue::new(
                "boot file",
                s,
                "a boot file name must be 1 to 255 bytes",
            ));
        }
        match s.chars().find(|c| !ok(*c)) {
            Some(c) => Err(InvalidValue::new(
                "boot file",
                s,
                &format!("character {c:?} is not allowed (letters, digits, ._-/+:@~% only)"),
            )),
            None => Ok(Self(s.to_owned())),
        }
    }
}

impl Default for NetworkSettings {
    fn default() -> Self {
        Self {
            isolated: false,
            mtu: None,
            domain_local_only: true,
            dns: super::DnsRecords::default(),
            raw_options: Vec::new(),
            local_ptr: Vec::new(),
            bootp: None,
            tftp_root: None,
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

/// One line of `<dnsmasq:options>`: a dnsmasq option as its configuration file takes it
/// (`name` or `name=value`). One printable line, and none of the options through which
/// virtmasq binds, supervises and keeps the state of the instance: those would take the
/// network's dnsmasq away from virtmasq (`dnsmasq --test` checks the rest before it runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOption(String);

/// Options virtmasq sets for every private instance and that a network may not change.
pub const CONTROLLED_OPTIONS: &[&str] = &[
    "interface",
    "except-interface",
    "listen-address",
    "bind-interfaces",
    "bind-dynamic",
    "pid-file",
    "dhcp-leasefile",
    "dhcp-hostsfile",
    "conf-file",
    "conf-dir",
    "conf-script",
    "user",
    "group",
    "keep-in-foreground",
    "no-daemon",
];

impl RawOption {
    /// The line.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for RawOption {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| Err(InvalidValue::new("dnsmasq option", s, why));
        let line = s.trim();
        if line.is_empty() || line.starts_with('#') {
            return bad("it is empty");
        }
        if !line.chars().all(|c| !c.is_control() || c == '\t') {
            return bad("it spans lines or holds control characters");
        }
        let name = line.split('=').next().unwrap_or_default().trim();
        let name = name.strip_prefix("--").unwrap_or(name);
        if CONTROLLED_OPTIONS.contains(&name) {
            return bad("virtmasq sets this option for the network's dnsmasq itself");
        }
        Ok(Self(line.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_options_are_one_line_and_leave_virtmasqs_own_alone() {
        for ok in [
            "log-queries",
            "dhcp-option=option:ntp-server,10.0.0.1",
            " cache-size=0 ",
        ] {
            assert!(ok.parse::<RawOption>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "# note",
            "a\nb",
            "interface=eth0",
            "--pid-file=/x",
            "conf-dir=/etc",
        ] {
            assert!(bad.parse::<RawOption>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mtus_dhcp_can_carry() {
        assert_eq!("9000".parse::<Mtu>().unwrap().get(), 9000);
        assert_eq!("68".parse::<Mtu>().unwrap().get(), 68);
        for bad in ["67", "0", "65536", "-1", "1500x", ""] {
            assert!(bad.parse::<Mtu>().is_err(), "{bad}");
        }
    }
}
