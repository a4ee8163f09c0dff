//! What can go wrong talking to etcd.

use std::path::PathBuf;

use super::REQUEST_TIMEOUT;
use crate::filter::error::FilterError;

/// An error talking to etcd (the follower logs it, reports the source stale and retries).
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// A TLS file could not be read.
    #[error("cannot read {} ([filter.source])", path.display())]
    Tls {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// etcd refused or failed a request.
    #[error("etcd at {endpoint}: {what} failed: {problem}")]
    Request {
        /// The endpoint asked.
        endpoint: String,
        /// What was asked.
        what: &'static str,
        /// The server's or the transport's message, with the setting to check if one is at
        /// fault (gRPC's own rendering carries every response header).
        problem: String,
    },
    /// No answer in time.
    #[error("etcd at {endpoint}: no answer to {what} within {REQUEST_TIMEOUT:?}")]
    Timeout {
        /// The endpoint asked.
        endpoint: String,
        /// What was asked.
        what: &'static str,
    },
    /// The watch's history is compacted away: a full read follows.
    #[error("etcd compacted the history past revision {revision}; reading the whole prefix again")]
    Compacted {
        /// The oldest revision etcd still has.
        revision: i64,
    },
    /// etcd ended or cancelled the watch.
    #[error("etcd ended the watch: {reason}")]
    WatchEnded {
        /// etcd's reason, if any.
        reason: String,
    },
    /// A `virtmasq filter` command names more MACs than one etcd transaction holds.
    #[error(
        "{count} changes do not fit in one etcd transaction (at most {max}); split the command"
    )]
    TooMany {
        /// Changes asked for.
        count: usize,
        /// etcd's default limit (`--max-txn-ops`).
        max: usize,
    },
    /// Applying the policy to the hostsdir failed.
    #[error("applying etcd's policy")]
    Apply(#[source] FilterError),
}
