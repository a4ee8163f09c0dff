//! System mode, effects: observe the conf-dir, validate the configuration the unit would start
//! with *before* the conf-dir changes (a staged copy, [`super::stage`]), record the change in a
//! durable journal ([`super::journal`]), rename the new files in, restart over D-Bus within the
//! unit's start limit, and put every file back byte for byte if the restart fails or is
//! refused. Files virtmasq did not write are never touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::effective::{is_ours, EffectiveConfig};
use super::failpoint;
use super::journal::{FileError, Journal, Phase, Unreadable};
use super::plan::{Observed, Plan};
use super::stage::{Checker, StageFailure};
use crate::config::Config;
use crate::systemd::limit::RestartLog;
use crate::systemd::{Systemd, SystemdError};
use crate::timing::phase;

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
    /// An earlier change was cut short (the process was killed, the machine lost power) and
    /// its journal was found at start.
    #[error("an earlier change of the system dnsmasq's files was interrupted")]
    Interrupted,
    /// The journal of an earlier change cannot be read.
    #[error(transparent)]
    Journal(#[from] Unreadable),
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

impl From<FileError> for ApplyError {
    fn from(e: FileError) -> Self {
        ApplyError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
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

/// Who restarts dnsmasq, and where the journal and the restart log are.
pub struct Restarter<'a> {
    /// systemd.
    pub systemd: &'a Systemd,
    /// The dnsmasq unit.
    pub unit: &'a str,
    /// virtmasq's state directory (the journal, the staged copy, the restart log).
    pub state_dir: &'a Path,
    /// How long a restart may take.
    pub restart_timeout: Duration,
}

/// Where the plan goes and who restarts dnsmasq.
pub struct Apply<'a> {
    /// The restarts and the journal.
    pub restarter: Restarter<'a>,
    /// The distribution's check, pointed at a staged copy of the conf-dir.
    pub checker: Checker,
    /// SIGHUP is safe for this dnsmasq (else a hosts change restarts it).
    pub hangup_safe: bool,
}

impl<'a> Apply<'a> {
    /// The transaction for `cfg`'s paths and unit, on a system configured as `effective`.
    pub fn new(
        systemd: &'a Systemd,
        cfg: &'a Config,
        effective: &'a EffectiveConfig,
        hangup_safe: bool,
    ) -> Self {
        Self {
            restarter: Restarter::new(systemd, cfg),
            checker: Checker {
                flavor: effective.flavor,
                binary: cfg.paths.dnsmasq.clone(),
                conf_dir: cfg.paths.conf_dir.clone(),
                args: effective.args.clone(),
                stage_dir: cfg.paths.state_dir.join("system.stage"),
            },
            hangup_safe,
        }
    }

    /// Carries out `plan`: check a staged copy (while the journal and the new files are
    /// written beside the old ones), rename in, restart; on a refused check or a failed
    /// restart put every file back as it was (and bring the unit back on them).
    pub async fn run(&self, plan: &Plan) -> Result<Applied, ApplyError> {
        let r = &self.restarter;
        let mut applied = Applied::default();
        if plan.is_empty() {
            return Ok(applied);
        }
        // A system dnsmasq an administrator stopped stays stopped: it reads the files when it
        // starts. The check still runs, so a broken result is never left behind.
        let active = {
            let _p = phase("active");
            r.active().await
        };
        let restart = active && (plan.restart || (plan.hangup && !self.hangup_safe));
        // Hosts files alone do not change what the check reads: a SIGHUP needs none.
        let check = plan.restart || (plan.hangup && !(active && self.hangup_safe));
        // The journal and the new files beside the old ones, on the blocking pool while the
        // check runs: neither changes anything dnsmasq reads. Only the renames below do, and
        // they wait for the check.
        let journaling = phase("journal");
        let journal = Journal::new(r.unit, plan)?;
        let state_dir = r.state_dir.to_owned();
        let prepared = tokio::task::spawn_blocking(move || prepare_new_set(journal, &state_dir));
        let checked = match check {
            true => {
                let _p = phase("check");
                self.check(plan).await
            }
            false => Ok(()),
        };
        let prepared = prepared
            .await
            .map_err(|e| io("write", r.state_dir)(std::io::Error::other(e.to_string())))
            .and_then(|p| p);
        let journal = match (checked, prepared) {
            (Ok(()), Ok(journal)) => journal,
            (Err(refused), Ok(journal)) => return Err(undo(&journal, r.state_dir, refused)),
            // A failed prepare has cleaned up after itself.
            (Err(e), Err(_)) | (Ok(()), Err(e)) => return Err(e),
        };
        failpoint::hit("staged");
        let state_dir = r.state_dir.to_owned();
        // Lines that stay loaded are recorded before their fragment goes (a kill in between
        // leaves a record too many, which costs one restart, never one too few); a restart
        // clears the record once it is done.
        let linger = match (restart, active) {
            (false, true) => plan.lingering_changed.then(|| plan.lingering.clone()),
            (false, false) => Some(Default::default()),
            (true, _) => None,
        };
        let mut journal = tokio::task::spawn_blocking(move || {
            if let Some(set) = linger {
                if let Err(e) = super::linger::store(&state_dir, &set) {
                    let path = super::linger::record_path(&state_dir);
                    return Err(undo(&journal, &state_dir, io("write", &path)(e)));
                }
            }
            commit_new_set(journal, &state_dir)
        })
        .await
        .map_err(|e| io("write", r.state_dir)(std::io::Error::other(e.to_string())))??;
        drop(journaling);
        applied.changed = journal.files.iter().map(|e| e.path.clone()).collect();
        if restart {
            let _p = phase("restart");
            let report = r.restart_or_roll_back(&mut journal).await?;
            applied.restarted = true;
            applied.restart_time = Some(report.elapsed);
            super::linger::restarted(r.state_dir);
        }
        let finishing = phase("finish");
        applied.changed.extend(r.finish(&journal)?);
        drop(finishing);
        if !restart && active && plan.hangup {
            r.systemd
                .hangup(r.unit)
                .await
                .map_err(|source| ApplyError::Hangup {
                    unit: r.unit.to_owned(),
                    source,
                })?;
            applied.hung_up = true;
        }
        Ok(applied)
    }
}

impl Apply<'_> {
    /// The distribution's check on a staged copy of the conf-dir as `plan` leaves it, on the
    /// blocking pool (the daemon's loop has one thread).
    async fn check(&self, plan: &Plan) -> Result<(), ApplyError> {
        let (checker, staged) = (self.checker.clone(), plan.clone());
        let checked = tokio::task::spawn_blocking(move || checker.check_plan(&staged))
            .await
            .unwrap_or_else(|e| Err(StageFailure::Refused(format!("the check panicked: {e}"))));
        match checked {
            Ok(()) => Ok(()),
            Err(StageFailure::Refused(message)) => Err(ApplyError::Invalid { message }),
            Err(StageFailure::Io(action, path, source)) => Err(ApplyError::Io {
                action,
                path,
                source,
            }),
        }
    }
}

