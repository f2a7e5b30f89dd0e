//! Persistence: the [`Store`] trait, an in-memory store and a redb store.
//!
//! A store keeps every block it was given (any branch), the header of each,
//! the canonical index (height → hash), the transaction index (id → height
//! of the canonical block holding it), the account state at the tip, the
//! undo data of every canonical block, and the tip. [`Store::connect`] and
//! [`Store::disconnect`] each commit atomically, so after a crash at any
//! moment the tip, the state and the canonical index agree.

mod memory;
mod redb_store;

pub use memory::MemoryStore;
pub use redb_store::RedbStore;

use crate::error::StoreError;
use crate::state::{Account, Undo};
use crate::types::{Address, Block, Hash, Header};

/// One account write: the new value, or `None` to delete the account.
pub type AccountWrite = (Address, Option<Account>);

/// Storage of the chain. Implementations must make [`Store::connect`] and
/// [`Store::disconnect`] atomic.
pub trait Store: Send + 'static {
    /// Saves a block and its header (idempotent). Not yet canonical.
    fn put_block(&mut self, hash: &Hash, block: &Block) -> Result<(), StoreError>;

    /// Deletes a block that is not canonical (a pruned side branch).
    fn delete_block(&mut self, hash: &Hash) -> Result<(), StoreError>;

    /// A stored block.
    fn block(&self, hash: &Hash) -> Result<Option<Block>, StoreError>;

    /// Every stored header (to rebuild the block index on open).
    fn headers(&self) -> Result<Vec<Header>, StoreError>;

    /// Atomically makes `hash` the tip at `height`: records it in the
    /// canonical index, indexes its transactions (`txs`, their ids) at
    /// `height`, saves its undo data and writes the accounts.
    fn connect(
        &mut self,
        hash: &Hash,
        height: u64,
        undo: &Undo,
        accounts: &[AccountWrite],
        txs: &[Hash],
    ) -> Result<(), StoreError>;

    /// Atomically removes the tip `hash` at `height`: the tip becomes
    /// `parent`, the canonical entry, the index entries of its transactions
    /// (`txs`) and its undo data go, the accounts are written back.
    fn disconnect(
        &mut self,
        hash: &Hash,
        height: u64,
        parent: &Hash,
        accounts: &[AccountWrite],
        txs: &[Hash],
    ) -> Result<(), StoreError>;

    /// The height of the canonical block holding transaction `id`.
    fn tx_height(&self, id: &Hash) -> Result<Option<u64>, StoreError>;

    /// The tip, if the store is not empty.
    fn tip(&self) -> Result<Option<Hash>, StoreError>;

    /// The canonical block hash at `height`.
    fn canonical(&self, height: u64) -> Result<Option<Hash>, StoreError>;

    /// The undo data of a canonical block.
    fn undo(&self, hash: &Hash) -> Result<Option<Undo>, StoreError>;

    /// Every account at the tip.
    fn accounts(&self) -> Result<Vec<(Address, Account)>, StoreError>;

    /// Relaxes (`false`) or restores (`true`) durability. While relaxed,
    /// writes stay atomic and in order, but a crash may lose those since the
    /// last durable point (the chain then reopens at an earlier, consistent
    /// tip); restoring makes everything written so far durable. The default
    /// is a no-op: always durable (or never, in memory).
    ///
    /// # Errors
    /// When the final durable commit fails.
    fn set_durable(&mut self, durable: bool) -> Result<(), StoreError> {
        let _ = durable;
        Ok(())
    }

    /// Closes and reopens the underlying storage after a failure (a full
    /// disk leaves redb refusing every write until it is reopened). What was
    /// committed before the failure is what the store holds afterwards. The
    /// default does nothing: in-memory stores have nothing to reopen.
    ///
    /// # Errors
    /// When the storage cannot be opened again (the store then refuses
    /// every operation until a later reopen succeeds).
    fn reopen(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(any(test, feature = "test-utils"))]
pub mod conformance;
