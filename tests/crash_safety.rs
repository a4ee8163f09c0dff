//! The system transaction killed (SIGKILL, as an OOM kill or a power loss would end it) at
//! every step, in a booted Debian with Debian's dnsmasq unit: the next start of the agent
//! (`sync`, the hook, the daemon) leaves the conf-dir exactly the old set or the new validated
//! one, the unit's own check passes on it, and the site's LAN is served throughout.
//!
//! The kills come from failpoints compiled into debug builds only (`src/system/failpoint.rs`):
//! `VIRTMASQ_FAILPOINT=<step>` makes the agent SIGKILL itself at that step.

mod container;
mod lab;
mod system_host;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use system_host::*;

const OLD: &[Net] = &[
    ("lab", "vqsys0", 97, 100, 150),
    ("lab2", "vqsys1", 96, 100, 150),
];
/// lab's range moves (restart), lab2 goes, lab3 comes.
const NEW: &[Net] = &[
    ("lab", "vqsys0", 97, 160, 190),
    ("lab3", "vqsys2", 95, 100, 150),
];
const BRIDGES: &[(&str, &str)] = &[
    ("vqsys0", "10.97.0.1/24"),
    ("vqsys1", "10.96.0.1/24"),
    ("vqsys2", "10.95.0.1/24"),
];

/// Which start recovers.
#[derive(Debug, Clone, Copy)]
enum Next {
    Sync,
    Hook,
    Daemon,
}

/// Runs `next` with the failpoint that kills it right after its recovery, so that what the
/// recovery left can be looked at before anything else changes it.
fn recover_with(ct: &container::Container, next: Next) {
    let out = match next {
        Next::Sync => agent(ct, Some("recovered"), &["sync"]),
        Next::Hook => ct.exec(&[
            "sh",
            "-c",
            "env VIRTMASQ_FAILPOINT=recovered virtmasq hook network lab started begin - </dev/null",
        ]),
        Next::Daemon => ct
            .exec_bounded(
                &["env", "VIRTMASQ_FAILPOINT=recovered", "virtmasq", "daemon"],
                Duration::from_secs(30),
            )
            .expect("the daemon did not reach its recovery"),
    };
    assert!(
        killed(&out),
        "{next:?} did not reach the recovery point: {}",
        text(&out)
    );
}

/// Sets the flag when dropped, so that a watcher thread stops even when the test panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_kill_at_every_step_leaves_the_old_or_the_new_validated_set() {
    let lab = lab("crash_every_step", BRIDGES);
    let ct = boot(&lab, OLD, Vec::new());
    let site = lab.add_client(SITE, "52:54:00:98:00:01");
    let guest = lab.add_client("vqsys0", "52:54:00:97:00:01");
    let site_served = || within(site.lease().map(|l| l.ip), 98, 100, 150);
    assert!(site_served());

    sync_ok(&ct);
    let old = snapshot(&ct, DIRS);
    set_nets(&ct, NEW);
    sync_ok(&ct);
    let new = snapshot(&ct, DIRS);
    assert_ne!(old, new);
    set_nets(&ct, OLD);
    sync_ok(&ct);
    assert_eq!(
        snapshot(&ct, DIRS),
        old,
        "{}",
        diff(&snapshot(&ct, DIRS), &old)
    );

    // A second client of the site asks for a lease again and again while all this happens.
    let watcher = lab.add_client(SITE, "52:54:00:98:00:0f");
    let stop = AtomicBool::new(false);
    let leases = std::thread::scope(|s| {
        let watching = s.spawn(|| {
            let mut got = Vec::new();
            while !stop.load(Ordering::Relaxed) && got.len() < 500 {
                got.push(within(watcher.lease().map(|l| l.ip), 98, 100, 150));
            }
            got
        });
        let _stop = StopOnDrop(&stop);
        every_step(&ct, &guest, &site_served, (&old, &new));
        drop(_stop);
        watching.join().unwrap()
    });
    let failed = leases.iter().filter(|ok| !**ok).count();
    eprintln!(
        "site leases during the kills: {} asked, {failed} failed",
        leases.len()
    );
    assert!(leases.len() >= 10, "only {} leases asked for", leases.len());
    assert_eq!(failed, 0, "{failed} of {} site leases failed", leases.len());
}

