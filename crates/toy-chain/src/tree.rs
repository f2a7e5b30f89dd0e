//! The block tree: every valid branch, the best chain by work, reorgs,
//! orphans, pruning, and the mempool kept in step.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::watch;

use crate::crypto::{SigCache, Verifier};
use crate::error::{BlockError, ChainError, StoreError};
use crate::mempool::{Mempool, MempoolConfig, MempoolError};
use crate::params::ChainParams;
use crate::state::{Account, BlockContext, State, Undo, apply_body, check_header};
use crate::store::{AccountWrite, Store};
use crate::target::{scale, work};
use crate::types::{Address, Block, Hash, Header, MAX_BLOCK_BYTES, Transaction, merkle_root};

/// Default capacity of the orphan pool: 256 blocks (~1 MiB at dev sizes),
/// enough to hold a burst that arrived ahead of its parents during sync.
pub const DEFAULT_MAX_ORPHANS: usize = 256;

/// Default number of invalid block hashes remembered: 10 000.
pub const DEFAULT_MAX_INVALID: usize = 10_000;

/// Limits of the block tree.
#[derive(Debug, Clone)]
pub struct TreeConfig {
    /// Orphans held; the oldest is dropped first.
    pub max_orphans: usize,
    /// Invalid hashes remembered; the oldest is forgotten first.
    pub max_invalid: usize,
    /// The mempool's limits.
    pub mempool: MempoolConfig,
}

impl Default for TreeConfig {
    fn default() -> Self {
        Self { max_orphans: DEFAULT_MAX_ORPHANS, max_invalid: DEFAULT_MAX_INVALID, mempool: MempoolConfig::default() }
    }
}

/// What inserting a block did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// It extended the best chain.
    Connected {
        /// Its hash.
        hash: Hash,
        /// Its height.
        height: u64,
    },
    /// Its branch has more work: the best chain moved to it.
    Reorganised {
        /// The previous tip.
        from: Hash,
        /// The new tip.
        to: Hash,
        /// Blocks undone.
        disconnected: usize,
        /// Blocks applied.
        connected: usize,
    },
    /// Valid so far and kept on a side branch with less work.
    SideBranch {
        /// Its hash.
        hash: Hash,
    },
    /// Its parent is unknown; it waits in the orphan pool.
    Orphan {
        /// The parent to fetch.
        missing_parent: Hash,
    },
    /// It breaks a rule; it and its descendants are refused from now on.
    Invalid {
        /// Which rule.
        reason: BlockError,
    },
    /// Already known.
    Duplicate,
    /// Its branch forks below the pruning depth: ancestors its rules need
    /// (retarget window, median time) were pruned, so it can be neither
    /// validated nor kept. Not a fault of the sender.
    Stale {
        /// The first ancestor that is gone.
        missing_ancestor: Hash,
    },
}

/// The best chain's tip, as published to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    /// Tip hash.
    pub hash: Hash,
    /// Tip height.
    pub height: u64,
    /// Cumulative work of the best chain.
    pub work: u128,
}

#[derive(Debug, Clone)]
struct Node {
    header: Header,
    work: u128,
}

/// A bounded set remembering insertion order (FIFO eviction).
#[derive(Debug, Default)]
struct BoundedSet {
    set: HashSet<Hash>,
    order: VecDeque<Hash>,
    cap: usize,
}

