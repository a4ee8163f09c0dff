//! Private mode: one dnsmasq per managed network, bound to that network's bridge only, kept
//! running (restarted with backoff when it dies) and stopped with the agent.
//!
//! `plan` is pure: it compares the rendered text of what runs with what is wanted. `Supervisor`
//! applies the plan: files, validation with `dnsmasq --test`, processes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::process::{self, RunAs};
use super::render::{render_private, InstancePaths, PrivateRender, RenderOptions};
use crate::model::{ManagedNetwork, NetworkName};
use files::{prepare_writable, remove_runtime_files, root_dir, sweep_leftovers, write_files};
use instance::run_instance;
pub use plan::{plan, Action};

mod instance;
mod plan;

/// A failure for one network; the others carry on.
#[derive(Debug, Error)]
pub enum PrivateError {
    /// A file could not be written or removed.
    #[error("network '{network}': cannot write {path}")]
    Io {
        /// The network.
        network: NetworkName,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// dnsmasq refused the generated configuration.
    #[error("network '{network}': dnsmasq rejected the configuration: {message}")]
    Invalid {
        /// The network.
        network: NetworkName,
        /// dnsmasq's own words.
        message: String,
    },
}

/// What a person (and `status`) can learn about a running instance.
#[derive(Debug, Clone, Default)]
pub struct InstanceStatus {
    /// The current dnsmasq's pid, if one runs.
    pub pid: Option<u32>,
    /// How many times it has been started.
    pub starts: u32,
    /// How its last process ended, if one has.
    pub last_exit: Option<String>,
}

enum Control {
    Restart,
    Reload,
    Stop,
}

struct Instance {
    /// The bridge's interface index when dnsmasq was started on it. A bridge deleted and
    /// created again has a new index, and dnsmasq's DHCP socket stays bound to the old
    /// device ("error binding DHCP socket to device"), so a new index means a restart.
    ifindex: Option<u32>,
    /// The bridge.
    bridge: String,
    render: PrivateRender,
    paths: InstancePaths,
    control: mpsc::UnboundedSender<Control>,
    task: JoinHandle<()>,
    status: Arc<Mutex<InstanceStatus>>,
}

/// Runs the private instances.
pub struct Supervisor {
    /// The dnsmasq binary.
    binary: PathBuf,
    /// Root of the instances' runtime files.
    run_dir: PathBuf,
    /// Root of persistent state (lease files).
    state_dir: PathBuf,
    /// The unprivileged account dnsmasq runs as.
    run_as: RunAs,
    /// Backoff bounds for restarting an instance that died.
    backoff: Backoff,
    /// Whether runtime directories left by an earlier run were swept (first reconcile).
    swept: bool,
    /// The system dnsmasq's lease file: a network new to private mode starts with its leases.
    seed_leases: Option<PathBuf>,
    /// SIGHUP is safe for these dnsmasq instances (dnsmasq 2.90 crashes on it once a `set:`
    /// hosts entry matched); where it is not, a hosts change restarts the instance.
    hangup_safe: bool,
    instances: BTreeMap<NetworkName, Instance>,
}

/// Restart delays: doubling from `min` to `max`, reset once an instance has run `stable`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub min: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Run time after which a death counts as the first again.
    pub stable: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(250),
            max: Duration::from_secs(10),
            stable: Duration::from_secs(30),
        }
    }
}

impl Supervisor {
    /// A supervisor with no instances.
    pub fn new(binary: PathBuf, run_dir: PathBuf, state_dir: PathBuf, run_as: RunAs) -> Self {
        Self {
            binary,
            run_dir,
            state_dir,
            run_as,
            backoff: Backoff::default(),
            swept: false,
            seed_leases: None,
            hangup_safe: true,
            instances: BTreeMap::new(),
        }
    }

    /// Says whether SIGHUP is safe for the instances from now on.
    pub fn set_hangup_safe(&mut self, safe: bool) {
        self.hangup_safe = safe;
    }

    /// Takes the leases of a network that starts in private mode without a lease file of its
    /// own from `system_leases` (it was served by the system dnsmasq before).
    pub fn with_lease_seed(mut self, system_leases: PathBuf) -> Self {
        self.seed_leases = Some(system_leases);
        self
    }

