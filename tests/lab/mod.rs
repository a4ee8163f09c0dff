//! Throwaway network labs for integration tests.
//!
//! A [`Lab`] is a "host" network namespace (where a test runs dnsmasq or the
//! agent) plus any number of client namespaces, each attached to a bridge in
//! the host through a veth pair, from which real DHCP clients run: a scapy
//! probe ([`Client::probe`], one DISCOVER/OFFER) and busybox udhcpc
//! ([`Client::lease`], a full lease). No packet ever leaves these namespaces.
//!
//! Everything is torn down when the `Lab` is dropped, panics included. The
//! lab needs root; it panics (so tests fail, never silently skip) when it
//! cannot build its namespaces.
//!
//! Use it from an integration test with `mod lab;`.
#![allow(dead_code)]

mod client;
pub mod exec;
mod prober;

#[allow(unused_imports)] // each test uses only part of the lab
pub use client::{Client, Lease, Lease6, Offer, ProbeOptions, RouterAdvert};
#[allow(unused_imports)]
pub use prober::Prober;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Prefix of every namespace the lab creates: `vqlab-<pid>-<hash>-<n>`.
pub const NS_PREFIX: &str = "vqlab-";

/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/run/netns";

static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A process started in the host namespace and owned by the lab.
struct Owned {
    child: Child,
    log: Option<PathBuf>,
}

/// One test's set of namespaces; see the module documentation.
pub struct Lab {
    host: String,
    clients: Mutex<Vec<String>>,
    next_client: AtomicUsize,
    children: Mutex<Vec<Owned>>,
    udhcpc_script: PathBuf,
    dir: tempfile::TempDir,
}

/// 16-bit FNV-1a of the test name, to tell labs apart in `ip netns list`.
fn short_hash(s: &str) -> u16 {
    let h = s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    ((h >> 16) ^ (h & 0xffff)) as u16
}

/// The pid that created a lab namespace, parsed from its name.
fn owner_pid(ns: &str) -> Option<u32> {
    ns.strip_prefix(NS_PREFIX)?.split('-').next()?.parse().ok()
}

/// Removes namespaces left behind by earlier lab runs that crashed or were
/// killed: those named with [`NS_PREFIX`] whose creating process is gone.
/// Processes still inside them are killed first. Returns how many it removed.
pub fn sweep_stale() -> usize {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return 0;
    };
    let me = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
            exec::destroy_namespace(&name);
            removed += 1;
        }
    }
    sweep_stale_dirs(me);
    removed
}

