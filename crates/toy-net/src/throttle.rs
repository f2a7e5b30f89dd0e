//! Repeated warnings, summarised: one line per kind per period.
//!
//! A flood of refused connections or bad frames used to log one warning
//! each (9.5 MB of log in 25 s). A [`Throttle`] lets the first warning of a
//! kind through, then at most one per period, saying how many were held
//! back meanwhile.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Default period between two warnings of one kind: 10 s.
pub const DEFAULT_WARN_EVERY: Duration = Duration::from_secs(10);

/// Rate limit for log lines, keyed by a static kind name.
///
/// Bounded: one entry per distinct kind, and kinds are `&'static str`
/// literals in the code, so the map holds a handful of entries.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    kinds: Mutex<HashMap<&'static str, (Option<Instant>, u64)>>,
}

impl Throttle {
    /// One line per kind per `every`.
    pub fn new(every: Duration) -> Self {
        Self { every, kinds: Mutex::new(HashMap::new()) }
    }

    /// Whether a warning of `kind` may be logged now: `Some(held_back)`,
    /// the number of warnings of this kind not logged since the last one;
    /// `None` to stay quiet (the warning is counted).
    pub fn allow(&self, kind: &'static str) -> Option<u64> {
        self.allow_at(kind, Instant::now())
    }

    fn allow_at(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, held) = kinds.entry(kind).or_insert((None, 0));
        match last {
            Some(at) if now.saturating_duration_since(*at) < self.every => {
                *held += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(held))
            }
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(DEFAULT_WARN_EVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_passes_then_one_per_period_with_the_count_held_back() {
        let t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.allow_at("a", t0), Some(0));
        for i in 1..=100 {
            assert_eq!(t.allow_at("a", t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.allow_at("b", t0), Some(0), "kinds are separate");
        assert_eq!(t.allow_at("a", t0 + Duration::from_secs(10)), Some(100));
        assert_eq!(t.allow_at("a", t0 + Duration::from_secs(11)), None);
    }
}
