//! The two ways of serving networks behind one trait: private instances, or fragments in the
//! system dnsmasq. The daemon and `sync` drive either the same way.

use std::collections::HashSet;
use std::path::Path;

use crate::agent::desired::pxe_lines;
use crate::config::Config;
use crate::dnsmasq::fragment;
use crate::dnsmasq::private::Supervisor;
use crate::dnsmasq::process::RunAs;
use crate::dnsmasq::render::RenderOptions;
use crate::filter::PxeFilter;
use crate::fsutil::FileLock;
use crate::model::{ManagedNetwork, NetworkName};
use crate::pxe::LinesFor;
use crate::system::apply::{observe, Applied, Apply};
use crate::system::effective::EffectiveConfig;
use crate::system::plan::{desired, plan, Target};
use crate::system::version::DnsmasqVersion;
use crate::systemd::Systemd;

/// What one reconcile did, for logs and `sync`'s output.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Lines for a person: what changed.
    pub changes: Vec<String>,
    /// Errors, one per network or per attempt; empty when all went well.
    pub errors: Vec<anyhow::Error>,
}

/// A way of serving networks.
pub trait Backend {
    /// Brings what is served in line with `nets`. Networks named in `keep` (their new
    /// definition is invalid) keep whatever serves them now, untouched.
    fn reconcile(
        &mut self,
        nets: &[ManagedNetwork],
        keep: &HashSet<NetworkName>,
        cfg: &Config,
    ) -> impl std::future::Future<Output = Outcome>;
    /// What serves `net` now, for people (a pid, a fragment).
    fn served_by(&self, net: &ManagedNetwork, cfg: &Config) -> String;
    /// Makes every dnsmasq re-read its hosts files and hostsdirs: SIGHUP, or a restart where
    /// SIGHUP is not safe ([`sighup_safe`]).
    fn reread(&mut self, cfg: &Config) -> impl std::future::Future<Output = anyhow::Result<()>>;
    /// The agent is stopping.
    fn shutdown(&mut self) -> impl std::future::Future<Output = ()>;
}

/// The PXE filter's lines for `net`'s dnsmasq, if the filter covers it.
fn filter_lines(cfg: &Config, net: &ManagedNetwork) -> Vec<String> {
    let bridges = if cfg.filter.covers(&net.name) {
        vec![net.bridge.clone()]
    } else {
        Vec::new()
    };
    crate::filter::dnsmasq_lines(&cfg.filter, &bridges, net.is_proxy())
}

/// Whether the filter's deny lines must work for proxy DHCP (`set:` a tag that
/// `dhcp-ignore` matches): some covered network serves proxy DHCP.
pub fn filter_proxy(cfg: &Config, nets: &[ManagedNetwork]) -> bool {
    nets.iter()
        .any(|n| cfg.filter.covers(&n.name) && n.is_proxy())
}

/// Whether dnsmasq may be sent SIGHUP: dnsmasq up to 2.90 crashes on SIGHUP once a `set:`
/// entry of a hosts file has matched, and the filter's deny lines carry `set:` for proxy DHCP.
/// Where it is not safe, a restart does the same work.
pub fn sighup_safe(cfg: &Config) -> bool {
    let tagged = cfg.filter.enabled
        && PxeFilter::new(cfg.filter.clone(), cfg.paths.state_dir.clone())
            .list()
            .is_ok_and(|p| p.deny_line != crate::filter::entry::DenyLine::Plain);
    let version = DnsmasqVersion::of(&cfg.paths.dnsmasq).map_or((0, 0), |v| v.numeric);
    crate::filter::ops::sighup_is_safe(version, tagged)
}

/// Rendering options of `net`'s private instance: the filter's lines and the PXE profile's
/// (already checked when the network was accepted; a profile that broke since then, say a
/// boot file deleted, renders no PXE lines and is logged).
pub fn private_options(cfg: &Config, net: &ManagedNetwork) -> RenderOptions {
    let mut extra_lines = filter_lines(cfg, net);
    extra_lines.extend(pxe_or_log(net, cfg, LinesFor::Private));
    RenderOptions {
        no_ping: cfg.dnsmasq.no_ping,
        extra_lines,
        dns_taken: false,
    }
}

/// Whether a process other than our own instances holds udp/53 on every address (a
/// default-mode dnsmasq, say): then a private instance's DNS socket cannot bind.
pub fn dns_taken_by_others(run_dir: &Path) -> bool {
    let ours = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*run_dir.to_string_lossy()))
    };
    crate::system::ports::udp_holders(Path::new("/proc"), 53)
        .iter()
        .any(|h| !ours(h.pid) && h.addresses.iter().any(|a| a == "0.0.0.0" || a == "::"))
}

