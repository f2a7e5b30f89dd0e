//! Helpers shared by the chain's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use toy_chain::{
    Address, Block, Chain, ChainParams, Hash, Header, K256Verifier, Keypair, MemoryStore, SigCache, Signature, Store,
    Transaction, TxKind, mine_simple,
};

/// A fixed "now" for deterministic timestamps: one day after genesis.
pub const NOW: u64 = 1_700_000_000_000 + 86_400_000;

pub fn chain() -> Chain<MemoryStore> {
    open(MemoryStore::new())
}

pub fn open<S: Store>(store: S) -> Chain<S> {
    open_with(ChainParams::test(), store, Default::default())
}

/// A chain with its own parameters and limits.
pub fn open_with<S: Store>(params: ChainParams, store: S, config: toy_chain::TreeConfig) -> Chain<S> {
    Chain::open(params, store, Arc::new(K256Verifier::new()), Arc::new(SigCache::default()), config)
        .expect("open chain")
}

pub fn wallet(i: usize) -> Keypair {
    ChainParams::dev_wallet(i)
}

pub fn transfer(from: &Keypair, to: Address, amount: u64, fee: u64, nonce: u64) -> Transaction {
    let mut tx = Transaction {
        kind: TxKind::Transfer,
        sender: from.address(),
        recipient: to,
        amount,
        fee,
        nonce,
        signature: Signature::EMPTY,
    };
    from.sign_tx(&mut tx, &ChainParams::test().chain_id());
    tx
}

pub fn mint(authority: &Keypair, to: Address, amount: u64, nonce: u64) -> Transaction {
    let mut tx = Transaction {
        kind: TxKind::Mint,
        sender: authority.address(),
        recipient: to,
        amount,
        fee: 0,
        nonce,
        signature: Signature::EMPTY,
    };
    authority.sign_tx(&mut tx, &ChainParams::test().chain_id());
    tx
}

/// An unmined block on `parent` with `txs`, the right target and a valid
/// timestamp (`slot` ms after the parent), paying `miner` reward + fees.
pub fn unmined<S: Store>(chain: &Chain<S>, parent: Hash, txs: Vec<Transaction>, miner: Address, slot: u64) -> Block {
    let ctx = chain.context_for(&parent, NOW).expect("parent known");
    let parent_ts = chain.header(&parent).expect("parent").timestamp_ms;
    let fees: u64 = txs.iter().map(|t| t.fee).sum();
    Block {
        header: Header {
            version: 1,
            height: ctx.parent_height + 1,
            parent,
            merkle_root: toy_chain::types::merkle_root(txs.iter().map(Transaction::wtxid)),
            timestamp_ms: (parent_ts + slot).max(ctx.median_time_past_ms + 1).max(ctx.min_timestamp_ms),
            target: ctx.expected_target,
            miner,
            reward: chain.params().block_reward + fees,
            nonce: 0,
        },
        txs,
    }
}

/// A mined child of `parent`.
pub fn child<S: Store>(chain: &Chain<S>, parent: Hash, txs: Vec<Transaction>, miner: Address, slot: u64) -> Block {
    mine(unmined(chain, parent, txs, miner, slot))
}

/// Grinds the nonce (test difficulty: a few hundred hashes).
pub fn mine(block: Block) -> Block {
    mine_simple(block).expect("test difficulty")
}

/// A miner address that holds nothing at genesis.
pub fn miner() -> Address {
    Keypair::from_seed(b"test-miner").address()
}

/// A [`Store`] double over [`MemoryStore`] whose writes start failing on
/// command (a full disk, say): every write after the next `n` fails until
/// [`FailingStore::heal`].
#[derive(Debug, Clone, Default)]
pub struct FailingStore {
    pub inner: MemoryStore,
    /// Writes still allowed; `None`: all allowed.
    budget: std::sync::Arc<std::sync::Mutex<Option<usize>>>,
    /// The last durable state while durability is relaxed: what a reopen
    /// returns to, as redb does with writes not yet made durable.
    durable: Option<MemoryStore>,
    /// Durable commits that ended a relaxed stretch (shared by clones).
    pub group_commits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// While set, durable commits fail and ordinary writes go through (a
    /// disk that fails its fsync).
    pub fail_fsync: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FailingStore {
    /// Lets `n` more writes through, then fails every write.
    pub fn fail_after(&self, n: usize) {
        *self.budget.lock().expect("lock") = Some(n);
    }

    /// Writes work again.
    pub fn heal(&self) {
        *self.budget.lock().expect("lock") = None;
    }

    fn write(&self) -> Result<(), toy_chain::StoreError> {
        let mut budget = self.budget.lock().expect("lock");
        match budget.as_mut() {
            None => Ok(()),
            Some(0) => Err(toy_chain::StoreError::Io(std::io::Error::other("disk full (test double)"))),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
        }
    }
}

impl Store for FailingStore {
    fn set_durable(&mut self, durable: bool) -> Result<(), toy_chain::StoreError> {
        if durable {
            // The durable commit is a write, and can fail like one.
            self.write()?;
            if self.fail_fsync.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(toy_chain::StoreError::Io(std::io::Error::other("fsync failed (test double)")));
            }
            if self.durable.take().is_some() {
                self.group_commits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        } else if self.durable.is_none() {
            self.durable = Some(self.inner.clone());
        }
        Ok(())
    }
    fn reopen(&mut self) -> Result<(), toy_chain::StoreError> {
        if let Some(last) = self.durable.take() {
            self.inner = last;
        }
        Ok(())
    }
    fn put_block(&mut self, hash: &Hash, block: &Block) -> Result<(), toy_chain::StoreError> {
        self.write()?;
        self.inner.put_block(hash, block)
    }
    fn delete_block(&mut self, hash: &Hash) -> Result<(), toy_chain::StoreError> {
        self.write()?;
        self.inner.delete_block(hash)
    }
    fn block(&self, hash: &Hash) -> Result<Option<Block>, toy_chain::StoreError> {
        self.inner.block(hash)
    }
    fn headers(&self) -> Result<Vec<Header>, toy_chain::StoreError> {
        self.inner.headers()
    }
    fn connect(
        &mut self,
        hash: &Hash,
        height: u64,
        undo: &toy_chain::Undo,
        accounts: &[toy_chain::store::AccountWrite],
        txs: &[Hash],
    ) -> Result<(), toy_chain::StoreError> {
        self.write()?;
        self.inner.connect(hash, height, undo, accounts, txs)
    }
    fn disconnect(
        &mut self,
        hash: &Hash,
        height: u64,
        parent: &Hash,
        accounts: &[toy_chain::store::AccountWrite],
        txs: &[Hash],
    ) -> Result<(), toy_chain::StoreError> {
        self.write()?;
        self.inner.disconnect(hash, height, parent, accounts, txs)
    }
    fn tx_height(&self, id: &Hash) -> Result<Option<u64>, toy_chain::StoreError> {
        self.inner.tx_height(id)
    }
    fn tip(&self) -> Result<Option<Hash>, toy_chain::StoreError> {
        self.inner.tip()
    }
    fn canonical(&self, height: u64) -> Result<Option<Hash>, toy_chain::StoreError> {
        self.inner.canonical(height)
    }
    fn undo(&self, hash: &Hash) -> Result<Option<toy_chain::Undo>, toy_chain::StoreError> {
        self.inner.undo(hash)
    }
    fn accounts(&self) -> Result<Vec<(Address, toy_chain::Account)>, toy_chain::StoreError> {
        self.inner.accounts()
    }
}
