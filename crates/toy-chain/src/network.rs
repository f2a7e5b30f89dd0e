//! The chain on the network, over the gossip layer's trait only.
//!
//! | gossip kind | payload | verdict |
//! | --- | --- | --- |
//! | [`NEW_BLOCK`] = `bc:new_block` (wire: `gossip:bc:new_block`) | postcard [`Block`] | Accept when connected or reorganised to (fully validated); Reject when invalid, malformed or undecodable; Ignore otherwise (a duplicate, an orphan, a timestamp ahead of our clock, a light fork below the prune depth) — a block kept on a side branch is not forwarded, since its state transition is only checked if that branch ever becomes the best |
//! | [`NEW_TX`] = `bc:new_tx` (wire: `gossip:bc:new_tx`) | postcard [`Transaction`] | Accept when admitted to the mempool; Reject for a bad signature, an unauthorised mint or an overflow; Ignore otherwise |
//! | search [`SEARCH_BLOCK`] = `block` (wire: `gossip:search:block`, answers `search_response:block`) | the 32-byte block hash | the postcard block |
//!
//! Direct requests ([`crate::sync`]): `chain:status`, `chain:hashes` and
//! `chain:blocks`, answered for every peer.
//!
//! Sync: when a peer connects, when a block arrives whose parent is unknown,
//! every 30 s, and on [`ChainNode::resolve`], a sync round asks each peer for
//! its tip and work and downloads what we miss from the peers with more
//! work, in batches, several at once. A missing parent that the round did
//! not bring (the announcer's branch has no more work than ours, say) is
//! asked of the peer that announced the block, by a direct `chain:blocks`
//! request, walking back one block at a time until the branch connects; when
//! that peer does not have it (or over a relay, where no peer can be asked
//! directly) the walk goes on through `search:block`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use toy_gossip::{
    Contribution, Flow, Misbehaviour, PeerEvent, Verdict, answerer_fn, gossip_handler_fn, peer_handler_fn,
};
pub use toy_gossip::{GossipNetwork, PeerId};

use crate::headers::HeadersError;
use crate::mempool::MempoolError;
use crate::store::Store;
use crate::sync::{self, HashesRequest, ProgressLog, Status, SyncProgress};
use crate::tree::{Chain, InsertOutcome, now_ms};
use crate::types::{Block, Hash, Header, Transaction};

/// Gossip kind of new blocks: the workshop's `bc:new_block` (on the wire
/// `gossip:bc:new_block`).
pub const NEW_BLOCK: &str = "bc:new_block";
/// Gossip kind of new transactions: the workshop's `bc:new_tx` (on the wire
/// `gossip:bc:new_tx`).
pub const NEW_TX: &str = "bc:new_tx";
/// Search kind of a block by hash (SPEC §2: `search:block`).
pub const SEARCH_BLOCK: &str = "block";

/// Message kinds of this layer a node lets use the messaging layer's
/// reserved handler slots (`toy_msg::ConfigBuilder::priority_kind`): new
/// blocks and the sync requests, so a flood of transactions cannot starve
/// them.
pub const PRIORITY_KINDS: &[&str] = &["gossip:bc:new_block", "chain:status", "chain:headers", "chain:blocks"];

/// Times one sync round asks again from the last header of a full answer
/// of headers it already has: 16 (32 000 headers).
pub const MAX_HEADER_HOPS: usize = 16;

/// How often a failed store is reopened: 5 s.
pub const STORE_RETRY: Duration = Duration::from_secs(5);
/// Blocks fetched backwards through search before giving up on a branch.
pub const MAX_FETCH_DEPTH: usize = 10_000;
/// Longest time one ancestor fetch may hold its slot: 60 s. A branch deeper
/// than it can fetch in that time is left to sync (headers first, from the
/// peers with the most work); every block of a fake ancestry must carry
/// proof of work at its own target, or the first one ends the fetch and
/// gets its sender banned.
pub const MAX_FETCH_TIME: Duration = Duration::from_secs(60);
/// How long one `search:block` waits for an answer.
pub const SEARCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a direct request for one missing block waits for the peer that
/// announced it (short: over a relay nobody answers, and search follows).
pub const DIRECT_FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// A sync round is also started this often, without a reason.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// Most sync rounds in a row before pausing for new reasons (each round
/// imports at most [`sync::MAX_HASHES`] blocks).
pub const MAX_ROUNDS: usize = 10_000;

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
    /// A peer's answer was unusable.
    #[error("peer {peer}: {what}")]
    Peer {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        what: String,
    },
}

/// Counters of what the node received, for metrics.
///
/// Bounded: the labels are the fixed message kinds and the names of the
/// rejection reasons (enum variants), at most [`MAX_LABELS`] each.
#[derive(Debug, Default)]
pub struct NodeStats {
    counts: Mutex<std::collections::BTreeMap<(&'static str, String), u64>>,
}

/// Most distinct labels per counter family.
pub const MAX_LABELS: usize = 64;

impl NodeStats {
    /// Adds one to `family{label}`.
    pub fn bump(&self, family: &'static str, label: &str) {
        let mut m = lock_plain(&self.counts);
        let key = (family, label.to_owned());
        if let Some(n) = m.get_mut(&key) {
            *n += 1;
        } else if m.keys().filter(|(f, _)| *f == family).count() < MAX_LABELS {
            m.insert(key, 1);
        }
    }

    /// Every counter: `(family, label, count)`. Families: `messages` (by
    /// kind), `blocks_accepted` (by outcome: gossip's `Connected`,
    /// `Reorganised`, `SideBranch`; `Sync`; `Mined` here), `blocks_rejected`
    /// and `txs_rejected` (by reason; transactions from gossip and the local
    /// API alike), `txs_accepted` (by source: `gossip`, `local`),
    /// `requests_refused` (requests and messages past their rate or
    /// malformed, by kind or reason) and `orphan_fetches_refused`.
    pub fn snapshot(&self) -> Vec<(&'static str, String, u64)> {
        lock_plain(&self.counts).iter().map(|((f, l), n)| (*f, l.clone(), *n)).collect()
    }
}

/// The name of an enum value's variant (`NonceTooLow { .. }` → `NonceTooLow`).
pub fn variant_name(value: &impl std::fmt::Debug) -> String {
    format!("{value:?}").chars().take_while(char::is_ascii_alphanumeric).collect()
}

/// What a [`ChainNode::resolve`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolveReport {
    /// Peers that answered with their status.
    pub peers_asked: usize,
    /// The peer with the most work, if it had more than us.
    pub best_peer: Option<String>,
    /// Blocks imported.
    pub imported: u64,
    /// Our height afterwards.
    pub height: u64,
    /// Whether our tip changed.
    pub tip_changed: bool,
}