fn pxe_or_log(net: &ManagedNetwork, cfg: &Config, mode: LinesFor) -> Vec<String> {
    pxe_lines(net, cfg, mode).unwrap_or_else(|e| {
        tracing::error!(network = %net.name, error = %crate::error::chain(&e), "PXE profile");
        Vec::new()
    })
}

/// Lines of `net`'s system fragment beyond its own: the filter's scope (`tag-if`). The lines
/// the filter needs once per dnsmasq go to the shared fragment ([`system_shared_lines`]).
pub fn system_extra_lines(
    cfg: &Config,
    net: &ManagedNetwork,
    effective: &EffectiveConfig,
) -> Vec<String> {
    let mut lines: Vec<String> = filter_lines(cfg, net)
        .into_iter()
        .filter(|l| l.starts_with("tag-if="))
        .collect();
    // A system that serves TFTP everywhere keeps doing so: no per-bridge enable-tftp.
    let mode = if effective.tftp_everywhere {
        LinesFor::SystemTftpEverywhere
    } else {
        LinesFor::System
    };
    lines.extend(pxe_or_log(net, cfg, mode));
    lines
}

/// Why a network cannot be a system-mode fragment, if it cannot: proxy DHCP's `pxe-service`
/// switches on dnsmasq's PXE handling for every interface, changing what the system dnsmasq
/// answers PXE clients elsewhere.
pub fn system_refusal(net: &ManagedNetwork) -> Option<String> {
    net.is_proxy().then(|| {
        format!(
            "network '{}': a proxy-DHCP PXE profile in the system dnsmasq would change its answers to PXE clients on every other interface; serve it in private mode (mode = \"private\") or use mode = \"dhcp\" in its profile",
            net.name
        )
    })
}

/// Lines needed once in the system dnsmasq for all of `nets` (the filter's hostsdir).
pub fn system_shared_lines(cfg: &Config, nets: &[ManagedNetwork]) -> Vec<String> {
    let mut shared: Vec<String> = Vec::new();
    for net in nets {
        for l in filter_lines(cfg, net) {
            if !l.starts_with("tag-if=") && !shared.contains(&l) {
                shared.push(l);
            }
        }
    }
    shared
}

/// Private instances.
pub struct PrivateBackend {
    /// The instances.
    pub supervisor: Supervisor,
    /// Networks whose bridge's DNS port another dnsmasq may hold (the system dnsmasq, in
    /// per-network mode): their instances serve DHCP only.
    pub dns_elsewhere: HashSet<NetworkName>,
}

impl PrivateBackend {
    /// A backend with no instance yet.
    pub fn new(cfg: &Config) -> anyhow::Result<Self> {
        let run_as = RunAs::lookup(&cfg.dnsmasq.user)?;
        let system_leases = cfg.paths.system_lease_file.clone().unwrap_or_else(|| {
            EffectiveConfig::read(Path::new("/"))
                .lease_file
                .unwrap_or_else(|| crate::dnsmasq::leases::SYSTEM_DEFAULT.into())
        });
        Ok(Self {
            supervisor: Supervisor::new(
                cfg.paths.dnsmasq.clone(),
                cfg.paths.run_dir.clone(),
                cfg.paths.state_dir.clone(),
                run_as,
            )
            .with_lease_seed(system_leases),
            dns_elsewhere: HashSet::new(),
        })
    }
}

impl Backend for PrivateBackend {
    async fn reconcile(
        &mut self,
        nets: &[ManagedNetwork],
        keep: &HashSet<NetworkName>,
        cfg: &Config,
    ) -> Outcome {
        self.supervisor.set_hangup_safe(sighup_safe(cfg));
        let dns_taken = dns_taken_by_others(&cfg.paths.run_dir);
        if dns_taken && nets.iter().any(|n| n.dns) {
            tracing::warn!(
                "another server answers DNS on every address (udp/53): private instances serve \
                 DHCP only; guests resolve through that server"
            );
        }
        let errors = self
            .supervisor
            .reconcile(
                nets,
                |n| RenderOptions {
                    dns_taken: dns_taken || self.dns_elsewhere.contains(&n.name),
                    ..private_options(cfg, n)
                },
                keep,
            )
            .await;
        Outcome {
            changes: Vec::new(),
            errors: errors.into_iter().map(anyhow::Error::from).collect(),
        }
    }

    fn served_by(&self, net: &ManagedNetwork, _cfg: &Config) -> String {
        match self.supervisor.status().get(&net.name) {
            Some(s) => match s.pid {
                Some(pid) => format!("private dnsmasq pid {pid} ({} start(s))", s.starts),
                None => format!(
                    "private dnsmasq restarting (last exit: {})",
                    s.last_exit.as_deref().unwrap_or("none")
                ),
            },
            None => "not started (see errors)".into(),
        }
    }

