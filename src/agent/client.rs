//! How a short-lived virtmasq process (the hook, `sync`, `filter`, `adopt`) finds the running
//! daemon and tells it something: its pid file, checked to name a live `virtmasq daemon`; a
//! D-Bus report with SIGUSR1 as the fallback; whether `virtmasq.service` will start at boot;
//! whether a private instance of the daemon's runs. Nothing here reaches libvirt: the hook
//! uses it while libvirtd waits for the hook.

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::agent::dbus;
use crate::config::Config;
use crate::dnsmasq::render::InstancePaths;

pub mod one_call;

/// The pid file of the running daemon.
pub fn pid_file(cfg: &Config) -> PathBuf {
    cfg.paths.run_dir.join("virtmasq.pid")
}

/// The live daemon's pid for `cfg`, if one runs.
pub fn running_daemon(cfg: &Config) -> Option<i32> {
    daemon_pid(&pid_file(cfg))
}

/// Asks the running daemon, if any, to reconcile now (SIGUSR1); true if one was asked.
pub fn poke(cfg: &Config) -> bool {
    // It may have just exited; then there is nothing to tell.
    running_daemon(cfg).is_some_and(|pid| kill(Pid::from_raw(pid), Signal::SIGUSR1).is_ok())
}

/// Hands the event to the running daemon: over its D-Bus API (`ReportNetworkEvent`, never
/// activating it), or with SIGUSR1 where the bus does not answer within a second. On a bus at
/// a socket path (the system bus) the call is made in one round trip ([`one_call`]); it blocks
/// the calling thread for that time, which the hook, doing nothing else, can afford.
pub async fn tell_daemon(network: &str, op: &str, pid: i32) -> String {
    const WAIT: std::time::Duration = std::time::Duration::from_secs(1);
    let address = crate::systemd::system_bus_address();
    let reported = match crate::systemd::bus::unix_path(&address) {
        Some(socket) => {
            let call = one_call::Call {
                destination: dbus::NAME,
                path: dbus::PATH,
                interface: dbus::NAME,
                member: "ReportNetworkEvent",
                args: &[network, op],
            };
            one_call::call(&socket, &call, WAIT).map_err(|e| e.to_string())
        }
        None => report_with_zbus(network, op, WAIT).await,
    };
    match reported {
        Ok(()) => return "reported to the daemon over D-Bus".into(),
        Err(e) => tracing::debug!(error = %e, "D-Bus report failed; signalling instead"),
    }
    match kill(Pid::from_raw(pid), Signal::SIGUSR1) {
        Ok(()) => format!("asked the daemon (pid {pid}) to reconcile (SIGUSR1)"),
        Err(e) => format!("the daemon (pid {pid}) could not be told: {e}"),
    }
}

/// The report through zbus, for a bus address that is not a socket path.
async fn report_with_zbus(
    network: &str,
    op: &str,
    wait: std::time::Duration,
) -> Result<(), String> {
    let call = async {
        let conn = crate::systemd::bus::system().await?;
        let proxy = zbus::Proxy::new(&conn, dbus::NAME, dbus::PATH, dbus::NAME).await?;
        proxy
            .call_with_flags::<_, _, ()>(
                "ReportNetworkEvent",
                zbus::proxy::MethodFlags::NoAutoStart.into(),
                &(network, op),
            )
            .await?;
        Ok::<_, zbus::Error>(())
    };
    match tokio::time::timeout(wait, call).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {wait:?}")),
    }
}

/// What the running daemon did with a list handed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandedOver {
    /// Files written.
    pub written: u32,
    /// How long the change took in the daemon.
    pub elapsed: std::time::Duration,
}

/// Hands the open list `input` (a regular file or memfd; `origin` names it) to the running
/// daemon's `FilterSyncFrom`, which parses and applies it with the policy it keeps in memory.
/// `Ok(None)`: the daemon cannot take it (no bus, no daemon on it, an older daemon, a caller
/// it refuses); the caller then applies the list itself. An error is the daemon's verdict on
/// the list or on the change, and nothing more is to be done.
pub async fn filter_sync_from(
    input: std::os::fd::BorrowedFd<'_>,
    origin: &str,
) -> anyhow::Result<Option<HandedOver>> {
    let conn = match crate::systemd::bus::system().await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(error = %e, "no system bus: the list is applied here");
            return Ok(None);
        }
    };
    let reply = conn
        .call_method(
            Some(dbus::NAME),
            dbus::PATH,
            Some(dbus::NAME),
            "FilterSyncFrom",
            &(zbus::zvariant::Fd::from(input), origin),
        )
        .await;
    let message = match reply {
        Ok(message) => message,
        Err(zbus::Error::MethodError(name, text, _))
            if name.as_str() == "org.freedesktop.DBus.Error.InvalidArgs"
                || name.as_str() == "org.freedesktop.DBus.Error.Failed" =>
        {
            anyhow::bail!("{}", text.unwrap_or_default())
        }
        Err(e) => {
            tracing::debug!(error = %e, "the daemon did not take the list: it is applied here");
            return Ok(None);
        }
    };
    let (written, micros): (u32, u64) = message.body().deserialize()?;
    Ok(Some(HandedOver {
        written,
        elapsed: std::time::Duration::from_micros(micros),
    }))
}

/// Whether `virtmasq.service` is enabled to start at boot (its `multi-user.target` link): read
/// from the file system, as the hook must answer quickly and never wait on D-Bus.
pub fn service_enabled() -> bool {
    std::path::Path::new("/etc/systemd/system/multi-user.target.wants/virtmasq.service").exists()
}

/// The pid of the running daemon, if its pid file names a live `virtmasq daemon` (not a
/// process that reused the pid of one that died).
pub fn daemon_pid(pid_file: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let daemon = cmdline.split(|b| *b == 0).any(|arg| arg == b"daemon");
    (pid > 0 && comm.trim_end() == "virtmasq" && daemon).then_some(pid)
}

/// Whether a private dnsmasq of virtmasq's runs for network `name` (its pid file names a live
/// process).
pub fn instance_running(cfg: &Config, name: &str) -> bool {
    let pid = InstancePaths::new(&cfg.paths.run_dir, &cfg.paths.state_dir, name).pid;
    crate::dnsmasq::process::read_pid(&pid)
        .is_some_and(|p| Path::new(&format!("/proc/{p}")).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_live_virtmasq_daemon_counts() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("virtmasq.pid");
        assert_eq!(daemon_pid(&pid), None, "no pid file");
        std::fs::write(&pid, "garbage\n").unwrap();
        assert_eq!(daemon_pid(&pid), None);
        // This test process lives, but it is not `virtmasq daemon`.
        std::fs::write(&pid, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(daemon_pid(&pid), None);
        std::fs::write(&pid, "0\n").unwrap();
        assert_eq!(daemon_pid(&pid), None);
    }
}
