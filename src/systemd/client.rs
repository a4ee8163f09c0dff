//! The systemd client: a connection to a system bus on which systemd is known to be present,
//! and the unit questions `detect` and `status` ask of it. Restarts live in `restart.rs`.

use std::io;
use std::path::PathBuf;

use serde::Serialize;
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedObjectPath;

use super::error::SystemdError;
use super::manager::{ManagerProxy, ServiceProxy, UnitProxy};

/// systemd's well-known name on the system bus.
pub const SYSTEMD_BUS_NAME: &str = "org.freedesktop.systemd1";

/// Where the system bus listens when `DBUS_SYSTEM_BUS_ADDRESS` is not set.
pub const DEFAULT_SYSTEM_BUS_ADDRESS: &str = "unix:path=/var/run/dbus/system_bus_socket";

/// The system bus address: `$DBUS_SYSTEM_BUS_ADDRESS`, or the standard socket.
pub fn system_bus_address() -> String {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| DEFAULT_SYSTEM_BUS_ADDRESS.to_owned())
}

/// A connection to systemd over D-Bus. Cheap to clone: clones share the connection. Drop it
/// inside the tokio runtime: zbus removes its signal match rules from there.
#[derive(Debug, Clone)]
pub struct Systemd {
    /// The bus connection; one per client, so that systemd's per-connection `Subscribe`
    /// covers every restart this client waits for.
    conn: zbus::Connection,
    /// The manager object; property caching is off because its properties are only read once.
    manager: ManagerProxy<'static>,
}

/// What systemd knows about one unit, for `virtmasq detect` (and its `--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitStatus {
    /// The unit asked about, e.g. "dnsmasq.service".
    pub unit: String,
    /// False when systemd has no unit file for it (LoadState "not-found").
    pub exists: bool,
    /// LoadState: "loaded", "not-found", "masked", "error", ...
    pub load_state: String,
    /// UnitFileState: "enabled", "disabled", "static", "masked", ...; None without a unit file.
    pub unit_file_state: Option<String>,
    /// ActiveState: "active", "inactive", "failed", "activating", ...
    pub active_state: String,
    /// SubState: "running", "dead", "failed", ...
    pub sub_state: String,
    /// PID of the service's main process; None when it has none or the unit is no service.
    pub main_pid: Option<u32>,
    /// The unit file systemd loaded.
    pub fragment_path: Option<PathBuf>,
    /// How the service's last run ended ("success", "exit-code", "start-limit-hit", ...).
    pub result: Option<String>,
    /// CLOCK_REALTIME µs of the last entry into "active"; None if it never was.
    pub active_enter_timestamp_usec: Option<u64>,
}

impl UnitStatus {
    /// ActiveState is "active" (or "reloading", which is active too).
    pub fn is_active(&self) -> bool {
        matches!(self.active_state.as_str(), "active" | "reloading")
    }

    /// The unit starts at boot: enabled persistently or for this boot only.
    pub fn is_enabled(&self) -> bool {
        matches!(
            self.unit_file_state.as_deref(),
            Some("enabled" | "enabled-runtime")
        )
    }
}

