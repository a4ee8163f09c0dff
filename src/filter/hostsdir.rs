//! Reading and writing the hostsdir: the effects behind [`super::plan`]. Files are written
//! under a dot-name and renamed into place, so dnsmasq (which skips dotfiles and reacts to
//! IN_MOVED_TO) never reads a half-written file; a new file is created under its own name
//! (dnsmasq reads it at IN_CLOSE_WRITE, once written); durability comes from one `syncfs` per batch
//! or one `fsync` per file, as configured.

use std::fs::{self, File, Permissions};
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::config::Durability;
use super::entry::{classify, temp_name, DenyLine, NameKind, Target};
use super::error::FilterError;
use super::plan::{FileAction, FileState, ObservedDir};

/// Mode of files and of a directory we create: dnsmasq reads them after dropping to `nobody`.
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// How much of each file [`observe`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Sizes only (allow and deny lines differ in length): one `stat` per file, the way
    /// ironic reads its cache. Used while dnsmasq runs, when only we write under the lock.
    Sizes,
    /// Exact contents: catches files emptied by a crash before a `syncfs` or edited by hand.
    /// Used at start-up.
    Contents,
}

/// What a batch of actions did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Files written (new or replaced).
    pub written: usize,
    /// Of those, files that replaced an existing one (dnsmasq keeps the old entry until SIGHUP).
    pub rewritten: usize,
    /// Files removed.
    pub removed: usize,
}

/// Creates the hostsdir (mode 0755) if it is missing.
pub fn ensure_dir(dir: &Path) -> Result<(), FilterError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(FilterError::Io {
            action: "use as the filter's hostsdir",
            path: dir.to_owned(),
            source: ErrorKind::NotADirectory.into(),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(FilterError::io("create", dir))?;
            fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
                .map_err(FilterError::io("set the mode of", dir))
        }
        Err(e) => Err(FilterError::io("inspect", dir)(e)),
    }
}

/// Lists the hostsdir and classifies every entry (see [`super::entry::classify`]); a deny
/// file counts as such only in `form`.
pub fn observe(dir: &Path, verify: Verify, form: DenyLine) -> Result<ObservedDir, FilterError> {
    let mut observed = ObservedDir::default();
    let entries = fs::read_dir(dir).map_err(FilterError::io("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(FilterError::io("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match classify(&name) {
            NameKind::Leftover => observed.leftovers.push(name),
            NameKind::Skipped => {}
            NameKind::Foreign => observed.foreign.push(name),
            NameKind::Ours(target) => {
                // DirEntry::metadata does not follow symlinks: a link is never one of our
                // files, so it counts as damaged and is replaced by the rename.
                let meta = entry
                    .metadata()
                    .map_err(FilterError::io("stat", entry.path()))?;
                if meta.is_dir() {
                    observed.foreign.push(name);
                    continue;
                }
                let state = if meta.is_file() {
                    file_state(&entry.path(), target, meta.len(), (verify, form))?
                } else {
                    FileState::Other
                };
                observed.files.insert(target, state);
            }
        }
    }
    observed.leftovers.sort();
    observed.foreign.sort();
    Ok(observed)
}

/// Observes only the files of `targets` (missing ones are absent), for changes that concern
/// a few MACs: a stat per target instead of a listing of the whole directory.
pub fn observe_targets(
    dir: &Path,
    targets: impl IntoIterator<Item = Target>,
    form: DenyLine,
) -> Result<ObservedDir, FilterError> {
    let mut observed = ObservedDir::default();
    for target in targets {
        let path = dir.join(target.file_name());
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(FilterError::io("stat", path)(e)),
        };
        let state = if meta.is_file() {
            file_state(&path, target, meta.len(), (Verify::Sizes, form))?
        } else {
            FileState::Other
        };
        observed.files.insert(target, state);
    }
    Ok(observed)
}