impl BoundedSet {
    fn insert(&mut self, h: Hash) {
        if self.set.insert(h) {
            self.order.push_back(h);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// The block tree with the best chain's state and the mempool.
///
/// Bounded: the orphan pool and the invalid set by [`TreeConfig`]; the block
/// index holds the canonical chain plus side branches, which are pruned once
/// `prune_depth` blocks behind the tip.
pub struct Chain<S: Store> {
    params: ChainParams,
    store: S,
    verifier: Arc<dyn Verifier>,
    sigs: Arc<SigCache>,
    config: TreeConfig,
    index: HashMap<Hash, Node>,
    /// Hashes of indexed blocks that are not canonical.
    side: HashSet<Hash>,
    canonical: Vec<Hash>,
    state: State,
    mempool: Mempool,
    invalid: BoundedSet,
    orphans: HashMap<Hash, Block>,
    orphan_order: VecDeque<Hash>,
    tip_tx: watch::Sender<Tip>,
}

impl<S: Store> std::fmt::Debug for Chain<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("params", &self.params.name).field("tip", &self.tip()).finish_non_exhaustive()
    }
}

/// The ids of a block's transactions, for the store's transaction index.
fn tx_ids(block: &Block) -> Vec<Hash> {
    block.txs.iter().map(Transaction::id).collect()
}

/// Milliseconds since the Unix epoch by the system clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl<S: Store> Chain<S> {
    /// Opens the chain in `store`: starts from genesis when empty, otherwise
    /// reloads the tip, state and block index, and finishes any reorg a crash
    /// interrupted.
    ///
    /// # Errors
    /// [`ChainError::Store`] on storage failure, [`ChainError::GenesisMismatch`]
    /// when the store belongs to another chain.
    pub fn open(
        params: ChainParams,
        store: S,
        verifier: Arc<dyn Verifier>,
        sigs: Arc<SigCache>,
        config: TreeConfig,
    ) -> Result<Self, ChainError> {
        let genesis = params.genesis();
        let genesis_hash = genesis.hash();
        let (tip_tx, _) = watch::channel(Tip { hash: genesis_hash, height: 0, work: 0 });
        let mut chain = Self {
            invalid: BoundedSet { cap: config.max_invalid.max(1), ..Default::default() },
            mempool: Mempool::new(config.mempool.clone()),
            params,
            store,
            verifier,
            sigs,
            config,
            index: HashMap::new(),
            side: HashSet::new(),
            canonical: Vec::new(),
            state: State::default(),
            orphans: HashMap::new(),
            orphan_order: VecDeque::new(),
            tip_tx,
        };
        match chain.store.tip()? {
            None => {
                let state = State::genesis(&chain.params);
                let writes: Vec<AccountWrite> = state.iter().map(|(a, v)| (*a, Some(*v))).collect();
                chain.store.put_block(&genesis_hash, &genesis)?;
                chain.store.connect(&genesis_hash, 0, &Undo::default(), &writes, &tx_ids(&genesis))?;
                chain.state = state;
                chain.index.insert(genesis_hash, Node { header: genesis.header, work: 0 });
                chain.canonical.push(genesis_hash);
            }
            Some(tip) => chain.reload(tip, genesis_hash)?,
        }
        chain.publish_tip();
        // A crash in the middle of a reorg leaves the best-work branch not
        // yet canonical: finish it.
        if let Some(best) = chain.best_candidate()
            && best != chain.tip().hash
        {
            tracing::info!(%best, "resuming reorganisation after restart");
            chain.reorganise(best)?;
        }
        Ok(chain)
    }

    fn reload(&mut self, tip: Hash, genesis_hash: Hash) -> Result<(), ChainError> {
        let stored = self.store.canonical(0)?.unwrap_or(Hash::ZERO);
        if stored != genesis_hash {
            return Err(ChainError::GenesisMismatch { stored, expected: genesis_hash });
        }
        let mut headers = self.store.headers()?;
        headers.sort_by_key(|h| h.height);
        for header in headers {
            let hash = header.hash();
            let work = if header.height == 0 {
                0
            } else {
                match self.index.get(&header.parent) {
                    Some(p) => p.work.saturating_add(work(&header.target)),
                    None => continue, // parent pruned: unreachable, skip
                }
            };
            self.index.insert(hash, Node { header, work });
        }
        let mut canonical = Vec::new();
        let mut cursor = tip;
        loop {
            let node =
                self.index.get(&cursor).ok_or_else(|| StoreError::Corrupt(format!("tip ancestor {cursor} missing")))?;
            canonical.push(cursor);
            if node.header.height == 0 {
                break;
            }
            cursor = node.header.parent;
        }
        canonical.reverse();
        for (h, hash) in canonical.iter().enumerate() {
            if self.store.canonical(h as u64)? != Some(*hash) {
                return Err(StoreError::Corrupt(format!("canonical index disagrees at height {h}")).into());
            }
        }
        self.side = self.index.keys().filter(|h| !canonical.contains(h)).copied().collect();
        self.canonical = canonical;
        self.state = State::from_accounts(self.store.accounts()?);
        Ok(())
    }

