//! The system transaction's durable journal: before the first change in the conf-dir, every
//! file the change touches is recorded as it was (bytes, mode, owner) and as it will be, in
//! `<state_dir>/system.journal`, fsynced. A process killed at any point leaves the journal
//! behind, and the next start puts the files back (or finishes a change whose new set was
//! completely written) from it: the conf-dir is always the old set or the new validated one.
//!
//! The files themselves move by renames only. [`Journal::prepare`] writes each new file as a
//! dotfile beside its target (dnsmasq skips dotfiles) and keeps each old file under a second
//! dotfile name, a hard link, so [`Journal::commit`] and [`Journal::roll_back`] are renames
//! that need no free space: a full disk fails the prepare step, before anything live changed.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::Plan;
use crate::fsutil;

/// The journal's file name in the state directory.
pub const JOURNAL_FILE: &str = "system.journal";
/// The format written; another value is refused, not guessed at.
const VERSION: u32 = 1;
/// Suffix of a new file waiting to be renamed into place (`.<name>.virtmasq-new`).
const NEW_SUFFIX: &str = ".virtmasq-new";
/// Suffix of the hard link that keeps an old file (`.<name>.virtmasq-old`).
const OLD_SUFFIX: &str = ".virtmasq-old";
/// Mode of the files virtmasq writes.
const MODE: u32 = 0o644;

/// How far a transaction got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Validated; new files may be partly renamed into place.
    Prepared,
    /// Every new file is in place: the new set is complete and validated.
    Written,
    /// The restart failed; the old files are going back.
    RollingBack,
}

/// A file before the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Before {
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Contents.
    pub bytes: Hex,
}

/// One file the transaction touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The file.
    pub path: PathBuf,
    /// As it was; None: it did not exist.
    pub before: Option<Before>,
    /// As it will be; None: it is removed.
    pub after: Option<Hex>,
}

/// The journal of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// How far it got.
    pub phase: Phase,
    /// The dnsmasq unit, to restart after a recovery that needs it.
    pub unit: String,
    /// The change needs a restart (a fragment changed).
    pub restart: bool,
    /// The change needs at least a SIGHUP (a hosts file changed).
    pub hangup: bool,
    /// Every file touched.
    pub files: Vec<Entry>,
    /// Hosts files dnsmasq stops reading with the new set: removed once it runs on it.
    #[serde(default)]
    pub stale: Vec<PathBuf>,
}

/// Bytes, written as lower-case hex so the journal stays text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hex(pub Vec<u8>);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bad = || serde::de::Error::custom("not an even number of hex digits");
        if text.len() % 2 != 0 {
            return Err(bad());
        }
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
            .collect::<Result<Vec<u8>, _>>()
            .map(Hex)
    }
}

/// A journal that exists but cannot be read: nothing is guessed, the files stay as they are.
#[derive(Debug, thiserror::Error)]
#[error("the system transaction journal {path} cannot be read ({why}); the conf-dir was left as it is: compare it with the journal, then remove the journal")]
pub struct Unreadable {
    /// The journal.
    pub path: PathBuf,
    /// Why.
    pub why: String,
}

/// A file operation of the transaction that failed, with the file.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}", path.display())]
pub struct FileError {
    /// What was being done.
    pub action: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

fn at(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError {
    let path = path.to_owned();
    move |source| FileError {
        action,
        path,
        source,
    }
}

/// `.<name><suffix>` beside `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}{suffix}"))
}

impl Journal {
    /// Records the files `plan` touches as they are now.
    pub fn new(unit: &str, plan: &Plan) -> Result<Self, FileError> {
        let mut files = Vec::new();
        let writes = plan.writes.iter().map(|(p, t)| (p, Some(t.as_bytes())));
        for (path, after) in writes.chain(plan.removals.iter().map(|p| (p, None))) {
            files.push(Entry {
                path: path.clone(),
                before: read_before(path).map_err(at("read", path))?,
                after: after.map(|b| Hex(b.to_vec())),
            });
        }
        Ok(Self {
            version: VERSION,
            phase: Phase::Prepared,
            unit: unit.to_owned(),
            restart: plan.restart,
            hangup: plan.hangup,
            files,
            stale: plan.stale_hosts.clone(),
        })
    }