/// True for connection failures that mean "no bus listening here", as opposed to a bus that
/// refuses us.
fn is_absent_socket(err: &zbus::Error) -> bool {
    let io = match err {
        zbus::Error::InputOutput(io) | zbus::Error::Connection(io, _) => io,
        _ => return false,
    };
    matches!(
        io.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

impl Systemd {
    /// Connects to the system bus (honouring `DBUS_SYSTEM_BUS_ADDRESS`, so tests can point it
    /// at another machine's bus) and checks that systemd is on it.
    pub async fn system() -> Result<Self, SystemdError> {
        Self::at_address(&system_bus_address()).await
    }

    /// Connects to the bus at a D-Bus address such as `unix:path=/run/dbus/system_bus_socket`
    /// and checks that systemd is on it. [`SystemdError::NotRunning`] when there is no bus at
    /// that address or systemd does not own its name there.
    pub async fn at_address(address: &str) -> Result<Self, SystemdError> {
        let connect_error = |source| SystemdError::Connect {
            address: address.to_owned(),
            source: Box::new(source),
        };
        let conn = super::bus::connect(address).await.map_err(|source| {
            if is_absent_socket(&source) {
                SystemdError::NotRunning {
                    reason: format!("no D-Bus system bus at {address}: {source}"),
                }
            } else {
                connect_error(source)
            }
        })?;
        Self::on_connection(conn).await
    }

    /// Uses an existing bus connection, after checking that systemd is on that bus.
    pub async fn on_connection(conn: zbus::Connection) -> Result<Self, SystemdError> {
        let dbus = zbus::fdo::DBusProxy::new(&conn)
            .await
            .map_err(|e| SystemdError::call("-", "org.freedesktop.DBus proxy", e))?;
        let name = zbus::names::BusName::try_from(SYSTEMD_BUS_NAME).expect("valid bus name");
        let owned = dbus
            .name_has_owner(name)
            .await
            .map_err(|e| SystemdError::call("-", "NameHasOwner", e.into()))?;
        if !owned {
            return Err(SystemdError::NotRunning {
                reason: format!("{SYSTEMD_BUS_NAME} has no owner on the bus"),
            });
        }
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| SystemdError::call("-", "Manager proxy", e))?;
        Ok(Systemd { conn, manager })
    }

    /// The underlying bus connection.
    pub fn connection(&self) -> &zbus::Connection {
        &self.conn
    }

    /// The manager proxy, for calls this type does not wrap.
    pub fn manager(&self) -> &ManagerProxy<'static> {
        &self.manager
    }

    /// systemd's version string.
    pub async fn version(&self) -> Result<String, SystemdError> {
        self.manager
            .version()
            .await
            .map_err(|e| SystemdError::call("-", "Version", e))
    }

    /// The object path of `unit`, loading it if systemd has not yet.
    pub(crate) async fn unit_path(&self, unit: &str) -> Result<OwnedObjectPath, SystemdError> {
        self.manager
            .load_unit(unit)
            .await
            .map_err(|e| SystemdError::call(unit, "LoadUnit", e))
    }

    /// The `Unit` interface of `unit`, reading properties fresh on every access.
    pub(crate) async fn unit_proxy(&self, unit: &str) -> Result<UnitProxy<'static>, SystemdError> {
        let path = self.unit_path(unit).await?;
        UnitProxy::builder(&self.conn)
            .cache_properties(CacheProperties::No)
            .path(path)
            .map_err(|e| SystemdError::call(unit, "Unit proxy", e))?
            .build()
            .await
            .map_err(|e| SystemdError::call(unit, "Unit proxy", e))
    }

    /// The `Service` interface of `unit`, reading properties fresh on every access.
    pub(crate) async fn service_proxy(
        &self,
        unit: &str,
    ) -> Result<ServiceProxy<'static>, SystemdError> {
        let path = self.unit_path(unit).await?;
        ServiceProxy::builder(&self.conn)
            .cache_properties(CacheProperties::No)
            .path(path)
            .map_err(|e| SystemdError::call(unit, "Service proxy", e))?
            .build()
            .await
            .map_err(|e| SystemdError::call(unit, "Service proxy", e))
    }

    /// What systemd knows about `unit`: whether it exists, its enablement, active and sub
    /// state, main PID and unit file. A unit without a unit file is not an error: it comes back
    /// with `exists == false`.
    pub async fn unit_status(&self, unit: &str) -> Result<UnitStatus, SystemdError> {
        let u = self.unit_proxy(unit).await?;
        let get = |call: &'static str| move |e| SystemdError::call(unit, call, e);
        // The reads go out together: the wait of one round trip, not of six.
        let (load_state, unit_file_state, fragment_path, stamp, active_state, sub_state) = tokio::try_join!(
            async { u.load_state().await.map_err(get("LoadState")) },
            async { u.unit_file_state().await.map_err(get("UnitFileState")) },
            async { u.fragment_path().await.map_err(get("FragmentPath")) },
            async { (u.active_enter_timestamp().await).map_err(get("ActiveEnterTimestamp")) },
            async { u.active_state().await.map_err(get("ActiveState")) },
            async { u.sub_state().await.map_err(get("SubState")) },
        )?;
        let exists = load_state != "not-found";
        let (main_pid, result) = if exists && unit.ends_with(".service") {
            let s = self.service_proxy(unit).await?;
            let (pid, result) = tokio::try_join!(
                async { s.main_pid().await.map_err(get("MainPID")) },
                async { s.result().await.map_err(get("Result")) },
            )?;
            ((pid != 0).then_some(pid), Some(result))
        } else {
            (None, None)
        };
        Ok(UnitStatus {
            unit: unit.to_owned(),
            exists,
            load_state,
            unit_file_state: non_empty(unit_file_state),
            active_state,
            sub_state,
            main_pid,
            fragment_path: non_empty(fragment_path).map(PathBuf::from),
            result,
            active_enter_timestamp_usec: (stamp != 0).then_some(stamp),
        })
    }

    /// The unit's ActiveState alone (one property read, where [`Self::unit_status`] reads
    /// them all).
    pub async fn active_state(&self, unit: &str) -> Result<String, SystemdError> {
        self.unit_proxy(unit)
            .await?
            .active_state()
            .await
            .map_err(|e| SystemdError::call(unit, "ActiveState", e))
    }

    /// The main PID of a service, None when it has no main process.
    pub async fn main_pid(&self, unit: &str) -> Result<Option<u32>, SystemdError> {
        let pid = self
            .service_proxy(unit)
            .await?
            .main_pid()
            .await
            .map_err(|e| SystemdError::call(unit, "MainPID", e))?;
        Ok((pid != 0).then_some(pid))
    }

    /// Sends SIGHUP to the unit's main process only (`KillUnit(unit, "main", SIGHUP)`), which
    /// makes dnsmasq re-read its hosts files and hostsdirs. Unlike `ReloadUnit` this does not
    /// depend on the unit having an `ExecReload=`, and never reaches helper processes.
    pub async fn hangup(&self, unit: &str) -> Result<(), SystemdError> {
        self.manager
            .kill_unit(unit, "main", libc::SIGHUP)
            .await
            .map_err(|e| SystemdError::call(unit, "KillUnit(main, SIGHUP)", e))
    }

    /// Clears the unit's failed state and its start rate limit (`ResetFailedUnit`).
    pub async fn reset_failed(&self, unit: &str) -> Result<(), SystemdError> {
        self.manager
            .reset_failed_unit(unit)
            .await
            .map_err(|e| SystemdError::call(unit, "ResetFailedUnit", e))
    }
}

/// None for the empty strings systemd uses to mean "no value".
fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}
