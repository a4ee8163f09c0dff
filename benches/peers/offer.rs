//! Network start to the first DHCP offer: a private network started the way libvirt starts
//! it (its state changes, then the hook runs `started begin`) with the daemon running,
//! against a plain dnsmasq started on a bridge that is already up. A long-lived prober in a
//! client namespace sends a DISCOVER every 5 ms from the moment the start begins.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{median, Row, Scale};
use crate::lab::{Lab, Prober};
use crate::support::bus::PrivateBus;
use crate::support::{live_pid, network_xml, wait_until, write_config, write_node, TestNet};
use crate::support::{BIN, HOOK_BIN};

const PLAIN: (&str, &str) = ("vqpd0", "10.96.0.1/24");
const NET: TestNet = TestNet {
    name: "offer",
    bridge: "vqpo0",
    ip: "10.95.0.1/24",
    dhcp: Some(r#"<virtmasq:range start="10.95.0.100" end="10.95.0.150"/>"#),
};
const PER_TRY: Duration = Duration::from_millis(5);
const LIMIT: Duration = Duration::from_secs(10);

/// A tmpfs over the daemon's run directory, as /run is on a host (fsyncs there cost nothing);
/// unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot mount a tmpfs on {}", dir.display());
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A plain dnsmasq on `PLAIN`, from spawn to the first offer.
fn plain(lab: &Lab, prober: &mut Prober, i: usize) -> Duration {
    let dir = lab.dir();
    let args = [
        "/usr/sbin/dnsmasq".to_owned(),
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-ping".into(),
        "--port=0".into(),
        format!("--interface={}", PLAIN.0),
        "--bind-dynamic".into(),
        "--except-interface=lo".into(),
        "--dhcp-range=10.96.0.100,10.96.0.150".into(),
        format!("--dhcp-leasefile={}/plain-{i}.leases", dir.display()),
        format!("--pid-file={}/plain.pid", dir.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = Instant::now();
    let pid = lab.spawn_host(&args);
    let offer = prober.until_offer("52:54:00:96:00:01", PER_TRY, LIMIT);
    let took = start.elapsed();
    assert!(
        offer.is_some(),
        "plain dnsmasq never offered: {}",
        lab.process_log(pid)
    );
    lab.stop_process(pid, Duration::from_secs(5));
    took
}

/// The hook as libvirtd runs it for `op` on the private network.
fn hook(cfg: &Path, bus: &PrivateBus, op: &str, subop: &str) {
    let stdin = format!("<hookData>{}</hookData>", network_xml(&NET));
    let mut child = Command::new(HOOK_BIN)
        .args(["--config", cfg.to_str().unwrap(), "--log-level", "warn"])
        .args(["hook", "network", NET.name, op, subop, "-"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the hook");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "the hook failed");
}

/// One start of the private network, from libvirt's state change to the first offer; then
/// its stop, waited for.
fn private(lab: &Lab, cfg: &Path, bus: &PrivateBus, prober: &mut Prober) -> Duration {
    let pid_file = lab.dir().join(format!("run/{}/pid/dnsmasq.pid", NET.name));
    let start = Instant::now();
    write_node(lab.dir(), "node.xml", &[NET]);
    hook(cfg, bus, "started", "begin");
    let offer = prober.until_offer("52:54:00:95:00:01", PER_TRY, LIMIT);
    let took = start.elapsed();
    assert!(offer.is_some(), "the private network never offered");
    write_node(lab.dir(), "node.xml", &[]);
    hook(cfg, bus, "stopped", "end");
    let stopped = wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_none());
    assert!(stopped, "the private dnsmasq outlived its network");
    took
}

/// The start-to-offer rows of the table.
pub fn rows(scale: Scale) -> Vec<Row> {
    let lab = Lab::new("peers_offer");
    lab.add_bridge(PLAIN.0, PLAIN.1);
    lab.add_bridge(NET.bridge, NET.ip);
    let mut plain_prober = Prober::start(lab.add_client(PLAIN.0, "52:54:00:96:00:01").ns());
    let mut net_prober = Prober::start(lab.add_client(NET.bridge, "52:54:00:95:00:01").ns());
    let bus = PrivateBus::start();
    let uri = write_node(lab.dir(), "node.xml", &[]);
    let cfg = write_config(lab.dir(), &uri, "");
    let _run = Tmpfs::mount(&lab.dir().join("run"));
    let mut daemon = lab.host_command(BIN);
    daemon
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--log-level",
            &super::daemon_log(),
            "daemon",
        ])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address);
    let pid = lab.spawn(&mut daemon);
    let up = wait_until(Duration::from_secs(10), || {
        bus.has_owner(super::dbus_name())
    });
    assert!(up, "the daemon (pid {pid}) did not take its bus name");
    let mut ours = Vec::new();
    let mut peer = Vec::new();
    for i in 0..scale.rounds {
        peer.push(plain(&lab, &mut plain_prober, i));
        ours.push(private(&lab, &cfg, &bus, &mut net_prober));
    }
    lab.stop_process(pid, Duration::from_secs(5));
    vec![Row {
        what: "private network start -> first offer".into(),
        ours: median(ours).into(),
        peer: Some((
            "plain dnsmasq start -> first offer".into(),
            median(peer).into(),
        )),
        target: "",
    }]
}
