//! A seeded chaos schedule: which node is killed, which group is cut off,
//! whose links slow down, and when. The same seed, node count and
//! duration give the same schedule, so a run that found a bug can be run
//! again.
//!
//! One fault at a time, each healed before the next starts, with a quiet
//! start (the network forms) and a quiet end (it settles before the oracle
//! verifies). Without namespaces only kills are possible: partitions and
//! latency need the [`Wire`](super::wire::Wire).

use std::time::Duration;

use rand::{Rng, SeedableRng};

/// Quiet time before the first fault.
pub(crate) const WARMUP: Duration = Duration::from_secs(20);
/// Quiet time after the last fault heals, before the run ends.
pub(crate) const SETTLE: Duration = Duration::from_secs(30);

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// `kill -9` the node; it restarts from its data when the fault ends.
    Kill {
        /// The node.
        node: usize,
    },
    /// Cut these nodes off from the rest (both sides keep their own links).
    Partition {
        /// The group cut off.
        group: Vec<usize>,
    },
    /// Add `extra` one-way delay to every link of the node.
    Spike {
        /// The node.
        node: usize,
        /// The added delay.
        extra: Duration,
    },
}

/// A fault, when it starts and how long it lasts (from the run's start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Planned {
    /// Start, from the run's start.
    pub(crate) at: Duration,
    /// How long it lasts.
    pub(crate) lasts: Duration,
    /// What it is.
    pub(crate) fault: Fault,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Kill { node } => write!(f, "kill -9 node {node}"),
            Fault::Partition { group } => write!(f, "cut off nodes {group:?}"),
            Fault::Spike { node, extra } => write!(f, "+{} ms on node {node}'s links", extra.as_millis()),
        }
    }
}

/// The schedule for `nodes` nodes over `run`. `wire`: whether partitions
/// and latency spikes are possible (namespaces).
pub(crate) fn schedule(seed: u64, nodes: usize, run: Duration, wire: bool) -> Vec<Planned> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut plan = Vec::new();
    let mut t = WARMUP;
    if nodes < 2 {
        return plan;
    }
    loop {
        let kind = if wire { rng.gen_range(0..3) } else { 0 };
        let (fault, lasts) = match kind {
            0 => (Fault::Kill { node: rng.gen_range(0..nodes) }, Duration::from_secs(rng.gen_range(3..=15))),
            1 => {
                let size = rng.gen_range(1..=nodes / 2);
                let mut group = rand::seq::index::sample(&mut rng, nodes, size).into_vec();
                group.sort_unstable();
                (Fault::Partition { group }, Duration::from_secs(rng.gen_range(10..=30)))
            }
            _ => {
                let extra = Duration::from_millis(rng.gen_range(200..=1000));
                (Fault::Spike { node: rng.gen_range(0..nodes), extra }, Duration::from_secs(rng.gen_range(10..=20)))
            }
        };
        if t + lasts + SETTLE > run {
            break;
        }
        plan.push(Planned { at: t, lasts, fault });
        t += lasts + Duration::from_secs(rng.gen_range(5..=15));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_schedule_with_quiet_ends_and_no_overlap() {
        let run = Duration::from_secs(600);
        let a = schedule(42, 20, run, true);
        assert_eq!(a, schedule(42, 20, run, true), "reproducible");
        assert_ne!(a, schedule(43, 20, run, true));
        assert!(a.len() >= 10, "{} faults in 10 minutes", a.len());
        assert!(a[0].at >= WARMUP);
        for w in a.windows(2) {
            assert!(w[0].at + w[0].lasts < w[1].at, "one fault at a time");
        }
        let last = a.last().expect("faults");
        assert!(last.at + last.lasts + SETTLE <= run);
        for p in &a {
            match &p.fault {
                Fault::Kill { node } | Fault::Spike { node, .. } => assert!(*node < 20),
                Fault::Partition { group } => assert!(!group.is_empty() && group.len() <= 10),
            }
        }
        for kind in ["kill", "cut off", "ms on"] {
            assert!(a.iter().any(|p| p.fault.to_string().contains(kind)), "{kind} in {a:?}");
        }
    }

    #[test]
    fn without_namespaces_only_kills_are_planned() {
        let plan = schedule(1, 4, Duration::from_secs(300), false);
        assert!(!plan.is_empty());
        assert!(plan.iter().all(|p| matches!(p.fault, Fault::Kill { .. })));
        assert!(schedule(1, 4, Duration::from_secs(40), true).is_empty(), "too short for warm-up and settling");
    }
}
