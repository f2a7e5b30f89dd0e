//! Blocks whose parent is unknown, kept a while: bounded in count and bytes,
//! with a share per source.

use std::collections::{HashMap, VecDeque};

use super::*;

/// A block waiting for its parent.
#[derive(Debug)]
pub(super) struct Orphan {
    pub(super) block: Block,
    pub(super) bytes: usize,
    pub(super) source: Option<String>,
}

/// The orphan pool: blocks whose parent is unknown, bounded in count and in
/// bytes, with each source's share bounded too ([`TreeConfig::max_orphans`]).
#[derive(Debug, Default)]
pub(super) struct OrphanPool {
    pub(super) blocks: HashMap<Hash, Orphan>,
    /// Arrival order (oldest first).
    pub(super) order: VecDeque<Hash>,
    pub(super) by_parent: HashMap<Hash, Vec<Hash>>,
    /// Count and bytes held per source.
    pub(super) per_source: HashMap<Option<String>, (usize, usize)>,
    pub(super) bytes: usize,
}

impl OrphanPool {
    pub(super) fn add(&mut self, hash: Hash, block: Block, source: Option<&str>, config: &TreeConfig) {
        let bytes = block.encoded_len();
        let source = source.map(str::to_owned);
        let max_count = config.max_orphans.max(1);
        let max_bytes = config.max_orphan_bytes.max(1);
        let share = (max_count.div_ceil(ORPHAN_SHARE_DIVISOR), max_bytes.div_ceil(ORPHAN_SHARE_DIVISOR));
        if bytes > share.1 {
            return;
        }
        self.by_parent.entry(block.header.parent).or_default().push(hash);
        self.blocks.insert(hash, Orphan { block, bytes, source: source.clone() });
        self.order.push_back(hash);
        self.bytes += bytes;
        let mine = self.per_source.entry(source.clone()).or_default();
        mine.0 += 1;
        mine.1 += bytes;
        // Past its share, a source pays with its own oldest orphan.
        while self.per_source.get(&source).is_some_and(|(c, b)| *c > share.0 || *b > share.1) {
            let Some(oldest) = self.oldest_of(&source) else { break };
            self.remove(&oldest);
        }
        // Past the pool's limits, the source holding the most of what is
        // over (orphans, or bytes) pays with its oldest.
        while self.blocks.len() > max_count || self.bytes > max_bytes {
            let by_count = self.blocks.len() > max_count;
            let heaviest = self
                .per_source
                .iter()
                .max_by_key(|(_, (count, bytes))| if by_count { *count } else { *bytes })
                .map(|(s, _)| s.clone());
            let Some(heaviest) = heaviest else { break };
            let Some(oldest) = self.oldest_of(&heaviest) else { break };
            self.remove(&oldest);
        }
    }

    pub(super) fn oldest_of(&self, source: &Option<String>) -> Option<Hash> {
        self.order.iter().find(|h| self.blocks.get(h).is_some_and(|o| &o.source == source)).copied()
    }

    pub(super) fn remove(&mut self, hash: &Hash) -> Option<Orphan> {
        let orphan = self.blocks.remove(hash)?;
        self.order.retain(|h| h != hash);
        let parent = orphan.block.header.parent;
        if let Some(children) = self.by_parent.get_mut(&parent) {
            children.retain(|h| h != hash);
            if children.is_empty() {
                self.by_parent.remove(&parent);
            }
        }
        self.bytes -= orphan.bytes;
        if let Some(mine) = self.per_source.get_mut(&orphan.source) {
            mine.0 -= 1;
            mine.1 -= orphan.bytes;
            if mine.0 == 0 {
                self.per_source.remove(&orphan.source);
            }
        }
        Some(orphan)
    }

    /// Removes and returns the orphans whose parent is `parent`.
    pub(super) fn take_children(&mut self, parent: &Hash) -> Vec<(Hash, Block, Option<String>)> {
        let children = self.by_parent.get(parent).cloned().unwrap_or_default();
        children.into_iter().filter_map(|h| self.remove(&h).map(|o| (h, o.block, o.source))).collect()
    }
}
