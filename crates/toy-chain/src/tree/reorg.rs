//! Moving the best chain: connecting and disconnecting blocks, reorganising
//! to the branch with the most valid work, forgetting what is invalid or
//! too old (pruning).

use std::collections::{HashMap, HashSet};

use super::*;

impl<S: Store> Chain<S> {
    /// The indexed node with the most work, if it has more than the tip
    /// (first seen on ties: the current tip wins unless strictly beaten).
    /// [`Chain::open`] makes the same choice.
    pub(super) fn best_candidate(&self) -> Option<Hash> {
        let tip = self.tip();
        self.index.iter().filter(|(_, n)| n.work > tip.work).max_by_key(|(_, n)| n.work).map(|(h, _)| *h)
    }

    /// Undoes the tip. On a storage failure the state is put back and
    /// nothing changed.
    pub(super) fn disconnect_tip(&mut self) -> Result<Block, ChainError> {
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
    pub(super) fn connect_block(&mut self, hash: Hash) -> Result<Result<Block, BlockError>, ChainError> {
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
    pub(super) fn branch_to(&self, tip: Hash) -> Result<(u64, Vec<Hash>), ChainError> {
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
    pub(super) fn reorganise(&mut self, new_tip: Hash) -> Result<InsertOutcome, ChainError> {
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
    pub(super) fn reorganise_steps(
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
    pub(super) fn forget_descendants(&mut self, root: Hash) {
        for h in self.drop_descendants(root) {
            self.invalid.insert(h);
        }
    }

    /// Drops `root` and its side-branch descendants from the index and the
    /// store; returns them.
    pub(super) fn drop_descendants(&mut self, root: Hash) -> Vec<Hash> {
        self.drop_all_descendants(vec![root])
    }

    /// [`Chain::drop_descendants`] for several roots at once, in time linear
    /// in the side set.
    pub(super) fn drop_all_descendants(&mut self, roots: Vec<Hash>) -> Vec<Hash> {
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
    pub(super) fn prune(&mut self) {
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
pub(super) fn check_body_again(
    block: &Block,
    params: &ChainParams,
    verifier: &dyn crate::crypto::Verifier,
    sigs: &SigCache,
) -> Result<(), BlockError> {
    check_standalone(block, params)?;
    check_signatures(block, params, verifier, sigs)
}
