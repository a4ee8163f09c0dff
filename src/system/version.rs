//! What a dnsmasq binary is: its version and compile-time options, from `dnsmasq --version`.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// A dnsmasq binary's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsmasqVersion {
    /// The version as printed, e.g. `2.90`.
    pub version: String,
    /// (major, minor) for comparisons.
    pub numeric: (u32, u32),
    /// Compile-time options as printed (`DHCP`, `no-Lua`, `inotify`, ...).
    pub options: Vec<String>,
}

impl DnsmasqVersion {
    /// Parses the output of `dnsmasq --version`.
    pub fn parse(text: &str) -> Option<Self> {
        let first = text.lines().next()?;
        let version = first
            .split_whitespace()
            .skip_while(|w| *w != "version")
            .nth(1)?
            .to_owned();
        let mut parts = version.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        let options = text
            .lines()
            .find_map(|l| l.strip_prefix("Compile time options:"))
            .map(|o| o.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        Some(Self {
            version,
            numeric: (major, minor),
            options,
        })
    }

    /// Runs `binary --version`.
    pub fn of(binary: &Path) -> Option<Self> {
        let out = Command::new(binary).arg("--version").output().ok()?;
        Self::parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// Whether a compile-time option is present (`has("DHCP")` is false for `no-DHCP`).
    pub fn has(&self, option: &str) -> bool {
        self.options.iter().any(|o| o == option)
    }

    /// Whether this version is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.numeric >= (major, minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_bookworm() {
        let text = "Dnsmasq version 2.90  Copyright (c) 2000-2024 Simon Kelley\n\
            Compile time options: IPv6 GNU-getopt DBus no-UBus i18n IDN2 DHCP DHCPv6 no-Lua TFTP conntrack ipset nftset auth cryptohash DNSSEC loop-detect inotify dumpfile\n\n\
            This software comes with ABSOLUTELY NO WARRANTY.";
        let v = DnsmasqVersion::parse(text).unwrap();
        assert_eq!(v.version, "2.90");
        assert_eq!(v.numeric, (2, 90));
        assert!(v.has("DHCP") && v.has("inotify") && v.has("DBus"));
        assert!(!v.has("Lua") && !v.has("UBus"));
        assert!(v.at_least(2, 81) && !v.at_least(2, 91));
    }

    #[test]
    fn parses_test_releases_and_refuses_garbage() {
        let v = DnsmasqVersion::parse("Dnsmasq version 2.91test3  Copyright").unwrap();
        assert_eq!(v.numeric, (2, 91));
        assert!(DnsmasqVersion::parse("bash: dnsmasq: not found").is_none());
        assert!(DnsmasqVersion::parse("").is_none());
    }

    #[test]
    fn reads_the_installed_binary() {
        let v = DnsmasqVersion::of(Path::new("/usr/sbin/dnsmasq")).expect("dnsmasq installed");
        assert!(v.at_least(2, 63), "{v:?}");
    }
}
