//! Fragments in the system dnsmasq behind the [`Backend`] trait: the files (made in one
//! place, [`system_files`]), the transaction that writes them, restarts and SIGHUP.

use std::collections::HashSet;

use super::{
    sighup_safe, sighup_safe_with, system_extra_lines, system_refusal, system_shared_lines,
    Backend, Outcome,
};
use crate::config::Config;
use crate::dnsmasq::fragment;
use crate::fsutil::FileLock;
use crate::host::Host;
use crate::model::{ManagedNetwork, NetworkName};
use crate::system::apply::{observe, Applied, Apply};
use crate::system::detect::Detection;
use crate::system::effective::EffectiveConfig;
use crate::system::plan::{desired, plan, Loaded, Target};
use crate::system::version::DnsmasqVersion;
use crate::systemd::Systemd;
use crate::timing::phase;

/// What system mode reads of the host for one apply, read once: the system dnsmasq's
/// configuration as its unit starts it, dnsmasq's version, and whether SIGHUP is safe.
#[derive(Debug, Clone)]
pub struct SystemView {
    /// The system dnsmasq's effective configuration.
    pub effective: EffectiveConfig,
    /// The dnsmasq binary's version, if it answers.
    pub version: Option<DnsmasqVersion>,
    /// Whether hosts changes may be a SIGHUP ([`super::sighup_safe`]).
    pub hangup_safe: bool,
    /// The trees it was read from; which bridges exist is asked of its sysfs.
    pub host: Host,
}

impl SystemView {
    /// What `detect` read already: system mode reads the host once.
    pub fn detected(cfg: &Config, detection: &Detection, host: &Host) -> Self {
        Self {
            effective: detection.config.clone(),
            hangup_safe: sighup_safe_with(cfg, detection.version.as_ref()),
            version: detection.version.clone(),
            host: host.clone(),
        }
    }

    /// Reads it all from `host`.
    pub fn observe(cfg: &Config, host: &Host) -> Self {
        let version = DnsmasqVersion::of(&cfg.paths.dnsmasq);
        Self {
            effective: EffectiveConfig::read(&host.root),
            hangup_safe: sighup_safe_with(cfg, version.as_ref()),
            version,
            host: host.clone(),
        }
    }
}

/// Why a network has no fragment.
#[derive(Debug, Clone)]
enum LeftOut {
    /// Until something on the system changes (a bridge appears).
    Waiting(String),
    /// Until its definition or the system's DNS changes (an error).
    Refused(String),
}

/// Fragments in the system dnsmasq's conf-dir; restarts over systemd's D-Bus API.
pub struct SystemBackend {
    /// systemd on the system bus.
    pub systemd: Systemd,
    /// Networks the last full reconcile left out, and why (for `served_by`).
    deferred: std::sync::Mutex<Vec<(NetworkName, LeftOut)>>,
    /// The trees the system is observed in.
    host: Host,
    /// A stopped network's inert lines may stay loaded ([`crate::system::linger`]).
    may_linger: bool,
}

impl SystemBackend {
    /// The trees the system is observed in.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// A backend talking to `systemd`, observing the system in `host`.
    pub fn new(systemd: Systemd, host: Host) -> Self {
        Self {
            systemd,
            host,
            deferred: std::sync::Mutex::new(Vec::new()),
            may_linger: false,
        }
    }

    /// Lets a stopped network's inert lines stay in the running dnsmasq instead of restarting
    /// it ([`crate::system::linger`]): for the daemon, which follows link events and
    /// reconciles when a lingering bridge is created again.
    pub fn lingering(mut self) -> Self {
        self.may_linger = true;
        self
    }
}

impl SystemBackend {
    /// One reconcile, under the state directory's lock so that `sync` calls and the daemon
    /// never interleave their writes.
    pub async fn apply(
        &self,
        nets: &[ManagedNetwork],
        cfg: &Config,
    ) -> anyhow::Result<(Applied, Vec<String>)> {
        self.apply_scoped(nets, cfg, None).await
    }

    /// [`Self::apply`] with what was observed of the host already (`sync` after `detect`).
    pub async fn apply_viewed(
        &self,
        nets: &[ManagedNetwork],
        cfg: &Config,
        view: SystemView,
    ) -> anyhow::Result<(Applied, Vec<String>)> {
        self.apply_keeping(nets, cfg, None, &HashSet::new(), Some(view))
            .await
    }

    /// Like [`Self::apply`], limited to the files of the network named `scope` when given:
    /// the libvirt hook knows one network (from its stdin) and must not call libvirt for the
    /// others, so it changes that network's files only. `nets` holds that network when it
    /// should be served, nothing when its files should go.
    pub async fn apply_scoped(
        &self,
        nets: &[ManagedNetwork],
        cfg: &Config,
        scope: Option<&NetworkName>,
    ) -> anyhow::Result<(Applied, Vec<String>)> {
        self.apply_keeping(nets, cfg, scope, &HashSet::new(), None)
            .await
    }

