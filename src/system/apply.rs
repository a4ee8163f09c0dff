//! System mode, effects: observe the conf-dir, write the plan, validate the whole configuration
//! the way the distribution's unit does, restart over D-Bus, and put every file back byte for
//! byte if validation or the restart fails. Files virtmasq did not write are never touched.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use thiserror::Error;

use super::effective::{is_ours, Flavor, DEBIAN_HELPER};
use super::plan::{Observed, Plan};
use crate::fsutil;
use crate::systemd::{Systemd, SystemdError};

/// A change that did not happen (and left everything as it was, unless said otherwise).
#[derive(Debug, Error)]
pub enum ApplyError {
    /// A file could not be read or written.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The system dnsmasq's own check refused the configuration; the files were restored.
    #[error("the system dnsmasq refused the new configuration, so nothing was changed: {message}")]
    Invalid {
        /// dnsmasq's words.
        message: String,
    },
    /// The restart failed; the files were restored and dnsmasq restarted on them.
    #[error("restarting {unit} failed, so the previous configuration was restored{}", rollback_note(.rollback))]
    Restart {
        /// The unit.
        unit: String,
        /// What systemd said.
        #[source]
        source: SystemdError,
        /// How the restart on the restored files went (None: it worked).
        rollback: Option<String>,
    },
    /// A change failed, and putting the previous files back failed too: the conf-dir may hold
    /// a mix of old and new files, and the message says which could not be restored.
    #[error("{cause}; BUT the previous files could not all be put back ({}): check them before dnsmasq restarts", failures.join("; "))]
    NotRestored {
        /// What failed first.
        #[source]
        cause: Box<ApplyError>,
        /// Each file that could not be restored, with why.
        failures: Vec<String>,
    },
    /// SIGHUP could not be delivered (hosts files are written; dnsmasq will read them at its
    /// next restart or SIGHUP).
    #[error("asking {unit} to re-read its hosts files failed")]
    Hangup {
        /// The unit.
        unit: String,
        /// What systemd said.
        #[source]
        source: SystemdError,
    },
}

