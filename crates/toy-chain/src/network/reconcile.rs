//! Mempool reconciliation: peers tell each other the ids of the
//! transactions they hold, and fetch the ones they miss.
//!
//! Flood gossip can lose a transaction (a message shed under load, a peer
//! that connected a moment later), and nothing else repairs it: the
//! sender's later nonces then wait behind the missing one for ever. Real
//! nodes reconcile: Bitcoin Core answers BIP 35's `mempool` with an
//! inventory and serves `getdata`; Ethereum's eth/68 announces pooled
//! transaction hashes to new peers and serves `GetPooledTransactions`. Here:
//!
//! | kind | request | response |
//! | --- | --- | --- |
//! | [`MEMPOOL_IDS`] `chain:mempool` | empty | up to [`MAX_MEMPOOL_IDS`] ids, `n × 32` bytes, highest fee first |
//! | [`GET_TXS`] `chain:txs` | up to [`MAX_GET_TXS`] ids | the transactions held among them, length-prefixed (the `chain:blocks` framing) |
//!
//! A node asks a peer when it connects, a random peer every
//! [`RECONCILE_EVERY`], and the peer that sent a transaction leaving a nonce
//! gap (the missing nonce is likely in its pool). What it fetches is
//! admitted like gossip (same checks, same penalties, same per-peer job
//! share) and is not gossiped on: every node reconciles with its own peers.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::seq::SliceRandom;

use super::*;
use crate::types::MAX_TX_BYTES;

/// Request kind: the ids in the peer's mempool.
pub const MEMPOOL_IDS: &str = "chain:mempool";
/// Request kind: transactions by id.
pub const GET_TXS: &str = "chain:txs";
/// Most ids in one `chain:mempool` answer: 4 096 (128 KiB; the highest
/// fees first, as a block template takes them).
pub const MAX_MEMPOOL_IDS: usize = 4_096;
/// Most ids in one `chain:txs` request: 256.
pub const MAX_GET_TXS: usize = 256;
/// How often a node reconciles with one random peer: every 60 s.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(60);
/// `chain:mempool` requests one peer may make: 4 at once, then one every
/// 10 s (an answer costs us a pass over the mempool). Past it: unanswered,
/// and a `Spam` point.
pub const MEMPOOL_RATE: RequestRate = RequestRate { burst: 4.0, per_sec: 0.1 };
/// `chain:txs` requests one peer may make: 32 at once, then 4 a second.
pub const GET_TXS_RATE: RequestRate = RequestRate { burst: 32.0, per_sec: 4.0 };
/// Reconciliations running at once: 4 (more peers wait for the next round).
pub const MAX_RECONCILING: usize = 4;

/// How often we ask one peer: 2 at once, then one per 15 s, under what
/// [`MEMPOOL_RATE`] lets a peer ask us, so an honest node never pays a
/// `Spam` point for reconciling (gaps can come in bursts).
pub const OUR_MEMPOOL_RATE: RequestRate = RequestRate { burst: 2.0, per_sec: 1.0 / 15.0 };

/// Peers being reconciled with now (at most [`MAX_RECONCILING`]), and our
/// own rate of asking each ([`OUR_MEMPOOL_RATE`]).
#[derive(Debug)]
pub(super) struct Reconciling(Mutex<(HashSet<PeerId>, PeerBuckets)>);

impl Default for Reconciling {
    fn default() -> Self {
        Self(Mutex::new((HashSet::new(), PeerBuckets::new(OUR_MEMPOOL_RATE))))
    }
}

impl<S: Store, G: GossipNetwork + ?Sized> ChainNode<S, G> {
    /// Serves `chain:mempool` and `chain:txs`, each rationed per peer.
    pub(super) fn install_reconcile_handlers(&self) -> Result<(), NetworkError> {
        let c = self.chain.clone();
        let stats = self.stats.clone();
        let g = self.gossip.clone();
        let budget = Arc::new(Mutex::new(PeerBuckets::new(MEMPOOL_RATE)));
        let jobs = self.peer_jobs.clone();
        self.gossip.peer_services().register_request_handler(
            MEMPOOL_IDS,
            peer_handler_fn(move |peer, _| {
                stats.bump("messages", MEMPOOL_IDS);
                let allowed = within_budget(&*g, &stats, &budget, &peer, MEMPOOL_IDS, 1.0);
                let (c, jobs) = (c.clone(), jobs.clone());
                async move {
                    if !allowed {
                        return None;
                    }
                    let _job = PeerJobs::enter(&jobs, &peer).await;
                    c.read(|c| {
                        let mut by_fee: Vec<(u64, Hash)> = c.mempool().iter().map(|(id, tx)| (tx.fee, *id)).collect();
                        by_fee.sort_unstable_by(|a, b| b.cmp(a));
                        let ids: Vec<Hash> = by_fee.into_iter().take(MAX_MEMPOOL_IDS).map(|(_, id)| id).collect();
                        sync::encode_hashes(&ids)
                    })
                    .await
                    .ok()
                }
            }),
        )?;
        let c = self.chain.clone();
        let stats = self.stats.clone();
        let g = self.gossip.clone();
        let budget = Arc::new(Mutex::new(PeerBuckets::new(GET_TXS_RATE)));
        let jobs = self.peer_jobs.clone();
        self.gossip.peer_services().register_request_handler(
            GET_TXS,
            peer_handler_fn(move |peer, payload| {
                stats.bump("messages", GET_TXS);
                let ids = sync::decode_hashes(&payload, MAX_GET_TXS);
                if ids.is_none() {
                    stats.bump("requests_refused", "Malformed");
                    g.peer_services().report(&peer, Misbehaviour::ProtocolViolation);
                }
                let ids = ids.filter(|_| within_budget(&*g, &stats, &budget, &peer, GET_TXS, 1.0));
                let (c, jobs) = (c.clone(), jobs.clone());
                async move {
                    let ids = ids?;
                    let _job = PeerJobs::enter(&jobs, &peer).await;
                    c.read(move |c| {
                        let mut seen = HashSet::new();
                        let txs = ids
                            .iter()
                            .filter(|id| seen.insert(**id))
                            .filter_map(|id| c.mempool().get(id).map(Transaction::encode));
                        sync::encode_blocks(txs)
                    })
                    .await
                    .ok()
                }
            }),
        )?;
        Ok(())
    }

