//! What can go wrong when talking to systemd, in terms a caller can act on: systemd is not
//! there at all, a call on a unit was refused, or a restart ended in a failed or unfinished unit.

use std::fmt;
use std::time::Duration;

/// D-Bus error names that mean "nobody owns org.freedesktop.systemd1 on this bus".
const ABSENT_SERVICE_ERRORS: &[&str] = &[
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
];

/// An error from the systemd client. Messages name the unit and the call; the D-Bus error is
/// the source.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// No systemd to talk to: the bus socket is absent or refuses connections, or nothing owns
    /// `org.freedesktop.systemd1` on the bus. `detect` reports this as a fact, not a failure.
    #[error("systemd is not running ({reason})")]
    NotRunning {
        /// What showed it: the bus address that could not be reached, or the missing name.
        reason: String,
    },
    /// The bus exists but the connection failed for another reason (permissions, handshake).
    #[error("cannot connect to the D-Bus system bus at {address}")]
    Connect {
        /// The bus address tried.
        address: String,
        /// What zbus reported (boxed, like the other large fields, to keep this error small in
        /// the `Result`s and error enums that carry it).
        #[source]
        source: Box<zbus::Error>,
    },
    /// A D-Bus call to systemd about one unit failed.
    #[error("systemd {call} on {unit} failed")]
    Call {
        /// The unit the call was about (or "-" for manager-wide calls).
        unit: String,
        /// The D-Bus method or property, e.g. "RestartUnit".
        call: &'static str,
        /// What systemd or the bus answered.
        #[source]
        source: Box<zbus::Error>,
    },
    /// The restart job finished but the unit did not end up active.
    #[error("restart of {unit} failed: job result \"{job_result}\", {state}")]
    RestartFailed {
        /// The unit restarted.
        unit: String,
        /// systemd's job result: "failed", "timeout", "dependency", "canceled", ... or "done"
        /// when the job succeeded but the unit then left the active state.
        job_result: String,
        /// The unit's state right after the failure, for the report.
        state: Box<UnitFailure>,
    },
    /// The restart (job plus reaching "active") took longer than the caller allowed.
    #[error("restart of {unit} did not finish within {timeout:?} ({progress}), {state}")]
    RestartTimedOut {
        /// The unit restarted.
        unit: String,
        /// The bound the caller gave.
        timeout: Duration,
        /// How far it got: "job still running" or "job done, unit not yet active".
        progress: &'static str,
        /// The unit's state when the wait gave up.
        state: Box<UnitFailure>,
    },
}

impl SystemdError {
    /// Wraps a failed call on `unit`, turning "systemd is not on the bus" into
    /// [`SystemdError::NotRunning`] so that callers can match one variant for it.
    pub(crate) fn call(unit: &str, call: &'static str, source: zbus::Error) -> Self {
        if let Some(name) = dbus_error_name(&source) {
            if ABSENT_SERVICE_ERRORS.contains(&name.as_str()) {
                return SystemdError::NotRunning {
                    reason: format!("{call} on {unit}: {name}"),
                };
            }
        }
        SystemdError::Call {
            unit: unit.to_owned(),
            call,
            source: Box::new(source),
        }
    }

    /// True for [`SystemdError::NotRunning`].
    pub fn is_not_running(&self) -> bool {
        matches!(self, SystemdError::NotRunning { .. })
    }
}

/// The D-Bus error name carried by a method-error reply, if `err` is one.
pub(crate) fn dbus_error_name(err: &zbus::Error) -> Option<String> {
    match err {
        zbus::Error::MethodError(name, _, _) => Some(name.to_string()),
        zbus::Error::FDO(fdo) => Some(zbus::DBusError::name(fdo.as_ref()).to_string()),
        _ => None,
    }
}

/// A unit's state, read after a restart failed or timed out, so the caller can say why.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnitFailure {
    /// ActiveState: "failed", "inactive", "activating", ...
    pub active_state: String,
    /// SubState, e.g. "failed", "start-pre", "auto-restart".
    pub sub_state: String,
    /// The service's Result: "exit-code", "start-limit-hit", "timeout", ... (services only).
    pub result: Option<String>,
    /// Exit status of the main process (services only; 0 when it never ran).
    pub exec_main_status: Option<i32>,
    /// The first ExecStartPre/ExecStart/ExecStartPost command of this start that failed, with
    /// how it ended, e.g. "ExecStartPre=/usr/share/dnsmasq/systemd-helper exited with status 3".
    pub failed_command: Option<String>,
}

impl fmt::Display for UnitFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ActiveState={} SubState={}",
            self.active_state, self.sub_state
        )?;
        if let Some(result) = &self.result {
            write!(f, " Result={result}")?;
        }
        if let Some(status) = self.exec_main_status {
            write!(f, " ExecMainStatus={status}")?;
        }
        if let Some(cmd) = &self.failed_command {
            write!(f, "; {cmd}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_state_reads_like_systemctl() {
        let state = UnitFailure {
            active_state: "failed".into(),
            sub_state: "failed".into(),
            result: Some("exit-code".into()),
            exec_main_status: Some(0),
            failed_command: Some("ExecStartPre=/bin/false exited with status 1".into()),
        };
        let err = SystemdError::RestartFailed {
            unit: "dnsmasq.service".into(),
            job_result: "failed".into(),
            state: Box::new(state),
        };
        assert_eq!(
            err.to_string(),
            "restart of dnsmasq.service failed: job result \"failed\", ActiveState=failed \
             SubState=failed Result=exit-code ExecMainStatus=0; \
             ExecStartPre=/bin/false exited with status 1"
        );
    }

    #[test]
    fn absent_service_becomes_not_running() {
        for name in ABSENT_SERVICE_ERRORS {
            let err = zbus::Error::FDO(Box::new(match *name {
                "org.freedesktop.DBus.Error.ServiceUnknown" => {
                    zbus::fdo::Error::ServiceUnknown("gone".into())
                }
                _ => zbus::fdo::Error::NameHasNoOwner("gone".into()),
            }));
            let mapped = SystemdError::call("dnsmasq.service", "LoadUnit", err);
            assert!(mapped.is_not_running(), "{name}: {mapped:?}");
        }
        let other = zbus::Error::FDO(Box::new(zbus::fdo::Error::AccessDenied("no".into())));
        let mapped = SystemdError::call("dnsmasq.service", "RestartUnit", other);
        assert!(!mapped.is_not_running());
        assert_eq!(
            mapped.to_string(),
            "systemd RestartUnit on dnsmasq.service failed"
        );
    }

    /// Other modules' error enums carry this one; keep it well under clippy's
    /// `result_large_err` threshold (128 bytes) so theirs stay under it too.
    #[test]
    fn stays_small() {
        let size = std::mem::size_of::<SystemdError>();
        assert!(size <= 72, "SystemdError is {size} bytes");
    }
}
