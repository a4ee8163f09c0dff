//! The filter's state directory: the persisted policy (the source of truth the hostsdir is
//! derived from), the lock that serialises writers, and the rewrite counter behind compaction.
//!
//! Files, all in the state directory:
//!
//! * `filter.json`: `{"version": 1, "unknown": null | "allow" | "deny", "allow": [MAC...],
//!   "deny": [MAC...], "deny_line": "plain" | "tagged"}`. `unknown` null means "as
//!   configured" (`[filter] unknown`); a value is an override set at run time. `deny_line` is
//!   set at start-up (tagged where proxy DHCP is served). Written to a temporary file,
//!   fsynced, renamed.
//! * `filter.lock`: held with an exclusive `flock` for the whole of every change, so two CLI
//!   processes, or the CLI and the daemon, never interleave.
//! * `filter-rewrites`: how many hostsdir files were rewritten since dnsmasq last re-read the
//!   directory. Not fsynced: after a crash the start-up purge resets it anyway.
//! * `filter.pending`: present from a policy save until the hostsdir is in line with it, so
//!   that the change after an interrupted one looks at the whole directory, not only at the
//!   MACs it changes itself.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::config::UnknownPolicy;
use super::entry::DenyLine;
use super::error::FilterError;
use crate::model::MacAddr;

const STATE_FILE: &str = "filter.json";
const LOCK_FILE: &str = "filter.lock";
const COUNTER_FILE: &str = "filter-rewrites";
const PENDING_FILE: &str = "filter.pending";
const STATE_VERSION: u32 = 1;

/// The persisted policy, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredPolicy {
    /// Run-time override of the configured unknown-MAC policy.
    #[serde(default)]
    pub unknown: Option<UnknownPolicy>,
    /// MACs that are answered.
    #[serde(default)]
    pub allow: BTreeSet<MacAddr>,
    /// MACs that are ignored.
    #[serde(default)]
    pub deny: BTreeSet<MacAddr>,
    /// Form of deny lines, chosen by the last start-up for the dnsmasq configuration then in
    /// force, so that every later writer (CLI or daemon) writes the same bytes.
    #[serde(default)]
    pub deny_line: DenyLine,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    /// Format version, so a later format is refused rather than misread.
    version: u32,
    /// The policy itself, at the top level of the JSON object.
    #[serde(flatten)]
    policy: StoredPolicy,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    /// The state directory, created on first use.
    dir: PathBuf,
}

/// An exclusive hold on the filter; released when dropped.
#[derive(Debug)]
pub struct LockGuard {
    /// The locked file; dropping it unlocks.
    _lock: Flock<File>,
}

/// Device, inode, mtime (seconds, nanoseconds) and size of the stored policy's file.
pub type PolicyVersion = (u64, u64, i64, i64, u64);

