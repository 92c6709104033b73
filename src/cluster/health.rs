//! Whether Redis answers: the state machine behind fallback, the metrics and the log.
//!
//! Three states. `Starting` until the first answer or failure; `Up` while operations succeed;
//! `Down` from the first operation that could not reach Redis until a probe reaches it again.
//! While not `Up`, operations are not even tried (every request would otherwise wait out the
//! timeout): the callers fall back at once, and only the background probe talks to Redis.
//! [`Health::report`] says when the state *changed*, so the log gets one line per change,
//! not one per request.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const STARTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// A change worth one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The first contact succeeded.
    Connected,
    /// Redis could not be reached (at start, or after having been up).
    Lost,
    /// Redis answers again after having been unreachable.
    Restored,
}

/// The shared up/down state and the error count.
#[derive(Debug, Default)]
pub struct Health {
    state: AtomicU8,
    errors: AtomicU64,
}

impl Health {
    /// Whether operations should be sent to Redis.
    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Acquire) == UP
    }

    /// Failed operations and probes since start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Records how one operation or probe ended; `Some` when that changed the state.
    pub fn report(&self, reached: bool) -> Option<Change> {
        if !reached {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let new = if reached { UP } else { DOWN };
        let old = self.state.swap(new, Ordering::AcqRel);
        match (old, new) {
            (STARTING, UP) => Some(Change::Connected),
            (DOWN, UP) => Some(Change::Restored),
            (STARTING | UP, DOWN) => Some(Change::Lost),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_change_per_transition_not_per_report() {
        let h = Health::default();
        assert!(!h.is_up(), "not up before the first answer");
        assert_eq!(h.report(true), Some(Change::Connected));
        assert_eq!(h.report(true), None);
        assert!(h.is_up());
        assert_eq!(h.report(false), Some(Change::Lost));
        assert!(!h.is_up());
        assert_eq!(h.report(false), None);
        assert_eq!(h.report(false), None);
        assert_eq!(h.report(true), Some(Change::Restored));
        assert_eq!(h.report(true), None);
        assert_eq!(h.errors(), 3);
    }

    #[test]
    fn unreachable_at_start_is_a_loss() {
        let h = Health::default();
        assert_eq!(h.report(false), Some(Change::Lost));
        assert_eq!(h.report(true), Some(Change::Restored));
    }
}
