//! One daemon per run directory. Without a system bus nothing else stops a second daemon, and
//! two would each stop and restart the other's dnsmasq instances (same files, same pid files).
//! An exclusive `flock` on `<run_dir>/virtmasq.lock`, taken before anything is written, held
//! until the daemon exits (the kernel drops it even on SIGKILL).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::fsutil::FileLock;

/// The lock file's name in the run directory (network names cannot take it: see
/// [`crate::model::RESERVED_PREFIX`]).
pub const LOCK_FILE: &str = "virtmasq.lock";

/// Another daemon holds the lock.
#[derive(Debug, Error)]
#[error(
    "another virtmasq daemon{} runs with this run directory (it holds {}); stop it first",
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
    path.display()
)]
pub struct AlreadyRunning {
    /// The lock file.
    pub path: PathBuf,
    /// The holder's pid, as it recorded it.
    pub pid: Option<u32>,
}

/// Takes the daemon lock in `run_dir` without waiting, and records this process's pid in it.
pub fn take(run_dir: &Path) -> anyhow::Result<FileLock> {
    let path = run_dir.join(LOCK_FILE);
    match FileLock::acquire(&path, Duration::ZERO) {
        Ok(lock) => {
            lock.record_pid()
                .map_err(|e| anyhow::anyhow!(e).context(format!("writing {}", path.display())))?;
            Ok(lock)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            let pid = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse().ok());
            Err(AlreadyRunning { path, pid }.into())
        }
        Err(e) => Err(anyhow::anyhow!(e).context(format!("locking {}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = take(dir.path()).unwrap();
        let err = take(dir.path()).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())) && text.contains(LOCK_FILE),
            "{text}"
        );
        assert_eq!(crate::exit::code_for(&err), crate::exit::TEMPFAIL);
        drop(held);
        assert!(take(dir.path()).is_ok());
    }
}
