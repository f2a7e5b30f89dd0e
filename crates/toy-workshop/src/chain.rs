//! The block tree, fork choice, reorgs, orphans and the mempool.
//!
//! Fork choice is the workshop's: the highest block number wins; between
//! two of one height the first seen stays (after a restart the store gives
//! no order of arrival: the tie then goes to the lower hash). A block whose parent is unknown
//! waits as an orphan while the node fetches the parent (`search:block`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;

use crate::mempool::Mempool;
use crate::state::{Account, Accounts, Undo, check_signature};
use crate::store::Store;
use crate::{Block, Error, Hash, Params, Tx};

/// Orphans held at once: 64 (the oldest dropped first). Each cost its
/// sender a proof of work.
pub const MAX_ORPHANS: usize = 64;
/// Blocks this far below the tip or further are not kept: 1 000. A branch
/// forking deeper than that would take more work than the workshop's whole
/// session; refusing it bounds what stale side branches can store.
pub const MAX_SIDE_DEPTH: u64 = 1_000;
/// Invalid block hashes remembered: 10 000 (then forgotten all at once;
/// each cost a proof of work).
pub const MAX_INVALID: usize = 10_000;
/// Blocks kept at one height not above the tip: 4 (the first seen stay).
/// At a classroom's difficulty side blocks are cheap; this and
/// [`MAX_SIDE_DEPTH`] bound what they can store (4 000 blocks of at most
/// 16 KiB). A branch that grows higher than the tip is taken whole by the
/// parent fetch ([`Chain::insert_branch`]), past both limits.
pub const MAX_BLOCKS_PER_HEIGHT: usize = 4;

/// What [`Chain::insert`] did with a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Already known (in the tree or among the orphans).
    Known,
    /// Its parent is unknown: held as an orphan; fetch `missing`.
    Orphan {
        /// The parent to fetch.
        missing: Hash,
    },
    /// Stored on a side branch, not higher than the tip.
    Side,
    /// Too far below the tip to matter ([`MAX_SIDE_DEPTH`]), or its height
    /// already holds [`MAX_BLOCKS_PER_HEIGHT`] blocks: dropped.
    Stale,
    /// The new tip; `reorg` blocks of the old chain were undone.
    Tip {
        /// Blocks of the old chain undone (0: it extended the tip).
        reorg: usize,
    },
}

/// The workshop chain.
pub struct Chain {
    params: Params,
    store: Option<Store>,
    blocks: HashMap<Hash, Block>,
    /// The active chain: `active[n]` is the hash at number `n`.
    active: Vec<Hash>,
    /// `undos[n - 1]` puts back what `active[n]` changed.
    undos: Vec<Undo>,
    accounts: Accounts,
    /// The blocks stored at each height ([`MAX_BLOCKS_PER_HEIGHT`] at most
    /// each, past it only for a fetched branch), by height: the recent
    /// block tree is read from here without scanning every block.
    per_height: BTreeMap<u64, Vec<Hash>>,
    /// Bytes of the orphans' text (kept with them, for the status).
    orphan_bytes: usize,
    orphans: HashMap<Hash, Block>,
    orphan_order: VecDeque<Hash>,
    invalid: HashSet<Hash>,
    mempool: Mempool,
    /// Transaction id → the number of the active block holding it: one
    /// entry per transaction on the active chain (which is held whole in
    /// memory anyway), kept in step by every tip change.
    tx_index: HashMap<Hash, u64>,
    /// The last storage failure, until a block is stored again.
    store_failure: Option<String>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("height", &self.height()).field("tip", &self.tip()).finish_non_exhaustive()
    }
}