    /// The common body: `keep` names networks whose files stay exactly as they are.
    async fn apply_keeping(
        &self,
        nets: &[ManagedNetwork],
        cfg: &Config,
        scope: Option<&NetworkName>,
        keep: &HashSet<NetworkName>,
        view: Option<SystemView>,
    ) -> anyhow::Result<(Applied, Vec<String>)> {
        // Networks that cannot be fragments keep whatever files they have; the callers report
        // why (system_refusal).
        let mut keep = keep.clone();
        let (nets, refusals) = fragment_networks(nets, &mut keep);
        let nets = nets.as_slice();
        let _lock = lock_system(cfg).await?;
        {
            let _p = phase("recover");
            crate::system::recover::recover(cfg, Some(&self.systemd)).await?;
        }
        let view = view.unwrap_or_else(|| {
            let _p = phase("view");
            SystemView::observe(cfg, &self.host)
        });
        let planning = phase("plan");
        // With a scope, the hook changes one network: shared lines stay as they are.
        let shared = match scope {
            Some(_) => Vec::new(),
            None => system_shared_lines(cfg, nets),
        };
        let mut want = system_files(nets, cfg, &view, shared);
        if scope.is_none() {
            let waiting =
                (want.deferred.iter()).map(|(n, w)| (n.clone(), LeftOut::Waiting(w.clone())));
            let refused =
                (want.refused.iter()).map(|(n, w)| (n.clone(), LeftOut::Refused(w.clone())));
            *self.deferred.lock().unwrap_or_else(|p| p.into_inner()) =
                waiting.chain(refused).collect();
        }
        let mut deferred: Vec<String> = want
            .deferred
            .iter()
            .map(|(n, why)| format!("network '{n}' waits: {why}"))
            .collect();
        deferred.extend(
            want.refused
                .iter()
                .map(|(_, why)| format!("refused: {why}")),
        );
        let mut observed = observe(&cfg.paths.conf_dir, &cfg.paths.state_dir.join("system"))?;
        if let Some(name) = scope {
            let frag = cfg.paths.conf_dir.join(fragment::file_name(name.as_str()));
            let hosts = fragment::hosts_file(&cfg.paths.state_dir, name.as_str());
            observed.fragments.retain(|p, _| *p == frag);
            observed.foreign.retain(|p| *p == frag);
            observed.hosts.retain(|p, _| *p == hosts);
        }
        keep_as_they_are(&keep, cfg, &observed, &mut want);
        let record = crate::system::linger::load(&cfg.paths.state_dir);
        let exists = |b: &str| view.host.interface_exists(b);
        let loaded = Loaded {
            lingering: &record,
            may_linger: self.may_linger,
            bridge_exists: &exists,
        };
        let plan = plan(&observed, &want, &loaded);
        drop(planning);
        for p in &plan.refused {
            tracing::error!(path = %p.display(), "a file virtmasq did not write is in the way; left alone");
        }
        let applied = Apply::new(&self.systemd, cfg, &view.effective, view.hangup_safe)
            .run(&plan)
            .await?;
        let mut notes: Vec<String> = deferred;
        if applied.changed.iter().any(|p| plan.removals.contains(p)) && !applied.restarted {
            notes.extend(plan.lingering.difference(&record).map(|l| {
                format!(
                    "bridge {} is gone: its network's lines stay in the running {} until its next restart",
                    l.bridge, cfg.system.unit
                )
            }));
        }
        notes.extend(refusals.into_iter().map(|r| format!("refused: {r}")));
        notes.extend(plan.refused.iter().map(|p| {
            format!(
                "{} exists and was not written by virtmasq: left alone",
                p.display()
            )
        }));
        Ok((applied, notes))
    }
}

/// The networks that can be fragments; the others join `keep` (whatever files they have stay)
/// and their reasons are returned (system_refusal).
fn fragment_networks(
    nets: &[ManagedNetwork],
    keep: &mut HashSet<NetworkName>,
) -> (Vec<ManagedNetwork>, Vec<String>) {
    let mut refusals = Vec::new();
    let nets = nets
        .iter()
        .filter(|n| match system_refusal(n) {
            Some(why) => {
                keep.insert(n.name.clone());
                refusals.push(why);
                false
            }
            None => true,
        })
        .cloned()
        .collect();
    (nets, refusals)
}

/// The files of the networks in `keep` are wanted exactly as they are now.
fn keep_as_they_are(
    keep: &HashSet<NetworkName>,
    cfg: &Config,
    observed: &crate::system::plan::Observed,
    want: &mut crate::system::plan::Desired,
) {
    for name in keep {
        let frag = cfg.paths.conf_dir.join(fragment::file_name(name.as_str()));
        let hosts = fragment::hosts_file(&cfg.paths.state_dir, name.as_str());
        for (path, map) in [(frag, &observed.fragments), (hosts, &observed.hosts)] {
            if let Some(text) = map
                .get(&path)
                .and_then(|b| String::from_utf8(b.clone()).ok())
            {
                let target = if path.extension().is_some_and(|e| e == "hosts") {
                    &mut want.hosts
                } else {
                    &mut want.fragments
                };
                target.insert(path, text);
            }
        }
    }
}

