//! The daemon's memory: its resident set (VmRSS, split into anonymous memory and mapped files)
//! and threads while it serves 1 and then 20 private networks, each with its own dnsmasq
//! (whose memory is dnsmasq's, not counted).

use std::fs;
use std::time::Duration;

use super::{dbus_name, Row, Scale, Value};
use crate::lab::Lab;
use crate::support::bus::PrivateBus;
use crate::support::{live_pid, wait_until, write_config, write_node, TestNet, BIN};

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

/// Waits until `n` networks are served and the daemon settles, then reads its memory.
fn settle(lab: &Lab, pid: u32, n: usize) -> (u64, u64) {
    let up = wait_until(Duration::from_secs(30), || serving(lab, n));
    assert!(up, "the daemon did not serve {n} network(s)");
    std::thread::sleep(Duration::from_secs(2));
    let (rss, threads) = (status_kb(pid, "VmRSS:"), status_kb(pid, "Threads:"));
    let (anon, file) = (status_kb(pid, "RssAnon:"), status_kb(pid, "RssFile:"));
    println!(
        "daemon serving {n} private network(s): VmRSS {rss} kB ({anon} kB anonymous, {file} kB \
         mapped files: its binary and libvirt's libraries), {threads} threads"
    );
    (rss, threads)
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
    let twenty = settle(&lab, pid, NETS); // the daemon's libvirt poll (1 s) sees them
    lab.stop_process(pid, Duration::from_secs(5));
    vec![
        Row {
            what: format!("daemon RSS, 1 private network ({} threads)", one.1),
            ours: Value::Kb(one.0),
            peer: None,
            target: "< 12 MB",
        },
        Row {
            what: format!("daemon RSS, 20 private networks ({} threads)", twenty.1),
            ours: Value::Kb(twenty.0),
            peer: None,
            target: "< 12 MB",
        },
    ]
}