fn file_state(
    path: &Path,
    target: Target,
    len: u64,
    (verify, form): (Verify, DenyLine),
) -> Result<FileState, FilterError> {
    let Some(by_len) = target.verdict_from_len(len, form) else {
        return Ok(FileState::Other);
    };
    if verify == Verify::Sizes {
        return Ok(by_len.into());
    }
    let bytes = fs::read(path).map_err(FilterError::io("read", path))?;
    Ok(target
        .verdict_from_content(&bytes, form)
        .map_or(FileState::Other, FileState::from))
}

/// Carries out `actions` in order (deny lines in `form`), then makes them durable as
/// `durability` says; `None` leaves that to the caller ([`sync_fs`] later: the filter's
/// deferred flush). Files are handled relative to one open directory handle, so each
/// operation resolves one name instead of a whole path.
pub fn apply(
    dir: &Path,
    actions: &[FileAction],
    form: DenyLine,
    durability: Option<Durability>,
) -> Result<Applied, FilterError> {
    apply_keeping(dir, actions, form, durability, &mut Vec::new(), 0)
}

/// [`apply`], keeping up to `keep` of the files it replaces open (`O_PATH`) in `retired`:
/// a rename over a file frees the file it replaces, which on some disks costs more than the
/// write (~0.13 ms a file on ext4 mounted with `discard`); closing them later moves that
/// cost off the caller's path.
pub fn apply_keeping(
    dir: &Path,
    actions: &[FileAction],
    form: DenyLine,
    durability: Option<Durability>,
    retired: &mut Vec<OwnedFd>,
    keep: usize,
) -> Result<Applied, FilterError> {
    let mut done = Applied::default();
    if actions.is_empty() {
        return Ok(done);
    }
    let handle = File::open(dir).map_err(FilterError::io("open", dir))?;
    let at = DirAt {
        dir,
        handle: &handle,
    };
    let fix_mode = umask_strips(FILE_MODE);
    // Files are synced one by one only for `FsyncEach`; `None` syncs nothing here.
    let per_file = durability.unwrap_or(Durability::Syncfs);
    for action in actions {
        match action {
            FileAction::Write {
                target,
                verdict,
                replaces,
            } => {
                let content = target.content(*verdict, form);
                let name = target.file_name();
                let options = (per_file, fix_mode);
                // A file that is not there yet is created under its name: dnsmasq reads it at
                // its close (IN_CLOSE_WRITE), so it never sees it half-written, and the rename
                // is saved. A file that turns out to be there after all is replaced.
                if *replaces || !at.create(&name, content.as_bytes(), options)? {
                    if retired.len() < keep {
                        // Best effort: without it, the rename frees the old file at once.
                        let path = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                        if let Ok(fd) = openat(at.handle, name.as_str(), path, Mode::empty()) {
                            retired.push(fd);
                        }
                    }
                    at.write(&name, content.as_bytes(), options)?;
                }
                done.written += 1;
                done.rewritten += usize::from(*replaces);
            }
            FileAction::Remove { name } => {
                if at.remove(name)? {
                    done.removed += 1;
                }
            }
        }
    }
    if let Some(durability) = durability {
        flush(&at, durability)?;
    }
    Ok(done)
}

/// Makes everything written under `dir` durable (one `syncfs` of its file system): the
/// deferred half of [`apply`] with `None`.
pub fn sync_fs(dir: &Path) -> Result<(), FilterError> {
    let handle = File::open(dir).map_err(FilterError::io("open", dir))?;
    nix::unistd::syncfs(&handle).map_err(|e| FilterError::io("syncfs", dir)(e.into()))
}

/// A directory and an open handle on it.
struct DirAt<'a> {
    /// The path, for error messages.
    dir: &'a Path,
    /// The open directory every name is resolved against.
    handle: &'a File,
}

