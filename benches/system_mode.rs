//! System mode figures, in a booted Debian 12 with Debian's dnsmasq service (the test
//! harness's container, in a lab network namespace):
//!
//! 1. `virtmasq sync` for a new network: the command's own time, the restart it reports, and
//!    the time from starting `sync` to the first DHCP offer on the new bridge.
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

fn main() {
    let lab = Lab::new("bench_system_mode");
    for i in 0..=BURST {
        lab.add_bridge(&format!("vqb{i}"), &format!("10.{}.0.1/24", 100 + i));
    }
    let opts = BootOptions {
        binds_ro: vec![(PathBuf::from(BIN), "/usr/local/bin/virtmasq".into())],
        setup: Some(Box::new(|root: &Path| {
            write_into(root, "/etc/dnsmasq.d/site.conf", "no-ping\n", 0o644);
            let cfg = "mode = \"system\"\n[libvirt]\nuri = \"test:///etc/virtmasq/node.xml\"\n\
                       poll_interval_secs = 3600\n[system]\ndebounce_ms = 500\n";
            write_into(root, "/etc/virtmasq/virtmasq.toml", cfg, 0o644);
            write_into(root, "/etc/virtmasq/node.xml", &node(1), 0o644);
        })),
    };
    let ct = Container::boot(&lab, &opts);
    println!("container booted in {:.0?}", ct.timings().total);

    // 1. sync -> first offer on the new bridge, probed by a prober started beforehand (its
    // python start-up, ~1 s, is not the server's time).
    let client = lab.add_client("vqb0", "52:54:00:aa:00:01");
    let mut prober = lab::Prober::start(client.ns());
    let t0 = Instant::now();
    let out = ct.exec(&["virtmasq", "sync"]);
    let sync_time = t0.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (after_sync_ms, tries) = prober
        .until_offer(
            client.mac(),
            Duration::from_millis(20),
            Duration::from_secs(20),
        )
        .expect("no offer on the new network within 20 s");
    let served = t0.elapsed();
    println!(
        "sync of a new network: command {:.0?} ({}); first offer {:.0?} after sync started \
         ({after_sync_ms:.1} ms after sync returned, {tries} DISCOVER(s))",
        sync_time,
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("restarted"))
            .unwrap_or("no restart"),
        served
    );

    // 2. A burst of network starts seen by the daemon.
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
    let starts_before = dnsmasq_starts(&ct);
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
    let restarts = dnsmasq_starts(&ct) - starts_before;
    println!(
        "burst of {BURST} network starts over {burst_time:.0?}: {restarts} restart(s) of the system dnsmasq; \
         last network served {all_served:.0?} after the first start"
    );
    ct.exec(&["systemctl", "stop", "virtmasq-bench"]);
}
