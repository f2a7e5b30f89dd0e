//! The chain on the network, over the gossip layer's trait only.
//!
//! | gossip kind | payload | verdict |
//! | --- | --- | --- |
//! | [`NEW_BLOCK`] = `bc:new_block` (wire: `gossip:bc:new_block`) | postcard [`Block`] | Accept when connected or reorganised to (fully validated); Reject when invalid, malformed or undecodable; Ignore otherwise (a duplicate, an orphan, a timestamp ahead of our clock, a light fork below the prune depth) — a block kept on a side branch is not forwarded, since its state transition is only checked if that branch ever becomes the best |
//! | [`NEW_TX`] = `bc:new_tx` (wire: `gossip:bc:new_tx`) | postcard [`Transaction`] | Accept when admitted to the mempool; Reject for a bad signature, an unauthorised mint or an overflow; Ignore otherwise |
//! | search [`SEARCH_BLOCK`] = `block` (wire: `gossip:search:block`, answers `search_response:block`) | the 32-byte block hash | the postcard block |
//!
//! Direct requests ([`crate::sync`]): `chain:status`, `chain:headers`,
//! `chain:hashes` and `chain:blocks`, answered for every peer, each rationed
//! per peer (`serve.rs`).
//!
//! Sync (`sync_task.rs`): when a peer connects, when a block arrives whose
//! parent is unknown, every 30 s, and on [`ChainNode::resolve`], a sync round
//! asks each peer for its tip and work, checks the headers of the one with
//! the most (headers first), and downloads what we miss from the peers with
//! more work, in batches, several at once (`fetch.rs` has the ancestor walk
//! below and the watch that reopens a failed store). A missing parent that the round did
//! not bring (the announcer's branch has no more work than ours, say) is
//! asked of the peer that announced the block, by a direct `chain:blocks`
//! request, walking back one block at a time until the branch connects; when
//! that peer does not have it (or over a relay, where no peer can be asked
//! directly) the walk goes on through `search:block`.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use toy_gossip::{
    Contribution, Flow, Misbehaviour, PeerEvent, Verdict, answerer_fn, gossip_handler_fn, peer_handler_fn,
};
pub use toy_gossip::{GossipNetwork, PeerId};

mod fetch;
mod reconcile;
pub use reconcile::{
    GET_TXS, GET_TXS_RATE, MAX_GET_TXS, MAX_MEMPOOL_IDS, MAX_RECONCILING, MAX_REFUSED, MEMPOOL_IDS, MEMPOOL_RATE,
    OUR_MEMPOOL_RATE, RECONCILE_EVERY, RECONCILE_TIME,
};
mod serve;
mod sync_task;

pub use crate::actor::ChainHandle;
use crate::headers::HeadersError;
use crate::mempool::MempoolError;
use crate::store::Store;
use crate::sync::{self, HashesRequest, ProgressLog, Status, SyncProgress};
use crate::tree::{Chain, InsertOutcome};
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
    gossip.peer_services().report(peer, Misbehaviour::Spam);
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

/// Chain jobs one peer may have queued or running on the chain actor at
/// once: 8 (its gossiped blocks and transactions, and the reads its
/// requests need). Past it, that peer's handlers wait for one of its own
/// jobs to finish: the actor's network lane (64 jobs) then holds at most
/// this many from any one peer, so a peer flooding blocks slows only
/// itself. Waiting, not dropping: a gossiped message is already marked
/// seen, so a drop would lose it for every peer (the reason unfunded
/// transactions are only counted).
pub const MAX_PEER_CHAIN_JOBS: usize = 8;

/// How long a peer that has never answered a `chain:status` request is not
/// asked again after one went unanswered: 2 minutes. A workshop node does
/// not know the `chain:*` kinds and never answers; without this memory
/// every sync round would wait out the request timeout on it. A peer that
/// answered once is always asked (a slow moment is not ignorance).
pub const SILENT_FOR: Duration = Duration::from_secs(120);

