//! Self-tests of the container harness (tests/container): a booted Debian 12 with its own
//! systemd and the Debian `dnsmasq` service, serving a lab bridge from its default configuration.
//!
//! These need root, systemd-nspawn and debootstrap (and the Debian mirror, the first time, to
//! build the cached root); they fail, never skip, when a container cannot boot.

mod container;
mod lab;

use std::net::Ipv4Addr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use container::{write_into, BootOptions, Container};
use lab::{Lab, ProbeOptions};

/// The bridge the agent will serve; the site's dnsmasq configuration knows nothing about it.
const AGENT_BRIDGE: &str = "vqsys0";
/// An "unrelated" bridge the site's own dnsmasq configuration serves.
const SITE_BRIDGE: &str = "vqsite0";
const SITE_RANGE: (Ipv4Addr, Ipv4Addr) =
    (Ipv4Addr::new(10, 98, 0, 100), Ipv4Addr::new(10, 98, 0, 150));

/// A site fragment as an administrator would drop it: one range, Debian defaults otherwise.
fn site_setup() -> BootOptions {
    BootOptions {
        setup: Some(Box::new(|root| {
            let (start, end) = SITE_RANGE;
            let conf = format!("dhcp-range={start},{end},255.255.255.0,1h\n");
            write_into(root, "/etc/dnsmasq.d/site.conf", &conf, 0o644);
        })),
        ..BootOptions::default()
    }
}

fn in_site_range(ip: Ipv4Addr) -> bool {
    (u32::from(SITE_RANGE.0)..=u32::from(SITE_RANGE.1)).contains(&u32::from(ip))
}

/// A full lease for a fresh client on `bridge`, from the container's dnsmasq. udhcpc retries
/// for 8 s: dnsmasq's ping check delays a first offer by about 3 s.
fn lease_on(lab: &Lab, ct: &Container, bridge: &str, mac: &str) -> lab::Lease {
    let client = lab.add_client(bridge, mac);
    let asked = Instant::now();
    let lease = client
        .lease_with_args(&["-t", "8"])
        .unwrap_or_else(|| panic!("no lease for {mac} on {bridge}\n{}", ct.journal("dnsmasq")));
    eprintln!("{mac}: lease {} after {:.1?}", lease.ip, asked.elapsed());
    lease
}

