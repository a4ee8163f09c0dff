//! The system transaction under faults other than a kill, in a booted Debian with Debian's
//! dnsmasq unit: a restart that times out or that systemd's start limit refuses is rolled
//! back with the unit running again on the old set; virtmasq's own restarts never hit the
//! start limit; a full disk fails the change with a clear error and the conf-dir unchanged.

mod container;
mod lab;
mod system_host;

use std::time::{Duration, Instant};

use container::Container;
use system_host::*;

const OLD: &[Net] = &[("lab", "vqsys0", 97, 100, 150)];
const NEW: &[Net] = &[
    ("lab", "vqsys0", 97, 160, 190),
    ("lab2", "vqsys1", 96, 100, 150),
];
const BRIDGES: &[(&str, &str)] = &[("vqsys0", "10.97.0.1/24"), ("vqsys1", "10.96.0.1/24")];
const DROPIN: &str = "/etc/systemd/system/dnsmasq.service.d/test.conf";
const CONFIG: &str = "/etc/virtmasq/virtmasq.toml";

fn file(path: &str, text: &str) -> (String, String) {
    (path.to_owned(), text.to_owned())
}

fn config(extra: &str) -> (String, String) {
    file(
        CONFIG,
        &format!("mode = \"system\"\n[libvirt]\nuri = \"test:///etc/virtmasq/node.xml\"\n{extra}"),
    )
}

/// The site's LAN still gets a lease from the system dnsmasq.
fn site_served(lab: &lab::Lab, mac: &str) -> bool {
    within(
        lab.add_client(SITE, mac).lease().map(|l| l.ip),
        98,
        100,
        150,
    )
}

/// A failed change: the given exit code and words, the files as before, the unit active.
fn assert_rolled_back(ct: &Container, out: &std::process::Output, code: i32, words: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(words), "{words:?} missing: {err}");
    assert_eq!(active(ct), "active", "{}", ct.journal("dnsmasq"));
    unit_check(ct).unwrap();
}

