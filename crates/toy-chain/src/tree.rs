//! The block tree: every valid branch, the best chain by work, reorgs,
//! orphans, pruning, and the mempool kept in step.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

#[cfg(feature = "network")]
use tokio::sync::watch;

use crate::crypto::{SigCache, Verifier};
use crate::error::{BlockError, ChainError, StoreError};
use crate::headers::{self, CheckedHeaders, HeadersError};
use crate::mempool::{Mempool, MempoolConfig, MempoolError};
use crate::params::ChainParams;
use crate::state::{Account, BlockContext, State, Undo, apply_txs, check_header, check_signatures, check_standalone};
use crate::store::{AccountWrite, Store};
use crate::target::work;
use crate::types::{Address, Block, Hash, Header, Transaction};

/// Default capacity of the orphan pool: 256 blocks (~1 MiB at dev sizes),
/// enough to hold a burst that arrived ahead of its parents during sync.
pub const DEFAULT_MAX_ORPHANS: usize = 256;

/// Default byte budget of the orphan pool: 32 MiB, eight blocks of the
/// largest size ([`crate::types::MAX_BLOCK_BYTES`]), or all 256 orphans at 128 KiB each.
/// Without it 256 maximal orphans would hold a gigabyte.
pub const DEFAULT_MAX_ORPHAN_BYTES: usize = 32 * 1024 * 1024;

/// One source's share of the orphan pool: a quarter of its count and of its
/// bytes. A peer past its share evicts its own oldest orphan, never someone
/// else's (Bitcoin Core bounds orphan transactions per peer the same way).
pub const ORPHAN_SHARE_DIVISOR: usize = 4;

/// Default number of invalid block hashes remembered: 10 000.
pub const DEFAULT_MAX_INVALID: usize = 10_000;

/// Limits of the block tree.
#[derive(Debug, Clone)]
pub struct TreeConfig {
    /// Orphans held. Past it (or past `max_orphan_bytes`), the oldest orphan
    /// of the source holding the most bytes is dropped first; one source
    /// holds at most a [`ORPHAN_SHARE_DIVISOR`]th of either limit.
    pub max_orphans: usize,
    /// Bytes of orphans held (encoded size).
    pub max_orphan_bytes: usize,
    /// Invalid hashes remembered; the oldest is forgotten first.
    pub max_invalid: usize,
    /// The mempool's limits.
    pub mempool: MempoolConfig,
}

