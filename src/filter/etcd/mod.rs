//! The filter's policy followed from etcd (`[filter.source] kind = "etcd"`).
//!
//! [`Follower::run`] reads the whole prefix at one revision (in pages, every page at that
//! revision) and applies it to the hostsdir through [`PxeFilter::replace_policy`], then
//! watches the prefix from the next revision and applies each response's changes through
//! [`PxeFilter::apply_batch`]. A lost connection is retried with a back-off and the watch
//! resumes after the last revision applied; a compacted revision (the history the watch
//! needs is gone) starts over with a full read.
//!
//! Fail-static: every change lands in the filter's state directory before its files, so while
//! etcd is unreachable, and after a restart without it, the last policy applied is served.
//! The follower reports its state ([`SourceStatus`]): in contact, or stale since when.
//!
//! The same prefix may hold the iPXE endpoint's rules ([`layout`]); the follower hands them to
//! the daemon's endpoint through an [`IpxeSink`] and keeps the last ones in the state
//! directory, served again after a restart without etcd.

mod client;
mod error;
pub mod layers;
pub mod layout;
mod record;

pub use client::write;
pub use error::EtcdError;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use etcd_client::{EventType, WatchOptions, WatchResponse, WatchStream};
use serde::{Deserialize, Serialize};

use super::ops::PxeFilter;
use super::source::SourceConfig;
use crate::pxe::overlay::RuleOverlay;
use layers::{Batch, Layers};
use record::{now, read_applied, read_json, write_applied, Applied};

/// Keys read per page of the first read (a page stays well below gRPC's 4 MiB message limit).
const PAGE: i64 = 10_000;
/// Most watch responses applied as one batch.
const MAX_DRAIN: usize = 1_000;
/// Longest wait for a connection or one read.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest wait between attempts while etcd is unreachable.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// The iPXE rules last applied from etcd, served again by a daemon restarted without it.
const IPXE_FILE: &str = "filter-etcd-ipxe.json";
/// How often the revision applied is reported while changes stream in.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The source's state, for `status`, D-Bus and `STATUS=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// `etcd`.
    pub kind: String,
    /// The last etcd revision applied (0: none yet).
    pub revision: i64,
    /// Unix time since when the policy may be out of date (etcd unreachable); None while the
    /// watch is in contact.
    pub stale_since: Option<u64>,
    /// The last error, while stale.
    pub error: Option<String>,
}

/// Follows one etcd prefix into one filter.
pub struct Follower {
    /// `[filter.source]`, validated, kind etcd.
    cfg: SourceConfig,
    /// The filter the policy goes to (its state directory keeps it across outages).
    filter: Arc<PxeFilter>,
    /// Where its records live (the revision applied, the iPXE rules).
    state_dir: PathBuf,
    /// Told every change of [`SourceStatus`].
    report: Box<dyn Fn(&SourceStatus) + Send + Sync>,
    /// The state last reported.
    status: SourceStatus,
    /// When it was reported.
    reported: Instant,
    /// The endpoint in use (index into `cfg.endpoints`); the next one after a failure.
    endpoint: usize,
    /// Sessions failed in a row: the source is stale once every endpoint failed.
    failures: usize,
    /// This host's name in `<prefix>/hosts/<host>/...` (`[filter.source] host`).
    host: String,
    /// The fleet-wide policy and this host's overrides, as last read and watched.
    layers: Layers,
    /// Told the iPXE rules whenever they change (the daemon's HTTP endpoint), if it serves.
    ipxe: Option<IpxeSink>,
}

/// Where the iPXE rules read from etcd go.
pub type IpxeSink = Box<dyn Fn(RuleOverlay) + Send + Sync>;