impl Store {
    /// A store in `dir`, created on first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Takes the exclusive lock, retrying every 10 ms for at most `timeout`.
    pub fn lock(&self, timeout: Duration) -> Result<LockGuard, FilterError> {
        fs::create_dir_all(&self.dir).map_err(FilterError::io("create", &self.dir))?;
        let path = self.path(LOCK_FILE);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(FilterError::io("open", &path))?;
        let start = Instant::now();
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(LockGuard { _lock: lock }),
                Err((back, Errno::EWOULDBLOCK)) if start.elapsed() < timeout => {
                    file = back;
                    sleep(Duration::from_millis(10));
                }
                Err((_, Errno::EWOULDBLOCK)) => {
                    return Err(FilterError::LockTimeout {
                        path,
                        waited: start.elapsed(),
                    })
                }
                Err((_, e)) => return Err(FilterError::io("lock", path)(e.into())),
            }
        }
    }

    /// Which stored policy is on disk, without reading it: the state file is only ever
    /// replaced by a rename, so every save changes its inode (and its mtime); `None` when no
    /// policy was ever stored.
    pub fn version(&self) -> Result<Option<PolicyVersion>, FilterError> {
        use std::os::unix::fs::MetadataExt;
        let path = self.path(STATE_FILE);
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(Some((
                m.dev(),
                m.ino(),
                m.mtime(),
                m.mtime_nsec(),
                m.size(),
            ))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FilterError::io("read the metadata of", path)(e)),
        }
    }

    /// The stored policy; empty if none was ever stored.
    pub fn load(&self) -> Result<StoredPolicy, FilterError> {
        let path = self.path(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(StoredPolicy::default()),
            Err(e) => return Err(FilterError::io("read", path)(e)),
        };
        let bad = |source| FilterError::BadState {
            path: path.clone(),
            source,
        };
        let state: StateFile = serde_json::from_str(&text).map_err(bad)?;
        if state.version != STATE_VERSION {
            let msg = format!("unsupported version {}", state.version);
            return Err(bad(serde::de::Error::custom(msg)));
        }
        if let Some(mac) = state.policy.allow.intersection(&state.policy.deny).next() {
            let msg = format!("{mac} is both allowed and denied");
            return Err(bad(serde::de::Error::custom(msg)));
        }
        Ok(state.policy)
    }

    /// Stores `policy` durably (fsync of the file and of the directory) and atomically.
    pub fn save(&self, policy: &StoredPolicy) -> Result<(), FilterError> {
        let state = StateFile {
            version: STATE_VERSION,
            policy: policy.clone(),
        };
        let mut text = serde_json::to_string_pretty(&state).expect("a policy always serialises");
        text.push('\n');
        self.replace(STATE_FILE, text.as_bytes(), true)
    }

    /// Whether a change stopped between saving the policy and writing the hostsdir.
    pub fn pending(&self) -> Result<bool, FilterError> {
        let path = self.path(PENDING_FILE);
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(FilterError::io("read the metadata of", path)(e)),
        }
    }

    /// Marks the hostsdir as behind the policy about to be saved. Not fsynced by itself: the
    /// save that follows fsyncs the directory, and with it this entry.
    pub fn set_pending(&self) -> Result<(), FilterError> {
        fs::create_dir_all(&self.dir).map_err(FilterError::io("create", &self.dir))?;
        let path = self.path(PENDING_FILE);
        File::create(&path).map_err(FilterError::io("create", &path))?;
        Ok(())
    }

    /// Marks the hostsdir as in line with the stored policy.
    pub fn clear_pending(&self) -> Result<(), FilterError> {
        let path = self.path(PENDING_FILE);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FilterError::io("remove", path)(e)),
        }
    }

    /// Rewrites since the last compaction (0 if never counted).
    pub fn rewrites(&self) -> Result<u64, FilterError> {
        let path = self.path(COUNTER_FILE);
        match fs::read_to_string(&path) {
            // A damaged counter only delays or hastens one compaction.
            Ok(text) => Ok(text.trim().parse().unwrap_or(u64::MAX)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(FilterError::io("read", path)(e)),
        }
    }

    /// Records the rewrite count.
    pub fn set_rewrites(&self, count: u64) -> Result<(), FilterError> {
        self.replace(COUNTER_FILE, format!("{count}\n").as_bytes(), false)
    }

    fn replace(&self, name: &str, bytes: &[u8], durable: bool) -> Result<(), FilterError> {
        fs::create_dir_all(&self.dir).map_err(FilterError::io("create", &self.dir))?;
        let temp = self.path(&format!(".{name}.tmp"));
        let path = self.path(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&temp)
            .map_err(FilterError::io("create", &temp))?;
        file.write_all(bytes)
            .map_err(FilterError::io("write", &temp))?;
        if durable {
            file.sync_all().map_err(FilterError::io("fsync", &temp))?;
        }
        fs::rename(&temp, &path).map_err(FilterError::io("rename into place", &path))?;
        if durable {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), FilterError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(FilterError::io("fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("state"));
        assert_eq!(store.load().unwrap(), StoredPolicy::default());
        assert_eq!(store.rewrites().unwrap(), 0);
        let policy = StoredPolicy {
            unknown: Some(UnknownPolicy::Deny),
            allow: [MacAddr::new([0xaa, 0, 0, 0, 0, 1])].into(),
            deny: BTreeSet::new(),
            deny_line: DenyLine::Tagged,
        };
        store.save(&policy).unwrap();
        assert_eq!(store.load().unwrap(), policy);
        store.set_rewrites(7).unwrap();
        assert_eq!(store.rewrites().unwrap(), 7);
        let state = dir.path().join("state").join(STATE_FILE);
        let cases = [
            ("{", "damaged"),
            ("{\"version\": 2}", "version 2"),
            (
                "{\"version\":1,\"allow\":[\"aa:00:00:00:00:01\"],\"deny\":[\"aa:00:00:00:00:01\"]}",
                "both allowed and denied",
            ),
            ("{\"version\":1,\"allow\":[\"nope\"]}", "nope"),
        ];
        for (text, want) in cases {
            fs::write(&state, text).unwrap();
            let err = store.load().unwrap_err();
            let chain = format!("{err} / {}", std::error::Error::source(&err).unwrap());
            assert!(chain.contains(want), "{text}: {chain}");
        }
    }

    #[test]
    fn lock_times_out_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let held = store.lock(Duration::from_millis(50)).unwrap();
        let err = store
            .lock(Duration::from_millis(50))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("filter.lock") && err.contains("another virtmasq process"),
            "{err}"
        );
        drop(held);
        assert!(store.lock(Duration::from_millis(50)).is_ok());
    }
}
