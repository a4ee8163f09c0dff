//! The PXE filter's policy from a real etcd (Debian's `etcd-server`), followed by the daemon
//! and served by its real dnsmasq to real DHCP clients, in a lab namespace (etcd on the
//! namespace's own loopback). etcd comes and goes; the policy must stay and catch up.

mod lab;
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lab::{Client, Lab, ProbeOptions};
use support::notify::StatusLines;
use support::*;

const PREFIX: &str = "/vq/filter";
/// The daemon's endpoint; etcd is sometimes started without it, so that etcdctl can change
/// things (on [`ADMIN`]) while the daemon cannot see them yet.
const DAEMON_URL: &str = "http://127.0.0.1:2379";
const ADMIN: &str = "http://127.0.0.1:2381";
const MAC_A: &str = "52:54:00:88:00:0a";
const MAC_B: &str = "52:54:00:88:00:0b";
const MAC_C: &str = "52:54:00:88:00:0c";

/// One etcd member in the lab's host namespace, with its data directory in the lab's.
struct Etcd<'a> {
    lab: &'a Lab,
    data: PathBuf,
    pid: Option<u32>,
}

impl<'a> Etcd<'a> {
    fn new(lab: &'a Lab) -> Self {
        let data = lab.dir().join("etcd");
        Self {
            lab,
            data,
            pid: None,
        }
    }

    /// Starts the member listening on `urls` for clients; waits until it answers.
    fn start(&mut self, urls: &[&str]) {
        let urls = urls.join(",");
        let data = self.data.to_str().unwrap();
        let pid = self.lab.spawn_host(&[
            "etcd",
            "--name=m0",
            &format!("--data-dir={data}"),
            &format!("--listen-client-urls={urls}"),
            &format!("--advertise-client-urls={urls}"),
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=m0=http://127.0.0.1:2380",
            "--log-level=error",
        ]);
        self.pid = Some(pid);
        let healthy = wait_until(Duration::from_secs(20), || {
            let out = self
                .lab
                .host_command("etcdctl")
                .args(["--endpoints", ADMIN, "endpoint", "health"])
                .env("ETCDCTL_API", "3")
                .output()
                .unwrap();
            out.status.success()
        });
        assert!(healthy, "etcd did not start: {}", self.lab.process_log(pid));
    }

    /// Kills the member at once (SIGKILL), as a crash would.
    fn kill(&mut self) {
        let pid = self.pid.take().expect("etcd runs");
        self.lab.signal_process(pid, "KILL");
        assert!(self.lab.stop_process(pid, Duration::from_secs(5)).is_some());
    }

