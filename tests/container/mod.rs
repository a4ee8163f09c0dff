//! Booted Debian 12 containers for integration tests: a real systemd, a real system bus and the
//! Debian `dnsmasq` service, sharing a [`Lab`]'s host network namespace.
//!
//! [`Container::boot`] boots a throwaway copy (an overlay over a cached root, see
//! [`RootKind`]) of the minimal bookworm root made by `scripts/build-test-rootfs.sh` (built on
//! first use, once) with `systemd-nspawn -b`, and returns once `systemctl is-system-running`
//! says `running` or `degraded`. The container's network namespace *is* the lab's host
//! namespace, so the system dnsmasq inside serves the lab's bridges and clients.
//!
//! Talk to it from the host: [`Container::exec`] runs a command inside (nsenter into all of its
//! namespaces), [`Container::system_bus_address`] is its system bus (reachable from the host as
//! root, no user namespace), [`Container::write_file`] writes into its root. Start long-running
//! processes inside with `systemd-run`: whatever an `exec` leaves behind is killed when it
//! returns.
//!
//! Dropping the container (panics included) halts it, kills what is left, unmounts its root and
//! removes its cgroup and temp dir. Leftovers of killed test runs are swept at the next boot.
//! Needs root; panics (so tests fail, never silently skip) when it cannot boot.
//!
//! Use it from an integration test with `mod lab; mod container;`, and declare the container
//! after the lab (the borrow makes that the only way that compiles).
#![allow(dead_code)]

mod cgroup;
mod process;
mod rootfs;

#[allow(unused_imports)] // each test uses only part of the harness
pub use rootfs::{
    resolve as resolve_in_root, write_into, RootKind, Variant, DEFAULT_ROOTFS, ROOTFS_ENV,
};

use std::fs;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::lab::Lab;
use cgroup::Cgroup;
use process::{run_bounded, wait_child, wait_for};

/// Prefix of container machine names, cgroups and temp dirs: `vqct-<pid>-<n>`.
pub const NAME_PREFIX: &str = "vqct-";
/// From starting nspawn to `running`; a boot takes well under a second when all is well.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on one [`Container::exec`].
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a halt (first SIGTERM to nspawn) may take before it is forced; it takes ~0.2 s.
const HALT_TIMEOUT: Duration = Duration::from_secs(10);
/// PATH for commands run inside (host tools find nsenter with it, too).
const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

static CONTAINER_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Prepares a container's root (a host path) before boot; see [`BootOptions::setup`].
pub type Setup = Box<dyn Fn(&Path)>;

/// What to add to a container before it boots.
#[derive(Default)]
pub struct BootOptions {
    /// Read-only bind mounts, host path -> container path, e.g. the agent binary to
    /// `/usr/local/bin/virtmasq`.
    pub binds_ro: Vec<(PathBuf, String)>,
    /// Runs against the container's root (a host path) before boot, e.g. to drop a dnsmasq
    /// fragment with [`write_into`] or to enable a unit.
    pub setup: Option<Setup>,
}

/// Where a boot spent its time (a first build of the cached root excluded).
#[derive(Debug, Clone, Copy, Default)]
pub struct BootTimings {
    /// Making the root (overlay mount or copy), `setup`, the cgroup.
    pub prepare: Duration,
    /// From starting nspawn until the container's pid 1 exists.
    pub to_leader: Duration,
    /// From starting nspawn until `systemctl is-system-running` said running or degraded.
    pub to_running: Duration,
    /// The whole of [`Container::boot`].
    pub total: Duration,
}

/// A booted container; see the module documentation.
pub struct Container<'lab> {
    /// Machine name, also the name of its cgroup and the prefix of its temp dir.
    name: String,
    /// upper/, work/, merged/ and console.log; None once kept because unmounting failed.
    dir: Option<tempfile::TempDir>,
    /// The container's root as seen from the host.
    merged: PathBuf,
    /// nspawn's stdout and stderr (the container console).
    console: PathBuf,
    /// How `merged` was made; None until it was.
    kind: Option<RootKind>,
    /// The cgroup nspawn runs in; commands run inside get children of it.
    cgroup: Option<Cgroup>,
    /// The systemd-nspawn process.
    nspawn: Option<Child>,
    /// Host pid of the container's pid 1 (systemd); 0 until known.
    leader: u32,
    /// Numbers the per-command cgroups.
    commands: AtomicUsize,
    /// Measured by boot.
    timings: BootTimings,
    /// The container lives in the lab's namespace: it must go before the lab does.
    _lab: PhantomData<&'lab Lab>,
}

