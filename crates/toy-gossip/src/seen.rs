//! Bounded, expiring maps keyed by 16-byte message ids.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A 16-byte gossip or search id.
pub type MsgId = [u8; 16];

/// The key a message is remembered under in the seen-set: the first 16
/// bytes of SHA-256(wire kind ‖ 0x00 ‖ id ‖ body).
///
/// Not the id alone: an id is chosen by whoever sends first, so an attacker
/// who copies an honest message's id onto other content, and sends it
/// first, would make the honest message look already seen (and never be
/// handled or forwarded). With the content in the key, the copy and the
/// original are two different messages; copies of the same message still
/// meet the same key at every node.
pub fn seen_key(wire_kind: &str, id: &MsgId, body: &[u8]) -> MsgId {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(wire_kind.as_bytes());
    h.update([0u8]);
    h.update(id);
    h.update(body);
    let digest = h.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// Ids (with a value) remembered for a while.
///
/// Bounded by count (the oldest is evicted first when full) and by age
/// (entries older than `ttl` are dropped as new ones arrive).
#[derive(Debug)]
pub struct IdMap<V> {
    map: HashMap<MsgId, (Instant, V)>,
    order: VecDeque<(Instant, MsgId)>,
    capacity: usize,
    ttl: Duration,
}

impl<V> IdMap<V> {
    /// A map of at most `capacity` ids, each kept at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self { map: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1), ttl }
    }

    fn expire(&mut self, now: Instant, evicted: &mut impl FnMut(V)) {
        while let Some((at, id)) = self.order.front().copied() {
            let too_old = now.duration_since(at) > self.ttl;
            if !too_old && self.order.len() <= self.capacity {
                break;
            }
            self.order.pop_front();
            if self.map.get(&id).is_some_and(|(t, _)| *t == at)
                && let Some((_, v)) = self.map.remove(&id)
            {
                evicted(v);
            }
        }
    }

    /// Inserts `id` unless present; returns whether it was new.
    pub fn insert(&mut self, id: MsgId, value: V) -> bool {
        self.insert_evicting(id, value, &mut |_| {})
    }

    /// [`IdMap::insert`], handing every value it expires or evicts to
    /// `evicted`.
    pub fn insert_evicting(&mut self, id: MsgId, value: V, evicted: &mut impl FnMut(V)) -> bool {
        let now = Instant::now();
        self.expire(now, evicted);
        if self.map.contains_key(&id) {
            return false;
        }
        self.map.insert(id, (now, value));
        self.order.push_back((now, id));
        self.expire(now, evicted);
        true
    }

    /// The value of `id`, if remembered and not expired.
    pub fn get(&self, id: &MsgId) -> Option<&V> {
        self.map.get(id).filter(|(t, _)| t.elapsed() <= self.ttl).map(|(_, v)| v)
    }

    /// Forgets `id`.
    pub fn remove(&mut self, id: &MsgId) -> Option<V> {
        self.map.remove(id).map(|(_, v)| v)
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Search return paths: the peer each search id came from, with a share
/// per peer. Bounded like [`IdMap`] (count and age) and, per peer, by
/// `share`: a peer holding its share lays no new route until some of its
/// old ones expire, so its queries cannot push other peers' routes out.
#[derive(Debug)]
pub struct Routes<P> {
    map: IdMap<P>,
    per_peer: HashMap<P, usize>,
    share: usize,
}

impl<P: std::hash::Hash + Eq + Clone> Routes<P> {
    /// At most `capacity` routes, each kept `ttl`, at most `share` per peer.
    pub fn new(capacity: usize, ttl: Duration, share: usize) -> Self {
        Self { map: IdMap::new(capacity, ttl), per_peer: HashMap::new(), share: share.max(1) }
    }

    /// Lays a route for `id` back to `peer`; `false` when `id` has one
    /// already or `peer` holds its share.
    pub fn insert(&mut self, id: MsgId, peer: P) -> bool {
        fn forget<P: std::hash::Hash + Eq>(per_peer: &mut HashMap<P, usize>, gone: P) {
            if let Some(n) = per_peer.get_mut(&gone) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_peer.remove(&gone);
                }
            }
        }
        // Expired routes leave before the share is looked at: a peer's
        // count falls as its old routes age out, with or without traffic.
        let per_peer = &mut self.per_peer;
        self.map.expire(Instant::now(), &mut |gone| forget(per_peer, gone));
        if self.map.get(&id).is_some() || self.per_peer.get(&peer).is_some_and(|n| *n >= self.share) {
            return false;
        }
        let per_peer = &mut self.per_peer;
        let laid = self.map.insert_evicting(id, peer.clone(), &mut |gone| forget(per_peer, gone));
        if laid {
            *self.per_peer.entry(peer).or_insert(0) += 1;
        }
        laid
    }

    /// The peer to send `id`'s answers back to.
    pub fn get(&self, id: &MsgId) -> Option<&P> {
        self.map.get(id)
    }

    /// Routes held for `peer`.
    pub fn held_by(&self, peer: &P) -> usize {
        self.per_peer.get(peer).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_key_depends_on_kind_id_and_content() {
        let id = [7; 16];
        let k = seen_key("gossip:a", &id, b"x");
        assert_eq!(k, seen_key("gossip:a", &id, b"x"));
        assert_ne!(k, seen_key("gossip:a", &id, b"y"), "same id, other content");
        assert_ne!(k, seen_key("gossip:b", &id, b"x"), "other kind");
        assert_ne!(k, seen_key("gossip:a", &[8; 16], b"x"), "other id");
    }

    #[test]
    fn one_peer_cannot_flush_the_routes_of_another() {
        let mut r = Routes::new(100, Duration::from_secs(60), 12);
        assert!(r.insert([0; 16], "honest"));
        for i in 1..=200u8 {
            r.insert([i; 16], "flooder");
        }
        assert_eq!(r.held_by(&"flooder"), 12);
        assert_eq!(r.get(&[0; 16]), Some(&"honest"), "the honest route survives");
        assert!(!r.insert([0; 16], "flooder"), "one route per id");
    }

    #[test]
    fn bounded_by_count_and_age() {
        let mut m = IdMap::new(2, Duration::from_secs(60));
        assert!(m.insert([1; 16], ()));
        assert!(!m.insert([1; 16], ()), "duplicate");
        m.insert([2; 16], ());
        m.insert([3; 16], ());
        assert_eq!(m.len(), 2);
        assert!(m.get(&[1; 16]).is_none(), "oldest evicted");
        let mut short = IdMap::new(10, Duration::ZERO);
        short.insert([1; 16], 5);
        let t0 = Instant::now();
        while Instant::now() == t0 {
            std::hint::spin_loop();
        }
        short.insert([2; 16], 6);
        assert!(short.get(&[1; 16]).is_none(), "expired");
    }
}
