//! What a dnsmasq binary is: its version and compile-time options, from `dnsmasq --version`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

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

    /// Runs `binary --version`, once per binary file: the answer is kept with the file's
    /// identity (device, inode, size, modification time), so that the daemon's reconciles do
    /// not spawn it again, and a binary replaced by an upgrade is asked again.
    pub fn of(binary: &Path) -> Option<Self> {
        /// The last answer of each binary (a few paths at most: the configured one).
        static SEEN: Mutex<Vec<(FileId, Option<DnsmasqVersion>)>> = Mutex::new(Vec::new());
        let id = FileId::of(binary);
        if let Some(id) = &id {
            let seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, v)) = seen.iter().find(|(known, _)| known == id) {
                return v.clone();
            }
        }
        let version = Command::new(binary)
            .arg("--version")
            .output()
            .ok()
            .and_then(|out| Self::parse(&String::from_utf8_lossy(&out.stdout)));
        if let Some(id) = id {
            let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
            seen.retain(|(known, _)| known.path != id.path);
            if seen.len() >= 8 {
                seen.remove(0);
            }
            seen.push((id, version.clone()));
        }
        version
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

/// Which file a path names, and its state: equal only while the file is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileId {
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileId {
    fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        Some(Self {
            path: path.to_owned(),
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
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

    /// A binary is asked once while it is unchanged, and again once it is replaced.
    #[test]
    fn asks_a_binary_once_until_it_changes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (bin, runs) = (dir.path().join("dnsmasq"), dir.path().join("runs"));
        let script = |v: &str| {
            let text = format!(
                "#!/bin/sh\necho run >> {}\necho 'Dnsmasq version {v}  Copyright'\n",
                runs.display()
            );
            let tmp = dir.path().join("new");
            std::fs::write(&tmp, text).unwrap();
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&tmp, &bin).unwrap();
        };
        let count = || std::fs::read_to_string(&runs).unwrap().lines().count();
        script("2.89");
        for _ in 0..3 {
            assert_eq!(DnsmasqVersion::of(&bin).unwrap().numeric, (2, 89));
        }
        assert_eq!(count(), 1);
        script("2.90test1");
        assert_eq!(DnsmasqVersion::of(&bin).unwrap().numeric, (2, 90));
        assert_eq!(count(), 2);
    }
}
