//! Addresses heard of but not reached yet: the "new" table of Bitcoin
//! Core's address manager. The [peers book](crate::book) is its "tried"
//! table: addresses a handshake reached.
//!
//! Why a table and not a queue: a node that dials only what its first peers
//! told it joins their neighbourhood, and a network of such nodes is a long,
//! thin graph (a 1 000-node flood took twice the hops of a random graph).
//! Bitcoin Core mixes its graph by remembering many addresses learned from
//! everyone, answering `getaddr` with a random sample of them, choosing
//! outbound peers at random from the whole table, and testing random new
//! addresses with short "feeler" connections. This table follows it, on a
//! small scale:
//!
//! - **Bucketed by source.** An address lands in one of [`NEW_BUCKETS`]
//!   buckets chosen by a keyed hash of the *source's* network group and the
//!   address's group, and each source group can reach only
//!   [`BUCKETS_PER_SOURCE_GROUP`] of them. The source is where the
//!   connection that told us comes from (its remote address), never a name
//!   it claimed: one network group of senders (an IPv4 /16; one host for
//!   loopback and private addresses) fills at most 8 × 16 = 128 of the
//!   1 024 slots, however many addresses it sends and however many names
//!   it claims.
//! - **What is there stays.** A full bucket takes a newcomer only in the
//!   place of an address that failed a dial; a flood of fresh addresses
//!   cannot flush the ones heard before (Bitcoin Core keeps an entry unless
//!   it is "terrible").
//! - **Failures age entries out**: an address that failed
//!   [`NEW_MAX_FAILURES`] dials in a row is dropped.
//!
//! Bounded: [`NEW_BUCKETS`] × [`NEW_BUCKET_SIZE`] = 1 024 entries; buckets
//! grow only as they fill.

use std::hash::{Hash, Hasher};

use rand::Rng;

use crate::netgroup_of;

/// Buckets of the table: 64.
pub const NEW_BUCKETS: usize = 64;
/// Addresses per bucket: 16.
pub const NEW_BUCKET_SIZE: usize = 16;
/// Buckets one source network group can put addresses in: 8 of the 64.
pub const BUCKETS_PER_SOURCE_GROUP: usize = 8;
/// Failed dials in a row after which an address leaves the table: 3.
pub const NEW_MAX_FAILURES: u8 = 3;

#[derive(Debug)]
struct Entry {
    addr: String,
    failures: u8,
}

/// The "new" table (see the module documentation).
#[derive(Debug)]
pub(crate) struct NewTable {
    buckets: Vec<Vec<Entry>>,
    /// Secret of the bucket hash: another node's buckets are not ours, so
    /// an attacker cannot aim addresses at one bucket everywhere.
    key: u64,
    len: usize,
}

fn keyed(key: u64, parts: &[&str], n: u64) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    parts.hash(&mut h);
    n.hash(&mut h);
    h.finish()
}

impl NewTable {
    /// An empty table whose bucket hash is keyed by `key`.
    pub(crate) fn new(key: u64) -> Self {
        Self { buckets: (0..NEW_BUCKETS).map(|_| Vec::new()).collect(), key, len: 0 }
    }

    /// The bucket `addr` heard from `source` goes to: one of the
    /// [`BUCKETS_PER_SOURCE_GROUP`] buckets of the source's group.
    fn bucket_of(&self, addr: &str, source: &str) -> usize {
        let (group, source_group) = (netgroup_of(addr), netgroup_of(source));
        let slice = keyed(self.key, &[&group], 0) % BUCKETS_PER_SOURCE_GROUP as u64;
        (keyed(self.key, &[&source_group], slice) % NEW_BUCKETS as u64) as usize
    }

    /// Adds `addr`, heard from `source`. `false` when it was there already
    /// (in that bucket) or its bucket is full of addresses that never failed.
    pub(crate) fn add(&mut self, addr: String, source: &str) -> bool {
        let b = self.bucket_of(&addr, source);
        let bucket = &mut self.buckets[b];
        if bucket.iter().any(|e| e.addr == addr) {
            return false;
        }
        if bucket.len() < NEW_BUCKET_SIZE {
            bucket.push(Entry { addr, failures: 0 });
            self.len += 1;
            return true;
        }
        match bucket.iter_mut().filter(|e| e.failures > 0).max_by_key(|e| e.failures) {
            Some(worst) => {
                *worst = Entry { addr, failures: 0 };
                true
            }
            None => false,
        }
    }

    /// A random address for which `skip` is false (a random bucket, then a
    /// random entry in it); `None` when none is found in a few tries.
    pub(crate) fn select(&self, rng: &mut impl Rng, skip: impl Fn(&str) -> bool) -> Option<String> {
        if self.len == 0 {
            return None;
        }
        for _ in 0..4 * NEW_BUCKETS {
            let bucket = &self.buckets[rng.gen_range(0..NEW_BUCKETS)];
            if bucket.is_empty() {
                continue;
            }
            let e = &bucket[rng.gen_range(0..bucket.len())];
            if !skip(&e.addr) {
                return Some(e.addr.clone());
            }
        }
        None
    }

