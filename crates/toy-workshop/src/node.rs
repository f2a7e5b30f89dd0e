//! The workshop chain on the network: gossip `bc:new_block` and
//! `bc:new_tx` (payload: the text), `search:block` (query: the raw 32-byte
//! hash; answer: the block's text) to fetch missing parents, and a miner.
//!
//! How a peer is judged follows what a workshop node would forward: it
//! forwards only what it accepted, and checks proof of work and signatures
//! exactly as we do, so a block whose hash misses the difficulty or a
//! transaction with a bad signature cannot come from an honest relay and
//! costs its sender ([`Verdict::Reject`]). Everything else we refuse —
//! text our stricter codec does not take, a rule a student's node may judge
//! differently — is dropped without penalty ([`Verdict::Ignore`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use toy_gossip::{Flow, GossipNetwork, Verdict, answerer_fn, gossip_handler_fn};

use crate::chain::Inserted;
use crate::state::sign_tx;
use crate::{Block, Chain, Error, Hash, SecretKey, Tx, miner};

/// Gossip kind of new blocks.
pub const NEW_BLOCK: &str = "bc:new_block";
/// Gossip kind of new transactions.
pub const NEW_TX: &str = "bc:new_tx";
/// Search kind for blocks by hash.
pub const SEARCH_BLOCK: &str = "block";
/// How long one parent search waits: 5 s.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Parent fetches in flight at once: 4 (more missing parents wait for the
/// next block that needs them).
pub const MAX_FETCHES: usize = 4;
/// Parents fetched one after another for one orphan: 2 000 (a late node
/// catching up walks back this far at most per new block; the blocks of a
/// walk are held until it reaches a known one, at most 2 000 × 16 KiB).
pub const MAX_FETCH_CHAIN: usize = 2_000;
/// Nonces tried between looks at the tip: 20 000 (a few milliseconds).
pub const MINE_CHUNK: u64 = 20_000;

/// A workshop chain node over a gossip network.
pub struct WorkshopNode<G: GossipNetwork> {
    inner: Arc<Inner<G>>,
}

impl<G: GossipNetwork> Clone for WorkshopNode<G> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

struct Inner<G> {
    gossip: Arc<G>,
    chain: Mutex<Chain>,
    /// (height, tip) after every change.
    tip: watch::Sender<(u64, Hash)>,
    /// Bumped when the tip or the mempool changes: the miner rebuilds its
    /// template.
    generation: AtomicU64,
    fetching: Mutex<HashSet<Hash>>,
    stop: AtomicBool,
    /// Hashes the miner threads have tried (for the hash rate).
    hashes: AtomicU64,
}

impl<G: GossipNetwork> WorkshopNode<G> {
    /// Registers the chain's gossip and search handlers on `gossip`.
    ///
    /// # Errors
    /// When a kind is already taken on `gossip`.
    pub fn start(gossip: Arc<G>, chain: Chain) -> Result<Self, toy_gossip::Error> {
        let tip = watch::Sender::new((chain.height(), chain.tip()));
        let node = Self {
            inner: Arc::new(Inner {
                gossip,
                chain: Mutex::new(chain),
                tip,
                generation: AtomicU64::new(0),
                fetching: Mutex::new(HashSet::new()),
                stop: AtomicBool::new(false),
                hashes: AtomicU64::new(0),
            }),
        };
        let weak = Arc::downgrade(&node.inner);
        node.inner.gossip.register_handler(
            NEW_BLOCK,
            gossip_handler_fn(move |_, message| {
                let node = weak.upgrade().map(|inner| WorkshopNode { inner });
                async move {
                    match node {
                        Some(node) => node.on_block(message).await,
                        None => Verdict::Ignore,
                    }
                }
            }),
        )?;
        let weak = Arc::downgrade(&node.inner);
        node.inner.gossip.register_handler(
            NEW_TX,
            gossip_handler_fn(move |_, message| {
                let node = weak.upgrade().map(|inner| WorkshopNode { inner });
                async move {
                    match node {
                        Some(node) => node.on_tx(message).await,
                        None => Verdict::Ignore,
                    }
                }
            }),
        )?;
        let weak = Arc::downgrade(&node.inner);
        node.inner.gossip.register_search_answerer(
            SEARCH_BLOCK,
            answerer_fn(move |query| {
                let node = weak.upgrade().map(|inner| WorkshopNode { inner });
                async move {
                    let hash: [u8; 32] = query.as_ref().try_into().ok()?;
                    let text = node?.read(|c| c.block(&Hash(hash)).map(Block::encode))?;
                    Some(Bytes::from(text))
                }
            }),
        )?;
        Ok(node)
    }