/// Peers remembered either way (silent, or known to answer): 1 024 each;
/// past it the oldest silent entry is dropped (that peer is asked again, at
/// the cost of one timeout) and the answering set starts over.
pub const MAX_SILENT_PEERS: usize = 1_024;

/// Which peers do not answer `chain:status` ([`SILENT_FOR`]), bounded by
/// [`MAX_SILENT_PEERS`].
#[derive(Debug, Default)]
struct SilentPeers(Mutex<SilentState>);

#[derive(Debug, Default)]
struct SilentState {
    silent: HashMap<PeerId, Instant>,
    answered: std::collections::HashSet<PeerId>,
}

impl SilentPeers {
    /// Whether `peer` is not to be asked now.
    fn is_silent(&self, peer: &PeerId, now: Instant) -> bool {
        lock_plain(&self.0).silent.get(peer).is_some_and(|at| now.saturating_duration_since(*at) < SILENT_FOR)
    }

    /// `peer` answered a status request; `true` the first time.
    fn answered(&self, peer: &PeerId) -> bool {
        let mut st = lock_plain(&self.0);
        st.silent.remove(peer);
        if st.answered.len() >= MAX_SILENT_PEERS {
            st.answered.clear();
        }
        st.answered.insert(peer.clone())
    }

    /// Whether `peer` has answered a status request (it speaks `chain:*`).
    fn has_answered(&self, peer: &PeerId) -> bool {
        lock_plain(&self.0).answered.contains(peer)
    }

    /// `peer` did not answer one: remembered unless it ever answered.
    fn unanswered(&self, peer: &PeerId, now: Instant) {
        let mut st = lock_plain(&self.0);
        if st.answered.contains(peer) {
            return;
        }
        st.silent.retain(|_, at| now.saturating_duration_since(*at) < SILENT_FOR);
        if st.silent.len() >= MAX_SILENT_PEERS
            && let Some(oldest) = st.silent.iter().min_by_key(|(_, at)| **at).map(|(p, _)| p.clone())
        {
            st.silent.remove(&oldest);
        }
        st.silent.insert(peer.clone(), now);
    }
}

/// How often a node announces again its own transactions still pending:
/// every 30 s. Flood gossip can lose a message (shed under load, or a peer
/// that connected a moment later), and nothing else would repair it.
pub const REANNOUNCE_EVERY: Duration = Duration::from_secs(30);

/// Local transactions remembered for announcing again: 256; past it the
/// oldest is forgotten (it stays in the mempool; it is only not announced
/// again).
pub const MAX_LOCAL_PENDING: usize = 256;

/// Per-peer limits on chain jobs ([`MAX_PEER_CHAIN_JOBS`]). Bounded: a
/// peer's entry lives only while it has jobs (at most one per connection's
/// handler slot).
#[derive(Debug, Default)]
struct PeerJobs {
    peers: Mutex<HashMap<PeerId, Arc<tokio::sync::Semaphore>>>,
}

/// One chain job of a peer; gives its slot back when dropped.
struct PeerJob {
    jobs: Arc<PeerJobs>,
    peer: PeerId,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl PeerJobs {
    /// Waits for a slot of `peer`'s.
    async fn enter(jobs: &Arc<PeerJobs>, peer: &PeerId) -> PeerJob {
        let slots = lock_plain(&jobs.peers)
            .entry(peer.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(MAX_PEER_CHAIN_JOBS)))
            .clone();
        // Never closed: a permit always comes.
        let permit = slots.acquire_owned().await.ok();
        PeerJob { jobs: jobs.clone(), peer: peer.clone(), permit }
    }
}