    /// The chain's parameters.
    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    /// The best chain's tip.
    pub fn tip(&self) -> Tip {
        let hash = *self.canonical.last().unwrap_or(&Hash::ZERO);
        let work = self.index.get(&hash).map_or(0, |n| n.work);
        Tip { hash, height: self.canonical.len().saturating_sub(1) as u64, work }
    }

    /// Tip changes, as a watch channel (latest value only).
    pub fn subscribe(&self) -> watch::Receiver<Tip> {
        self.tip_tx.subscribe()
    }

    fn publish_tip(&self) {
        self.tip_tx.send_replace(self.tip());
    }

    /// The state at the tip.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// An account at the tip.
    pub fn account(&self, addr: &Address) -> Account {
        self.state.account(addr)
    }

    /// The mempool.
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// The signature cache shared with the mempool.
    pub fn sig_cache(&self) -> &Arc<SigCache> {
        &self.sigs
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// A block by hash (any stored branch).
    ///
    /// # Errors
    /// [`StoreError`] on storage failure.
    pub fn block(&self, hash: &Hash) -> Result<Option<Block>, StoreError> {
        self.store.block(hash)
    }

    /// The canonical block at `height`.
    ///
    /// # Errors
    /// [`StoreError`] on storage failure.
    pub fn block_at(&self, height: u64) -> Result<Option<Block>, StoreError> {
        match self.canonical.get(height as usize) {
            Some(h) => self.store.block(h),
            None => Ok(None),
        }
    }

    /// The canonical block holding transaction `id`, with the transaction's
    /// position in it (through the store's transaction index).
    ///
    /// # Errors
    /// [`StoreError`] on storage failure, or when the index points at a
    /// block that does not hold the transaction.
    pub fn find_tx(&self, id: &Hash) -> Result<Option<(Block, usize)>, StoreError> {
        let Some(height) = self.store.tx_height(id)? else { return Ok(None) };
        let block =
            self.block_at(height)?.ok_or_else(|| StoreError::Corrupt(format!("tx {id}: no block at {height}")))?;
        let pos = block
            .txs
            .iter()
            .position(|t| t.id() == *id)
            .ok_or_else(|| StoreError::Corrupt(format!("tx {id}: not in the block at {height}")))?;
        Ok(Some((block, pos)))
    }

    /// The canonical hash at `height`.
    pub fn hash_at(&self, height: u64) -> Option<Hash> {
        self.canonical.get(height as usize).copied()
    }

    /// A known header (any branch).
    pub fn header(&self, hash: &Hash) -> Option<&Header> {
        self.index.get(hash).map(|n| &n.header)
    }

    /// Whether `hash` is on the best chain.
    pub fn is_canonical(&self, hash: &Hash) -> bool {
        self.index.get(hash).is_some_and(|n| self.canonical.get(n.header.height as usize) == Some(hash))
    }

    /// Whether the block is known (indexed or waiting as an orphan).
    pub fn contains(&self, hash: &Hash) -> bool {
        self.index.contains_key(hash) || self.orphans.contains_key(hash)
    }

    /// Whether the block was found invalid.
    pub fn is_invalid(&self, hash: &Hash) -> bool {
        self.invalid.set.contains(hash)
    }

    /// Every indexed block at height `low` or above, canonical and side
    /// branches alike (the recent block tree), ordered by height.
    pub fn recent_headers(&self, low: u64) -> Vec<(Hash, Header)> {
        let mut out: Vec<(Hash, Header)> = self.canonical[(low as usize).min(self.canonical.len())..]
            .iter()
            .chain(self.side.iter())
            .filter_map(|h| self.index.get(h).map(|n| (*h, n.header.clone())))
            .filter(|(_, h)| h.height >= low)
            .collect();
        out.sort_by_key(|(_, h)| h.height);
        out
    }

    /// Relaxes or restores the store's durability ([`Store::set_durable`]):
    /// a sync relaxes it for each downloaded batch, then restores it.
    ///
    /// # Errors
    /// When the store cannot make its writes durable.
    pub fn set_durable(&mut self, durable: bool) -> Result<(), ChainError> {
        Ok(self.store.set_durable(durable)?)
    }

    /// Orphans waiting for a parent.
    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }

