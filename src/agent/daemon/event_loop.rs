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
    crate::agent::memory::release_free();
    let mut idle = Some(Instant::now() + IDLE_RELEASE);
    // Ready only now: the first reconcile and the filter's first sync are done.
    let _ = notify::ready();
    let mut watchdog = tokio::time::interval(
        notify::watchdog_interval().map_or(std::time::Duration::from_secs(3600), |d| d / 2),
    );
    let mut tick = tokio::time::interval(cfg.libvirt.poll_interval());
    tick.reset();
    let mut due: Option<Instant> = None;
    let mut burst = Burst::default();
    let mut leases = tokio::time::interval(LEASE_VIEW_INTERVAL);
    loop {
        // Only a shared dnsmasq's restarts are worth waiting for more triggers.
        let debounce = match backend.restarts_shared() {
            true => cfg.system.debounce(),
            false => std::time::Duration::ZERO,
        };
        let link_delay = cfg.system.debounce().min(LINK_DELAY);
        let mut trigger = |due: &mut Option<Instant>| {
            *due = Some(burst.event(Instant::now(), debounce, *due));
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
                idle = idle.map(|_| Instant::now() + IDLE_RELEASE);
                trigger(&mut due);
            }
            events = next_links(&mut links) => {
                // A bridge that comes, goes or changes address: follow it quickly (a bridge
                // created again needs its dnsmasq restarted, see dnsmasq::private).
                let lost = events.iter().any(|e| e.index == 0 && e.name.is_none());
                if lost || events.iter().any(|e| e.name.as_ref().is_some_and(|n| bridges.contains(n))) {
                    let soon = Instant::now() + link_delay;
                    due = Some(due.map_or(soon, |d| d.min(soon)));
                }
            }
            _ = tick.tick() => trigger(&mut due),
            _ = watchdog.tick() => { let _ = notify::watchdog(); }
            _ = leases.tick() => {
                svc.lease_view.lock().unwrap_or_else(|p| p.into_inner()).refresh();
            }
            _ = sleep_until(due), if due.is_some() => {
                due = None;
                burst.applied();
                let timed = crate::timing::phase("reconcile");
                bridges = reconcile(&cfg, &mut backend, &svc).await;
                drop(timed);
                crate::agent::memory::release_free();
                idle = Some(Instant::now() + IDLE_RELEASE);
            }
            _ = sleep_until(idle), if idle.is_some() && due.is_none() => {
                idle = None;
                crate::agent::memory::release_idle();
            }
        }
    }
    tracing::info!("stopping");
    let _ = notify::stopping();
    backend.shutdown().await;
    svc.bus.take();
    Ok(())
}

/// How long the daemon must have had nothing to do (no reconcile pending or just done, no
/// request) before it releases the code pages the work touched
/// ([`crate::agent::memory::release_idle`]): a burst of work never pays for faulting them in
/// again.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_millis(500);

/// How often libvirt's lease status files are brought up to date with the lease files.
const LEASE_VIEW_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// When a reconcile is due after a trigger. A trigger after a quiet time is applied at once (a
/// single network start costs one reconcile, with no wait); triggers that follow within the
/// debounce window push the reconcile back until they stop (a script starting networks one by
/// one costs one more reconcile, so one more restart of a system dnsmasq), but never further
/// than [`MAX_WAIT_FACTOR`] windows after the first of them.
#[derive(Debug, Default)]
pub(super) struct Burst {
    /// The last trigger.
    last: Option<Instant>,
    /// The first trigger still waiting for its reconcile.
    first_pending: Option<Instant>,
}

/// A burst is applied at the latest this many debounce windows after its first trigger: 15 s
/// at the default window, longer than a script's loop of 20 `virsh net-start` (6-15 s), so
/// such a loop costs two restarts of a system dnsmasq, one at its start and one at its end.
const MAX_WAIT_FACTOR: u32 = 15;

impl Burst {
    /// A trigger at `now`; returns when the reconcile is due (`due`: the one planned, if any).
    pub(super) fn event(
        &mut self,
        now: Instant,
        window: std::time::Duration,
        due: Option<Instant>,
    ) -> Instant {
        let quiet = self.last.is_none_or(|l| now.duration_since(l) >= window);
        self.last = Some(now);
        if quiet && due.is_none() {
            return now;
        }
        let first = *self.first_pending.get_or_insert(now);
        let latest = first + window * MAX_WAIT_FACTOR;
        // A reconcile planned at once stays at once.
        match due {
            Some(d) if d <= now => d,
            _ => (now + window).min(latest),
        }
    }

    /// The reconcile runs now: what was pending is covered.
    pub(super) fn applied(&mut self) {
        self.first_pending = None;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Without a window (private mode) every trigger is applied at once, pending or not.
    #[test]
    fn no_window_no_wait() {
        let t0 = Instant::now();
        let mut b = Burst::default();
        assert_eq!(b.event(t0, Duration::ZERO, None), t0);
        let t1 = t0 + Duration::from_millis(1);
        assert_eq!(b.event(t1, Duration::ZERO, None), t1);
        assert_eq!(b.event(t1, Duration::ZERO, Some(t1)), t1);
    }

    /// A first trigger is applied at once; a stream of triggers 300 ms apart (a script's loop
    /// of 20 `virsh net-start`) is one more reconcile after they stop, within the cap; a
    /// stream that never stops is applied every 15 windows.
    #[test]
    fn a_burst_costs_one_reconcile_at_once_and_one_after() {
        let window = Duration::from_millis(500);
        let t0 = Instant::now();
        let mut b = Burst::default();
        assert_eq!(b.event(t0, window, None), t0, "leading edge");
        b.applied();
        let mut due = None;
        let mut applied = 1;
        let mut now = t0;
        for _ in 0..19 {
            now += Duration::from_millis(300);
            if due.is_some_and(|d| d <= now) {
                b.applied();
                applied += 1;
                due = None;
            }
            due = Some(b.event(now, window, due));
        }
        assert_eq!(applied, 1, "5.7 s of triggers stay under the cap of 7.5 s");
        assert_eq!(due, Some(now + window), "then once more after the last");
        // After a quiet time, at once again.
        b.applied();
        let later = now + Duration::from_secs(2);
        assert_eq!(b.event(later, window, None), later);
        // A second trigger right after: pushed back, not at once.
        let soon = later + Duration::from_millis(10);
        assert_eq!(b.event(soon, window, None), soon + window);
        // Triggers that never stop: the first pending one is applied by the cap.
        let mut now = soon;
        let mut due = Some(soon + window);
        for _ in 0..40 {
            now += Duration::from_millis(300);
            due = Some(b.event(now, window, due));
        }
        assert_eq!(due, Some(soon + window * MAX_WAIT_FACTOR));
    }
}