impl DirAt<'_> {
    fn err(&self, action: &'static str, name: &str) -> impl FnOnce(Errno) -> FilterError {
        let path = self.dir.join(name);
        move |e| FilterError::io(action, path)(e.into())
    }

    /// Writes `name` through a temporary dot-file and a rename. With `FsyncEach` the data is
    /// synced before the rename, so the name never points at unsynced data. `fix_mode` sets
    /// the mode explicitly, for when the umask removes bits dnsmasq (as nobody) needs.
    fn write(
        &self,
        name: &str,
        content: &[u8],
        (durability, fix_mode): (Durability, bool),
    ) -> Result<(), FilterError> {
        let temp = temp_name(name);
        let result = (|| {
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC;
            let mode = Mode::from_bits_truncate(FILE_MODE);
            let fd = openat(self.handle, temp.as_str(), flags, mode)
                .map_err(self.err("create", &temp))?;
            fill(
                File::from(fd),
                content,
                (durability, fix_mode),
                &self.dir.join(&temp),
            )?;
            renameat(self.handle, temp.as_str(), self.handle, name)
                .map_err(self.err("rename into place", name))
        })();
        if result.is_err() {
            // Best effort: a temporary file left here is removed by the next sync anyway.
            let _ = unlinkat(self.handle, temp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        result
    }

    /// Creates `name`, which must not exist, with `content`; false if it exists. A crash in
    /// between leaves a short file under the name, which a later sync's content check (or
    /// the start-up rebuild) replaces, as it does a file emptied by a crash before `syncfs`.
    fn create(
        &self,
        name: &str,
        content: &[u8],
        (durability, fix_mode): (Durability, bool),
    ) -> Result<bool, FilterError> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC;
        let fd = match openat(
            self.handle,
            name,
            flags,
            Mode::from_bits_truncate(FILE_MODE),
        ) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => return Ok(false),
            Err(e) => return Err(self.err("create", name)(e)),
        };
        let written = fill(
            File::from(fd),
            content,
            (durability, fix_mode),
            &self.dir.join(name),
        )
        .map(|()| true);
        if written.is_err() {
            // Best effort, as for a temporary file: a short file left here is found by its
            // content and replaced.
            let _ = unlinkat(self.handle, name, UnlinkatFlags::NoRemoveDir);
        }
        written
    }

    /// Removes `name`; false if it was already gone.
    fn remove(&self, name: &str) -> Result<bool, FilterError> {
        match unlinkat(self.handle, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(self.err("remove", name)(e)),
        }
    }
}

/// Gives a new `file` (at `path`, for errors) its mode where the umask stripped it, `content`,
/// and with `FsyncEach` a sync of its data.
fn fill(
    mut file: File,
    content: &[u8],
    (durability, fix_mode): (Durability, bool),
    path: &std::path::Path,
) -> Result<(), FilterError> {
    if fix_mode {
        file.set_permissions(Permissions::from_mode(FILE_MODE))
            .map_err(|e| FilterError::io("set the mode of", path)(e))?;
    }
    file.write_all(content)
        .map_err(|e| FilterError::io("write", path)(e))?;
    if durability == Durability::FsyncEach {
        file.sync_data()
            .map_err(|e| FilterError::io("fsync", path)(e))?;
    }
    Ok(())
}

/// Whether the process umask removes any bit of `mode`. Read from /proc (Linux 4.7+) rather
/// than with umask(2), which cannot read without setting and races with other threads; if it
/// cannot be read, assume it does, which only costs an fchmod per file.
fn umask_strips(mode: u32) -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok());
    umask.is_none_or(|u| u & mode != 0)
}