fn rollback_note(rollback: &Option<String>) -> String {
    match rollback {
        None => " and dnsmasq runs on it again".into(),
        Some(e) => format!(", but restarting it on that failed too: {e}"),
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ApplyError {
    let path = path.to_owned();
    move |source| ApplyError::Io {
        action,
        path,
        source,
    }
}

/// Reads virtmasq's files: fragments (`virtmasq-*.conf` with virtmasq's mark) in `conf_dir`
/// and hosts files in `hosts_dir`.
pub fn observe(conf_dir: &Path, hosts_dir: &Path) -> Result<Observed, ApplyError> {
    let mut o = Observed::default();
    for entry in fs::read_dir(conf_dir).map_err(io("read", conf_dir))? {
        let entry = entry.map_err(io("read", conf_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let network_fragment = name.starts_with("virtmasq-") && name.ends_with(".conf");
        if !network_fragment && name != super::plan::SHARED_FRAGMENT {
            continue;
        }
        let path = entry.path();
        if is_ours(&path) {
            let bytes = fs::read(&path).map_err(io("read", &path))?;
            o.fragments.insert(path, bytes);
        } else {
            o.foreign.insert(path);
        }
    }
    match fs::read_dir(hosts_dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "hosts") {
                    let bytes = fs::read(&path).map_err(io("read", &path))?;
                    o.hosts.insert(path, bytes);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("read", hosts_dir)(e)),
    }
    Ok(o)
}

/// The check the distribution's unit runs before starting dnsmasq, with its output kept.
pub fn check(flavor: Flavor, binary: &Path) -> Result<(), String> {
    let out = match flavor {
        // Debian's ExecStartPre is `systemd-helper checkconfig`, which runs
        // `dnsmasq --test -7 $CONFIG_DIR $DNSMASQ_OPTS` with output thrown away: the same
        // command, from the same shell library, with its output kept.
        Flavor::Debian => Command::new("sh")
            .arg("-c")
            .arg(format!(
                ". {DEBIAN_HELPER} && exec \"$DAEMON\" --test ${{CONFIG_DIR:+-7 \"$CONFIG_DIR\"}} $DNSMASQ_OPTS"
            ))
            .output(),
        Flavor::Plain => Command::new(binary).arg("--test").output(),
    }
    .map_err(|e| format!("cannot run the configuration check: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Err(if text.is_empty() {
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    } else {
        text
    })
}

/// How a plan was carried out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Files written or removed.
    pub changed: Vec<PathBuf>,
    /// dnsmasq was restarted.
    pub restarted: bool,
    /// dnsmasq was sent SIGHUP.
    pub hung_up: bool,
    /// Time of the restart, if any.
    pub restart_time: Option<Duration>,
}

/// Where the plan goes and who restarts dnsmasq.
pub struct Apply<'a> {
    /// systemd.
    pub systemd: &'a Systemd,
    /// The dnsmasq unit.
    pub unit: &'a str,
    /// How to check the configuration.
    pub flavor: Flavor,
    /// The dnsmasq binary (for the plain check).
    pub binary: &'a Path,
    /// How long a restart may take.
    pub restart_timeout: Duration,
    /// SIGHUP is safe for this dnsmasq (else a hosts change restarts it).
    pub hangup_safe: bool,
}

impl Apply<'_> {
    /// Carries out `plan`: write, check, restart; on failure restore every file as it was.
    pub async fn run(&self, plan: &Plan) -> Result<Applied, ApplyError> {
        let mut applied = Applied::default();
        if plan.is_empty() {
            return Ok(applied);
        }
        let touched: Vec<&Path> = plan
            .writes
            .iter()
            .map(|(p, _)| p.as_path())
            .chain(plan.removals.iter().map(PathBuf::as_path))
            .collect();
        let backup = Backup::take(&touched)?;
        if let Err(e) = write_all(plan) {
            return Err(backup.undo(e));
        }
        applied.changed = touched.iter().map(|p| p.to_path_buf()).collect();
        // A system dnsmasq an administrator stopped stays stopped: it reads the files when it
        // starts. The check still runs, so a broken result is never left behind.
        let active = self
            .systemd
            .unit_status(self.unit)
            .await
            .map(|s| s.is_active())
            .unwrap_or(true);
        if !active && (plan.restart || plan.hangup) {
            if let Err(message) = check(self.flavor, self.binary) {
                return Err(backup.undo(ApplyError::Invalid { message }));
            }
        } else if plan.restart || (plan.hangup && !self.hangup_safe) {
            if let Err(message) = check(self.flavor, self.binary) {
                return Err(backup.undo(ApplyError::Invalid { message }));
            }
            match self
                .systemd
                .restart_and_wait(self.unit, self.restart_timeout)
                .await
            {
                Ok(report) => {
                    applied.restarted = true;
                    applied.restart_time = Some(report.elapsed);
                }
                Err(source) => {
                    let failures = backup.restore();
                    let rollback = self
                        .systemd
                        .restart_and_wait(self.unit, self.restart_timeout)
                        .await
                        .err()
                        .map(|e| crate::error::chain(&e));
                    let err = ApplyError::Restart {
                        unit: self.unit.to_owned(),
                        source,
                        rollback,
                    };
                    return Err(not_restored(err, failures));
                }
            }
        } else if plan.hangup {
            self.systemd
                .hangup(self.unit)
                .await
                .map_err(|source| ApplyError::Hangup {
                    unit: self.unit.to_owned(),
                    source,
                })?;
            applied.hung_up = true;
        }
        for p in &plan.stale_hosts {
            if fs::remove_file(p).is_ok() {
                applied.changed.push(p.clone());
            }
        }
        Ok(applied)
    }
}

