//! A fleet for the etcd source's end-to-end tests: an etcd cluster (Debian's `etcd`, members
//! on distinct ports) in a namespace of its own, and agents, each a lab host namespace with its
//! own bridge, real dnsmasq (started by its daemon), clients, private bus and directories,
//! reaching the cluster through a veth onto the cluster's bridge. Nothing leaves the
//! namespaces; every process is killed with its lab.
//!
//! Use it from an integration test with `mod lab; mod support; mod fleet;`.
#![allow(dead_code)]

pub mod tls;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::lab::{exec, Client, Lab, ProbeOptions};
use crate::support::bus::PrivateBus;
use crate::support::notify::StatusLines;
use crate::support::{live_pid, wait_until, write_config, write_node, TestNet, BIN};

/// The cluster's bridge address; member `i` listens on ports `2379 + 100 i` (clients) and
/// `2380 + 100 i` (peers).
pub const ETCD_ADDR: &str = "10.89.0.1";
const ETCD_BRIDGE: &str = "vqetcd0";

/// One etcd member.
pub struct Member {
    /// `--name`.
    pub name: String,
    /// Its client URL.
    pub client_url: String,
    peer_url: String,
    data: PathBuf,
    pid: Option<u32>,
}

/// An etcd cluster in a namespace of its own.
pub struct Cluster {
    /// The namespace (and scratch directory) the members run in.
    pub lab: Lab,
    /// The members, running or not.
    pub members: Vec<Member>,
    /// `http` or `https`.
    scheme: &'static str,
    /// Flags every member gets (TLS, ...).
    pub extra: Vec<String>,
    /// etcdctl flags (TLS, user), before the command.
    pub ctl_flags: Vec<String>,
    attached: Cell<usize>,
}

