//! Crash points for the tests of the system transaction: in a debug build, a process whose
//! `VIRTMASQ_FAILPOINT` names a point kills itself with SIGKILL there, the way an OOM kill or
//! a power loss would end it. Release builds compile [`hit`] to nothing and never read the
//! variable.
//!
//! The points, in the order a change passes them: `journaled` (the journal is durable) and
//! `prepared` (new files beside the old ones), both while the check of the staged copy runs;
//! `staged` (the check passed, nothing renamed yet), `renamed-first` (one file renamed in), `written` (the new set complete), `restarted`
//! (the unit runs on it, the journal not yet gone); `rolling-back` (a failed restart, no file
//! put back yet); and `recovered`, at the end of every start's recovery.

/// The environment variable naming the point to die at.
pub const ENV: &str = "VIRTMASQ_FAILPOINT";

/// Dies here if `VIRTMASQ_FAILPOINT` is `name` (debug builds only).
#[cfg(debug_assertions)]
pub fn hit(name: &str) {
    if std::env::var_os(ENV).is_some_and(|v| v == name) {
        tracing::warn!(failpoint = name, "killing this process at a test failpoint");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Release builds have no failpoints.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_name: &str) {}
