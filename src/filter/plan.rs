//! The pure core of the filter: compares what the hostsdir holds with the desired policy and
//! lists the file operations that bring one to the other. No I/O here.
//!
//! Rules, chosen for how dnsmasq reads the directory:
//!
//! * A file exists only where dnsmasq must answer differently from the unknown-MAC policy
//!   (plus the wildcard file when unknown MACs are denied). Fewer files mean a faster dnsmasq
//!   start, and fewer `dhcp-host` entries that shadow a network's static reservations.
//! * While dnsmasq runs ([`plan`]) nothing is deleted, because dnsmasq ignores deletions and
//!   would keep the old entry: a file that is no longer needed is rewritten to what the
//!   unknown policy says. Only [`plan_purge`], before dnsmasq starts, removes files.
//! * A MAC-named file whose content is neither of our two forms is rewritten. A file whose
//!   name we would never write (but dnsmasq reads) is reported while dnsmasq runs and removed
//!   at start-up; our own leftover temporary files are always removed (dnsmasq skips them).
//! * Writes are ordered denies first, then allows, then the wildcard, so that at every moment
//!   each MAC is under either its old or its new policy: a host newly allowed under a newly
//!   denied wildcard gets its own file before the wildcard changes.

use std::collections::BTreeMap;

use super::entry::{Target, Verdict};
use super::policy::Policy;

/// What one of our files holds, as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Our allow line.
    Allow,
    /// Our deny line.
    Deny,
    /// Anything else: empty after a crash, edited by hand, another format.
    Other,
}

impl From<Verdict> for FileState {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Allow => Self::Allow,
            Verdict::Deny => Self::Deny,
        }
    }
}

/// The hostsdir as listed: our files by target, and the names that are not ours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedDir {
    /// Files named after a MAC (or the wildcard file) and what they hold.
    pub files: BTreeMap<Target, FileState>,
    /// Our temporary files left behind by an interrupted write.
    pub leftovers: Vec<String>,
    /// Files dnsmasq reads that we did not write.
    pub foreign: Vec<String>,
}

/// One file operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAction {
    /// Write `target`'s file for `verdict` (temporary file, then rename).
    Write {
        /// Whose file.
        target: Target,
        /// What it should say.
        verdict: Verdict,
        /// Whether a file was there before: dnsmasq then keeps the old entry behind the new
        /// one until SIGHUP, which is what compaction counts.
        replaces: bool,
    },
    /// Remove a file by name.
    Remove {
        /// The file name in the hostsdir.
        name: String,
    },
}

/// Actions that apply `desired` while dnsmasq runs: writes only (and removal of our own
/// leftover temporary files, which dnsmasq never reads).
pub fn plan(observed: &ObservedDir, desired: &Policy) -> Vec<FileAction> {
    let mut actions = remove_all(&observed.leftovers);
    let mut writes = Vec::new();
    let default = desired.unknown_verdict();
    for (target, state) in &observed.files {
        let want = match target {
            Target::Mac(mac) => desired.verdict(mac),
            Target::Unknown => default,
        };
        if *state != FileState::from(want) {
            writes.push(write(*target, want, true));
        }
    }
    for (verdict, macs) in [
        (Verdict::Allow, &desired.allow),
        (Verdict::Deny, &desired.deny),
    ] {
        if verdict == default {
            continue;
        }
        for mac in macs {
            if !observed.files.contains_key(&Target::Mac(*mac)) {
                writes.push(write(Target::Mac(*mac), verdict, false));
            }
        }
    }
    if default == Verdict::Deny && !observed.files.contains_key(&Target::Unknown) {
        writes.push(write(Target::Unknown, Verdict::Deny, false));
    }
    order_writes(&mut writes);
    actions.extend(writes);
    actions
}

/// Actions that rebuild the directory from `desired` before dnsmasq starts: every file that
/// is not needed (stale, foreign, leftover) is removed, every needed file written unless it
/// already holds exactly the right content.
pub fn plan_purge(observed: &ObservedDir, desired: &Policy) -> Vec<FileAction> {
    let mut actions = remove_all(&observed.leftovers);
    actions.extend(remove_all(&observed.foreign));
    let default = desired.unknown_verdict();
    let mut wanted: BTreeMap<Target, Verdict> = BTreeMap::new();
    for (verdict, macs) in [
        (Verdict::Allow, &desired.allow),
        (Verdict::Deny, &desired.deny),
    ] {
        if verdict != default {
            wanted.extend(macs.iter().map(|m| (Target::Mac(*m), verdict)));
        }
    }
    if default == Verdict::Deny {
        wanted.insert(Target::Unknown, Verdict::Deny);
    }
    for target in observed.files.keys() {
        if !wanted.contains_key(target) {
            actions.push(FileAction::Remove {
                name: target.file_name(),
            });
        }
    }
    let mut writes: Vec<FileAction> = wanted
        .into_iter()
        .filter_map(|(target, verdict)| match observed.files.get(&target) {
            Some(state) if *state == FileState::from(verdict) => None,
            state => Some(write(target, verdict, state.is_some())),
        })
        .collect();
    order_writes(&mut writes);
    actions.extend(writes);
    actions
}

fn write(target: Target, verdict: Verdict, replaces: bool) -> FileAction {
    FileAction::Write {
        target,
        verdict,
        replaces,
    }
}

fn remove_all(names: &[String]) -> Vec<FileAction> {
    names
        .iter()
        .map(|name| FileAction::Remove { name: name.clone() })
        .collect()
}

/// Denies, then allows, then the wildcard; by MAC within each group.
fn order_writes(writes: &mut [FileAction]) {
    writes.sort_by_key(|a| match a {
        FileAction::Write {
            target, verdict, ..
        } => (
            *target == Target::Unknown,
            *verdict == Verdict::Allow,
            *target,
        ),
        FileAction::Remove { .. } => (false, false, Target::Unknown),
    });
}

#[cfg(test)]
mod tests;
