//! [`PxeFilter`]: the operations the CLI and the daemon call. Each change takes the lock,
//! stores the new policy first (it is the source of truth: if we stop half-way, the next sync
//! or start-up finishes the job), then brings the hostsdir in line with it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::{FilterConfig, UnknownPolicy};
use super::entry::{DenyLine, Target, Verdict};
use super::error::FilterError;
use super::hostsdir::{self, Applied, Verify};
use super::plan::{plan, plan_purge, ObservedDir};
use super::policy::{check_request, DesiredLists, Policy};
use super::store::{PolicyVersion, Store, StoredPolicy};
use crate::model::MacAddr;

/// How long a writer waits for another one before giving up.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// dnsmasq's inotify handling has no overflow recovery: events beyond the kernel's queue
/// (`fs.inotify.max_queued_events`, 16384 by default) are lost until SIGHUP. Each file we
/// write queues two events (the temporary file's close, the rename), so a batch larger than
/// a quarter of the queue asks for a compaction, whatever the counter says.
const MAX_QUEUED_EVENTS: &str = "/proc/sys/fs/inotify/max_queued_events";

/// What a change did to the hostsdir.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Files written and removed.
    pub applied: Applied,
    /// Files in the hostsdir that dnsmasq reads but we did not write; removed at start-up.
    pub foreign: Vec<String>,
    /// Whether the caller should now have dnsmasq re-read the directory (SIGHUP where
    /// [`sighup_is_safe`], else a restart), then call [`PxeFilter::compacted`].
    pub needs_compaction: bool,
    /// Time spent, lock wait included.
    pub elapsed: Duration,
    /// Whether the stored policy changed.
    pub changed: bool,
}

impl SyncReport {
    /// Whether the change did anything anyone could see: the policy, a file, or a
    /// compaction now due. A sync that finds everything in line does not.
    pub fn did_anything(&self) -> bool {
        self.changed || self.applied != Applied::default() || self.needs_compaction
    }
}

/// An effective policy and the version of the stored policy it was made from.
type CachedList = (Option<PolicyVersion>, Arc<Policy>);

/// The PXE MAC filter of one host: its configuration and its state directory.
#[derive(Debug, Clone)]
pub struct PxeFilter {
    /// The `[filter]` configuration: hostsdir, default unknown policy, durability.
    cfg: FilterConfig,
    /// Where the policy, the lock and the rewrite counter live.
    store: Store,
    /// How long a change waits for another writer before failing with a clear error.
    lock_timeout: Duration,
    /// The effective policy last read, and which stored policy it was read from: anyone may
    /// ask the daemon for the list over D-Bus, and must not make it parse the whole policy
    /// each time.
    list_cache: Arc<Mutex<Option<CachedList>>>,
    /// The stored policy as last read or written under the lock, and which file it is: a
    /// change in a long-lived process (the daemon) then parses nothing and compares only what
    /// it changes.
    state: Arc<Mutex<Option<(PolicyVersion, StoredPolicy)>>>,
    /// With [`PxeFilter::with_deferred_flush`]: the changes whose files are not synced yet.
    deferred: Option<Arc<flush::Deferred>>,
    /// The last list applied whole from its text ([`PxeFilter::replace_all_from`]).
    last_list: Arc<same_list::LastList>,
}

/// What an edit of the stored policy did.
struct Edited {
    /// Whether the policy changed (it is then saved).
    changed: bool,
    /// The MACs whose entry may have changed; `None`: anything may have, the whole directory
    /// is looked at.
    touched: Option<Vec<MacAddr>>,
    /// The text the new policy was read from, when it replaced the lists whole.
    list: Option<same_list::ListKey>,
}

impl Edited {
    /// An edit that concerns every file if it changed anything, and no file otherwise.
    fn whole(changed: bool) -> Self {
        Self {
            changed,
            touched: (!changed).then(Vec::new),
            list: None,
        }
    }
}