/// What one peer may ask of us by direct request, per kind: a token bucket
/// of `burst` requests (or bytes) refilled at `per_sec`. Over it, the
/// request gets no answer and the peer a [`Misbehaviour::Spam`] penalty
/// (ten of them are a ban); a malformed request costs
/// [`Misbehaviour::ProtocolViolation`]. An honest sync stays well inside:
/// one status and one hashes request per round, blocks four batches at a
/// time.
#[derive(Debug, Clone, Copy)]
pub struct RequestRate {
    /// Requests (or bytes) allowed at once.
    pub burst: f64,
    /// Refill per second.
    pub per_sec: f64,
}

/// Heights of our best chain after the first locator hash on it (genesis if
/// none is), at most `cap` of them and at most `req.max`.
fn after_locator<S: Store>(c: &Chain<S>, req: &HashesRequest, cap: usize) -> std::ops::RangeInclusive<u64> {
    let start = req.locator.iter().find(|h| c.is_canonical(h)).and_then(|h| c.header(h)).map_or(1, |h| h.height + 1);
    let max = (req.max as usize).min(cap) as u64;
    start..=c.tip().height.min(start.saturating_add(max).saturating_sub(1))
}

/// `chain:status`: 16 at once, 4 a second. Over it: no answer, but no
/// penalty either, since every new peer makes a node ask all its peers (a
/// burst of connects elsewhere is not the asker's fault).
pub const STATUS_RATE: RequestRate = RequestRate { burst: 16.0, per_sec: 4.0 };
/// `chain:hashes` (each answer up to 2 000 hashes, 64 KB): 16 at once, 4 a
/// second (a fast sync of small blocks runs several rounds a second).
pub const HASHES_RATE: RequestRate = RequestRate { burst: 16.0, per_sec: 4.0 };
/// `chain:headers` (each answer up to 2 000 headers, 330 KB): 16 at once, 4
/// a second, as `chain:hashes`.
pub const HEADERS_RATE: RequestRate = RequestRate { burst: 16.0, per_sec: 4.0 };
/// `chain:blocks`, in bytes answered: 64 MiB at once, 16 MiB a second (a
/// sync keeps four 8 MiB batches in flight). Charged by the bytes of each
/// answer once it is built; how many answers one peer can have in the making
/// at once is bounded by [`MAX_BLOCKS_IN_FLIGHT`], so requests sent together
/// cannot all pass on one token.
pub const BLOCKS_RATE: RequestRate = RequestRate { burst: 64.0 * 1024.0 * 1024.0, per_sec: 16.0 * 1024.0 * 1024.0 };
/// `chain:blocks` answers one peer may have in the making at once: 8 (a
/// sync keeps 4 in flight); past it a request is unanswered. At most
/// 8 × 8 MiB of answers per peer are being built at any time.
pub const MAX_BLOCKS_IN_FLIGHT: usize = 8;

/// Peers whose request budgets are remembered: 1 024; past it the entry
/// refreshed longest ago is dropped (it would be nearly full again anyway).
pub const REQUEST_RATE_PEERS: usize = 1_024;

/// Per-peer token buckets of one request kind (bounded by
/// [`REQUEST_RATE_PEERS`]).
#[derive(Debug)]
struct PeerBuckets {
    rate: RequestRate,
    peers: HashMap<PeerId, (f64, Instant)>,
}

impl PeerBuckets {
    fn new(rate: RequestRate) -> Self {
        Self { rate, peers: HashMap::new() }
    }

    /// The peer's tokens now, refilled.
    fn level(&mut self, peer: &PeerId, now: Instant) -> &mut f64 {
        if !self.peers.contains_key(peer)
            && self.peers.len() >= REQUEST_RATE_PEERS
            && let Some(oldest) = self.peers.iter().min_by_key(|(_, (_, at))| *at).map(|(p, _)| p.clone())
        {
            self.peers.remove(&oldest);
        }
        let rate = self.rate;
        let (tokens, at) = self.peers.entry(peer.clone()).or_insert((rate.burst, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * rate.per_sec).min(rate.burst);
        *at = now;
        tokens
    }

    /// Whether `peer` has `cost` tokens (with `cost` 0: any token) left;
    /// takes them if so. The level may go below zero when an answer charged
    /// after it was built turned out large: a debt.
    fn take(&mut self, peer: &PeerId, cost: f64, now: Instant) -> bool {
        let tokens = self.level(peer, now);
        if *tokens <= 0.0 || *tokens < cost {
            return false;
        }
        *tokens -= cost;
        true
    }
}

/// One `chain:blocks` answer in the making for a peer; leaves the count
/// when dropped. The map holds only peers with answers in the making.
struct InFlight {
    map: Arc<Mutex<HashMap<PeerId, usize>>>,
    peer: PeerId,
}

impl InFlight {
    fn enter(map: &Arc<Mutex<HashMap<PeerId, usize>>>, peer: &PeerId) -> Option<Self> {
        let mut m = lock_plain(map);
        let n = m.entry(peer.clone()).or_default();
        if *n >= MAX_BLOCKS_IN_FLIGHT {
            return None;
        }
        *n += 1;
        Some(Self { map: map.clone(), peer: peer.clone() })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut m = lock_plain(&self.map);
        if let Some(n) = m.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.peer);
            }
        }
    }
}

/// Takes `cost` from `peer`'s budget of this kind; when it is spent, counts
/// the refusal and penalises the peer ([`Misbehaviour::Spam`]). Returns
/// whether the request may be answered.
fn within_budget<G: GossipNetwork + ?Sized>(
    gossip: &G,
    stats: &NodeStats,
    budget: &Mutex<PeerBuckets>,
    peer: &PeerId,
    kind: &str,
    cost: f64,
) -> bool {
    if lock_plain(budget).take(peer, cost, Instant::now()) {
        return true;
    }
    stats.bump("requests_refused", kind);
    gossip.report(peer, Misbehaviour::Spam);
    false
}