/// Removes the scratch directories (`$TMPDIR/vqlab-<pid>-...`) of dead labs.
fn sweep_stale_dirs(me: u32) {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dead = owner_pid(&name)
            .is_some_and(|pid| pid != me && !Path::new(&format!("/proc/{pid}")).exists());
        if dead && entry.file_type().is_ok_and(|t| t.is_dir()) {
            // Best effort: another process may be sweeping the same directory.
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

impl Lab {
    /// Creates a unique "host" namespace (loopback up) for the test called
    /// `test_name`, after sweeping namespaces left by crashed runs.
    ///
    /// Names are `vqlab-<pid>-<hash of test name>-<counter>`, unique per
    /// process and per lab. Panics with a clear message if not root or if
    /// `ip netns` fails.
    pub fn new(test_name: &str) -> Lab {
        match exec::effective_uid() {
            Some(0) => {}
            uid => panic!(
                "lab: test `{test_name}` needs root to create network namespaces \
                 (effective uid {uid:?}); run the integration tests as root"
            ),
        }
        sweep_stale();
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let host = format!(
            "{NS_PREFIX}{}-{:04x}-{n}",
            std::process::id(),
            short_hash(test_name)
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("{host}."))
            .tempdir()
            .unwrap_or_else(|e| panic!("lab: cannot create a temporary directory: {e}"));
        // dnsmasq drops privileges to nobody and still needs to read its files.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("lab: chmod {}: {e}", dir.path().display()));
        let udhcpc_script = dir.path().join("udhcpc-script.sh");
        fs::write(&udhcpc_script, include_str!("udhcpc_script.sh"))
            .and_then(|()| fs::set_permissions(&udhcpc_script, fs::Permissions::from_mode(0o755)))
            .unwrap_or_else(|e| panic!("lab: writing {}: {e}", udhcpc_script.display()));
        exec::ip(&["netns", "add", &host]);
        // From here on, a panic drops `lab`, which deletes the namespace.
        let lab = Lab {
            host,
            clients: Mutex::new(Vec::new()),
            next_client: AtomicUsize::new(0),
            children: Mutex::new(Vec::new()),
            udhcpc_script,
            dir,
        };
        exec::ip(&["-n", &lab.host, "link", "set", "lo", "up"]);
        lab
    }

    /// Name of the host namespace (for `ip netns exec`, `ip -n`).
    pub fn host_ns(&self) -> &str {
        &self.host
    }

    /// Names of the client namespaces created so far.
    pub fn client_namespaces(&self) -> Vec<String> {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A scratch directory removed with the lab, mode 0755 so that daemons
    /// running as `nobody` can read it (leases, pid and log files, configs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Polls `cond` until it holds or `timeout` elapses; true if it held.
    pub fn wait_for(cond: impl FnMut() -> bool, timeout: Duration) -> bool {
        exec::wait_for(cond, timeout)
    }

    /// Adds a bridge in the host namespace with IPv4 address `cidr` (e.g.
    /// "10.77.0.1/24"), brought up. STP is off, so ports forward at once.
    pub fn add_bridge(&self, name: &str, cidr: &str) {
        let h = self.host.as_str();
        let bridge = ["type", "bridge", "stp_state", "0"];
        exec::ip(&[&["-n", h, "link", "add", name][..], &bridge].concat());
        exec::ip(&["-n", h, "addr", "add", cidr, "dev", name]);
        exec::ip(&["-n", h, "link", "set", name, "up"]);
    }

    /// Adds IPv6 address `cidr` (e.g. "fd00:77::1/64") to interface `dev` in the host
    /// namespace, without duplicate address detection, and turns detection off for `dev`'s
    /// link-local address too: a tentative address cannot send router advertisements or
    /// DHCPv6 replies, and a bridge's detection would only start with its first port.
    pub fn add_ipv6(&self, dev: &str, cidr: &str) {
        let h = self.host.as_str();
        let key = format!("net.ipv6.conf.{dev}.accept_dad=0");
        self.host_run(&["sysctl", "-qw", &key]);
        exec::ip(&["-n", h, "addr", "add", cidr, "dev", dev, "nodad"]);
    }

    /// Deletes interface `name` in the host namespace.
    pub fn del_link(&self, name: &str) {
        exec::ip(&["-n", &self.host, "link", "del", name]);
    }

    /// A client namespace attached to `bridge` through a veth pair: the host
    /// end (`vqport<k>`) is enslaved to the bridge and up; the client end is
    /// "eth0" inside the client namespace, with MAC `mac`, up. Returns once
    /// the link has carrier and the bridge port forwards (at most 5 s).
    pub fn add_client(&self, bridge: &str, mac: &str) -> Client {
        let k = self.next_client.fetch_add(1, Ordering::Relaxed);
        let ns = format!("{}-c{k}", self.host);
        let port = format!("vqport{k}");
        let mac = mac.to_ascii_lowercase();
        exec::ip(&["netns", "add", &ns]);
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ns.clone());
        let h = self.host.as_str();
        exec::ip(&["-n", &ns, "link", "set", "lo", "up"]);
        exec::ip(&[
            "-n", h, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        exec::ip(&["-n", h, "link", "set", &port, "master", bridge, "up"]);
        exec::ip(&["-n", &ns, "link", "set", "eth0", "address", &mac, "up"]);
        let ready = exec::wait_for(
            || {
                let eth0 = exec::ip_quiet(&["-n", &ns, "-o", "link", "show", "eth0"]);
                let port = exec::ip_quiet(&["-n", h, "-d", "-o", "link", "show", &port]);
                matches!((eth0, port), (Ok(e), Ok(p))
                    if e.contains("LOWER_UP") && p.contains("state forwarding"))
            },
            Duration::from_secs(5),
        );
        assert!(ready, "lab: {ns} eth0 / {port} on {bridge} never came up");
        Client::new(ns, mac, self.dir.path(), self.udhcpc_script.clone())
    }

    /// A Command that runs `program` inside the host namespace (`ip netns exec`).
    pub fn host_command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host, program]);
        cmd
    }

    /// Runs `args` in the host namespace (killed after 20 s) and returns its
    /// stdout; panics with stderr on failure.
    pub fn host_run(&self, args: &[&str]) -> String {
        let (program, rest) = args
            .split_first()
            .expect("lab: host_run needs at least a program name");
        exec::run_checked(self.host_command(program).args(rest), exec::ADMIN_TIMEOUT)
    }

    /// True if something in the host namespace listens on UDP `port` (v4 or v6).
    pub fn host_udp_listening(&self, port: u16) -> bool {
        let tables = self.host_run(&["cat", "/proc/net/udp", "/proc/net/udp6"]);
        let wanted = format!("{port:04X}");
        tables.lines().any(|line| {
            line.split_whitespace()
                .nth(1)
                .and_then(|local| local.rsplit(':').next())
                .is_some_and(|p| p == wanted)
        })
    }

    /// Starts a DNS-only dnsmasq in the host namespace on `address` (bind-interfaces, no
    /// upstream, no /etc/hosts), with `extra` options; owned by the lab. Returns its pid.
    pub fn spawn_dns_server(&self, address: &str, extra: &[&str]) -> u32 {
        let pid = format!(
            "--pid-file={}",
            self.dir().join(format!("dns-{address}.pid")).display()
        );
        let listen = format!("--listen-address={address}");
        let mut args = vec![
            "dnsmasq",
            "--conf-file=/dev/null",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &listen,
            &pid,
        ];
        args.extend_from_slice(extra);
        self.spawn_host(&args)
    }

    /// Starts `args` in the host namespace as a process owned by the lab
    /// (killed when the lab drops), stdout and stderr going to a log file in
    /// [`Lab::dir`] (see [`Lab::process_log`]). Returns its pid.
    pub fn spawn_host(&self, args: &[&str]) -> u32 {
        let (program, rest) = args
            .split_first()
            .expect("lab: spawn_host needs at least a program name");
        let base = Path::new(program)
            .file_name()
            .map_or_else(|| "process".into(), |n| n.to_string_lossy());
        let seq = self
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        let log = self.dir.path().join(format!("{base}-{seq}.log"));
        let file = fs::File::create(&log)
            .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", log.display()));
        let err = file
            .try_clone()
            .unwrap_or_else(|e| panic!("lab: cannot duplicate log file handle: {e}"));
        let mut cmd = self.host_command(program);
        cmd.args(rest).stdin(Stdio::null()).stdout(file).stderr(err);
        self.adopt(&mut cmd, Some(log))
    }

    /// Spawns a caller-built command (e.g. from [`Lab::host_command`]) as a
    /// process owned by the lab, killed when the lab drops. Returns its pid.
    pub fn spawn(&self, cmd: &mut Command) -> u32 {
        self.adopt(cmd, None)
    }

    fn adopt(&self, cmd: &mut Command, log: Option<PathBuf>) -> u32 {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("lab: cannot start {cmd:?}: {e}"));
        let pid = child.id();
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Owned { child, log });
        pid
    }

    fn with_child<T>(&self, pid: u32, f: impl FnOnce(&mut Owned) -> T) -> T {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let owned = children
            .iter_mut()
            .find(|o| o.child.id() == pid)
            .unwrap_or_else(|| panic!("lab: pid {pid} was not started by this lab"));
        f(owned)
    }

    /// What an owned process wrote so far (spawn_host only; else empty).
    pub fn process_log(&self, pid: u32) -> String {
        let log = self.with_child(pid, |o| o.log.clone());
        log.and_then(|p| fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Exit status of an owned process, or None while it is still running.
    pub fn process_status(&self, pid: u32) -> Option<ExitStatus> {
        self.with_child(pid, |o| o.child.try_wait().ok().flatten())
    }

    /// Sends `signal` (a `kill -s` name such as "HUP" or "TERM") to an owned
    /// process. Returns false, sending nothing, if it has already exited.
    pub fn signal_process(&self, pid: u32, signal: &str) -> bool {
        if self.process_status(pid).is_some() {
            return false;
        }
        exec::run_checked(
            Command::new("kill").args(["-s", signal, &pid.to_string()]),
            exec::ADMIN_TIMEOUT,
        );
        true
    }

    /// Stops an owned process: SIGTERM, then SIGKILL if it has not exited
    /// within `grace`. Returns its exit status.
    pub fn stop_process(&self, pid: u32, grace: Duration) -> Option<ExitStatus> {
        self.with_child(pid, |o| {
            if let Ok(Some(status)) = o.child.try_wait() {
                return Some(status);
            }
            let mut term = Command::new("kill");
            term.args(["-s", "TERM", &pid.to_string()]);
            // If it already exited, the wait below reaps it.
            let _ = exec::run_bounded(&mut term, exec::ADMIN_TIMEOUT);
            exec::wait_child(&mut o.child, grace).or_else(|| exec::kill_child(&mut o.child))
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let children = self.children.get_mut().unwrap_or_else(|p| p.into_inner());
        for owned in children.iter_mut() {
            exec::kill_child(&mut owned.child);
        }
        let clients = self.clients.get_mut().unwrap_or_else(|p| p.into_inner());
        for ns in clients.iter() {
            exec::destroy_namespace(ns);
        }
        exec::destroy_namespace(&self.host);
    }
}
