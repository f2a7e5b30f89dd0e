//! Which inbound peer gives way when there are too many: Bitcoin Core's
//! `AttemptToEvictConnection`, scaled down to toy's few slots.
//!
//! An attacker can open inbound connections cheaply and say hello with any
//! address, but it cannot cheaply *earn* the things this protects: a
//! network group of its own ([`toy_msg::netgroup_of`]) under a key it does
//! not know, a fast round trip, valid blocks and transactions it delivered
//! first, and a long time connected. Each of those protects a few peers;
//! only the rest can be evicted, and of those the youngest connection of
//! the best-represented group goes first. So a flood of fresh connections
//! evicts itself, and an honest peer that has been useful stays.
//!
//! Outbound peers are never candidates: we chose them, so inbound pressure
//! cannot take their slots.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use crate::{Contribution, PeerId};

/// Peers protected by their keyed network group (Core: 4 of 117 inbound).
pub(crate) const PROTECT_BY_GROUP: usize = 2;
/// Peers protected by the lowest round trip (Core: 8).
pub(crate) const PROTECT_BY_RTT: usize = 2;
/// Peers protected by the most recent new valid transaction (Core: 4).
pub(crate) const PROTECT_BY_TX: usize = 2;
/// Peers protected by the most recent new valid block (Core: 4).
pub(crate) const PROTECT_BY_BLOCK: usize = 2;

/// What eviction knows about one inbound peer.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) id: PeerId,
    pub(crate) netgroup: String,
    pub(crate) connected: Instant,
    pub(crate) min_rtt: Option<Duration>,
    pub(crate) last_block: Option<Instant>,
    pub(crate) last_tx: Option<Instant>,
}

impl Candidate {
    fn last(&self, what: Contribution) -> Option<Instant> {
        match what {
            Contribution::Block => self.last_block,
            Contribution::Transaction => self.last_tx,
        }
    }
}

/// Removes up to `n` candidates that rank first by `key` (smallest first)
/// among those `key` ranks at all (`None`: not protected by it). Never
/// removes the last candidate.
fn protect<K: Ord>(cands: &mut Vec<Candidate>, n: usize, key: impl Fn(&Candidate) -> Option<K>) {
    let n = n.min(cands.len().saturating_sub(1));
    let mut ranked: Vec<(K, PeerId)> = cands.iter().filter_map(|c| key(c).map(|k| (k, c.id.clone()))).collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0));
    ranked.truncate(n);
    cands.retain(|c| !ranked.iter().any(|(_, id)| *id == c.id));
}

