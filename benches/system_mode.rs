//! System mode figures, in a booted Debian 12 with Debian's dnsmasq service (the test
//! harness's container, in a lab network namespace):
//!
//! 1. `virtmasq sync` for a new network: the command's own time, the restart it reports, the
//!    time from starting `sync` to the first DHCP offer on the new bridge, and where the
//!    command's time went (its `virtmasq::timing` phases); medians of `SYSTEM_BENCH_ROUNDS`
//!    (default 5). With `SYSTEM_BENCH_BASELINE=/path/to/an/older/virtmasq`, that build is
//!    measured too, round by round beside this one, in the same container.
//! 2. A burst of 20 network starts seen by `virtmasq daemon` (each start rewrites the libvirt
//!    test driver's node file and signals the daemon, as the hook does), and how many restarts
//!    of the system dnsmasq it cost.
//!
//! Run: `cargo bench --bench system_mode` (root; boots a container).

#[path = "../tests/container/mod.rs"]
mod container;
#[path = "../tests/lab/mod.rs"]
mod lab;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use container::{write_into, BootOptions, Container};
use lab::{Lab, ProbeOptions};

const BIN: &str = env!("CARGO_BIN_EXE_virtmasq");
const BURST: usize = 20;
/// Another build of the agent to measure beside this one, in the same container and rounds.
const BASELINE_ENV: &str = "SYSTEM_BENCH_BASELINE";
const BASELINE_INSIDE: &str = "/usr/local/bin/virtmasq-baseline";
/// Between two restarts of the system dnsmasq: the rounds stay under its start limit (5 in
/// 10 s, one kept for a rollback), so that no sync waits for room.
const SPACING: Duration = Duration::from_millis(2600);

fn network(i: usize) -> String {
    format!(
        "<network><name>n{i}</name><forward mode='nat'/><bridge name='vqb{i}'/><dns enable='no'/>\
         <ip address='10.{}.0.1' prefix='24'/><metadata>\
         <virtmasq:dhcp xmlns:virtmasq=\"http://virtmasq.org/xmlns/network/1.0\">\
         <virtmasq:range start=\"10.{}.0.100\" end=\"10.{}.0.150\"/>\
         </virtmasq:dhcp></metadata></network>",
        100 + i,
        100 + i,
        100 + i
    )
}

fn node(count: usize) -> String {
    format!(
        "<node>{}</node>",
        (0..count).map(network).collect::<String>()
    )
}

fn dnsmasq_starts(ct: &Container) -> usize {
    ct.journal("dnsmasq")
        .lines()
        .filter(|l| l.starts_with("started, version"))
        .count()
}

/// One `sync` of a new network.
struct SyncRun {
    /// The command, spawn to exit (through nsenter into the container).
    command: Duration,
    /// From spawning it to the first offer on the new bridge.
    served: Duration,
    /// The restart it reported, if any.
    restart_ms: Option<u64>,
    /// Its `virtmasq::timing` phases, in the order they ended.
    phases: Vec<(String, Duration)>,
}

/// The phases in `virtmasq::timing` debug lines (`phase="check" us=1234`).
fn phases(stderr: &str) -> Vec<(String, Duration)> {
    let field = |line: &str, key: &str| -> Option<String> {
        let rest = &line[line.find(key)? + key.len()..];
        Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
    };
    stderr
        .lines()
        .filter(|l| l.contains("virtmasq::timing"))
        .filter_map(|l| {
            let us: u64 = field(l, " us=")?.parse().ok()?;
            Some((field(l, " phase=")?, Duration::from_micros(us)))
        })
        .collect()
}

/// Runs `args` inside the container and waits for it: nsenter into the container's
/// namespaces, bounded by `timeout(1)`. Unlike [`Container::exec`], whose bounded wait polls
/// with growing pauses (up to 50 ms), its end is seen at once.
fn exec_timed(ct: &Container, args: &[&str]) -> (Duration, std::process::Output) {
    let leader = ct.leader_pid().to_string();
    let t0 = Instant::now();
    let out = std::process::Command::new("timeout")
        .args(["60", "nsenter", "-t", &leader, "-a", "--"])
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .expect("run nsenter");
    (t0.elapsed(), out)
}

