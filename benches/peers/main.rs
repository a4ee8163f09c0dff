//! virtmasq side by side with its peers and floors, in one run on one machine, printed as a
//! table with ratios (`make bench-peers`; root: the lab's namespaces).
//!
//! - the libvirt hook, spawn to exit, against `/bin/true`;
//! - `virtmasq filter sync --from FILE` as a whole process, fed the JSON a user gives (50,000
//!   MACs, `PEERS_MACS` changes it): the first sync, a change of 100 flips + 50 removed + 50
//!   added, a sync that changes nothing; against a bare create+write+rename loop of the same
//!   files and against OpenStack ironic's own dnsmasq filter (`benches/peers/ironic_filter.py`
//!   in the venv `scripts/bench-peers.sh` builds, named by `IRONIC_PYTHON`), whole process and
//!   in-process;
//! - the same filter changes through the running daemon over D-Bus;
//! - network start to the first DHCP offer: a private network started through the hook with
//!   the daemon running, against a plain dnsmasq started on a bridge;
//! - `virsh net-start` to the first offer with the package installed, in system and private
//!   mode, against a network libvirt serves itself, in a booted Debian with its libvirtd; and
//!   the system dnsmasq's restarts for a script's loop of 20 starts and of 20 stops
//!   (`net_start.rs`; in a full run, or when `PEERS_PARTS` names `netstart`).
//!
//! Every figure is the median of `PEERS_ROUNDS` runs (default 5). `PEERS_PARTS` picks parts
//! (hook,filter,daemon,offer,netstart,memory), `PEERS_LOG` sets the daemon's log level (default warn). Run without `--bench` (as
//! `cargo test --all-targets` does) it is a smoke run of a few seconds: 1,000 MACs, one round,
//! and no ironic unless `IRONIC_PYTHON` is set.

#[path = "../../tests/container/mod.rs"]
mod container;
#[path = "../../tests/lab/mod.rs"]
#[allow(unused_imports)]
mod lab;
#[path = "../../tests/support/mod.rs"]
mod support;

mod daemon;
mod filter;
mod memory;
mod net_start;
mod offer;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lab::Lab;
use support::bus::PrivateBus;
use support::{network_xml, wait_until, write_config, write_node, TestNet, BIN, HOOK_BIN};

/// The daemon's name on the bus.
pub fn dbus_name() -> &'static str {
    virtmasq::agent::dbus::NAME
}

/// The parts of the run, in order (`PEERS_PARTS` picks some).
const PARTS: [&str; 6] = ["hook", "filter", "daemon", "offer", "netstart", "memory"];

/// The daemon's log level (`PEERS_LOG`, default warn): its log goes to the terminal.
pub fn daemon_log() -> String {
    std::env::var("PEERS_LOG").unwrap_or_else(|_| "warn".into())
}

/// A figure of the table.
#[derive(Clone, Copy)]
pub enum Value {
    /// A time.
    Time(Duration),
    /// A memory size in kB.
    Kb(u64),
    /// A number of events.
    Count(u64),
}

impl From<Duration> for Value {
    fn from(d: Duration) -> Self {
        Value::Time(d)
    }
}

impl Value {
    fn number(self) -> f64 {
        match self {
            Value::Time(d) => d.as_secs_f64(),
            Value::Kb(kb) => kb as f64,
            Value::Count(n) => n as f64,
        }
    }

    fn text(self) -> String {
        match self {
            Value::Time(d) => ms(d),
            Value::Kb(kb) => format!("{:.1} MB", kb as f64 / 1024.0),
            Value::Count(n) => n.to_string(),
        }
    }
}

/// One line of the table.
pub struct Row {
    /// What is measured.
    pub what: String,
    /// virtmasq's figure.
    pub ours: Value,
    /// The peer or floor it is compared with, and its figure, if any.
    pub peer: Option<(String, Value)>,
    /// The issue's target, as text.
    pub target: &'static str,
}

