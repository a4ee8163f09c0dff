//! Restarting a unit and knowing how it ended: `RestartUnit`, then the job's `JobRemoved`
//! signal, then the unit reaching "active", all bounded by one deadline. A failure comes back
//! with the unit's state so the caller can report why, and a unit stuck in systemd's start
//! rate limit is reset and restarted once.

use std::pin::Pin;
use std::time::{Duration, Instant};

use serde::Serialize;
use zbus::export::futures_core::Stream;
use zbus::zvariant::OwnedObjectPath;

use super::client::Systemd;
use super::error::{dbus_error_name, SystemdError, UnitFailure};
use super::manager::{ExecCommand, JobRemoved};
use crate::timing::phase;

/// How often the unit's ActiveState is read while waiting for it to become active.
const ACTIVE_POLL: Duration = Duration::from_millis(20);

/// The error systemd gives a connection that calls `Subscribe` twice.
const ALREADY_SUBSCRIBED: &str = "org.freedesktop.systemd1.AlreadySubscribed";

/// The service Result systemd records when a start was refused by `StartLimitBurst=`.
const START_LIMIT_HIT: &str = "start-limit-hit";

/// `si_code` values systemd reports for a command's end (from `<signal.h>`).
const CLD_EXITED: i32 = 1;
const CLD_KILLED: i32 = 2;
const CLD_DUMPED: i32 = 3;

/// A restart that ended with the unit active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartReport {
    /// The unit restarted.
    pub unit: String,
    /// The restart job's result ("done").
    pub job_result: String,
    /// From the `RestartUnit` call to the unit being active, the reset path included.
    pub elapsed: Duration,
    /// Main PID before the restart, if there was one.
    pub previous_main_pid: Option<u32>,
    /// Main PID after the restart.
    pub main_pid: Option<u32>,
    /// The first attempt hit systemd's start rate limit and the limit was reset
    /// (`ResetFailedUnit`) before a second attempt. Callers should coalesce restarts better.
    pub start_limit_reset: bool,
}

impl Systemd {
    /// Restarts `unit` (`RestartUnit(unit, "replace")`) and waits, at most `timeout` in all,
    /// for the restart job to finish and the unit to be active. A job that ends in anything but
    /// "done", or a unit that fails after it, gives [`SystemdError::RestartFailed`] with the
    /// job result and the unit's ActiveState/SubState/Result/ExecMainStatus; running out of time
    /// gives [`SystemdError::RestartTimedOut`]. If the unit was refused by its start rate
    /// limit (Result "start-limit-hit"), the limit is reset once and the restart retried once.
    ///
    /// Running out of time abandons the wait, not the job: systemd goes on with the restart.
    /// Each call is one start towards `StartLimitBurst=` (5 in 10 s by default): callers should
    /// coalesce restarts rather than lean on the reset.
    pub async fn restart_and_wait(
        &self,
        unit: &str,
        timeout: Duration,
    ) -> Result<RestartReport, SystemdError> {
        self.restart_with(unit, timeout, true).await
    }

    /// Like [`Self::restart_and_wait`], but a start refused by the unit's start rate limit is
    /// an error ([`SystemdError::is_start_limit_hit`]), not reset: for a change that is rolled
    /// back when systemd refuses it.
    pub async fn restart_once_and_wait(
        &self,
        unit: &str,
        timeout: Duration,
    ) -> Result<RestartReport, SystemdError> {
        self.restart_with(unit, timeout, false).await
    }

