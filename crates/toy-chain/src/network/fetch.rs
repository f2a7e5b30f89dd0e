//! Fetching the ancestors of an orphan (from its announcer, then by
//! search), and the watch that reopens a failed store.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::*;

impl<S: Store, G: GossipNetwork + ?Sized> ChainNode<S, G> {
    /// Fetches `missing` and its ancestors until the branch connects: from
    /// `announcer` by direct request while it has them, then through
    /// `search:block`. One fetch at a time, at most [`MAX_FETCH_DEPTH`]
    /// blocks and [`MAX_FETCH_TIME`], ended by [`ChainNode::shutdown`]. An announcer that sends a
    /// block we did not ask for, or an invalid one, is reported.
    pub(super) fn fetch_ancestors(&self, missing: Hash, announcer: Option<PeerId>) {
        if self.fetching.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut direct = announcer;
            let mut want = Some(missing);
            let mut depth = 0usize;
            let started = std::time::Instant::now();
            while let Some(hash) = want.take() {
                depth += 1;
                // Stopped by shutdown between requests (each waits at most
                // SEARCH_TIMEOUT).
                if this.sync.cancel.is_cancelled()
                    || depth > MAX_FETCH_DEPTH
                    || this.chain.read(move |c| c.contains(&hash)).await.unwrap_or(true)
                {
                    break;
                }
                if started.elapsed() > MAX_FETCH_TIME {
                    tracing::info!(fetched = depth - 1, "ancestor fetch out of time; sync takes over");
                    this.sync.wake.notify_one();
                    break;
                }
                let mut found: Option<(Block, Option<PeerId>)> = None;
                if let Some(peer) = direct.clone() {
                    match this.fetch_direct(&peer, hash).await {
                        Ok(Some(block)) => found = Some((block, Some(peer))),
                        Ok(None) => direct = None,
                        Err(e) => {
                            tracing::info!("{e}");
                            direct = None;
                        }
                    }
                }
                if found.is_none() {
                    found = this.search_block(hash).await.map(|b| (b, None));
                }
                let Some((block, source)) = found else {
                    tracing::debug!(%hash, "no peer answered for a missing block");
                    break;
                };
                // Asked for: taken at any depth, like a sync's blocks.
                let outcome = this.chain.insert_requested(block, source.as_ref().map(|p| p.0.clone())).await;
                match outcome {
                    Ok(InsertOutcome::Orphan { missing_parent }) => want = Some(missing_parent),
                    Ok(InsertOutcome::Invalid { reason } | InsertOutcome::Malformed { reason }) => {
                        // Only a direct answer has a known sender to blame.
                        if let Some(peer) = source {
                            this.gossip.peer_services().report(&peer, Misbehaviour::InvalidBlock);
                        }
                        tracing::info!(%reason, "an ancestor fetched for an orphan is invalid");
                    }
                    _ => {}
                }
                if depth.is_multiple_of(100) {
                    let rate = depth as f64 / started.elapsed().as_secs_f64().max(1e-3);
                    tracing::info!(fetched = depth, rate = format!("{rate:.0} blocks/s"), "catching up");
                }
            }
            this.fetching.store(false, Ordering::Release);
        });
    }

    /// Asks `peer` for the block `hash` (`chain:blocks` with one hash).
    /// `Ok(None)` when it does not have it or does not answer in time.
    ///
    /// # Errors
    /// An answer that is malformed or is another block (the peer is
    /// reported).
    pub(super) async fn fetch_direct(&self, peer: &PeerId, hash: Hash) -> Result<Option<Block>, NetworkError> {
        let request = self.gossip.peer_services().request(peer, sync::BLOCKS, sync::encode_hashes(&[hash]));
        let Ok(Ok(answer)) = tokio::time::timeout(DIRECT_FETCH_TIMEOUT, request).await else {
            return Ok(None);
        };
        let mut blocks = match sync::decode_blocks(&answer, 1) {
            Ok(b) => b,
            Err(e) => {
                self.gossip.peer_services().report(peer, Misbehaviour::MalformedMessage);
                return Err(peer_error(peer, format!("malformed block: {e}")));
            }
        };
        match blocks.pop() {
            None => Ok(None),
            Some(b) if b.hash() == hash => Ok(Some(b)),
            Some(_) => {
                self.gossip.peer_services().report(peer, Misbehaviour::ProtocolViolation);
                Err(peer_error(peer, "sent a block we did not ask for"))
            }
        }
    }

    /// Looks for the block `hash` through `search:block`.
    pub(super) async fn search_block(&self, hash: Hash) -> Option<Block> {
        let mut found: Option<Block> = None;
        let _ = self
            .gossip
            .search(SEARCH_BLOCK, Bytes::copy_from_slice(&hash.0), SEARCH_TIMEOUT, &mut |answer| match answer
                .and_then(|a| Block::decode(&a).ok())
                .filter(|b| b.hash() == hash)
            {
                Some(b) => {
                    found = Some(b);
                    Flow::Done
                }
                None => Flow::Continue,
            })
            .await;
        found
    }

    /// The background task: a resolve when a peer connects, when woken, and
    /// every [`SYNC_INTERVAL`]; ends on [`ChainNode::shutdown`] (or if the
    /// gossip layer's peer events end).
    /// After a storage failure, tries every [`STORE_RETRY`] to reopen the
    /// store ([`Chain::recover_store`]); once it works, syncs what was missed.
    pub(super) async fn store_watch(self) {
        let mut interval = tokio::time::interval(STORE_RETRY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.sync.cancel.cancelled() => return,
                _ = interval.tick() => {}
            }
            if self.chain.snapshot().store_failure.is_none() {
                continue;
            }
            match self.chain.recover_store().await {
                Ok(true) => self.sync.wake.notify_one(),
                Ok(false) => {}
                Err(crate::error::ChainError::Stopped) => return,
                Err(e) => tracing::debug!("store still failing: {e}"),
            }
        }
    }
}