    /// A block locator: the tip, then hashes at exponentially growing
    /// distances back to genesis (1, 2, 4, 8, … blocks back).
    pub fn locator(&self) -> Vec<Hash> {
        let mut out = Vec::new();
        let Some(mut h) = self.canonical.len().checked_sub(1) else { return out };
        let mut step = 1;
        loop {
            out.push(self.canonical[h]);
            if h == 0 {
                break;
            }
            h = h.saturating_sub(step);
            if out.len() > 8 {
                step *= 2;
            }
        }
        out
    }

    /// The context a child of `parent` is validated in.
    ///
    /// # Errors
    /// [`BlockError::UnknownParent`] when `parent` is not indexed.
    pub fn context_for(&self, parent: &Hash, now_ms: u64) -> Result<BlockContext, BlockError> {
        let node = self.index.get(parent).ok_or(BlockError::UnknownParent(*parent))?;
        Ok(BlockContext {
            parent_hash: *parent,
            parent_height: node.header.height,
            expected_target: self.expected_target(node),
            median_time_past_ms: self.median_time_past(parent),
            now_ms,
        })
    }

    /// The first of the ancestors a child of `parent` is judged by (the
    /// retarget window and the median-time window) that is not indexed.
    fn missing_ancestor(&self, parent: &Hash) -> Option<Hash> {
        let depth = self.params.retarget.as_ref().map_or(0, |r| r.interval).max(self.params.median_window as u64);
        let mut cursor = *parent;
        for _ in 0..depth {
            let node = self.index.get(&cursor)?;
            if node.header.height == 0 {
                return None;
            }
            cursor = node.header.parent;
            if !self.index.contains_key(&cursor) {
                return Some(cursor);
            }
        }
        None
    }

    fn ancestor(&self, from: &Hash, back: u64) -> Option<&Node> {
        let mut node = self.index.get(from)?;
        for _ in 0..back {
            node = self.index.get(&node.header.parent)?;
        }
        Some(node)
    }

    fn expected_target(&self, parent: &Node) -> Hash {
        let Some(rt) = &self.params.retarget else { return self.params.initial_target };
        let height = parent.header.height + 1;
        if rt.interval == 0 || !height.is_multiple_of(rt.interval) || height < rt.interval {
            return parent.header.target;
        }
        let parent_hash = parent.header.hash();
        let Some(first) = self.ancestor(&parent_hash, rt.interval - 1) else { return parent.header.target };
        let expected = rt.interval.saturating_mul(rt.target_block_ms).max(1);
        let span = parent
            .header
            .timestamp_ms
            .saturating_sub(first.header.timestamp_ms)
            .clamp(expected / 4, expected.saturating_mul(4));
        scale(&parent.header.target, span, expected, &self.params.pow_limit)
    }

    fn median_time_past(&self, parent: &Hash) -> u64 {
        let mut times = Vec::with_capacity(self.params.median_window);
        let mut cursor = self.index.get(parent);
        while let Some(node) = cursor {
            times.push(node.header.timestamp_ms);
            if times.len() >= self.params.median_window.max(1) || node.header.height == 0 {
                break;
            }
            cursor = self.index.get(&node.header.parent);
        }
        times.sort_unstable();
        times.get(times.len() / 2).copied().unwrap_or(0)
    }

    /// Builds a block template on the tip paying `miner`.
    pub fn template(&mut self, miner: Address, now_ms: u64) -> Block {
        let tip = self.tip().hash;
        // The tip is always indexed.
        let ctx = match self.context_for(&tip, now_ms) {
            Ok(ctx) => ctx,
            Err(_) => return self.params.genesis(),
        };
        crate::builder::build_template(&mut self.state, &self.mempool, &self.params, &ctx, miner)
    }

    /// Offers a transaction to the mempool, checked against the tip's state.
    ///
    /// # Errors
    /// The [`MempoolError`] saying why it was refused.
    pub fn add_tx(&mut self, tx: Transaction, now_ms: u64) -> Result<Hash, MempoolError> {
        self.mempool.add(tx, &self.state, &self.params, self.verifier.as_ref(), &self.sigs, now_ms)
    }

    /// Drops expired mempool entries; returns how many.
    pub fn expire_mempool(&mut self, now_ms: u64) -> usize {
        self.mempool.expire(now_ms)
    }

