//! The in-memory store, for tests and simulations.

use std::collections::{BTreeMap, HashMap};

use super::{AccountWrite, Store};
use crate::error::StoreError;
use crate::state::{Account, Undo};
use crate::types::{Address, Block, Hash, Header};

/// A [`Store`] in memory. Nothing survives the process.
///
/// Bounded like the chain it holds: blocks are removed when the block tree
/// prunes them, and the transaction index holds the canonical chain's
/// transactions only.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    blocks: HashMap<Hash, Block>,
    canonical: BTreeMap<u64, Hash>,
    txs: HashMap<Hash, u64>,
    undo: HashMap<Hash, Undo>,
    accounts: HashMap<Address, Account>,
    tip: Option<Hash>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn write_accounts(map: &mut HashMap<Address, Account>, accounts: &[AccountWrite]) {
    for (addr, acc) in accounts {
        match acc {
            Some(a) => {
                map.insert(*addr, *a);
            }
            None => {
                map.remove(addr);
            }
        }
    }
}

impl Store for MemoryStore {
    fn put_block(&mut self, hash: &Hash, block: &Block) -> Result<(), StoreError> {
        self.blocks.entry(*hash).or_insert_with(|| block.clone());
        Ok(())
    }

    fn delete_block(&mut self, hash: &Hash) -> Result<(), StoreError> {
        self.blocks.remove(hash);
        Ok(())
    }

    fn block(&self, hash: &Hash) -> Result<Option<Block>, StoreError> {
        Ok(self.blocks.get(hash).cloned())
    }

    fn headers(&self) -> Result<Vec<Header>, StoreError> {
        Ok(self.blocks.values().map(|b| b.header.clone()).collect())
    }

    fn connect(
        &mut self,
        hash: &Hash,
        height: u64,
        undo: &Undo,
        accounts: &[AccountWrite],
        txs: &[Hash],
    ) -> Result<(), StoreError> {
        self.canonical.insert(height, *hash);
        self.txs.extend(txs.iter().map(|id| (*id, height)));
        self.undo.insert(*hash, undo.clone());
        write_accounts(&mut self.accounts, accounts);
        self.tip = Some(*hash);
        Ok(())
    }

    fn disconnect(
        &mut self,
        hash: &Hash,
        height: u64,
        parent: &Hash,
        accounts: &[AccountWrite],
        txs: &[Hash],
    ) -> Result<(), StoreError> {
        self.canonical.remove(&height);
        for id in txs {
            self.txs.remove(id);
        }
        self.undo.remove(hash);
        write_accounts(&mut self.accounts, accounts);
        self.tip = Some(*parent);
        Ok(())
    }

    fn tip(&self) -> Result<Option<Hash>, StoreError> {
        Ok(self.tip)
    }

    fn canonical(&self, height: u64) -> Result<Option<Hash>, StoreError> {
        Ok(self.canonical.get(&height).copied())
    }

    fn undo(&self, hash: &Hash) -> Result<Option<Undo>, StoreError> {
        Ok(self.undo.get(hash).cloned())
    }

    fn tx_height(&self, id: &Hash) -> Result<Option<u64>, StoreError> {
        Ok(self.txs.get(id).copied())
    }

    fn accounts(&self) -> Result<Vec<(Address, Account)>, StoreError> {
        Ok(self.accounts.iter().map(|(a, v)| (*a, *v)).collect())
    }
}