/// The files system mode writes for `nets`, and the networks it leaves out with why: the one
/// place that makes them, for the daemon, `sync`, the hook and `render`.
pub fn system_files(
    nets: &[ManagedNetwork],
    cfg: &Config,
    view: &SystemView,
    shared_lines: Vec<String>,
) -> crate::system::plan::Desired {
    let target = Target {
        conf_dir: &cfg.paths.conf_dir,
        state_dir: &cfg.paths.state_dir,
        effective: &view.effective,
        tag_hosts: view.version.as_ref().is_some_and(|v| v.at_least(2, 81)),
        shared_lines,
    };
    desired(
        nets,
        &target,
        |n| system_extra_lines(cfg, n, &view.effective),
        |b| view.host.interface_exists(b),
    )
}

/// Takes the system-mode lock (shared with `sync` and the hook) on the blocking pool: waiting
/// for it must not stall the daemon's single-threaded event loop.
async fn lock_system(cfg: &Config) -> anyhow::Result<FileLock> {
    let path = cfg.paths.state_dir.join(crate::system::recover::LOCK_FILE);
    let lock = tokio::task::spawn_blocking(move || {
        FileLock::acquire(&path, std::time::Duration::from_secs(30))
    })
    .await??;
    Ok(lock)
}

impl Backend for SystemBackend {
    async fn reconcile(
        &mut self,
        nets: &[ManagedNetwork],
        keep: &HashSet<NetworkName>,
        cfg: &Config,
    ) -> Outcome {
        self.reconcile_with(nets, keep, cfg, None).await
    }

    fn served_by(&self, net: &ManagedNetwork, cfg: &Config) -> String {
        let deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        match deferred.iter().find(|(n, _)| *n == net.name) {
            Some((_, LeftOut::Waiting(why))) => format!("waiting: {why}"),
            Some((_, LeftOut::Refused(why))) => format!("refused: {why}"),
            None => format!(
                "system dnsmasq, {}",
                cfg.paths
                    .conf_dir
                    .join(fragment::file_name(net.name.as_str()))
                    .display()
            ),
        }
    }

    fn lease_file(&self, net: &ManagedNetwork, cfg: &Config) -> Option<std::path::PathBuf> {
        let deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        if deferred.iter().any(|(n, _)| *n == net.name) {
            return None;
        }
        Some(super::system_lease_file(cfg, &self.host))
    }

    async fn reread(&mut self, cfg: &Config) -> anyhow::Result<()> {
        if sighup_safe(cfg) {
            self.systemd.hangup(&cfg.system.unit).await?;
        } else {
            let _lock = lock_system(cfg).await?;
            crate::system::apply::Restarter::new(&self.systemd, cfg)
                .restart()
                .await?;
        }
        Ok(())
    }

    /// Fragments stay: the system dnsmasq keeps serving the networks while the agent is down.
    async fn shutdown(&mut self) {}

    fn restarts_shared(&self) -> bool {
        true
    }

    fn watched_bridges(&self, cfg: &Config) -> Vec<String> {
        (crate::system::linger::load(&cfg.paths.state_dir).into_iter())
            .map(|l| l.bridge)
            .collect()
    }
}

impl SystemBackend {
    /// A full reconcile with what was observed of the host already (`view`), or observed now.
    pub async fn reconcile_with(
        &mut self,
        nets: &[ManagedNetwork],
        keep: &HashSet<NetworkName>,
        cfg: &Config,
        view: Option<SystemView>,
    ) -> Outcome {
        let refused: Vec<anyhow::Error> = nets
            .iter()
            .filter_map(system_refusal)
            .map(|why| anyhow::anyhow!(why))
            .collect();
        let mut outcome = self.reconcile_checked(nets, keep, cfg, view).await;
        outcome.errors.extend(refused);
        // Networks refused for the names they would have the host answer are errors too.
        let left_out = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        outcome
            .errors
            .extend(left_out.iter().filter_map(|(_, left)| match left {
                LeftOut::Refused(why) => Some(anyhow::anyhow!(why.clone())),
                LeftOut::Waiting(_) => None,
            }));
        outcome
    }

    /// A full reconcile of networks that may be fragments.
    async fn reconcile_checked(
        &mut self,
        nets: &[ManagedNetwork],
        keep: &HashSet<NetworkName>,
        cfg: &Config,
        view: Option<SystemView>,
    ) -> Outcome {
        match self.apply_keeping(nets, cfg, None, keep, view).await {
            Ok((applied, notes)) => {
                let mut changes: Vec<String> = applied
                    .changed
                    .iter()
                    .map(|p| format!("wrote {}", p.display()))
                    .collect();
                if applied.restarted {
                    changes.push(format!(
                        "restarted {} in {:?}",
                        cfg.system.unit,
                        applied.restart_time.unwrap_or_default()
                    ));
                }
                if applied.hung_up {
                    changes.push(format!("sent SIGHUP to {}", cfg.system.unit));
                }
                changes.extend(notes);
                Outcome {
                    changes,
                    errors: Vec::new(),
                }
            }
            Err(e) => Outcome {
                changes: Vec::new(),
                errors: vec![e],
            },
        }
    }
}