    /// Brings the instances in line with `desired`. Returns the failures, one per network.
    pub async fn reconcile(
        &mut self,
        desired: &[ManagedNetwork],
        opts: impl Fn(&ManagedNetwork) -> RenderOptions,
        keep: &std::collections::HashSet<NetworkName>,
    ) -> Vec<PrivateError> {
        let mut wanted: BTreeMap<NetworkName, (PrivateRender, InstancePaths, String)> = desired
            .iter()
            .map(|n| {
                let paths = InstancePaths::new(&self.run_dir, &self.state_dir, n.name.as_str());
                let render = render_private(n, &paths, &opts(n));
                (n.name.clone(), (render, paths, n.bridge.to_string()))
            })
            .collect();
        // A network whose new definition is invalid keeps its instance exactly as it runs.
        for name in keep {
            if let (Some(inst), false) = (self.instances.get(name), wanted.contains_key(name)) {
                let kept = (inst.render.clone(), inst.paths.clone(), inst.bridge.clone());
                wanted.insert(name.clone(), kept);
            }
        }
        let running = self
            .instances
            .iter()
            .map(|(k, v)| (k.clone(), v.render.clone()))
            .collect();
        let renders = wanted
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        let mut errors = Vec::new();
        let mut actions = plan(&running, &renders);
        self.restart_recreated(&mut actions);
        if !self.swept {
            self.swept = true;
            let (run_dir, state_dir) = (self.run_dir.clone(), self.state_dir.clone());
            let wanted: BTreeSet<NetworkName> = wanted.keys().cloned().collect();
            off_loop(move || sweep_leftovers(&run_dir, &state_dir, &wanted)).await;
        }
        self.seed_new_networks(desired);
        let mut fresh = Vec::new();
        for action in actions {
            if let Action::Start(n) | Action::Restart(n) = &action {
                fresh.push(wanted[n].1.pid.clone());
            }
            tracing::info!(?action, "private instance");
            let result = match action {
                Action::Stop(name) => self.stop(&name).await,
                Action::Start(name) => {
                    let (render, paths, bridge) = wanted[&name].clone();
                    self.start(name, render, paths, bridge).await
                }
                Action::Restart(name) => {
                    let (render, _, bridge) = wanted[&name].clone();
                    self.restart(&name, render, bridge).await
                }
                Action::Reload(name) => self.reload(&name, wanted[&name].0.clone()).await,
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "private instance");
                errors.push(e);
            }
        }
        wait_for_pid_files(&fresh, STARTUP_WAIT).await;
        errors
    }

    /// Restarts, beside `actions`, the instances whose bridge was created again since they
    /// started: dnsmasq's DHCP socket stays bound to the old interface index. A restart
    /// planned anyway covers it. A bridge that did not exist when its dnsmasq started needs
    /// none: dnsmasq binds no device it cannot find, and serves the bridge once it appears.
    fn restart_recreated(&mut self, actions: &mut Vec<Action>) {
        let mut recreated: Vec<NetworkName> = Vec::new();
        for (name, inst) in self.instances.iter_mut() {
            match (inst.ifindex, crate::netlink::ifindex(&inst.bridge)) {
                (None, now @ Some(_)) => inst.ifindex = now,
                (Some(was), Some(now)) if was != now => recreated.push(name.clone()),
                _ => {}
            }
        }
        for name in recreated {
            let planned = actions
                .iter()
                .any(|a| matches!(a, Action::Stop(n) | Action::Restart(n) if *n == name));
            if !planned {
                tracing::info!(network = %name, "bridge was created again: restarting its dnsmasq");
                actions.retain(|a| !matches!(a, Action::Reload(n) if *n == name));
                actions.push(Action::Restart(name));
            }
        }
    }

    /// A network starting here for the first time keeps the addresses the system dnsmasq gave
    /// its guests: its lease file starts with their leases.
    fn seed_new_networks(&self, desired: &[ManagedNetwork]) {
        let Some(src) = &self.seed_leases else { return };
        for net in desired
            .iter()
            .filter(|n| !self.instances.contains_key(&n.name))
        {
            let dst = super::render::lease_file(&self.state_dir, net.name.as_str());
            let carried = dst
                .parent()
                .map_or(Ok(()), root_dir)
                .and_then(|()| super::leases::seed(src, &dst, &net.subnets, &net.subnets6));
            match carried {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(network = %net.name, leases = n, "carried leases over from the system dnsmasq")
                }
                Err(e) => {
                    tracing::warn!(network = %net.name, error = %e, "leases not carried over")
                }
            }
        }
    }

    /// The networks with an instance, and each one's status.
    pub fn status(&self) -> BTreeMap<NetworkName, InstanceStatus> {
        self.instances
            .iter()
            .map(|(k, v)| (k.clone(), lock(&v.status).clone()))
            .collect()
    }

    /// Sends SIGHUP to every instance (hosts files and hostsdirs are re-read).
    pub fn hangup_all(&self) {
        for inst in self.instances.values() {
            let _ = inst.control.send(Control::Reload);
        }
    }

    /// Restarts every instance (where SIGHUP is not safe).
    pub fn restart_all(&self) {
        for inst in self.instances.values() {
            let _ = std::fs::remove_file(&inst.paths.pid);
            let _ = inst.control.send(Control::Restart);
        }
    }

    /// Stops every instance (the agent is stopping).
    pub async fn shutdown(&mut self) {
        let names: Vec<_> = self.instances.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.stop(&name).await {
                tracing::warn!(error = %e, "stopping private instance");
            }
        }
    }

    async fn start(
        &mut self,
        name: NetworkName,
        render: PrivateRender,
        paths: InstancePaths,
        bridge: String,
    ) -> Result<(), PrivateError> {
        let (binary, run_as) = (self.binary.clone(), self.run_as);
        let (n, r, p) = (name.clone(), render.clone(), paths.clone());
        // `dnsmasq --test` and waiting for a stale instance to exit block: off the event loop.
        let stale = off_loop(move || {
            write_files(&binary, &n, &p, &r, true, run_as)?;
            prepare_writable(&n, &p, run_as).map_err(|(path, e)| io_err(&n, &path, e))?;
            Ok::<_, PrivateError>(process::stop_stale(&p.pid, &p.conf))
        })
        .await?;
        if stale {
            tracing::warn!(network = %name, "stopped a dnsmasq left by an earlier run");
        }
        // dnsmasq writes its pid file once its sockets are open: a fresh one means it serves.
        let _ = std::fs::remove_file(&paths.pid);
        let (tx, rx) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(InstanceStatus::default()));
        let task = tokio::spawn(run_instance(
            name.clone(),
            self.binary.clone(),
            paths.conf.clone(),
            self.run_as,
            self.backoff,
            rx,
            status.clone(),
        ));
        self.instances.insert(
            name,
            Instance {
                ifindex: crate::netlink::ifindex(&bridge),
                bridge,
                render,
                paths,
                control: tx,
                task,
                status,
            },
        );
        Ok(())
    }

    async fn restart(
        &mut self,
        name: &NetworkName,
        render: PrivateRender,
        bridge: String,
    ) -> Result<(), PrivateError> {
        self.write_files_off_loop(name, &render, true).await?;
        let inst = self
            .instances
            .get_mut(name)
            .expect("planned from instances");
        inst.bridge = bridge;
        inst.ifindex = crate::netlink::ifindex(&inst.bridge);
        inst.render = render;
        let _ = std::fs::remove_file(&inst.paths.pid);
        let _ = inst.control.send(Control::Restart);
        Ok(())
    }

    async fn reload(
        &mut self,
        name: &NetworkName,
        render: PrivateRender,
    ) -> Result<(), PrivateError> {
        self.write_files_off_loop(name, &render, false).await?;
        let inst = self
            .instances
            .get_mut(name)
            .expect("planned from instances");
        inst.render = render;
        if self.hangup_safe {
            let _ = inst.control.send(Control::Reload);
        } else {
            let _ = std::fs::remove_file(&inst.paths.pid);
            let _ = inst.control.send(Control::Restart);
        }
        Ok(())
    }

    /// Writes (and with `validate`, checks) a running instance's files on the blocking pool.
    async fn write_files_off_loop(
        &self,
        name: &NetworkName,
        render: &PrivateRender,
        validate: bool,
    ) -> Result<(), PrivateError> {
        let paths = self.instances[name].paths.clone();
        let (binary, run_as, n, r) = (
            self.binary.clone(),
            self.run_as,
            name.clone(),
            render.clone(),
        );
        off_loop(move || write_files(&binary, &n, &paths, &r, validate, run_as)).await
    }

    async fn stop(&mut self, name: &NetworkName) -> Result<(), PrivateError> {
        let Some(inst) = self.instances.remove(name) else {
            return Ok(());
        };
        let _ = inst.control.send(Control::Stop);
        let _ = inst.task.await;
        remove_runtime_files(&inst.paths).map_err(|(p, e)| io_err(name, &p, e))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_err(network: &NetworkName, path: &Path, source: std::io::Error) -> PrivateError {
    PrivateError::Io {
        network: network.clone(),
        path: path.to_owned(),
        source,
    }
}

/// How long a reconcile waits for the dnsmasq instances it started to be up.
const STARTUP_WAIT: Duration = Duration::from_secs(3);

/// Waits until each pid file exists (dnsmasq writes it once its sockets are open), at most
/// `timeout` in all, so that a reconcile returns (and systemd hears READY=1) only once the
/// networks are served.
async fn wait_for_pid_files(files: &[PathBuf], timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !files.iter().all(|f| f.exists()) {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("a private dnsmasq is not up after {timeout:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

mod files;
/// Runs blocking work (files, `dnsmasq --test`, waiting for a process) on the blocking pool, so
/// that the one-thread event loop goes on serving D-Bus, netlink and signals meanwhile.
async fn off_loop<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests;