    /// Up to `n` distinct random addresses.
    pub(crate) fn sample(&self, rng: &mut impl Rng, n: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for _ in 0..2 * n {
            if out.len() >= n.min(self.len) {
                break;
            }
            if let Some(a) = self.select(rng, |a| out.iter().any(|o| o == a)) {
                out.push(a);
            }
        }
        out
    }

    /// Removes every entry of `addr` (it was reached: it is "tried" now).
    pub(crate) fn remove(&mut self, addr: &str) {
        for bucket in &mut self.buckets {
            let before = bucket.len();
            bucket.retain(|e| e.addr != addr);
            self.len -= before - bucket.len();
        }
    }

    /// `addr` answered (a feeler, a refused hello): its failures are
    /// forgotten.
    pub(crate) fn answered(&mut self, addr: &str) {
        for e in self.buckets.iter_mut().flatten().filter(|e| e.addr == addr) {
            e.failures = 0;
        }
    }

    /// Counts a failed dial of `addr`; [`NEW_MAX_FAILURES`] in a row drop it.
    pub(crate) fn failed(&mut self, addr: &str) {
        for bucket in &mut self.buckets {
            for e in bucket.iter_mut().filter(|e| e.addr == addr) {
                e.failures = e.failures.saturating_add(1);
            }
            let before = bucket.len();
            bucket.retain(|e| e.failures < NEW_MAX_FAILURES);
            self.len -= before - bucket.len();
        }
    }

    /// Entries (an address heard from several source groups counts once
    /// per bucket it is in).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every address, once each.
    pub(crate) fn addrs(&self) -> Vec<String> {
        let mut v: Vec<String> = self.buckets.iter().flatten().map(|e| e.addr.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn one_source_group_fills_at_most_its_buckets_and_cannot_flush_the_rest() {
        let mut t = NewTable::new(7);
        // Honest addresses from many sources first.
        for i in 0..200 {
            t.add(format!("10.{i}.0.1:1"), &format!("10.{}.9.9:1", i % 50));
        }
        let honest = t.len();
        assert!(honest > 150, "{honest}");
        // Then a flood of 100 000 addresses, all from one attacker group.
        for i in 0..100_000u32 {
            t.add(format!("66.{}.{}.{}:1", i >> 16, (i >> 8) & 255, i & 255), "66.6.6.6:1");
        }
        let attacker = t.addrs().iter().filter(|a| a.starts_with("66.")).count();
        assert!(attacker <= BUCKETS_PER_SOURCE_GROUP * NEW_BUCKET_SIZE, "{attacker} slots taken by one source");
        let kept = t.addrs().iter().filter(|a| a.starts_with("10.")).count();
        assert_eq!(kept, honest, "no honest address was pushed out");
        assert!(t.len() <= NEW_BUCKETS * NEW_BUCKET_SIZE);
    }

    #[test]
    fn failures_make_room_and_age_entries_out() {
        let mut t = NewTable::new(1);
        let src = "1.1.1.1:1";
        let mut added = Vec::new();
        // Many address groups (the second octet), so they spread over all
        // of the source's buckets: one group from one source is one bucket.
        for i in 0..1000 {
            let a = format!("{}.{}.0.1:1", 10 + i / 200, i % 200);
            if t.add(a.clone(), src) {
                added.push(a);
            }
        }
        // One source: its buckets are full now.
        assert_eq!(t.len(), BUCKETS_PER_SOURCE_GROUP * NEW_BUCKET_SIZE);
        assert!(!t.add("8.8.8.8:1".into(), src));
        let victim = added[0].clone();
        t.failed(&victim);
        assert!(t.addrs().contains(&victim), "one failure is not enough to drop it");
        // A failed entry gives way to a newcomer in its bucket.
        let mut placed = false;
        for i in 0..5000 {
            if t.add(format!("{}.{}.7.7:1", 100 + i / 200, i % 200), src) {
                placed = true;
                break;
            }
        }
        assert!(placed && !t.addrs().contains(&victim));
        let other = added[1].clone();
        for _ in 0..NEW_MAX_FAILURES {
            t.failed(&other);
        }
        assert!(!t.addrs().contains(&other));
        t.remove(&added[2]);
        assert!(!t.addrs().contains(&added[2]));
        assert_eq!(t.len(), t.buckets.iter().map(Vec::len).sum::<usize>());
    }

    #[test]
    fn selection_reaches_every_part_of_the_table() {
        let mut t = NewTable::new(3);
        for i in 0..300 {
            t.add(format!("sim{i}:1"), &format!("sim{}:1", i % 30));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5000 {
            seen.insert(t.select(&mut rng, |_| false).expect("an address"));
        }
        assert!(seen.len() > 250, "{} of {} addresses ever chosen", seen.len(), t.len());
        let sample = t.sample(&mut rng, 20);
        assert_eq!(sample.len(), 20);
        let distinct: std::collections::HashSet<_> = sample.iter().collect();
        assert_eq!(distinct.len(), 20);
        assert_eq!(t.select(&mut rng, |_| true), None, "everything skipped");
    }
}
