//! The systemd client against a real systemd: a booted Debian 12 container (tests/container)
//! with its Debian `dnsmasq.service`, reached from this process over the container's system
//! bus. Unit status, restart-and-wait (success, a failing ExecStartPre, a deadline, the start
//! rate limit) and SIGHUP, each checked against what systemd and dnsmasq inside say.
//!
//! Needs root, systemd-nspawn and the cached test root (see tests/container); fails, never
//! skips, when a container cannot boot.

mod container;
mod lab;

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use container::{BootOptions, Container};
use lab::Lab;
use virtmasq::systemd::{Systemd, SystemdError};

const DNSMASQ: &str = "dnsmasq.service";
/// Bound for one restart; a healthy one takes tens of milliseconds.
const RESTART_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one async call of the client to completion. A multi-threaded runtime, so the
/// connection's reader task keeps running between calls.
fn block<F: Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    rt.block_on(f)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The client, connected to the container's system bus from the host.
fn connect(rt: &tokio::runtime::Runtime, ct: &Container) -> Systemd {
    let address = ct.system_bus_address();
    block(rt, Systemd::at_address(&address))
        .unwrap_or_else(|e| panic!("cannot reach systemd at {address}: {e:?}"))
}

/// MainPID as systemctl inside the container reports it.
fn systemctl_main_pid(ct: &Container) -> u32 {
    let out = ct.exec_ok(&["systemctl", "show", "-P", "MainPID", DNSMASQ]);
    out.trim().parse().expect("MainPID is a number")
}