    /// Inserts a block, with the system clock as "now".
    ///
    /// # Errors
    /// Only storage failures; an invalid block is an [`InsertOutcome::Invalid`].
    pub fn insert(&mut self, block: Block) -> Result<InsertOutcome, ChainError> {
        self.insert_at(block, now_ms())
    }

    /// Inserts a block, judging timestamps against `now_ms`. Orphans waiting
    /// for this block are inserted after it.
    ///
    /// # Errors
    /// Only storage failures; an invalid block is an [`InsertOutcome::Invalid`].
    pub fn insert_at(&mut self, block: Block, now_ms: u64) -> Result<InsertOutcome, ChainError> {
        let hash = block.hash();
        let outcome = self.insert_one(block, hash, now_ms)?;
        if matches!(
            outcome,
            InsertOutcome::Connected { .. } | InsertOutcome::Reorganised { .. } | InsertOutcome::SideBranch { .. }
        ) {
            self.connect_orphans(hash, now_ms)?;
        }
        Ok(outcome)
    }

    fn connect_orphans(&mut self, parent: Hash, now_ms: u64) -> Result<(), ChainError> {
        let mut queue = vec![parent];
        while let Some(p) = queue.pop() {
            let children: Vec<Hash> =
                self.orphans.iter().filter(|(_, b)| b.header.parent == p).map(|(h, _)| *h).collect();
            for child in children {
                let Some(block) = self.orphans.remove(&child) else { continue };
                self.orphan_order.retain(|h| *h != child);
                let out = self.insert_one(block, child, now_ms)?;
                tracing::debug!(%child, ?out, "orphan resolved");
                if !matches!(out, InsertOutcome::Invalid { .. }) {
                    queue.push(child);
                }
            }
        }
        Ok(())
    }

    fn mark_invalid(&mut self, hash: Hash, reason: BlockError) -> InsertOutcome {
        tracing::debug!(%hash, %reason, "invalid block");
        self.invalid.insert(hash);
        InsertOutcome::Invalid { reason }
    }

    fn insert_one(&mut self, block: Block, hash: Hash, now_ms: u64) -> Result<InsertOutcome, ChainError> {
        if self.index.contains_key(&hash) || self.orphans.contains_key(&hash) {
            return Ok(InsertOutcome::Duplicate);
        }
        if self.invalid.set.contains(&hash) {
            return Ok(InsertOutcome::Invalid { reason: BlockError::InvalidAncestor(hash) });
        }
        let parent = block.header.parent;
        if self.invalid.set.contains(&parent) {
            return Ok(self.mark_invalid(hash, BlockError::InvalidAncestor(parent)));
        }
        if !self.index.contains_key(&parent) {
            self.add_orphan(hash, block);
            return Ok(InsertOutcome::Orphan { missing_parent: parent });
        }
        if let Some(missing_ancestor) = self.missing_ancestor(&parent) {
            return Ok(InsertOutcome::Stale { missing_ancestor });
        }
        // Everything that needs no state: header rules, size, count, Merkle
        // root, duplicates.
        let ctx = self.context_for(&parent, now_ms)?;
        if let Err(reason) = check_header(&block, &ctx, &self.params) {
            return Ok(self.mark_invalid(hash, reason));
        }
        if let Err(reason) = check_body_shape(&block, &self.params) {
            return Ok(self.mark_invalid(hash, reason));
        }
        let parent_work = self.index.get(&parent).map_or(0, |n| n.work);
        let node = Node { header: block.header.clone(), work: parent_work.saturating_add(work(&block.header.target)) };
        let tip = self.tip();
        if parent == tip.hash {
            // Extends the best chain: apply now.
            let undo = match apply_body(&mut self.state, &block, &self.params, self.verifier.as_ref(), &self.sigs) {
                Ok(undo) => undo,
                Err(reason) => return Ok(self.mark_invalid(hash, reason)),
            };
            self.store.put_block(&hash, &block)?;
            let writes = self.writes_for(&undo);
            if let Err(e) = self.store.connect(&hash, block.header.height, &undo, &writes, &tx_ids(&block)) {
                self.state.undo(&undo);
                return Err(e.into());
            }
            self.index.insert(hash, node);
            self.canonical.push(hash);
            self.mempool.remove_included(&block.txs, &self.state);
            self.publish_tip();
            self.prune()?;
            return Ok(InsertOutcome::Connected { hash, height: block.header.height });
        }
        // A side branch: keep it; reorganise if it now has the most work.
        self.store.put_block(&hash, &block)?;
        let more_work = node.work > tip.work;
        self.index.insert(hash, node);
        self.side.insert(hash);
        if more_work {
            return self.reorganise(hash);
        }
        Ok(InsertOutcome::SideBranch { hash })
    }