impl Default for TreeConfig {
    fn default() -> Self {
        Self {
            max_orphans: DEFAULT_MAX_ORPHANS,
            max_orphan_bytes: DEFAULT_MAX_ORPHAN_BYTES,
            max_invalid: DEFAULT_MAX_INVALID,
            mempool: MempoolConfig::default(),
        }
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
    /// It breaks a rule that its header and ancestry decide (the header's
    /// Merkle root commits to every byte of the body, so the checked body is
    /// the only one this hash can have): it and its descendants are refused
    /// from now on. The sender is at fault.
    Invalid {
        /// Which rule.
        reason: BlockError,
    },
    /// It fails a check that needs no parent (proof of work against its own
    /// target, sizes, the Merkle commitment, a repeated transaction): junk, or
    /// a genuine header with a body someone changed. Refused and *not*
    /// remembered, so the genuine block still connects when it arrives. The
    /// sender is at fault.
    Malformed {
        /// Which rule.
        reason: BlockError,
    },
    /// Its timestamp is too far ahead of our clock. Refused for now and not
    /// remembered: the same block is accepted once its time has come
    /// (Bitcoin's `BLOCK_TIME_FUTURE`, which Core neither caches nor
    /// punishes, since clocks differ).
    TooEarly {
        /// [`BlockError::TimestampTooFarAhead`].
        reason: BlockError,
    },
    /// Sent unasked, it has less work than our tip and its branch leaves the
    /// best chain more than [`ChainParams::prune_depth`] blocks below the
    /// tip: refused before anything is written (see [`Chain::insert_from`]).
    /// Not remembered, not the sender's fault.
    ForkTooDeep {
        /// Height of the last best-chain block the branch shares.
        fork_height: u64,
        /// Our tip's height.
        tip_height: u64,
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
    orphans: OrphanPool,
    /// A reorganisation stopped by a storage failure: retried on the next
    /// insert, so the best chain is reached once the store works again.
    reorg_pending: bool,
    /// The tip of the side branch the last sync batch wrote: pruning spares
    /// it (and its ancestors) while the rest of the branch is downloaded,
    /// until [`Chain::finish_import`]. One branch at a time.
    solicited_tip: Option<Hash>,
    /// A block whose waiting orphans a storage failure kept from
    /// connecting: retried on the next insert.
    orphans_retry: Option<Hash>,
    /// The last storage failure, until [`Chain::recover_store`] succeeds:
    /// a node that cannot write is not healthy, whatever else it answers.
    store_failure: Option<String>,
    /// Publishes the tip (with the `network` feature: the tip watch needs
    /// tokio's `watch`).
    #[cfg(feature = "network")]
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
        #[cfg(feature = "network")]
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
            orphans: OrphanPool::default(),
            reorg_pending: false,
            solicited_tip: None,
            orphans_retry: None,
            store_failure: None,
            #[cfg(feature = "network")]
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

    /// Rebuilds index, best chain and state from the store (after it lost
    /// writes), keeps what the mempool still admits, and publishes the tip.
    fn reload_from_store(&mut self, tip: Hash) -> Result<(), ChainError> {
        let genesis_hash = self.params.genesis_hash();
        self.reload(tip, genesis_hash)?;
        self.reorg_pending = false;
        self.solicited_tip = None;
        let mut pending: Vec<Transaction> = self.mempool.iter().map(|(_, tx)| tx.clone()).collect();
        pending.sort_by_key(|tx| (tx.sender.0, tx.nonce));
        self.mempool = Mempool::new(self.config.mempool.clone());
        let now = now_ms();
        for tx in pending {
            let _ = self.add_tx(tx, now);
        }
        self.publish_tip();
        Ok(())
    }

    /// Reads index, best chain and state from the store and installs them
    /// only once all of it has been read: a read that fails leaves the chain
    /// as it was.
    fn reload(&mut self, tip: Hash, genesis_hash: Hash) -> Result<(), ChainError> {
        let stored = self.store.canonical(0)?.unwrap_or(Hash::ZERO);
        if stored != genesis_hash {
            return Err(ChainError::GenesisMismatch { stored, expected: genesis_hash });
        }
        let mut headers = self.store.headers()?;
        headers.sort_by_key(|h| h.height);
        let mut index: HashMap<Hash, Node> = HashMap::with_capacity(headers.len());
        for header in headers {
            let hash = header.hash();
            let work = if header.height == 0 {
                0
            } else {
                match index.get(&header.parent) {
                    Some(p) => p.work.saturating_add(work(&header.target)),
                    None => continue, // parent pruned: unreachable, skip
                }
            };
            index.insert(hash, Node { header, work });
        }
        let mut canonical = Vec::new();
        let mut cursor = tip;
        loop {
            let node =
                index.get(&cursor).ok_or_else(|| StoreError::Corrupt(format!("tip ancestor {cursor} missing")))?;
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
        let state = State::from_accounts(self.store.accounts()?);
        // A set, so opening is linear in the number of blocks.
        let on_best: HashSet<&Hash> = canonical.iter().collect();
        self.side = index.keys().filter(|h| !on_best.contains(h)).copied().collect();
        self.index = index;
        self.canonical = canonical;
        self.state = state;
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
    #[cfg(feature = "network")]
    pub fn subscribe(&self) -> watch::Receiver<Tip> {
        self.tip_tx.subscribe()
    }

    fn publish_tip(&self) {
        #[cfg(feature = "network")]
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
        self.index.contains_key(hash) || self.orphans.blocks.contains_key(hash)
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

    /// Imports a downloaded batch in order, with the store's durability
    /// relaxed for the batch's own writes only ([`Store::set_durable`]): one
    /// durable commit at the end instead of one per write. A crash loses at
    /// most this batch, which is downloaded again.
    ///
    /// `&mut self` is held for the whole batch, so nothing else (a block
    /// mined or gossiped meanwhile) is written while durability is relaxed;
    /// and durability is restored by a guard, even when an insert fails or
    /// panics. Stops after the first block that is neither connected, kept
    /// on a side branch nor a duplicate; returns one result per block tried.
    pub fn import_batch(
        &mut self,
        blocks: Vec<Block>,
        source: Option<&str>,
        now_ms: u64,
    ) -> Vec<Result<InsertOutcome, ChainError>> {
        let mut outcomes = Vec::with_capacity(blocks.len());
        let mut guard = RelaxedDurability::new(self);
        if let Err(e) = guard.chain.store.set_durable(false) {
            outcomes.push(Err(e.into()));
            return outcomes;
        }
        for block in blocks {
            let hash = block.hash();
            let outcome = guard.chain.insert_with(block, source, now_ms, true);
            if matches!(outcome, Ok(InsertOutcome::SideBranch { .. })) {
                guard.chain.solicited_tip = Some(hash);
            }
            let go_on = matches!(
                outcome,
                Ok(InsertOutcome::Connected { .. }
                    | InsertOutcome::Reorganised { .. }
                    | InsertOutcome::SideBranch { .. }
                    | InsertOutcome::Duplicate)
            );
            outcomes.push(outcome);
            if !go_on {
                break;
            }
        }
        if let Err(e) = guard.restore() {
            guard.chain.note_store_failure(&e);
            outcomes.push(Err(e.into()));
        }
        outcomes
    }

    /// Ends a sync: the side branch its batches wrote ([`Chain::import_batch`])
    /// is no longer spared by pruning.
    pub fn finish_import(&mut self) {
        self.solicited_tip = None;
    }

    /// Orphans waiting for a parent.
    pub fn orphan_count(&self) -> usize {
        self.orphans.blocks.len()
    }

    /// Bytes held by orphans (their encoded size).
    pub fn orphan_bytes(&self) -> usize {
        self.orphans.bytes
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
        let lookup = |h: &Hash| self.index.get(h).map(|n| &n.header);
        Ok(headers::context(&self.params, *parent, &node.header, &lookup, now_ms))
    }

    /// Checks a peer's header chain on top of blocks we know, before any of
    /// its bodies is fetched (headers-first sync; see [`crate::headers`]).
    ///
    /// # Errors
    /// [`HeadersError`] when the headers do not connect, do not form a
    /// chain, or one breaks a header rule.
    pub fn check_headers(&self, headers: &[Header], now_ms: u64) -> Result<CheckedHeaders, HeadersError> {
        headers::check(
            &self.params,
            headers,
            |h| self.index.get(h).map(|n| (&n.header, n.work)),
            |h| self.invalid.set.contains(h),
            now_ms,
        )
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
    /// After a storage failure the state, mempool, indexes and tip are as
    /// before the call; every insert is then refused until
    /// [`Chain::recover_store`] succeeds (the chain's network layer calls it
    /// every few seconds), after which the same block can be inserted again.
    pub fn insert_at(&mut self, block: Block, now_ms: u64) -> Result<InsertOutcome, ChainError> {
        self.insert_from(block, None, now_ms)
    }

    /// Inserts a block received unasked from `source` (a peer's name;
    /// `None` for a block of our own). The source is charged for the block
    /// if it has to wait as an orphan: one source holds at most its share of
    /// the pool.
    ///
    /// An unasked block with less work than our tip whose branch leaves the
    /// best chain more than [`ChainParams::prune_depth`] below the tip is
    /// refused before anything is written ([`InsertOutcome::ForkTooDeep`]):
    /// building on old blocks is cheap when their targets were easy, and such
    /// a branch would be pruned at once anyway. Bitcoin Core's `AcceptBlock`
    /// likewise drops unrequested blocks without more work than its tip. A
    /// branch with more work is taken at any depth (so no one can lock a
    /// node onto a long cheap chain by depth alone), and so are blocks a
    /// sync asked for ([`Chain::import_batch`]).
    ///
    /// # Errors
    /// As [`Chain::insert_at`]. Once the block itself is in, a later storage
    /// failure (connecting waiting orphans, pruning) is logged, not returned:
    /// the block stays in and the orphans wait.
    pub fn insert_from(
        &mut self,
        block: Block,
        source: Option<&str>,
        now_ms: u64,
    ) -> Result<InsertOutcome, ChainError> {
        self.insert_with(block, source, now_ms, false)
    }

    /// Inserts a block we asked a peer for (an ancestor of an orphan): like
    /// [`Chain::insert_from`], but taken however deep its branch forks, as a
    /// sync's blocks are.
    ///
    /// # Errors
    /// As [`Chain::insert_at`].
    pub fn insert_requested(
        &mut self,
        block: Block,
        source: Option<&str>,
        now_ms: u64,
    ) -> Result<InsertOutcome, ChainError> {
        self.insert_with(block, source, now_ms, true)
    }

    fn insert_with(
        &mut self,
        block: Block,
        source: Option<&str>,
        now_ms: u64,
        solicited: bool,
    ) -> Result<InsertOutcome, ChainError> {
        // After a failure nothing is written until `recover_store` has made
        // the store and this chain agree again.
        if let Some(failure) = &self.store_failure {
            return Err(
                StoreError::Db(format!("not written: the store failed ({failure}) and has not recovered")).into()
            );
        }
        let outcome = self.insert_unnoted(block, source, now_ms, solicited);
        if let Err(ChainError::Store(e)) = &outcome {
            self.note_store_failure(e);
        }
        outcome
    }

    /// Remembers a storage failure (logged once until recovered).
    fn note_store_failure(&mut self, e: &StoreError) {
        if self.store_failure.is_none() {
            tracing::error!(
                "the store failed: {e}; blocks are not written until it recovers (retried every few seconds)"
            );
        }
        self.store_failure = Some(e.to_string());
    }

    /// The last storage failure, if the store has not recovered since.
    pub fn store_failure(&self) -> Option<&str> {
        self.store_failure.as_deref()
    }

    /// After a storage failure: reopens the store ([`Store::reopen`]),
    /// finishes an interrupted reorganisation, and checks that the store's
    /// tip is ours again. When it is not (writes that were not durable yet,
    /// a sync batch's, were lost with the failure), the chain in memory is
    /// rebuilt from the store, as a restart would, and the mempool's
    /// transactions are admitted again against that state: sync fetches
    /// what was lost. Returns whether it recovered (`false` when there was
    /// nothing to recover).
    ///
    /// # Errors
    /// The storage error that still stands; the failure stays recorded.
    pub fn recover_store(&mut self) -> Result<bool, ChainError> {
        if self.store_failure.is_none() {
            return Ok(false);
        }
        let result = (|| -> Result<(), ChainError> {
            self.store.reopen()?;
            if self.reorg_pending {
                self.resume_reorg()?;
            }
            let stored = self.store.tip()?;
            let ours = self.tip().hash;
            match stored {
                Some(tip) if tip == ours => Ok(()),
                Some(tip) => {
                    tracing::warn!(stored = %tip, ours = %ours, "the store lost writes with the failure; reloading the chain from it");
                    self.reload_from_store(tip)
                }
                None => Err(StoreError::Corrupt("the store has no tip".into()).into()),
            }
        })();
        match result {
            Ok(()) => {
                tracing::info!("the store works again; writing blocks");
                self.store_failure = None;
                Ok(true)
            }
            Err(ChainError::Store(e)) => {
                self.store_failure = Some(e.to_string());
                Err(ChainError::Store(e))
            }
            Err(e) => Err(e),
        }
    }

    fn insert_unnoted(
        &mut self,
        block: Block,
        source: Option<&str>,
        now_ms: u64,
        solicited: bool,
    ) -> Result<InsertOutcome, ChainError> {
        if self.reorg_pending {
            self.resume_reorg()?;
        }
        if let Some(parent) = self.orphans_retry.take() {
            self.connect_orphans_logged(parent, now_ms, solicited);
        }
        let hash = block.hash();
        let outcome = self.insert_one(block, hash, source, now_ms, solicited)?;
        if matches!(
            outcome,
            InsertOutcome::Connected { .. } | InsertOutcome::Reorganised { .. } | InsertOutcome::SideBranch { .. }
        ) {
            self.connect_orphans_logged(hash, now_ms, solicited);
        }
        Ok(outcome)
    }

    /// [`Chain::connect_orphans`], logging a storage failure (it remembers
    /// where to retry).
    fn connect_orphans_logged(&mut self, parent: Hash, now_ms: u64, solicited: bool) {
        if let Err(e) = self.connect_orphans(parent, now_ms, solicited) {
            if let ChainError::Store(e) = &e {
                self.note_store_failure(e);
            }
            tracing::error!("connecting the orphans of {parent} (retried on the next insert): {e}");
        }
    }

    /// Retries a reorganisation that a storage failure interrupted.
    fn resume_reorg(&mut self) -> Result<(), ChainError> {
        match self.best_candidate() {
            Some(best) => self.reorganise(best).map(drop),
            None => {
                self.reorg_pending = false;
                Ok(())
            }
        }
    }

    /// Inserts the orphans waiting for `parent`, and theirs in turn. On a
    /// storage failure the orphans not yet inserted go back to the pool.
    fn connect_orphans(&mut self, parent: Hash, now_ms: u64, solicited: bool) -> Result<(), ChainError> {
        let mut queue = vec![parent];
        while let Some(p) = queue.pop() {
            let mut children = self.orphans.take_children(&p).into_iter();
            while let Some((child, block, source)) = children.next() {
                let out = match self.insert_one(block.clone(), child, source.as_deref(), now_ms, solicited) {
                    Ok(out) => out,
                    Err(e) => {
                        self.orphans.add(child, block, source.as_deref(), &self.config);
                        for (h, b, s) in children {
                            self.orphans.add(h, b, s.as_deref(), &self.config);
                        }
                        self.orphans_retry = Some(p);
                        return Err(e);
                    }
                };
                tracing::debug!(%child, ?out, "orphan resolved");
                if matches!(
                    out,
                    InsertOutcome::Connected { .. }
                        | InsertOutcome::Reorganised { .. }
                        | InsertOutcome::SideBranch { .. }
                ) {
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

    /// The height at which the branch ending in `parent` leaves the best
    /// chain (`parent`'s own height when it is on the best chain).
    fn fork_height(&self, parent: &Hash) -> Option<u64> {
        let mut cursor = *parent;
        loop {
            let node = self.index.get(&cursor)?;
            if self.canonical.get(node.header.height as usize) == Some(&cursor) {
                return Some(node.header.height);
            }
            cursor = node.header.parent;
        }
    }

    /// Validation in the order of cost to us, and what each failure means:
    ///
    /// 1. [`check_standalone`] (no parent needed: proof of work against the
    ///    header's own target, target limit, sizes, Merkle commitment,
    ///    repeats) → [`InsertOutcome::Malformed`], not remembered;
    /// 2. a known-invalid parent → [`InsertOutcome::Invalid`];
    /// 3. unknown parent → orphan pool (charged to `source`);
    /// 4. unasked, less work than the tip and a fork deeper than the prune
    ///    depth → [`InsertOutcome::ForkTooDeep`], nothing written;
    /// 5. [`check_header`] against the parent → [`InsertOutcome::Invalid`]
    ///    (remembered), except a timestamp ahead of our clock →
    ///    [`InsertOutcome::TooEarly`] (not remembered);
    /// 6. signatures, before the block is kept anywhere →
    ///    [`InsertOutcome::Invalid`];
    /// 7. the state transition (tip extensions now, side branches when their
    ///    branch wins) → [`InsertOutcome::Invalid`].
    ///
    /// From step 5 on, the body is the one the header commits to, so what
    /// fails there holds for that hash for good (Bitcoin Core likewise marks
    /// `BLOCK_FAILED_VALID` only after the Merkle check).
    fn insert_one(
        &mut self,
        block: Block,
        hash: Hash,
        source: Option<&str>,
        now_ms: u64,
        solicited: bool,
    ) -> Result<InsertOutcome, ChainError> {
        if self.index.contains_key(&hash) || self.orphans.blocks.contains_key(&hash) {
            return Ok(InsertOutcome::Duplicate);
        }
        if self.invalid.set.contains(&hash) {
            return Ok(InsertOutcome::Invalid { reason: BlockError::InvalidAncestor(hash) });
        }
        if let Err(reason) = check_standalone(&block, &self.params) {
            tracing::debug!(%hash, %reason, "malformed block");
            return Ok(InsertOutcome::Malformed { reason });
        }
        let parent = block.header.parent;
        if self.invalid.set.contains(&parent) {
            return Ok(self.mark_invalid(hash, BlockError::InvalidAncestor(parent)));
        }
        if !self.index.contains_key(&parent) {
            self.orphans.add(hash, block, source, &self.config);
            return Ok(InsertOutcome::Orphan { missing_parent: parent });
        }
        if let Some(missing_ancestor) = self.missing_ancestor(&parent) {
            return Ok(InsertOutcome::Stale { missing_ancestor });
        }
        let tip = self.tip();
        let parent_work = self.index.get(&parent).map_or(0, |n| n.work);
        let branch_work = parent_work.saturating_add(work(&block.header.target));
        if !solicited && branch_work < tip.work {
            let fork_height = self.fork_height(&parent).unwrap_or(0);
            if tip.height.saturating_sub(fork_height) > self.params.prune_depth {
                return Ok(InsertOutcome::ForkTooDeep { fork_height, tip_height: tip.height });
            }
        }
        let ctx = self.context_for(&parent, now_ms)?;
        match check_header(&block, &ctx, &self.params) {
            Ok(_) => {}
            Err(reason @ BlockError::TimestampTooFarAhead { .. }) => return Ok(InsertOutcome::TooEarly { reason }),
            Err(reason) => return Ok(self.mark_invalid(hash, reason)),
        }
        if let Err(reason) = check_signatures(&block, &self.params, self.verifier.as_ref(), &self.sigs) {
            return Ok(self.mark_invalid(hash, reason));
        }
        let node = Node { header: block.header.clone(), work: branch_work };
        if parent == tip.hash {
            // Extends the best chain: apply now. The state moves first and is
            // put back if the store refuses the write.
            let undo = match apply_txs(&mut self.state, &block, &self.params) {
                Ok(undo) => undo,
                Err(reason) => return Ok(self.mark_invalid(hash, reason)),
            };
            let writes = self.writes_for(&undo);
            let height = block.header.height;
            let stored = self
                .store
                .put_block(&hash, &block)
                .and_then(|()| self.store.connect(&hash, height, &undo, &writes, &tx_ids(&block)));
            if let Err(e) = stored {
                self.state.undo(&undo);
                return Err(e.into());
            }
            self.index.insert(hash, node);
            self.canonical.push(hash);
            self.mempool.remove_included(&block.txs, &self.state);
            self.publish_tip();
            self.prune();
            return Ok(InsertOutcome::Connected { hash, height });
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

    /// The account writes that persist the state after (or before) a block.
    fn writes_for(&self, undo: &Undo) -> Vec<AccountWrite> {
        let mut seen = HashSet::new();
        undo.changes
            .iter()
            .filter(|(a, _)| seen.insert(*a))
            .map(|(a, _)| (*a, self.state.contains(a).then(|| self.state.account(a))))
            .collect()
    }

    /// The indexed node with the most work, if it has more than the tip
    /// (first seen on ties: the current tip wins unless strictly beaten).
    /// [`Chain::open`] makes the same choice.
    fn best_candidate(&self) -> Option<Hash> {
        let tip = self.tip();
        self.index.iter().filter(|(_, n)| n.work > tip.work).max_by_key(|(_, n)| n.work).map(|(h, _)| *h)
    }

    /// Undoes the tip. On a storage failure the state is put back and
    /// nothing changed.
    fn disconnect_tip(&mut self) -> Result<Block, ChainError> {
        let hash = *self.canonical.last().ok_or_else(|| StoreError::Corrupt("empty chain".into()))?;
        let block = self.store.block(&hash)?.ok_or_else(|| StoreError::Corrupt(format!("block {hash} missing")))?;
        let undo = self.store.undo(&hash)?.ok_or_else(|| StoreError::Corrupt(format!("undo of {hash} missing")))?;
        // The values as they are now, to put back if the store fails.
        let mut seen = HashSet::new();
        let redo = Undo {
            changes: undo
                .changes
                .iter()
                .filter(|(a, _)| seen.insert(*a))
                .map(|(a, _)| (*a, self.state.contains(a).then(|| self.state.account(a))))
                .collect(),
        };
        self.state.undo(&undo);
        let writes = self.writes_for(&undo);
        if let Err(e) =
            self.store.disconnect(&hash, block.header.height, &block.header.parent, &writes, &tx_ids(&block))
        {
            self.state.undo(&redo);
            return Err(e.into());
        }
        self.canonical.pop();
        self.side.insert(hash);
        Ok(block)
    }

    /// Applies a stored side-branch block on the tip. `Ok(Err(_))`: the
    /// block is invalid; `Err(_)`: storage failed. Either way nothing changed.
    fn connect_block(&mut self, hash: Hash) -> Result<Result<Block, BlockError>, ChainError> {
        let block = self.store.block(&hash)?.ok_or_else(|| StoreError::Corrupt(format!("block {hash} missing")))?;
        // Stored blocks passed every check that needs no state; these are
        // cheap again (and the signatures are cached).
        if let Err(e) = check_body_again(&block, &self.params, self.verifier.as_ref(), &self.sigs) {
            return Ok(Err(e));
        }
        let undo = match apply_txs(&mut self.state, &block, &self.params) {
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

    /// The blocks from the best chain's fork point up to `tip` (exclusive of
    /// the fork point), and the fork point's height.
    fn branch_to(&self, tip: Hash) -> Result<(u64, Vec<Hash>), ChainError> {
        let mut branch = Vec::new();
        let mut cursor = tip;
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
        Ok((fork_height, branch))
    }

    /// Moves the best chain to `new_tip` through the fork point.
    ///
    /// If a block of the new branch is invalid, it and its descendants are
    /// dropped and remembered as invalid, and the chain settles on the
    /// most-work valid chain it knows: the valid prefix of the new branch if
    /// that has more work than the old tip, else the old chain (or any other
    /// branch with more work) — the chain [`Chain::open`] would pick.
    ///
    /// A storage failure stops it part way with the in-memory view equal to
    /// the store (each step commits atomically); the next insert resumes it.
    fn reorganise(&mut self, new_tip: Hash) -> Result<InsertOutcome, ChainError> {
        self.reorg_pending = true;
        let from = self.tip().hash;
        let mut disconnected: Vec<Block> = Vec::new();
        let mut connected: Vec<Block> = Vec::new();
        let mut failure: Option<BlockError> = None;
        let steps = self.reorganise_steps(new_tip, &mut disconnected, &mut connected, &mut failure);
        if steps.is_ok() {
            self.reorg_pending = false;
        }
        // Whether it finished or a storage failure stopped it, the mempool
        // and the subscribers follow the chain as it now is: what it
        // includes leaves the pool, what it no longer includes comes back if
        // still valid.
        let tip = self.tip().hash;
        let included: Vec<Transaction> =
            connected.iter().filter(|b| self.is_canonical(&b.hash())).flat_map(|b| b.txs.iter().cloned()).collect();
        self.mempool.remove_included(&included, &self.state);
        let back: Vec<Transaction> = disconnected
            .iter()
            .chain(connected.iter())
            .filter(|b| !self.is_canonical(&b.hash()))
            .flat_map(|b| b.txs.iter().cloned())
            .collect();
        let readmitted =
            self.mempool.readmit(back, &self.state, &self.params, self.verifier.as_ref(), &self.sigs, now_ms());
        self.mempool.revalidate(&self.state);
        self.publish_tip();
        if let Err(e) = steps {
            tracing::error!(%from, at = %tip, "reorganisation stopped by a storage failure (resumed on the next insert): {e}");
            return Err(e);
        }
        self.prune();
        if let Some(reason) = failure {
            tracing::info!(%from, to = %tip, %reason, "reorganisation failed; on the best valid chain");
            return Ok(InsertOutcome::Invalid { reason });
        }
        tracing::info!(%from, to = %tip, disconnected = disconnected.len(), connected = connected.len(), readmitted, "reorganised");
        Ok(InsertOutcome::Reorganised { from, to: tip, disconnected: disconnected.len(), connected: connected.len() })
    }

    /// The block moves of [`Chain::reorganise`]; each one commits on its own.
    fn reorganise_steps(
        &mut self,
        new_tip: Hash,
        disconnected: &mut Vec<Block>,
        connected: &mut Vec<Block>,
        failure: &mut Option<BlockError>,
    ) -> Result<(), ChainError> {
        let mut target = new_tip;
        loop {
            let (fork_height, branch) = self.branch_to(target)?;
            while self.tip().height > fork_height {
                disconnected.push(self.disconnect_tip()?);
            }
            let mut failed = false;
            for hash in branch {
                match self.connect_block(hash)? {
                    Ok(block) => connected.push(block),
                    Err(reason) => {
                        tracing::info!(%hash, %reason, "invalid block on the branch being connected");
                        self.forget_descendants(hash);
                        self.invalid.insert(hash);
                        failure.get_or_insert(reason);
                        failed = true;
                        break;
                    }
                }
            }
            if !failed {
                return Ok(());
            }
            // Settle on the most-work valid chain known.
            match self.best_candidate() {
                Some(best) => target = best,
                None => return Ok(()),
            }
        }
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
        self.drop_all_descendants(vec![root])
    }

    /// [`Chain::drop_descendants`] for several roots at once, in time linear
    /// in the side set.
    fn drop_all_descendants(&mut self, roots: Vec<Hash>) -> Vec<Hash> {
        // Children of each side block, built once: linear in the side set.
        let mut children: HashMap<Hash, Vec<Hash>> = HashMap::new();
        for h in &self.side {
            if let Some(n) = self.index.get(h) {
                children.entry(n.header.parent).or_default().push(*h);
            }
        }
        let mut doomed = roots;
        let mut i = 0;
        while i < doomed.len() {
            if let Some(kids) = children.remove(&doomed[i]) {
                doomed.extend(kids);
            }
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
    /// transactions that are still valid go back to the mempool. The branch
    /// a sync is downloading is spared. A storage failure stops it (logged);
    /// the index keeps what the store still holds.
    fn prune(&mut self) {
        let tip_height = self.tip().height;
        let limit = tip_height.saturating_sub(self.params.prune_depth);
        // The branch a sync is writing, down to where it leaves the best chain.
        let mut spared = HashSet::new();
        let mut cursor = self.solicited_tip.filter(|h| self.side.contains(h));
        if cursor.is_none() {
            self.solicited_tip = None;
        }
        while let Some(h) = cursor.filter(|h| self.side.contains(h)) {
            spared.insert(h);
            cursor = self.index.get(&h).map(|n| n.header.parent);
        }
        let stale: Vec<Hash> = self
            .side
            .iter()
            .filter(|h| !spared.contains(*h))
            .filter(|h| self.index.get(h).is_none_or(|n| n.header.height < limit))
            .copied()
            .collect();
        if stale.is_empty() {
            return;
        }
        let mut txs = Vec::new();
        let mut pruned = 0usize;
        // What can go back to the mempool is bounded by the mempool: collect
        // no more than it can hold, however long the pruned branch.
        let room = self.config.mempool.max_count;
        for h in &stale {
            if txs.len() < room {
                match self.store.block(h) {
                    Ok(block) => txs.extend(block.into_iter().flat_map(|b| b.txs)),
                    Err(e) => {
                        tracing::error!("pruning {h}: {e}");
                        break;
                    }
                }
            }
            if let Err(e) = self.store.delete_block(h) {
                tracing::error!("pruning {h}: {e}");
                break;
            }
            self.index.remove(h);
            self.side.remove(h);
            pruned += 1;
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
        // Each orphaned root heads its own subtree; dropping them one by one
        // would rebuild the children map per root, so drop them together.
        self.drop_all_descendants(orphaned);
        let back = self.mempool.readmit(txs, &self.state, &self.params, self.verifier.as_ref(), &self.sigs, now_ms());
        tracing::debug!(pruned, returned_to_mempool = back, "pruned side branches");
    }
}

/// The body checks of [`check_standalone`] and the signatures, for a stored
/// block about to be applied (a defence against a store that lost a write;
/// the signatures are normally in the cache).
fn check_body_again(
    block: &Block,
    params: &ChainParams,
    verifier: &dyn crate::crypto::Verifier,
    sigs: &SigCache,
) -> Result<(), BlockError> {
    check_standalone(block, params)?;
    check_signatures(block, params, verifier, sigs)
}

/// Keeps the store's durability relaxed while it lives; restores it when
/// dropped (also on panic), so relaxed durability never outlives a batch.
struct RelaxedDurability<'a, S: Store> {
    chain: &'a mut Chain<S>,
    restored: bool,
}

impl<'a, S: Store> RelaxedDurability<'a, S> {
    fn new(chain: &'a mut Chain<S>) -> Self {
        Self { chain, restored: false }
    }

    /// Restores durability now, reporting a failed final commit.
    fn restore(&mut self) -> Result<(), StoreError> {
        self.restored = true;
        self.chain.store.set_durable(true)
    }
}

impl<S: Store> Drop for RelaxedDurability<'_, S> {
    fn drop(&mut self) {
        if !self.restored
            && let Err(e) = self.chain.store.set_durable(true)
        {
            tracing::error!("restoring durability after a batch failed: {e}");
        }
    }
}

/// A block waiting for its parent.
#[derive(Debug)]
struct Orphan {
    block: Block,
    bytes: usize,
    source: Option<String>,
}

/// The orphan pool: blocks whose parent is unknown, bounded in count and in
/// bytes, with each source's share bounded too ([`TreeConfig::max_orphans`]).
#[derive(Debug, Default)]
struct OrphanPool {
    blocks: HashMap<Hash, Orphan>,
    /// Arrival order (oldest first).
    order: VecDeque<Hash>,
    by_parent: HashMap<Hash, Vec<Hash>>,
    /// Count and bytes held per source.
    per_source: HashMap<Option<String>, (usize, usize)>,
    bytes: usize,
}

impl OrphanPool {
    fn add(&mut self, hash: Hash, block: Block, source: Option<&str>, config: &TreeConfig) {
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

    fn oldest_of(&self, source: &Option<String>) -> Option<Hash> {
        self.order.iter().find(|h| self.blocks.get(h).is_some_and(|o| &o.source == source)).copied()
    }

    fn remove(&mut self, hash: &Hash) -> Option<Orphan> {
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
    fn take_children(&mut self, parent: &Hash) -> Vec<(Hash, Block, Option<String>)> {
        let children = self.by_parent.get(parent).cloned().unwrap_or_default();
        children.into_iter().filter_map(|h| self.remove(&h).map(|o| (h, o.block, o.source))).collect()
    }
}
