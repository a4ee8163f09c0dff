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
//! * `filter.journal.<inode>`: the MACs changed since `filter.json` (that inode) was written
//!   whole ([`journal`]): a change of a few MACs appends a few lines. Written whole again once
//!   the journal outgrows a quarter of the policy.
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
use super::journal;
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

impl StoredPolicy {
    /// Puts `mac` in the list of `verdict` (None: in neither); whether that changed anything.
    pub fn put(&mut self, mac: MacAddr, verdict: Option<super::entry::Verdict>) -> bool {
        use super::entry::Verdict;
        let was = if self.allow.remove(&mac) {
            Some(Verdict::Allow)
        } else {
            self.deny.remove(&mac).then_some(Verdict::Deny)
        };
        match verdict {
            Some(Verdict::Allow) => self.allow.insert(mac),
            Some(Verdict::Deny) => self.deny.insert(mac),
            None => false,
        };
        was != verdict
    }
}

/// The state file as written.
#[derive(Serialize)]
struct StateFile<'a> {
    /// Format version, so a later format is refused rather than misread.
    version: u32,
    /// The policy itself, at the top level of the JSON object.
    #[serde(flatten)]
    policy: &'a StoredPolicy,
}

/// The state file as read: the same fields, the lists read as vectors and then sorted into
/// their sets (much faster than inserting 50,000 MACs one by one, or buffering the object
/// for a flattened field).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFileIn {
    version: u32,
    #[serde(default)]
    unknown: Option<UnknownPolicy>,
    #[serde(default)]
    allow: Vec<MacAddr>,
    #[serde(default)]
    deny: Vec<MacAddr>,
    #[serde(default)]
    deny_line: DenyLine,
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

/// Device, inode, mtime (seconds, nanoseconds) and size of the stored policy's file, and the
/// size of its journal (appends only ever grow it).
pub type PolicyVersion = (u64, u64, i64, i64, u64, u64);

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
        let Some(m) = self.state_metadata()? else {
            return Ok(None);
        };
        let journal = self.journal_len(m.ino())?;
        Ok(Some((
            m.dev(),
            m.ino(),
            m.mtime(),
            m.mtime_nsec(),
            m.size(),
            journal,
        )))
    }

    fn state_metadata(&self) -> Result<Option<fs::Metadata>, FilterError> {
        let path = self.path(STATE_FILE);
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FilterError::io("read the metadata of", path)(e)),
        }
    }

    fn journal_path(&self, state_inode: u64) -> PathBuf {
        self.path(&format!("{}{state_inode}", journal::PREFIX))
    }

    /// The size of the journal of the state file `state_inode` (0 when there is none).
    fn journal_len(&self, state_inode: u64) -> Result<u64, FilterError> {
        let path = self.journal_path(state_inode);
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(FilterError::io("read the metadata of", path)(e)),
        }
    }

    /// The stored policy's deny-line form, remembered (for the whole process) while the state
    /// file is unchanged: journal appends never change it, and each reconcile asks.
    pub fn deny_line(&self) -> Result<DenyLine, FilterError> {
        type Seen = (PathBuf, (u64, u64, i64, i64, u64), DenyLine);
        static SEEN: std::sync::Mutex<Option<Seen>> = std::sync::Mutex::new(None);
        let Some(v) = self.version()? else {
            return Ok(DenyLine::default());
        };
        let file = (v.0, v.1, v.2, v.3, v.4);
        let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((dir, at, line)) = seen.as_ref() {
            if *dir == self.dir && *at == file {
                return Ok(*line);
            }
        }
        let line = self.load()?.deny_line;
        *seen = Some((self.dir.clone(), file, line));
        Ok(line)
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
        let state: StateFileIn = serde_json::from_str(&text).map_err(bad)?;
        if state.version != STATE_VERSION {
            let msg = format!("unsupported version {}", state.version);
            return Err(bad(serde::de::Error::custom(msg)));
        }
        let mut policy = StoredPolicy {
            unknown: state.unknown,
            allow: state.allow.into_iter().collect(),
            deny: state.deny.into_iter().collect(),
            deny_line: state.deny_line,
        };
        if let Some(mac) = policy.allow.intersection(&policy.deny).next() {
            let msg = format!("{mac} is both allowed and denied");
            return Err(bad(serde::de::Error::custom(msg)));
        }
        self.replay(&mut policy)?;
        Ok(policy)
    }

    /// Applies the state file's journal, if it has one, to `policy`.
    fn replay(&self, policy: &mut StoredPolicy) -> Result<(), FilterError> {
        use std::os::unix::fs::MetadataExt;
        let Some(m) = self.state_metadata()? else {
            return Ok(());
        };
        let path = self.journal_path(m.ino());
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(FilterError::io("read", path)(e)),
        };
        journal::replay(policy, &text).map_err(|msg| FilterError::BadState {
            path,
            source: serde::de::Error::custom(msg),
        })?;
        Ok(())
    }

    /// Stores the change of `macs`, whose entries in `policy` are now as they should be: a few
    /// lines appended to the journal and fsynced (with the directory, for a mark set just
    /// before), or the whole policy when the journal would grow too large.
    pub fn save_change(&self, policy: &StoredPolicy, macs: &[MacAddr]) -> Result<(), FilterError> {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let Some(state) = self.state_metadata()? else {
            return self.save(policy);
        };
        let path = self.journal_path(state.ino());
        let len = self.journal_len(state.ino())?;
        let text = journal::lines(policy, macs);
        let limit = journal::MIN_COMPACT_BYTES.max(state.size() / 4);
        if len + text.len() as u64 > limit {
            return self.save(policy);
        }
        let io = |what| FilterError::io(what, &path);
        let mut file = OpenOptions::new()
            .append(true)
            .read(true)
            .create(true)
            .mode(0o644)
            .open(&path)
            .map_err(io("open"))?;
        let mut last = [b'\n'];
        if len > 0 {
            file.read_exact_at(&mut last, len - 1).map_err(io("read"))?;
        }
        if last[0] != b'\n' {
            // A torn append: write the policy whole rather than after it.
            return self.save(policy);
        }
        file.write_all(text.as_bytes()).map_err(io("write"))?;
        file.sync_data().map_err(io("fsync"))?;
        sync_dir(&self.dir)
    }

    /// Stores `policy` durably (fsync of the file and of the directory) and atomically.
    pub fn save(&self, policy: &StoredPolicy) -> Result<(), FilterError> {
        let state = StateFile {
            version: STATE_VERSION,
            policy,
        };
        let mut text = serde_json::to_string_pretty(&state).expect("a policy always serialises");
        text.push('\n');
        self.replace(STATE_FILE, text.as_bytes(), true)?;
        // The new state file has its own inode: every journal names an older one.
        self.remove_journals()
    }

    fn remove_journals(&self) -> Result<(), FilterError> {
        let entries = fs::read_dir(&self.dir).map_err(FilterError::io("list", &self.dir))?;
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(journal::PREFIX)
            {
                let path = entry.path();
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != ErrorKind::NotFound => {
                        return Err(FilterError::io("remove", path)(e))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
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
mod tests;
