//! The chain on the network, over the gossip layer's trait only.
//!
//! | gossip kind | payload | verdict |
//! | --- | --- | --- |
//! | `block` (wire: `gossip:block`, the workshop's `bc:new_block`) | postcard [`Block`] | Accept when connected, reorganised or kept on a side branch; Reject when invalid or undecodable; Ignore otherwise |
//! | `tx` (wire: `gossip:tx`, the workshop's `bc:new_tx`) | postcard [`Transaction`] | Accept when admitted to the mempool; Reject for a bad signature, an unauthorised mint or an overflow; Ignore otherwise |
//! | search `block` | the 32-byte block hash | the postcard block |
//!
//! A block whose parent is unknown waits in the orphan pool while its
//! ancestors are fetched through `search:block`, one at a time, until the
//! branch connects. Announcing the tip when a peer connects
//! ([`ChainNode::announce_tip`]) lets either side catch up the same way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use toy_gossip::{Flow, GossipNetwork, Verdict, answerer_fn, gossip_handler_fn};

use crate::mempool::MempoolError;
use crate::store::Store;
use crate::tree::{Chain, InsertOutcome, now_ms};
use crate::types::{Block, Hash, Transaction};

/// Blocks fetched backwards through search before giving up on a branch.
pub const MAX_FETCH_DEPTH: usize = 10_000;
/// How long one `search:block` waits for an answer.
pub const SEARCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A chain shared between the network handlers, the miner and the program.
pub type SharedChain<S> = Arc<Mutex<Chain<S>>>;