impl PxeFilter {
    /// A filter configured by `cfg` that keeps its state in `state_dir`.
    pub fn new(cfg: FilterConfig, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            cfg,
            store: Store::new(state_dir),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            list_cache: Arc::default(),
            state: Arc::default(),
            deferred: None,
            last_list: Arc::default(),
        }
    }

    /// Changes how long a change waits for another writer.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The hostsdir this filter maintains.
    pub fn hostsdir(&self) -> &Path {
        &self.cfg.hostsdir
    }

    /// The effective policy: stored lists, unknown policy with any override applied.
    pub fn list(&self) -> Result<Policy, FilterError> {
        Ok(self.effective(&self.store.load()?, None))
    }

    /// [`PxeFilter::list`], from memory while the stored policy is the one last read (a stat,
    /// not a parse). A save between the stat and the read is caught by the next call. After
    /// this filter's own change, the policy it kept is used: no parse either.
    pub fn list_cached(&self) -> Result<Arc<Policy>, FilterError> {
        let version = self.store.version()?;
        let mut cache = self.list_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, policy)) = cache.as_ref() {
            if *seen == version {
                return Ok(policy.clone());
            }
        }
        let kept = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match state.as_ref() {
                Some((seen, stored)) if Some(*seen) == version => {
                    Some(self.effective(stored, None))
                }
                _ => None,
            }
        };
        let policy = Arc::new(match kept {
            Some(policy) => policy,
            None => self.list()?,
        });
        *cache = Some((version, policy.clone()));
        Ok(policy)
    }

    /// Allows `macs` (each named once).
    pub fn allow(&self, macs: &[MacAddr]) -> Result<SyncReport, FilterError> {
        self.set(macs, Some(Verdict::Allow))
    }

    /// Denies `macs` (each named once).
    pub fn deny(&self, macs: &[MacAddr]) -> Result<SyncReport, FilterError> {
        self.set(macs, Some(Verdict::Deny))
    }

    /// Returns `macs` to the unknown-MAC policy. Their files are rewritten to that policy
    /// (dnsmasq ignores deletions) and dropped at the next start-up purge.
    pub fn forget(&self, macs: &[MacAddr]) -> Result<SyncReport, FilterError> {
        self.set(macs, None)
    }

    fn set(&self, macs: &[MacAddr], verdict: Option<Verdict>) -> Result<SyncReport, FilterError> {
        check_request(macs)?;
        let edit = |stored: &mut StoredPolicy| {
            let mut changed = false;
            for mac in macs {
                changed |= stored.put(*mac, verdict);
            }
            Edited {
                changed,
                touched: Some(macs.to_vec()),
                list: None,
            }
        };
        self.change(edit)
    }

    /// Replaces both lists with `desired` (`filter sync --from FILE`); MACs in neither list
    /// fall back to the unknown-MAC policy. Only the MACs whose entry changes are looked at
    /// in the hostsdir: a sync costs what it changes, not what the lists hold.
    pub fn replace_all(&self, desired: DesiredLists) -> Result<SyncReport, FilterError> {
        self.replace_all_keyed(desired, None)
    }

    /// [`PxeFilter::replace_all`] of the lists read from the text `list`.
    fn replace_all_keyed(
        &self,
        desired: DesiredLists,
        list: Option<same_list::ListKey>,
    ) -> Result<SyncReport, FilterError> {
        let edit = |stored: &mut StoredPolicy| {
            let mut touched: Vec<MacAddr> = (stored.allow.symmetric_difference(&desired.allow))
                .chain(stored.deny.symmetric_difference(&desired.deny))
                .copied()
                .collect();
            touched.sort_unstable();
            touched.dedup();
            stored.allow = desired.allow;
            stored.deny = desired.deny;
            Edited {
                changed: !touched.is_empty(),
                touched: Some(touched),
                list,
            }
        };
        self.change(edit)
    }

    /// Overrides the configured unknown-MAC policy (`None`: back to the configuration).
    pub fn set_unknown(&self, unknown: Option<UnknownPolicy>) -> Result<SyncReport, FilterError> {
        self.change(|stored| {
            Edited::whole(std::mem::replace(&mut stored.unknown, unknown) != unknown)
        })
    }

    /// Switches the deny-line form for proxy DHCP on or off while dnsmasq runs: every deny file
    /// is rewritten (never deleted) in the new form. The daemon calls it when a covered network
    /// starts or stops serving proxy DHCP, before it renders that network.
    pub fn set_proxy(&self, proxy: bool) -> Result<SyncReport, FilterError> {
        self.change(|stored| {
            let form = DenyLine::for_proxy(proxy);
            Edited::whole(std::mem::replace(&mut stored.deny_line, form) != form)
        })
    }

    /// Brings the hostsdir in line with the stored policy (the daemon's periodic check, and
    /// the repair after an interrupted change). Writes only what differs.
    pub fn sync(&self) -> Result<SyncReport, FilterError> {
        self.change(|_| Edited {
            changed: false,
            touched: None,
            list: None,
        })
    }

    /// Rebuilds the hostsdir from the stored policy, removing stale, foreign and leftover
    /// files and verifying every remaining file's content. Call it before dnsmasq starts,
    /// when no dnsmasq reads the hostsdir (with several private instances sharing it: before
    /// the first starts, and not again while any runs): deleting files is only safe while no
    /// dnsmasq holds their old entries.
    ///
    /// `proxy` says whether any covered network serves proxy DHCP, as given to
    /// [`super::dnsmasq_lines`]; it decides the deny-line form ([`DenyLine`]) that this and
    /// every later change writes.
    pub fn purge_and_rebuild(&self, proxy: bool) -> Result<SyncReport, FilterError> {
        let start = Instant::now();
        let _lock = self.store.lock(self.lock_timeout)?;
        let (mut stored, _) = self.take_state()?;
        let stored_changed = stored.deny_line != DenyLine::for_proxy(proxy);
        if stored_changed {
            stored.deny_line = DenyLine::for_proxy(proxy);
            self.store.save(&stored)?;
        }
        let policy = self.effective(&stored, None);
        self.keep_state(stored)?;
        if !self.cfg.enabled {
            return Ok(SyncReport::default());
        }
        let dir = &self.cfg.hostsdir;
        hostsdir::ensure_dir(dir)?;
        let observed = hostsdir::observe(dir, Verify::Contents, policy.deny_line)?;
        for name in &observed.foreign {
            tracing::warn!(file = %dir.join(name).display(), "removing a file the PXE filter did not write");
        }
        let actions = plan_purge(&observed, &policy);
        let applied = hostsdir::apply(dir, &actions, policy.deny_line, Some(self.cfg.durability))?;
        // dnsmasq starts afresh: nothing is stale any more, and nothing is left half-written.
        self.store.set_rewrites(0)?;
        self.store.clear_pending()?;
        tracing::info!(
            written = applied.written,
            removed = applied.removed,
            "PXE filter hostsdir rebuilt"
        );
        Ok(SyncReport {
            applied,
            foreign: Vec::new(),
            needs_compaction: false,
            elapsed: start.elapsed(),
            changed: stored_changed,
        })
    }

    /// Whether enough rewrites piled up in dnsmasq's memory that it should re-read the
    /// hostsdir: after [`FilterConfig::compact_after`] rewrites, or after one batch too large
    /// for the inotify queue. Compact with SIGHUP where [`sighup_is_safe`] says so, else by a
    /// restart (`purge_and_rebuild`, then start).
    pub fn needs_compaction(&self) -> Result<bool, FilterError> {
        Ok(self.store.rewrites()? >= u64::from(self.cfg.compact_after))
    }

    /// Records that dnsmasq has re-read the hostsdir (the caller sent SIGHUP).
    pub fn compacted(&self) -> Result<(), FilterError> {
        let _lock = self.store.lock(self.lock_timeout)?;
        self.store.set_rewrites(0)
    }

    /// The effective policy of `stored`, restricted to the MACs in `only` when given.
    fn effective(&self, stored: &StoredPolicy, only: Option<&[MacAddr]>) -> Policy {
        let among = |set: &BTreeSet<MacAddr>| -> BTreeSet<MacAddr> {
            match only {
                Some(macs) => macs.iter().filter(|m| set.contains(m)).copied().collect(),
                None => set.clone(),
            }
        };
        Policy {
            unknown: stored.unknown.unwrap_or(self.cfg.unknown),
            allow: among(&stored.allow),
            deny: among(&stored.deny),
            deny_line: stored.deny_line,
        }
    }

    /// Under the lock: edit and store the policy, then sync the hostsdir to it. Only the
    /// files of the MACs the edit touched (and the wildcard) are looked at: the rest was in
    /// line before this change and the change does not concern them. The whole directory is
    /// looked at when the edit says so, or when the last change stopped before its files were
    /// all written (its mark is still there).
    fn change(
        &self,
        edit: impl FnOnce(&mut StoredPolicy) -> Edited,
    ) -> Result<SyncReport, FilterError> {
        let start = Instant::now();
        let _lock = self.store.lock(self.lock_timeout)?;
        let (mut stored, from_memory) = self.take_state()?;
        let edited = edit(&mut stored);
        // The mark is this filter's own while its policy is the one on disk and a flush is
        // owed: its changes all finished writing, only their sync is to come.
        let deferred = self.deferred.as_deref();
        let ours = from_memory && deferred.is_some_and(flush::Deferred::owes);
        let interrupted = self.cfg.enabled && !ours && self.store.pending()?;
        if edited.changed {
            let _saved = crate::timing::phase("filter policy saved");
            if self.cfg.enabled {
                // Made durable with the policy by the save's directory fsync.
                self.store.set_pending()?;
            }
            match &edited.touched {
                Some(macs) => self.store.save_change(&stored, macs)?,
                None => self.store.save(&stored)?,
            }
        }
        if !self.cfg.enabled {
            let version = self.keep_state(stored)?;
            self.remember_list(edited.list, version);
            return Ok(SyncReport {
                elapsed: start.elapsed(),
                changed: edited.changed,
                ..SyncReport::default()
            });
        }
        let dir = &self.cfg.hostsdir;
        hostsdir::ensure_dir(dir)?;
        let only = if interrupted { None } else { edited.touched };
        let observing = crate::timing::phase("filter hostsdir observed");
        let (observed, policy) = observe_for(
            dir,
            self.effective(&stored, only.as_deref()),
            only.as_deref(),
        )?;
        drop(observing);
        let actions = plan(&observed, &policy);
        let writing = crate::timing::phase("filter hostsdir written");
        let applied = match deferred {
            Some(d) => {
                let mut retired = hostsdir::Retired::default();
                let form = policy.deny_line;
                let applied =
                    hostsdir::apply_keeping(dir, &actions, form, None, &mut retired, d.room());
                // Even after a failure: what was swapped out is freed by the flush.
                d.retire(retired);
                applied?
            }
            None => hostsdir::apply(dir, &actions, policy.deny_line, Some(self.cfg.durability))?,
        };
        drop(writing);
        let moved = edited.changed || interrupted;
        match deferred {
            // The mark stays until the flush has synced these files.
            Some(d) if moved || applied != Applied::default() => d.owe(),
            None if moved => self.store.clear_pending()?,
            _ => {}
        }
        let version = self.keep_state(stored)?;
        self.remember_list(edited.list, version);
        let needs_compaction = self.count(&applied)?;
        for name in &observed.foreign {
            tracing::warn!(file = %dir.join(name).display(), "file not written by the PXE filter in its hostsdir; it is removed at the next start");
        }
        Ok(SyncReport {
            applied,
            foreign: observed.foreign,
            needs_compaction,
            elapsed: start.elapsed(),
            changed: edited.changed,
        })
    }

    /// The stored policy, from memory when the file on disk is still the one this filter last
    /// read or wrote (a stat, not a parse). The caller holds the lock and hands the policy back
    /// with [`PxeFilter::keep_state`]; an error in between leaves nothing in memory.
    /// Also says whether it came from memory.
    fn take_state(&self) -> Result<(StoredPolicy, bool), FilterError> {
        let version = self.store.version()?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.take() {
            Some((seen, stored)) if Some(seen) == version => Ok((stored, true)),
            _ => Ok((self.store.load()?, false)),
        }
    }

    /// Keeps `stored`, which is what the state file now holds, for the next change.
    /// Returns the state file's version.
    fn keep_state(&self, stored: StoredPolicy) -> Result<Option<PolicyVersion>, FilterError> {
        let version = self.store.version()?;
        if let Some(version) = version {
            *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Some((version, stored));
        }
        Ok(version)
    }

    /// Under the lock, once the change succeeded: remembers the text its lists came from.
    fn remember_list(&self, list: Option<same_list::ListKey>, version: Option<PolicyVersion>) {
        if let (Some(key), Some(version)) = (list, version) {
            self.last_list.record(key, version);
        }
    }

    /// Adds this batch to the rewrite counter; true if a compaction is now due.
    fn count(&self, applied: &Applied) -> Result<bool, FilterError> {
        let before = self.store.rewrites()?;
        let mut after = before.saturating_add(applied.rewritten as u64);
        if applied.written as u64 > inotify_safe_batch() {
            after = after.max(u64::from(self.cfg.compact_after));
        }
        if after != before {
            self.store.set_rewrites(after)?;
        }
        Ok(after >= u64::from(self.cfg.compact_after))
    }
}