impl<'a> Restarter<'a> {
    /// `cfg`'s unit, state directory and restart timeout.
    pub fn new(systemd: &'a Systemd, cfg: &'a Config) -> Self {
        Self {
            systemd,
            unit: &cfg.system.unit,
            state_dir: &cfg.paths.state_dir,
            restart_timeout: cfg.system.restart_timeout(),
        }
    }

    /// Whether the unit runs (an unknown state counts as running).
    pub async fn active(&self) -> bool {
        self.systemd
            .active_state(self.unit)
            .await
            .map(|s| matches!(s.as_str(), "active" | "reloading"))
            .unwrap_or(true)
    }

    /// The commit point: the journal goes, then the kept old files and the hosts files
    /// dnsmasq no longer reads (those removed are returned).
    pub fn finish(&self, journal: &Journal) -> Result<Vec<PathBuf>, ApplyError> {
        let path = Journal::path(self.state_dir);
        Journal::remove_complete(self.state_dir).map_err(io("remove", &path))?;
        journal.clean();
        Ok(journal
            .stale
            .iter()
            .filter(|p| fs::remove_file(p).is_ok())
            .cloned()
            .collect())
    }

    /// Restarts the unit on the new files (within its start limit, keeping room for a
    /// rollback); if that fails, times out or is refused, the old files go back and the unit
    /// is brought back on them.
    pub(crate) async fn restart_or_roll_back(
        &self,
        journal: &mut Journal,
    ) -> Result<crate::systemd::RestartReport, ApplyError> {
        let limiting = phase("start-limit");
        let limit = self.systemd.start_limit(self.unit).await;
        let log = RestartLog::new(self.state_dir);
        log.wait_for_room(limit, 1).await;
        log.record(limit);
        drop(limiting);
        let source = match self
            .systemd
            .restart_once_and_wait(self.unit, self.restart_timeout)
            .await
        {
            Ok(report) => {
                failpoint::hit("restarted");
                return Ok(report);
            }
            Err(e) => e,
        };
        tracing::error!(unit = self.unit, error = %crate::error::chain(&source), "restart failed; rolling back");
        // Only for a start that finds this rollback cut short: it then brings the unit back
        // too. Without it (a full disk) that start still puts the files back; the renames
        // below need no space.
        if let Err(e) = journal.save(self.state_dir, Phase::RollingBack) {
            tracing::warn!(error = %e, "cannot record the rollback in the journal");
        }
        failpoint::hit("rolling-back");
        let failures = journal.roll_back();
        let rollback = self.bring_back().await;
        if failures.is_empty() {
            let _ = Journal::remove(self.state_dir);
        }
        let err = ApplyError::Restart {
            unit: self.unit.to_owned(),
            source,
            rollback,
        };
        Err(not_restored(err, failures))
    }

