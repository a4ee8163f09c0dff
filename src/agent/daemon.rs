//! The daemon loop: decide the mode, read networks from libvirt, reconcile through the mode's
//! backend, follow SIGHUP (reload configuration; a broken one is reported and the old state
//! keeps serving) and SIGUSR1 (reconcile now), and stop cleanly when `shutdown` completes.
//! Triggers are debounced: a burst of changes within `system.debounce_ms` is one reconcile,
//! so one restart of a system dnsmasq.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::backend::{filter_proxy, Backend, PrivateBackend, SystemBackend};
use super::dbus::{self, Agent, Request};
use super::desired::{desired, Desired};
use super::per_network::PerNetworkBackend;
use super::status::{snapshot, FilterStatus, NetworkStatus, SharedStatus, SkippedStatus, Status};
use crate::config::Config;
use crate::filter::PxeFilter;
use crate::http::SharedRules;
use crate::libvirt::source::{list_networks, LibvirtError, LibvirtNetwork};
use crate::model::Mode;
use crate::model::NetworkName;
use crate::netlink::{LinkEvent, Watcher};
use crate::system::detect::detect;
use crate::system::version::DnsmasqVersion;
use crate::systemd::notify;

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

/// What the loop shares with the D-Bus object and reports through.
struct Services {
    /// The status readers see.
    status: SharedStatus,
    /// Requests from D-Bus.
    requests: mpsc::UnboundedReceiver<Request>,
    /// The bus connection, when there is a system bus.
    bus: Option<zbus::Connection>,
    /// The PXE filter.
    filter: Arc<PxeFilter>,
    /// The iPXE script rules the HTTP endpoint serves, replaced on SIGHUP.
    http_rules: Option<Arc<SharedRules>>,
    /// Dropped to stop the HTTP endpoint.
    _http_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Runs until `shutdown` completes.
pub async fn run(opts: DaemonOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let cfg = opts.load()?;
    let (detection, systemd) = detect(&cfg, std::path::Path::new("/"), Vec::new()).await;
    let mode = detection.decision.mode;
    tracing::info!(?mode, reasons = ?detection.decision.reasons, "mode decided");
    for c in &detection.conflicts {
        tracing::warn!(code = %c.code, "{}", c.message);
    }
    crate::fsutil::ensure_dir(&cfg.paths.run_dir, 0o755)
        .with_context(|| format!("creating {}", cfg.paths.run_dir.display()))?;
    // Before anything is written or started: a second daemon must change nothing.
    let _lock = super::lock::take(&cfg.paths.run_dir)?;
    let filter = Arc::new(PxeFilter::new(
        cfg.filter.clone(),
        cfg.paths.state_dir.clone(),
    ));
    if cfg.filter.enabled {
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
            Ok(nets) => filter_proxy(&cfg, &desired(&nets, &cfg).networks()),
            Err(_) => false,
        };
        // Stale entries go before any dnsmasq reads the directory: dnsmasq never forgets an
        // entry whose file is deleted while it runs.
        let f = filter.clone();
        let report = tokio::task::spawn_blocking(move || f.purge_and_rebuild(proxy))
            .await?
            .context("the PXE filter's first sync failed; nothing was started")?;
        tracing::info!(?report, "PXE filter synced");
    }
    let status = Arc::new(Mutex::new(Status::new(mode, "daemon")));
    let (tx, requests) = mpsc::unbounded_channel();
    let agent = Agent {
        requests: tx,
        status: status.clone(),
        filter: filter.clone(),
    };
    let bus = match dbus::serve(agent, None).await {
        Ok(conn) => Some(conn),
        Err(zbus::Error::NameTaken) => {
            anyhow::bail!(
                "another virtmasq daemon already owns {} on the system bus",
                dbus::NAME
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "no D-Bus API: the system bus is not reachable");
            None
        }
    };
    let (http_rules, http_stop) = start_http(&cfg).await?;
    // SIGUSR1 would kill the process until a handler exists: have one before anyone can read
    // the pid file and signal us.
    let _usr1 = signal(SignalKind::user_defined1())?;
    let pid = super::client::pid_file(&cfg);
    crate::fsutil::write_atomic(&pid, format!("{}\n", std::process::id()).as_bytes(), 0o644)
        .with_context(|| format!("writing {}", pid.display()))?;
    let services = Services {
        status,
        requests,
        bus,
        filter,
        http_rules,
        _http_stop: http_stop,
    };
    // No early return from here on: the pid file goes whatever happens.
    let result = match mode {
        Mode::System => match systemd {
            Some(systemd) => {
                let backend = PerNetworkBackend::new(SystemBackend::new(systemd), &cfg);
                run_with(backend, cfg, &opts, services, shutdown).await
            }
            None => Err(anyhow::anyhow!(
                "system mode needs systemd on the system bus"
            )),
        },
        Mode::Private => {
            retire_system_fragments(&cfg, systemd).await;
            match PrivateBackend::new(&cfg) {
                Ok(backend) => run_with(backend, cfg, &opts, services, shutdown).await,
                Err(e) => Err(e),
            }
        }
    };
    let _ = std::fs::remove_file(&pid);
    let _ = notify::stopping();
    result
}

