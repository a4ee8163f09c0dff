//! libvirt's lease view of the networks virtmasq serves: for each served network, the status
//! file libvirt reads for `virsh net-dhcp-leases` (`<lease_status_dir>/<bridge>.status`, see
//! [`crate::libvirt::lease_status`]) is rewritten whenever the lease file of the dnsmasq serving
//! it changes. The daemon follows the served set after each reconcile and looks at the lease
//! files every second; a file that did not change costs one `stat`.
//!
//! The status file is left in place when a network stops being served: libvirt keeps it too
//! (its own dnsmasq reads it back through its leases helper when libvirt serves the network
//! again, so the guests keep their addresses).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::libvirt::lease_status::{file_name, leases, status_json};
use crate::model::{Ipv4Net, Ipv6Net, ManagedNetwork};

/// One served network's lease source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Its bridge (names the status file).
    pub bridge: String,
    /// The lease file of the dnsmasq serving it.
    pub file: PathBuf,
    /// Its subnets: a shared lease file holds other networks' leases too.
    pub subnets: Vec<Ipv4Net>,
    /// Its IPv6 subnets (DHCPv6 leases).
    pub subnets6: Vec<Ipv6Net>,
}

impl Source {
    /// The source of `net`, served by a dnsmasq whose lease file is `file`.
    pub fn of(net: &ManagedNetwork, file: PathBuf) -> Self {
        Self {
            bridge: net.bridge.to_string(),
            file,
            subnets: net.subnets.clone(),
            subnets6: net.subnets6.clone(),
        }
    }

    fn belongs(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.subnets.iter().any(|s| s.contains(a)),
            IpAddr::V6(a) => self.subnets6.iter().any(|s| s.contains(a)),
        }
    }
}

/// What was last seen of a lease file, and written for it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    stamp: Option<(SystemTime, u64)>,
    written: String,
}

/// The status files kept current.
#[derive(Debug)]
pub struct LeaseView {
    dir: PathBuf,
    sources: Vec<Source>,
    seen: HashMap<String, Seen>,
}

impl LeaseView {
    /// Status files go to `dir` (libvirt's dnsmasq state directory), if it exists.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            sources: Vec::new(),
            seen: HashMap::new(),
        }
    }

    /// The networks served now; each is looked at on the next [`LeaseView::refresh`].
    pub fn follow(&mut self, sources: Vec<Source>) {
        if sources != self.sources {
            self.seen
                .retain(|b, _| sources.iter().any(|s| s.bridge == *b));
            for s in &sources {
                if !self.sources.contains(s) {
                    self.seen.remove(&s.bridge);
                }
            }
            self.sources = sources;
        }
    }

    /// Rewrites the status file of every network whose lease file changed. Returns how many
    /// files were written.
    pub fn refresh(&mut self) -> usize {
        if !self.dir.is_dir() {
            return 0;
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut written = 0;
        for source in &self.sources {
            let stamp = stamp(&source.file);
            let seen = self.seen.get(&source.bridge);
            if seen.is_some_and(|s| s.stamp == stamp && stamp.is_some()) {
                continue;
            }
            let text = crate::fsutil::read_if_exists(&source.file)
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let json = status_json(&leases(&text, |ip| source.belongs(ip), now));
            let path = self.dir.join(file_name(&source.bridge));
            if seen.is_none_or(|s| s.written != json) {
                match crate::fsutil::write_atomic(&path, json.as_bytes(), 0o644) {
                    Ok(()) => written += 1,
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "lease status not written");
                        continue;
                    }
                }
            }
            self.seen.insert(
                source.bridge.clone(),
                Seen {
                    stamp,
                    written: json,
                },
            );
        }
        written
    }
}

/// A file's modification time and size, if it exists.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_on_change_only_and_only_where_libvirt_reads() {
        let dir = tempfile::tempdir().unwrap();
        let status_dir = dir.path().join("libvirt-dnsmasq");
        let lease_file = dir.path().join("leases");
        std::fs::write(
            &lease_file,
            "1900000000 52:54:00:aa:00:01 10.9.0.101 g1 *\n1900000000 52:54:00:aa:00:02 10.8.0.9 other *\n\
             duid 00:01:00:01:2c:1f:aa:bb:52:54:00:00:00:05\n\
             1900000000 1234 fd00:9::10 g6 00:03:00:01:52:54:00:aa:00:01\n\
             1900000000 1235 fd00:8::10 other6 00:03:00:01:52:54:00:aa:00:02\n",
        )
        .unwrap();
        let mut view = LeaseView::new(status_dir.clone());
        view.follow(vec![Source {
            bridge: "virbr9".into(),
            file: lease_file.clone(),
            subnets: vec!["10.9.0.1/24".parse().unwrap()],
            subnets6: vec!["fd00:9::1/64".parse().unwrap()],
        }]);
        assert_eq!(
            view.refresh(),
            0,
            "no libvirt state directory: nothing written"
        );
        std::fs::create_dir(&status_dir).unwrap();
        assert_eq!(view.refresh(), 1);
        let text = std::fs::read_to_string(status_dir.join("virbr9.status")).unwrap();
        assert!(
            text.contains("10.9.0.101") && !text.contains("10.8.0.9"),
            "{text}"
        );
        // DHCPv6 leases of the network's IPv6 subnets too, not another network's.
        assert!(
            text.contains("fd00:9::10") && !text.contains("fd00:8::10"),
            "{text}"
        );
        assert_eq!(view.refresh(), 0, "unchanged lease file");
        std::fs::write(
            &lease_file,
            "1900000000 52:54:00:aa:00:03 10.9.0.103 g3 *\n",
        )
        .unwrap();
        assert_eq!(view.refresh(), 1);
        let text = std::fs::read_to_string(status_dir.join("virbr9.status")).unwrap();
        assert!(
            text.contains("10.9.0.103") && !text.contains("10.9.0.101"),
            "{text}"
        );
        view.follow(Vec::new());
        assert_eq!(view.refresh(), 0);
        assert!(
            status_dir.join("virbr9.status").exists(),
            "left for libvirt"
        );
    }
}
