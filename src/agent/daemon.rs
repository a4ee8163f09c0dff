//! The daemon loop: decide the mode, read networks from libvirt, reconcile through the mode's
//! backend, follow SIGHUP (reload configuration; a broken one is reported and the old state
//! keeps serving) and SIGUSR1 (reconcile now), and stop cleanly when `shutdown` completes.
//! In system mode triggers are debounced: a burst of changes within `system.debounce_ms` is
//! one more reconcile, so one more restart of the system dnsmasq; private mode applies each.

use std::future::Future;
use std::path::PathBuf;

use crate::host::Host;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::backend::{filter_proxy, PrivateBackend, SystemBackend};
use super::dbus::{self, Agent, Request};
use super::desired::desired;
use super::per_network::PerNetworkBackend;
use super::status::{SharedStatus, Status};
use crate::config::Config;
use crate::filter::PxeFilter;
use crate::http::SharedRules;
use crate::model::Mode;
use crate::system::detect::detect;
use crate::system::version::DnsmasqVersion;
use crate::systemd::notify;

mod event_loop;
mod reconcile;

use event_loop::run_with;
pub use reconcile::{read_libvirt, report};

/// What the daemon needs to start.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The configuration file, re-read on SIGHUP.
    pub config_path: PathBuf,
    /// Whether the file was named explicitly (then it must exist).
    pub config_explicit: bool,
    /// A libvirt URI that overrides the configuration's.
    pub libvirt_uri: Option<String>,
    /// The root, sysfs and procfs the daemon reads: [`Host::real`] on a host; tests give trees
    /// of their own.
    pub host: Host,
    /// The bus the D-Bus API is served on: None for the system bus.
    pub bus_address: Option<String>,
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

/// What the loop shares with the D-Bus object and reports through.
struct Services {
    /// The status readers see.
    status: SharedStatus,
    /// Requests from D-Bus.
    requests: mpsc::UnboundedReceiver<Request>,
    /// The D-Bus API, when there is a system bus.
    bus: Option<dbus::Served>,
    /// The PXE filter.
    filter: Arc<PxeFilter>,
    /// The iPXE script rules the HTTP endpoint serves, replaced on SIGHUP.
    http_rules: Option<Arc<SharedRules>>,
    /// Dropped to stop the HTTP endpoint.
    _http_stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// libvirt's lease status files of the networks served.
    lease_view: std::sync::Mutex<super::lease_view::LeaseView>,
}

