//! The known-peers book: addresses that answered before, persisted to a
//! file so a restarted node finds the network again without bootstraps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Most addresses the book keeps: 1 000. When full, the entry seen longest
/// ago is dropped.
pub const MAX_BOOK_ENTRIES: usize = 1000;

/// Entries one network group ([`toy_msg::netgroup_of`] of the address)
/// may hold: 32. A newcomer of a full group replaces that group's entry
/// seen longest ago, so one /16 that keeps answering cannot fill the
/// tried table that half of all dials draw from.
pub const MAX_PER_GROUP: usize = 32;

/// Failed dials in a row after which an address is dropped.
pub const MAX_FAILURES: u32 = 5;

/// An address unseen this long (7 days, in ms) is dropped.
pub const MAX_AGE_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// One known peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookEntry {
    /// Its announced listening address.
    pub addr: String,
    /// Last successful handshake, ms since the epoch.
    pub last_seen_ms: u64,
    /// Failed dials since then.
    pub failures: u32,
}

/// Addresses we dialled and completed a handshake with (the "tried" table
/// of Bitcoin Core's address manager), with when they were last seen and
/// how often dialling them failed since.
///
/// Bounded: [`MAX_BOOK_ENTRIES`] entries (oldest `last_seen` evicted), at
/// most [`MAX_PER_GROUP`] per network group (the group's oldest evicted);
/// entries with [`MAX_FAILURES`] failures or older than [`MAX_AGE_MS`] age
/// out.
#[derive(Debug, Default)]
pub struct PeerBook {
    entries: HashMap<String, BookEntry>,
    path: Option<PathBuf>,
    dirty: bool,
}

impl PeerBook {
    /// An empty book kept only in memory.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Loads the book at `path` (an absent or unreadable file gives an empty
    /// book; a corrupt one is logged and replaced).
    pub fn load(path: &Path) -> Self {
        let mut book = Self { path: Some(path.to_owned()), ..Self::default() };
        match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<Vec<BookEntry>>(&bytes) {
                Ok(entries) => {
                    for e in entries.into_iter().take(MAX_BOOK_ENTRIES) {
                        book.entries.insert(e.addr.clone(), e);
                    }
                }
                Err(e) => tracing::warn!(path = %path.display(), "peers book unreadable, starting empty: {e}"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), "cannot read peers book: {e}"),
        }
        book
    }

    /// Records a successful handshake with `addr`.
    pub fn seen(&mut self, addr: &str, now_ms: u64) {
        if !self.entries.contains_key(addr) {
            let group = toy_msg::netgroup_of(addr);
            let mut same: Vec<&BookEntry> =
                self.entries.values().filter(|e| toy_msg::netgroup_of(&e.addr) == group).collect();
            if same.len() >= MAX_PER_GROUP {
                same.sort_by_key(|e| e.last_seen_ms);
                let oldest = same[0].addr.clone();
                self.entries.remove(&oldest);
            }
        }
        let e = self.entries.entry(addr.to_owned()).or_insert_with(|| BookEntry {
            addr: addr.to_owned(),
            last_seen_ms: 0,
            failures: 0,
        });
        e.last_seen_ms = now_ms;
        e.failures = 0;
        self.dirty = true;
        if self.entries.len() > MAX_BOOK_ENTRIES
            && let Some(oldest) = self.entries.values().min_by_key(|e| e.last_seen_ms).map(|e| e.addr.clone())
        {
            self.entries.remove(&oldest);
        }
    }

    /// Records a failed dial; drops the address after [`MAX_FAILURES`].
    pub fn failed(&mut self, addr: &str) {
        if let Some(e) = self.entries.get_mut(addr) {
            e.failures += 1;
            if e.failures >= MAX_FAILURES {
                self.entries.remove(addr);
            }
            self.dirty = true;
        }
    }

    /// Drops entries unseen for [`MAX_AGE_MS`].
    pub fn age_out(&mut self, now_ms: u64) {
        let before = self.entries.len();
        self.entries.retain(|_, e| now_ms.saturating_sub(e.last_seen_ms) <= MAX_AGE_MS);
        self.dirty |= self.entries.len() != before;
    }

    /// Known addresses, most recently seen first.
    pub fn addrs(&self) -> Vec<String> {
        let mut v: Vec<&BookEntry> = self.entries.values().collect();
        v.sort_by(|a, b| b.last_seen_ms.cmp(&a.last_seen_ms).then(a.failures.cmp(&b.failures)));
        v.into_iter().map(|e| e.addr.clone()).collect()
    }

    /// A random address, without sorting or copying the book.
    pub fn random(&self, rng: &mut impl rand::Rng) -> Option<&str> {
        if self.entries.is_empty() {
            return None;
        }
        self.entries.values().nth(rng.gen_range(0..self.entries.len())).map(|e| e.addr.as_str())
    }

    /// Whether `addr` is in the book.
    pub fn contains(&self, addr: &str) -> bool {
        self.entries.contains_key(addr)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the book to its file if it changed (atomically: a temporary
    /// file renamed over the old one).
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let entries: Vec<&BookEntry> = self.entries.values().collect();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&entries).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, path)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_ages_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("peers.json");
        let mut b = PeerBook::load(&path);
        b.seen("a:1", 1000);
        b.seen("b:2", 2000);
        b.save().expect("save");
        let mut again = PeerBook::load(&path);
        assert_eq!(again.addrs(), vec!["b:2".to_owned(), "a:1".to_owned()]);
        for _ in 0..MAX_FAILURES {
            again.failed("a:1");
        }
        assert_eq!(again.addrs(), vec!["b:2".to_owned()]);
        again.age_out(2000 + MAX_AGE_MS + 1);
        assert!(again.is_empty());
        std::fs::write(&path, b"not json").expect("write");
        assert!(PeerBook::load(&path).is_empty(), "corrupt file gives an empty book");
    }

    #[test]
    fn one_group_holds_at_most_its_share() {
        let mut b = PeerBook::in_memory();
        b.seen("198.51.100.1:1", 1);
        for i in 0..200u64 {
            b.seen(&format!("203.0.{}.{}:1", i / 200, i % 200), 10 + i);
        }
        let theirs = b.addrs().iter().filter(|a| a.starts_with("203.0.")).count();
        assert_eq!(theirs, MAX_PER_GROUP);
        assert!(b.contains("198.51.100.1:1"), "another group's entry stays");
        assert!(b.contains("203.0.0.199:1") && !b.contains("203.0.0.0:1"), "the group's oldest went");
    }

    #[test]
    fn bounded() {
        let mut b = PeerBook::in_memory();
        for i in 0..(MAX_BOOK_ENTRIES as u64 + 10) {
            b.seen(&format!("h:{i}"), i);
        }
        assert_eq!(b.len(), MAX_BOOK_ENTRIES);
        assert!(!b.addrs().contains(&"h:0".to_owned()), "oldest evicted");
    }
}
