//! A whole list handed over again unchanged (a periodic sync of the same file, as
//! provisioning services run one): recognised by a keyed hash of its bytes while the stored
//! policy is still the one that list left, and answered without parsing it. The same for the
//! two lists of D-Bus's `FilterSync`, hashed string by string.
//!
//! The record is made under the filter's lock, with the version of the policy the change
//! saved; any later change of the policy, by this process or another, changes that version
//! (inode, mtime, size, journal length), so the record no longer matches and the list is
//! parsed and compared as usual.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use super::{PxeFilter, SyncReport};
use crate::filter::error::FilterError;
use crate::filter::policy::DesiredLists;
use crate::filter::store::PolicyVersion;

/// What identifies a list: its length and a hash under keys drawn at random once per process
/// (so no one can prepare two lists that look the same to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListKey {
    len: usize,
    hash: u64,
}

fn keys() -> &'static RandomState {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new)
}

impl ListKey {
    /// The key of a list's text.
    pub fn of(text: &str) -> Self {
        Self {
            len: text.len(),
            hash: keys().hash_one(text.as_bytes()),
        }
    }

    /// The key of the two lists of `FilterSync`: every string with its length, each list with
    /// its count, after a tag no text's key starts from.
    pub fn of_lists(allow: &[&str], deny: &[&str]) -> Self {
        use std::hash::Hasher;
        let mut h = keys().build_hasher();
        h.write(b"\0lists\0");
        let mut len = 0;
        for list in [allow, deny] {
            h.write_usize(list.len());
            for s in list {
                h.write_usize(s.len());
                h.write(s.as_bytes());
                len += s.len() + 1;
            }
        }
        Self {
            len,
            hash: h.finish(),
        }
    }
}

/// The last list applied whole, and the version of the policy it left.
#[derive(Debug, Default)]
pub(super) struct LastList(Mutex<Option<(ListKey, PolicyVersion)>>);

impl LastList {
    /// Called under the lock, with the version the change's save left.
    pub(super) fn record(&self, key: ListKey, version: PolicyVersion) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((key, version));
    }

    fn matches(&self, key: ListKey, version: PolicyVersion) -> bool {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) == Some((key, version))
    }
}

impl PxeFilter {
    /// [`PxeFilter::replace_all`] with the lists as the user's text (JSON or one MAC a line;
    /// `origin` names it in errors). The same text as the last one applied, with the policy
    /// unchanged since, is answered at once: nothing to write, nothing announced.
    pub fn replace_all_from(&self, text: &str, origin: &str) -> Result<SyncReport, FilterError> {
        let start = Instant::now();
        let key = ListKey::of(text);
        if self.unchanged_since(key)? {
            return Ok(SyncReport {
                elapsed: start.elapsed(),
                ..SyncReport::default()
            });
        }
        let parse = crate::timing::phase("filter list parsed");
        let desired = DesiredLists::parse(text, origin)?;
        drop(parse);
        let mut report = self.replace_all_keyed(desired, Some(key))?;
        report.elapsed = start.elapsed();
        Ok(report)
    }

    /// [`PxeFilter::replace_all`] of lists whose key is `key`, remembered as the last applied.
    pub fn replace_all_as(
        &self,
        desired: DesiredLists,
        key: ListKey,
    ) -> Result<SyncReport, FilterError> {
        self.replace_all_keyed(desired, Some(key))
    }

    /// Whether a whole-list sync of the list `key` ([`ListKey::of`], [`ListKey::of_lists`])
    /// would change nothing: it is the list applied last, the policy is still what it left,
    /// and nothing was interrupted since (a pending mark that is not this process's own asks
    /// for a look at the whole directory). The caller then answers at once, without parsing
    /// the list.
    pub fn unchanged_since(&self, key: ListKey) -> Result<bool, FilterError> {
        let Some(version) = self.store.version()? else {
            return Ok(false);
        };
        if !self.last_list.matches(key, version) {
            return Ok(false);
        }
        let ours = self
            .deferred
            .as_deref()
            .is_some_and(super::flush::Deferred::owes);
        Ok(ours || !self.cfg.enabled || !self.store.pending()?)
    }
}
