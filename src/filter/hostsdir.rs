//! Reading and writing the hostsdir: the effects behind [`super::plan`]. Files are written
//! under a dot-name and renamed into place (or, in the daemon, swapped into place, the old
//! file left under the dot-name for its deferred flush to free), so dnsmasq (which skips
//! dotfiles and reacts to IN_MOVED_TO) never reads a half-written file; a new file is created
//! under its own name (dnsmasq reads it at IN_CLOSE_WRITE, once written); durability comes
//! from one `syncfs` per batch or one `fsync` per file, as configured.

use std::fs::{self, File, Permissions};
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, renameat2, OFlag, RenameFlags};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::config::Durability;
use super::entry::{classify, swap_name, temp_name, DenyLine, NameKind, Target};
use super::error::FilterError;
use super::plan::{FileAction, FileState, ObservedDir};

/// Swaps made by this process: each swap's temporary name is new, so that freeing the file
/// swapped out under it never races with a later change.
static SWAPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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

/// Files a change replaced or removed and left for later to free ([`apply_keeping`]).
#[derive(Debug, Default)]
pub struct Retired {
    /// Files removed or replaced by a rename, kept open (`O_PATH`): closing frees them.
    open: Vec<OwnedFd>,
    /// Replaced files, swapped out under these temporary names in the hostsdir.
    names: Vec<String>,
}

impl Retired {
    /// How many files are held.
    pub fn len(&self) -> usize {
        self.open.len() + self.names.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes over `other`'s files.
    pub fn append(&mut self, other: Retired) {
        self.open.extend(other.open);
        self.names.extend(other.names);
    }

    /// Frees them all: removes the swapped-out names from `dir` (one already gone was removed
    /// as a leftover by a sync of the whole directory) and closes the open files. Best
    /// effort: a name that cannot be removed is a leftover dotfile, which dnsmasq skips and
    /// the next sync of the whole directory removes.
    pub fn free(self, dir: &Path) {
        let Retired { open, names } = self;
        drop(open);
        if names.is_empty() {
            return;
        }
        let handle = match File::open(dir) {
            Ok(handle) => handle,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "PXE filter: replaced files stay in the hostsdir until its next full sync");
                return;
            }
        };
        for name in &names {
            match unlinkat(&handle, name.as_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => {
                    tracing::warn!(file = %dir.join(name).display(), error = %e, "PXE filter: a replaced file stays in the hostsdir until its next full sync");
                }
            }
        }
    }
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
    apply_keeping(dir, actions, form, durability, &mut Retired::default(), 0)
}

/// [`apply`], leaving up to `keep` of the files it replaces or removes in `retired`, for the
/// caller to free later ([`Retired::free`]): on some disks freeing a file costs more than
/// writing one (~0.1 ms a file on ext4 mounted with `discard`), and so does a rename over a
/// file on ext4, which allocates the new file's blocks at once (`auto_da_alloc`). A replaced
/// file is swapped out instead (`RENAME_EXCHANGE`); a removed one is kept open.
pub fn apply_keeping(
    dir: &Path,
    actions: &[FileAction],
    form: DenyLine,
    durability: Option<Durability>,
    retired: &mut Retired,
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
                        at.swap(&name, content.as_bytes(), options, retired)?;
                    } else {
                        at.write(&name, content.as_bytes(), options)?;
                    }
                }
                done.written += 1;
                done.rewritten += usize::from(*replaces);
            }
            FileAction::Remove { name } => {
                if retired.len() < keep {
                    at.keep_open(name, retired);
                }
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
        options: (Durability, bool),
    ) -> Result<(), FilterError> {
        let temp = temp_name(name);
        self.stage(&temp, content, options)?;
        self.rename_staged(&temp, name)
    }

    /// [`DirAt::write`] with the file it replaces left in `retired`: the new file, written
    /// under a name of its own, is swapped with the old one (`RENAME_EXCHANGE`, atomic as a
    /// rename is: dnsmasq sees IN_MOVED_TO for `name` and for a dotfile it skips), which then
    /// lies under that name until [`Retired::free`]. Where the file system cannot swap or
    /// `name` is gone, a rename, with the old file kept open.
    fn swap(
        &self,
        name: &str,
        content: &[u8],
        options: (Durability, bool),
        retired: &mut Retired,
    ) -> Result<(), FilterError> {
        let n = SWAPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = swap_name(name, std::process::id(), n);
        self.stage(&temp, content, options)?;
        let swapped = renameat2(
            self.handle,
            temp.as_str(),
            self.handle,
            name,
            RenameFlags::RENAME_EXCHANGE,
        );
        match swapped {
            Ok(()) => {
                retired.names.push(temp);
                Ok(())
            }
            Err(e) => {
                tracing::trace!(file = name, error = %e, "no swap: a rename instead");
                self.keep_open(name, retired);
                self.rename_staged(&temp, name)
            }
        }
    }

    /// Keeps `name` open in `retired`, so that removing or replacing it does not free it.
    /// Best effort: without it, the file is freed at once.
    fn keep_open(&self, name: &str, retired: &mut Retired) {
        let path = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if let Ok(fd) = openat(self.handle, name, path, Mode::empty()) {
            retired.open.push(fd);
        }
    }

    /// Creates (or truncates) the temporary file `temp` with `content`.
    fn stage(
        &self,
        temp: &str,
        content: &[u8],
        (durability, fix_mode): (Durability, bool),
    ) -> Result<(), FilterError> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC;
        let mode = Mode::from_bits_truncate(FILE_MODE);
        let staged = openat(self.handle, temp, flags, mode)
            .map_err(self.err("create", temp))
            .and_then(|fd| {
                fill(
                    File::from(fd),
                    content,
                    (durability, fix_mode),
                    &self.dir.join(temp),
                )
            });
        if staged.is_err() {
            self.drop_temp(temp);
        }
        staged
    }

    /// Renames the staged `temp` over `name`.
    fn rename_staged(&self, temp: &str, name: &str) -> Result<(), FilterError> {
        let renamed = renameat(self.handle, temp, self.handle, name)
            .map_err(self.err("rename into place", name));
        if renamed.is_err() {
            self.drop_temp(temp);
        }
        renamed
    }

    /// Best effort: a temporary file left here is removed by the next sync anyway.
    fn drop_temp(&self, temp: &str) {
        let _ = unlinkat(self.handle, temp, UnlinkatFlags::NoRemoveDir);
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
mod tests;