/// Runs until `shutdown` completes.
pub async fn run(opts: DaemonOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    super::memory::one_arena();
    let cfg = opts.load()?;
    let (detection, systemd) = detect(&cfg, &opts.host, Vec::new()).await;
    let mode = detection.decision.mode;
    tracing::info!(?mode, reasons = ?detection.decision.reasons, "mode decided");
    for c in &detection.conflicts {
        tracing::warn!(code = %c.code, "{}", c.message);
    }
    crate::fsutil::ensure_dir(&cfg.paths.run_dir, 0o755)
        .with_context(|| format!("creating {}", cfg.paths.run_dir.display()))?;
    // Before anything is written or started: a second daemon must change nothing.
    let _lock = super::lock::take(&cfg.paths.run_dir)?;
    crate::system::recover::at_start(&cfg).await?;
    // A change over D-Bus or from etcd returns once the policy is durable and the files are
    // written; the hostsdir's syncfs follows off the caller's path.
    let filter = Arc::new(
        PxeFilter::new(cfg.filter.clone(), cfg.paths.state_dir.clone()).with_deferred_flush(),
    );
    if cfg.filter.enabled {
        first_filter_sync(&cfg, &filter).await?;
    }
    let status = Arc::new(Mutex::new(Status::new(mode, "daemon")));
    let (tx, requests) = mpsc::unbounded_channel();
    let agent = Agent {
        requests: tx,
        status: status.clone(),
        filter: filter.clone(),
    };
    let bus = serve_bus(agent, opts.bus_address.as_deref()).await?;
    let (http_rules, http_stop) = start_http(&cfg).await?;
    // SIGUSR1 would kill the process until a handler exists: have one before anyone can read
    // the pid file and signal us.
    let _usr1 = signal(SignalKind::user_defined1())?;
    let pid = super::client::pid_file(&cfg);
    crate::fsutil::write_atomic(&pid, format!("{}\n", std::process::id()).as_bytes(), 0o644)
        .with_context(|| format!("writing {}", pid.display()))?;
    let _source = crate::filter::etcd::spawn(
        &cfg.filter.source,
        filter.clone(),
        &cfg.paths.state_dir,
        source_reporter(status.clone()),
        http_rules
            .clone()
            .map(|shared| -> crate::filter::etcd::IpxeSink {
                Box::new(move |overlay| shared.set_overlay(overlay))
            }),
    );
    let services = Services {
        status,
        requests,
        bus,
        filter: filter.clone(),
        http_rules,
        _http_stop: http_stop,
        lease_view: std::sync::Mutex::new(super::lease_view::LeaseView::new(
            cfg.libvirt.lease_status_dir.clone(),
        )),
    };
    // No early return from here on: the pid file goes whatever happens.
    let result = match mode {
        Mode::System => match systemd {
            Some(systemd) => {
                let backend = PerNetworkBackend::new(
                    SystemBackend::new(systemd, opts.host.clone()).lingering(),
                    &cfg,
                );
                run_with(backend, cfg, &opts, services, shutdown).await
            }
            None => Err(anyhow::anyhow!(
                "system mode needs systemd on the system bus"
            )),
        },
        Mode::Private => {
            retire_system_fragments(&cfg, systemd, &opts.host).await;
            match PrivateBackend::new(&cfg, opts.host.clone()) {
                Ok(backend) => run_with(backend, cfg, &opts, services, shutdown).await,
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = filter.flush() {
        tracing::warn!(error = %crate::error::chain(&e), "PXE filter: the last sync of the hostsdir failed; the next start repairs it");
    }
    let _ = std::fs::remove_file(&pid);
    let _ = notify::stopping();
    result
}

/// How the filter's source (etcd) reports: into the status, and systemd's STATUS= at once
/// (a source going stale must not wait for the next reconcile to be seen).
fn source_reporter(
    status: SharedStatus,
) -> Box<dyn Fn(&crate::filter::etcd::SourceStatus) + Send + Sync> {
    Box::new(move |src| {
        let summary = {
            let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
            st.filter.source = Some(src.clone());
            st.summary()
        };
        let _ = notify::status(&summary);
    })
}

/// The PXE filter's first sync, on a dnsmasq that can read its entries.
async fn first_filter_sync(cfg: &Config, filter: &Arc<PxeFilter>) -> anyhow::Result<()> {
    let version = DnsmasqVersion::of(&cfg.paths.dnsmasq);
    if !version.as_ref().is_some_and(|v| v.at_least(2, 81)) {
        anyhow::bail!(
            "the PXE filter needs dnsmasq 2.81 or later (tags on dhcp-host entries); {} is {}",
            cfg.paths.dnsmasq.display(),
            version.map_or("not usable".into(), |v| v.version)
        );
    }
    // Deny lines carry a tag only where proxy DHCP is served: read libvirt once to know.
    let proxy = match read_libvirt(&cfg.libvirt.uri).await {
        Ok(nets) => filter_proxy(cfg, &desired(&nets, cfg).networks()),
        Err(_) => false,
    };
    // Stale entries go before any dnsmasq reads the directory: dnsmasq never forgets an
    // entry whose file is deleted while it runs.
    let f = filter.clone();
    let report = tokio::task::spawn_blocking(move || f.purge_and_rebuild(proxy))
        .await?
        .context("the PXE filter's first sync failed; nothing was started")?;
    tracing::info!(?report, "PXE filter synced");
    Ok(())
}

/// The D-Bus API on `address` (None: the system bus); without a bus the daemon runs on, but a
/// second daemon owning the name is an error.
async fn serve_bus(agent: Agent, address: Option<&str>) -> anyhow::Result<Option<dbus::Served>> {
    match dbus::serve(agent, address).await {
        Ok(served) => Ok(Some(served)),
        Err(zbus::Error::NameTaken) => {
            anyhow::bail!(
                "another virtmasq daemon already owns {} on the system bus",
                dbus::NAME
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "no D-Bus API: the system bus is not reachable");
            Ok(None)
        }
    }
}

/// In private mode, fragments virtmasq wrote for the system dnsmasq (an earlier run in system
/// mode) must go: with them the system dnsmasq keeps serving the networks, beside or instead
/// of their private instances. Removed as a transaction (checked, restarted if it runs).
async fn retire_system_fragments(
    cfg: &Config,
    systemd: Option<crate::systemd::Systemd>,
    host: &Host,
) {
    let observed = match crate::system::apply::observe(
        &cfg.paths.conf_dir,
        &cfg.paths.state_dir.join("system"),
    ) {
        Ok(o) => o,
        Err(_) => return,
    };
    if observed.fragments.is_empty() {
        return;
    }
    let result = match systemd {
        Some(systemd) => SystemBackend::new(systemd, host.clone())
            .apply(&[], cfg)
            .await
            .map(|_| ()),
        None => observed
            .fragments
            .keys()
            .try_for_each(std::fs::remove_file)
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => tracing::info!(
            "removed virtmasq's system-mode fragments: private mode serves its networks now"
        ),
        Err(e) => tracing::error!(
            error = %format!("{e:#}"),
            "virtmasq's system-mode fragments could not be removed; the system dnsmasq may still serve its networks"
        ),
    }
}

/// Starts the iPXE script endpoint when configured; an address that cannot be bound is an
/// error (the profiles that send clients there would fail).
async fn start_http(
    cfg: &Config,
) -> anyhow::Result<(
    Option<Arc<SharedRules>>,
    Option<tokio::sync::oneshot::Sender<()>>,
)> {
    if !cfg.http.enabled {
        return Ok((None, None));
    }
    let addr = cfg.http.listen_addr();
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for iPXE scripts ([http] address, port)")
    })?;
    let rules = Arc::new(SharedRules::new(cfg.http.script_rules()?));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = rules.clone();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = crate::http::serve(listener, served, shutdown).await {
            tracing::error!(error = %e, "the iPXE script endpoint failed");
        }
    });
    Ok((Some(rules), Some(stop)))
}
