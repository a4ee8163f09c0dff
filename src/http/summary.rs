//! What the endpoint did, logged as one summary line at most once a minute: any guest can send
//! requests, and a line per request at info would let one guest flood the journal. Each request
//! is logged at debug.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One kind of event the summary counts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Event {
    /// A script was served.
    Served,
    /// A request was refused (bad query).
    BadRequest,
    /// A connection was closed at once: its peer already holds its share of connections.
    OverPeerCap,
    /// A connection was closed at once: the endpoint holds all the connections it takes.
    OverTotalCap,
}

/// Counters since the last summary line, and when that line was logged.
#[derive(Debug)]
pub(super) struct Summary {
    /// Counts per [`Event`], in its order.
    counts: [AtomicU64; 4],
    /// When the last line was logged (or the summary made): the next waits `every` after it.
    last: Mutex<Instant>,
    /// The shortest time between two lines.
    every: Duration,
}

impl Summary {
    /// A summary logging at most one line per `every`.
    pub(super) fn new(every: Duration) -> Self {
        Self {
            counts: Default::default(),
            last: Mutex::new(Instant::now()),
            every,
        }
    }

    /// Counts `event`, and logs the summary if the last line is `every` old.
    pub(super) fn record(&self, event: Event) {
        self.counts[event as usize].fetch_add(1, Ordering::Relaxed);
        if let Some([served, bad, peer, total]) = self.take_due() {
            tracing::info!(
                served,
                bad_requests = bad,
                refused_peer_cap = peer,
                refused_total_cap = total,
                "iPXE script endpoint since the last summary"
            );
        }
    }

    /// The counts, reset, if a line is due.
    fn take_due(&self) -> Option<[u64; 4]> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() < self.every {
            return None;
        }
        *last = Instant::now();
        Some(std::array::from_fn(|i| {
            self.counts[i].swap(0, Ordering::Relaxed)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_until_a_line_is_due_then_starts_again() {
        let s = Summary::new(Duration::from_millis(50));
        s.counts[Event::Served as usize].fetch_add(3, Ordering::Relaxed);
        s.counts[Event::OverPeerCap as usize].fetch_add(1, Ordering::Relaxed);
        assert_eq!(s.take_due(), None, "a line before its time");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(s.take_due(), Some([3, 0, 1, 0]));
        assert_eq!(s.take_due(), None);
    }
}
