//! Atomic file replacement: a temporary dotfile in the same directory, fsync, rename, fsync of
//! the directory. A reader (dnsmasq, a person) sees the old file or the new one, never half.
//!
//! The agent runs as root: every file it creates is new (`O_EXCL`), never reached through a
//! symlink (`O_NOFOLLOW`) and, where temporary, has a name nobody can guess; a file it only
//! reads is opened without blocking and refused unless it is a regular file (a FIFO would
//! freeze the event loop).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates a file that did not exist, never through a symlink.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Creates a new file named `<prefix><random>` in `dir` (see [`create_new`]); the name cannot
/// be guessed, so nobody can plant anything there beforehand.
pub fn create_temp(dir: &Path, prefix: &str, mode: u32) -> io::Result<(File, PathBuf)> {
    for _ in 0..16 {
        let path = dir.join(format!("{prefix}{:016x}", random_u64()?));
        match create_new(&path, mode) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free temporary name in {}", dir.display()),
    ))
}

fn random_u64() -> io::Result<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: the buffer is valid for writes of its length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(buf))
}

/// Opens an existing regular file for reading, never through a symlink and without blocking
/// (a FIFO is refused, not waited on). With `single_link`, a file with other hard links is
/// refused too (it could be someone else's file linked in).
pub fn open_regular(path: &Path, single_link: bool) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    check_regular(&f, path, single_link)?;
    Ok(f)
}

fn check_regular(f: &File, path: &Path, single_link: bool) -> io::Result<()> {
    let meta = f.metadata()?;
    if !meta.file_type().is_file() || (single_link && meta.nlink() != 1) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file of its own", path.display()),
        ));
    }
    Ok(())
}

/// Makes `path` a directory (not a symlink to one) owned by `uid`:`gid` with `mode`, creating
/// it if needed, and fixing owner and mode of one left by an earlier layout. Changes go through
/// a descriptor of the directory itself. Without CAP_FOWNER root can chmod only what it owns,
/// so a directory of another owner is taken back (by the caller's own ids) before the mode is
/// set.
pub fn secure_dir(path: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    match fs::create_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let meta = dir.metadata()?;
    if meta.mode() & 0o7777 == mode && meta.uid() == uid && meta.gid() == gid {
        return Ok(());
    }
    let (me, my_group) = (nix::unistd::geteuid(), nix::unistd::getegid());
    std::os::unix::fs::fchown(&dir, Some(me.as_raw()), Some(my_group.as_raw()))?;
    dir.set_permissions(fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::fchown(&dir, Some(uid), Some(gid))
}

/// Writes `contents` to `path` atomically with the given mode. Leaves no temporary file behind
/// on error.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    replace(path, contents, mode, true)
}

/// Replaces `path` atomically (a temporary dotfile renamed over it) without making it durable:
/// for files that mean nothing after a reboot, such as times of the monotonic clock. A crash
/// of the process leaves the old file or the new one; a power loss may leave either, or an
/// empty one.
pub fn replace_volatile(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    replace(path, contents, mode, false)
}