    fn add_orphan(&mut self, hash: Hash, block: Block) {
        self.orphans.insert(hash, block);
        self.orphan_order.push_back(hash);
        while self.orphan_order.len() > self.config.max_orphans {
            if let Some(old) = self.orphan_order.pop_front() {
                self.orphans.remove(&old);
            }
        }
    }

    /// The account writes that persist the state after (or before) a block.
    fn writes_for(&self, undo: &Undo) -> Vec<AccountWrite> {
        let mut seen = HashSet::new();
        undo.changes
            .iter()
            .filter(|(a, _)| seen.insert(*a))
            .map(|(a, _)| (*a, self.state.contains(a).then(|| self.state.account(a))))
            .collect()
    }

    /// The indexed node with the most work (first seen on ties: the current
    /// tip wins unless strictly beaten).
    fn best_candidate(&self) -> Option<Hash> {
        let tip = self.tip();
        self.index.iter().filter(|(_, n)| n.work > tip.work).max_by_key(|(_, n)| n.work).map(|(h, _)| *h)
    }

    fn disconnect_tip(&mut self) -> Result<Block, ChainError> {
        let hash = *self.canonical.last().ok_or_else(|| StoreError::Corrupt("empty chain".into()))?;
        let block = self.store.block(&hash)?.ok_or_else(|| StoreError::Corrupt(format!("block {hash} missing")))?;
        let undo = self.store.undo(&hash)?.ok_or_else(|| StoreError::Corrupt(format!("undo of {hash} missing")))?;
        self.state.undo(&undo);
        let writes = self.writes_for(&undo);
        self.store.disconnect(&hash, block.header.height, &block.header.parent, &writes, &tx_ids(&block))?;
        self.canonical.pop();
        self.side.insert(hash);
        Ok(block)
    }

    fn connect_block(&mut self, hash: Hash) -> Result<Result<Block, BlockError>, ChainError> {
        let block = self.store.block(&hash)?.ok_or_else(|| StoreError::Corrupt(format!("block {hash} missing")))?;
        let undo = match apply_body(&mut self.state, &block, &self.params, self.verifier.as_ref(), &self.sigs) {
            Ok(undo) => undo,
            Err(e) => return Ok(Err(e)),
        };
        let writes = self.writes_for(&undo);
        if let Err(e) = self.store.connect(&hash, block.header.height, &undo, &writes, &tx_ids(&block)) {
            self.state.undo(&undo);
            return Err(e.into());
        }
        self.canonical.push(hash);
        self.side.remove(&hash);
        Ok(Ok(block))
    }

    /// Moves the best chain to `new_tip` through the fork point. If a block
    /// of the new branch is invalid, it and its descendants are dropped and
    /// the old chain is restored.
    fn reorganise(&mut self, new_tip: Hash) -> Result<InsertOutcome, ChainError> {
        let from = self.tip().hash;
        // The new branch, from the fork point up.
        let mut branch = Vec::new();
        let mut cursor = new_tip;
        while !self.is_canonical(&cursor) {
            branch.push(cursor);
            cursor = self
                .index
                .get(&cursor)
                .map(|n| n.header.parent)
                .ok_or_else(|| StoreError::Corrupt("broken branch".into()))?;
        }
        branch.reverse();
        let fork_height = self.index.get(&cursor).map_or(0, |n| n.header.height);
        let mut old = Vec::new();
        while self.tip().height > fork_height {
            old.push(self.disconnect_tip()?);
        }
        let mut connected = Vec::new();
        for hash in &branch {
            match self.connect_block(*hash)? {
                Ok(block) => connected.push(block),
                Err(reason) => {
                    // Drop the bad block and everything above it, restore.
                    self.forget_descendants(*hash);
                    let _ = self.mark_invalid(*hash, reason.clone());
                    while self.tip().height > fork_height {
                        self.disconnect_tip()?;
                    }
                    for block in old.iter().rev() {
                        if let Err(e) = self.connect_block(block.hash())? {
                            return Err(StoreError::Corrupt(format!("old chain no longer valid: {e}")).into());
                        }
                    }
                    self.publish_tip();
                    return Ok(InsertOutcome::Invalid { reason });
                }
            }
        }
        // The mempool follows: included transactions leave, disconnected ones
        // come back if still valid.
        for block in &connected {
            self.mempool.remove_included(&block.txs, &self.state);
        }
        let back: Vec<Transaction> = old.iter().flat_map(|b| b.txs.iter().cloned()).collect();
        let readmitted =
            self.mempool.readmit(back, &self.state, &self.params, self.verifier.as_ref(), &self.sigs, now_ms());
        self.mempool.revalidate(&self.state);
        tracing::info!(%from, to = %new_tip, disconnected = old.len(), connected = connected.len(), readmitted, "reorganised");
        self.publish_tip();
        self.prune()?;
        Ok(InsertOutcome::Reorganised { from, to: new_tip, disconnected: old.len(), connected: connected.len() })
    }

