//! The daemon's one event loop: libvirt polls, link events, SIGHUP reloads, SIGUSR1, D-Bus
//! requests and the debounce that turns a burst of them into one reconcile.

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use super::reconcile::reconcile;
use super::{DaemonOptions, Services};
use crate::agent::backend::Backend;
use crate::agent::dbus::Request;
use crate::config::Config;
use crate::netlink::{LinkEvent, Watcher};
use crate::systemd::notify;

pub(super) async fn run_with<B: Backend>(
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
pub(super) fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
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

/// The longest wait after a link event on a managed bridge.
pub(super) const LINK_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// The next batch of link events, or never when there is no watcher.
pub(super) async fn next_links(watcher: &mut Option<Watcher>) -> Vec<LinkEvent> {
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

pub(super) async fn sleep_until(due: Option<Instant>) {
    if let Some(at) = due {
        tokio::time::sleep_until(at).await;
    }
}
