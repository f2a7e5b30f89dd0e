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
//! A node asks a peer once it first answers `chain:status` (a workshop node
//! never does, and is never asked), a random such peer every
//! [`RECONCILE_EVERY`], and the peer that sent a transaction leaving a nonce
//! gap (the missing nonce is likely in its pool). What it fetches is
//! admitted like gossip (same checks, same per-peer job share; a bad
//! signature costs the peer `InvalidTransaction` and ends the round), earns
//! no eviction protection, and is not gossiped on: every node reconciles
//! with its own peers. A round lasts at most [`RECONCILE_TIME`] and stops at
//! a batch the peer does not serve; ids refused once are not fetched again
//! ([`MAX_REFUSED`]).

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
/// Longest a reconciliation round may run: 30 s (a peer answering slowly
/// holds a slot no longer).
pub const RECONCILE_TIME: Duration = Duration::from_secs(30);
/// Ids of fetched transactions we refused, not fetched again: 4 096, then
/// forgotten all at once (as Bitcoin Core's recent-rejects filter).
pub const MAX_REFUSED: usize = 4_096;

/// How often we ask one peer: 2 at once, then one per 15 s, under what
/// [`MEMPOOL_RATE`] lets a peer ask us, so an honest node never pays a
/// `Spam` point for reconciling (gaps can come in bursts).
pub const OUR_MEMPOOL_RATE: RequestRate = RequestRate { burst: 2.0, per_sec: 1.0 / 15.0 };

/// Peers being reconciled with now (at most [`MAX_RECONCILING`]), our own
/// rate of asking each ([`OUR_MEMPOOL_RATE`]), and the ids refused
/// ([`MAX_REFUSED`]).
#[derive(Debug)]
pub(super) struct Reconciling(Mutex<ReconcileState>);

#[derive(Debug)]
struct ReconcileState {
    running: HashSet<PeerId>,
    rate: PeerBuckets,
    refused: HashSet<Hash>,
}

impl Default for Reconciling {
    fn default() -> Self {
        Self(Mutex::new(ReconcileState {
            running: HashSet::new(),
            rate: PeerBuckets::new(OUR_MEMPOOL_RATE),
            refused: HashSet::new(),
        }))
    }
}

impl Reconciling {
    /// Takes a slot for `peer`: `false` when 4 run, one runs with it, or
    /// asking it now would pass [`OUR_MEMPOOL_RATE`].
    fn start(&self, peer: &PeerId) -> bool {
        let mut st = lock_plain(&self.0);
        if st.running.len() >= MAX_RECONCILING || st.running.contains(peer) || !st.rate.take(peer, 1.0, Instant::now())
        {
            return false;
        }
        st.running.insert(peer.clone());
        true
    }

    fn end(&self, peer: &PeerId) {
        lock_plain(&self.0).running.remove(peer);
    }

    fn refuse(&self, id: Hash) {
        let mut st = lock_plain(&self.0);
        if st.refused.len() >= MAX_REFUSED {
            st.refused.clear();
        }
        st.refused.insert(id);
    }

    fn was_refused(&self, id: &Hash) -> bool {
        lock_plain(&self.0).refused.contains(id)
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
                    c.read(|c| sync::encode_hashes(&c.mempool().ids_by_fee(MAX_MEMPOOL_IDS))).await.ok()
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
    /// [`OUR_MEMPOOL_RATE`] (`Ok(0)` otherwise), each for at most
    /// [`RECONCILE_TIME`].
    ///
    /// # Errors
    /// The peer's failure to answer in time, an answer that does not decode
    /// (charged `ProtocolViolation`), or a transaction with a bad signature
    /// (charged `InvalidTransaction`).
    pub async fn reconcile_with(&self, peer: &PeerId) -> Result<usize, NetworkError> {
        if !self.reconciling.start(peer) {
            return Ok(0);
        }
        self.reconcile_started(peer).await
    }

    /// Runs a round whose slot is taken, and gives the slot back.
    async fn reconcile_started(&self, peer: &PeerId) -> Result<usize, NetworkError> {
        let result = tokio::time::timeout(RECONCILE_TIME, self.reconcile_inner(peer))
            .await
            .unwrap_or_else(|_| Err(peer_error(peer, "reconciliation took too long")));
        self.reconciling.end(peer);
        result
    }

    async fn reconcile_inner(&self, peer: &PeerId) -> Result<usize, NetworkError> {
        let services = self.gossip.peer_services();
        let answer = services.request(peer, MEMPOOL_IDS, Bytes::new()).await?;
        let Some(ids) = sync::decode_hashes(&answer, MAX_MEMPOOL_IDS) else {
            services.report(peer, Misbehaviour::ProtocolViolation);
            return Err(peer_error(peer, "sent a malformed mempool inventory"));
        };
        let ids: Vec<Hash> = ids.into_iter().filter(|id| !self.reconciling.was_refused(id)).collect();
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
            // Nothing served of what it listed (mined meanwhile, or never
            // there): no point asking for the rest.
            if txs.is_empty() {
                break;
            }
            let mut wanted: HashSet<Hash> = batch.iter().copied().collect();
            for tx in txs {
                let id = tx.id();
                // Only what we asked for, each once: anything else is not
                // counted, not admitted.
                if !wanted.remove(&id) {
                    continue;
                }
                match self.on_tx_from(Some(peer.clone()), tx, false).await {
                    Verdict::Accept => admitted += 1,
                    Verdict::Ignore => self.reconciling.refuse(id),
                    Verdict::Reject => {
                        self.reconciling.refuse(id);
                        services.report(peer, Misbehaviour::InvalidTransaction);
                        return Err(peer_error(peer, "served a transaction with a bad signature"));
                    }
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

    /// Reconciles with a random peer that speaks `chain:*` every
    /// [`RECONCILE_EVERY`], until shutdown (peers are also reconciled with
    /// when they first answer `chain:status`, and on a nonce gap).
    pub(super) async fn reconcile_task(self) {
        let mut every = Every::new(RECONCILE_EVERY).await;
        while every.tick(&self.sync.cancel).await {
            let mut peers: Vec<PeerId> =
                self.gossip.peer_services().peers().into_iter().filter(|p| self.silent.has_answered(p)).collect();
            peers.shuffle(&mut rand::thread_rng());
            if let Some(peer) = peers.into_iter().next() {
                self.spawn_reconcile(peer);
            }
        }
    }

    /// Reconciles with `peer` in the background when a slot and our rate
    /// allow (checked here, so no task is spawned otherwise).
    pub(super) fn spawn_reconcile(&self, peer: PeerId) {
        if !self.reconciling.start(&peer) {
            return;
        }
        let n = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = n.sync.cancel.cancelled() => n.reconciling.end(&peer),
                r = n.reconcile_started(&peer) => if let Err(e) = r {
                    tracing::debug!(%peer, "reconciling mempools: {e}");
                },
            }
        });
    }
}

/// Decodes a `chain:txs` answer: at most `max` strictly decoded
/// transactions, in the `chain:blocks` framing.
fn decode_txs(bytes: &[u8], max: usize) -> Option<Vec<Transaction>> {
    sync::decode_framed(bytes, max, MAX_TX_BYTES, Transaction::decode).ok()
}
