//! Asking dnsmasq itself whether a configuration is valid (`dnsmasq --test`), before anything
//! is started or restarted on it.
//!
//! The check runs as dnsmasq's unprivileged account, not as root: dnsmasq 2.90 runs a
//! `conf-script=` while it parses, and a configuration is only as trusted as the directory it
//! sits in. The text to check is written by root into `dir`, a directory only root can write,
//! under a name nobody can guess and created exclusively, never through a symlink.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use super::process::{self, RunAs};
use crate::fsutil;

/// Checks `text` by writing it to a new dotfile in `dir` (which must be writable by root
/// only) and running `dnsmasq --test` on it as `run_as`. Returns dnsmasq's message when it
/// refuses.
pub fn check_text(binary: &Path, dir: &Path, text: &str, run_as: RunAs) -> Result<(), String> {
    let (mut file, tmp) = fsutil::create_temp(dir, ".virtmasq-test.", 0o644)
        .map_err(|e| format!("cannot create a test file in {}: {e}", dir.display()))?;
    let result = file
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))
        .and_then(|()| {
            drop(file);
            check_args(binary, &[format!("--conf-file={}", tmp.display())], run_as)
        });
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Runs `dnsmasq --test` with `args` as `run_as`; Ok when dnsmasq says the syntax is fine.
pub fn check_args(binary: &Path, args: &[String], run_as: RunAs) -> Result<(), String> {
    let mut cmd = Command::new(binary);
    cmd.arg("--test").args(args);
    process::run_unprivileged(&mut cmd, run_as);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if msg.is_empty() {
        msg = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    Err(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn nobody() -> RunAs {
        RunAs::lookup("nobody").unwrap()
    }

    /// A directory dnsmasq's account can read, as the run directory is.
    fn readable_dir() -> tempfile::TempDir {
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn old_test_name(dir: &Path) -> std::path::PathBuf {
        dir.join(format!(".virtmasq-test.{}.conf", std::process::id()))
    }

    #[test]
    fn a_symlink_at_the_old_test_file_name_is_not_written_through() {
        let dir = readable_dir();
        let victim = dir.path().join("victim");
        std::os::unix::fs::symlink(&victim, old_test_name(dir.path())).unwrap();
        check_text(Path::new("dnsmasq"), dir.path(), "port=0\n", nobody()).unwrap();
        assert!(!victim.exists(), "root wrote through a planted symlink");
    }

    #[test]
    fn a_fifo_at_the_old_test_file_name_does_not_hang_the_check() {
        let dir = readable_dir();
        let fifo = old_test_name(dir.path());
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        let path = dir.path().to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(check_text(
                Path::new("dnsmasq"),
                &path,
                "port=0\n",
                nobody(),
            ));
        });
        let result = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the check hung");
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn dnsmasq_test_runs_as_the_unprivileged_account() {
        let dir = readable_dir();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
        let script = dir.path().join("whoami.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\nid -u > {}/uid\n", out.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let text = format!("port=0\nconf-script={}\n", script.display());
        let _ = check_text(Path::new("dnsmasq"), dir.path(), &text, nobody());
        let uid = std::fs::read_to_string(out.join("uid")).expect("conf-script did not run");
        assert_eq!(uid.trim(), nobody().uid.to_string());
    }

    #[test]
    fn a_broken_configuration_is_refused_with_dnsmasq_s_words() {
        let dir = readable_dir();
        let err = check_text(
            Path::new("dnsmasq"),
            dir.path(),
            "no-such-option\n",
            nobody(),
        )
        .unwrap_err();
        assert!(err.contains("bad option at line 1"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "test file left"
        );
    }
}