/// The inbound peer to evict; `None` only when there are no candidates.
///
/// Core's counts are for 117 inbound slots; toy has a handful, so each
/// category protects at most an eighth of the candidates but at least one
/// (the keyed group: an eighth, none in small sets), and never the last
/// one: the rule orders who goes, it never refuses to pick. What is
/// hardest to fake comes first: a new valid block, then a transaction
/// delivered first, then a measured round trip, the keyed group, and
/// half of the rest by time connected.
///
/// `key` is secret to this node (drawn at start): an attacker cannot choose
/// addresses whose groups it prefers.
pub(crate) fn select(mut cands: Vec<Candidate>, key: u64) -> Option<PeerId> {
    let share = |base: usize, len: usize| base.min((len / 8).max(1));
    let keyed = |group: &str| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        group.hash(&mut h);
        h.finish()
    };
    let len = cands.len();
    let latest = |what| move |c: &Candidate| c.last(what).map(std::cmp::Reverse);
    protect(&mut cands, share(PROTECT_BY_BLOCK, len), latest(Contribution::Block));
    protect(&mut cands, share(PROTECT_BY_TX, len), latest(Contribution::Transaction));
    protect(&mut cands, share(PROTECT_BY_RTT, len), |c| c.min_rtt);
    protect(&mut cands, PROTECT_BY_GROUP.min(len / 8), |c| Some(keyed(&c.netgroup)));
    // Half of the rest: the longest connected.
    let half = cands.len() / 2;
    protect(&mut cands, half, |c| Some(c.connected));
    // The group with the most connections (ties: the one with the youngest
    // connection) loses its youngest.
    let mut groups: HashMap<&str, (usize, Instant)> = HashMap::new();
    for c in &cands {
        let g = groups.entry(c.netgroup.as_str()).or_insert((0, c.connected));
        g.0 += 1;
        g.1 = g.1.max(c.connected);
    }
    let (group, _) = groups.into_iter().max_by_key(|(_, (n, youngest))| (*n, *youngest))?;
    let group = group.to_owned();
    cands.into_iter().filter(|c| c.netgroup == group).max_by_key(|c| c.connected).map(|c| c.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, group: &str, age_s: u64, now: Instant) -> Candidate {
        Candidate {
            id: PeerId(name.to_owned()),
            netgroup: group.to_owned(),
            connected: now - Duration::from_secs(age_s),
            min_rtt: None,
            last_block: None,
            last_tx: None,
        }
    }

    #[test]
    fn a_flood_of_fresh_connections_evicts_itself_not_the_useful_old_peer() {
        let now = Instant::now() + Duration::from_secs(10_000);
        let mut honest = cand("honest", "10.1.0.0/16", 3_600, now);
        honest.last_block = Some(now - Duration::from_secs(30));
        for key in 0..50 {
            let mut cands = vec![honest.clone()];
            for i in 0..16 {
                cands.push(cand(&format!("flood{i}"), &format!("g{i}"), i, now));
            }
            let victim = select(cands, key).expect("someone is evictable");
            assert_ne!(victim.0, "honest", "key {key}");
        }
    }

    #[test]
    fn in_a_small_set_a_peer_with_a_record_outlives_older_silent_ones() {
        // Four slots: three old silent peers from different groups hold
        // them; the honest peer is the youngest but delivered a block.
        let now = Instant::now() + Duration::from_secs(10_000);
        let mut honest = cand("honest", "h", 10, now);
        honest.last_block = Some(now - Duration::from_secs(5));
        let mut fast = cand("fast", "f", 3_000, now);
        fast.min_rtt = Some(Duration::from_millis(1));
        let cands = vec![honest, fast, cand("old1", "a", 3_000, now), cand("old2", "b", 2_000, now)];
        for key in 0..20 {
            let victim = select(cands.clone(), key).expect("evictable");
            assert_ne!(victim.0, "honest", "key {key}");
            assert_ne!(victim.0, "fast", "key {key}: a measured round trip protects");
        }
        // A peer without a measured round trip is not protected by one.
        let cands = vec![cand("silent-young", "a", 1, now), cand("silent-old", "b", 100, now)];
        assert_eq!(select(cands, 1), Some(PeerId("silent-young".into())));
    }

    #[test]
    fn the_biggest_group_loses_its_youngest() {
        let now = Instant::now() + Duration::from_secs(10_000);
        let mut cands = Vec::new();
        for i in 0..12 {
            cands.push(cand(&format!("one{i}"), "same", 100 + i, now));
        }
        for i in 0..4 {
            cands.push(cand(&format!("other{i}"), &format!("o{i}"), 1, now));
        }
        let victim = select(cands, 7).expect("evictable");
        assert!(victim.0.starts_with("one"), "{victim}");
    }

    #[test]
    fn someone_is_always_picked_and_in_a_small_set_the_youngest() {
        let now = Instant::now() + Duration::from_secs(10_000);
        assert_eq!(select(vec![], 1), None);
        let cands = vec![cand("a", "ga", 5, now), cand("b", "gb", 6, now)];
        assert_eq!(select(cands, 1), Some(PeerId("a".into())));
        for n in 1..40 {
            let cands: Vec<Candidate> = (0..n).map(|i| cand(&format!("p{i}"), "g", i, now)).collect();
            assert!(select(cands, 3).is_some(), "{n} candidates");
        }
    }
}