/// The directory as far as a change needs to see it: everything, or only the files of
/// `only` (plus the wildcard).
fn observe_for(
    dir: &Path,
    policy: Policy,
    only: Option<&[MacAddr]>,
) -> Result<(ObservedDir, Policy), FilterError> {
    let Some(macs) = only else {
        return Ok((
            hostsdir::observe(dir, Verify::Sizes, policy.deny_line)?,
            policy,
        ));
    };
    let targets = macs
        .iter()
        .map(|m| Target::Mac(*m))
        .chain([Target::Unknown]);
    let observed = hostsdir::observe_targets(dir, targets, policy.deny_line)?;
    Ok((observed, policy))
}

/// Whether a SIGHUP (or D-Bus ClearCache) is safe for a dnsmasq of `version` (major, minor)
/// reading this filter's hostsdir with `proxy` deny lines: dnsmasq up to 2.90 frees the tags
/// of re-read `dhcp-host` entries wrongly and crashes once a `set:` entry has matched a
/// request (fixed in 2.91). Plain deny lines carry no `set:`.
pub fn sighup_is_safe(version: (u32, u32), proxy: bool) -> bool {
    !proxy || version >= (2, 91)
}

/// The largest batch dnsmasq is sure to see event by event (see [`MAX_QUEUED_EVENTS`]).
fn inotify_safe_batch() -> u64 {
    std::fs::read_to_string(MAX_QUEUED_EVENTS)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(16384)
        / 4
}

mod flush;
mod outside;
mod same_list;
pub use same_list::ListKey;

#[cfg(test)]
mod tests;
