//! The daemon loop: decide the mode, read networks from libvirt, reconcile through the mode's
//! backend, follow SIGHUP (reload configuration; a broken one is reported and the old state
//! keeps serving) and SIGUSR1 (reconcile now), and stop cleanly when `shutdown` completes.
//! Triggers are debounced: a burst of changes within `system.debounce_ms` is one reconcile,
//! so one restart of a system dnsmasq.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use super::backend::{Backend, PrivateBackend, SystemBackend};
use super::desired::{desired, Desired};
use crate::config::Config;
use crate::libvirt::source::{list_networks, LibvirtError, LibvirtNetwork};
use crate::netlink::{LinkEvent, Watcher};
use crate::system::decide::Mode;
use crate::system::detect::detect;

/// What the daemon needs to start.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The configuration file, re-read on SIGHUP.
    pub config_path: PathBuf,
    /// Whether the file was named explicitly (then it must exist).
    pub config_explicit: bool,
    /// A libvirt URI that overrides the configuration's.
    pub libvirt_uri: Option<String>,
}

impl DaemonOptions {
    /// Loads the configuration with the command line's overrides.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut cfg = Config::load_or_default(&self.config_path, self.config_explicit)?;
        if let Some(uri) = &self.libvirt_uri {
            cfg.libvirt.uri = uri.clone();
        }
        Ok(cfg)
    }
}

/// The pid file of the running daemon (the hook signals it).
pub fn pid_file(cfg: &Config) -> PathBuf {
    cfg.paths.run_dir.join("virtmasq.pid")
}

/// Runs until `shutdown` completes.
pub async fn run(opts: DaemonOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let cfg = opts.load()?;
    let (detection, systemd) = detect(&cfg, std::path::Path::new("/"), Vec::new()).await;
    tracing::info!(mode = ?detection.decision.mode, reasons = ?detection.decision.reasons, "mode decided");
    for c in &detection.conflicts {
        tracing::warn!(code = %c.code, "{}", c.message);
    }
    crate::fsutil::ensure_dir(&cfg.paths.run_dir, 0o755)
        .with_context(|| format!("creating {}", cfg.paths.run_dir.display()))?;
    let pid = pid_file(&cfg);
    crate::fsutil::write_atomic(&pid, format!("{}\n", std::process::id()).as_bytes(), 0o644)
        .with_context(|| format!("writing {}", pid.display()))?;
    let result = match detection.decision.mode {
        Mode::System => {
            let systemd = systemd.context("system mode needs systemd on the system bus")?;
            run_with(SystemBackend { systemd }, cfg, &opts, shutdown).await
        }
        Mode::Private => {
            let backend = PrivateBackend::new(&cfg)?;
            run_with(backend, cfg, &opts, shutdown).await
        }
    };
    let _ = std::fs::remove_file(&pid);
    result
}

async fn run_with<B: Backend>(
    mut backend: B,
    mut cfg: Config,
    opts: &DaemonOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut hangup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut links = match Watcher::new() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "no netlink events: bridges are followed by polling only");
            None
        }
    };
    tokio::pin!(shutdown);
    let mut bridges = reconcile(&cfg, &mut backend).await;
    let mut tick = tokio::time::interval(cfg.libvirt.poll_interval());
    tick.reset();
    let mut due: Option<Instant> = None;
    loop {
        let debounce = cfg.system.debounce();
        let trigger = |due: &mut Option<Instant>| {
            due.get_or_insert_with(|| Instant::now() + debounce);
        };
        tokio::select! {
            _ = &mut shutdown => break,
            _ = hangup.recv() => {
                match opts.load() {
                    Ok(new) => {
                        tracing::info!("configuration reloaded");
                        cfg = new;
                        tick = tokio::time::interval(cfg.libvirt.poll_interval());
                        tick.reset();
                        trigger(&mut due);
                    }
                    Err(e) => tracing::error!(
                        error = %format!("{e:#}"),
                        "configuration not reloaded; the previous one stays in force"
                    ),
                }
            }
            _ = usr1.recv() => trigger(&mut due),
            events = next_links(&mut links) => {
                // A bridge that comes, goes or changes address: follow it quickly (a bridge
                // created again needs its dnsmasq restarted, see dnsmasq::private).
                if events.iter().any(|e| e.name.as_ref().is_some_and(|n| bridges.contains(n))) {
                    let soon = Instant::now() + debounce.min(LINK_DELAY);
                    due = Some(due.map_or(soon, |d| d.min(soon)));
                }
            }
            _ = tick.tick() => trigger(&mut due),
            _ = sleep_until(due), if due.is_some() => {
                due = None;
                bridges = reconcile(&cfg, &mut backend).await;
            }
        }
    }
    tracing::info!("stopping");
    backend.shutdown().await;
    Ok(())
}

/// The longest wait after a link event on a managed bridge.
const LINK_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// The next batch of link events, or never when there is no watcher.
async fn next_links(watcher: &mut Option<Watcher>) -> Vec<LinkEvent> {
    match watcher {
        Some(w) => match w.next().await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "netlink socket failed; bridges followed by polling only");
                *watcher = None;
                Vec::new()
            }
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(at) = due {
        tokio::time::sleep_until(at).await;
    }
}

/// Reads libvirt off the event loop (the calls block).
pub async fn read_libvirt(uri: &str) -> Result<Vec<LibvirtNetwork>, LibvirtError> {
    let uri = uri.to_owned();
    let what = uri.clone();
    tokio::task::spawn_blocking(move || list_networks(&uri))
        .await
        .unwrap_or_else(|e| {
            Err(LibvirtError::Call {
                uri: what,
                what: "list networks".into(),
                message: e.to_string(),
            })
        })
}

/// One reconcile; returns the bridges of the networks now served, for the link watcher.
async fn reconcile<B: Backend>(cfg: &Config, backend: &mut B) -> HashSet<String> {
    let nets = match read_libvirt(&cfg.libvirt.uri).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "libvirt not read; what is served stays as it is");
            return HashSet::new();
        }
    };
    let want = desired(&nets, cfg);
    report(&want);
    let outcome = backend.reconcile(&want.networks(), cfg).await;
    for c in &outcome.changes {
        tracing::info!("{c}");
    }
    for e in &outcome.errors {
        tracing::error!(error = %format!("{e:#}"), "reconcile");
    }
    want.served
        .iter()
        .map(|s| s.network.bridge.to_string())
        .collect()
}

/// Logs the networks not served; invalid ones are errors.
pub fn report(want: &Desired) {
    for (name, skip) in &want.skipped {
        if skip.is_error() {
            tracing::error!(network = %name.escape_debug(), "not served: {skip}");
        } else {
            tracing::debug!(network = %name.escape_debug(), "not served: {skip}");
        }
    }
}
