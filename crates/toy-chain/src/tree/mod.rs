//! The block tree: every valid branch, the best chain by work, reorgs,
//! orphans, pruning, and the mempool kept in step.
//!
//! This file holds [`Chain`], opening it and inserting blocks; `reorg`
//! moves the best chain (connect, disconnect, reorganise, prune), `orphans`
//! keeps blocks whose parent is unknown, and `recovery` handles a store that
//! failed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

#[cfg(feature = "actor")]
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

mod orphans;
mod recovery;
mod reorg;

use orphans::OrphanPool;
use recovery::RelaxedDurability;

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
    /// Whether the owner ([`crate::actor`]) has relaxed the store's
    /// durability across several operations: a sync batch then leaves it
    /// relaxed, and the owner's own durable commit covers the batch.
    relaxed: bool,
    /// Publishes the tip (with the `actor` feature: the tip watch needs
    /// tokio's `watch`).
    #[cfg(feature = "actor")]
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

/// Logs a block just stored (best chain or side branch) at debug level
/// under the target `toy_chain::arrival`, with the millisecond it was
/// stored: the testnet's propagation and stale-block figures are computed
/// from these lines of every node's log (`RUST_LOG=toy_chain::arrival=debug`).
fn note_arrival(hash: &Hash, header: &Header, now_ms: u64) {
    tracing::debug!(
        target: "toy_chain::arrival",
        %hash,
        parent = %header.parent,
        height = header.height,
        at_ms = now_ms,
        "block stored"
    );
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
        #[cfg(feature = "actor")]
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
            relaxed: false,
            #[cfg(feature = "actor")]
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
    #[cfg(feature = "actor")]
    pub fn subscribe(&self) -> watch::Receiver<Tip> {
        self.tip_tx.subscribe()
    }

    fn publish_tip(&self) {
        #[cfg(feature = "actor")]
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
        if let Err(e) = guard.relax() {
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

    /// Relaxes the store's durability until [`Chain::make_durable`]: the
    /// owner of the chain groups several operations under one durable
    /// commit ([`Store::set_durable`]). A crash loses at most what was
    /// written since, and the chain reopens at the last durable tip.
    ///
    /// # Errors
    /// When the store refuses.
    #[cfg_attr(not(feature = "actor"), allow(dead_code))]
    pub(crate) fn relax_durability(&mut self) -> Result<(), StoreError> {
        if !self.relaxed {
            self.store.set_durable(false)?;
            self.relaxed = true;
        }
        Ok(())
    }

    /// Whether durability is relaxed by the owner ([`Chain::relax_durability`]).
    #[cfg_attr(not(feature = "actor"), allow(dead_code))]
    pub(crate) fn is_relaxed(&self) -> bool {
        self.relaxed
    }

    /// Makes everything written so far durable (one durable commit) and
    /// restores durable writes. A failure is remembered as a store failure
    /// ([`Chain::store_failure`]).
    ///
    /// # Errors
    /// When the durable commit fails.
    #[cfg_attr(not(feature = "actor"), allow(dead_code))]
    pub(crate) fn make_durable(&mut self) -> Result<(), StoreError> {
        if !self.relaxed {
            return Ok(());
        }
        self.relaxed = false;
        let done = self.store.set_durable(true);
        if let Err(e) = &done {
            self.note_store_failure(e);
        }
        done
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
            note_arrival(&hash, &block.header, now_ms);
            self.index.insert(hash, node);
            self.canonical.push(hash);
            self.mempool.remove_included(&block.txs, &self.state);
            self.publish_tip();
            self.prune();
            return Ok(InsertOutcome::Connected { hash, height });
        }
        // A side branch: keep it; reorganise if it now has the most work.
        self.store.put_block(&hash, &block)?;
        note_arrival(&hash, &block.header, now_ms);
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
}