    async fn reread(&mut self, cfg: &Config) -> anyhow::Result<()> {
        if sighup_safe(cfg) {
            self.supervisor.hangup_all();
        } else {
            self.supervisor.restart_all();
        }
        Ok(())
    }

    async fn shutdown(&mut self) {
        self.supervisor.shutdown().await;
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
}

impl SystemBackend {
    /// A backend talking to `systemd`.
    pub fn new(systemd: Systemd) -> Self {
        Self {
            systemd,
            deferred: std::sync::Mutex::new(Vec::new()),
        }
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
        self.apply_keeping(nets, cfg, scope, &HashSet::new()).await
    }

    /// The common body: `keep` names networks whose files stay exactly as they are.
    async fn apply_keeping(
        &self,
        nets: &[ManagedNetwork],
        cfg: &Config,
        scope: Option<&NetworkName>,
        keep: &HashSet<NetworkName>,
    ) -> anyhow::Result<(Applied, Vec<String>)> {
        // Networks that cannot be fragments keep whatever files they have; the callers report
        // why (system_refusal).
        let mut keep = keep.clone();
        let mut refusals = Vec::new();
        let nets: Vec<ManagedNetwork> = nets
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
        let nets = nets.as_slice();
        let _lock = lock_system(cfg).await?;
        let effective = EffectiveConfig::read(Path::new("/"));
        // With a scope, the hook changes one network: shared lines stay as they are.
        let shared = match scope {
            Some(_) => Vec::new(),
            None => system_shared_lines(cfg, nets),
        };
        let mut want = system_files(nets, cfg, &effective, shared);
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
        for name in &keep {
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
        let plan = plan(&observed, &want);
        for p in &plan.refused {
            tracing::error!(path = %p.display(), "a file virtmasq did not write is in the way; left alone");
        }
        let applied = Apply {
            systemd: &self.systemd,
            unit: &cfg.system.unit,
            flavor: effective.flavor,
            binary: &cfg.paths.dnsmasq,
            restart_timeout: cfg.system.restart_timeout(),
            hangup_safe: sighup_safe(cfg),
        }
        .run(&plan)
        .await?;
        let mut notes: Vec<String> = deferred;
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

/// The files system mode writes for `nets`, and the networks it leaves out with why: the one
/// place that makes them, for the daemon, `sync`, the hook and `render`.
pub fn system_files(
    nets: &[ManagedNetwork],
    cfg: &Config,
    effective: &EffectiveConfig,
    shared_lines: Vec<String>,
) -> crate::system::plan::Desired {
    let version = DnsmasqVersion::of(&cfg.paths.dnsmasq);
    let target = Target {
        conf_dir: &cfg.paths.conf_dir,
        state_dir: &cfg.paths.state_dir,
        effective,
        tag_hosts: version.as_ref().is_some_and(|v| v.at_least(2, 81)),
        shared_lines,
    };
    desired(
        nets,
        &target,
        |n| system_extra_lines(cfg, n, effective),
        bridge_exists,
    )
}

/// Takes the system-mode lock (shared with `sync` and the hook) on the blocking pool: waiting
/// for it must not stall the daemon's single-threaded event loop.
async fn lock_system(cfg: &Config) -> anyhow::Result<FileLock> {
    let path = cfg.paths.state_dir.join("system.lock");
    let lock = tokio::task::spawn_blocking(move || {
        FileLock::acquire(&path, std::time::Duration::from_secs(30))
    })
    .await??;
    Ok(lock)
}

/// Whether a network interface exists now.
pub fn bridge_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

impl Backend for SystemBackend {
    async fn reconcile(
        &mut self,
        nets: &[ManagedNetwork],
        keep: &HashSet<NetworkName>,
        cfg: &Config,
    ) -> Outcome {
        let refused: Vec<anyhow::Error> = nets
            .iter()
            .filter_map(system_refusal)
            .map(|why| anyhow::anyhow!(why))
            .collect();
        let mut outcome = self.reconcile_checked(nets, keep, cfg).await;
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

    async fn reread(&mut self, cfg: &Config) -> anyhow::Result<()> {
        if sighup_safe(cfg) {
            self.systemd.hangup(&cfg.system.unit).await?;
        } else {
            let _lock = lock_system(cfg).await?;
            self.systemd
                .restart_and_wait(&cfg.system.unit, cfg.system.restart_timeout())
                .await?;
        }
        Ok(())
    }

    /// Fragments stay: the system dnsmasq keeps serving the networks while the agent is down.
    async fn shutdown(&mut self) {}
}

impl SystemBackend {
    /// A full reconcile of networks that may be fragments.
    async fn reconcile_checked(
        &mut self,
        nets: &[ManagedNetwork],
        keep: &HashSet<NetworkName>,
        cfg: &Config,
    ) -> Outcome {
        match self.apply_keeping(nets, cfg, None, keep).await {
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