    /// Reads the chain: `f` runs with it locked (keep it short: handlers
    /// wait on it). A closure rather than a guard, so that no caller can
    /// hold the lock across another call that takes it.
    pub fn read<R>(&self, f: impl FnOnce(&Chain) -> R) -> R {
        f(&self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Chain> {
        self.inner.chain.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches (height, tip).
    pub fn watch_tip(&self) -> watch::Receiver<(u64, Hash)> {
        self.inner.tip.subscribe()
    }

    /// The gossip network underneath.
    pub fn gossip(&self) -> &Arc<G> {
        &self.inner.gossip
    }

    fn publish(&self) {
        let now = self.read(|c| (c.height(), c.tip()));
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.tip.send_if_modified(|t| {
            let changed = *t != now;
            *t = now;
            changed
        });
    }

    /// Checks and inserts a block off the runtime; fetches a missing parent.
    async fn insert(&self, block: Block) -> Result<Inserted, Error> {
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || this.lock().insert(block))
            .await
            .unwrap_or(Err(Error::Invalid("the check was cancelled")));
        match &result {
            Ok(Inserted::Tip { reorg }) => {
                if *reorg > 0 {
                    tracing::info!(reorg, "the workshop chain switched branches");
                }
                self.publish();
            }
            Ok(Inserted::Orphan { missing }) => self.fetch(*missing),
            // A side block can connect waiting orphans that become the tip:
            // publish whenever anything went in (a tip that did not move is
            // not sent again).
            Ok(_) => self.publish(),
            Err(_) => {}
        }
        result
    }

    async fn on_block(&self, message: Bytes) -> Verdict {
        let Some(block) = std::str::from_utf8(&message).ok().and_then(|t| Block::decode(t).ok()) else {
            tracing::debug!("a bc:new_block that is not a workshop block; dropped");
            return Verdict::Ignore;
        };
        match self.insert(block).await {
            Ok(Inserted::Tip { .. } | Inserted::Side) => Verdict::Accept,
            Ok(Inserted::Known | Inserted::Stale | Inserted::Orphan { .. }) => Verdict::Ignore,
            Err(Error::InsufficientWork) => Verdict::Reject,
            Err(e) => {
                tracing::debug!(error = %e, "a gossiped block was refused");
                Verdict::Ignore
            }
        }
    }

    async fn on_tx(&self, message: Bytes) -> Verdict {
        let Some(tx) = std::str::from_utf8(&message).ok().and_then(|t| Tx::decode(t).ok()) else {
            tracing::debug!("a bc:new_tx that is not a workshop transaction; dropped");
            return Verdict::Ignore;
        };
        let result = self.admit(tx).await;
        match result {
            Ok(true) => {
                self.inner.generation.fetch_add(1, Ordering::AcqRel);
                Verdict::Accept
            }
            Ok(false) => Verdict::Ignore,
            Err(Error::BadSignature) => Verdict::Reject,
            Err(e) => {
                tracing::debug!(error = %e, "a gossiped transaction was refused");
                Verdict::Ignore
            }
        }
    }

    /// Fetches `missing` and its missing ancestors by `search:block`, in
    /// the background (at most [`MAX_FETCHES`] at once).
    fn fetch(&self, missing: Hash) {
        {
            let mut fetching = self.inner.fetching.lock().unwrap_or_else(PoisonError::into_inner);
            if fetching.len() >= MAX_FETCHES || !fetching.insert(missing) {
                return;
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.walk_back(missing).await;
            this.inner.fetching.lock().unwrap_or_else(PoisonError::into_inner).remove(&missing);
        });
    }

    /// Fetches `missing` and its ancestors until one is known, then inserts
    /// them oldest first. Held here rather than as orphans: the orphan pool
    /// keeps 64 and drops the oldest, which would be the ones nearest the
    /// tip; and a branch higher than ours is taken however deep it forks.
    async fn walk_back(&self, missing: Hash) {
        let mut want = missing;
        let mut branch = Vec::new();
        for _ in 0..MAX_FETCH_CHAIN {
            if self.inner.stop.load(Ordering::Acquire) {
                return;
            }
            let Some(block) = self.search_block(want).await else {
                tracing::debug!(hash = %want, "no peer had a missing parent");
                return;
            };
            let parent = block.parent;
            branch.push(block);
            if self.read(|c| c.block(&parent).is_some()) {
                break;
            }
            want = parent;
        }
        branch.reverse();
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || this.lock().insert_branch(branch))
            .await
            .unwrap_or(Err(Error::Invalid("the check was cancelled")));
        match result {
            Ok(_) => self.publish(),
            Err(e) => tracing::debug!(error = %e, "a fetched branch was refused"),
        }
    }

    /// One `search:block`: the first answer that hashes to `hash`.
    async fn search_block(&self, hash: Hash) -> Option<Block> {
        let mut found = None;
        let result = self
            .inner
            .gossip
            .search(SEARCH_BLOCK, Bytes::copy_from_slice(&hash.0), FETCH_TIMEOUT, &mut |answer| {
                match answer.as_deref().and_then(|a| std::str::from_utf8(a).ok()).and_then(|t| Block::decode(t).ok()) {
                    // Answers come from anyone: only the block itself counts.
                    Some(b) if b.hash() == hash => {
                        found = Some(b);
                        Flow::Done
                    }
                    _ => Flow::Continue,
                }
            })
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "search:block failed");
        }
        found
    }

    /// Admits a transaction: the cheap checks under the lock, the signature
    /// outside it (off the runtime), then the pool.
    async fn admit(&self, tx: Tx) -> Result<bool, Error> {
        if !self.read(|c| c.precheck_tx(&tx))? {
            return Ok(false);
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            crate::state::check_signature(&tx)?;
            this.lock().add_checked_tx(tx)
        })
        .await
        .unwrap_or(Err(Error::Invalid("the check was cancelled")))
    }

    /// Adds our own transaction and announces it.
    ///
    /// # Errors
    /// [`Error::BadSignature`], or [`Error::Invalid`] when the chain refuses
    /// it otherwise.
    pub async fn submit(&self, tx: Tx) -> Result<bool, Error> {
        let text = tx.encode();
        let added = self.admit(tx).await?;
        if added {
            self.inner.generation.fetch_add(1, Ordering::AcqRel);
            if let Err(e) = self.inner.gossip.broadcast(NEW_TX, Bytes::from(text)) {
                tracing::warn!(error = %e, "could not announce a transaction");
            }
        }
        Ok(added)
    }

    /// Signs and submits a transfer of `amount` from `key` to `recipient`
    /// (a compressed P-192 key) at the next free nonce.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a recipient that is no key, an amount of 0 or
    /// more than the balance, or when the chain refuses it.
    pub async fn send(&self, key: &SecretKey, recipient: &str, amount: u64) -> Result<Tx, Error> {
        if !crate::crypto::is_public_key(recipient) {
            return Err(Error::Invalid("the recipient is not a compressed P-192 public key"));
        }
        if amount == 0 {
            return Err(Error::Invalid("the amount must be at least 1"));
        }
        let me = key.public_hex();
        let (balance, nonce) = self.read(|c| (c.balance(&me), c.next_nonce(&me)));
        if amount > balance {
            return Err(Error::Invalid("more than the balance"));
        }
        let tx = sign_tx(key, recipient, nonce, amount);
        if !self.submit(tx.clone()).await? {
            // Another send took this nonce meanwhile.
            return Err(Error::Invalid("a transaction with this nonce is already pending; send again"));
        }
        Ok(tx)
    }

    /// Mines on the tip on `threads` threads, paying `coinbase`, until
    /// [`WorkshopNode::shutdown`]; each found block is inserted and
    /// announced.
    pub fn mine(&self, coinbase: &str, threads: usize) {
        // Announcing a block from a miner thread uses the runtime's handle.
        let runtime = tokio::runtime::Handle::try_current().ok();
        for t in 0..threads.max(1) {
            let this = self.clone();
            let coinbase = coinbase.to_owned();
            let runtime = runtime.clone();
            let spawned = std::thread::Builder::new().name(format!("workshop-miner-{t}")).spawn(move || {
                let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
                this.mine_loop(&coinbase, t as u64);
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start a miner thread");
            }
        }
    }

    fn mine_loop(&self, coinbase: &str, lane: u64) {
        let difficulty = self.read(|c| c.params().difficulty);
        while !self.inner.stop.load(Ordering::Acquire) {
            let generation = self.inner.generation.load(Ordering::Acquire);
            let template = self.read(|c| c.template(coinbase));
            // Threads take separate nonce ranges.
            let mut start = (lane << 48) | (rand::random::<u64>() >> 24);
            let found = loop {
                if self.inner.stop.load(Ordering::Acquire)
                    || self.inner.generation.load(Ordering::Acquire) != generation
                {
                    break None;
                }
                if let Some(b) = miner::grind(&template, difficulty, start, MINE_CHUNK) {
                    self.inner.hashes.fetch_add(b.nonce.wrapping_sub(start) + 1, Ordering::Relaxed);
                    break Some(b);
                }
                self.inner.hashes.fetch_add(MINE_CHUNK, Ordering::Relaxed);
                start = start.wrapping_add(MINE_CHUNK);
            };
            let Some(block) = found else { continue };
            let text = block.encode();
            let inserted = self.lock().insert(block);
            match inserted {
                Ok(Inserted::Tip { .. }) => {
                    tracing::info!(height = self.read(Chain::height), "mined a workshop block");
                    self.publish();
                    if let Err(e) = self.inner.gossip.broadcast(NEW_BLOCK, Bytes::from(text)) {
                        tracing::warn!(error = %e, "could not announce a block");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "our own block was refused");
                    // A store failure: wait before grinding again.
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Hashes the miner threads have tried since the start (sample it twice
    /// for a rate).
    pub fn hashes(&self) -> u64 {
        self.inner.hashes.load(Ordering::Relaxed)
    }

    /// Inserts a block mined here (on demand, say) and announces it when it
    /// became the tip.
    ///
    /// # Errors
    /// As [`Chain::insert`].
    pub async fn submit_block(&self, block: Block) -> Result<Inserted, Error> {
        let text = block.encode();
        let inserted = self.insert(block).await?;
        if matches!(inserted, Inserted::Tip { .. })
            && let Err(e) = self.inner.gossip.broadcast(NEW_BLOCK, Bytes::from(text))
        {
            tracing::warn!(error = %e, "could not announce a block");
        }
        Ok(inserted)
    }

    /// Stops the miner threads and any parent fetch.
    pub fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::Release);
    }
}