/// Removes the bench's network with `bin sync` (not measured), then adds it back with a
/// measured `bin sync`, its guest probing for the first offer from the moment it starts.
fn sync_to_offer(ct: &Container, bin: &str, prober: &mut lab::Prober, mac: &str) -> SyncRun {
    std::fs::write(ct.host_path("/etc/virtmasq/node.xml"), node(0)).unwrap();
    ct.exec_ok(&[bin, "sync"]);
    std::thread::sleep(SPACING);
    std::fs::write(ct.host_path("/etc/virtmasq/node.xml"), node(1)).unwrap();
    let ((command, out), served) = std::thread::scope(|s| {
        let t0 = Instant::now();
        let probe = s.spawn(move || {
            prober
                .until_offer(mac, Duration::from_millis(5), Duration::from_secs(20))
                .expect("no offer on the new network within 20 s");
            t0.elapsed()
        });
        let run = exec_timed(ct, &[bin, "--log-level", "virtmasq::timing=debug", "sync"]);
        (run, probe.join().expect("the probing thread"))
    });
    assert!(
        out.status.success(),
        "{bin} sync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let restart_ms = stdout
        .lines()
        .find_map(|l| l.strip_prefix("restarted ")?.split(" in ").nth(1))
        .and_then(|t| t.trim_end_matches(" ms").parse().ok());
    std::thread::sleep(SPACING);
    SyncRun {
        command,
        served,
        restart_ms,
        phases: phases(&String::from_utf8_lossy(&out.stderr)),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Prints the medians of `runs` and of each phase.
fn report_sync(which: &str, runs: &[SyncRun]) {
    let med = |f: &dyn Fn(&SyncRun) -> Duration| median(runs.iter().map(f).collect());
    let restart = median(
        runs.iter()
            .map(|r| Duration::from_millis(r.restart_ms.unwrap_or(0)))
            .collect(),
    );
    // systemd's restart job varies by tens of ms from one round to the next on a loaded
    // machine; what the agent itself adds is the rest of the command.
    let outside = |r: &SyncRun| {
        r.command
            .saturating_sub(Duration::from_millis(r.restart_ms.unwrap_or(0)))
    };
    println!(
        "{which}: sync of a new network -> first offer {:.1?}; the command {:.1?} (restart it \
         reports {restart:.0?}; the command outside the restart {:.1?}); medians of {}",
        med(&|r| r.served),
        med(&|r| r.command),
        med(&outside),
        runs.len()
    );
    let mut names: Vec<String> = Vec::new();
    for (name, _) in runs.iter().flat_map(|r| &r.phases) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    for name in names {
        let of = |r: &SyncRun| {
            (r.phases.iter())
                .filter(|(n, _)| *n == name)
                .map(|(_, d)| *d)
                .sum::<Duration>()
        };
        println!("  {name:<14} {:>9.1?}", med(&of));
    }
}

fn main() {
    let rounds: usize = std::env::var("SYSTEM_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let baseline = std::env::var_os(BASELINE_ENV).map(PathBuf::from);
    let lab = Lab::new("bench_system_mode");
    for i in 0..=BURST {
        lab.add_bridge(&format!("vqb{i}"), &format!("10.{}.0.1/24", 100 + i));
    }
    let mut binds = vec![(PathBuf::from(BIN), "/usr/local/bin/virtmasq".to_owned())];
    if let Some(b) = &baseline {
        binds.push((b.clone(), BASELINE_INSIDE.to_owned()));
    }
    let opts = BootOptions {
        binds_ro: binds,
        setup: Some(Box::new(|root: &Path| {
            write_into(root, "/etc/dnsmasq.d/site.conf", "no-ping\n", 0o644);
            let cfg = "mode = \"system\"\n[libvirt]\nuri = \"test:///etc/virtmasq/node.xml\"\n\
                       poll_interval_secs = 3600\n[system]\ndebounce_ms = 500\n";
            write_into(root, "/etc/virtmasq/virtmasq.toml", cfg, 0o644);
            write_into(root, "/etc/virtmasq/node.xml", &node(0), 0o644);
        })),
    };
    let ct = Container::boot(&lab, &opts);
    println!("container booted in {:.0?}", ct.timings().total);

    // 1. sync -> first offer on the new bridge, probed by a prober started beforehand (its
    // python start-up, ~1 s, is not the server's time).
    let client = lab.add_client("vqb0", "52:54:00:aa:00:01");
    let mut prober = lab::Prober::start(client.ns());
    let mut runs: Vec<(&str, Vec<SyncRun>)> = vec![("this build", Vec::new())];
    if baseline.is_some() {
        runs.push(("baseline", Vec::new()));
    }
    for _ in 0..rounds {
        for (which, got) in runs.iter_mut() {
            let bin = match *which {
                "baseline" => BASELINE_INSIDE,
                _ => "virtmasq",
            };
            got.push(sync_to_offer(&ct, bin, &mut prober, client.mac()));
        }
    }
    for (which, got) in &runs {
        report_sync(which, got);
    }
    // What the measured commands pay before their own work: the exec into the container, and
    // the binary's start (its shared libraries, libvirt's among them).
    let exec_floor = |args: &[&str]| {
        let times = (0..rounds.max(5)).map(|_| exec_timed(&ct, args).0);
        median(times.collect())
    };
    println!(
        "floors: an exec of /bin/true into the container {:.1?}; of `virtmasq --version` {:.1?}",
        exec_floor(&["true"]),
        exec_floor(&["virtmasq", "--version"])
    );

    burst(&lab, &ct);
}

/// 2. A burst of network starts seen by the daemon, and the restarts it costs.
fn burst(lab: &Lab, ct: &Container) {
    ct.exec_ok(&[
        "systemd-run",
        "--unit=virtmasq-bench",
        "/usr/local/bin/virtmasq",
        "daemon",
    ]);
    // /run is the container's own tmpfs: read it from inside.
    let read_pid = || {
        let out = ct.exec(&["cat", "/run/virtmasq/virtmasq.pid"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    assert!(
        lab::Lab::wait_for(|| read_pid().is_some(), Duration::from_secs(10)),
        "daemon did not start:\n{}",
        ct.journal("virtmasq-bench")
    );
    std::thread::sleep(Duration::from_secs(2));
    let starts_before = dnsmasq_starts(ct);
    let pid = read_pid().expect("daemon pid");
    let t1 = Instant::now();
    for i in 2..=BURST + 1 {
        // One more network "starts": libvirt's state changes, then the hook signals the daemon.
        std::fs::write(ct.host_path("/etc/virtmasq/node.xml"), node(i)).unwrap();
        ct.exec_ok(&["busybox", "kill", "-USR1", &pid]);
        std::thread::sleep(Duration::from_millis(10));
    }
    let burst_time = t1.elapsed();
    let last = lab.add_client(&format!("vqb{BURST}"), "52:54:00:aa:00:02");
    let probe = ProbeOptions {
        timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let mut all_served = None;
    for _ in 0..40 {
        if last.probe(&probe).is_some() {
            all_served = Some(t1.elapsed());
            break;
        }
    }
    let all_served = all_served.expect("the last network of the burst was not served within 20 s");
    std::thread::sleep(Duration::from_secs(2));
    let restarts = dnsmasq_starts(ct) - starts_before;
    println!(
        "burst of {BURST} network starts over {burst_time:.0?}: {restarts} restart(s) of the system dnsmasq; \
         last network served {all_served:.0?} after the first start"
    );
    ct.exec(&["systemctl", "stop", "virtmasq-bench"]);
}