fn is_active(ct: &Container) -> String {
    let out = ct.exec(&["systemctl", "is-active", DNSMASQ]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// How many times dnsmasq has logged reading /etc/hosts (at start and on every SIGHUP).
fn hosts_reads(ct: &Container) -> usize {
    ct.journal(DNSMASQ)
        .lines()
        .filter(|l| l.contains("read /etc/hosts"))
        .count()
}

fn wait_for(mut cond: impl FnMut() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn unit_status_hangup_and_a_restart_deadline() {
    let lab = Lab::new("systemd_unit_status_hangup_deadline");
    let ct = Container::boot(&lab, &BootOptions::default());
    let rt = runtime();
    // zbus proxies unregister their match rules through the runtime when dropped.
    let _in_runtime = rt.enter();
    let sd = connect(&rt, &ct);
    eprintln!("container systemd {}", block(&rt, sd.version()).unwrap());

    let status = block(&rt, sd.unit_status(DNSMASQ)).unwrap();
    eprintln!("{status:?}");
    assert!(status.exists, "{status:?}");
    assert_eq!(status.load_state, "loaded");
    assert_eq!(status.unit_file_state.as_deref(), Some("enabled"));
    assert!(status.is_enabled() && status.is_active(), "{status:?}");
    assert_eq!(status.sub_state, "running");
    assert_eq!(status.result.as_deref(), Some("success"));
    assert_eq!(status.main_pid, Some(systemctl_main_pid(&ct)));
    let fragment = status.fragment_path.clone().expect("a unit file");
    assert!(
        fragment.ends_with("systemd/system/dnsmasq.service"),
        "{fragment:?}"
    );
    assert!(status.active_enter_timestamp_usec.is_some());
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["exists"], true);
    assert_eq!(json["main_pid"], status.main_pid.unwrap());

    let missing = block(&rt, sd.unit_status("virtmasq-nonexistent.service")).unwrap();
    assert!(!missing.exists, "{missing:?}");
    assert_eq!(missing.load_state, "not-found");
    assert_eq!(missing.active_state, "inactive");
    assert_eq!(missing.main_pid, None);
    assert_eq!(missing.unit_file_state, None);
    assert_eq!(missing.fragment_path, None);

    // SIGHUP: dnsmasq re-reads /etc/hosts and keeps running as the same process.
    let reads = hosts_reads(&ct);
    assert!(reads >= 1, "no start-up read of /etc/hosts in the journal");
    let pid = status.main_pid;
    block(&rt, sd.hangup(DNSMASQ)).unwrap();
    assert!(
        wait_for(|| hosts_reads(&ct) > reads, Duration::from_secs(5)),
        "no re-read of /etc/hosts after SIGHUP:\n{}",
        ct.journal(DNSMASQ)
    );
    assert_eq!(block(&rt, sd.main_pid(DNSMASQ)).unwrap(), pid);
    // A unit without a main process cannot be hung up; the error names the unit.
    let err = block(&rt, sd.hangup("virtmasq-nonexistent.service")).unwrap_err();
    assert!(
        err.to_string().contains("virtmasq-nonexistent.service"),
        "{err}"
    );

    // A deadline shorter than any restart: the error says how far it got, and the restart
    // itself goes on in systemd.
    let err = block(&rt, sd.restart_and_wait(DNSMASQ, Duration::from_millis(1))).unwrap_err();
    eprintln!("1 ms deadline: {err}");
    match &err {
        SystemdError::RestartTimedOut { unit, progress, .. } => {
            assert_eq!(unit, DNSMASQ);
            assert_eq!(*progress, "job still running");
        }
        other => panic!("expected RestartTimedOut, got {other:?}"),
    }
    let replaced = || Some(systemctl_main_pid(&ct)) != pid && is_active(&ct) == "active";
    assert!(
        wait_for(replaced, Duration::from_secs(10)),
        "dnsmasq was not replaced by an active new process after the abandoned wait"
    );
}

#[test]
fn restart_waits_for_the_new_process_and_reports_a_failed_start() {
    let lab = Lab::new("systemd_restart_and_failure");
    let ct = Container::boot(&lab, &BootOptions::default());
    let rt = runtime();
    // zbus proxies unregister their match rules through the runtime when dropped.
    let _in_runtime = rt.enter();
    let sd = connect(&rt, &ct);

    let before = block(&rt, sd.main_pid(DNSMASQ)).unwrap();
    assert!(before.is_some());
    let report = block(&rt, sd.restart_and_wait(DNSMASQ, RESTART_TIMEOUT)).unwrap();
    eprintln!("restart_and_wait: {:?} {report:?}", report.elapsed);
    assert_eq!(report.job_result, "done");
    assert_eq!(report.previous_main_pid, before);
    assert!(
        report.main_pid.is_some() && report.main_pid != before,
        "{report:?}"
    );
    assert!(!report.start_limit_reset);
    // Returned only once the unit is active: systemd inside agrees, with the same process.
    assert_eq!(is_active(&ct), "active");
    assert_eq!(report.main_pid, Some(systemctl_main_pid(&ct)));

    // Any bad line in the conf-dir makes Debian's ExecStartPre (checkconfig) refuse to start.
    let broken = "/etc/dnsmasq.d/zz-broken.conf";
    ct.write_file(broken, "no-such-dnsmasq-option=1\n", 0o644);
    let started = Instant::now();
    let err = block(&rt, sd.restart_and_wait(DNSMASQ, RESTART_TIMEOUT)).unwrap_err();
    eprintln!("failed restart after {:?}: {err}", started.elapsed());
    let text = err.to_string();
    assert!(text.contains(DNSMASQ), "{text}");
    assert!(text.contains("ActiveState=failed"), "{text}");
    match &err {
        SystemdError::RestartFailed {
            job_result, state, ..
        } => {
            assert_eq!(job_result, "failed");
            assert_eq!(state.active_state, "failed");
            assert_eq!(state.result.as_deref(), Some("exit-code"));
            let cmd = state.failed_command.as_deref().unwrap_or_default();
            assert!(
                cmd.starts_with("ExecStartPre=") && cmd.contains("checkconfig"),
                "{state:?}"
            );
        }
        other => panic!("expected RestartFailed, got {other:?}"),
    }
    assert_eq!(is_active(&ct), "failed");

    // The previous configuration back: the next restart brings dnsmasq up again.
    std::fs::remove_file(ct.host_path(broken)).unwrap();
    let report = block(&rt, sd.restart_and_wait(DNSMASQ, RESTART_TIMEOUT)).unwrap();
    eprintln!("restart after the fix: {:?}", report.elapsed);
    assert_eq!(
        report.previous_main_pid, None,
        "a failed unit has no main process"
    );
    assert!(report.main_pid.is_some());
    let status = block(&rt, sd.unit_status(DNSMASQ)).unwrap();
    assert!(status.is_active(), "{status:?}");
    assert_eq!(status.result.as_deref(), Some("success"));
}

#[test]
fn seven_restarts_in_a_row_get_past_the_start_limit() {
    // Shows the client's warning with the refused attempt.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_ansi(false)
        .try_init();
    let lab = Lab::new("systemd_seven_restarts");
    let ct = Container::boot(&lab, &BootOptions::default());
    let rt = runtime();
    // zbus proxies unregister their match rules through the runtime when dropped.
    let _in_runtime = rt.enter();
    let sd = connect(&rt, &ct);

    let mut pids = vec![block(&rt, sd.main_pid(DNSMASQ)).unwrap()];
    let mut resets = 0;
    let started = Instant::now();
    for n in 1..=7 {
        let report = block(&rt, sd.restart_and_wait(DNSMASQ, RESTART_TIMEOUT))
            .unwrap_or_else(|e| panic!("restart {n}: {e}\n{}", ct.journal(DNSMASQ)));
        eprintln!(
            "restart {n}: {:?}{}",
            report.elapsed,
            if report.start_limit_reset {
                " (start limit hit, reset)"
            } else {
                ""
            }
        );
        assert_eq!(report.previous_main_pid, *pids.last().unwrap());
        assert!(!pids.contains(&report.main_pid), "{report:?} {pids:?}");
        pids.push(report.main_pid);
        resets += usize::from(report.start_limit_reset);
    }
    eprintln!("7 restarts in {:?}", started.elapsed());
    // Without the reset path one of these would have failed; prove it was taken.
    assert!(resets >= 1, "the start limit was never hit");
    let status = block(&rt, sd.unit_status(DNSMASQ)).unwrap();
    assert!(status.is_active(), "{status:?}");
    assert_eq!(status.main_pid, Some(systemctl_main_pid(&ct)));
}

#[test]
fn no_bus_at_the_address_is_not_running() {
    let rt = runtime();
    let err = block(&rt, Systemd::at_address("unix:path=/nonexistent")).unwrap_err();
    assert!(err.is_not_running(), "{err:?}");
    assert!(matches!(err, SystemdError::NotRunning { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("systemd is not running"),
        "{err}"
    );
}

/// A private dbus-daemon, killed when dropped.
struct PrivateBus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    fn start() -> PrivateBus {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus");
        let address = format!("unix:path={}", socket.display());
        let child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={address}"))
            .stdout(Stdio::null())
            // It complains that it cannot raise its fd limit; nothing else to see.
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start dbus-daemon");
        let mut bus = PrivateBus {
            child,
            address,
            _dir: dir,
        };
        assert!(
            wait_for(|| socket.exists(), Duration::from_secs(5)),
            "dbus-daemon made no socket at {}: {:?}",
            socket.display(),
            bus.child.try_wait()
        );
        bus
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_bus_without_systemd_is_not_running() {
    let bus = PrivateBus::start();
    let rt = runtime();
    let err = block(&rt, Systemd::at_address(&bus.address)).unwrap_err();
    assert!(err.is_not_running(), "{err:?}");
    assert!(
        err.to_string().contains("org.freedesktop.systemd1"),
        "{err}"
    );
}
