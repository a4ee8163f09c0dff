//! A private `dbus-daemon` with the system bus's policy rules (Debian's system.conf in
//! essence: method calls denied by default, names owned only where a policy allows) and
//! virtmasq's own policy file from `dbus/`, on a socket in a temporary directory. Optionally
//! with activation files (a `servicedir`) and a policy of the test's own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running private system-style bus; killed on drop.
pub struct PrivateBus {
    child: Child,
    /// The address for clients (`unix:path=...`).
    pub address: String,
    _dir: tempfile::TempDir,
}

const CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=@DIR@/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <includedir>@DIR@/system.d</includedir>
  <servicedir>@DIR@/services</servicedir>
  <!-- A test's activated service need not take its name: give up on it soon. -->
  <limit name="service_start_timeout">2000</limit>
</busconfig>
"#;

/// What a test adds to the bus: activation files and policy files, each (file name, text).
#[derive(Default)]
pub struct BusExtras<'a> {
    /// Into the bus's `servicedir`.
    pub services: Vec<(&'a str, String)>,
    /// Into its `system.d`, beside virtmasq's policy.
    pub policies: Vec<(&'a str, &'a str)>,
}

impl PrivateBus {
    /// Starts the bus with virtmasq's policy installed.
    pub fn start() -> Self {
        Self::start_with(BusExtras::default())
    }

    /// Starts the bus with virtmasq's policy and `extras` installed.
    pub fn start_with(extras: BusExtras) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // Unprivileged test callers must reach the socket.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let d = dir.path().display().to_string();
        std::fs::create_dir(dir.path().join("system.d")).unwrap();
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("dbus/org.virtmasq.Agent1.conf");
        std::fs::copy(
            &policy,
            dir.path().join("system.d/org.virtmasq.Agent1.conf"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("services")).unwrap();
        for (name, text) in &extras.services {
            std::fs::write(dir.path().join("services").join(name), text).unwrap();
        }
        for (name, text) in &extras.policies {
            std::fs::write(dir.path().join("system.d").join(name), text).unwrap();
        }
        let conf: PathBuf = dir.path().join("bus.conf");
        std::fs::write(&conf, CONFIG.replace("@DIR@", &d)).unwrap();
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .arg("--nofork")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dbus-daemon (package dbus) must be installed");
        let socket = dir.path().join("bus");
        assert!(
            super::wait_until(Duration::from_secs(5), || socket.exists()),
            "the private bus did not start"
        );
        Self {
            child,
            address: format!("unix:path={}", socket.display()),
            _dir: dir,
        }
    }

    /// `busctl` against this bus.
    pub fn busctl(&self) -> Command {
        let mut c = Command::new("busctl");
        c.arg(format!("--address={}", self.address));
        c
    }

    /// `busctl` against this bus as the unprivileged user `nobody`.
    pub fn busctl_as_nobody(&self) -> Command {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "busctl"])
            .arg(format!("--address={}", self.address));
        c
    }

    /// Whether `name` has an owner on the bus.
    pub fn has_owner(&self, name: &str) -> bool {
        self.busctl()
            .args(["call", "org.freedesktop.DBus", "/org/freedesktop/DBus"])
            .args(["org.freedesktop.DBus", "NameHasOwner", "s", name])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "b true")
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
