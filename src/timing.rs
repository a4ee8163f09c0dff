//! Where the time of a user-facing path goes: [`phase`] returns a guard that logs, at debug
//! level under the target `virtmasq::timing`, how long the phase took when it is dropped.
//! `virtmasq --log-level virtmasq::timing=debug sync` prints the breakdown of a system-mode
//! apply (`benches/system_mode.rs` reads it); nothing is logged at the default level.

use std::time::Instant;

/// The log target of the phase lines.
pub const TARGET: &str = "virtmasq::timing";

/// A running phase; logs its duration when dropped.
#[must_use = "the phase ends when the guard is dropped"]
pub struct Phase {
    name: &'static str,
    start: Instant,
}

/// Starts timing the phase `name`.
pub fn phase(name: &'static str) -> Phase {
    Phase {
        name,
        start: Instant::now(),
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        tracing::debug!(
            target: TARGET,
            phase = self.name,
            us = self.start.elapsed().as_micros() as u64,
            "phase"
        );
    }
}