/// Makes a finished batch durable: `syncfs` covers data and renames alike; after per-file
/// fsyncs only the directory (the renames) remains.
fn flush(at: &DirAt<'_>, durability: Durability) -> Result<(), FilterError> {
    match durability {
        Durability::Syncfs => nix::unistd::syncfs(at.handle).map_err(at.err("syncfs", ".")),
        Durability::FsyncEach => at
            .handle
            .sync_all()
            .map_err(FilterError::io("fsync", at.dir)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::entry::Verdict;
    use crate::model::MacAddr;

    #[test]
    fn observe_classifies_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = Target::Mac(MacAddr::new([0xaa, 0, 0, 0, 0, 1]));
        let b = Target::Mac(MacAddr::new([0xaa, 0, 0, 0, 0, 2]));
        let c = Target::Mac(MacAddr::new([0xaa, 0, 0, 0, 0, 3]));
        let plain = DenyLine::Plain;
        fs::write(d.join(a.file_name()), a.content(Verdict::Deny, plain)).unwrap();
        // Right length, wrong MAC: only a content check notices.
        fs::write(d.join(b.file_name()), a.content(Verdict::Allow, plain)).unwrap();
        fs::write(d.join(c.file_name()), "").unwrap();
        fs::write(d.join(".virtmasq-tmp.aa-00-00-00-00-09"), "x").unwrap();
        fs::write(d.join("README"), "x").unwrap();
        fs::write(d.join(".keep"), "").unwrap();
        fs::create_dir(d.join("aa-00-00-00-00-04")).unwrap();
        let cases = [
            (Verify::Sizes, FileState::Allow),
            (Verify::Contents, FileState::Other),
        ];
        for (verify, b_state) in cases {
            let seen = observe(d, verify, plain).unwrap();
            assert_eq!(seen.files.get(&a), Some(&FileState::Deny));
            assert_eq!(seen.files.get(&b), Some(&b_state), "{verify:?}");
            assert_eq!(seen.files.get(&c), Some(&FileState::Other));
            assert_eq!(seen.leftovers, [".virtmasq-tmp.aa-00-00-00-00-09"]);
            assert_eq!(seen.foreign, ["README", "aa-00-00-00-00-04"]);
        }
    }

    #[test]
    fn a_file_planned_as_new_but_present_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("hd");
        ensure_dir(&d).unwrap();
        let a = Target::Mac(MacAddr::new([0xaa, 0, 0, 0, 0, 2]));
        // Another writer (or a crash) left a longer, different file under the name.
        fs::write(
            d.join(a.file_name()),
            "left here by something else, much longer\n",
        )
        .unwrap();
        let actions = [FileAction::Write {
            target: a,
            verdict: Verdict::Allow,
            replaces: false,
        }];
        apply(&d, &actions, DenyLine::Tagged, Some(Durability::Syncfs)).unwrap();
        let text = fs::read_to_string(d.join(a.file_name())).unwrap();
        assert_eq!(text, a.content(Verdict::Allow, DenyLine::Tagged));
    }

    #[test]
    fn apply_writes_with_mode_and_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("hd");
        ensure_dir(&d).unwrap();
        let a = Target::Mac(MacAddr::new([0xaa, 0, 0, 0, 0, 1]));
        for durability in [Some(Durability::Syncfs), Some(Durability::FsyncEach), None] {
            let actions = [
                FileAction::Write {
                    target: a,
                    verdict: Verdict::Deny,
                    replaces: false,
                },
                FileAction::Write {
                    target: Target::Unknown,
                    verdict: Verdict::Allow,
                    replaces: true,
                },
                FileAction::Remove {
                    name: "gone".into(),
                },
            ];
            let done = apply(&d, &actions, DenyLine::Tagged, durability).unwrap();
            assert_eq!(
                done,
                Applied {
                    written: 2,
                    rewritten: 1,
                    removed: 0
                }
            );
            let text = fs::read_to_string(d.join("aa-00-00-00-00-01")).unwrap();
            assert_eq!(text, a.content(Verdict::Deny, DenyLine::Tagged));
            let mode = fs::metadata(d.join("unknown-macs"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o644);
            let names: Vec<_> = fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names.len(), 2, "{names:?}");
        }
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
}
