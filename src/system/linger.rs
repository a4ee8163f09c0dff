//! A stopped network's lines left in the running system dnsmasq instead of restarting it.
//!
//! Removing a fragment changes nothing until dnsmasq restarts; a restart cuts DNS and DHCP
//! for every client of the host. When every line of the removed fragment is scoped to its
//! bridge (`tag:<bridge>`, `interface=<bridge>`, the bridge's own `ra-param`, a `domain=` for
//! the network's subnet, a hosts file whose every line is tagged) and the bridge is gone,
//! those lines answer nobody: the fragment goes without a restart and the running dnsmasq
//! keeps them until the next restart that is needed anyway. Such fragments *linger*.
//!
//! The record of lingering bridges (`<state>/system.lingering`) is what keeps that safe: a
//! bridge of that name created again (by anyone) gets the system dnsmasq restarted first,
//! so the old lines never serve it; and a lingering network's hosts file stays until then,
//! so a SIGHUP never finds it missing. A restart empties the record.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One network's lines still loaded in the system dnsmasq although its fragment is gone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Linger {
    /// The bridge they are scoped to.
    pub bridge: String,
    /// The hosts file they name (kept until the next restart).
    pub hosts: Option<PathBuf>,
}

/// The bridge a fragment's lines are all scoped to, and the hosts file it names, when each
/// of them is inert without that bridge; `None` when any line could answer someone else
/// (`local=`, `enable-ra`, PXE's global matches, anything not known here).
pub fn inert(fragment: &str) -> Option<Linger> {
    let mut bridge: Option<&str> = None;
    let mut hosts = None;
    for line in fragment.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=')?;
        let scoped = match key {
            "interface" => same(&mut bridge, value),
            "ra-param" => same(&mut bridge, value.split(',').next()?),
            "dhcp-range" | "dhcp-option" | "dhcp-option-force" | "dhcp-boot"
            | "dhcp-ignore-names" => {
                let tag = value.strip_prefix("tag:")?;
                same(&mut bridge, tag.split(',').next()?)
            }
            "dhcp-hostsfile" => {
                hosts = Some(PathBuf::from(value));
                true
            }
            // A domain for the network's own subnet names only its addresses.
            "domain" => value.split(',').nth(1).is_some_and(|s| s.contains('/')),
            _ => false,
        };
        if !scoped {
            return None;
        }
    }
    Some(Linger {
        bridge: bridge?.to_owned(),
        hosts,
    })
}

/// Whether `b` is the bridge of the lines seen so far (the first names it).
fn same<'a>(bridge: &mut Option<&'a str>, b: &'a str) -> bool {
    *bridge.get_or_insert(b) == b
}

/// Whether every line of a hosts file is scoped to `bridge` (dnsmasq >= 2.81 writes them with
/// `tag:<bridge>,`); an empty file is.
pub fn hosts_scoped(hosts: &[u8], bridge: &str) -> bool {
    let prefix = format!("tag:{bridge},");
    String::from_utf8_lossy(hosts)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .all(|l| l.starts_with(&prefix))
}

/// The record's file in virtmasq's state directory.
pub fn record_path(state_dir: &Path) -> PathBuf {
    state_dir.join("system.lingering")
}

/// The lingering networks recorded; an unreadable record counts as empty, with a warning
/// (nothing is lost: at worst a re-created bridge meets lines a restart would have cleared).
pub fn load(state_dir: &Path) -> BTreeSet<Linger> {
    let path = record_path(state_dir);
    match crate::fsutil::read_if_exists(&path) {
        Ok(None) => BTreeSet::new(),
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "lingering record unreadable; ignored");
            BTreeSet::new()
        }),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "lingering record unreadable; ignored");
            BTreeSet::new()
        }
    }
}

/// Records `set` (an empty set removes the file). Not made durable: after a reboot the
/// system dnsmasq has started on the files as they are, and nothing lingers.
pub fn store(state_dir: &Path, set: &BTreeSet<Linger>) -> std::io::Result<()> {
    let path = record_path(state_dir);
    if set.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let text = serde_json::to_vec(set).map_err(std::io::Error::other)?;
    crate::fsutil::replace_volatile(&path, &text, 0o644)
}

/// The system dnsmasq restarted on the files as they are: nothing lingers any more. A record
/// that cannot be cleared costs one restart more when a bridge of it is created again.
pub fn restarted(state_dir: &Path) {
    if let Err(e) = store(state_dir, &BTreeSet::new()) {
        tracing::warn!(error = %e, "the lingering record could not be cleared");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAGMENT: &str = "# Generated by virtmasq for libvirt network 'lab' (bridge virbr10).\n\
        interface=virbr10\n\
        dhcp-range=tag:virbr10,192.168.100.100,192.168.100.200,255.255.255.0,43200\n\
        dhcp-range=tag:virbr10,fd00:1::,ra-only,64\n\
        ra-param=virbr10,0,0\n\
        dhcp-option=tag:virbr10,option:mtu,9000\n\
        dhcp-hostsfile=/var/lib/virtmasq/system/lab.hosts\n\
        domain=lab.example,192.168.100.0/24\n";

    #[test]
    fn a_fragment_scoped_to_its_bridge_is_inert_without_it() {
        assert_eq!(
            inert(FRAGMENT),
            Some(Linger {
                bridge: "virbr10".into(),
                hosts: Some("/var/lib/virtmasq/system/lab.hosts".into()),
            })
        );
    }

    /// Each of these answers clients that are not on the bridge, so its removal restarts.
    #[test]
    fn a_line_for_everyone_is_not() {
        for extra in [
            "local=/lab.example/",
            "enable-ra",
            "dhcp-match=set:efi64,option:client-arch,7",
            "dhcp-range=192.168.5.2,192.168.5.9",
            "dhcp-option=tag:virbr11,3",
            "interface=virbr11",
            "domain=lab.example",
            "tag-if=set:x,tag:y",
        ] {
            let text = format!("{FRAGMENT}{extra}\n");
            assert_eq!(inert(&text), None, "{extra}");
        }
        assert_eq!(inert("# only a comment\n"), None, "no bridge named");
    }

    #[test]
    fn hosts_are_scoped_only_when_every_line_is_tagged() {
        assert!(hosts_scoped(b"", "virbr10"));
        assert!(hosts_scoped(
            b"tag:virbr10,52:54:00:00:00:01,10.0.0.5\n",
            "virbr10"
        ));
        assert!(!hosts_scoped(
            b"tag:virbr10,52:54:00:00:00:01\n52:54:00:00:00:02,10.0.0.6\n",
            "virbr10"
        ));
        assert!(!hosts_scoped(
            b"tag:virbr100,52:54:00:00:00:01\n",
            "virbr10"
        ));
    }

    #[test]
    fn the_record_round_trips_and_empty_is_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let set: BTreeSet<Linger> = [Linger {
            bridge: "virbr10".into(),
            hosts: Some("/x/lab.hosts".into()),
        }]
        .into();
        store(dir.path(), &set).unwrap();
        assert_eq!(load(dir.path()), set);
        store(dir.path(), &BTreeSet::new()).unwrap();
        assert!(!record_path(dir.path()).exists());
        assert!(load(dir.path()).is_empty());
        std::fs::write(record_path(dir.path()), "garbage").unwrap();
        assert!(load(dir.path()).is_empty());
    }
}