impl Drop for PeerJob {
    fn drop(&mut self) {
        let mut peers = lock_plain(&self.jobs.peers);
        // The permit first (it holds the semaphore too); then the entry goes
        // when no job holds it and nobody waits on it (a waiter holds a
        // clone).
        drop(self.permit.take());
        if let Some(slots) = peers.get(&self.peer)
            && Arc::strong_count(slots) == 1
            && slots.available_permits() == MAX_PEER_CHAIN_JOBS
        {
            peers.remove(&self.peer);
        }
    }
}

/// The chain attached to a gossip network: gossip handlers, request
/// handlers and the background sync task (stopped by
/// [`ChainNode::shutdown`]; call it before shutting the network down).
pub struct ChainNode<S: Store, G: GossipNetwork + ?Sized> {
    chain: ChainHandle<S>,
    gossip: Arc<G>,
    fetching: Arc<AtomicBool>,
    orphan_fetches: Arc<Mutex<PeerBuckets>>,
    /// Per peer: transactions refused for funds or nonce ([`UNFUNDED_TX_RATE`]).
    unfunded_txs: Arc<Mutex<PeerBuckets>>,
    /// Per peer: chain jobs at once ([`MAX_PEER_CHAIN_JOBS`]).
    peer_jobs: Arc<PeerJobs>,
    /// Peers that do not answer `chain:status` ([`SILENT_FOR`]).
    silent: Arc<SilentPeers>,
    /// Ids of transactions submitted here, oldest first
    /// ([`MAX_LOCAL_PENDING`]), announced again while pending.
    local_pending: Arc<Mutex<std::collections::VecDeque<Hash>>>,
    /// Peers being reconciled with ([`reconcile::MAX_RECONCILING`]).
    reconciling: Arc<reconcile::Reconciling>,
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
            peer_jobs: self.peer_jobs.clone(),
            silent: self.silent.clone(),
            local_pending: self.local_pending.clone(),
            reconciling: self.reconciling.clone(),
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
    pub fn install(chain: ChainHandle<S>, gossip: Arc<G>) -> Result<Self, NetworkError> {
        let node = Self {
            chain,
            gossip,
            fetching: Arc::new(AtomicBool::new(false)),
            orphan_fetches: Arc::new(Mutex::new(PeerBuckets::new(ORPHAN_FETCH_RATE))),
            unfunded_txs: Arc::new(Mutex::new(PeerBuckets::new(UNFUNDED_TX_RATE))),
            peer_jobs: Arc::default(),
            silent: Arc::default(),
            local_pending: Arc::default(),
            reconciling: Arc::default(),
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
                    // Queued for the chain actor: the dispatcher moves on.
                    let block = c.read(move |c| c.block(&hash).ok().flatten()).await.ok()??;
                    Some(Bytes::from(block.encode()))
                }
            }),
        )?;
        node.install_request_handlers()?;
        node.install_reconcile_handlers()?;
        let n = node.clone();
        tokio::spawn(async move { n.sync_task().await });
        let n = node.clone();
        tokio::spawn(async move { n.store_watch().await });
        let n = node.clone();
        tokio::spawn(async move { n.reannounce_task().await });
        let n = node.clone();
        tokio::spawn(async move { n.reconcile_task().await });
        Ok(node)
    }

    /// The handle to the chain actor.
    pub fn chain(&self) -> &ChainHandle<S> {
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

    /// Inserts through the chain actor (signature checks and disk writes
    /// run on its thread). `from` is charged for the block if it waits as
    /// an orphan.
    async fn insert(&self, block: Block, from: Option<&PeerId>) -> Result<InsertOutcome, NetworkError> {
        let _slot = self.peer_job(from).await;
        Ok(self.chain.insert(block, from.map(|p| p.0.clone())).await?)
    }

    /// A slot among `peer`'s chain jobs ([`MAX_PEER_CHAIN_JOBS`]); none
    /// needed for our own work.
    async fn peer_job(&self, peer: Option<&PeerId>) -> Option<PeerJob> {
        match peer {
            Some(p) => Some(PeerJobs::enter(&self.peer_jobs, p).await),
            None => None,
        }
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
                    self.gossip.peer_services().credit(peer, Contribution::Block);
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
                if from.is_some() && !self.gossip.peer_services().peers().is_empty() {
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
        self.on_tx_from(from, tx, true).await
    }

    /// Admits a transaction that came from `from` (by gossip or by
    /// reconciliation) and judges it. One that leaves a gap before its
    /// nonce makes us reconcile with its sender, whose pool likely holds
    /// the missing one.
    /// `gossiped`: it came by gossip (it earns its sender eviction
    /// protection then; fetched by reconciliation it does not: a peer could
    /// otherwise serve the same pending transactions again and again).
    async fn on_tx_from(&self, from: Option<PeerId>, tx: Transaction, gossiped: bool) -> Verdict {
        let (sender, nonce) = (tx.sender, tx.nonce);
        // The gap check runs in the same job slot as the admission, so a
        // peer's transactions still hold at most its share of chain jobs.
        let (outcome, gap) = {
            let _slot = self.peer_job(from.as_ref()).await;
            let outcome = self.chain.add_tx(tx).await;
            let gap = matches!(outcome, Ok(Ok(_)))
                && nonce > 0
                && from.is_some()
                && self
                    .chain
                    .read(move |c| c.account(&sender).nonce < nonce && !c.mempool().has_nonce(&sender, nonce - 1))
                    .await
                    .unwrap_or(false);
            (outcome, gap)
        };
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
            Ok(Ok(_)) => self.stats.bump("txs_accepted", if gossiped { "gossip" } else { "reconciled" }),
            Ok(Err(e)) => self.stats.bump("txs_rejected", &variant_name(e)),
            Err(_) => {}
        }
        match outcome {
            Ok(Ok(_)) => {
                if let Some(peer) = &from {
                    if gossiped {
                        self.gossip.peer_services().credit(peer, Contribution::Transaction);
                    }
                    if gap {
                        self.stats.bump("txs_reconciled", "gap");
                        self.spawn_reconcile(peer.clone());
                    }
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
        // On the local lane: peers filling the network's cannot delay it.
        let outcome = self.chain.local().insert(block, None).await?;
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
        let added = self.chain.local().add_tx(tx).await?;
        let id = added.inspect_err(|e| self.stats.bump("txs_rejected", &variant_name(e)))?;
        self.stats.bump("txs_accepted", "local");
        {
            let mut pending = lock_plain(&self.local_pending);
            if pending.len() >= MAX_LOCAL_PENDING {
                pending.pop_front();
            }
            pending.push_back(id);
        }
        self.gossip.broadcast(NEW_TX, encoded)?;
        Ok(id)
    }

    /// Announces again, by gossip, every transaction submitted here that is
    /// still pending; forgets those that are not (mined, or dropped from the
    /// mempool). Returns how many were announced. Run every
    /// [`REANNOUNCE_EVERY`] by the node itself.
    ///
    /// # Errors
    /// When the chain has stopped, or the gossip layer refuses.
    pub async fn announce_pending(&self) -> Result<usize, NetworkError> {
        let ids: Vec<Hash> = lock_plain(&self.local_pending).iter().copied().collect();
        let pending: Vec<(Hash, Option<Transaction>)> = self
            .chain
            .local()
            .read(move |c| ids.into_iter().map(|id| (id, c.mempool().get(&id).cloned())).collect())
            .await?;
        let mut announced = 0;
        let mut gone = std::collections::HashSet::new();
        for (id, tx) in pending {
            match tx {
                Some(tx) => {
                    self.gossip.broadcast(NEW_TX, Bytes::from(tx.encode()))?;
                    announced += 1;
                }
                None => {
                    gone.insert(id);
                }
            }
        }
        lock_plain(&self.local_pending).retain(|id| !gone.contains(id));
        Ok(announced)
    }

    async fn reannounce_task(self) {
        let mut every = Every::new(REANNOUNCE_EVERY).await;
        while every.tick(&self.sync.cancel).await {
            if let Err(e) = self.announce_pending().await {
                tracing::debug!("announcing pending transactions again: {e}");
            }
        }
    }

    /// Announces the tip block by gossip.
    ///
    /// # Errors
    /// Storage or gossip failures.
    pub async fn announce_tip(&self) -> Result<(), NetworkError> {
        let block = self.chain.read(|c| c.block(&c.tip().hash)).await?.map_err(crate::error::ChainError::from)?;
        if let Some(b) = block.filter(|b| b.header.height > 0) {
            self.gossip.broadcast(NEW_BLOCK, Bytes::from(b.encode()))?;
        }
        Ok(())
    }
}

/// A period of a background task: the first tick comes one period after
/// [`Every::new`]; missed ticks are delayed, not bunched.
struct Every(tokio::time::Interval);

impl Every {
    async fn new(period: Duration) -> Self {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        Self(interval)
    }

    /// Waits for the next tick; `false` once `cancel` fires.
    async fn tick(&mut self, cancel: &CancellationToken) -> bool {
        tokio::select! {
            () = cancel.cancelled() => false,
            _ = self.0.tick() => true,
        }
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

    #[tokio::test]
    async fn a_peer_has_at_most_its_share_of_chain_jobs_and_its_entry_goes_with_them() {
        let jobs = Arc::new(PeerJobs::default());
        let flooder = PeerId("10.0.0.9:1".into());
        let mut held = Vec::new();
        for _ in 0..MAX_PEER_CHAIN_JOBS {
            held.push(PeerJobs::enter(&jobs, &flooder).await);
        }
        let one_more = tokio::time::timeout(Duration::from_millis(50), PeerJobs::enter(&jobs, &flooder)).await;
        assert!(one_more.is_err(), "the flooder waits for one of its own jobs");
        let other =
            tokio::time::timeout(Duration::from_secs(5), PeerJobs::enter(&jobs, &PeerId("10.0.0.2:1".into()))).await;
        assert!(other.is_ok(), "another peer does not wait behind it");
        drop(other);
        held.pop();
        let next = tokio::time::timeout(Duration::from_secs(5), PeerJobs::enter(&jobs, &flooder)).await;
        assert!(next.is_ok(), "a finished job makes room");
        drop(next);
        held.clear();
        assert!(lock_plain(&jobs.peers).is_empty(), "no entry outlives its jobs");
    }

    #[test]
    fn a_peer_that_never_answered_is_skipped_for_a_while_and_the_memory_is_bounded() {
        let silent = SilentPeers::default();
        let t0 = Instant::now();
        let quiet = PeerId("workshop:1".into());
        silent.unanswered(&quiet, t0);
        assert!(silent.is_silent(&quiet, t0 + Duration::from_secs(60)));
        assert!(!silent.is_silent(&quiet, t0 + SILENT_FOR), "asked again after a while");
        let known = PeerId("toy:1".into());
        silent.answered(&known);
        silent.unanswered(&known, t0);
        assert!(!silent.is_silent(&known, t0), "a peer that answered once is always asked");
        for i in 0..=MAX_SILENT_PEERS {
            silent.unanswered(&PeerId(format!("p{i}")), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(lock_plain(&silent.0).silent.len(), MAX_SILENT_PEERS);
        assert!(!silent.is_silent(&PeerId("p0".into()), t0), "the oldest went first");
    }

    #[test]
    fn priority_kinds_name_the_block_gossip_and_sync_kinds() {
        assert!(PRIORITY_KINDS.contains(&format!("gossip:{NEW_BLOCK}").as_str()));
        for kind in [sync::STATUS, sync::HEADERS, sync::BLOCKS] {
            assert!(PRIORITY_KINDS.contains(&kind), "{kind}");
        }
    }
}