/// Escapes a path for nspawn's `--bind-ro=SRC:DEST` syntax.
fn bind_escape(path: &str) -> String {
    path.replace('\\', "\\\\").replace(':', "\\:")
}

impl<'lab> Container<'lab> {
    /// Boots a throwaway container in `lab`'s host network namespace; see the module docs.
    ///
    /// Builds the cached root first if it is missing (minutes, once). Panics with the console
    /// output and the container's journal if it is not `running` or `degraded` within
    /// [`BOOT_TIMEOUT`].
    pub fn boot(lab: &'lab Lab, opts: &BootOptions) -> Container<'lab> {
        Self::boot_variant(lab, opts, Variant::Base)
    }

    /// Like [`Container::boot`], from the cached root of `variant` (built on first use).
    pub fn boot_variant(lab: &'lab Lab, opts: &BootOptions, variant: Variant) -> Container<'lab> {
        cgroup::sweep_stale();
        rootfs::sweep_stale_dirs();
        let lower = rootfs::ensure_variant(variant);
        let started = Instant::now();
        let n = CONTAINER_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NAME_PREFIX}{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}."))
            .tempdir()
            .unwrap_or_else(|e| panic!("container: cannot create a temp dir: {e}"));
        let dir_path = dir.path().to_path_buf();
        // From here on a panic drops `ct`, which cleans up whatever was made.
        let mut ct = Container {
            merged: dir.path().join("merged"),
            console: dir.path().join("console.log"),
            name,
            dir: Some(dir),
            kind: None,
            cgroup: None,
            nspawn: None,
            leader: 0,
            commands: AtomicUsize::new(0),
            timings: BootTimings::default(),
            _lab: PhantomData,
        };
        ct.kind = Some(rootfs::prepare(&lower, &dir_path));
        if let Some(setup) = &opts.setup {
            setup(&ct.merged);
        }
        ct.cgroup =
            Some(Cgroup::create(&ct.name).unwrap_or_else(|e| panic!("container: cgroup: {e}")));
        ct.timings.prepare = started.elapsed();
        let spawned = Instant::now();
        ct.spawn_nspawn(lab.host_ns(), &opts.binds_ro);
        ct.leader = ct.wait_leader();
        ct.timings.to_leader = spawned.elapsed();
        ct.wait_running(spawned);
        ct.timings.to_running = spawned.elapsed();
        ct.timings.total = started.elapsed();
        ct
    }

    fn spawn_nspawn(&mut self, netns: &str, binds_ro: &[(PathBuf, String)]) {
        let cgroup = self
            .cgroup
            .as_ref()
            .expect("container: cgroup made before nspawn");
        let console = fs::File::create(&self.console)
            .unwrap_or_else(|e| panic!("container: {}: {e}", self.console.display()));
        let console_err = console
            .try_clone()
            .unwrap_or_else(|e| panic!("container: cannot duplicate a file handle: {e}"));
        let mut cmd = Command::new("/bin/sh");
        cmd.args(cgroup.enter_then_exec())
            .arg("systemd-nspawn")
            .arg("-D")
            .arg(&self.merged)
            .args(["-b", "--register=no", "--keep-unit", "--console=pipe"])
            .args(["--link-journal=no", "--capability=CAP_NET_ADMIN"])
            // Keep the root's resolv.conf (no servers): nothing inside should try the host's.
            .arg("--resolv-conf=off")
            .arg(format!("--machine={}", self.name))
            .arg(format!("--network-namespace-path=/run/netns/{netns}"));
        for (host, inside) in binds_ro {
            assert!(
                host.exists(),
                "container: bind source {} does not exist",
                host.display()
            );
            let src = bind_escape(&host.to_string_lossy());
            cmd.arg(format!("--bind-ro={src}:{}", bind_escape(inside)));
        }
        // libvirt (and the agent) write /proc/sys/net inside.
        cmd.env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "network")
            // Never let nspawn talk to a supervisor of this test process.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err);
        self.nspawn = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("container: cannot start systemd-nspawn: {e}")),
        );
    }

    /// Waits for nspawn's child that is pid 1 of a new pid namespace: the container's systemd.
    fn wait_leader(&self) -> u32 {
        let nspawn = self.nspawn_pid();
        let mut leader = None;
        let found = wait_for(
            || {
                leader = children(nspawn).into_iter().find(|&pid| is_ns_init(pid));
                leader.is_some() || self.nspawn_exited()
            },
            Duration::from_secs(10),
        );
        match leader {
            Some(pid) if found => pid,
            _ => panic!(
                "container {}: no container init appeared (nspawn {})\nconsole:\n{}",
                self.name,
                if self.nspawn_exited() {
                    "exited"
                } else {
                    "still running"
                },
                self.console()
            ),
        }
    }

    fn wait_running(&self, spawned: Instant) {
        let mut state = String::new();
        let deadline = spawned + BOOT_TIMEOUT;
        let up = wait_for(
            || {
                if self.nspawn_exited() {
                    return true;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let probe = ["systemctl", "is-system-running"];
                state = match self.exec_bounded(&probe, left.max(Duration::from_millis(100))) {
                    Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
                    Err(e) => e,
                };
                state == "running" || state == "degraded"
            },
            BOOT_TIMEOUT.saturating_sub(spawned.elapsed()),
        );
        if up && !self.nspawn_exited() {
            if state == "degraded" {
                let failed =
                    self.exec_bounded(&["systemctl", "--failed", "--no-legend"], EXEC_TIMEOUT);
                eprintln!(
                    "container {}: booted degraded; failed units:\n{}",
                    self.name,
                    failed.map_or_else(|e| e, |o| String::from_utf8_lossy(&o.stdout).into_owned())
                );
            }
            return;
        }
        panic!(
            "container {}: not running within {BOOT_TIMEOUT:?} (nspawn {}; last state: {state})\n{}",
            self.name,
            if self.nspawn_exited() { "exited" } else { "running" },
            self.diagnostics()
        );
    }

    /// Console, jobs, failed units and the end of the boot journal, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut text = format!("--- console:\n{}", self.console());
        if self.leader == 0 || self.nspawn_exited() {
            return text;
        }
        for args in [
            &["systemctl", "list-jobs", "--no-pager"][..],
            &["systemctl", "--failed", "--no-pager"],
            &["journalctl", "-b", "--no-pager", "-n", "100"],
        ] {
            let out = self
                .exec_bounded(args, Duration::from_secs(5))
                .map_or_else(|e| e, |o| String::from_utf8_lossy(&o.stdout).into_owned());
            text.push_str(&format!("--- {}:\n{out}\n", args.join(" ")));
        }
        text
    }

    fn nspawn_pid(&self) -> u32 {
        self.nspawn.as_ref().map_or(0, Child::id)
    }

    fn nspawn_exited(&self) -> bool {
        // try_wait needs &mut; a zombie or a vanished pid both mean "exited" here.
        let pid = self.nspawn_pid();
        pid == 0 || proc_state(pid).is_none_or(|s| s == 'Z')
    }

    /// The container's machine name (`vqct-<pid>-<n>`, also its cgroup's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Host pid of the container's pid 1 (its systemd), the `nsenter -t` target.
    pub fn leader_pid(&self) -> u32 {
        self.leader
    }

    /// The container's root as seen from the host, for writing files into the container. Mind
    /// absolute symlinks inside: [`Container::host_path`] resolves them as the container would.
    pub fn root(&self) -> &Path {
        &self.merged
    }

    /// How the root was made (overlay or copy).
    pub fn root_kind(&self) -> RootKind {
        self.kind.unwrap_or(RootKind::Overlay)
    }

    /// The host path of `path_in_container`, symlinks resolved inside the container's root.
    pub fn host_path(&self, path_in_container: &str) -> PathBuf {
        rootfs::resolve(&self.merged, path_in_container)
    }

    /// The container's cgroup in each hierarchy (host paths), removed with it.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        self.cgroup.as_ref().map(Cgroup::dirs).unwrap_or_default()
    }

    /// Where boot spent its time.
    pub fn timings(&self) -> BootTimings {
        self.timings
    }

    /// What nspawn and the container printed on its console so far.
    pub fn console(&self) -> String {
        fs::read(&self.console)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Runs `args` inside the container (all of its namespaces, its root), bounded by
    /// [`EXEC_TIMEOUT`]; panics if it cannot run or times out. Whatever the command leaves
    /// running is killed when it returns.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.exec_bounded(args, EXEC_TIMEOUT)
            .unwrap_or_else(|e| panic!("container {}: {e}", self.name))
    }

    /// Like [`Container::exec`] with its own time limit; Err on a spawn failure or a timeout
    /// (the command and everything it started are then killed).
    pub fn exec_bounded(&self, args: &[&str], timeout: Duration) -> Result<Output, String> {
        assert!(!args.is_empty(), "container: exec needs a program");
        assert!(
            self.leader != 0,
            "container: exec before the container has a pid 1"
        );
        let n = self.commands.fetch_add(1, Ordering::Relaxed);
        let cgroup = self
            .cgroup
            .as_ref()
            .ok_or_else(|| "container: no cgroup".to_string())?
            .child(&format!("cmd-{n}"))?;
        let mut cmd = Command::new("/bin/sh");
        cmd.args(cgroup.enter_then_exec())
            .args(["nsenter", "-t", &self.leader.to_string(), "-a", "--"])
            .args(args)
            .env_clear()
            .env("PATH", CONTAINER_PATH)
            .env("HOME", "/root")
            .env("LC_ALL", "C.UTF-8")
            .env("SYSTEMD_PAGER", "cat")
            .env("SYSTEMD_COLORS", "0");
        // Dropping `cgroup` kills anything the command left behind and removes the cgroup.
        run_bounded(&mut cmd, timeout, Some(&cgroup))
    }

    /// Runs `args` inside and returns its stdout; panics with status, stdout and stderr if it
    /// fails.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "container {}: `{}` failed ({})\nstdout: {}\nstderr: {}",
            self.name,
            args.join(" "),
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        stdout
    }

    /// The container's system bus, usable from the host as root (e.g. `busctl --address=`,
    /// zbus `Builder::address`): the bus socket through the leader's root.
    pub fn system_bus_address(&self) -> String {
        format!(
            "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
            self.leader
        )
    }

    /// The journal of `unit` inside (message text only).
    pub fn journal(&self, unit: &str) -> String {
        self.exec_ok(&["journalctl", "-u", unit, "--no-pager", "-o", "cat"])
    }

    /// Writes `contents` to `path_in_container` (absolute) with permission bits `mode`,
    /// creating parent directories; see [`write_into`].
    pub fn write_file(&self, path_in_container: &str, contents: &str, mode: u32) {
        rootfs::write_into(&self.merged, path_in_container, contents, mode);
    }

    /// Halts the container: SIGTERM to nspawn (a clean halt, ~0.2 s), again if it hangs, then
    /// SIGKILL to everything in its cgroup. Bounded; never panics (runs from Drop).
    fn halt(&mut self) {
        let Some(child) = self.nspawn.as_mut() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        // A second SIGTERM makes nspawn kill the container at once.
        for grace in [HALT_TIMEOUT, Duration::from_secs(3)] {
            if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            let _ = kill(pid, Signal::SIGTERM);
            if wait_child(child, grace).is_some() {
                return;
            }
        }
        eprintln!(
            "container {}: nspawn ignored SIGTERM; killing it",
            self.name
        );
        let _ = child.kill();
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill_all(Duration::from_secs(5));
        }
        wait_child(child, Duration::from_secs(5));
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        // exec borrows the container, so no command of ours is running any more, and each
        // one's cgroup killed what it left behind: the halt waits for nothing of ours.
        self.halt();
        drop(self.cgroup.take());
        let Some(dir) = self.dir.take() else {
            return;
        };
        if !rootfs::unmount_all(dir.path()) {
            let kept = dir.keep();
            eprintln!(
                "container {}: root still mounted; leaving {}",
                self.name,
                kept.display()
            );
            return;
        }
        // nspawn cannot remove this on a /run that is not tmpfs ("Attempted to remove disk
        // file system"); it is empty by now.
        let propagate = Path::new("/run/systemd/nspawn/propagate").join(&self.name);
        if propagate.exists() && rootfs::mounts_under(&propagate).is_empty() {
            let _ = fs::remove_dir_all(&propagate);
        }
        drop(dir);
    }
}

/// Direct children of `pid`, from /proc (pids that vanish meanwhile are skipped).
fn children(pid: u32) -> Vec<u32> {
    let task = format!("/proc/{pid}/task/{pid}/children");
    if let Ok(text) = fs::read_to_string(task) {
        return text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
    }
    // Kernels without CONFIG_PROC_CHILDREN: scan every process's parent.
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&p| status_field(p, "PPid:").is_some_and(|v| v == pid.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// True if `pid` is pid 1 of a child pid namespace (`NSpid: <host pid> 1`).
fn is_ns_init(pid: u32) -> bool {
    status_field(pid, "NSpid:").is_some_and(|v| {
        let ids: Vec<&str> = v.split_whitespace().collect();
        ids.len() >= 2 && ids.last() == Some(&"1")
    })
}

/// The state letter of `pid` (R, S, Z, ...), None if it does not exist.
fn proc_state(pid: u32) -> Option<char> {
    status_field(pid, "State:")?.chars().next()
}

fn status_field(pid: u32, key: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    Some(line[key.len()..].trim().to_string())
}