/// In private mode, fragments virtmasq wrote for the system dnsmasq (an earlier run in system
/// mode) must go: with them the system dnsmasq keeps serving the networks, beside or instead
/// of their private instances. Removed as a transaction (checked, restarted if it runs).
async fn retire_system_fragments(cfg: &Config, systemd: Option<crate::systemd::Systemd>) {
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
        Some(systemd) => SystemBackend::new(systemd)
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

async fn run_with<B: Backend>(
    mut backend: B,
    mut cfg: Config,
    opts: &DaemonOptions,
    mut svc: Services,
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
    let mut bridges = reconcile(&cfg, &mut backend, &svc).await;
    // Ready only now: the first reconcile and the filter's first sync are done.
    let _ = notify::ready();
    let mut watchdog = tokio::time::interval(
        notify::watchdog_interval().map_or(std::time::Duration::from_secs(3600), |d| d / 2),
    );
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
                        let mut new = new;
                        for what in needs_restart(&cfg, &new) {
                            tracing::warn!("{what} changed: it takes effect when the daemon restarts");
                        }
                        // What was set up at start stays as it was until a restart.
                        new.mode = cfg.mode;
                        new.paths = cfg.paths.clone();
                        new.dnsmasq.user = cfg.dnsmasq.user.clone();
                        new.filter = cfg.filter.clone();
                        (new.http.enabled, new.http.address, new.http.port) =
                            (cfg.http.enabled, cfg.http.address, cfg.http.port);
                        if let (Some(shared), Ok(rules)) = (&svc.http_rules, new.http.script_rules()) {
                            shared.replace(rules);
                        }
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
            Some(Request::Reconcile { why }) = svc.requests.recv() => {
                tracing::info!(%why, "reconcile requested");
                trigger(&mut due);
            }
            events = next_links(&mut links) => {
                // A bridge that comes, goes or changes address: follow it quickly (a bridge
                // created again needs its dnsmasq restarted, see dnsmasq::private).
                let lost = events.iter().any(|e| e.index == 0 && e.name.is_none());
                if lost || events.iter().any(|e| e.name.as_ref().is_some_and(|n| bridges.contains(n))) {
                    let soon = Instant::now() + debounce.min(LINK_DELAY);
                    due = Some(due.map_or(soon, |d| d.min(soon)));
                }
            }
            _ = tick.tick() => trigger(&mut due),
            _ = watchdog.tick() => { let _ = notify::watchdog(); }
            _ = sleep_until(due), if due.is_some() => {
                due = None;
                bridges = reconcile(&cfg, &mut backend, &svc).await;
            }
        }
    }
    tracing::info!("stopping");
    let _ = notify::stopping();
    backend.shutdown().await;
    svc.bus.take();
    Ok(())
}

/// The settings a SIGHUP cannot apply (they shape what the daemon set up at start).
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.mode != new.mode {
        out.push("mode");
    }
    if toml::to_string(&old.paths).ok() != toml::to_string(&new.paths).ok() {
        out.push("[paths]");
    }
    if old.dnsmasq.user != new.dnsmasq.user {
        out.push("dnsmasq.user");
    }
    if toml::to_string(&old.filter).ok() != toml::to_string(&new.filter).ok() {
        out.push("[filter]");
    }
    let listen = |c: &Config| (c.http.enabled, c.http.listen_addr());
    if listen(old) != listen(new) {
        out.push("[http] enabled, address or port");
    }
    out
}

/// How long one read of libvirt's networks may take.
const LIBVIRT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The longest wait after a link event on a managed bridge.
const LINK_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// The next batch of link events, or never when there is no watcher.
async fn next_links(watcher: &mut Option<Watcher>) -> Vec<LinkEvent> {
    match watcher {
        Some(w) => match w.next().await {
            Ok(events) => events,
            // The kernel dropped events (receive buffer full): the socket still works. Report a
            // wildcard event so the caller reconciles instead of trusting what it saw.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                tracing::warn!("netlink events were dropped; reconciling to catch up");
                vec![LinkEvent {
                    kind: crate::netlink::EventKind::NewLink,
                    index: 0,
                    name: None,
                }]
            }
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
    let read = tokio::task::spawn_blocking(move || list_networks(&uri));
    // A hung libvirtd must not wedge the loop (no reconciles, no watchdog pings).
    match tokio::time::timeout(LIBVIRT_TIMEOUT, read).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(LibvirtError::Call {
            uri: what,
            what: "list networks".into(),
            message: e.to_string(),
        }),
        Err(_) => Err(LibvirtError::Call {
            uri: what,
            what: "list networks".into(),
            message: format!("no answer within {LIBVIRT_TIMEOUT:?}"),
        }),
    }
}