/// Ancestor fetches (a sync round, then direct requests and searches) one
/// peer's orphans may start: 3 at once, then one per 10 s (a
/// token bucket per peer, like the request rates). An honest peer announces an
/// orphan when we fell behind, and one fetch brings the whole gap; a peer
/// sending orphans with made-up parents gets no more than this out of us.
pub const ORPHAN_FETCH_RATE: RequestRate = RequestRate { burst: 3.0, per_sec: 0.1 };

/// Gossiped transactions one peer may send that the mempool refuses for
/// funds or nonce (an unfunded sender, a gap, a replay): 64 at once, then 4
/// a second; past it they are counted (`requests_refused{UnfundedTx}`), not
/// acted on. Such a refusal costs us a decode and a lookup (the signature is
/// checked after the funds). No penalty: whether a transaction is funded
/// depends on *our* state, and a relay forwards what others made (Bitcoin
/// Core does not punish missing inputs either). No drop: the gossip layer
/// has marked the message seen, so a drop would lose it for every peer.
pub const UNFUNDED_TX_RATE: RequestRate = RequestRate { burst: 64.0, per_sec: 4.0 };

/// The chain attached to a gossip network: gossip handlers, request
/// handlers and the background sync task (stopped by
/// [`ChainNode::shutdown`]; call it before shutting the network down).
pub struct ChainNode<S: Store, G: GossipNetwork + ?Sized> {
    chain: SharedChain<S>,
    gossip: Arc<G>,
    fetching: Arc<AtomicBool>,
    orphan_fetches: Arc<Mutex<PeerBuckets>>,
    /// Per peer: transactions refused for funds or nonce ([`UNFUNDED_TX_RATE`]).
    unfunded_txs: Arc<Mutex<PeerBuckets>>,
    sync: Arc<SyncShared>,
    stats: Arc<NodeStats>,
}

/// State of the sync task shared by the clones of a node.
struct SyncShared {
    /// One sync round at a time.
    running: tokio::sync::Mutex<()>,
    /// Wakes the sync task (collapses repeated wake-ups into one).
    wake: tokio::sync::Notify,
    progress: Mutex<SyncProgress>,
    /// The latest missing parent to fetch if a sync does not bring it, and
    /// the peer that announced its child (one slot: a newer orphan replaces
    /// it).
    missing: Mutex<Option<(Hash, Option<PeerId>)>>,
    cancel: CancellationToken,
}