impl Chain {
    /// A chain holding only the genesis block, kept in memory.
    pub fn in_memory(params: Params) -> Self {
        let genesis = Block::genesis();
        let hash = genesis.hash();
        Self {
            params,
            store: None,
            blocks: HashMap::from([(hash, genesis)]),
            active: vec![hash],
            undos: Vec::new(),
            accounts: Accounts::default(),
            per_height: BTreeMap::from([(0, vec![hash])]),
            orphan_bytes: 0,
            orphans: HashMap::new(),
            orphan_order: VecDeque::new(),
            invalid: HashSet::new(),
            mempool: Mempool::default(),
            tx_index: HashMap::new(),
            store_failure: None,
        }
    }

    /// The chain stored at `path` (created with the genesis block when new):
    /// every stored block is checked and connected again.
    ///
    /// # Errors
    /// [`Error::Store`] when the database cannot be opened or read.
    pub fn open(path: &Path, params: Params) -> Result<Self, Error> {
        let store = Store::open(path)?;
        let blocks = store.load()?;
        let mut chain = Self::in_memory(params);
        for block in blocks {
            if block.number == 0 {
                continue;
            }
            if let Err(e) = chain.insert(block) {
                tracing::warn!(error = %e, "a stored block no longer connects; left out");
            }
        }
        chain.store = Some(store);
        Ok(chain)
    }

    /// The rules.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The tip's hash.
    pub fn tip(&self) -> Hash {
        self.active.last().copied().unwrap_or_default()
    }

    /// The last storage failure (a full disk, say), until a block is
    /// stored again; blocks are refused meanwhile.
    pub fn store_failure(&self) -> Option<&str> {
        self.store_failure.as_deref()
    }

    /// Bytes of the orphans held (at most [`MAX_ORPHANS`] blocks).
    pub fn orphan_bytes(&self) -> usize {
        self.orphan_bytes
    }

    /// Whether `hash` is on the active chain.
    pub fn is_active(&self, hash: &Hash) -> bool {
        self.blocks.get(hash).is_some_and(|b| self.hash_at(b.number) == Some(*hash))
    }

    /// Every stored block numbered `low` or more, active and side branches
    /// alike, lowest first (the recent block tree).
    pub fn blocks_from(&self, low: u64) -> Vec<(Hash, &Block)> {
        self.per_height
            .range(low..)
            .flat_map(|(_, hashes)| hashes.iter())
            .filter_map(|h| self.blocks.get(h).map(|b| (*h, b)))
            .collect()
    }

    /// The active block holding transaction `id`, and its place in it.
    pub fn find_tx(&self, id: &Hash) -> Option<(&Block, usize)> {
        let number = *self.tx_index.get(id)?;
        let block = self.block(&self.hash_at(number)?)?;
        let pos = block.txs.iter().position(|t| t.id() == *id)?;
        Some((block, pos))
    }

    /// The tip's number.
    pub fn height(&self) -> u64 {
        self.active.len().saturating_sub(1) as u64
    }

    /// The active chain's hash at `number`.
    pub fn hash_at(&self, number: u64) -> Option<Hash> {
        usize::try_from(number).ok().and_then(|n| self.active.get(n)).copied()
    }

    /// A block of the tree by hash.
    pub fn block(&self, hash: &Hash) -> Option<&Block> {
        self.blocks.get(hash)
    }

    /// The account of `key` at the tip.
    pub fn account(&self, key: &str) -> Account {
        self.accounts.get(key)
    }

    /// Coins of `key` at the tip.
    pub fn balance(&self, key: &str) -> u64 {
        self.accounts.get(key).balance
    }