/// One reconcile; updates the status and returns the bridges served, for the link watcher.
async fn reconcile<B: Backend>(cfg: &Config, backend: &mut B, svc: &Services) -> HashSet<String> {
    let nets = match read_libvirt(&cfg.libvirt.uri).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "libvirt not read; what is served stays as it is");
            record_errors(svc, vec![e.to_string()]);
            return snapshot(&svc.status)
                .networks
                .into_iter()
                .map(|n| n.bridge)
                .collect();
        }
    };
    let want = desired(&nets, cfg);
    report(&want);
    let managed = want.networks();
    // A network that turned invalid keeps being served as before: bad input loses nothing.
    let keep: HashSet<NetworkName> = want
        .skipped
        .iter()
        .filter(|(_, skip)| skip.is_error())
        .filter_map(|(name, _)| name.parse().ok())
        .collect();
    if cfg.filter.enabled {
        follow_proxy(cfg, &managed, &svc.filter).await;
    }
    let outcome = backend.reconcile(&managed, &keep, cfg).await;
    for c in &outcome.changes {
        tracing::info!("{c}");
    }
    let mut errors: Vec<String> = outcome.errors.iter().map(|e| format!("{e:#}")).collect();
    for e in &errors {
        tracing::error!(error = %e, "reconcile");
    }
    if cfg.filter.enabled {
        if let Err(e) = compact_filter(cfg, backend, &svc.filter).await {
            errors.push(format!("{e:#}"));
        }
    }
    let networks: Vec<NetworkStatus> = want
        .served
        .iter()
        .map(|s| NetworkStatus {
            name: s.network.name.to_string(),
            bridge: s.network.bridge.to_string(),
            intent: s.source,
            served_by: backend.served_by(&s.network, cfg),
        })
        .collect();
    let filter = filter_status(cfg, &svc.filter);
    let (changed, summary) = {
        let mut st = svc.status.lock().unwrap_or_else(|p| p.into_inner());
        let before: Vec<String> = st.networks.iter().map(|n| n.name.clone()).collect();
        st.networks = networks;
        st.skipped = want
            .skipped
            .iter()
            .map(|(name, skip)| SkippedStatus {
                name: name.escape_debug().to_string(),
                reason: skip.to_string(),
                error: skip.is_error(),
            })
            .collect();
        st.filter = filter;
        st.reconciles += 1;
        st.last_reconcile = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
        st.last_errors = errors;
        let after: Vec<String> = st.networks.iter().map(|n| n.name.clone()).collect();
        (before != after, st.summary())
    };
    let _ = notify::status(&summary);
    if let (true, Some(bus)) = (changed, &svc.bus) {
        let names = snapshot(&svc.status)
            .networks
            .into_iter()
            .map(|n| n.name)
            .collect();
        if let Err(e) = dbus::announce_networks(bus, names).await {
            tracing::warn!(error = %e, "NetworksChanged not sent");
        }
    }
    want.served
        .iter()
        .map(|s| s.network.bridge.to_string())
        .collect()
}

fn record_errors(svc: &Services, errors: Vec<String>) {
    let mut st = svc.status.lock().unwrap_or_else(|p| p.into_inner());
    st.last_errors = errors;
}

/// Deny lines must set the tag that `dhcp-ignore` matches wherever a covered network serves
/// proxy DHCP (`ignore` alone does not stop proxy replies): switch their form when that changes.
async fn follow_proxy(
    cfg: &Config,
    managed: &[crate::model::ManagedNetwork],
    filter: &Arc<PxeFilter>,
) {
    let proxy = filter_proxy(cfg, managed);
    let tagged = filter
        .list()
        .is_ok_and(|p| p.deny_line != crate::filter::entry::DenyLine::Plain);
    if proxy == tagged {
        return;
    }
    let f = filter.clone();
    match tokio::task::spawn_blocking(move || f.set_proxy(proxy)).await {
        Ok(Ok(report)) => tracing::info!(
            proxy,
            written = report.applied.written,
            "PXE filter deny lines rewritten"
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %crate::error::chain(&e), "PXE filter deny lines not rewritten")
        }
        Err(e) => tracing::error!(error = %e, "PXE filter deny lines not rewritten"),
    }
}

/// dnsmasq keeps every re-read hostsdir entry until SIGHUP: once enough rewrites piled up,
/// make every dnsmasq re-read the directory.
async fn compact_filter<B: Backend>(
    cfg: &Config,
    backend: &mut B,
    filter: &PxeFilter,
) -> anyhow::Result<()> {
    if filter.needs_compaction()? {
        backend.reread(cfg).await?;
        filter.compacted()?;
        tracing::info!("PXE filter compacted (dnsmasq re-read its hostsdir)");
    }
    Ok(())
}

fn filter_status(cfg: &Config, filter: &PxeFilter) -> FilterStatus {
    match filter.list() {
        Ok(p) => FilterStatus {
            enabled: cfg.filter.enabled,
            allowed: p.allow.len() as u32,
            denied: p.deny.len() as u32,
            unknown: format!("{:?}", p.unknown).to_lowercase(),
        },
        Err(e) => {
            tracing::warn!(error = %e, "PXE filter state not read");
            FilterStatus {
                enabled: cfg.filter.enabled,
                ..FilterStatus::default()
            }
        }
    }
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