    /// Asks `peer` for its mempool's ids and fetches the transactions we
    /// lack; returns how many of them were admitted. At most
    /// [`MAX_RECONCILING`] run at once, one per peer, each peer asked within
    /// [`OUR_MEMPOOL_RATE`] (`Ok(0)` otherwise).
    ///
    /// # Errors
    /// The peer's failure to answer, or an answer that does not decode (it
    /// is then charged a `ProtocolViolation`).
    pub async fn reconcile_with(&self, peer: &PeerId) -> Result<usize, NetworkError> {
        {
            let mut guard = lock_plain(&self.reconciling.0);
            let (running, rate) = &mut *guard;
            if running.len() >= MAX_RECONCILING || running.contains(peer) || !rate.take(peer, 1.0, Instant::now()) {
                return Ok(0);
            }
            running.insert(peer.clone());
        }
        let result = self.reconcile_inner(peer).await;
        lock_plain(&self.reconciling.0).0.remove(peer);
        result
    }

    async fn reconcile_inner(&self, peer: &PeerId) -> Result<usize, NetworkError> {
        let services = self.gossip.peer_services();
        let answer = services.request(peer, MEMPOOL_IDS, Bytes::new()).await?;
        let Some(ids) = sync::decode_hashes(&answer, MAX_MEMPOOL_IDS) else {
            services.report(peer, Misbehaviour::ProtocolViolation);
            return Err(peer_error(peer, "sent a malformed mempool inventory"));
        };
        let missing: Vec<Hash> = self
            .chain
            .read(move |c| {
                let mut seen = HashSet::new();
                ids.into_iter().filter(|id| seen.insert(*id) && !c.mempool().contains(id)).collect()
            })
            .await?;
        let mut admitted = 0;
        for batch in missing.chunks(MAX_GET_TXS) {
            let answer = services.request(peer, GET_TXS, sync::encode_hashes(batch)).await?;
            let Some(txs) = decode_txs(&answer, batch.len()) else {
                services.report(peer, Misbehaviour::ProtocolViolation);
                return Err(peer_error(peer, "sent malformed transactions"));
            };
            let wanted: HashSet<Hash> = batch.iter().copied().collect();
            for tx in txs {
                // Only what we asked for: anything else is not counted,
                // not admitted.
                if !wanted.contains(&tx.id()) {
                    continue;
                }
                if self.on_tx_from(Some(peer.clone()), tx).await == Verdict::Accept {
                    admitted += 1;
                }
            }
        }
        if admitted > 0 {
            for _ in 0..admitted {
                self.stats.bump("txs_reconciled", "fetched");
            }
            tracing::debug!(%peer, admitted, "transactions fetched by reconciling mempools");
        }
        Ok(admitted)
    }

    /// Reconciles with each peer as it connects and with a random peer
    /// every [`RECONCILE_EVERY`], until shutdown.
    pub(super) async fn reconcile_task(self) {
        let mut events = self.gossip.peer_services().subscribe();
        let mut interval = tokio::time::interval(RECONCILE_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            let peer = tokio::select! {
                () = self.sync.cancel.cancelled() => return,
                _ = interval.tick() => {
                    let mut peers = self.gossip.peer_services().peers();
                    peers.shuffle(&mut rand::thread_rng());
                    peers.into_iter().next()
                }
                ev = events.recv() => match ev {
                    Ok(PeerEvent::Added(peer)) => Some(peer),
                    Ok(_) => None,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            };
            if let Some(peer) = peer {
                self.spawn_reconcile(peer);
            }
        }
    }

    /// Reconciles with `peer` in the background, unless it is silent (a
    /// workshop node does not know `chain:*`).
    pub(super) fn spawn_reconcile(&self, peer: PeerId) {
        if self.silent.is_silent(&peer, Instant::now()) {
            return;
        }
        let n = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = n.sync.cancel.cancelled() => {}
                r = n.reconcile_with(&peer) => if let Err(e) = r {
                    tracing::debug!(%peer, "reconciling mempools: {e}");
                },
            }
        });
    }
}

/// Decodes a `chain:txs` answer: at most `max` strictly decoded
/// transactions.
fn decode_txs(mut bytes: &[u8], max: usize) -> Option<Vec<Transaction>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if out.len() == max {
            return None;
        }
        let (len, rest) = bytes.split_at_checked(4)?;
        let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
        if len > MAX_TX_BYTES {
            return None;
        }
        let (tx, rest) = rest.split_at_checked(len)?;
        out.push(Transaction::decode(tx).ok()?);
        bytes = rest;
    }
    Some(out)
}