fn write_all(plan: &Plan) -> Result<(), ApplyError> {
    for (path, text) in &plan.writes {
        // Create a missing directory, never change an existing one's mode: the conf-dir is
        // the system's.
        if let Some(dir) = path.parent().filter(|d| !d.exists()) {
            fsutil::ensure_dir(dir, 0o755).map_err(io("create", dir))?;
        }
        fsutil::write_atomic(path, text.as_bytes(), 0o644).map_err(io("write", path))?;
    }
    for path in &plan.removals {
        fs::remove_file(path).map_err(io("remove", path))?;
    }
    Ok(())
}

/// The contents of files before a change, to put back byte for byte.
/// Each touched file as it was: its bytes and permission bits, or absent.
struct Backup(BTreeMap<PathBuf, Option<(Vec<u8>, u32)>>);

impl Backup {
    fn take(paths: &[&Path]) -> Result<Self, ApplyError> {
        use std::os::unix::fs::PermissionsExt;
        let mut m = BTreeMap::new();
        for p in paths {
            let bytes = fsutil::read_if_exists(p).map_err(io("read", p))?;
            let before = match bytes {
                Some(b) => {
                    let mode = fs::metadata(p).map_err(io("read", p))?.permissions().mode();
                    Some((b, mode & 0o7777))
                }
                None => None,
            };
            m.insert(p.to_path_buf(), before);
        }
        Ok(Self(m))
    }

    /// Puts every file back; the ones that could not be, with why.
    fn restore(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for (path, before) in &self.0 {
            let result = match before {
                Some((bytes, mode)) => fsutil::write_atomic(path, bytes, *mode),
                None => match fs::remove_file(path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    r => r,
                },
            };
            if let Err(e) = result {
                tracing::error!(path = %path.display(), error = %e, "could not restore file");
                failures.push(format!("{}: {e}", path.display()));
            }
        }
        failures
    }

    /// Puts every file back after `err`; the error says so if that failed too.
    fn undo(&self, err: ApplyError) -> ApplyError {
        not_restored(err, self.restore())
    }
}

fn not_restored(err: ApplyError, failures: Vec<String>) -> ApplyError {
    match failures.is_empty() {
        true => err,
        false => ApplyError::NotRestored {
            cause: Box::new(err),
            failures,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A rollback puts a file back as it was: its bytes and its mode, not 0644 whatever it
    /// had; a file that did not exist is removed again.
    #[test]
    fn a_rollback_restores_bytes_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("site.conf");
        let added = dir.path().join("virtmasq-lab.conf");
        fs::write(&kept, "dhcp-range=10.0.0.2,10.0.0.9\n").unwrap();
        fs::set_permissions(&kept, fs::Permissions::from_mode(0o640)).unwrap();
        let backup = Backup::take(&[kept.as_path(), added.as_path()]).unwrap();
        fsutil::write_atomic(&kept, b"changed\n", 0o644).unwrap();
        fsutil::write_atomic(&added, b"new\n", 0o644).unwrap();
        assert!(backup.restore().is_empty());
        assert_eq!(
            fs::read_to_string(&kept).unwrap(),
            "dhcp-range=10.0.0.2,10.0.0.9\n"
        );
        let mode = fs::metadata(&kept).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        assert!(!added.exists());
    }

    /// A restore that fails is part of the error, never only a log line under a message that
    /// says nothing changed.
    #[test]
    fn a_restore_that_fails_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let conf_dir = dir.path().join("dnsmasq.d");
        fs::create_dir(&conf_dir).unwrap();
        let frag = conf_dir.join("virtmasq-lab.conf");
        fs::write(&frag, "old\n").unwrap();
        let backup = Backup::take(&[frag.as_path()]).unwrap();
        fs::remove_dir_all(&conf_dir).unwrap();
        let err = backup.undo(ApplyError::Invalid {
            message: "bad line".into(),
        });
        let text = err.to_string();
        assert!(matches!(err, ApplyError::NotRestored { .. }), "{text}");
        assert!(
            text.contains("virtmasq-lab.conf") && text.contains("bad line"),
            "{text}"
        );
    }
}