    /// Runs `etcdctl` on the admin endpoint; its stdout.
    fn ctl(&self, args: &[&str]) -> String {
        let out = self
            .lab
            .host_command("etcdctl")
            .args(["--endpoints", ADMIN])
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    fn put(&self, mac: &str, value: &str) {
        self.ctl(&["put", &format!("{PREFIX}/macs/{mac}"), value]);
    }

    /// The current revision.
    fn revision(&self) -> i64 {
        let json = self.ctl(&["get", "--write-out=json", "/none"]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["header"]["revision"].as_i64().unwrap()
    }
}

/// The daemon: started with a notify socket (its STATUS= lines) and a log file.
struct Daemon {
    pid: u32,
    log: PathBuf,
    /// Its STATUS= lines.
    status: StatusLines,
}

impl Daemon {
    fn start(lab: &Lab, cfg: &Path, n: usize) -> Self {
        let sock_path = lab.dir().join(format!("notify-{n}.sock"));
        let status = StatusLines::default();
        status.listen(&sock_path);
        let log = lab.dir().join(format!("daemon-{n}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = lab.host_command(BIN);
        cmd.args([
            "--config",
            cfg.to_str().unwrap(),
            "--log-level",
            "info,virtmasq::filter::etcd=debug",
            "daemon",
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
        let pid = lab.spawn(&mut cmd);
        Self { pid, log, status }
    }

    /// Waits for a STATUS= line containing `want`, after those already looked at; the line.
    fn status_with(&self, want: &str, within: Duration) -> String {
        self.status.wait(want, within, || self.log())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn file_of(lab: &Lab, mac: &str) -> PathBuf {
    lab.dir().join("hostsdir").join(mac.replace(':', "-"))
}

/// Waits until `mac`'s hostsdir file says deny (true) or allow (false); how long it took.
fn wait_file(lab: &Lab, daemon: &Daemon, mac: &str, deny: bool, within: Duration) -> Duration {
    let t = Instant::now();
    let ok = wait_until(within, || {
        std::fs::read_to_string(file_of(lab, mac)).is_ok_and(|s| s.contains(",ignore") == deny)
    });
    assert!(ok, "{mac}'s file never said deny={deny}\n{}", daemon.log());
    t.elapsed()
}

fn offered(client: &Client) -> bool {
    let quick = ProbeOptions {
        timeout: Duration::from_millis(1500),
        ..Default::default()
    };
    client.probe(&quick).is_some()
}

#[test]
fn policy_follows_etcd_and_stays_when_etcd_is_gone() {
    let lab = Lab::new("filter_etcd");
    lab.add_bridge("vqe0", "10.88.0.1/24");
    let uri = write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "lab",
            bridge: "vqe0",
            ip: "10.88.0.1/24",
            dhcp: Some(r#"<virtmasq:range start="10.88.0.100" end="10.88.0.150"/>"#),
        }],
    );
    let extra = format!(
        "[filter]\nenabled = true\nhostsdir = \"{}/hostsdir\"\n[filter.source]\nkind = \"etcd\"\n\
         endpoints = [\"{DAEMON_URL}\"]\nprefix = \"{PREFIX}\"\n",
        lab.dir().display()
    );
    let cfg = write_config(lab.dir(), &uri, &extra);
    let mut etcd = Etcd::new(&lab);
    etcd.start(&[DAEMON_URL, ADMIN]);
    // Keys present before the daemon starts, one of them not of the layout.
    etcd.put(MAC_A, "deny");
    etcd.ctl(&["put", &format!("{PREFIX}/junk"), "x"]);

    let mut daemon = Daemon::start(&lab, &cfg, 0);
    wait_file(&lab, &daemon, MAC_A, true, Duration::from_secs(15));
    daemon.status_with("etcd revision", Duration::from_secs(10));
    let pid_file = lab.dir().join("run/lab/pid/dnsmasq.pid");
    assert!(wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_some()));
    let (a, b) = (lab.add_client("vqe0", MAC_A), lab.add_client("vqe0", MAC_B));
    assert!(!offered(&a), "a MAC denied in etcd got an offer");
    assert!(offered(&b), "unknown MACs are allowed");

    // A key written with etcdctl reaches the hostsdir and dnsmasq's answers.
    let latency = {
        let t = Instant::now();
        etcd.put(MAC_B, "deny");
        wait_file(&lab, &daemon, MAC_B, true, Duration::from_secs(5));
        t.elapsed()
    };
    eprintln!("etcdctl put to hostsdir file: {latency:?} (etcdctl start-up included)");
    assert!(!offered(&b), "a MAC denied through etcd got an offer");

    // etcd killed: the policy stays, the status says stale.
    etcd.kill();
    daemon.status_with("source stale since", Duration::from_secs(10));
    assert!(
        !offered(&a) && !offered(&b),
        "the policy changed without etcd"
    );

    // Changes made while the daemon cannot reach etcd arrive when it can: resumed watch.
    etcd.start(&[ADMIN]);
    etcd.put(MAC_C, "deny");
    etcd.kill();
    etcd.start(&[DAEMON_URL, ADMIN]);
    wait_file(&lab, &daemon, MAC_C, true, Duration::from_secs(15));
    daemon.status_with("etcd revision", Duration::from_secs(10));
    assert!(!daemon.log().contains("compacted"), "{}", daemon.log());

    // The same, with the history compacted meanwhile: a full read instead.
    etcd.kill();
    etcd.start(&[ADMIN]);
    etcd.put(MAC_B, "allow");
    // Compacted up to the newest revision, the one after the daemon's is gone too.
    etcd.ctl(&["put", &format!("{PREFIX}/junk"), "y"]);
    etcd.ctl(&["compact", &etcd.revision().to_string()]);
    etcd.kill();
    etcd.start(&[DAEMON_URL, ADMIN]);
    wait_file(&lab, &daemon, MAC_B, false, Duration::from_secs(15));
    assert!(daemon.log().contains("compacted"), "{}", daemon.log());
    assert!(offered(&b), "a MAC allowed through etcd got no offer");

    // A daemon restarted without etcd serves the last policy and says it is stale.
    etcd.kill();
    lab.stop_process(daemon.pid, Duration::from_secs(10));
    daemon = Daemon::start(&lab, &cfg, 1);
    daemon.status_with("source stale since", Duration::from_secs(15));
    assert!(wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_some()));
    assert!(!offered(&a), "a restarted daemon without etcd lost a deny");
    assert!(offered(&b), "a restarted daemon without etcd lost an allow");
    wait_file(&lab, &daemon, MAC_C, true, Duration::from_secs(1));

    // etcd back: in contact again, and a change made then arrives.
    etcd.start(&[DAEMON_URL, ADMIN]);
    daemon.status_with("etcd revision", Duration::from_secs(15));
    etcd.put(MAC_A, "allow");
    wait_file(&lab, &daemon, MAC_A, false, Duration::from_secs(5));
    assert!(offered(&a), "a MAC allowed through etcd got no offer");

    // `virtmasq filter` writes to etcd (one transaction), and the daemon follows.
    let cfg_arg = cfg.to_str().unwrap();
    let out = lab.host_run(&[BIN, "--config", cfg_arg, "filter", "deny", MAC_A, MAC_C]);
    assert!(out.contains("written to etcd at revision"), "{out}");
    let got = etcd.ctl(&[
        "get",
        &format!("{PREFIX}/macs/{MAC_A}"),
        "--print-value-only",
    ]);
    assert_eq!(got.trim(), "deny");
    wait_file(&lab, &daemon, MAC_A, true, Duration::from_secs(5));
    lab.host_run(&[BIN, "--config", cfg_arg, "filter", "forget", MAC_C]);
    let gone = etcd.ctl(&[
        "get",
        &format!("{PREFIX}/macs/{MAC_C}"),
        "--print-value-only",
    ]);
    assert_eq!(gone.trim(), "", "forget deletes the key");
    let refused = lab
        .host_command(BIN)
        .args(["--config", cfg_arg, "filter", "deny", MAC_B, MAC_B])
        .output()
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(65),
        "a duplicate MAC is bad data"
    );
}