/// How much to run.
#[derive(Clone, Copy)]
pub struct Scale {
    /// MACs in the filter.
    pub macs: usize,
    /// Runs of each measurement (the median is printed).
    pub rounds: usize,
    /// Hook calls per scenario.
    pub hook_runs: usize,
    /// A full run (`--bench`): a missing peer is an error, not a gap in the table.
    pub full: bool,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The `q` quantile of `v`.
fn quantile(v: &[Duration], q: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

/// Milliseconds, for the table.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// Runs `cmd` to completion and returns its wall time; panics when it fails.
pub fn timed(cmd: &mut Command) -> (Duration, String) {
    let start = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

const HOOK_NET: TestNet = TestNet {
    name: "lat",
    bridge: "vqpl0",
    ip: "10.94.0.1/24",
    dhcp: Some(r#"<virtmasq:range start="10.94.0.100" end="10.94.0.150"/>"#),
};

/// One hook call (or `/bin/true`), spawn to exit.
fn hook_call(bin: &str, cfg: &Path, stdin: &[u8], bus: &str) -> Duration {
    let start = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.env("DBUS_SYSTEM_BUS_ADDRESS", bus);
    if bin != "/bin/true" {
        cmd.args(["--config", cfg.to_str().unwrap(), "--log-level", "warn"])
            .args(["hook", "network", HOOK_NET.name, "started", "begin", "-"]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the hook");
    // /bin/true reads nothing: a broken pipe is expected there.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let status = child.wait().unwrap();
    let took = start.elapsed();
    assert!(status.success(), "{bin} failed: {status}");
    took
}

fn hook_runs(bin: &str, cfg: &Path, stdin: &[u8], bus: &str, runs: usize) -> Vec<Duration> {
    hook_call(bin, cfg, stdin, bus); // the page cache, as on a host where it ran before
    (0..runs).map(|_| hook_call(bin, cfg, stdin, bus)).collect()
}

/// The hook against `/bin/true`, without and with the daemon running.
fn hook(scale: Scale) -> Vec<Row> {
    let lab = Lab::new("peers_hook");
    lab.add_bridge(HOOK_NET.bridge, HOOK_NET.ip);
    let uri = write_node(lab.dir(), "node.xml", &[HOOK_NET]);
    let cfg = write_config(lab.dir(), &uri, "");
    let stdin = format!("<hookData>{}</hookData>", network_xml(&HOOK_NET)).into_bytes();
    let bus = PrivateBus::start();
    let addr = bus.address.as_str();
    let floor = hook_runs("/bin/true", &cfg, &stdin, addr, scale.hook_runs);
    let alone = hook_runs(HOOK_BIN, &cfg, &stdin, addr, scale.hook_runs);
    let mut cmd = lab.host_command(BIN);
    cmd.args([
        "--config",
        cfg.to_str().unwrap(),
        "--log-level",
        &daemon_log(),
        "daemon",
    ])
    .env("DBUS_SYSTEM_BUS_ADDRESS", addr);
    let daemon = lab.spawn(&mut cmd);
    let up = wait_until(Duration::from_secs(10), || bus.has_owner(dbus_name()));
    assert!(up, "the daemon (pid {daemon}) did not take its bus name");
    let served = hook_runs(HOOK_BIN, &cfg, &stdin, addr, scale.hook_runs);
    lab.stop_process(daemon, Duration::from_secs(5));
    let true_p = |q| Some(("/bin/true".to_owned(), quantile(&floor, q).into()));
    vec![
        Row {
            what: "hook, no daemon, p50".into(),
            ours: quantile(&alone, 0.5).into(),
            peer: true_p(0.5),
            target: "",
        },
        Row {
            what: "hook, no daemon, p99".into(),
            ours: quantile(&alone, 0.99).into(),
            peer: true_p(0.99),
            target: "p99 < 5 ms",
        },
        Row {
            what: "hook, daemon running, p50".into(),
            ours: quantile(&served, 0.5).into(),
            peer: true_p(0.5),
            target: "",
        },
        Row {
            what: "hook, daemon running, p99".into(),
            ours: quantile(&served, 0.99).into(),
            peer: true_p(0.99),
            target: "p99 < 5 ms",
        },
    ]
}

fn print_table(rows: &[Row]) {
    println!(
        "\n{:<50} {:>11}  {:<34} {:>11} {:>8}  target",
        "what", "virtmasq", "peer / floor", "", "ratio"
    );
    for r in rows {
        let (name, peer, ratio) = match &r.peer {
            Some((name, v)) if v.number() == 0.0 => (name.as_str(), v.text(), "-".into()),
            Some((name, v)) => (
                name.as_str(),
                v.text(),
                format!("{:.2}x", r.ours.number() / v.number()),
            ),
            None => ("", String::new(), String::new()),
        };
        println!(
            "{:<50} {:>11}  {:<34} {:>11} {:>8}  {}",
            r.what,
            r.ours.text(),
            name,
            peer,
            ratio,
            r.target
        );
    }
    println!("ratio: virtmasq's figure over the peer's (below 1: virtmasq is faster)");
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale = Scale {
        macs: env_usize("PEERS_MACS", if full { 50_000 } else { 1_000 }),
        rounds: env_usize("PEERS_ROUNDS", if full { 5 } else { 1 }),
        hook_runs: env_usize("PEERS_HOOK_RUNS", if full { 200 } else { 10 }),
        full,
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "virtmasq against its peers: {} MACs, medians of {} run(s), {} hook calls; load {}",
        scale.macs,
        scale.rounds,
        scale.hook_runs,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let parts = std::env::var("PEERS_PARTS").unwrap_or_else(|_| PARTS.join(","));
    let mut rows = Vec::new();
    for part in parts.split(',') {
        rows.extend(match part {
            "hook" => hook(scale),
            "filter" => filter::rows(scale),
            "daemon" => daemon::rows(scale),
            "offer" => offer::rows(scale),
            // A booted Debian with libvirtd and the package: only in a full run or when named.
            "netstart" if !scale.full && std::env::var("PEERS_PARTS").is_err() => {
                println!("netstart: skipped in a smoke run (PEERS_PARTS=netstart runs it)");
                Vec::new()
            }
            "netstart" => net_start::rows(scale),
            "memory" => memory::rows(scale),
            other => panic!(
                "PEERS_PARTS: no part {other:?} (parts: {})",
                PARTS.join(",")
            ),
        });
    }
    print_table(&rows);
}
