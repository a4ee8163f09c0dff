//! One reconcile of the daemon: libvirt read (bounded), the desired state, the backend, the
//! PXE filter's follow-ups, and the status that `status`, D-Bus and `STATUS=` report.

use std::collections::HashSet;
use std::sync::Arc;

use super::Services;
use crate::agent::backend::{filter_proxy, Backend};
use crate::agent::dbus;
use crate::agent::desired::{desired, Desired};
use crate::agent::lease_view::Source;
use crate::agent::status::{snapshot, FilterStatus, NetworkStatus, SkippedStatus};
use crate::config::Config;
use crate::filter::PxeFilter;
use crate::libvirt::source::{list_networks, LibvirtError, LibvirtNetwork};
use crate::model::NetworkName;
use crate::systemd::notify;

/// How long one read of libvirt's networks may take.
pub(super) const LIBVIRT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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

/// One reconcile; updates the status and returns the bridges served and those the backend
/// watches ([`Backend::watched_bridges`]), for the link watcher.
pub(super) async fn reconcile<B: Backend>(
    cfg: &Config,
    backend: &mut B,
    svc: &Services,
) -> HashSet<String> {
    let nets = match read_libvirt(&cfg.libvirt.uri).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "libvirt not read; what is served stays as it is");
            record_errors(svc, vec![e.to_string()]);
            let served = snapshot(&svc.status).networks.into_iter();
            return (served.map(|n| n.bridge))
                .chain(backend.watched_bridges(cfg))
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
    let sources = want
        .served
        .iter()
        .filter_map(|s| {
            let file = backend.lease_file(&s.network, cfg)?;
            Some(Source::of(&s.network, file))
        })
        .collect();
    svc.lease_view
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .follow(sources);
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
        // The source's state is the follower's to report.
        st.filter = FilterStatus {
            source: st.filter.source.take(),
            ..filter
        };
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
        if let Err(e) = dbus::announce_networks(bus.connection(), names).await {
            tracing::warn!(error = %e, "NetworksChanged not sent");
        }
    }
    let served = want.served.iter().map(|s| s.network.bridge.to_string());
    served.chain(backend.watched_bridges(cfg)).collect()
}

pub(super) fn record_errors(svc: &Services, errors: Vec<String>) {
    let mut st = svc.status.lock().unwrap_or_else(|p| p.into_inner());
    st.last_errors = errors;
}

/// Deny lines must set the tag that `dhcp-ignore` matches wherever a covered network serves
/// proxy DHCP (`ignore` alone does not stop proxy replies): switch their form when that changes.
pub(super) async fn follow_proxy(
    cfg: &Config,
    managed: &[crate::model::ManagedNetwork],
    filter: &Arc<PxeFilter>,
) {
    let proxy = filter_proxy(cfg, managed);
    let tagged = filter
        .list_cached()
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
pub(super) async fn compact_filter<B: Backend>(
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

/// The filter's counts for the status: from memory unless the stored policy changed since
/// the last read, so that every reconcile after a filter change does not parse it again.
pub(super) fn filter_status(cfg: &Config, filter: &PxeFilter) -> FilterStatus {
    match filter.list_cached() {
        Ok(p) => FilterStatus {
            enabled: cfg.filter.enabled,
            allowed: p.allow.len() as u32,
            denied: p.deny.len() as u32,
            unknown: format!("{:?}", p.unknown).to_lowercase(),
            source: None,
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