#[test]
fn system_dnsmasq_serves_a_lab_bridge_and_restarts() {
    let lab = Lab::new("system_dnsmasq_serves_a_lab_bridge_and_restarts");
    lab.add_bridge(AGENT_BRIDGE, "10.97.0.1/24");
    lab.add_bridge(SITE_BRIDGE, "10.98.0.1/24");

    let ct = Container::boot(&lab, &site_setup());
    let t = ct.timings();
    eprintln!(
        "container {}: boot {:.0?} (prepare {:.0?} [{:?}], pid 1 after {:.0?}, running after {:.0?})",
        ct.name(),
        t.total,
        t.prepare,
        ct.root_kind(),
        t.to_leader,
        t.to_running
    );
    assert_eq!(
        ct.exec_ok(&["systemctl", "is-active", "dnsmasq"]).trim(),
        "active"
    );
    assert!(
        ct.host_path("/etc/dnsmasq.d/site.conf").is_file(),
        "the setup's fragment is not in the container's root"
    );

    let lease = lease_on(&lab, &ct, SITE_BRIDGE, "52:54:00:98:00:01");
    assert!(
        in_site_range(lease.ip),
        "lease {lease:?} outside the site range"
    );
    assert_eq!(lease.server_id, Some(Ipv4Addr::new(10, 98, 0, 1)));
    // Nothing serves the agent's bridge yet: the site configuration has no range for it.
    let stranger = lab.add_client(AGENT_BRIDGE, "52:54:00:97:00:01");
    let quiet = ProbeOptions {
        timeout: Duration::from_secs(2),
        ..ProbeOptions::default()
    };
    assert!(
        stranger.probe(&quiet).is_none(),
        "an offer on {AGENT_BRIDGE}"
    );

    // The container's systemd from the host, through its system bus.
    let bus = format!("--address={}", ct.system_bus_address());
    let unit = lab.host_run(&[
        "busctl",
        &bus,
        "call",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "GetUnit",
        "s",
        "dnsmasq.service",
    ]);
    assert_eq!(
        unit.trim(),
        r#"o "/org/freedesktop/systemd1/unit/dnsmasq_2eservice""#
    );
    let state = lab.host_run(&[
        "busctl",
        &bus,
        "get-property",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1/unit/dnsmasq_2eservice",
        "org.freedesktop.systemd1.Unit",
        "ActiveState",
    ]);
    assert_eq!(state.trim(), r#"s "active""#);

    let pid_before = ct.exec_ok(&["systemctl", "show", "-P", "MainPID", "dnsmasq"]);
    let restart = Instant::now();
    ct.exec_ok(&["systemctl", "restart", "dnsmasq"]);
    let restart = restart.elapsed();
    eprintln!(
        "container {}: systemctl restart dnsmasq {restart:.0?}",
        ct.name()
    );
    let pid_after = ct.exec_ok(&["systemctl", "show", "-P", "MainPID", "dnsmasq"]);
    assert_ne!(
        pid_before.trim(),
        pid_after.trim(),
        "dnsmasq was not restarted"
    );
    assert_eq!(
        ct.exec_ok(&["systemctl", "is-active", "dnsmasq"]).trim(),
        "active"
    );
    let again = lease_on(&lab, &ct, SITE_BRIDGE, "52:54:00:98:00:02");
    assert!(
        in_site_range(again.ip),
        "lease {again:?} outside the site range"
    );
    let journal = ct.journal("dnsmasq");
    assert!(
        journal.contains("DHCPACK(vqsite0)"),
        "dnsmasq's journal shows no ACK on {SITE_BRIDGE}:\n{journal}"
    );
}

/// What a container leaves on the host while it exists.
struct Traces {
    root: PathBuf,
    cgroups: Vec<PathBuf>,
}

impl Traces {
    fn of(ct: &Container) -> Traces {
        Traces {
            root: ct.root().to_path_buf(),
            cgroups: ct.cgroup_dirs(),
        }
    }

    fn assert_present(&self) {
        assert!(!self.cgroups.is_empty(), "the container has no cgroup");
        assert!(
            self.cgroups.iter().all(|d| d.is_dir()),
            "cgroups missing: {:?}",
            self.cgroups
        );
        assert!(self.root.join("etc/os-release").exists(), "root missing");
    }

    fn assert_gone(&self) {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = self.root.to_string_lossy();
        assert!(!mounts.contains(root.as_ref()), "{root} still mounted");
        let dir = self.root.parent().expect("the root lives in a temp dir");
        assert!(!dir.exists(), "{} left behind", dir.display());
        for cgroup in &self.cgroups {
            assert!(!cgroup.exists(), "cgroup {} left behind", cgroup.display());
        }
    }
}

#[test]
fn containers_boot_side_by_side_and_leave_nothing_behind() {
    let labs = [Lab::new("side_by_side_a"), Lab::new("side_by_side_b")];
    let traces: Vec<Traces> = std::thread::scope(|s| {
        let booting: Vec<_> = labs
            .iter()
            .map(|lab| {
                s.spawn(move || {
                    let ct = Container::boot(lab, &BootOptions::default());
                    let traces = Traces::of(&ct);
                    traces.assert_present();
                    let running = ct.exec_ok(&["systemctl", "is-system-running"]);
                    assert!(
                        matches!(running.trim(), "running" | "degraded"),
                        "{running}"
                    );
                    let ns_inode =
                        |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
                    let in_lab = ct.exec_ok(&["readlink", "/proc/1/ns/net"]);
                    assert_eq!(
                        ns_inode(&ct.leader_pid().to_string())
                            .map(|p| p.to_string_lossy().into_owned()),
                        Some(in_lab.trim().to_string()),
                        "pid 1's network namespace, seen from outside and inside"
                    );
                    traces
                })
            })
            .collect();
        booting
            .into_iter()
            .map(|b| b.join().expect("a container failed to boot"))
            .collect()
    });
    for t in &traces {
        t.assert_gone();
    }
    assert_ne!(traces[0].root, traces[1].root);
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    let lab = Lab::new("a_panicking_test_leaves_nothing_behind");
    let mut traces = None;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let ct = Container::boot(&lab, &BootOptions::default());
        traces = Some(Traces::of(&ct));
        // A command still running inside when the test dies must not hold up the halt.
        let slow = ct.exec_bounded(&["sleep", "30"], Duration::from_millis(300));
        assert!(slow.is_err(), "sleep 30 returned within 300 ms: {slow:?}");
        // Unwinds like a failed assertion, without the panic hook's noise in the test output.
        std::panic::resume_unwind(Box::new("deliberate"));
    }));
    assert!(outcome.is_err(), "the closure was meant to panic");
    traces.expect("the container booted").assert_gone();
}
