//! Start-up recovery of an interrupted system transaction: the daemon, `sync` and the hook
//! call [`at_start`] before anything else, and every apply calls [`recover`] under the
//! system lock before it observes the conf-dir. A journal left by a killed process is rolled
//! forward when its new set was completely written (it was validated before the first
//! change), with the restart it was waiting for, and rolled back otherwise; either way the
//! conf-dir ends as the old set or the new validated one.

use std::path::Path;
use std::time::Duration;

use super::apply::{ApplyError, Restarter};
use super::journal::{sweep, Journal, Phase};
use crate::config::Config;
use crate::fsutil::FileLock;
use crate::systemd::Systemd;

/// The lock every system-mode writer holds (the daemon, `sync`, the hook).
pub const LOCK_FILE: &str = "system.lock";
/// How long a start waits for another writer to finish.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// What a recovery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovered {
    /// The old files are back.
    RolledBack,
    /// The new set stays, and the unit runs on it.
    RolledForward,
}

/// Recovers an interrupted transaction, if its journal is there; cheap when it is not.
pub async fn at_start(cfg: &Config) -> Result<Option<Recovered>, ApplyError> {
    let state_dir = &cfg.paths.state_dir;
    if !Journal::path(state_dir).exists() {
        super::failpoint::hit("recovered");
        return Ok(None);
    }
    let path = state_dir.join(LOCK_FILE);
    let lock_path = path.clone();
    let lock = tokio::task::spawn_blocking(move || FileLock::acquire(&lock_path, LOCK_WAIT))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|source| ApplyError::Io {
            action: "lock",
            path,
            source,
        })?;
    let result = recover(cfg, None).await;
    drop(lock);
    super::failpoint::hit("recovered");
    result
}

/// Recovers an interrupted transaction with the system lock held; `systemd` is connected to
/// when none is given and a restart is needed. Without a journal, leftover dotfiles of a
/// finished one are removed.
pub async fn recover(
    cfg: &Config,
    systemd: Option<&Systemd>,
) -> Result<Option<Recovered>, ApplyError> {
    let state_dir = &cfg.paths.state_dir;
    let Some(mut journal) = Journal::load(state_dir)? else {
        sweep(&cfg.paths.conf_dir);
        sweep(&state_dir.join("system"));
        return Ok(None);
    };
    tracing::warn!(
        phase = ?journal.phase,
        files = journal.files.len(),
        "an earlier change of the system dnsmasq's files was interrupted; recovering"
    );
    let owned;
    let systemd = match systemd {
        Some(s) => Some(s),
        None if journal.phase != Phase::Prepared => match Systemd::system().await {
            Ok(s) => {
                owned = s;
                Some(&owned)
            }
            Err(e) => {
                tracing::warn!(error = %e, "no systemd: the files are rolled back, not restarted");
                None
            }
        },
        None => None,
    };
    // The unit the interrupted change restarts (the configuration may name another since).
    let unit = journal.unit.clone();
    let restarter = |systemd| Restarter {
        unit: &unit,
        ..Restarter::new(systemd, cfg)
    };
    let forward = journal.phase == Phase::Written && systemd.is_some() && journal.fully_written();
    if let (true, Some(systemd)) = (forward, systemd) {
        let r = restarter(systemd);
        if r.active().await && (journal.restart || journal.hangup) {
            r.restart_or_roll_back(&mut journal).await?;
        }
        r.finish(&journal)?;
        tracing::info!("the interrupted change was completed: its new set was fully written");
        return Ok(Some(Recovered::RolledForward));
    }
    let failures = journal.roll_back();
    if !failures.is_empty() {
        return Err(ApplyError::NotRestored {
            cause: Box::new(ApplyError::Interrupted),
            failures,
        });
    }
    let path = Journal::path(state_dir);
    Journal::remove(state_dir).map_err(|source| ApplyError::Io {
        action: "remove",
        path,
        source,
    })?;
    // Past `Prepared` a restart may have run on the new files (or failed on them): run the
    // old ones again, unless an administrator stopped the unit.
    if let (Some(systemd), false) = (systemd, journal.phase == Phase::Prepared) {
        let r = restarter(systemd);
        let stopped = systemd
            .unit_status(&unit)
            .await
            .is_ok_and(|s| s.active_state == "inactive");
        let restarted = journal.phase == Phase::RollingBack || (journal.restart && !stopped);
        if restarted {
            if let Some(e) = r.bring_back().await {
                tracing::error!(error = %e, "restarting on the restored files failed");
            }
        }
    }
    tracing::info!("the interrupted change was rolled back");
    Ok(Some(Recovered::RolledBack))
}

/// Forgets an interrupted transaction without finishing it: for teardown, which removes
/// every file of virtmasq's anyway (a journal kept would bring old fragments back at the
/// next start). The dotfiles of a transaction go too. Call it with the system lock held.
pub fn discard(state_dir: &Path, conf_dir: &Path, hosts_dir: &Path) -> std::io::Result<()> {
    sweep(conf_dir);
    sweep(hosts_dir);
    match std::fs::remove_file(Journal::path(state_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discard_forgets_the_journal_and_its_dotfiles() {
        let dir = tempfile::tempdir().unwrap();
        let (state, conf) = (dir.path().join("state"), dir.path().join("conf"));
        let hosts = state.join("system");
        std::fs::create_dir_all(&hosts).unwrap();
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(Journal::path(&state), "{}").unwrap();
        std::fs::write(conf.join(".virtmasq-a.conf.virtmasq-old"), "x").unwrap();
        std::fs::write(hosts.join(".a.hosts.virtmasq-new"), "x").unwrap();
        std::fs::write(conf.join("site.conf"), "x").unwrap();
        discard(&state, &conf, &hosts).unwrap();
        assert!(!Journal::path(&state).exists());
        let left: Vec<_> = std::fs::read_dir(&conf).unwrap().flatten().collect();
        assert_eq!(left.len(), 1);
        assert_eq!(std::fs::read_dir(&hosts).unwrap().count(), 0);
        discard(&state, &conf, &hosts).unwrap();
    }
}