impl Cluster {
    /// A cluster of `n` members, not started, with `extra` flags for each (TLS files) and
    /// `scheme` for its client URLs.
    pub fn new(test: &str, n: usize, scheme: &'static str, extra: Vec<String>) -> Self {
        let lab = Lab::new(test);
        lab.add_bridge(ETCD_BRIDGE, &format!("{ETCD_ADDR}/24"));
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_url: format!("{scheme}://{ETCD_ADDR}:{}", 2379 + 100 * i),
                peer_url: format!("http://{ETCD_ADDR}:{}", 2380 + 100 * i),
                data: lab.dir().join(format!("etcd-m{i}")),
                pid: None,
            })
            .collect();
        Self {
            lab,
            members,
            scheme,
            extra,
            ctl_flags: Vec::new(),
            attached: Cell::new(0),
        }
    }

    /// Every member's client URL, as `[filter.source] endpoints` takes them (TOML array body).
    pub fn endpoints_toml(&self) -> String {
        let urls: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("\"{}\"", m.client_url))
            .collect();
        urls.join(", ")
    }

    /// Starts every member that is not running (same data directories as before) and waits
    /// until the cluster answers a linearizable read.
    pub fn start_all(&mut self) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect();
        let initial = initial.join(",");
        for i in 0..self.members.len() {
            if self.members[i].pid.is_none() {
                let pid = self.spawn_member(i, &initial);
                self.members[i].pid = Some(pid);
            }
        }
        let ok = wait_until(Duration::from_secs(30), || {
            self.try_ctl(&["get", "/health-probe"]).is_ok()
        });
        let logs: Vec<String> = (self.members.iter().filter_map(|m| m.pid))
            .map(|p| self.lab.process_log(p))
            .collect();
        assert!(ok, "the etcd cluster did not start:\n{}", logs.join("\n"));
    }

    fn spawn_member(&self, i: usize, initial: &str) -> u32 {
        let m = &self.members[i];
        let mut args: Vec<String> = [
            "etcd".into(),
            format!("--name={}", m.name),
            format!("--data-dir={}", m.data.display()),
            format!("--listen-client-urls={}", m.client_url),
            format!("--advertise-client-urls={}", m.client_url),
            format!("--listen-peer-urls={}", m.peer_url),
            format!("--initial-advertise-peer-urls={}", m.peer_url),
            format!("--initial-cluster={initial}"),
            "--initial-cluster-state=new".into(),
            "--initial-cluster-token=vq-fleet".into(),
            "--log-level=error".into(),
        ]
        .into();
        args.extend(self.extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.lab.spawn_host(&args)
    }

    /// Kills member `i` at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, i: usize) {
        let pid = self.members[i].pid.take().expect("the member runs");
        self.lab.signal_process(pid, "KILL");
        assert!(self.lab.stop_process(pid, Duration::from_secs(5)).is_some());
    }

    /// Kills every running member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].pid.is_some() {
                self.kill(i);
            }
        }
    }

    /// etcdctl against the running members; stdout or stderr.
    pub fn try_ctl(&self, args: &[&str]) -> Result<String, String> {
        let live: Vec<&str> = (self.members.iter())
            .filter(|m| m.pid.is_some())
            .map(|m| m.client_url.as_str())
            .collect();
        let mut cmd = self.lab.host_command("etcdctl");
        cmd.arg(format!("--endpoints={}", live.join(",")))
            .args(["--command-timeout=3s", "--dial-timeout=2s"])
            .args(&self.ctl_flags)
            .args(args)
            .env("ETCDCTL_API", "3");
        let out = exec::run_bounded(&mut cmd, Duration::from_secs(10))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Waits until the running members have a leader again (a put succeeds), as after a
    /// member's loss: until then etcd answers no write, whoever sends it.
    pub fn wait_writable(&self, within: Duration) -> Duration {
        let start = std::time::Instant::now();
        while self
            .try_ctl(&["put", "/virtmasq-test/quorum-probe", "x"])
            .is_err()
        {
            assert!(
                start.elapsed() < within,
                "the cluster had no leader within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        start.elapsed()
    }

    /// etcdctl, which must succeed.
    pub fn ctl(&self, args: &[&str]) -> String {
        self.try_ctl(args)
            .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"))
    }

    /// Connects `lab`'s host namespace to the cluster's bridge: `vqup` with an address of
    /// the cluster's subnet. Returns the link's name in `lab`.
    pub fn attach(&self, lab: &Lab) -> &'static str {
        let k = self.attached.get() + 1;
        self.attached.set(k);
        let near = format!("vqe{k}");
        let (etcd_ns, ns) = (self.lab.host_ns(), lab.host_ns());
        exec::ip(&[
            "-n", etcd_ns, "link", "add", &near, "type", "veth", "peer", "name", "vqup", "netns",
            ns,
        ]);
        exec::ip(&[
            "-n",
            etcd_ns,
            "link",
            "set",
            &near,
            "master",
            ETCD_BRIDGE,
            "up",
        ]);
        let addr = format!("10.89.0.{}/24", 10 + k);
        exec::ip(&["-n", ns, "addr", "add", &addr, "dev", "vqup"]);
        exec::ip(&["-n", ns, "link", "set", "vqup", "up"]);
        "vqup"
    }
}

/// One agent: a lab host with bridge `vqa0` (10.90.0.1/24), its daemon, bus and directories.
pub struct Agent {
    /// The agent's host namespace and scratch directory.
    pub lab: Lab,
    /// Its configuration file.
    pub cfg: PathBuf,
    /// Its private system bus (`virtmasq status` asks the daemon over it).
    pub bus: PrivateBus,
    pid: Option<u32>,
    log: PathBuf,
    /// Its STATUS= lines, across restarts.
    status: StatusLines,
}

impl Agent {
    /// An agent attached to `cluster`, with `source` appended to its `[filter.source]`
    /// (`kind`, `endpoints` and `prefix` are set here). Not started.
    pub fn new(test: &str, cluster: &Cluster, prefix: &str, source: &str) -> Self {
        let lab = Lab::new(test);
        lab.add_bridge("vqa0", "10.90.0.1/24");
        cluster.attach(&lab);
        let uri = write_node(
            lab.dir(),
            "node.xml",
            &[TestNet {
                name: "lab",
                bridge: "vqa0",
                ip: "10.90.0.1/24",
                dhcp: Some(r#"<virtmasq:range start="10.90.0.100" end="10.90.0.150"/>"#),
            }],
        );
        let extra = format!(
            "[filter]\nenabled = true\nhostsdir = \"{}/hostsdir\"\n[filter.source]\n\
             kind = \"etcd\"\nendpoints = [{}]\nprefix = \"{prefix}\"\n{source}",
            lab.dir().display(),
            cluster.endpoints_toml()
        );
        let cfg = write_config(lab.dir(), &uri, &extra);
        let log = lab.dir().join("daemon.log");
        Self {
            lab,
            cfg,
            bus: PrivateBus::start(),
            pid: None,
            log,
            status: StatusLines::default(),
        }
    }

    /// Starts the daemon with a notify socket and its own bus.
    pub fn start(&mut self) {
        let sock_path = self.lab.dir().join("notify.sock");
        self.status.listen(&sock_path);
        let file = std::fs::File::create(&self.log).unwrap();
        let mut cmd = self.lab.host_command(BIN);
        cmd.args(["--config", self.cfg.to_str().unwrap(), "daemon"])
            .env("NOTIFY_SOCKET", &sock_path)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus.address)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        self.pid = Some(self.lab.spawn(&mut cmd));
    }

    /// Stops the daemon (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self) {
        let pid = self.pid.take().expect("the daemon runs");
        self.lab.stop_process(pid, Duration::from_secs(10));
    }

    /// Replaces `old` with `new` in the configuration (for the next start).
    pub fn edit_config(&self, old: &str, new: &str) {
        let text = std::fs::read_to_string(&self.cfg).unwrap();
        assert!(
            text.contains(old),
            "{old:?} not in the configuration:\n{text}"
        );
        std::fs::write(&self.cfg, text.replace(old, new)).unwrap();
    }

    /// Waits until the daemon's dnsmasq runs.
    pub fn wait_dnsmasq(&self) {
        let pid_file = self.lab.dir().join("run/lab/pid/dnsmasq.pid");
        let ok = wait_until(Duration::from_secs(15), || live_pid(&pid_file).is_some());
        assert!(ok, "dnsmasq did not start\n{}", self.log());
    }

    /// Waits for a STATUS= line containing `want`, after those already looked at.
    pub fn status_with(&self, want: &str, within: Duration) -> String {
        self.status.wait(want, within, || self.log())
    }

    /// Runs this host's `virtmasq` with its configuration and bus; (success, stdout+stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = self.lab.host_command(BIN);
        cmd.args(["--config", self.cfg.to_str().unwrap()])
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus.address);
        let out = exec::run_bounded(&mut cmd, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("virtmasq {args:?}: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// GET `url` from the agent's namespace (Debian's python): the body, or None if no
    /// 200 answer.
    pub fn fetch(&self, url: &str) -> Option<String> {
        let code = "import sys, urllib.request\n\
            r = urllib.request.urlopen(sys.argv[1], timeout=3); print(r.read().decode(), end='')\n";
        let mut cmd = self.lab.host_command("/usr/bin/python3");
        cmd.args(["-c", code, url]);
        let out = exec::run_bounded(&mut cmd, Duration::from_secs(10)).ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The hostsdir file of `mac`.
    pub fn file_of(&self, mac: &str) -> PathBuf {
        self.lab.dir().join("hostsdir").join(mac.replace(':', "-"))
    }

    /// Whether `mac`'s file says deny (Some(true)), allow (Some(false)), or is absent.
    pub fn denies(&self, mac: &str) -> Option<bool> {
        std::fs::read_to_string(self.file_of(mac))
            .ok()
            .map(|s| s.contains(",ignore"))
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client on the agent's bridge.
    pub fn client(&self, mac: &str) -> Client {
        self.lab.add_client("vqa0", mac)
    }

    /// The daemon's directory for outside tools.
    pub fn dir(&self) -> &Path {
        self.lab.dir()
    }
}

/// Waits until every agent's file for `mac` says `deny`; the time it took.
pub fn wait_files(agents: &[Agent], mac: &str, deny: bool, within: Duration) -> Duration {
    let t = Instant::now();
    for a in agents {
        let left = within.saturating_sub(t.elapsed());
        let ok = wait_until(left, || a.denies(mac) == Some(deny));
        assert!(
            ok,
            "{mac}'s file in {} never said deny={deny}\n{}",
            a.dir().display(),
            a.log()
        );
    }
    t.elapsed()
}

/// Probes every client at once (one DHCPDISCOVER each); whether each got an offer.
pub fn offers(clients: &[&Client]) -> Vec<bool> {
    let quick = ProbeOptions {
        timeout: Duration::from_millis(1500),
        ..Default::default()
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (clients.iter())
            .map(|c| s.spawn(|| c.probe(&quick).is_some()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}
