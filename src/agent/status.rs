//! What the agent serves and how it went, for `virtmasq status`, the D-Bus API and
//! systemd's STATUS= line. The daemon updates it after every reconcile; readers get a copy.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::model::IntentSource;
use crate::model::Mode;

/// The JSON schema version of [`Status`].
pub const SCHEMA: u32 = 1;

/// One served network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// libvirt's name.
    pub name: String,
    /// Its bridge.
    pub bridge: String,
    /// Where its DHCP intent came from.
    pub intent: IntentSource,
    /// What serves it: a fragment path (system mode) or a dnsmasq pid (private mode).
    pub served_by: String,
}

/// A network libvirt reported that is not served, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedStatus {
    /// libvirt's name (escaped).
    pub name: String,
    /// Why it is not served.
    pub reason: String,
    /// Whether that is an error (invalid input) rather than normal.
    pub error: bool,
}

/// The PXE filter's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterStatus {
    /// Whether the filter is enabled.
    pub enabled: bool,
    /// MACs allowed.
    pub allowed: u32,
    /// MACs denied.
    pub denied: u32,
    /// Policy for other MACs.
    pub unknown: String,
    /// Where the policy comes from, when not the local store: etcd's revision applied, and
    /// since when it is stale while etcd is unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::filter::etcd::SourceStatus>,
}

/// The agent's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Schema version.
    pub schema: u32,
    /// Where this came from: "daemon" or "disk" (no daemon running).
    pub source: String,
    /// The mode.
    pub mode: Mode,
    /// Served networks.
    pub networks: Vec<NetworkStatus>,
    /// Networks not served.
    pub skipped: Vec<SkippedStatus>,
    /// The filter.
    pub filter: FilterStatus,
    /// Reconciles done since the daemon started.
    pub reconciles: u64,
    /// Unix time of the last reconcile.
    pub last_reconcile: Option<u64>,
    /// Errors of the last reconcile.
    pub last_errors: Vec<String>,
}

impl Status {
    /// An empty status in `mode`.
    pub fn new(mode: Mode, source: &str) -> Self {
        Self {
            schema: SCHEMA,
            source: source.to_owned(),
            mode,
            networks: Vec::new(),
            skipped: Vec::new(),
            filter: FilterStatus::default(),
            reconciles: 0,
            last_reconcile: None,
            last_errors: Vec::new(),
        }
    }

    /// One line for systemd's STATUS=.
    pub fn summary(&self) -> String {
        let mode = match self.mode {
            Mode::System => "system",
            Mode::Private => "private",
        };
        let mut s = format!("{mode} mode, serving {} network(s)", self.networks.len());
        if self.filter.enabled {
            s.push_str(&format!(
                ", filter {} allowed/{} denied",
                self.filter.allowed, self.filter.denied
            ));
        }
        if let Some(src) = &self.filter.source {
            match src.stale_since {
                Some(t) => s.push_str(&format!(
                    ", {} source stale since {} (revision {})",
                    src.kind,
                    since(t),
                    src.revision
                )),
                None => s.push_str(&format!(", {} revision {}", src.kind, src.revision)),
            }
        }
        if !self.last_errors.is_empty() {
            s.push_str(&format!(", {} error(s)", self.last_errors.len()));
        }
        s
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut o = format!("{} (from the {})\n", self.summary(), self.source);
        for n in &self.networks {
            o.push_str(&format!(
                "  {} on {}: {} (intent from {:?})\n",
                n.name, n.bridge, n.served_by, n.intent
            ));
        }
        for s in &self.skipped {
            let mark = if s.error { "refused" } else { "not served" };
            o.push_str(&format!("  {} {mark}: {}\n", s.name, s.reason));
        }
        if let Some(e) = self.filter.source.as_ref().and_then(|s| s.error.as_ref()) {
            o.push_str(&format!("  filter source: {e}\n"));
        }
        for e in &self.last_errors {
            o.push_str(&format!("  error: {e}\n"));
        }
        o
    }
}

/// A Unix time for people: seconds since the epoch and how long ago.
fn since(unix: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("unix {unix} ({} s ago)", now.saturating_sub(unix))
}

/// The status shared between the daemon loop and its readers.
pub type SharedStatus = Arc<Mutex<Status>>;

/// A copy of the shared status.
pub fn snapshot(shared: &SharedStatus) -> Status {
    shared.lock().unwrap_or_else(|p| p.into_inner()).clone()
}