impl Follower {
    /// A follower of `cfg` applying to `filter`, reporting through `report`, and handing the
    /// iPXE rules to `ipxe` (at once the last ones applied, if any).
    pub fn new(
        cfg: SourceConfig,
        filter: Arc<PxeFilter>,
        state_dir: &Path,
        report: Box<dyn Fn(&SourceStatus) + Send + Sync>,
        ipxe: Option<IpxeSink>,
    ) -> Self {
        if let (Some(sink), Some(last)) = (&ipxe, read_json::<RuleOverlay>(state_dir, IPXE_FILE)) {
            sink(last);
        }
        let last = read_applied(state_dir);
        let status = SourceStatus {
            kind: "etcd".into(),
            revision: last.map_or(0, |a| a.revision),
            // Until the first read, the policy is as old as the last one applied.
            stale_since: Some(last.map_or_else(now, |a| a.at)),
            error: Some("not yet read from etcd".into()),
        };
        report(&status);
        let cfg_host = cfg.host_name();
        Self {
            cfg,
            filter,
            state_dir: state_dir.to_owned(),
            report,
            status,
            reported: Instant::now(),
            endpoint: 0,
            failures: 0,
            host: cfg_host,
            layers: Layers::default(),
            ipxe,
        }
    }

    /// Follows etcd for ever (drop the task to stop).
    pub async fn run(mut self) {
        let mut revision: Option<i64> = None;
        let mut wait = RETRY_MIN;
        loop {
            let err = self.session(&mut revision, &mut wait).await;
            if let EtcdError::Compacted { .. } = err {
                tracing::warn!(error = %crate::error::chain(&err), "PXE filter source");
                revision = None;
                continue;
            }
            self.failures += 1;
            self.endpoint = (self.endpoint + 1) % self.cfg.endpoints.len();
            if self.failures < self.cfg.endpoints.len() {
                // Another member may serve: try it at once, the policy still current.
                tracing::info!(error = %crate::error::chain(&err), "PXE filter source: trying the next etcd endpoint");
                tokio::time::sleep(RETRY_MIN).await;
                continue;
            }
            tracing::warn!(error = %crate::error::chain(&err), "PXE filter source etcd unreachable; the last policy applied stays in force");
            self.stale(&err);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// One connection: a full read if `revision` is None, then the watch. Returns why it ended.
    async fn session(&mut self, revision: &mut Option<i64>, wait: &mut Duration) -> EtcdError {
        let mut client = match self.connect().await {
            Ok(c) => c,
            Err(e) => return e,
        };
        let start = match *revision {
            // A watch created on a member still starting can miss the history it asks for:
            // first one linearizable read, which succeeds only once the member serves.
            Some(r) => match self.ready(&mut client).await {
                Ok(()) => r,
                Err(e) => return e,
            },
            None => match self.full_read(&mut client).await {
                Ok(r) => {
                    *revision = Some(r);
                    self.applied(r);
                    r
                }
                Err(e) => return e,
            },
        };
        let prefix = format!("{}/", self.cfg.prefix);
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(start + 1);
        let watch = client.watch(prefix, Some(opts));
        let (_watcher, mut stream) = match tokio::time::timeout(REQUEST_TIMEOUT, watch).await {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => return self.request_error("watch", e),
            Err(_) => return self.timeout("watch"),
        };
        // The watch is established: the policy is current (a compacted start revision is
        // reported next, and a full read follows at once).
        *wait = RETRY_MIN;
        self.failures = 0;
        self.applied(start);
        loop {
            // Every response already received is applied as one batch: under a stream of
            // changes each MAC's file is written once per batch, and the store changed once.
            let (msgs, ended) = self.next_responses(&mut stream).await;
            if let Some(r) = self
                .apply_events(msgs.iter().flat_map(|m| m.events()))
                .await
            {
                match r {
                    Ok(r) => *revision = Some(r),
                    Err(e) => return e,
                }
            }
            self.applied(revision.unwrap_or(start));
            if let Some(e) = ended {
                return e;
            }
        }
    }

    /// Waits for the next watch response, then takes every one already received (at most
    /// [`MAX_DRAIN`]); with them, why the watch ended if it did.
    async fn next_responses(
        &self,
        stream: &mut WatchStream,
    ) -> (Vec<WatchResponse>, Option<EtcdError>) {
        let mut msgs = Vec::new();
        loop {
            let next = if msgs.is_empty() {
                stream.message().await
            } else if msgs.len() >= MAX_DRAIN {
                return (msgs, None);
            } else {
                // A zero timeout polls the stream once: what is ready, or nothing.
                match tokio::time::timeout(Duration::ZERO, stream.message()).await {
                    Ok(r) => r,
                    Err(_) => return (msgs, None),
                }
            };
            let msg = match next {
                Ok(Some(m)) => m,
                Ok(None) => {
                    let reason = "stream closed".into();
                    return (msgs, Some(EtcdError::WatchEnded { reason }));
                }
                Err(e) => return (msgs, Some(self.request_error("watch", e))),
            };
            tracing::debug!(
                events = msg.events().len(),
                compact = msg.compact_revision(),
                canceled = msg.canceled(),
                "etcd watch response"
            );
            if msg.compact_revision() > 0 {
                let revision = msg.compact_revision();
                return (msgs, Some(EtcdError::Compacted { revision }));
            }
            if msg.canceled() {
                let reason = msg.cancel_reason().to_owned();
                return (msgs, Some(EtcdError::WatchEnded { reason }));
            }
            msgs.push(msg);
        }
    }

    /// Applies watch events as one batch; the revision of the last event, if any.
    async fn apply_events<'e>(
        &mut self,
        events: impl IntoIterator<Item = &'e etcd_client::Event>,
    ) -> Option<Result<i64, EtcdError>> {
        let mut batch = Batch::default();
        let mut last = None;
        for ev in events {
            let Some(kv) = ev.kv() else { continue };
            last = Some(kv.mod_revision());
            let value = (ev.event_type() == EventType::Put).then(|| kv.value());
            match layout::read(&self.cfg.prefix, &self.host, kv.key(), value) {
                Ok(Some((scope, entry))) => batch.push(self.layers.apply(scope, entry)),
                Ok(None) => {}
                Err(i) => tracing::warn!(key = %i.key, "etcd key ignored: {}", i.reason),
            }
        }
        let last = last?;
        if batch.ipxe {
            self.publish_ipxe();
        }
        if batch.is_empty() {
            return Some(Ok(last));
        }
        let filter = self.filter.clone();
        let result = tokio::task::spawn_blocking(move || {
            let macs: Vec<_> = batch.macs.into_iter().collect();
            filter.apply_batch(&macs, batch.unknown)
        })
        .await
        .expect("the filter does not panic");
        Some(result.map(|_| last).map_err(EtcdError::Apply))
    }

    /// Reads the whole prefix at one revision, in pages, and applies it; returns the revision.
    async fn full_read(&mut self, client: &mut Client) -> Result<i64, EtcdError> {
        let prefix = &self.cfg.prefix.clone();
        // Every key under "<prefix>/" sorts below "<prefix>0" ('0' follows '/').
        let end = format!("{prefix}0");
        let mut from = format!("{prefix}/").into_bytes();
        let mut at = None;
        let mut kvs = Vec::new();
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if let Some(r) = at {
                opts = opts.with_revision(r);
            }
            let get = client.get(from.clone(), Some(opts));
            let resp = match tokio::time::timeout(REQUEST_TIMEOUT, get).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(self.request_error("range read", e)),
                Err(_) => return Err(self.timeout("range read")),
            };
            let rev = *at.get_or_insert(resp.header().map_or(0, |h| h.revision()));
            let mut page = resp.kvs().to_vec();
            if let Some(last) = page.last() {
                from = last.key().to_vec();
                from.push(0);
            }
            let more = resp.more() && !page.is_empty();
            kvs.append(&mut page);
            if !more {
                let pairs = kvs.iter().map(|kv| (kv.key(), kv.value()));
                let (layers, ignored) = Layers::snapshot(prefix, &self.host, pairs);
                for i in &ignored {
                    tracing::warn!(key = %i.key, "etcd key ignored: {}", i.reason);
                }
                let (lists, unknown) = layers.effective();
                let (allowed, denied) = (lists.allow.len(), lists.deny.len());
                let (fleet, host) = layers.counts();
                let filter = self.filter.clone();
                tokio::task::spawn_blocking(move || filter.replace_policy(lists, unknown))
                    .await
                    .expect("the filter does not panic")
                    .map_err(EtcdError::Apply)?;
                self.layers = layers;
                self.publish_ipxe();
                tracing::info!(
                    revision = rev,
                    allowed,
                    denied,
                    fleet_keys = fleet,
                    host_keys = host,
                    host = %self.host,
                    "PXE filter policy read from etcd"
                );
                return Ok(rev);
            }
        }
    }

    /// Hands the iPXE rules to the endpoint and keeps them in the state directory.
    fn publish_ipxe(&self) {
        let overlay = self.layers.ipxe_overlay();
        let Some(sink) = &self.ipxe else {
            if overlay != RuleOverlay::default() {
                tracing::warn!(
                    "iPXE rules under the etcd prefix are not served: [http] enabled = false"
                );
            }
            return;
        };
        let text = serde_json::to_vec(&overlay).expect("serialises");
        let path = self.state_dir.join(IPXE_FILE);
        if let Err(e) = crate::fsutil::write_atomic(&path, &text, 0o644) {
            tracing::warn!(error = %e, path = %path.display(), "iPXE rules from etcd not kept for a restart");
        }
        tracing::info!(rules = overlay.rules.len(), default = ?overlay.default.as_ref().map(|d| d.to_string()), "iPXE rules from etcd in force");
        sink(overlay);
    }

    /// Waits for one linearizable read of the prefix (counted, not transferred).
    async fn ready(&self, client: &mut Client) -> Result<(), EtcdError> {
        let prefix = format!("{}/", self.cfg.prefix);
        let opts = GetOptions::new().with_prefix().with_count_only();
        match tokio::time::timeout(REQUEST_TIMEOUT, client.get(prefix, Some(opts))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.request_error("read", e)),
            Err(_) => Err(self.timeout("read")),
        }
    }

    async fn connect(&self) -> Result<Client, EtcdError> {
        client::connect(&self.cfg, self.endpoint).await
    }

    fn request_error(&self, what: &'static str, source: etcd_client::Error) -> EtcdError {
        client::request_error(&self.cfg.endpoints[self.endpoint], what, source)
    }

    fn timeout(&self, what: &'static str) -> EtcdError {
        client::timeout(&self.cfg.endpoints[self.endpoint], what)
    }

    /// Records `revision` as applied and the source as current.
    fn applied(&mut self, revision: i64) {
        let back = self.status.stale_since.is_some();
        let changed = std::mem::replace(&mut self.status.revision, revision) != revision;
        if !back && (!changed || self.reported.elapsed() < REPORT_EVERY) {
            // Under a stream of changes the status and the record follow once a second,
            // not once a change (each report is a STATUS= datagram to systemd).
            return;
        }
        if back {
            tracing::info!(revision, "PXE filter source etcd in contact");
        }
        write_applied(
            &self.state_dir,
            Applied {
                revision,
                at: now(),
            },
        );
        self.status.stale_since = None;
        self.status.error = None;
        self.reported = Instant::now();
        (self.report)(&self.status);
    }

    /// Records the source as stale (keeping the first moment it became so).
    fn stale(&mut self, err: &EtcdError) {
        self.status.stale_since.get_or_insert_with(now);
        self.status.error = Some(crate::error::chain(err));
        (self.report)(&self.status);
    }
}

/// A running follower; dropping it stops it.
pub struct Following(tokio::task::JoinHandle<()>);

impl Drop for Following {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts following `cfg` into `filter` on the current runtime when the source is etcd.
pub fn spawn(
    cfg: &SourceConfig,
    filter: Arc<PxeFilter>,
    state_dir: &Path,
    report: Box<dyn Fn(&SourceStatus) + Send + Sync>,
    ipxe: Option<IpxeSink>,
) -> Option<Following> {
    if cfg.kind != super::source::SourceKind::Etcd {
        return None;
    }
    let follower = Follower::new(cfg.clone(), filter, state_dir, report, ipxe);
    Some(Following(tokio::spawn(follower.run())))
}