    /// Drops `root` and its side-branch descendants and marks them invalid
    /// (they build on an invalid block).
    fn forget_descendants(&mut self, root: Hash) {
        for h in self.drop_descendants(root) {
            self.invalid.insert(h);
        }
    }

    /// Drops `root` and its side-branch descendants from the index and the
    /// store; returns them.
    fn drop_descendants(&mut self, root: Hash) -> Vec<Hash> {
        let mut doomed = vec![root];
        let mut i = 0;
        while i < doomed.len() {
            let p = doomed[i];
            doomed
                .extend(self.side.iter().filter(|h| self.index.get(h).is_some_and(|n| n.header.parent == p)).copied());
            i += 1;
        }
        for h in &doomed {
            self.index.remove(h);
            self.side.remove(h);
            let _ = self.store.delete_block(h);
        }
        doomed
    }

    /// Drops side-branch blocks more than `prune_depth` below the tip; their
    /// transactions that are still valid go back to the mempool.
    fn prune(&mut self) -> Result<(), ChainError> {
        let tip_height = self.tip().height;
        let limit = tip_height.saturating_sub(self.params.prune_depth);
        let stale: Vec<Hash> =
            self.side.iter().filter(|h| self.index.get(h).is_none_or(|n| n.header.height < limit)).copied().collect();
        if stale.is_empty() {
            return Ok(());
        }
        let mut txs = Vec::new();
        for h in &stale {
            if let Some(block) = self.store.block(h)? {
                txs.extend(block.txs);
            }
            self.store.delete_block(h)?;
            self.index.remove(h);
            self.side.remove(h);
        }
        // Descendants of pruned blocks that were above the limit are now
        // unreachable too: dropped, but not invalid (they may be valid; a
        // later block on that branch is judged Stale, not invalid).
        let orphaned: Vec<Hash> = self
            .side
            .iter()
            .filter(|h| self.index.get(h).is_some_and(|n| !self.index.contains_key(&n.header.parent)))
            .copied()
            .collect();
        for h in orphaned {
            self.drop_descendants(h);
        }
        let back = self.mempool.readmit(txs, &self.state, &self.params, self.verifier.as_ref(), &self.sigs, now_ms());
        tracing::debug!(pruned = stale.len(), returned_to_mempool = back, "pruned side branches");
        Ok(())
    }
}

/// The rules of a block's body that need no state.
fn check_body_shape(block: &Block, params: &ChainParams) -> Result<(), BlockError> {
    if block.txs.len() > params.max_txs_per_block {
        return Err(BlockError::TooManyTxs { count: block.txs.len(), max: params.max_txs_per_block });
    }
    let len = block.encode().len();
    if len > MAX_BLOCK_BYTES {
        return Err(BlockError::TooLarge { len, max: MAX_BLOCK_BYTES });
    }
    let ids: Vec<Hash> = block.txs.iter().map(Transaction::id).collect();
    if merkle_root(ids.iter().copied()) != block.header.merkle_root {
        return Err(BlockError::BadMerkleRoot);
    }
    let mut seen = HashSet::with_capacity(ids.len());
    for id in ids {
        if !seen.insert(id) {
            return Err(BlockError::DuplicateTx(id));
        }
    }
    Ok(())
}
