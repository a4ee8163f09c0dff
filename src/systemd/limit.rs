//! Keeping virtmasq's own restarts of a unit under the unit's start rate limit
//! (`StartLimitBurst=` starts in `StartLimitIntervalSec=`, 5 in 10 s by default): systemd
//! refuses the next start and leaves the unit failed, so a burst of changes must never be
//! what stops the host's dnsmasq. Every restart virtmasq makes is recorded in a small file in
//! its state directory (the daemon, `sync` and the hook are separate processes), and a
//! restart waits until the window has room for it and for a rollback's restart after it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::client::Systemd;

/// systemd's defaults (`DefaultStartLimitBurst=`, `DefaultStartLimitIntervalSec=`).
pub const DEFAULT_LIMIT: StartLimit = StartLimit {
    burst: 5,
    interval: Duration::from_secs(10),
};

/// A unit's start rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartLimit {
    /// Starts allowed within `interval`.
    pub burst: u32,
    /// The window; zero turns the limit off.
    pub interval: Duration,
}

impl Systemd {
    /// The unit's start rate limit as systemd has it, or systemd's defaults if it cannot be
    /// read.
    pub async fn start_limit(&self, unit: &str) -> StartLimit {
        let Ok(u) = self.unit_proxy(unit).await else {
            return DEFAULT_LIMIT;
        };
        match (
            u.start_limit_burst().await,
            u.start_limit_interval_u_sec().await,
        ) {
            (Ok(burst), Ok(usec)) => StartLimit {
                burst,
                interval: Duration::from_micros(usec),
            },
            _ => DEFAULT_LIMIT,
        }
    }
}

/// virtmasq's recent restarts of the system unit: one CLOCK_MONOTONIC millisecond count a
/// line (the clock all processes share, which never jumps with the wall clock).
#[derive(Debug, Clone)]
pub struct RestartLog {
    /// The file.
    path: PathBuf,
}

impl RestartLog {
    /// The log kept in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("system.restarts"),
        }
    }

    /// How long to wait before one more start fits `limit` with `reserve` starts left over
    /// (a forward restart keeps one for its rollback), given the starts logged.
    pub fn wait_needed(&self, limit: StartLimit, reserve: u32) -> Duration {
        wait_needed(&self.recent(limit.interval), now_ms(), limit, reserve)
    }

    /// Waits (at most the limit's window) until one more start fits.
    pub async fn wait_for_room(&self, limit: StartLimit, reserve: u32) -> Duration {
        let wait = self.wait_needed(limit, reserve).min(limit.interval);
        if !wait.is_zero() {
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                burst = limit.burst,
                interval_ms = limit.interval.as_millis() as u64,
                "waiting so that the restart stays under the unit's start limit"
            );
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// Records a start made now (best effort: a log that cannot be written only weakens the
    /// limit, it never stops a restart). Replaced atomically but not made durable: its times
    /// are of the monotonic clock, meaningless after a reboot, and systemd's own start count
    /// does not survive one either.
    pub fn record(&self, limit: StartLimit) {
        let mut times = self.recent(limit.interval.max(DEFAULT_LIMIT.interval));
        times.push(now_ms());
        let text: String = times.iter().map(|t| format!("{t}\n")).collect();
        if let Err(e) = crate::fsutil::replace_volatile(&self.path, text.as_bytes(), 0o600) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot record a restart");
        }
    }

    /// The logged starts inside the last `window`.
    fn recent(&self, window: Duration) -> Vec<u64> {
        let now = now_ms();
        let from = now.saturating_sub(window.as_millis() as u64);
        fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            // A time ahead of now is from before a reboot.
            .filter(|t| (from..=now).contains(t))
            .collect()
    }
}

/// The pure part of [`RestartLog::wait_needed`]: with `times` the starts in the window,
/// how long until `reserve + 1` more fit.
pub fn wait_needed(times: &[u64], now: u64, limit: StartLimit, reserve: u32) -> Duration {
    if limit.interval.is_zero() || limit.burst == 0 {
        return Duration::ZERO;
    }
    let window = limit.interval.as_millis() as u64;
    let mut inside: Vec<u64> = times
        .iter()
        .copied()
        .filter(|t| *t + window > now)
        .collect();
    inside.sort_unstable();
    // Room for this start and the reserve; a burst too small for both keeps room for one.
    let allowed = (limit.burst - (reserve + 1).min(limit.burst)) as usize;
    if inside.len() <= allowed {
        return Duration::ZERO;
    }
    // The oldest starts must leave the window until only `allowed` remain; a little slack
    // so systemd's own clock has seen them leave too.
    let leaving = inside[inside.len() - allowed - 1];
    Duration::from_millis(leaving + window - now + 50)
}

fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: StartLimit = DEFAULT_LIMIT;

    /// Five starts in ten seconds are allowed: a forward restart may be the fourth (its
    /// rollback would be the fifth), a rollback restart the fifth, never the sixth.
    #[test]
    fn room_is_kept_for_the_rollback() {
        let now = 100_000;
        let table: &[(&[u64], u32, u64)] = &[
            (&[], 1, 0),
            (&[95_000, 96_000, 97_000], 1, 0),
            (&[95_000, 96_000, 97_000, 98_000], 1, 5_050),
            (&[95_000, 96_000, 97_000, 98_000], 0, 0),
            (&[91_000, 92_000, 93_000, 94_000, 95_000], 0, 1_050),
            // Outside the window: not counted.
            (&[80_000, 85_000, 89_999, 90_000], 1, 0),
        ];
        for (times, reserve, want) in table {
            assert_eq!(
                wait_needed(times, now, LIMIT, *reserve),
                Duration::from_millis(*want),
                "{times:?} reserve {reserve}"
            );
        }
    }

    #[test]
    fn no_limit_no_wait() {
        let off = StartLimit {
            burst: 5,
            interval: Duration::ZERO,
        };
        assert_eq!(wait_needed(&[1, 2, 3, 4, 5, 6], 7, off, 1), Duration::ZERO);
    }

    #[test]
    fn the_log_keeps_recent_starts() {
        let dir = tempfile::tempdir().unwrap();
        let log = RestartLog::new(dir.path());
        for _ in 0..4 {
            log.record(LIMIT);
        }
        assert_eq!(log.recent(LIMIT.interval).len(), 4);
        assert!(log.wait_needed(LIMIT, 1) > Duration::from_secs(9));
        assert!(log.wait_needed(LIMIT, 0).is_zero());
    }
}
