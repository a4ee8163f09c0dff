//! The systemd steps of setup and teardown, over D-Bus: reload when a unit file changed on
//! disk, enable, start (and wait for the first reconcile: the unit is `Type=notify`), stop,
//! disable. Each step asks first and acts only when the unit is not already as wanted.

use std::time::{Duration, Instant};

use zbus::zvariant::OwnedObjectPath;

use super::{Report, SetupError};
use crate::systemd::{Systemd, SystemdError};

/// The manager calls setup needs beyond those of [`crate::systemd::manager`].
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait InstallManager {
    /// `systemctl enable`: returns (carries install info, changes as (type, file, target)).
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<(String, String, String)>)>;

    /// `systemctl disable`: returns the changes.
    fn disable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;

    /// `systemctl daemon-reload`; the reply comes once the reload is done.
    fn reload(&self) -> zbus::Result<()>;

    /// Queues a stop job.
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Object path of a unit, loading it if needed.
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
}

/// The one unit property setup reads that [`crate::systemd`] does not.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait UnitFile {
    /// The unit file (or a drop-in) changed on disk since systemd loaded it.
    #[zbus(property(emits_changed_signal = "false"))]
    fn need_daemon_reload(&self) -> zbus::Result<bool>;
}

/// How often a stopping unit's state is read.
const POLL: Duration = Duration::from_millis(50);

/// systemd, for setup and teardown.
pub struct Units {
    /// Status, restarts.
    systemd: Systemd,
    /// Enable, disable, reload, stop.
    manager: InstallManagerProxy<'static>,
}

fn call(what: String) -> impl FnOnce(zbus::Error) -> SetupError {
    move |e| SetupError::Dbus {
        what,
        source: Box::new(e),
    }
}

fn sd(what: String) -> impl FnOnce(SystemdError) -> SetupError {
    move |source| SetupError::Systemd { what, source }
}

impl Units {
    /// systemd on the system bus, or None when it does not run here (a chroot, an image
    /// build, another init).
    pub async fn connect() -> Result<Option<Self>, SetupError> {
        if !std::path::Path::new("/run/systemd/system").is_dir() {
            return Ok(None);
        }
        let systemd = match Systemd::system().await {
            Ok(s) => s,
            Err(e) if e.is_not_running() => return Ok(None),
            Err(e) => return Err(sd("connecting to systemd".into())(e)),
        };
        let manager = InstallManagerProxy::new(systemd.connection())
            .await
            .map_err(call("connecting to systemd's manager".into()))?;
        Ok(Some(Self { systemd, manager }))
    }

    /// Whether `unit` is active.
    pub async fn is_active(&self, unit: &str) -> Result<bool, SetupError> {
        let status = self.systemd.unit_status(unit).await;
        Ok(status
            .map_err(sd(format!("reading the state of {unit}")))?
            .is_active())
    }

    /// `daemon-reload` if `changed` (the caller changed a drop-in) or any of `units` changed
    /// on disk since systemd loaded it.
    pub async fn reload_if_needed(
        &self,
        units: &[&str],
        changed: bool,
        report: &mut Report,
    ) -> Result<(), SetupError> {
        let mut stale = Vec::new();
        if changed {
            stale.push("a drop-in");
        }
        for unit in units {
            let path = self
                .manager
                .load_unit(unit)
                .await
                .map_err(call(format!("loading {unit}")))?;
            let proxy = UnitFileProxy::builder(self.systemd.connection())
                .cache_properties(zbus::proxy::CacheProperties::No)
                .path(path)
                .map_err(call(format!("reading {unit}")))?
                .build()
                .await
                .map_err(call(format!("reading {unit}")))?;
            let need = proxy.need_daemon_reload().await;
            if need.map_err(call(format!("reading NeedDaemonReload of {unit}")))? {
                stale.push(*unit);
            }
        }
        if !stale.is_empty() {
            self.reload().await?;
            report.changes.push(format!(
                "reloaded systemd ({} changed on disk)",
                stale.join(", ")
            ));
        }
        Ok(())
    }

    async fn reload(&self) -> Result<(), SetupError> {
        self.manager
            .reload()
            .await
            .map_err(call("reloading systemd (daemon-reload)".into()))
    }

    /// Enables `unit` unless it is, then starts it unless it runs, waiting at most `timeout`
    /// for it to be active.
    pub async fn enable_and_start(
        &self,
        unit: &str,
        timeout: Duration,
        report: &mut Report,
    ) -> Result<(), SetupError> {
        let status = self.systemd.unit_status(unit).await;
        let status = status.map_err(sd(format!("reading the state of {unit}")))?;
        if !status.is_enabled() {
            let (_, changes) = self
                .manager
                .enable_unit_files(&[unit], false, false)
                .await
                .map_err(call(format!("enabling {unit}")))?;
            if !changes.is_empty() {
                self.reload().await?;
            }
            report.changes.push(format!("enabled {unit}"));
        }
        if !status.is_active() {
            // RestartUnit starts a unit that is not running, and waits for the job's outcome.
            let done = self.systemd.restart_and_wait(unit, timeout).await;
            let done = done.map_err(sd(format!("starting {unit}")))?;
            report
                .changes
                .push(format!("started {unit} in {} ms", done.elapsed.as_millis()));
        }
        Ok(())
    }

    /// Stops `unit` if it runs, waiting at most `timeout` for it to be inactive.
    pub async fn stop(
        &self,
        unit: &str,
        timeout: Duration,
        report: &mut Report,
    ) -> Result<(), SetupError> {
        if !self.is_active(unit).await? && !self.is_activating(unit).await? {
            return Ok(());
        }
        self.manager
            .stop_unit(unit, "replace")
            .await
            .map_err(call(format!("stopping {unit}")))?;
        let started = Instant::now();
        loop {
            let state = self.active_state(unit).await?;
            if matches!(state.as_str(), "inactive" | "failed") {
                break;
            }
            if started.elapsed() > timeout {
                return Err(SetupError::StopTimeout {
                    unit: unit.into(),
                    timeout,
                    state,
                });
            }
            tokio::time::sleep(POLL).await;
        }
        report.changes.push(format!("stopped {unit}"));
        Ok(())
    }

    /// Disables `unit` if it is enabled.
    pub async fn disable(&self, unit: &str, report: &mut Report) -> Result<(), SetupError> {
        let status = self.systemd.unit_status(unit).await;
        if !status
            .map_err(sd(format!("reading the state of {unit}")))?
            .is_enabled()
        {
            return Ok(());
        }
        let changes = self
            .manager
            .disable_unit_files(&[unit], false)
            .await
            .map_err(call(format!("disabling {unit}")))?;
        if !changes.is_empty() {
            self.reload().await?;
        }
        report.changes.push(format!("disabled {unit}"));
        Ok(())
    }

    /// Restarts `unit` and waits for it, at most `timeout`.
    pub async fn restart(&self, unit: &str, timeout: Duration) -> Result<Duration, SetupError> {
        let done = self.systemd.restart_and_wait(unit, timeout).await;
        Ok(done.map_err(sd(format!("restarting {unit}")))?.elapsed)
    }

    async fn active_state(&self, unit: &str) -> Result<String, SetupError> {
        let status = self.systemd.unit_status(unit).await;
        Ok(status
            .map_err(sd(format!("reading the state of {unit}")))?
            .active_state)
    }

    async fn is_activating(&self, unit: &str) -> Result<bool, SetupError> {
        Ok(self.active_state(unit).await? == "activating")
    }
}