/// Locks a shared chain (a poisoned lock is recovered: the chain's own
/// invariants do not depend on the panicking holder).
pub fn lock<S: Store>(chain: &SharedChain<S>) -> std::sync::MutexGuard<'_, Chain<S>> {
    chain.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a network operation of the chain failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// The gossip layer refused.
    #[error(transparent)]
    Gossip(#[from] toy_gossip::Error),
    /// The mempool refused a local transaction.
    #[error(transparent)]
    Mempool(#[from] MempoolError),
    /// The chain's storage failed.
    #[error(transparent)]
    Chain(#[from] crate::error::ChainError),
    /// A blocking task was cancelled.
    #[error("chain task cancelled")]
    Cancelled,
}

/// The chain attached to a gossip network.
pub struct ChainNode<S: Store, G: GossipNetwork + ?Sized> {
    chain: SharedChain<S>,
    gossip: Arc<G>,
    fetching: Arc<AtomicBool>,
}

impl<S: Store, G: GossipNetwork + ?Sized> Clone for ChainNode<S, G> {
    fn clone(&self) -> Self {
        Self { chain: self.chain.clone(), gossip: self.gossip.clone(), fetching: self.fetching.clone() }
    }
}

impl<S: Store, G: GossipNetwork + ?Sized> ChainNode<S, G> {
    /// Registers the chain's gossip handlers and search answerer on `gossip`.
    ///
    /// # Errors
    /// When the `block` or `tx` kinds are already registered.
    pub fn install(chain: SharedChain<S>, gossip: Arc<G>) -> Result<Self, NetworkError> {
        let node = Self { chain, gossip, fetching: Arc::new(AtomicBool::new(false)) };
        let n = node.clone();
        node.gossip.register_handler(
            "block",
            gossip_handler_fn(move |_, bytes| {
                let n = n.clone();
                async move { n.on_block(bytes).await }
            }),
        )?;
        let n = node.clone();
        node.gossip.register_handler(
            "tx",
            gossip_handler_fn(move |_, bytes| {
                let n = n.clone();
                async move { n.on_tx(bytes).await }
            }),
        )?;
        let c = node.chain.clone();
        node.gossip.register_search_answerer(
            "block",
            answerer_fn(move |query| {
                let c = c.clone();
                async move {
                    let hash = Hash(query.as_ref().try_into().ok()?);
                    let block = lock(&c).block(&hash).ok()??;
                    Some(Bytes::from(block.encode()))
                }
            }),
        )?;
        Ok(node)
    }

    /// The shared chain.
    pub fn chain(&self) -> &SharedChain<S> {
        &self.chain
    }

    /// Inserts off the async runtime (signature checks and disk writes block).
    async fn insert(&self, block: Block) -> Result<InsertOutcome, NetworkError> {
        let c = self.chain.clone();
        tokio::task::spawn_blocking(move || lock(&c).insert(block))
            .await
            .map_err(|_| NetworkError::Cancelled)?
            .map_err(Into::into)
    }

    async fn on_block(&self, bytes: Bytes) -> Verdict {
        let Ok(block) = Block::decode(&bytes) else { return Verdict::Reject };
        match self.insert(block).await {
            Ok(
                InsertOutcome::Connected { .. } | InsertOutcome::Reorganised { .. } | InsertOutcome::SideBranch { .. },
            ) => Verdict::Accept,
            Ok(InsertOutcome::Orphan { missing_parent }) => {
                self.fetch_ancestors(missing_parent);
                Verdict::Ignore
            }
            Ok(InsertOutcome::Invalid { reason }) => {
                tracing::info!(%reason, "invalid block from the network");
                Verdict::Reject
            }
            Ok(InsertOutcome::Duplicate) => Verdict::Ignore,
            Err(e) => {
                tracing::error!("block import failed: {e}");
                Verdict::Ignore
            }
        }
    }

    async fn on_tx(&self, bytes: Bytes) -> Verdict {
        let Ok(tx) = Transaction::decode(&bytes) else { return Verdict::Reject };
        let c = self.chain.clone();
        match tokio::task::spawn_blocking(move || lock(&c).add_tx(tx, now_ms())).await {
            Ok(Ok(_)) => Verdict::Accept,
            Ok(Err(MempoolError::BadSignature | MempoolError::UnauthorisedMint | MempoolError::Overflow)) => {
                Verdict::Reject
            }
            _ => Verdict::Ignore,
        }
    }

    /// Imports a block mined here and announces it.
    ///
    /// # Errors
    /// Storage failures, or the gossip layer's.
    pub async fn submit_block(&self, block: Block) -> Result<InsertOutcome, NetworkError> {
        let encoded = Bytes::from(block.encode());
        let outcome = self.insert(block).await?;
        if matches!(outcome, InsertOutcome::Connected { .. } | InsertOutcome::Reorganised { .. }) {
            self.gossip.broadcast("block", encoded)?;
        }
        Ok(outcome)
    }

    /// Admits a local transaction to the mempool and announces it.
    ///
    /// # Errors
    /// The mempool's reason for refusing it.
    pub async fn submit_tx(&self, tx: Transaction) -> Result<Hash, NetworkError> {
        let encoded = Bytes::from(tx.encode());
        let c = self.chain.clone();
        let id = tokio::task::spawn_blocking(move || lock(&c).add_tx(tx, now_ms()))
            .await
            .map_err(|_| NetworkError::Cancelled)??;
        self.gossip.broadcast("tx", encoded)?;
        Ok(id)
    }

    /// Announces the tip block, so peers behind us fetch what they miss.
    ///
    /// # Errors
    /// Storage or gossip failures.
    pub fn announce_tip(&self) -> Result<(), NetworkError> {
        let block = {
            let c = lock(&self.chain);
            c.block(&c.tip().hash).map_err(crate::error::ChainError::from)?
        };
        if let Some(b) = block.filter(|b| b.header.height > 0) {
            self.gossip.broadcast("block", Bytes::from(b.encode()))?;
        }
        Ok(())
    }

    /// Fetches `missing` and its ancestors through `search:block` until the
    /// branch connects; one fetch at a time, at most [`MAX_FETCH_DEPTH`].
    fn fetch_ancestors(&self, missing: Hash) {
        if self.fetching.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut want = Some(missing);
            let mut depth = 0usize;
            let started = std::time::Instant::now();
            while let Some(hash) = want.take() {
                depth += 1;
                if depth > MAX_FETCH_DEPTH || lock(&this.chain).contains(&hash) {
                    break;
                }
                let mut found: Option<Block> = None;
                let _ = this
                    .gossip
                    .search("block", Bytes::copy_from_slice(&hash.0), SEARCH_TIMEOUT, &mut |answer| match answer
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
                let Some(block) = found else {
                    tracing::debug!(%hash, "no peer answered for a missing block");
                    break;
                };
                if let Ok(InsertOutcome::Orphan { missing_parent }) = this.insert(block).await {
                    want = Some(missing_parent);
                }
                if depth.is_multiple_of(100) {
                    let rate = depth as f64 / started.elapsed().as_secs_f64().max(1e-3);
                    tracing::info!(fetched = depth, rate = format!("{rate:.0} blocks/s"), "catching up");
                }
            }
            this.fetching.store(false, Ordering::Release);
        });
    }
}