    /// Restarts the unit (no change of files), within its start limit.
    pub async fn restart(&self) -> Result<crate::systemd::RestartReport, SystemdError> {
        let limit = self.systemd.start_limit(self.unit).await;
        let log = RestartLog::new(self.state_dir);
        log.wait_for_room(limit, 0).await;
        log.record(limit);
        let report = self
            .systemd
            .restart_and_wait(self.unit, self.restart_timeout)
            .await?;
        super::linger::restarted(self.state_dir);
        Ok(report)
    }

    /// Restarts the unit on the restored files, resetting a start limit that refuses it;
    /// what went wrong, if anything.
    pub(crate) async fn bring_back(&self) -> Option<String> {
        // A failed unit is reset first: after a failed start systemd keeps Result=exit-code
        // even when it then refuses a start for its rate limit, so a refusal cannot be told
        // apart afterwards, and bringing the old set back must not be refused.
        let failed = self.systemd.unit_status(self.unit).await;
        if failed.is_ok_and(|s| s.active_state == "failed") {
            if let Err(e) = self.systemd.reset_failed(self.unit).await {
                tracing::warn!(unit = self.unit, error = %e, "ResetFailedUnit failed");
            }
        }
        let limit = self.systemd.start_limit(self.unit).await;
        let log = RestartLog::new(self.state_dir);
        log.wait_for_room(limit, 0).await;
        log.record(limit);
        self.systemd
            .restart_and_wait(self.unit, self.restart_timeout)
            .await
            .err()
            .map(|e| crate::error::chain(&e))
    }
}

/// Records `journal` durably and writes the new files beside the old ones: nothing dnsmasq
/// reads changes. On a failure the journal is gone and so are the new files.
fn prepare_new_set(mut journal: Journal, state_dir: &Path) -> Result<Journal, ApplyError> {
    let journal_path = Journal::path(state_dir);
    if let Some(dir) = journal_path.parent().filter(|d| !d.exists()) {
        crate::fsutil::ensure_dir(dir, 0o755).map_err(io("create", dir))?;
    }
    journal
        .save(state_dir, Phase::Prepared)
        .map_err(io("write", &journal_path))?;
    failpoint::hit("journaled");
    if let Err(e) = journal.prepare() {
        let _ = Journal::remove(state_dir);
        return Err(e.into());
    }
    failpoint::hit("prepared");
    Ok(journal)
}

/// Renames the prepared files in and records that the new set is complete; on a failure the
/// files are as they were and the journal is gone.
fn commit_new_set(mut journal: Journal, state_dir: &Path) -> Result<Journal, ApplyError> {
    if let Err(e) = journal.commit() {
        return Err(undo(&journal, state_dir, e.into()));
    }
    if let Err(e) = journal.save(state_dir, Phase::Written) {
        let journal_path = Journal::path(state_dir);
        return Err(undo(&journal, state_dir, io("write", &journal_path)(e)));
    }
    failpoint::hit("written");
    Ok(journal)
}

/// Puts the files back after `err` (the unit was not restarted); the journal goes.
fn undo(journal: &Journal, state_dir: &Path, err: ApplyError) -> ApplyError {
    let failures = journal.roll_back();
    if failures.is_empty() {
        let _ = Journal::remove(state_dir);
    }
    not_restored(err, failures)
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
mod tests;