    async fn restart_with(
        &self,
        unit: &str,
        timeout: Duration,
        reset_start_limit: bool,
    ) -> Result<RestartReport, SystemdError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let is_service = unit.ends_with(".service");
        // One proxy for both reads of the main PID.
        let service = match is_service {
            true => Some(self.service_proxy(unit).await?),
            false => None,
        };
        let main_pid = || async {
            let _p = phase("main-pid");
            match &service {
                Some(s) => s
                    .main_pid()
                    .await
                    .map(|pid| (pid != 0).then_some(pid))
                    .map_err(|e| SystemdError::call(unit, "MainPID", e)),
                None => Ok(None),
            }
        };
        let previous_main_pid = main_pid().await?;
        let mut start_limit_reset = false;
        let job_result = match self.restart_once(unit, timeout, deadline).await {
            Err(refused) if reset_start_limit && refused.is_start_limit_hit() => {
                tracing::warn!(
                    unit,
                    error = %refused,
                    "start limit hit; resetting it and restarting once more"
                );
                self.reset_failed(unit).await?;
                start_limit_reset = true;
                self.restart_once(unit, timeout, deadline).await?
            }
            other => other?,
        };
        let main_pid = main_pid().await?;
        let elapsed = started.elapsed();
        tracing::info!(
            unit,
            elapsed_ms = elapsed.as_millis() as u64,
            main_pid,
            start_limit_reset,
            "restarted"
        );
        Ok(RestartReport {
            unit: unit.to_owned(),
            job_result,
            elapsed,
            previous_main_pid,
            main_pid,
            start_limit_reset,
        })
    }

    /// One restart attempt; returns the job result ("done") once the unit is active.
    async fn restart_once(
        &self,
        unit: &str,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<String, SystemdError> {
        // The match rule is in place (the stream exists) and systemd emits job signals to us
        // before the job is queued, so its JobRemoved cannot be missed however fast it is.
        let queueing = phase("restart-queue");
        let removed = self
            .manager()
            .receive_job_removed()
            .await
            .map_err(|e| SystemdError::call(unit, "AddMatch(JobRemoved)", e))?;
        let mut removed = std::pin::pin!(removed);
        self.subscribe(unit).await?;
        let job = self
            .manager()
            .restart_unit(unit, "replace")
            .await
            .map_err(|e| SystemdError::call(unit, "RestartUnit", e))?;
        tracing::debug!(unit, job = job.as_str(), "restart job queued");
        drop(queueing);
        let job_phase = phase("restart-job");
        let waited = tokio::time::timeout_at(deadline.into(), job_result(removed.as_mut(), &job));
        let job_result = match waited.await {
            Ok(result) => result.map_err(|e| SystemdError::call(unit, "JobRemoved", e))?,
            Err(_) => return Err(self.timed_out(unit, timeout, "job still running").await),
        };
        drop(job_phase);
        if job_result != "done" {
            return Err(SystemdError::RestartFailed {
                unit: unit.to_owned(),
                job_result,
                state: Box::new(self.failure_state(unit).await),
            });
        }
        let _p = phase("wait-active");
        self.wait_active(unit, timeout, deadline).await?;
        Ok(job_result)
    }

    /// `Subscribe`, tolerating an earlier subscription of this connection.
    async fn subscribe(&self, unit: &str) -> Result<(), SystemdError> {
        match self.manager().subscribe().await {
            Ok(()) => Ok(()),
            Err(e) if dbus_error_name(&e).as_deref() == Some(ALREADY_SUBSCRIBED) => Ok(()),
            Err(e) => Err(SystemdError::call(unit, "Subscribe", e)),
        }
    }

    /// Waits until ActiveState is "active": a job can be done while a unit is still settling
    /// (a forking service between its parent's exit and its PID file), and a unit can fail
    /// right after its job.
    async fn wait_active(
        &self,
        unit: &str,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<(), SystemdError> {
        let proxy = self.unit_proxy(unit).await?;
        loop {
            let state = proxy
                .active_state()
                .await
                .map_err(|e| SystemdError::call(unit, "ActiveState", e))?;
            match state.as_str() {
                "active" | "reloading" => return Ok(()),
                "failed" | "inactive" => {
                    return Err(SystemdError::RestartFailed {
                        unit: unit.to_owned(),
                        job_result: "done".to_owned(),
                        state: Box::new(self.failure_state(unit).await),
                    })
                }
                _ => {}
            }
            if Instant::now() + ACTIVE_POLL > deadline {
                return Err(self
                    .timed_out(unit, timeout, "job done, unit not yet active")
                    .await);
            }
            tokio::time::sleep(ACTIVE_POLL).await;
        }
    }

    /// The timeout error, with the unit's state at that moment.
    async fn timed_out(
        &self,
        unit: &str,
        timeout: Duration,
        progress: &'static str,
    ) -> SystemdError {
        SystemdError::RestartTimedOut {
            unit: unit.to_owned(),
            timeout,
            progress,
            state: Box::new(self.failure_state(unit).await),
        }
    }

    /// The unit's state for an error report. Best effort: a value that cannot be read is
    /// shown as "?" rather than hiding the failure being reported.
    pub(crate) async fn failure_state(&self, unit: &str) -> UnitFailure {
        let mut state = UnitFailure {
            active_state: "?".into(),
            sub_state: "?".into(),
            ..UnitFailure::default()
        };
        if let Ok(u) = self.unit_proxy(unit).await {
            state.active_state = u.active_state().await.unwrap_or_else(|_| "?".into());
            state.sub_state = u.sub_state().await.unwrap_or_else(|_| "?".into());
        }
        if !unit.ends_with(".service") {
            return state;
        }
        if let Ok(s) = self.service_proxy(unit).await {
            state.result = s.result().await.ok();
            state.exec_main_status = s.exec_main_status().await.ok();
            let phases = [
                ("ExecStartPre", s.exec_start_pre().await),
                ("ExecStart", s.exec_start().await),
                ("ExecStartPost", s.exec_start_post().await),
            ];
            state.failed_command = phases.into_iter().find_map(|(phase, cmds)| {
                cmds.ok()
                    .and_then(|cmds| describe_failed_command(phase, &cmds))
            });
        }
        state
    }
}

impl SystemdError {
    /// True when a restart was refused by the unit's start rate limit.
    pub fn is_start_limit_hit(&self) -> bool {
        matches!(self, SystemdError::RestartFailed { state, .. }
            if state.result.as_deref() == Some(START_LIMIT_HIT))
    }
}

/// Reads JobRemoved signals until the one for `job`, and returns its result.
async fn job_result(
    mut signals: Pin<&mut impl Stream<Item = JobRemoved>>,
    job: &OwnedObjectPath,
) -> zbus::Result<String> {
    loop {
        let signal = std::future::poll_fn(|cx| signals.as_mut().poll_next(cx))
            .await
            .ok_or_else(|| zbus::Error::Failure("bus connection closed".into()))?;
        let args = signal.args()?;
        if args.job.as_str() == job.as_str() {
            return Ok(args.result.to_owned());
        }
    }
}

/// "ExecStartPre=/usr/share/dnsmasq/systemd-helper checkconfig exited with status 3" for the
/// first command in `cmds` that ran and failed (commands marked `-` do not count).
fn describe_failed_command(phase: &str, cmds: &[ExecCommand]) -> Option<String> {
    cmds.iter().find_map(|cmd| {
        let (path, argv, ignore_failure, .., code, status) = cmd;
        let how = match *code {
            CLD_EXITED if *status != 0 => format!("exited with status {status}"),
            CLD_KILLED | CLD_DUMPED => format!("was killed by signal {status}"),
            _ => return None,
        };
        if *ignore_failure {
            return None;
        }
        let line = if argv.is_empty() {
            path.clone()
        } else {
            argv.join(" ")
        };
        Some(format!("{phase}={line} {how}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(argv: &[&str], ignore: bool, code: i32, status: i32) -> ExecCommand {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        (argv[0].clone(), argv, ignore, 1, 1, 2, 2, 42, code, status)
    }

    #[test]
    fn failed_command_is_the_first_that_counts() {
        let table: &[(&str, Vec<ExecCommand>, Option<&str>)] = &[
            ("ExecStartPre", vec![], None),
            ("ExecStartPre", vec![cmd(&["/bin/true"], false, CLD_EXITED, 0)], None),
            ("ExecStartPre", vec![cmd(&["/bin/x"], false, 0, 0)], None),
            (
                "ExecStartPre",
                vec![
                    cmd(&["/bin/true"], false, CLD_EXITED, 0),
                    cmd(&["/bin/false", "-x"], true, CLD_EXITED, 1),
                    cmd(&["/usr/share/dnsmasq/systemd-helper", "checkconfig"], false, CLD_EXITED, 3),
                ],
                Some("ExecStartPre=/usr/share/dnsmasq/systemd-helper checkconfig exited with status 3"),
            ),
            (
                "ExecStart",
                vec![cmd(&["/usr/sbin/dnsmasq"], false, CLD_KILLED, 9)],
                Some("ExecStart=/usr/sbin/dnsmasq was killed by signal 9"),
            ),
        ];
        for (phase, cmds, want) in table {
            assert_eq!(
                describe_failed_command(phase, cmds).as_deref(),
                *want,
                "{phase} {cmds:?}"
            );
        }
    }
}