/// A temporary dotfile in `path`'s directory with `contents`, renamed over `path`; with
/// `durable`, the file is synced before and the directory after the rename.
fn replace(path: &Path, contents: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    // A leading dot keeps dnsmasq's conf-dir and hostsdir readers from picking it up.
    let prefix = format!(".{}.virtmasq-tmp.", name.to_string_lossy());
    let (mut f, tmp) = create_temp(dir, &prefix, mode)?;
    let result = (|| {
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsyncs every file (or directory) in `files`, all at the same time: a journaling file
/// system then makes them durable in one commit where one after the other costs a commit
/// each. The first error, if any, once all are done.
pub fn sync_all_together(files: &[File]) -> io::Result<()> {
    let Some((first, rest)) = files.split_first() else {
        return Ok(());
    };
    std::thread::scope(|s| {
        let others: Vec<_> = rest.iter().map(|f| s.spawn(|| f.sync_all())).collect();
        let mut result = first.sync_all();
        for t in others {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("fsync panicked")));
            result = result.and(r);
        }
        result
    })
}

/// Reads a regular file (a symlink to one too), or `None` if it does not exist. Anything else
/// (a FIFO, a device) is an error, not a wait.
pub fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let mut f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    check_regular(&f, path, false)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Creates a directory (and parents) with the given mode if it does not exist, and sets the
/// mode only where it differs (a chmod of a directory another user owns needs CAP_FOWNER,
/// which the service does not keep).
pub fn ensure_dir(path: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir_all(path)?;
    if fs::metadata(path)?.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// An exclusive `flock` on a lock file, held until dropped: serialises writers across
/// processes (two CLI calls, a CLI call and the daemon).
#[derive(Debug)]
pub struct FileLock {
    _lock: nix::fcntl::Flock<File>,
}

impl FileLock {
    /// Takes the lock on `path` (created if needed), retrying every 10 ms for at most
    /// `timeout`; a timeout is `ErrorKind::WouldBlock`.
    pub fn acquire(path: &Path, timeout: std::time::Duration) -> io::Result<Self> {
        use nix::errno::Errno;
        use nix::fcntl::{Flock, FlockArg};
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        let start = std::time::Instant::now();
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(Self { _lock: lock }),
                Err((back, Errno::EWOULDBLOCK)) if start.elapsed() < timeout => {
                    file = back;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err((_, Errno::EWOULDBLOCK)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!(
                            "{} is held by another virtmasq process (waited {:?})",
                            path.display(),
                            start.elapsed()
                        ),
                    ))
                }
                Err((_, e)) => return Err(e.into()),
            }
        }
    }

    /// Writes this process's id into the held lock file, so that a process refused the lock
    /// can name the holder.
    pub fn record_pid(&self) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let file: &File = &self._lock;
        file.set_len(0)?;
        file.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_atomically_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.conf");
        write_atomic(&p, b"one\n", 0o644).unwrap();
        write_atomic(&p, b"two\n", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        assert_eq!(read_if_exists(&dir.path().join("none")).unwrap(), None);
    }

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let held = FileLock::acquire(&p, std::time::Duration::ZERO).unwrap();
        let err = FileLock::acquire(&p, std::time::Duration::from_millis(30)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(held);
        assert!(FileLock::acquire(&p, std::time::Duration::ZERO).is_ok());
    }

    #[test]
    fn failure_leaves_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub");
        fs::create_dir(&p).unwrap();
        // Renaming a file over a directory fails: the directory must survive, no temp left.
        assert!(write_atomic(&p, b"x", 0o644).is_err());
        assert!(p.is_dir());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_symlink_planted_at_the_old_predictable_temp_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        let old_tmp = dir
            .path()
            .join(format!(".a.conf.virtmasq-tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
        write_atomic(&dir.path().join("a.conf"), b"x\n", 0o644).unwrap();
        assert!(!victim.exists(), "written through a planted symlink");
        assert_eq!(fs::read(dir.path().join("a.conf")).unwrap(), b"x\n");
    }

    #[test]
    fn temp_files_are_new_and_unpredictable() {
        let dir = tempfile::tempdir().unwrap();
        let (_, a) = create_temp(dir.path(), ".t.", 0o600).unwrap();
        let (_, b) = create_temp(dir.path(), ".t.", 0o600).unwrap();
        assert_ne!(a, b);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        assert!(create_new(&link, 0o600).is_err());
        assert!(!dir.path().join("elsewhere").exists());
    }

    /// Runs `f` on a thread and fails the test if it has not returned within 5 s.
    fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("blocked on a FIFO")
    }

    #[test]
    fn a_fifo_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        let f = fifo.clone();
        assert!(bounded(move || read_if_exists(&f)).is_err());
        assert!(bounded(move || open_regular(&fifo, false)).is_err());
    }

    #[test]
    fn open_regular_refuses_symlinks_and_extra_links() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "1\n").unwrap();
        assert!(open_regular(&file, true).is_ok());
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(open_regular(&link, false).is_err());
        fs::hard_link(&file, dir.path().join("h")).unwrap();
        assert!(open_regular(&file, true).is_err());
        assert!(open_regular(&file, false).is_ok());
    }

    #[test]
    fn secure_dir_takes_back_a_group_writable_directory_and_refuses_a_symlink() {
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o775)).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
        secure_dir(&d, 0o755, 0, 0).unwrap();
        let meta = fs::metadata(&d).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o755, 0, 0)
        );
        secure_dir(&d, 0o770, 65534, 0).unwrap();
        let meta = fs::metadata(&d).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o770, 65534, 0)
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(secure_dir(&link, 0o755, 0, 0).is_err());
    }
}