type Snapshot = std::collections::BTreeMap<std::path::PathBuf, FileState>;

/// Kills a change from `old` to `new` at each step, recovers, checks, finishes it, goes back.
fn every_step(
    ct: &container::Container,
    guest: &lab::Client,
    site_served: &dyn Fn() -> bool,
    (old, new): (&Snapshot, &Snapshot),
) {
    // (failpoint, the start that recovers, what it must leave: true = the new set)
    let steps = [
        ("staged", Next::Sync, false),
        ("journaled", Next::Sync, false),
        ("prepared", Next::Hook, false),
        ("renamed-first", Next::Sync, false),
        ("written", Next::Daemon, true),
        ("restarted", Next::Sync, true),
    ];
    let journal = ct.host_path("/var/lib/virtmasq/system.journal");
    for (point, next, forward) in steps {
        set_nets(ct, NEW);
        let out = agent(ct, Some(point), &["sync"]);
        assert!(killed(&out), "{point}: not killed: {}", text(&out));
        assert!(site_served(), "{point}: the site lost DHCP after the kill");

        recover_with(ct, next);
        let now = snapshot(ct, DIRS);
        let want = if forward { new } else { old };
        assert!(
            &now == want,
            "{point}, recovered by {next:?}: want the {} set\n{}",
            if forward { "new" } else { "old" },
            diff(&now, want)
        );
        assert!(!journal.exists(), "{point}: the journal is still there");
        unit_check(ct).unwrap_or_else(|e| panic!("{point}: the unit's check fails: {e}"));
        assert_eq!(active(ct), "active", "{point}");
        assert!(
            site_served(),
            "{point}: the site lost DHCP after the recovery"
        );
        if forward {
            // Rolled forward means restarted on the new set, not only files in place.
            let ip = guest.lease().map(|l| l.ip);
            assert!(
                within(ip, 97, 160, 190),
                "{point}: not serving the new range: {ip:?}"
            );
        }

        // The next plain sync finishes the change, and going back works too.
        sync_ok(ct);
        assert_eq!(&snapshot(ct, DIRS), new, "{point}");
        assert!(within(guest.lease().map(|l| l.ip), 97, 160, 190), "{point}");
        set_nets(ct, OLD);
        sync_ok(ct);
        assert_eq!(&snapshot(ct, DIRS), old, "{point}");
    }
}

/// Killed while putting the old files back after a failed restart (the unit is down at that
/// moment): the next start finishes the rollback and brings the unit back on the old set.
#[test]
fn a_kill_during_a_rollback_is_finished_at_the_next_start() {
    let lab = lab("crash_in_rollback", BRIDGES);
    // The unit refuses to start with lab's new range: every restart on the new set fails.
    let refuse = "[Service]\nExecStartPre=/bin/sh -c '! grep -qs 10.97.0.160 /etc/dnsmasq.d/virtmasq-lab.conf'\n";
    let dropin = (
        "/etc/systemd/system/dnsmasq.service.d/refuse.conf".to_owned(),
        refuse.to_owned(),
    );
    let ct = boot(&lab, OLD, vec![dropin]);
    let site = lab.add_client(SITE, "52:54:00:98:00:02");
    sync_ok(&ct);
    let old = snapshot(&ct, DIRS);

    set_nets(&ct, NEW);
    let out = agent(&ct, Some("rolling-back"), &["sync"]);
    assert!(killed(&out), "not killed: {}", text(&out));
    recover_with(&ct, Next::Sync);
    assert_eq!(
        snapshot(&ct, DIRS),
        old,
        "{}",
        diff(&snapshot(&ct, DIRS), &old)
    );
    assert_eq!(active(&ct), "active", "the unit was not brought back");
    unit_check(&ct).unwrap();
    assert!(within(site.lease().map(|l| l.ip), 98, 100, 150));

    // Without a kill: the failed restart is rolled back by the same process.
    let out = agent(&ct, None, &["sync"]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    assert!(
        text(&out).contains("runs on it again"),
        "{}\n{}",
        text(&out),
        ct.journal("dnsmasq")
    );
    assert_eq!(snapshot(&ct, DIRS), old);
    assert_eq!(active(&ct), "active");
    assert!(within(site.lease().map(|l| l.ip), 98, 100, 150));
}
