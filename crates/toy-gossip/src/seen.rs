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

    fn expire(&mut self, now: Instant) {
        while let Some((at, id)) = self.order.front().copied() {
            let too_old = now.duration_since(at) > self.ttl;
            if !too_old && self.order.len() <= self.capacity {
                break;
            }
            self.order.pop_front();
            if self.map.get(&id).is_some_and(|(t, _)| *t == at) {
                self.map.remove(&id);
            }
        }
    }

    /// Inserts `id` unless present; returns whether it was new.
    pub fn insert(&mut self, id: MsgId, value: V) -> bool {
        let now = Instant::now();
        self.expire(now);
        if self.map.contains_key(&id) {
            return false;
        }
        self.map.insert(id, (now, value));
        self.order.push_back((now, id));
        self.expire(now);
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