    /// Every account at the tip.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The pending transactions.
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// Orphans held.
    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }

    /// The next nonce `key` should use: its account's, past those of its
    /// transactions already pending here.
    pub fn next_nonce(&self, key: &str) -> u64 {
        let mut nonce = self.accounts.get(key).nonce;
        let pending: HashSet<u64> = self.mempool.nonces_of(key).collect();
        while pending.contains(&nonce) {
            nonce += 1;
        }
        nonce
    }

    /// Adds a transaction to the mempool after checking its signature;
    /// `Ok(false)` when already held.
    ///
    /// # Errors
    /// [`Error::BadSignature`]; [`Error::Invalid`] for a used nonce or one too far
    /// ahead.
    pub fn add_tx(&mut self, tx: Tx) -> Result<bool, Error> {
        if !self.precheck_tx(&tx)? {
            return Ok(false);
        }
        check_signature(&tx)?;
        self.mempool.add(tx, &self.accounts)
    }

    /// The mempool's checks on `tx` without its signature (cheap: run them
    /// first, then check the signature outside any lock, then
    /// [`Chain::add_checked_tx`]). `Ok(false)` when already held.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a used nonce, one too far ahead, or too few
    /// coins.
    pub fn precheck_tx(&self, tx: &Tx) -> Result<bool, Error> {
        self.mempool.precheck(tx, &self.accounts)
    }

    /// Adds a transaction whose signature the caller checked
    /// ([`crate::state::check_signature`]).
    ///
    /// # Errors
    /// As [`Chain::precheck_tx`] (the tip may have moved since).
    pub fn add_checked_tx(&mut self, tx: Tx) -> Result<bool, Error> {
        self.mempool.add(tx, &self.accounts)
    }

    /// A block to mine on the tip, paying `coinbase` (nonce 0).
    pub fn template(&self, coinbase: &str) -> Block {
        Block {
            number: self.height() + 1,
            nonce: 0,
            parent: self.tip(),
            coinbase: coinbase.to_owned(),
            txs: self.mempool.select(&self.accounts, self.params.max_txs),
        }
    }

    /// Checks a block, stores it and moves the tip when it is higher; then
    /// connects any orphans waiting for it.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a broken rule (the block is remembered as
    /// invalid when its proof of work is good, so it is not judged twice);
    /// [`Error::Store`] when it could not be written (it is then not kept).
    pub fn insert(&mut self, block: Block) -> Result<Inserted, Error> {
        let result = self.insert_one(block, false)?;
        if let Inserted::Tip { .. } | Inserted::Side = result {
            self.connect_orphans();
        }
        Ok(result)
    }

    /// Inserts a branch fetched by walking back from an orphan, oldest
    /// first (`blocks[0]`'s parent must be known). When its last block is
    /// higher than the tip, the side-branch limits ([`MAX_SIDE_DEPTH`],
    /// [`MAX_BLOCKS_PER_HEIGHT`]) do not apply to it: the workshop's fork
    /// choice takes any higher branch, however deep it forks. Returns what
    /// happened to the last block that went in.
    ///
    /// # Errors
    /// The first block that fails, as [`Chain::insert`].
    pub fn insert_branch(&mut self, blocks: Vec<Block>) -> Result<Inserted, Error> {
        let higher = blocks.last().is_some_and(|b| b.number > self.height());
        let mut last = Inserted::Known;
        for block in blocks {
            last = self.insert_one(block, higher)?;
        }
        self.connect_orphans();
        Ok(last)
    }

    fn insert_one(&mut self, block: Block, past_limits: bool) -> Result<Inserted, Error> {
        let hash = block.hash();
        if self.blocks.contains_key(&hash) || self.orphans.contains_key(&hash) {
            return Ok(Inserted::Known);
        }
        // Proof of work first: everything after it costs the sender work.
        if !hash.meets(self.params.difficulty) {
            return Err(Error::InsufficientWork);
        }
        if self.invalid.contains(&hash) {
            return Err(Error::Invalid("already found invalid"));
        }
        if self.invalid.contains(&block.parent) {
            self.mark_invalid(hash);
            return Err(Error::Invalid("descends from an invalid block"));
        }
        let crowded = || self.per_height.get(&block.number).is_some_and(|n| n.len() >= MAX_BLOCKS_PER_HEIGHT);
        if !past_limits && (block.number.saturating_add(MAX_SIDE_DEPTH) <= self.height() || crowded()) {
            return Ok(Inserted::Stale);
        }
        let standalone = self.check_standalone(&block);
        if let Err(e) = standalone {
            self.mark_invalid(hash);
            return Err(e);
        }
        let Some(parent) = self.blocks.get(&block.parent) else {
            let missing = block.parent;
            while self.orphans.len() >= MAX_ORPHANS {
                let Some(old) = self.orphan_order.pop_front() else { break };
                self.take_orphan(&old);
            }
            self.orphan_order.push_back(hash);
            self.orphan_bytes += block.encode().len();
            self.orphans.insert(hash, block);
            return Ok(Inserted::Orphan { missing });
        };
        if block.number != parent.number + 1 {
            self.mark_invalid(hash);
            return Err(Error::Invalid("the number is not the parent's plus one"));
        }
        if let Some(store) = &self.store {
            let stored = store.put(&hash, &block);
            self.store_failure = stored.as_ref().err().map(ToString::to_string);
            stored?;
        }
        let number = block.number;
        self.per_height.entry(number).or_default().push(hash);
        self.blocks.insert(hash, block);
        if number > self.height() {
            let reorg = self.reorg_to(hash)?;
            Ok(Inserted::Tip { reorg })
        } else {
            Ok(Inserted::Side)
        }
    }

    /// What needs no state: the number of transactions and every signature.
    fn check_standalone(&self, block: &Block) -> Result<(), Error> {
        if block.number == 0 {
            return Err(Error::Invalid("a second genesis"));
        }
        if block.txs.len() > self.params.max_txs {
            return Err(Error::Invalid("too many transactions"));
        }
        block.txs.iter().try_for_each(check_signature)
    }

    fn mark_invalid(&mut self, hash: Hash) {
        if self.invalid.len() >= MAX_INVALID {
            self.invalid.clear();
        }
        self.invalid.insert(hash);
    }

    /// Makes `new` (stored, higher than the tip) the tip. On a rule broken
    /// along its branch, the old chain is put back and the bad block and
    /// its descendants on the branch are dropped.
    fn reorg_to(&mut self, new: Hash) -> Result<usize, Error> {
        // The branch from the fork point up to `new`.
        let mut branch = Vec::new();
        let mut cursor = new;
        loop {
            let Some(b) = self.blocks.get(&cursor) else {
                return Err(Error::Invalid("branch does not reach the active chain"));
            };
            if self.hash_at(b.number) == Some(cursor) {
                break;
            }
            branch.push(cursor);
            cursor = b.parent;
        }
        branch.reverse();
        let fork = self.blocks.get(&cursor).map_or(0, |b| b.number);
        // Undo the old chain above the fork.
        let mut old = Vec::new();
        while self.height() > fork {
            if let (Some(h), Some(u)) = (self.active.pop(), self.undos.pop()) {
                self.accounts.undo(u);
                old.push(h);
            }
        }
        old.reverse();
        let depth = old.len();
        for (i, h) in branch.iter().enumerate() {
            let applied = match self.blocks.get(h) {
                Some(b) => self.accounts.apply(b, &self.params, true),
                None => Err(Error::Invalid("branch block missing")),
            };
            match applied {
                Ok(undo) => {
                    self.active.push(*h);
                    self.undos.push(undo);
                }
                Err(e) => {
                    for bad in &branch[i..] {
                        if let Some(b) = self.blocks.remove(bad) {
                            self.uncount(b.number, bad);
                        }
                        self.mark_invalid(*bad);
                    }
                    while self.height() > fork {
                        if let (Some(_), Some(u)) = (self.active.pop(), self.undos.pop()) {
                            self.accounts.undo(u);
                        }
                    }
                    for h in old {
                        let undo = match self.blocks.get(&h) {
                            Some(b) => self.accounts.apply(b, &self.params, true)?,
                            None => return Err(Error::Invalid("old chain block missing")),
                        };
                        self.active.push(h);
                        self.undos.push(undo);
                    }
                    return Err(e);
                }
            }
        }
        for h in &old {
            if let Some(b) = self.blocks.get(h) {
                for tx in &b.txs {
                    self.tx_index.remove(&tx.id());
                }
            }
        }
        for h in &branch {
            if let Some(b) = self.blocks.get(h) {
                for tx in &b.txs {
                    self.tx_index.insert(tx.id(), b.number);
                }
            }
        }
        // The transactions of the blocks undone go back to the pool (those
        // the new branch also holds are pruned as used).
        for h in &old {
            let txs = self.blocks.get(h).map(|b| b.txs.clone()).unwrap_or_default();
            for tx in txs {
                let _ = self.mempool.add(tx, &self.accounts);
            }
        }
        self.mempool.prune(&self.accounts);
        Ok(depth)
    }

    /// Takes an orphan out, with its bytes.
    fn take_orphan(&mut self, hash: &Hash) -> Option<Block> {
        let block = self.orphans.remove(hash)?;
        self.orphan_bytes = self.orphan_bytes.saturating_sub(block.encode().len());
        Some(block)
    }

    fn uncount(&mut self, number: u64, hash: &Hash) {
        if let Some(n) = self.per_height.get_mut(&number) {
            n.retain(|h| h != hash);
            if n.is_empty() {
                self.per_height.remove(&number);
            }
        }
    }

    /// Connects orphans whose parents are now known, breadth first.
    fn connect_orphans(&mut self) {
        loop {
            let ready: Vec<Hash> = self
                .orphan_order
                .iter()
                .filter(|h| self.orphans.get(h).is_some_and(|b| self.blocks.contains_key(&b.parent)))
                .copied()
                .collect();
            if ready.is_empty() {
                return;
            }
            for h in ready {
                self.orphan_order.retain(|o| *o != h);
                if let Some(block) = self.take_orphan(&h)
                    && let Err(e) = self.insert_one(block, false)
                {
                    tracing::debug!(hash = %h, error = %e, "an orphan did not connect");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::sign_tx;
    use crate::{SecretKey, miner};

    const P: Params = Params::with_difficulty(1);

    fn mine(chain: &Chain, parent: Hash, number: u64, coinbase: &str, txs: Vec<Tx>) -> Block {
        let template = Block { number, nonce: 0, parent, coinbase: coinbase.to_owned(), txs };
        let _ = chain;
        miner::grind(&template, P.difficulty, 0, u64::MAX).expect("found")
    }

    #[test]
    fn the_highest_number_wins_and_a_tie_keeps_the_first() {
        let mut chain = Chain::in_memory(P);
        let (a, b) = (SecretKey::generate().public_hex(), SecretKey::generate().public_hex());
        let g = chain.tip();
        let a1 = mine(&chain, g, 1, &a, vec![]);
        let b1 = mine(&chain, g, 1, &b, vec![]);
        assert_eq!(chain.insert(a1.clone()).expect("a1"), Inserted::Tip { reorg: 0 });
        assert_eq!(chain.insert(b1.clone()).expect("b1"), Inserted::Side, "a tie keeps the first seen");
        assert_eq!(chain.balance(&a), 10_000);
        let b2 = mine(&chain, b1.hash(), 2, &b, vec![]);
        assert_eq!(chain.insert(b2).expect("b2"), Inserted::Tip { reorg: 1 });
        assert_eq!(chain.balance(&a), 0, "a's block was undone");
        assert_eq!(chain.balance(&b), 20_000);
    }

    #[test]
    fn orphans_connect_when_their_parent_arrives() {
        let mut chain = Chain::in_memory(P);
        let k = SecretKey::generate().public_hex();
        let b1 = mine(&chain, chain.tip(), 1, &k, vec![]);
        let b2 = mine(&chain, b1.hash(), 2, &k, vec![]);
        assert_eq!(chain.insert(b2).expect("b2"), Inserted::Orphan { missing: b1.hash() });
        chain.insert(b1).expect("b1");
        assert_eq!(chain.height(), 2);
        assert_eq!(chain.orphan_count(), 0);
    }

    #[test]
    fn a_branch_with_an_overspend_is_dropped_and_the_old_chain_stays() {
        let mut chain = Chain::in_memory(P);
        let key = SecretKey::generate();
        let me = key.public_hex();
        let g = chain.tip();
        let a1 = mine(&chain, g, 1, &me, vec![]);
        chain.insert(a1.clone()).expect("a1");
        // A side branch without a1's reward, spending coins it lacks.
        let b1 = mine(&chain, g, 1, "ab", vec![]);
        let spend = sign_tx(&key, "cd", 0, 5_000);
        let b2 = mine(&chain, b1.hash(), 2, "ab", vec![spend]);
        chain.insert(b1).expect("b1");
        assert!(chain.insert(b2.clone()).is_err());
        assert_eq!(chain.tip(), a1.hash());
        assert_eq!(chain.balance(&me), 10_000);
        assert!(chain.insert(b2).is_err(), "remembered as invalid");
    }

    #[test]
    fn transfers_apply_and_the_mempool_empties() {
        let mut chain = Chain::in_memory(P);
        let key = SecretKey::generate();
        let me = key.public_hex();
        let b1 = mine(&chain, chain.tip(), 1, &me, vec![]);
        chain.insert(b1).expect("b1");
        let other = SecretKey::generate().public_hex();
        assert!(chain.add_tx(sign_tx(&key, &other, 0, 300)).expect("tx"));
        assert!(chain.add_tx(sign_tx(&key, &other, 1, 200)).expect("tx"));
        let mut bad = sign_tx(&key, &other, 2, 1);
        bad.amount = 2;
        assert!(chain.add_tx(bad).is_err(), "signature no longer matches");
        let t = chain.template(&other);
        assert_eq!(t.txs.len(), 2);
        let b2 = miner::grind(&t, P.difficulty, 0, u64::MAX).expect("found");
        chain.insert(b2).expect("b2");
        assert_eq!(chain.balance(&me), 9_500);
        assert_eq!(chain.balance(&other), 10_500);
        assert_eq!(chain.account(&me).nonce, 2);
        assert!(chain.mempool().is_empty());
    }

    #[test]
    fn transactions_are_found_on_the_active_chain_only() {
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let mut chain = Chain::in_memory(P);
        let g = chain.tip();
        let one = mine(&chain, g, 1, &a.public_hex(), vec![]);
        chain.insert(one.clone()).expect("one");
        let tx = sign_tx(&a, &b.public_hex(), 0, 5);
        let two = mine(&chain, one.hash(), 2, &b.public_hex(), vec![tx.clone()]);
        chain.insert(two.clone()).expect("two");
        let (found, pos) = chain.find_tx(&tx.id()).expect("found");
        assert_eq!((found.hash(), pos), (two.hash(), 0));
        assert!(chain.is_active(&two.hash()));
        // A longer branch without it: no longer found, back in the pool.
        let two_b = mine(&chain, one.hash(), 2, &a.public_hex(), vec![]);
        chain.insert(two_b.clone()).expect("side");
        let three_b = mine(&chain, two_b.hash(), 3, &a.public_hex(), vec![]);
        chain.insert(three_b).expect("reorg");
        assert!(chain.find_tx(&tx.id()).is_none());
        assert!(!chain.is_active(&two.hash()));
        assert!(chain.mempool().contains(&tx.id()));
        assert_eq!(chain.blocks_from(2).len(), 3, "both blocks at 2 and the one at 3");
    }

    #[test]
    fn a_stored_chain_comes_back() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("chain.redb");
        let k = SecretKey::generate().public_hex();
        let tip = {
            let mut chain = Chain::open(&path, P).expect("open");
            for _ in 0..3 {
                let t = chain.template(&k);
                chain.insert(miner::grind(&t, P.difficulty, 0, u64::MAX).expect("found")).expect("insert");
            }
            chain.tip()
        };
        let chain = Chain::open(&path, P).expect("reopen");
        assert_eq!(chain.tip(), tip);
        assert_eq!(chain.balance(&k), 30_000);
    }
}
