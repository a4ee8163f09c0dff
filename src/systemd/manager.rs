//! zbus proxies for the parts of systemd's D-Bus API that virtmasq uses: the manager object
//! (`org.freedesktop.systemd1.Manager`), and the `Unit` and `Service` interfaces of a unit's
//! object. Names and signatures follow `org.freedesktop.systemd1(5)`.
//!
//! Unit and service properties are declared `emits_changed_signal = "false"` on purpose: that
//! turns off zbus's property cache, so every read is a fresh `Get`. A restart waits on these
//! values changing, and a cache fed by PropertiesChanged could lag behind the job signal.

use zbus::zvariant::OwnedObjectPath;

/// One command line of an `ExecStartPre=`/`ExecStart=`/... property, D-Bus type
/// `(sasbttttuii)`: path, argv, ignore-failure, start (realtime, monotonic), exit (realtime,
/// monotonic), pid, code (`CLD_EXITED`, `CLD_KILLED`, ...) and status.
pub type ExecCommand = (String, Vec<String>, bool, u64, u64, u64, u64, u32, i32, i32);

/// The systemd manager: loading units and queueing jobs on them.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub trait Manager {
    /// Object path of a unit that is loaded; fails with `NoSuchUnit` otherwise.
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;

    /// Object path of a unit, loading it if needed. A unit without a unit file still gets a
    /// path, with LoadState "not-found".
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;

    /// The unit file's enablement: "enabled", "disabled", "masked", "static", ...
    fn get_unit_file_state(&self, file: &str) -> zbus::Result<String>;

    /// Queues a start job; `mode` is "replace", "fail", ...; returns the job's object path.
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Queues a stop job.
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Queues a restart job (stop, then start; a start if the unit is not running).
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Sends `signal` to the unit's processes; `whom` is "main", "control" or "all".
    fn kill_unit(&self, name: &str, whom: &str, signal: i32) -> zbus::Result<()>;

    /// Clears the failed state and the start rate limit counter of a unit.
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;

    /// Asks systemd to emit job and unit signals to this connection. systemd answers
    /// `org.freedesktop.systemd1.AlreadySubscribed` to a second call on the same connection.
    fn subscribe(&self) -> zbus::Result<()>;

    /// A job finished. `result` is "done", "canceled", "timeout", "failed", "dependency" or
    /// "skipped".
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: zbus::zvariant::ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;

    /// systemd's version string, e.g. "252.36-1~deb12u1".
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> zbus::Result<String>;
}

/// Generic unit state, on every unit's object.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Unit {
    /// "loaded", "not-found", "masked", "error", ...
    #[zbus(property(emits_changed_signal = "false"))]
    fn load_state(&self) -> zbus::Result<String>;

    /// "active", "reloading", "inactive", "failed", "activating", "deactivating".
    #[zbus(property(emits_changed_signal = "false"))]
    fn active_state(&self) -> zbus::Result<String>;

    /// Type-specific state, e.g. "running", "start-pre", "dead", "failed".
    #[zbus(property(emits_changed_signal = "false"))]
    fn sub_state(&self) -> zbus::Result<String>;

    /// "enabled", "disabled", "static", "masked", ... or "" when there is no unit file.
    #[zbus(property(emits_changed_signal = "false"))]
    fn unit_file_state(&self) -> zbus::Result<String>;

    /// The unit file systemd loaded, "" when none.
    #[zbus(property(emits_changed_signal = "false"))]
    fn fragment_path(&self) -> zbus::Result<String>;

    /// CLOCK_REALTIME µs of the last entry into the active state (0 if never).
    #[zbus(property(emits_changed_signal = "false"))]
    fn active_enter_timestamp(&self) -> zbus::Result<u64>;

    /// Starts allowed within [`Self::start_limit_interval_u_sec`] (`StartLimitBurst=`).
    #[zbus(property(emits_changed_signal = "false"))]
    fn start_limit_burst(&self) -> zbus::Result<u32>;

    /// The start rate limit's window in µs (`StartLimitIntervalSec=`; 0 turns it off).
    #[zbus(
        property(emits_changed_signal = "false"),
        name = "StartLimitIntervalUSec"
    )]
    fn start_limit_interval_u_sec(&self) -> zbus::Result<u64>;
}

/// Service-specific state, on the objects of `.service` units.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Service {
    /// PID of the main process, 0 when none.
    #[zbus(property(emits_changed_signal = "false"), name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;

    /// Exit status (or signal number) of the main process.
    #[zbus(property(emits_changed_signal = "false"))]
    fn exec_main_status(&self) -> zbus::Result<i32>;

    /// How the last run ended: "success", "exit-code", "signal", "timeout",
    /// "start-limit-hit", ...
    #[zbus(property(emits_changed_signal = "false"))]
    fn result(&self) -> zbus::Result<String>;

    /// Automatic restarts so far (systemd >= 235).
    #[zbus(property(emits_changed_signal = "false"))]
    fn n_restarts(&self) -> zbus::Result<u32>;

    /// `ExecStartPre=` commands with the status of their last run.
    #[zbus(property(emits_changed_signal = "false"))]
    fn exec_start_pre(&self) -> zbus::Result<Vec<ExecCommand>>;

    /// `ExecStart=` commands with the status of their last run.
    #[zbus(property(emits_changed_signal = "false"))]
    fn exec_start(&self) -> zbus::Result<Vec<ExecCommand>>;

    /// `ExecStartPost=` commands with the status of their last run.
    #[zbus(property(emits_changed_signal = "false"))]
    fn exec_start_post(&self) -> zbus::Result<Vec<ExecCommand>>;
}
