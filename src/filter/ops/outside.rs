//! Changes from an outside source of the policy (etcd): a whole policy read at one revision,
//! and batches of changes, each applied as one change of the store.

use super::{Edited, PxeFilter, SyncReport};
use crate::filter::config::UnknownPolicy;
use crate::filter::entry::Verdict;
use crate::filter::error::FilterError;
use crate::filter::policy::DesiredLists;
use crate::filter::store::StoredPolicy;
use crate::model::MacAddr;

impl PxeFilter {
    /// Replaces the whole stored policy (both lists and the unknown override) in one change.
    /// Only the MACs whose entry changes are looked at, unless the unknown policy changes.
    pub fn replace_policy(
        &self,
        desired: DesiredLists,
        unknown: Option<UnknownPolicy>,
    ) -> Result<SyncReport, FilterError> {
        self.change(|stored: &mut StoredPolicy| {
            let mut touched: Vec<MacAddr> = (stored.allow.symmetric_difference(&desired.allow))
                .chain(stored.deny.symmetric_difference(&desired.deny))
                .copied()
                .collect();
            touched.sort_unstable();
            touched.dedup();
            stored.allow = desired.allow;
            stored.deny = desired.deny;
            let unknown_changed = std::mem::replace(&mut stored.unknown, unknown) != unknown;
            Edited {
                changed: unknown_changed || !touched.is_empty(),
                touched: (!unknown_changed).then_some(touched),
                list: None,
            }
        })
    }

    /// Applies a batch of changes in one change: each MAC to allow, deny or (None) the
    /// unknown policy, and maybe a new unknown override. Each MAC is named once.
    pub fn apply_batch(
        &self,
        macs: &[(MacAddr, Option<Verdict>)],
        unknown: Option<Option<UnknownPolicy>>,
    ) -> Result<SyncReport, FilterError> {
        self.change(|stored: &mut StoredPolicy| {
            let mut changed = false;
            for (mac, verdict) in macs {
                changed |= stored.put(*mac, *verdict);
            }
            let unknown_changed =
                unknown.is_some_and(|u| std::mem::replace(&mut stored.unknown, u) != u);
            Edited {
                changed: changed || unknown_changed,
                touched: (!unknown_changed).then(|| macs.iter().map(|(m, _)| *m).collect()),
                list: None,
            }
        })
    }
}