#[test]
fn a_restart_that_times_out_is_rolled_back() {
    let lab = lab("fault_restart_timeout", BRIDGES);
    let slow = "[Service]\nExecStartPre=/bin/sh -c 'if grep -qs 10.97.0.160 \
                /etc/dnsmasq.d/virtmasq-lab.conf; then sleep 60; fi'\n";
    let ct = boot(
        &lab,
        OLD,
        vec![
            file(DROPIN, slow),
            config("[system]\nrestart_timeout_secs = 2\n"),
        ],
    );
    sync_ok(&ct);
    let before = snapshot(&ct, DIRS);
    set_nets(&ct, NEW);
    let started = Instant::now();
    let out = agent(&ct, None, &["sync"]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_rolled_back(&ct, &out, 69, "did not finish within 2s");
    assert!(text(&out).contains("runs on it again"), "{}", text(&out));
    assert_eq!(
        snapshot(&ct, DIRS),
        before,
        "{}",
        diff(&snapshot(&ct, DIRS), &before)
    );
    assert!(site_served(&lab, "52:54:00:98:00:11"));
}

#[test]
fn a_restart_refused_by_the_start_limit_is_rolled_back_and_the_unit_brought_back() {
    let lab = lab("fault_start_limit", BRIDGES);
    let limit = "[Unit]\nStartLimitBurst=4\nStartLimitIntervalSec=60\n";
    let ct = boot(&lab, OLD, vec![file(DROPIN, limit)]);
    let before = snapshot(&ct, DIRS);
    // Someone else restarts dnsmasq up to its limit (from a counter of zero): the next
    // start inside the minute is refused.
    ct.exec_ok(&["systemctl", "reset-failed", "dnsmasq"]);
    for _ in 0..4 {
        ct.exec_ok(&["systemctl", "restart", "dnsmasq"]);
    }
    assert_eq!(active(&ct), "active");
    let out = agent(&ct, None, &["sync"]);
    assert_rolled_back(&ct, &out, 69, "start-limit-hit");
    assert!(text(&out).contains("runs on it again"), "{}", text(&out));
    assert_eq!(
        snapshot(&ct, DIRS),
        before,
        "{}",
        diff(&snapshot(&ct, DIRS), &before)
    );
    assert!(site_served(&lab, "52:54:00:98:00:21"));
    // The limit window is still open, but the reset lets the change through now.
    sync_ok(&ct);
    assert!(ct.host_path("/etc/dnsmasq.d/virtmasq-lab.conf").exists());
}

/// Changes in a burst, each needing a restart: virtmasq reads the unit's own limit (3 in 4 s
/// here, tighter than systemd's default 5 in 10 s) over D-Bus and waits instead of being
/// refused.
#[test]
fn a_burst_of_changes_never_hits_the_start_limit() {
    let lab = lab("fault_own_restarts", BRIDGES);
    let limit = "[Unit]\nStartLimitBurst=3\nStartLimitIntervalSec=4\n";
    let ct = boot(&lab, OLD, vec![file(DROPIN, limit)]);
    ct.exec_ok(&["systemctl", "reset-failed", "dnsmasq"]);
    let started = Instant::now();
    for i in 0..6u8 {
        let nets: &[Net] = &[("lab", "vqsys0", 97, 100 + i, 150)];
        set_nets(&ct, nets);
        let out = sync_ok(&ct);
        assert!(out.contains("restarted"), "{i}: {out}");
    }
    let elapsed = started.elapsed();
    let journal = ct.journal("dnsmasq");
    assert!(!journal.contains("repeated too quickly"), "{journal}");
    // Six starts at most two per 4 s window (one kept for a rollback): two waits at least.
    assert!(elapsed > Duration::from_secs(8), "no waiting: {elapsed:?}");
    assert_eq!(active(&ct), "active");
}

/// Every file under `dirs` inside the container (a tmpfs mounted there is invisible from the
/// host), with mode, owner and checksum.
fn inside(ct: &Container) -> String {
    ct.exec_ok(&[
        "sh",
        "-c",
        "find /etc/dnsmasq.d /var/lib/virtmasq -type f ! -name system.lock \
         ! -name system.restarts -printf '%p %m %U %G ' -exec sha256sum {} \\; | sort",
    ])
}

/// Moves `dir` onto a tmpfs of `size`, keeping what it holds.
fn onto_tmpfs(ct: &Container, dir: &str, size: &str) {
    ct.exec_ok(&[
        "sh",
        "-c",
        &format!(
            "set -e; t=$(mktemp -d); cp -a {dir}/. $t/; \
             mount -t tmpfs -o size={size},mode=0755 tmpfs {dir}; cp -a $t/. {dir}/; rm -rf $t"
        ),
    ]);
}

fn fill(ct: &Container, path: &str) {
    // dd ends with "No space left on device"; what matters is that the disk is full.
    ct.exec(&["dd", "if=/dev/zero", &format!("of={path}"), "bs=4k"]);
}

#[test]
fn a_full_disk_fails_the_change_and_leaves_the_conf_dir_as_it_was() {
    let lab = lab("fault_full_disk", BRIDGES);
    let ct = boot(&lab, OLD, Vec::new());
    sync_ok(&ct);
    onto_tmpfs(&ct, "/etc/dnsmasq.d", "256k");
    onto_tmpfs(&ct, "/var/lib/virtmasq", "256k");
    set_nets(&ct, NEW);
    // (what is full, the file that fills it: a dotfile, which dnsmasq does not read, and the
    // directory the error must name)
    let cases = [
        (
            "the state directory",
            "/var/lib/virtmasq/.fill",
            "/var/lib/virtmasq/",
        ),
        ("the conf-dir", "/etc/dnsmasq.d/.fill", "/etc/dnsmasq.d/"),
    ];
    for (what, filler, named) in cases {
        fill(&ct, filler);
        let before = inside(&ct);
        let pid = main_pid(&ct);
        let out = agent(&ct, None, &["sync"]);
        assert_eq!(out.status.code(), Some(74), "{what}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("No space left on device") && err.contains(named),
            "{what}: {err}"
        );
        eprintln!("{what} full: {}", err.trim());
        assert_eq!(inside(&ct), before, "{what}: the files changed");
        assert_eq!(main_pid(&ct), pid, "{what}: dnsmasq was restarted");
        unit_check(&ct).unwrap();
        assert!(site_served(&lab, "52:54:00:98:00:31"), "{what}");
        ct.exec_ok(&["rm", filler]);
    }
    // With room again the change goes through.
    let out = sync_ok(&ct);
    assert!(out.contains("restarted"), "{out}");
    assert!(inside(&ct).contains("virtmasq-lab2.conf"));
}
