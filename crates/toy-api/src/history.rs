//! The hash-rate history the node keeps for `/api/hashrate`, so the page's
//! chart has the last hour to show as soon as it opens.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How often the hash rate is sampled: every 10 s.
pub const RATE_SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples kept: 360, the last hour at one per [`RATE_SAMPLE_EVERY`].
pub const RATE_HISTORY_LEN: usize = 360;

/// One sample of the local miner's hash rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateSample {
    /// When, in ms since the Unix epoch.
    pub time_ms: u64,
    /// Hashes per second then (0 when not mining).
    pub hash_rate: f64,
}

/// The last [`RATE_HISTORY_LEN`] samples, oldest first; a new one past the
/// limit drops the oldest. Written only by the node's own sampler (no
/// request adds to it), so its size is fixed whatever clients do.
#[derive(Debug, Default)]
pub struct RateHistory {
    samples: Mutex<VecDeque<RateSample>>,
}

impl RateHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sample taken now.
    pub fn record(&self, hash_rate: f64) {
        let time_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.push(RateSample { time_ms, hash_rate });
    }

    fn push(&self, sample: RateSample) {
        let mut s = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if s.len() >= RATE_HISTORY_LEN {
            s.pop_front();
        }
        s.push_back(sample);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<RateSample> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner).iter().copied().collect()
    }

    /// Samples `rate` now and every [`RATE_SAMPLE_EVERY`] until `cancel`
    /// fires (spawn it next to the API server).
    pub async fn sample(
        self: std::sync::Arc<Self>,
        rate: impl Fn() -> f64 + Send + 'static,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let mut every = tokio::time::interval(RATE_SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = every.tick() => self.record(rate()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_keeps_the_last_hour_and_drops_the_oldest() {
        let h = RateHistory::new();
        for i in 0..RATE_HISTORY_LEN as u64 + 5 {
            h.push(RateSample { time_ms: i, hash_rate: i as f64 });
        }
        let s = h.samples();
        assert_eq!(s.len(), RATE_HISTORY_LEN);
        assert_eq!(s[0].time_ms, 5, "the five oldest went");
        assert_eq!(s.last().map(|x| x.time_ms), Some(RATE_HISTORY_LEN as u64 + 4));
    }
}
