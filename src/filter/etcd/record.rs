//! The follower's records in the state directory: the revision last applied and when (so
//! that a daemon restarted without etcd can say since when its policy is stale), and small
//! JSON files read back at start.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The revision record's file.
const STATE_FILE: &str = "filter-etcd.json";

/// What the follower last applied.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(super) struct Applied {
    /// etcd revision.
    pub(super) revision: i64,
    /// Unix time.
    pub(super) at: u64,
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn read_applied(dir: &Path) -> Option<Applied> {
    read_json(dir, STATE_FILE)
}

pub(super) fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, file: &str) -> Option<T> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Not fsynced: the policy itself is durable in the store; this only dates it.
pub(super) fn write_applied(dir: &Path, applied: Applied) {
    let text = serde_json::to_string(&applied).expect("serialises");
    let temp = dir.join(format!(".{STATE_FILE}.tmp"));
    let result =
        std::fs::write(&temp, text).and_then(|()| std::fs::rename(&temp, dir.join(STATE_FILE)));
    if let Err(e) = result {
        tracing::warn!(error = %e, dir = %dir.display(), "etcd revision not recorded");
    }
}