    /// The journal's path.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(JOURNAL_FILE)
    }

    /// Writes the journal durably (file and directory fsynced) with `phase`.
    pub fn save(&mut self, state_dir: &Path, phase: Phase) -> io::Result<()> {
        self.phase = phase;
        let text = serde_json::to_vec(self).map_err(io::Error::other)?;
        fsutil::write_atomic(&Self::path(state_dir), &text, 0o600)
    }

    /// The journal left in `state_dir`, if any.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, Unreadable> {
        let path = Self::path(state_dir);
        let unreadable = |why: String| Unreadable {
            path: path.clone(),
            why,
        };
        let Some(bytes) = fsutil::read_if_exists(&path).map_err(|e| unreadable(e.to_string()))?
        else {
            return Ok(None);
        };
        let j: Self = serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
        if j.version != VERSION {
            return Err(unreadable(format!("format version {}", j.version)));
        }
        Ok(Some(j))
    }

    /// Removes the journal: the commit point of a transaction (or the end of its rollback).
    pub fn remove(state_dir: &Path) -> io::Result<()> {
        match fs::remove_file(Self::path(state_dir)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        File::open(state_dir)?.sync_all()
    }

    /// Writes every new file beside its target and keeps every old file under a second
    /// name; nothing dnsmasq reads changes. Fails (and cleans up) on a full disk.
    pub fn prepare(&self) -> Result<(), FileError> {
        let result = (|| {
            let mut written = Vec::new();
            for e in &self.files {
                if let Some(dir) = e.path.parent().filter(|d| !d.exists()) {
                    // A missing directory is created; an existing one's mode is the system's.
                    fsutil::ensure_dir(dir, 0o755).map_err(at("create", dir))?;
                }
                if let Some(after) = &e.after {
                    let new = sibling(&e.path, NEW_SUFFIX);
                    written.push(write_new(&new, &after.0).map_err(at("write", &new))?);
                }
                if e.before.is_some() {
                    let old = sibling(&e.path, OLD_SUFFIX);
                    remove_if_exists(&old).map_err(at("remove", &old))?;
                    fs::hard_link(&e.path, &old).map_err(at("link", &old))?;
                }
            }
            // The new files and their directories, durable together.
            self.sync_with_dirs(written)
        })();
        if result.is_err() {
            self.clean();
        }
        result
    }

    /// Renames every new file into place and removes the files that go.
    pub fn commit(&self) -> Result<(), FileError> {
        for (i, e) in self.files.iter().enumerate() {
            match &e.after {
                Some(_) => fs::rename(sibling(&e.path, NEW_SUFFIX), &e.path)
                    .map_err(at("rename into", &e.path))?,
                None => remove_if_exists(&e.path).map_err(at("remove", &e.path))?,
            }
            if i == 0 {
                super::failpoint::hit("renamed-first");
            }
        }
        self.sync_dirs()
    }

    /// Removes the journal of a change that is complete (its new set in place, and the unit
    /// restarted on it if it was to be), without waiting for the removal to reach the disk.
    /// After a power loss the journal may be back: the next start then finds its new set fully
    /// written and rolls it forward, which changes no file and restarts the unit at most once.
    /// The next change's journal, made durable before anything changes, replaces it anyway.
    pub fn remove_complete(state_dir: &Path) -> io::Result<()> {
        match fs::remove_file(Self::path(state_dir)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Puts every file back as it was; the files that could not be, with why. Works from any
    /// point of [`Self::prepare`] or [`Self::commit`], and again after an interrupted
    /// rollback.
    pub fn roll_back(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for e in &self.files {
            if let Err(err) = restore(e) {
                tracing::error!(path = %e.path.display(), error = %err, "could not restore file");
                failures.push(format!("{}: {err}", e.path.display()));
            }
        }
        if let Err(err) = self.sync_dirs() {
            failures.push(format!("syncing the directories: {err}"));
        }
        self.clean();
        failures
    }

    /// Whether every file is as the new set has it.
    pub fn fully_written(&self) -> bool {
        self.files.iter().all(|e| {
            let now = fsutil::read_if_exists(&e.path).ok().flatten();
            now.as_deref() == e.after.as_ref().map(|h| h.0.as_slice())
        })
    }

    /// Removes the dotfiles of [`Self::prepare`] (best effort: they are invisible to dnsmasq).
    pub fn clean(&self) {
        for e in &self.files {
            let _ = remove_if_exists(&sibling(&e.path, NEW_SUFFIX));
            let _ = remove_if_exists(&sibling(&e.path, OLD_SUFFIX));
        }
    }

    fn sync_dirs(&self) -> Result<(), FileError> {
        self.sync_with_dirs(Vec::new())
    }

    /// fsyncs `files` and the directories of the journal's files, all at once
    /// ([`fsutil::sync_all_together`]).
    fn sync_with_dirs(&self, mut files: Vec<(File, PathBuf)>) -> Result<(), FileError> {
        let mut dirs: Vec<&Path> = self.files.iter().filter_map(|e| e.path.parent()).collect();
        dirs.sort();
        dirs.dedup();
        for d in dirs {
            files.push((File::open(d).map_err(at("sync", d))?, d.to_owned()));
        }
        let (handles, paths): (Vec<File>, Vec<PathBuf>) = files.into_iter().unzip();
        fsutil::sync_all_together(&handles).map_err(|e| {
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            FileError {
                action: "sync",
                path: PathBuf::from(names.join(", ")),
                source: e,
            }
        })
    }
}

/// Removes dotfiles a transaction left in `dir` after its journal was removed.
pub fn sweep(dir: &Path) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours =
            name.starts_with('.') && (name.ends_with(NEW_SUFFIX) || name.ends_with(OLD_SUFFIX));
        if ours {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn read_before(path: &Path) -> io::Result<Option<Before>> {
    let Some(bytes) = fsutil::read_if_exists(path)? else {
        return Ok(None);
    };
    let meta = fs::metadata(path)?;
    Ok(Some(Before {
        mode: meta.permissions().mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        bytes: Hex(bytes),
    }))
}

fn restore(e: &Entry) -> io::Result<()> {
    let _ = remove_if_exists(&sibling(&e.path, NEW_SUFFIX));
    let Some(before) = &e.before else {
        return remove_if_exists(&e.path);
    };
    let old = sibling(&e.path, OLD_SUFFIX);
    if old.exists() {
        // The very file that was there: bytes, mode, owner and inode.
        return fs::rename(&old, &e.path);
    }
    if read_before(&e.path)?.as_ref() == Some(before) {
        return Ok(());
    }
    // The kept link is gone (removed by hand?): the journal's copy is the file.
    fsutil::write_atomic(&e.path, &before.bytes.0, before.mode)?;
    std::os::unix::fs::chown(&e.path, Some(before.uid), Some(before.gid))?;
    fs::set_permissions(&e.path, fs::Permissions::from_mode(before.mode))
}

/// Writes a new file at `path` (replacing a leftover of an interrupted run); the caller
/// fsyncs the file returned.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<(File, PathBuf)> {
    remove_if_exists(path)?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let result = (|| {
        f.set_permissions(fs::Permissions::from_mode(MODE))?;
        f.write_all(bytes)
    })();
    match result {
        Ok(()) => Ok((f, path.to_owned())),
        Err(e) => {
            let _ = fs::remove_file(path);
            Err(e)
        }
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests;