impl<S: Store, G: GossipNetwork + ?Sized> Clone for ChainNode<S, G> {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            gossip: self.gossip.clone(),
            fetching: self.fetching.clone(),
            orphan_fetches: self.orphan_fetches.clone(),
            unfunded_txs: self.unfunded_txs.clone(),
            sync: self.sync.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<S: Store, G: GossipNetwork + ?Sized> ChainNode<S, G> {
    /// Registers the chain's gossip handlers, search answerer and direct
    /// request handlers on `gossip`, and starts the sync task.
    ///
    /// # Errors
    /// When one of the chain's kinds is already registered.
    pub fn install(chain: SharedChain<S>, gossip: Arc<G>) -> Result<Self, NetworkError> {
        let node = Self {
            chain,
            gossip,
            fetching: Arc::new(AtomicBool::new(false)),
            orphan_fetches: Arc::new(Mutex::new(PeerBuckets::new(ORPHAN_FETCH_RATE))),
            unfunded_txs: Arc::new(Mutex::new(PeerBuckets::new(UNFUNDED_TX_RATE))),
            sync: Arc::new(SyncShared {
                running: tokio::sync::Mutex::new(()),
                wake: tokio::sync::Notify::new(),
                progress: Mutex::new(SyncProgress::default()),
                missing: Mutex::new(None),
                cancel: CancellationToken::new(),
            }),
            stats: Arc::default(),
        };
        let n = node.clone();
        node.gossip.register_handler(
            NEW_BLOCK,
            gossip_handler_fn(move |from, bytes| {
                let n = n.clone();
                async move { n.on_block(from, bytes).await }
            }),
        )?;
        let n = node.clone();
        node.gossip.register_handler(
            NEW_TX,
            gossip_handler_fn(move |from, bytes| {
                let n = n.clone();
                async move { n.on_tx(from, bytes).await }
            }),
        )?;
        let c = node.chain.clone();
        let stats = node.stats.clone();
        node.gossip.register_search_answerer(
            SEARCH_BLOCK,
            answerer_fn(move |query| {
                stats.bump("messages", "search:block");
                let c = c.clone();
                async move {
                    let hash = Hash(query.as_ref().try_into().ok()?);
                    // Off the dispatcher: the chain's lock may be held.
                    let block = tokio::task::spawn_blocking(move || lock(&c).block(&hash).ok().flatten());
                    Some(Bytes::from(block.await.ok()??.encode()))
                }
            }),
        )?;
        node.install_request_handlers()?;
        let n = node.clone();
        tokio::spawn(async move { n.sync_task().await });
        let n = node.clone();
        tokio::spawn(async move { n.store_watch().await });
        Ok(node)
    }

    /// Installs the `chain:*` request handlers. They run on the messaging
    /// layer's dispatcher, which serves every peer, so none of them waits
    /// for the chain's lock there (a writer holds it across signature checks
    /// and a durable commit): the status comes from the published tip, and
    /// the answers that read the chain are built on a blocking thread.
    fn install_request_handlers(&self) -> Result<(), NetworkError> {
        let (genesis, tips) = {
            let c = lock(&self.chain);
            (c.params().genesis_hash(), c.subscribe())
        };
        let stats = self.stats.clone();
        let budget = Arc::new(Mutex::new(PeerBuckets::new(STATUS_RATE)));
        self.gossip.register_request_handler(
            sync::STATUS,
            peer_handler_fn(move |peer, _| {
                stats.bump("messages", sync::STATUS);
                let allowed = lock_plain(&budget).take(&peer, 1.0, Instant::now());
                if !allowed {
                    stats.bump("requests_refused", sync::STATUS);
                }
                let status = allowed.then(|| {
                    let tip = tips.borrow().clone();
                    Status { genesis, tip: tip.hash, height: tip.height, work: tip.work }
                });
                async move { status.map(|s| Bytes::from(s.encode())) }
            }),
        )?;
        let c = self.chain.clone();
        let stats = self.stats.clone();
        let g = self.gossip.clone();
        let budget = Arc::new(Mutex::new(PeerBuckets::new(HASHES_RATE)));
        self.gossip.register_request_handler(
            sync::HASHES,
            peer_handler_fn(move |peer, payload| {
                stats.bump("messages", sync::HASHES);
                let c = c.clone();
                let req = match HashesRequest::decode(&payload) {
                    Ok(req) => Some(req),
                    Err(_) => {
                        stats.bump("requests_refused", "Malformed");
                        g.report(&peer, Misbehaviour::ProtocolViolation);
                        None
                    }
                };
                let req = req.filter(|_| within_budget(&*g, &stats, &budget, &peer, sync::HASHES, 1.0));
                async move {
                    let req = req?;
                    let answer = tokio::task::spawn_blocking(move || {
                        let c = lock(&c);
                        let hashes: Vec<Hash> =
                            after_locator(&c, &req, sync::MAX_HASHES).map_while(|h| c.hash_at(h)).collect();
                        sync::encode_hashes(&hashes)
                    });
                    answer.await.ok()
                }
            }),
        )?;
        let c = self.chain.clone();
        let stats = self.stats.clone();
        let g = self.gossip.clone();
        let budget = Arc::new(Mutex::new(PeerBuckets::new(HEADERS_RATE)));
        self.gossip.register_request_handler(
            sync::HEADERS,
            peer_handler_fn(move |peer, payload| {
                stats.bump("messages", sync::HEADERS);
                let c = c.clone();
                let req = match HashesRequest::decode(&payload) {
                    Ok(req) => Some(req),
                    Err(_) => {
                        stats.bump("requests_refused", "Malformed");
                        g.report(&peer, Misbehaviour::ProtocolViolation);
                        None
                    }
                };
                let req = req.filter(|_| within_budget(&*g, &stats, &budget, &peer, sync::HEADERS, 1.0));
                async move {
                    let req = req?;
                    let answer = tokio::task::spawn_blocking(move || {
                        let c = lock(&c);
                        let headers: Vec<Header> = after_locator(&c, &req, sync::MAX_HEADERS)
                            .map_while(|h| c.hash_at(h).and_then(|hash| c.header(&hash)).cloned())
                            .collect();
                        sync::encode_headers(&headers)
                    });
                    answer.await.ok()
                }
            }),
        )?;
        let c = self.chain.clone();
        let stats = self.stats.clone();
        let g = self.gossip.clone();
        let budget = Arc::new(Mutex::new(PeerBuckets::new(BLOCKS_RATE)));
        let in_flight: Arc<Mutex<HashMap<PeerId, usize>>> = Arc::default();
        self.gossip.register_request_handler(
            sync::BLOCKS,
            peer_handler_fn(move |peer, payload| {
                stats.bump("messages", sync::BLOCKS);
                let c = c.clone();
                let hashes = sync::decode_hashes(&payload, sync::BATCH);
                if hashes.is_none() {
                    stats.bump("requests_refused", "Malformed");
                    g.report(&peer, Misbehaviour::ProtocolViolation);
                }
                // Charged by the bytes answered, after the answer is built;
                // a peer with 8 answers in the making gets no ninth.
                let hashes = hashes.filter(|_| within_budget(&*g, &stats, &budget, &peer, sync::BLOCKS, 0.0));
                let slot = hashes.as_ref().and_then(|_| InFlight::enter(&in_flight, &peer));
                if hashes.is_some() && slot.is_none() {
                    stats.bump("requests_refused", "BlocksInFlight");
                }
                let budget = budget.clone();
                async move {
                    let _slot = slot?;
                    let hashes = hashes?;
                    let answer = tokio::task::spawn_blocking(move || {
                        let blocks: Vec<Vec<u8>> =
                            hashes.iter().map_while(|h| lock(&c).block(h).ok().flatten().map(|b| b.encode())).collect();
                        sync::encode_blocks(blocks)
                    })
                    .await
                    .ok()?;
                    *lock_plain(&budget).level(&peer, Instant::now()) -= answer.len() as f64;
                    Some(answer)
                }
            }),
        )?;
        Ok(())
    }

    /// The shared chain.
    pub fn chain(&self) -> &SharedChain<S> {
        &self.chain
    }

    /// The gossip network the node runs on.
    pub fn gossip(&self) -> &Arc<G> {
        &self.gossip
    }

    /// How the current (or last) sync round went.
    pub fn sync_progress(&self) -> SyncProgress {
        lock_plain(&self.sync.progress).clone()
    }

    /// Stops the sync task (handlers stay registered until the gossip layer
    /// stops).
    pub fn shutdown(&self) {
        self.sync.cancel.cancel();
    }

    /// Inserts off the async runtime (signature checks and disk writes block).
    /// `from` is charged for the block if it waits as an orphan.
    async fn insert(&self, block: Block, from: Option<&PeerId>) -> Result<InsertOutcome, NetworkError> {
        let c = self.chain.clone();
        let from = from.map(|p| p.0.clone());
        tokio::task::spawn_blocking(move || lock(&c).insert_from(block, from.as_deref(), now_ms()))
            .await
            .map_err(|_| NetworkError::Cancelled)?
            .map_err(Into::into)
    }

    /// Counters of received messages and verdicts.
    pub fn stats(&self) -> &Arc<NodeStats> {
        &self.stats
    }

    async fn on_block(&self, from: Option<PeerId>, bytes: Bytes) -> Verdict {
        self.stats.bump("messages", NEW_BLOCK);
        let block = match Block::decode(&bytes) {
            Ok(b) => b,
            Err(e) => {
                self.stats.bump("blocks_rejected", &format!("Decode{}", variant_name(&e)));
                return Verdict::Reject;
            }
        };
        let outcome = self.insert(block, from.as_ref()).await;
        match &outcome {
            Ok(
                InsertOutcome::Invalid { reason }
                | InsertOutcome::Malformed { reason }
                | InsertOutcome::TooEarly { reason },
            ) => self.stats.bump("blocks_rejected", &variant_name(reason)),
            Ok(InsertOutcome::ForkTooDeep { .. }) => self.stats.bump("blocks_rejected", "ForkTooDeep"),
            Ok(
                o @ (InsertOutcome::Connected { .. }
                | InsertOutcome::Reorganised { .. }
                | InsertOutcome::SideBranch { .. }),
            ) => {
                self.stats.bump("blocks_accepted", &variant_name(o));
            }
            _ => {}
        }
        match outcome {
            Ok(InsertOutcome::Connected { .. } | InsertOutcome::Reorganised { .. }) => {
                // First with a new block on our best chain: a peer worth
                // keeping when the inbound side is crowded.
                if let Some(peer) = &from {
                    self.gossip.credit(peer, Contribution::Block);
                }
                Verdict::Accept
            }
            // Header checked, body not yet (it is when the branch wins).
            Ok(InsertOutcome::SideBranch { .. }) => Verdict::Ignore,
            Ok(InsertOutcome::Orphan { .. })
                if from.as_ref().is_some_and(|p| !lock_plain(&self.orphan_fetches).take(p, 1.0, Instant::now())) =>
            {
                // This sender's orphans have used up its fetch budget: kept,
                // but they ask nothing of the network until it refills.
                self.stats.bump("orphan_fetches_refused", "Rate");
                Verdict::Ignore
            }
            Ok(InsertOutcome::Orphan { missing_parent }) => {
                if from.is_some() && !self.gossip.peers().is_empty() {
                    // A sync round first (the announcer is asked with everyone
                    // else ahead of us); then the announcer alone, then search.
                    *lock_plain(&self.sync.missing) = Some((missing_parent, from));
                    self.sync.wake.notify_one();
                } else {
                    self.fetch_ancestors(missing_parent, None);
                }
                Verdict::Ignore
            }
            Ok(InsertOutcome::Invalid { reason }) => {
                tracing::info!(%reason, "invalid block from the network");
                Verdict::Reject
            }
            Ok(InsertOutcome::Malformed { reason }) => {
                tracing::info!(%reason, "malformed block from the network (not remembered)");
                Verdict::Reject
            }
            // Not the sender's fault: its clock, or a deep fork.
            Ok(
                InsertOutcome::Duplicate
                | InsertOutcome::Stale { .. }
                | InsertOutcome::TooEarly { .. }
                | InsertOutcome::ForkTooDeep { .. },
            ) => Verdict::Ignore,
            Err(e) => {
                // A failed store is logged once, where it failed (the chain).
                tracing::debug!("block not imported: {e}");
                Verdict::Ignore
            }
        }
    }

    async fn on_tx(&self, from: Option<PeerId>, bytes: Bytes) -> Verdict {
        self.stats.bump("messages", NEW_TX);
        let tx = match Transaction::decode(&bytes) {
            Ok(tx) => tx,
            Err(e) => {
                self.stats.bump("txs_rejected", &format!("Decode{}", variant_name(&e)));
                return Verdict::Reject;
            }
        };
        let c = self.chain.clone();
        let outcome = tokio::task::spawn_blocking(move || lock(&c).add_tx(tx, now_ms())).await;
        let unfunded = matches!(
            outcome,
            Ok(Err(MempoolError::InsufficientBalance { .. }
                | MempoolError::NonceTooLow { .. }
                | MempoolError::NonceTooHigh { .. }))
        );
        // Counted per peer, never acted on: the gossip layer has marked the
        // message seen, so dropping it here would drop it for every peer
        // (an attacker keeping its budget empty could black-hole honest
        // transactions it relays first), and a penalty would hit relays.
        if let Some(peer) = from.as_ref().filter(|_| unfunded)
            && !lock_plain(&self.unfunded_txs).take(peer, 1.0, Instant::now())
        {
            self.stats.bump("requests_refused", "UnfundedTx");
        }
        match &outcome {
            Ok(Ok(_)) => self.stats.bump("txs_accepted", "gossip"),
            Ok(Err(e)) => self.stats.bump("txs_rejected", &variant_name(e)),
            Err(_) => {}
        }
        match outcome {
            Ok(Ok(_)) => {
                if let Some(peer) = &from {
                    self.gossip.credit(peer, Contribution::Transaction);
                }
                Verdict::Accept
            }
            Ok(Err(MempoolError::BadSignature | MempoolError::UnauthorisedMint | MempoolError::Overflow)) => {
                Verdict::Reject
            }
            Ok(Err(
                MempoolError::InsufficientBalance { .. }
                | MempoolError::NonceTooLow { .. }
                | MempoolError::NonceTooHigh { .. },
            )) => Verdict::Ignore,
            _ => Verdict::Ignore,
        }
    }

    /// Imports a block mined here and announces it.
    ///
    /// # Errors
    /// Storage failures, or the gossip layer's.
    pub async fn submit_block(&self, block: Block) -> Result<InsertOutcome, NetworkError> {
        let encoded = Bytes::from(block.encode());
        let outcome = self.insert(block, None).await?;
        if matches!(outcome, InsertOutcome::Connected { .. } | InsertOutcome::Reorganised { .. }) {
            self.stats.bump("blocks_accepted", "Mined");
            self.gossip.broadcast(NEW_BLOCK, encoded)?;
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
        let added = tokio::task::spawn_blocking(move || lock(&c).add_tx(tx, now_ms()))
            .await
            .map_err(|_| NetworkError::Cancelled)?;
        let id = added.inspect_err(|e| self.stats.bump("txs_rejected", &variant_name(e)))?;
        self.stats.bump("txs_accepted", "local");
        self.gossip.broadcast(NEW_TX, encoded)?;
        Ok(id)
    }

    /// Announces the tip block by gossip.
    ///
    /// # Errors
    /// Storage or gossip failures.
    pub fn announce_tip(&self) -> Result<(), NetworkError> {
        let block = {
            let c = lock(&self.chain);
            c.block(&c.tip().hash).map_err(crate::error::ChainError::from)?
        };
        if let Some(b) = block.filter(|b| b.header.height > 0) {
            self.gossip.broadcast(NEW_BLOCK, Bytes::from(b.encode()))?;
        }
        Ok(())
    }

    /// Asks a peer for its [`Status`].
    ///
    /// # Errors
    /// No answer in time, or an undecodable one.
    pub async fn peer_status(&self, peer: &PeerId) -> Result<Status, NetworkError> {
        let answer = tokio::time::timeout(sync::REQUEST_TIMEOUT, self.gossip.request(peer, sync::STATUS, Bytes::new()))
            .await
            .map_err(|_| peer_error(peer, "no status in time"))??;
        Status::decode(&answer).map_err(|e| peer_error(peer, format!("bad status: {e}")))
    }

    /// The toychain seed's "resolve": asks every peer for its tip and work
    /// and syncs to the best, repeating until no peer has more work.
    ///
    /// # Errors
    /// Storage failures; a misbehaving peer is reported and skipped instead.
    pub async fn resolve(&self) -> Result<ResolveReport, NetworkError> {
        let _running = self.sync.running.lock().await;
        let before = lock(&self.chain).tip();
        let mut report = ResolveReport::default();
        let mut log = ProgressLog::new();
        let mut done = 0u64;
        // Peers that failed us in this resolve (no answer in time, a wrong
        // or empty answer): the next peer ahead is tried instead, so a peer
        // that claims the most work and delivers nothing cannot stall it.
        let mut skipped: Vec<PeerId> = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let (asked, ahead) = self.peers_ahead().await;
            report.peers_asked = report.peers_asked.max(asked);
            let ahead: Vec<(PeerId, Status)> = ahead.into_iter().filter(|(p, _)| !skipped.contains(p)).collect();
            let mut progressed = false;
            for (i, (peer, status)) in ahead.iter().enumerate() {
                let others: Vec<PeerId> =
                    ahead.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, (p, _))| p.clone()).collect();
                report.best_peer = Some(peer.0.clone());
                let round = self.sync_round(peer, *status, &others, &mut log, &mut done).await;
                match round {
                    Ok(0) if lock(&self.chain).tip().work < status.work => {
                        // Everything it offered we already had, yet it claims
                        // more work than we have: no help; try the next.
                        tracing::info!(peer = %peer, "sync: claims more work but offered nothing new; trying the next peer");
                        skipped.push(peer.clone());
                    }
                    Ok(0) => break,
                    Ok(_) => {
                        progressed = true;
                        break;
                    }
                    Err(NetworkError::Peer { peer, what }) => {
                        tracing::info!(%peer, "sync: {what}; trying the next peer");
                        skipped.push(peer);
                    }
                    Err(e) => {
                        lock(&self.chain).finish_import();
                        return Err(e);
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        // The branch the batches wrote is pruned like any other from now on.
        lock(&self.chain).finish_import();
        let after = lock(&self.chain).tip();
        {
            let mut p = lock_plain(&self.sync.progress);
            p.active = false;
            p.rounds += 1;
        }
        if done > 0 {
            let secs = log.elapsed().as_secs_f64();
            tracing::info!(
                "sync finished: {done} blocks in {secs:.1} s ({:.0} blocks/s), height {}",
                done as f64 / secs.max(1e-3),
                after.height
            );
        }
        report.imported = done;
        report.height = after.height;
        report.tip_changed = after.hash != before.hash;
        Ok(report)
    }

    /// Asks every peer for its status: how many answered, and the peers with
    /// more work than ours (same genesis), most claimed work first.
    async fn peers_ahead(&self) -> (usize, Vec<(PeerId, Status)>) {
        let (genesis, ours) = {
            let c = lock(&self.chain);
            (c.params().genesis_hash(), c.tip().work)
        };
        let peers = self.gossip.peers();
        let statuses = futures::future::join_all(peers.iter().map(|p| self.peer_status(p))).await;
        let mut answered = 0;
        let mut ahead: Vec<(PeerId, Status)> = Vec::new();
        for (peer, status) in peers.into_iter().zip(statuses) {
            match status {
                Ok(s) => {
                    answered += 1;
                    if s.genesis == genesis && s.work > ours {
                        ahead.push((peer, s));
                    }
                }
                Err(e) => tracing::debug!("{e}"),
            }
        }
        ahead.sort_by_key(|a| std::cmp::Reverse(a.1.work));
        (answered, ahead)
    }

    /// One round against `best`: its hashes after our locator, then the
    /// blocks from `best` and `others`. Returns the blocks imported.
    async fn sync_round(
        &self,
        best: &PeerId,
        status: Status,
        others: &[PeerId],
        log: &mut ProgressLog,
        done: &mut u64,
    ) -> Result<u64, NetworkError> {
        let (locator, our_height) = {
            let c = lock(&self.chain);
            (c.locator(), c.tip().height)
        };
        let locator: Vec<Hash> = if locator.len() > sync::MAX_LOCATOR {
            // Keep the newest entries and genesis.
            let mut l = locator[..sync::MAX_LOCATOR - 1].to_vec();
            l.extend(locator.last().copied());
            l
        } else {
            locator
        };
        // Headers first: the claim in `status` is checked against headers
        // the peer must deliver (proof of work and every header rule) before
        // any body is asked for.
        // A full answer of headers we all have is honest when the branch
        // forked between two far-apart locator hashes, or a paused sync
        // stored part of it: ask again from its last header, a bounded
        // number of times.
        let mut locator = locator;
        let mut hops = 0;
        let wanted: Vec<Hash> = loop {
            let sent: std::collections::HashSet<Hash> = locator.iter().copied().collect();
            let req = HashesRequest { locator: locator.clone(), max: sync::MAX_HEADERS as u32 };
            let answer = match tokio::time::timeout(
                sync::REQUEST_TIMEOUT,
                self.gossip.request(best, sync::HEADERS, Bytes::from(req.encode())),
            )
            .await
            {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => return Err(peer_error(best, format!("no headers: {e}"))),
                Err(_) => {
                    // A claim it does not back in time costs it a little (the
                    // penalty fades, as a slow honest peer's would).
                    self.gossip.report(best, Misbehaviour::Spam);
                    return Err(peer_error(best, "no headers in time"));
                }
            };
            let Some(headers) = sync::decode_headers(&answer, sync::MAX_HEADERS) else {
                self.gossip.report(best, Misbehaviour::ProtocolViolation);
                return Err(peer_error(best, "malformed headers"));
            };
            let complete = headers.len() < sync::MAX_HEADERS;
            if headers.first().is_some_and(|h| !sent.contains(&h.parent)) {
                // The answer must start right after one of our locator hashes.
                self.gossip.report(best, Misbehaviour::ProtocolViolation);
                return Err(peer_error(best, "headers that do not start at our locator"));
            }
            let c = self.chain.clone();
            let checked = tokio::task::spawn_blocking(move || lock(&c).check_headers(&headers, now_ms()))
                .await
                .map_err(|_| NetworkError::Cancelled)?;
            let checked = match checked {
                Ok(checked) => checked,
                Err(e @ HeadersError::Invalid { .. }) => {
                    // A header that breaks a rule is proof, like an invalid block.
                    self.gossip.report(best, Misbehaviour::InvalidBlock);
                    return Err(peer_error(best, format!("sent an invalid header chain: {e}")));
                }
                Err(e) => {
                    self.gossip.report(best, Misbehaviour::ProtocolViolation);
                    return Err(peer_error(best, format!("sent headers that are not a chain on ours: {e}")));
                }
            };
            let ours = lock(&self.chain).tip().work;
            if complete && !checked.ahead_of_clock && checked.work < status.work && ours < status.work {
                // All it has, and less work than it claimed. When the headers
                // end at the tip it claimed, that is a lie (a chain's work is
                // fixed by its headers); otherwise its tip may have moved since
                // its status (a store failure, a restart): a smaller charge that
                // fades. The headers it did send show what it really has.
                let lie = checked.hashes.last() == Some(&status.tip);
                self.gossip.report(best, if lie { Misbehaviour::ProtocolViolation } else { Misbehaviour::Spam });
                if checked.work <= ours {
                    return Err(peer_error(best, "claims more work than its headers carry"));
                }
            }
            let last = checked.hashes.last().copied();
            let wanted: Vec<Hash> = {
                let c = lock(&self.chain);
                checked.hashes.into_iter().skip_while(|h| c.contains(h)).collect()
            };
            match (wanted.is_empty(), complete, last) {
                (true, false, Some(last)) if hops < MAX_HEADER_HOPS => {
                    locator = vec![last];
                    hops += 1;
                }
                (true, _, _) => return Ok(0),
                (false, _, _) => break wanted,
            }
        };
        {
            let mut p = lock_plain(&self.sync.progress);
            p.active = true;
            p.target_height = status.height;
        }
        // The peer chose `status.height`: saturate, never overflow.
        let total = done.saturating_add(status.height.saturating_sub(our_height).max(wanted.len() as u64));
        let sources: Vec<PeerId> = std::iter::once(best.clone()).chain(others.iter().cloned()).collect();
        let batches: Vec<Vec<Hash>> = wanted.chunks(sync::BATCH).map(<[Hash]>::to_vec).collect();
        let mut downloads = futures::stream::iter(batches.into_iter().enumerate())
            .map(|(i, batch)| {
                let source = sources[i % sources.len()].clone();
                async move { self.fetch_batch(&source, best, batch).await }
            })
            .buffered(sync::IN_FLIGHT);
        let mut imported = 0u64;
        while let Some(batch) = downloads.next().await {
            if self.sync.cancel.is_cancelled() {
                break;
            }
            let (source, blocks) = batch?;
            let c = self.chain.clone();
            let from = source.0.clone();
            // The whole batch under one lock: its writes share one durable
            // commit, and nothing else is written while durability is relaxed.
            let outcomes = tokio::task::spawn_blocking(move || lock(&c).import_batch(blocks, Some(&from), now_ms()))
                .await
                .map_err(|_| NetworkError::Cancelled)?;
            for outcome in outcomes {
                match outcome? {
                    InsertOutcome::Invalid { reason } | InsertOutcome::Malformed { reason } => {
                        self.stats.bump("blocks_rejected", &variant_name(&reason));
                        self.gossip.report(&source, Misbehaviour::InvalidBlock);
                        return Err(peer_error(&source, format!("sent an invalid block: {reason}")));
                    }
                    InsertOutcome::TooEarly { reason } => {
                        return Err(peer_error(&source, format!("sent a block ahead of our clock: {reason}")));
                    }
                    InsertOutcome::ForkTooDeep { fork_height, tip_height } => {
                        return Err(peer_error(
                            best,
                            format!("its branch forks at {fork_height}, too deep below our tip {tip_height}"),
                        ));
                    }
                    InsertOutcome::Orphan { .. } => {
                        self.gossip.report(best, Misbehaviour::ProtocolViolation);
                        return Err(peer_error(best, "its hashes do not connect to our chain"));
                    }
                    InsertOutcome::Stale { .. } => {
                        return Err(peer_error(best, "its branch forks below our pruning depth"));
                    }
                    _ => {
                        imported += 1;
                        *done += 1;
                        self.stats.bump("blocks_accepted", "Sync");
                    }
                }
            }
            self.gossip.credit(&source, Contribution::Block);
            log.update(&mut lock_plain(&self.sync.progress), *done, total);
        }
        Ok(imported)
    }

    /// Downloads one batch from `source`, or from `best` when `source`
    /// cannot serve all of it. Returns who served it and the blocks.
    async fn fetch_batch(
        &self,
        source: &PeerId,
        best: &PeerId,
        batch: Vec<Hash>,
    ) -> Result<(PeerId, Vec<Block>), NetworkError> {
        let mut tried_best = false;
        for peer in [source, best] {
            if tried_best {
                break;
            }
            tried_best = peer == best;
            let Ok(Ok(answer)) = tokio::time::timeout(
                sync::REQUEST_TIMEOUT,
                self.gossip.request(peer, sync::BLOCKS, sync::encode_hashes(&batch)),
            )
            .await
            else {
                continue;
            };
            let blocks = match sync::decode_blocks(&answer, batch.len()) {
                Ok(b) => b,
                Err(e) => {
                    self.gossip.report(peer, Misbehaviour::MalformedMessage);
                    return Err(peer_error(peer, format!("malformed blocks: {e}")));
                }
            };
            if blocks.iter().zip(&batch).any(|(b, h)| b.hash() != *h) {
                self.gossip.report(peer, Misbehaviour::ProtocolViolation);
                return Err(peer_error(peer, "sent blocks we did not ask for"));
            }
            if blocks.len() == batch.len() {
                return Ok((peer.clone(), blocks));
            }
        }
        Err(peer_error(best, "could not serve the blocks it announced"))
    }

    /// The background task: a resolve when a peer connects, when woken, and
    /// every [`SYNC_INTERVAL`]; ends on [`ChainNode::shutdown`] (or if the
    /// gossip layer's peer events end).
    /// After a storage failure, tries every [`STORE_RETRY`] to reopen the
    /// store ([`Chain::recover_store`]); once it works, syncs what was missed.
    async fn store_watch(self) {
        let mut interval = tokio::time::interval(STORE_RETRY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.sync.cancel.cancelled() => return,
                _ = interval.tick() => {}
            }
            if lock(&self.chain).store_failure().is_none() {
                continue;
            }
            let c = self.chain.clone();
            match tokio::task::spawn_blocking(move || lock(&c).recover_store()).await {
                Ok(Ok(true)) => self.sync.wake.notify_one(),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::debug!("store still failing: {e}"),
                Err(_) => return,
            }
        }
    }

    async fn sync_task(self) {
        let mut events = self.gossip.subscribe();
        let mut interval = tokio::time::interval(SYNC_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.sync.cancel.cancelled() => return,
                () = self.sync.wake.notified() => {}
                _ = interval.tick() => {}
                ev = events.recv() => match ev {
                    Ok(PeerEvent::Added(_)) => {}
                    Ok(PeerEvent::Removed(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
            // Nothing can be written until the store recovers (the store
            // watch wakes this task then): no downloads to throw away.
            if lock(&self.chain).store_failure().is_some() {
                continue;
            }
            if let Err(e) = self.resolve().await {
                tracing::warn!("sync failed: {e}");
            }
            let missing = lock_plain(&self.sync.missing).take();
            if let Some((hash, announcer)) = missing
                && !lock(&self.chain).contains(&hash)
            {
                self.fetch_ancestors(hash, announcer);
            }
        }
    }

    /// Fetches `missing` and its ancestors until the branch connects: from
    /// `announcer` by direct request while it has them, then through
    /// `search:block`. One fetch at a time, at most [`MAX_FETCH_DEPTH`]
    /// blocks and [`MAX_FETCH_TIME`], ended by [`ChainNode::shutdown`]. An announcer that sends a
    /// block we did not ask for, or an invalid one, is reported.
    fn fetch_ancestors(&self, missing: Hash, announcer: Option<PeerId>) {
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
                if this.sync.cancel.is_cancelled() || depth > MAX_FETCH_DEPTH || lock(&this.chain).contains(&hash) {
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
                let c = this.chain.clone();
                let from = source.as_ref().map(|p| p.0.clone());
                let outcome =
                    tokio::task::spawn_blocking(move || lock(&c).insert_requested(block, from.as_deref(), now_ms()))
                        .await
                        .map_err(|_| NetworkError::Cancelled)
                        .and_then(|r| r.map_err(NetworkError::from));
                match outcome {
                    Ok(InsertOutcome::Orphan { missing_parent }) => want = Some(missing_parent),
                    Ok(InsertOutcome::Invalid { reason } | InsertOutcome::Malformed { reason }) => {
                        // Only a direct answer has a known sender to blame.
                        if let Some(peer) = source {
                            this.gossip.report(&peer, Misbehaviour::InvalidBlock);
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
    async fn fetch_direct(&self, peer: &PeerId, hash: Hash) -> Result<Option<Block>, NetworkError> {
        let request = self.gossip.request(peer, sync::BLOCKS, sync::encode_hashes(&[hash]));
        let Ok(Ok(answer)) = tokio::time::timeout(DIRECT_FETCH_TIMEOUT, request).await else {
            return Ok(None);
        };
        let mut blocks = match sync::decode_blocks(&answer, 1) {
            Ok(b) => b,
            Err(e) => {
                self.gossip.report(peer, Misbehaviour::MalformedMessage);
                return Err(peer_error(peer, format!("malformed block: {e}")));
            }
        };
        match blocks.pop() {
            None => Ok(None),
            Some(b) if b.hash() == hash => Ok(Some(b)),
            Some(_) => {
                self.gossip.report(peer, Misbehaviour::ProtocolViolation);
                Err(peer_error(peer, "sent a block we did not ask for"))
            }
        }
    }

    /// Looks for the block `hash` through `search:block`.
    async fn search_block(&self, hash: Hash) -> Option<Block> {
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
}

fn peer_error(peer: &PeerId, what: impl Into<String>) -> NetworkError {
    NetworkError::Peer { peer: peer.clone(), what: what.into() }
}

fn lock_plain<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphan_fetches_are_rationed_per_peer() {
        let mut budget = PeerBuckets::new(ORPHAN_FETCH_RATE);
        let t0 = Instant::now();
        let flooder = PeerId("10.0.0.9:1".into());
        let honest = PeerId("10.0.0.2:1".into());
        for _ in 0..3 {
            assert!(budget.take(&flooder, 1.0, t0));
        }
        assert!(!budget.take(&flooder, 1.0, t0), "the burst is spent");
        assert!(budget.take(&honest, 1.0, t0), "another peer's budget is its own");
        assert!(!budget.take(&flooder, 1.0, t0 + Duration::from_secs(5)), "half a token is not a fetch");
        assert!(budget.take(&flooder, 1.0, t0 + Duration::from_secs(10)), "one more after a refill period");
        assert!(!budget.take(&flooder, 1.0, t0 + Duration::from_secs(10)));
    }

    #[test]
    fn request_budgets_forget_the_stalest_peer_when_full() {
        let mut budget = PeerBuckets::new(HASHES_RATE);
        let t0 = Instant::now();
        for i in 0..=REQUEST_RATE_PEERS {
            budget.take(&PeerId(format!("p{i}")), 1.0, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(budget.peers.len(), REQUEST_RATE_PEERS);
        assert!(!budget.peers.contains_key(&PeerId("p0".into())));
    }

    #[test]
    fn priority_kinds_name_the_block_gossip_and_sync_kinds() {
        assert!(PRIORITY_KINDS.contains(&format!("gossip:{NEW_BLOCK}").as_str()));
        for kind in [sync::STATUS, sync::HEADERS, sync::BLOCKS] {
            assert!(PRIORITY_KINDS.contains(&kind), "{kind}");
        }
    }
}
