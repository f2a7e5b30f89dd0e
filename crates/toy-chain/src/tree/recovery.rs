//! When the store fails: recording the failure, reopening the store,
//! reloading the chain from it, and the guard that restores durability
//! after a sync batch.

use std::collections::{HashMap, HashSet};

use super::*;

impl<S: Store> Chain<S> {
    /// Remembers a storage failure (logged once until recovered).
    pub(super) fn note_store_failure(&mut self, e: &StoreError) {
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

    /// Rebuilds index, best chain and state from the store (after it lost
    /// writes), keeps what the mempool still admits, and publishes the tip.
    pub(super) fn reload_from_store(&mut self, tip: Hash) -> Result<(), ChainError> {
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
    pub(super) fn reload(&mut self, tip: Hash, genesis_hash: Hash) -> Result<(), ChainError> {
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
}

/// Keeps the store's durability relaxed while it lives; restores it when
/// dropped (also on panic), so relaxed durability never outlives a batch.
/// When the chain's owner already holds durability relaxed
/// ([`Chain::relax_durability`]), the guard leaves it so: the owner's own
/// durable commit covers the batch.
pub(super) struct RelaxedDurability<'a, S: Store> {
    pub(super) chain: &'a mut Chain<S>,
    /// Whether this guard relaxed durability (and must restore it).
    owned: bool,
}

impl<'a, S: Store> RelaxedDurability<'a, S> {
    pub(super) fn new(chain: &'a mut Chain<S>) -> Self {
        Self { chain, owned: false }
    }

    /// Relaxes durability unless the owner already has.
    pub(super) fn relax(&mut self) -> Result<(), StoreError> {
        if !self.chain.relaxed {
            self.chain.store.set_durable(false)?;
            self.owned = true;
        }
        Ok(())
    }

    /// Restores durability now if this guard relaxed it, reporting a failed
    /// final commit.
    pub(super) fn restore(&mut self) -> Result<(), StoreError> {
        if !std::mem::take(&mut self.owned) {
            return Ok(());
        }
        self.chain.store.set_durable(true)
    }
}

impl<S: Store> Drop for RelaxedDurability<'_, S> {
    fn drop(&mut self) {
        if self.owned
            && let Err(e) = self.chain.store.set_durable(true)
        {
            tracing::error!("restoring durability after a batch failed: {e}");
        }
    }
}
