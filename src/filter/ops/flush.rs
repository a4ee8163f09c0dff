//! The deferred flush of a long-lived filter (the daemon's): a change returns once the policy
//! is durable and the hostsdir written, and the hostsdir's `syncfs` runs just after, off the
//! caller's path.
//!
//! The policy is the source of truth, and it is fsynced before any file is written; the
//! hostsdir is derived from it. A change leaves the `filter.pending` mark in place until the
//! flush has synced its files, so a crash before that (power loss: the files may be empty or
//! old) is seen by the next process, whose first change looks at the whole directory and
//! repairs it, as does the daemon's start-up rebuild. While the mark is this process's own
//! (its policy is the one on disk and its writes finished), its changes look only at the
//! MACs they touch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::PxeFilter;
use crate::filter::config::Durability;
use crate::filter::error::FilterError;
use crate::filter::hostsdir;

/// How long the hostsdir must stay unchanged before it is synced: a burst of changes costs
/// one `syncfs`, and a change right after another does not wait for one.
const QUIET: Duration = Duration::from_millis(100);

/// The longest the hostsdir waits for a sync while changes keep coming.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// After a failed flush, how long until the next try.
const RETRY: Duration = Duration::from_secs(1);

/// The most replaced or removed files kept until the flush (each is an open descriptor or a
/// dotfile in the hostsdir).
pub(super) const MAX_RETIRED: usize = 512;

/// Changes written but not yet synced, and the flusher's wake-up.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    /// Changes applied since the last flush began (0: everything is synced).
    owed: AtomicU64,
    /// Set by [`Deferred::owe`], cleared by the flusher when it wakes.
    wake: Mutex<bool>,
    cond: Condvar,
    /// Files replaced or removed by changes since the last flush, freed by the flush, not by
    /// the change ([`hostsdir::apply_keeping`]).
    retired: Mutex<hostsdir::Retired>,
}

impl Deferred {
    /// Whether some change's files are not synced yet (the pending mark is then ours).
    pub(super) fn owes(&self) -> bool {
        self.owed.load(Ordering::SeqCst) != 0
    }

    /// Records a change whose files are written but not synced, and wakes the flusher.
    pub(super) fn owe(&self) {
        self.owed.fetch_add(1, Ordering::SeqCst);
        *self.wake.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cond.notify_one();
    }

    /// How many more replaced or removed files may be kept for the flush.
    pub(super) fn room(&self) -> usize {
        MAX_RETIRED.saturating_sub(self.retired.lock().unwrap_or_else(|p| p.into_inner()).len())
    }

    /// Keeps `files` until the next flush.
    pub(super) fn retire(&self, files: hostsdir::Retired) {
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.append(files);
    }

    /// Waits for [`Deferred::owe`], then for the changes to pause for [`QUIET`] (at most
    /// [`MAX_WAIT`]).
    fn wait(&self) {
        let mut woken = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        while !*woken {
            woken = self.cond.wait(woken).unwrap_or_else(|p| p.into_inner());
        }
        *woken = false;
        drop(woken);
        let start = std::time::Instant::now();
        loop {
            let seen = self.owed.load(Ordering::SeqCst);
            std::thread::sleep(QUIET);
            if self.owed.load(Ordering::SeqCst) == seen || start.elapsed() >= MAX_WAIT {
                return;
            }
        }
    }
}

impl PxeFilter {
    /// This filter with its hostsdir synced by a thread of its own, just after each change
    /// rather than before the change returns (with `durability = "syncfs"`, the default; with
    /// `fsync-each` every file stays synced before the change returns). For a long-lived
    /// process: the daemon. Call [`PxeFilter::flush`] before exiting.
    pub fn with_deferred_flush(mut self) -> Self {
        if self.cfg.durability != Durability::Syncfs || !self.cfg.enabled {
            return self;
        }
        let deferred = Arc::new(Deferred::default());
        self.deferred = Some(deferred.clone());
        let filter = self.clone();
        let spawned = std::thread::Builder::new()
            .name("filter-flush".into())
            .spawn(move || loop {
                deferred.wait();
                if let Err(e) = filter.flush() {
                    tracing::warn!(error = %crate::error::chain(&e), "PXE filter: syncing the hostsdir failed; trying again");
                    std::thread::sleep(RETRY);
                    deferred.owe();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "PXE filter: no flush thread; each change syncs the hostsdir itself");
            self.deferred = None;
        }
        self
    }

    /// Syncs what changes wrote to the hostsdir and, if no change came in the meantime and
    /// the policy on disk is still this filter's, clears the pending mark. Without a
    /// deferred flush, or with nothing owed, does nothing.
    pub fn flush(&self) -> Result<(), FilterError> {
        let Some(deferred) = &self.deferred else {
            return Ok(());
        };
        let owed = deferred.owed.load(Ordering::SeqCst);
        if owed == 0 {
            return Ok(());
        }
        // Not under the lock: a change may go on meanwhile; it then owes a flush of its own.
        // The replaced files are freed first, so that the sync covers that too.
        std::mem::take(&mut *deferred.retired.lock().unwrap_or_else(|p| p.into_inner()))
            .free(&self.cfg.hostsdir);
        hostsdir::sync_fs(&self.cfg.hostsdir)?;
        let _lock = self.store.lock(self.lock_timeout)?;
        let settled = deferred
            .owed
            .compare_exchange(owed, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if settled && self.holds_current_state()? {
            self.store.clear_pending()?;
        }
        Ok(())
    }

    /// Whether the policy on disk is the one this filter last read or wrote (the caller
    /// holds the lock).
    fn holds_current_state(&self) -> Result<bool, FilterError> {
        let version = self.store.version()?;
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(matches!(state.as_ref(), Some((seen, _)) if Some(*seen) == version))
    }
}
