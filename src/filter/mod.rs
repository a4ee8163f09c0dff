//! The PXE MAC filter: a dnsmasq dhcp-hostsdir with one file per MAC.
//!
//! virtmasq owns the directory. A file named after a MAC with dashes (`de-ad-be-ef-00-01`)
//! holds one MAC-only `dhcp-host` line that allows or denies it; `unknown-macs` holds the
//! wildcard for MACs without a file. Every line requires the tag `virtmasq-filter`, which the
//! configuration sets only on the bridges the filter covers ([`dnsmasq_lines`]), and a deny
//! line served next to proxy DHCP also sets `virtmasq-deny`, which the configuration ignores.
//!
//! The desired policy lives in the state directory ([`store`]) and is the source of truth;
//! the hostsdir is derived from it by a pure planner ([`plan`]) and an applier
//! ([`hostsdir`]). While dnsmasq runs, files are only ever written (atomically, by rename),
//! never deleted; [`PxeFilter::purge_and_rebuild`] removes what is stale before dnsmasq
//! starts, and [`PxeFilter::needs_compaction`] says when dnsmasq should re-read the directory.

pub mod config;
pub mod entry;
pub mod error;
pub mod etcd;
pub mod hostsdir;
pub mod journal;
pub mod ops;
pub mod plan;
pub mod policy;
pub mod source;
pub mod store;

pub use config::{dnsmasq_lines, Durability, FilterConfig, FilterLines, UnknownPolicy};
pub use entry::{DenyLine, Target, Verdict, DENY_TAG, SCOPE_TAG, WILDCARD_FILE};
pub use error::FilterError;
pub use ops::{sighup_is_safe, ListKey, PxeFilter, SyncReport};
pub use plan::{plan, plan_purge, FileAction, FileState, ObservedDir};
pub use policy::{DesiredLists, Policy};
pub use source::{SourceConfig, SourceKind};

/// The planner's name for the desired state: a [`Policy`].
pub type Desired = Policy;
