//! The daemon's memory: its resident set (VmRSS, split into anonymous memory and mapped files)
//! and threads while it serves 1 and then 20 private networks, each with its own dnsmasq
//! (whose memory is dnsmasq's, not counted).

use std::fs;
use std::time::Duration;

use super::{dbus_name, Row, Scale, Value};
use crate::lab::Lab;
use crate::support::bus::PrivateBus;
use crate::support::{live_pid, signal, wait_until, write_config, write_node, TestNet, BIN};

const NETS: usize = 20;

/// Names, bridges and addresses of the test networks (built once, borrowed by `TestNet`).
struct Specs(Vec<(String, String, String, String)>);

impl Specs {
    fn new() -> Self {
        Self(
            (0..NETS)
                .map(|i| {
                    let range =
                        format!(r#"<virtmasq:range start="10.97.{i}.100" end="10.97.{i}.150"/>"#);
                    (
                        format!("m{i}"),
                        format!("vqpm{i}"),
                        format!("10.97.{i}.1/24"),
                        range,
                    )
                })
                .collect(),
        )
    }

    fn nets(&self, n: usize) -> Vec<TestNet<'_>> {
        self.0[..n]
            .iter()
            .map(|(name, bridge, ip, range)| TestNet {
                name,
                bridge,
                ip,
                dhcp: Some(range),
            })
            .collect()
    }
}

/// A field of /proc/PID/status in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} for {pid}"))
}

fn serving(lab: &Lab, n: usize) -> bool {
    (0..n).all(|i| live_pid(&lab.dir().join(format!("run/m{i}/pid/dnsmasq.pid"))).is_some())
}

/// Pss of /proc/PID/smaps_rollup in kB: resident pages, each shared one divided among the
/// processes that map it (libvirt's libraries are mapped by libvirtd too on a real host).
fn pss_kb(pid: u32) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no Pss for {pid}"))
}

/// The daemon's memory over 3 s in which it reconciles once (as after a hook's report, or its
/// libvirt poll, every 30 s by default) and is otherwise idle but for its lease view: the
/// median and the largest VmRSS of samples every 50 ms.
struct Sampled {
    median_kb: u64,
    max_kb: u64,
    threads: u64,
}

/// Asks the daemon to reconcile (SIGUSR1, as the hook does without D-Bus), waits until `n`
/// networks are served, then samples its memory for 3 s, starting with another reconcile.
fn settle(lab: &Lab, pid: u32, n: usize) -> Sampled {
    signal(pid, nix::sys::signal::Signal::SIGUSR1);
    let up = wait_until(Duration::from_secs(30), || serving(lab, n));
    assert!(up, "the daemon did not serve {n} network(s)");
    std::thread::sleep(Duration::from_secs(1));
    signal(pid, nix::sys::signal::Signal::SIGUSR1);
    let mut rss: Vec<u64> = (0..60)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            status_kb(pid, "VmRSS:")
        })
        .collect();
    rss.sort_unstable();
    let s = Sampled {
        median_kb: rss[rss.len() / 2],
        max_kb: rss[rss.len() - 1],
        threads: status_kb(pid, "Threads:"),
    };
    let (anon, file) = (status_kb(pid, "RssAnon:"), status_kb(pid, "RssFile:"));
    println!(
        "daemon serving {n} private network(s), 3 s of samples: VmRSS median {} kB, max {} kB; \
         last: {anon} kB anonymous, {file} kB mapped files, Pss {} kB; {} threads",
        s.median_kb,
        s.max_kb,
        pss_kb(pid),
        s.threads
    );
    s
}

/// The memory rows of the table.
pub fn rows(_scale: Scale) -> Vec<Row> {
    let lab = Lab::new("peers_memory");
    let specs = Specs::new();
    for (_, bridge, ip, _) in &specs.0 {
        lab.add_bridge(bridge, ip);
    }
    let uri = write_node(lab.dir(), "node.xml", &specs.nets(1));
    let cfg = write_config(lab.dir(), &uri, "");
    // The default poll interval, not the tests' 1 s: the daemon idles as on a host.
    let text = fs::read_to_string(&cfg).unwrap();
    fs::write(
        &cfg,
        text.replace("poll_interval_secs = 1\n", "poll_interval_secs = 30\n"),
    )
    .unwrap();
    let bus = PrivateBus::start();
    let mut cmd = lab.host_command(BIN);
    cmd.args([
        "--config",
        cfg.to_str().unwrap(),
        "--log-level",
        &super::daemon_log(),
    ])
    .arg("daemon")
    .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address);
    let pid = lab.spawn(&mut cmd);
    let up = wait_until(Duration::from_secs(10), || bus.has_owner(dbus_name()));
    assert!(up, "the daemon (pid {pid}) did not take its bus name");
    let one = settle(&lab, pid, 1);
    write_node(lab.dir(), "node.xml", &specs.nets(NETS));
    let twenty = settle(&lab, pid, NETS);
    lab.stop_process(pid, Duration::from_secs(5));
    vec![
        Row {
            what: "daemon RSS, 1 private network, median of 3 s".into(),
            ours: Value::Kb(one.median_kb),
            peer: None,
            target: "< 12 MB",
        },
        Row {
            what: "daemon RSS, 1 private network, max of 3 s".into(),
            ours: Value::Kb(one.max_kb),
            peer: None,
            target: "",
        },
        Row {
            what: "daemon RSS, 20 private networks, median of 3 s".into(),
            ours: Value::Kb(twenty.median_kb),
            peer: None,
            target: "< 12 MB",
        },
        Row {
            what: format!(
                "daemon RSS, 20 private networks, max of 3 s ({} threads)",
                twenty.threads
            ),
            ours: Value::Kb(twenty.max_kb),
            peer: None,
            target: "",
        },
    ]
}
