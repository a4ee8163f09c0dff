//! Crash points for the tests of the system transaction: in a debug build, a process whose
//! `VIRTMASQ_FAILPOINT` names a point kills itself with SIGKILL there, the way an OOM kill or
//! a power loss would end it. Release builds compile [`hit`] to nothing and never read the
//! variable.

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
