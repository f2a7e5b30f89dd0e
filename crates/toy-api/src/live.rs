//! [`NodeApi`] over a real node: a [`ChainNode`] on any gossip network.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use toy_chain::network::{ChainHandle, ChainNode, GossipNetwork, NetworkError, ResolveReport};
use toy_chain::{Address, Chain, Hash, Keypair, MempoolError, Signature, Store, Transaction, TxKind};

use crate::{
    AccountView, ApiError, BlockId, BlockSummary, BlockView, ChainApi, MetricsSnapshot, MinerApi, NetworkApi,
    NetworkNode, NetworkView, SendRequest, StatusView, TreeNode, TxJson, TxStatus, WalletApi, summarise,
};

/// The node's bound on `/api/mine` ([`LiveConfig::mine_max_nonces`]): 2^29, about 25 s on one
/// core at the midstate miner's ~20 M hashes/s, so a request cannot grind
/// for ever when the difficulty has risen (a dev chain retargets to its
/// miners' hash rate).
pub const MINE_MAX_NONCES: u64 = 1 << 29;

/// Most nodes `/api/network` describes, this one included (it crawls no
/// further).
pub const MAX_NETWORK_NODES: usize = 64;
/// Nodes `/api/network` asks at once.
const NETWORK_FANOUT: usize = 16;
/// How long `/api/network` waits for one node's peer list.
const NETWORK_ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// No new wave of questions starts after this: a crawl ends within it plus
/// one [`NETWORK_ASK_TIMEOUT`].
const NETWORK_DEADLINE: Duration = Duration::from_secs(5);

/// How the node is set up, for [`LiveNode`].
pub struct LiveConfig {
    /// The node wallet (signs `/api/wallet/send`, receives `/api/mine`).
    pub wallet: Keypair,
    /// Whether `/api/mine` may mine (only on easy presets).
    pub can_mine: bool,
    /// The miner's hash rate, when the node mines.
    pub hash_rate: Option<Arc<dyn Fn() -> f64 + Send + Sync>>,
    /// Most nonces one `/api/mine` tries before it answers 503
    /// ([`MINE_MAX_NONCES`] in the node).
    pub mine_max_nonces: u64,
    /// The peering services `/api/peers` and `/api/network` need, wired by
    /// the node to its peering layer (any `PeerNetwork` is one).
    pub peering: Arc<dyn PeerAdmin>,
    /// The hash-rate history `/api/hashrate` answers from, filled by the
    /// node's sampler ([`crate::RateHistory::sample`]).
    pub history: Arc<crate::RateHistory>,
}

/// What the API needs of the peering layer beyond what the chain layer
/// passes through: dial a peer, ask a node for its peers, say where we are.
/// The node wires it (every [`toy_gossip::PeerNetwork`] is one), so the
/// gossip layer does not carry these for the API's sake.
#[async_trait]
pub trait PeerAdmin: Send + Sync + 'static {
    /// The address peers reach us at.
    fn local_addr(&self) -> String;
    /// Dials `addr` and completes the handshake; the peer's name.
    async fn connect(&self, addr: &str) -> Result<String, String>;
    /// The peers `addr` reports (a short-lived probe when it is no peer).
    async fn ask_peers(&self, addr: &str) -> Result<Vec<String>, String>;
}

#[async_trait]
impl<P: toy_gossip::PeerNetwork> PeerAdmin for P {
    fn local_addr(&self) -> String {
        toy_gossip::PeerNetwork::local_addr(self)
    }

    async fn connect(&self, addr: &str) -> Result<String, String> {
        toy_gossip::PeerNetwork::connect(self, addr).await.map(|p| p.0).map_err(|e| e.to_string())
    }

    async fn ask_peers(&self, addr: &str) -> Result<Vec<String>, String> {
        toy_gossip::PeerNetwork::ask_peers(self, addr).await.map_err(|e| e.to_string())
    }
}

/// The API of a running node.
pub struct LiveNode<S: Store, G: GossipNetwork + ?Sized> {
    node: ChainNode<S, G>,
    /// The chain on its local lane: peers filling the network's lane do not
    /// delay the API.
    chain: ChainHandle<S>,
    config: LiveConfig,
    /// Serialises sends from the node wallet so that nonces do not collide.
    send_lock: tokio::sync::Mutex<()>,
    /// One on-demand block at a time (each grinds a core).
    mine_lock: tokio::sync::Mutex<()>,
    /// One network crawl at a time (each opens up to
    /// [`MAX_NETWORK_NODES`] probe connections).
    crawl_lock: tokio::sync::Mutex<()>,
}

impl<S: Store, G: GossipNetwork + ?Sized> LiveNode<S, G> {
    /// The API over `node`.
    pub fn new(node: ChainNode<S, G>, config: LiveConfig) -> Self {
        Self {
            chain: node.chain().local(),
            node,
            config,
            send_lock: tokio::sync::Mutex::new(()),
            mine_lock: tokio::sync::Mutex::new(()),
            crawl_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs `f` on the chain, through the chain actor (store reads block).
    async fn with_chain<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Chain<S>) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.chain.read(f).await.map_err(|_| ApiError::Unavailable("the node is shutting down".into()))?
    }
}

fn store_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("storage: {e}"))
}

fn mempool_err(e: NetworkError) -> ApiError {
    match e {
        NetworkError::Mempool(m) => ApiError::Rejected(format!("rejected: {m}")),
        other => ApiError::Unavailable(other.to_string()),
    }
}

/// The nonce `addr`'s next transaction needs, counting its pending ones.
fn next_nonce<S: Store>(c: &Chain<S>, addr: &Address) -> u64 {
    let base = c.account(addr).nonce;
    c.mempool().iter().filter(|(_, t)| t.sender == *addr).map(|(_, t)| t.nonce + 1).max().unwrap_or(base).max(base)
}

fn account_view<S: Store>(c: &Chain<S>, addr: &Address) -> AccountView {
    let a = c.account(addr);
    AccountView { address: addr.to_hex(), balance: a.balance, nonce: a.nonce, next_nonce: next_nonce(c, addr) }
}

#[async_trait]
impl<S: Store, G: GossipNetwork + ?Sized> ChainApi for LiveNode<S, G> {
    fn profile(&self) -> crate::ChainProfile {
        crate::ChainProfile::toy()
    }

    async fn status(&self) -> Result<StatusView, ApiError> {
        // From the snapshot the chain actor publishes: a status never waits
        // for an import.
        let chain = self.node.chain();
        let c = chain.snapshot();
        Ok(StatusView {
            chain: crate::ChainProfile::toy(),
            height: c.tip.height,
            tip: c.tip.hash.to_hex(),
            chain_id: chain.params().chain_id().to_hex(),
            work: Some(c.tip.work.to_string()),
            peers: self.node.gossip().peer_services().peers().len(),
            mempool: c.mempool,
            mempool_bytes: c.mempool_bytes,
            orphans: c.orphans,
            store_ok: c.store_failure.is_none(),
            store_error: c.store_failure.clone().unwrap_or_default(),
            orphan_bytes: c.orphan_bytes,
            hash_rate: self.config.hash_rate.as_ref().map_or(0.0, |f| f()),
            address: self.config.peering.local_addr(),
            wallet: self.config.wallet.address().to_hex(),
            can_mine: self.config.can_mine,
            sync: Some(self.node.sync_progress()),
        })
    }

    async fn blocks(&self, from: Option<u64>, limit: usize) -> Result<Vec<BlockSummary>, ApiError> {
        self.with_chain(move |c| {
            let tip = c.tip().height;
            let from = from.unwrap_or(tip).min(tip);
            let mut out = Vec::with_capacity(limit);
            for h in (0..=from).rev().take(limit) {
                if let Some(b) = c.block_at(h).map_err(store_err)? {
                    out.push(summarise(&b, true, tip));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn block(&self, id: BlockId) -> Result<BlockView, ApiError> {
        self.with_chain(move |c| {
            let block = match id {
                BlockId::Height(h) => c.block_at(h),
                BlockId::Hash(h) => c.block(&h),
            }
            .map_err(store_err)?
            .ok_or_else(|| ApiError::NotFound("no such block".into()))?;
            let canonical = c.is_canonical(&block.hash());
            Ok(BlockView {
                summary: summarise(&block, canonical, c.tip().height),
                txs: block.txs.iter().map(TxJson::from).collect(),
            })
        })
        .await
    }

    async fn tx(&self, id: Hash) -> Result<TxStatus, ApiError> {
        self.with_chain(move |c| {
            if let Some(tx) = c.mempool().get(&id) {
                return Ok(TxStatus {
                    tx: tx.into(),
                    status: "pending".into(),
                    block_height: None,
                    block_hash: None,
                    confirmations: 0,
                });
            }
            let Some((block, pos)) = c.find_tx(&id).map_err(store_err)? else {
                return Err(ApiError::NotFound(format!("transaction {id} is neither pending nor on the best chain")));
            };
            let height = block.header.height;
            Ok(TxStatus {
                tx: (&block.txs[pos]).into(),
                status: "confirmed".into(),
                block_height: Some(height),
                block_hash: Some(block.hash().to_hex()),
                confirmations: c.tip().height.saturating_sub(height) + 1,
            })
        })
        .await
    }

    async fn account(&self, address: String) -> Result<AccountView, ApiError> {
        // The handler checked the shape: what is left is whether it is a
        // point, and no account can live at one that is not.
        let address = crate::parse_address("address", &address)
            .map_err(|_| ApiError::NotFound(format!("{address} is not a public key: no account can exist there")))?;
        self.with_chain(move |c| Ok(account_view(c, &address))).await
    }

    async fn submit_tx(&self, tx: TxJson) -> Result<String, ApiError> {
        let tx = Transaction::try_from(&tx)?;
        self.node.submit_tx(tx).await.map(|id| id.to_hex()).map_err(mempool_err)
    }

    async fn tree(&self, depth: u64) -> Result<Vec<TreeNode>, ApiError> {
        self.with_chain(move |c| {
            let low = c.tip().height.saturating_sub(depth);
            Ok(c.recent_headers(low)
                .into_iter()
                .map(|(hash, h)| TreeNode {
                    hash: hash.to_hex(),
                    parent: h.parent.to_hex(),
                    height: h.height,
                    canonical: c.is_canonical(&hash),
                    miner: h.miner.to_hex(),
                    time_ms: Some(h.timestamp_ms),
                })
                .collect())
        })
        .await
    }

    async fn mempool(&self, limit: usize) -> Result<Vec<TxJson>, ApiError> {
        self.with_chain(move |c| {
            let mut txs: Vec<&Transaction> = c.mempool().iter().map(|(_, t)| t).collect();
            txs.sort_by_key(|t| (std::cmp::Reverse(t.fee), t.sender.0, t.nonce));
            Ok(txs.into_iter().take(limit).map(TxJson::from).collect())
        })
        .await
    }

    async fn hash_rates(&self) -> Result<Vec<crate::RateSample>, ApiError> {
        Ok(self.config.history.samples())
    }

    async fn metrics(&self) -> Result<MetricsSnapshot, ApiError> {
        let c = self.node.chain().snapshot();
        Ok(MetricsSnapshot {
            height: c.tip.height,
            peers: self.node.gossip().peer_services().peers().len() as u64,
            mempool: c.mempool as u64,
            orphans: c.orphans as u64,
            store_ok: c.store_failure.is_none(),
            hash_rate: self.config.hash_rate.as_ref().map_or(0.0, |f| f()),
            counters: self.node.stats().snapshot(),
        })
    }
}

#[async_trait]
impl<S: Store, G: GossipNetwork + ?Sized> WalletApi for LiveNode<S, G> {
    async fn wallet(&self) -> Result<AccountView, ApiError> {
        let me = self.config.wallet.address();
        self.with_chain(move |c| Ok(account_view(c, &me))).await
    }

    async fn send(&self, req: SendRequest) -> Result<String, ApiError> {
        let recipient = crate::parse_address("to", &req.to)?;
        let _one_at_a_time = self.send_lock.lock().await;
        let me = self.config.wallet.address();
        let (balance, nonce) = self.with_chain(move |c| Ok((c.account(&me).balance, next_nonce(c, &me)))).await?;
        let cost =
            req.amount.checked_add(req.fee).ok_or_else(|| ApiError::BadRequest("amount + fee overflows".into()))?;
        if cost > balance {
            return Err(ApiError::Rejected(format!("insufficient balance: have {balance}, need {cost}")));
        }
        let mut tx = Transaction {
            kind: TxKind::Transfer,
            sender: me,
            recipient,
            amount: req.amount,
            fee: req.fee,
            nonce,
            signature: Signature::EMPTY,
        };
        if req.sign {
            let chain_id = self.node.chain().params().chain_id();
            self.config.wallet.sign_tx(&mut tx, &chain_id);
        }
        self.node.submit_tx(tx).await.map(|id| id.to_hex()).map_err(mempool_err)
    }
}

#[async_trait]
impl<S: Store, G: GossipNetwork + ?Sized> MinerApi for LiveNode<S, G> {
    async fn mine(&self) -> Result<BlockSummary, ApiError> {
        if !self.config.can_mine {
            return Err(ApiError::Forbidden("mining on demand is only for the dev and test presets".into()));
        }
        let Ok(_one_at_a_time) = self.mine_lock.try_lock() else {
            return Err(ApiError::Busy("a block is already being mined on demand; try again when it is done".into()));
        };
        let miner = self.config.wallet.address();
        let block =
            self.chain.template(miner).await.map_err(|_| ApiError::Unavailable("the node is shutting down".into()))?;
        let limit = self.config.mine_max_nonces;
        // Set when this request ends however it ends (a client gone, the
        // request timeout): the grinding thread stops within milliseconds.
        struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _stop = CancelOnDrop(cancel.clone());
        // A block found on an old tip would only land on a side branch:
        // when the tip moves (the node's own miner, a peer's block) the
        // grinding stops and the caller is told so.
        let parent = block.header.parent;
        let mut tips = self.chain.subscribe();
        let grinding = cancel.clone();
        let grind = tokio::task::spawn_blocking(move || toy_miner::mine_within(block, limit, &grinding));
        let found =
            unless_tip_moves(grind, &mut tips, |t| t.hash == parent, &cancel).await.map_err(|t| tip_moved(t.height))?;
        let block = found.map_err(|_| ApiError::Unavailable("shutting down".into()))?.ok_or_else(|| {
            ApiError::Unavailable(format!("no block found in {limit} hashes at this difficulty; try again"))
        })?;
        let outcome = self.node.submit_block(block.clone()).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
        match outcome {
            toy_chain::InsertOutcome::Connected { .. }
            | toy_chain::InsertOutcome::Reorganised { .. }
            | toy_chain::InsertOutcome::SideBranch { .. } => {
                // A side branch: the local miner found a sibling first.
                let hash = block.hash();
                let (canonical, height) = self.with_chain(move |c| Ok((c.is_canonical(&hash), c.tip().height))).await?;
                Ok(summarise(&block, canonical, height))
            }
            other => Err(ApiError::Unavailable(format!("the mined block was not connected: {other:?}"))),
        }
    }
}

#[async_trait]
impl<S: Store, G: GossipNetwork + ?Sized> NetworkApi for LiveNode<S, G> {
    async fn peers(&self) -> Result<Vec<String>, ApiError> {
        Ok(self.node.gossip().peer_services().peers().into_iter().map(|p| p.0).collect())
    }

    async fn register_peer(&self, addr: String) -> Result<String, ApiError> {
        self.config.peering.connect(&addr).await.map_err(ApiError::Rejected)
    }

    async fn resolve(&self) -> Result<ResolveReport, ApiError> {
        self.node.resolve().await.map_err(|e| ApiError::Unavailable(e.to_string()))
    }

    async fn network(&self) -> Result<NetworkView, ApiError> {
        let Ok(_one_at_a_time) = self.crawl_lock.try_lock() else {
            return Err(ApiError::Busy("the network is already being crawled; try again in a few seconds".into()));
        };
        let mine: Vec<String> = self.node.gossip().peer_services().peers().into_iter().map(|p| p.0).collect();
        Ok(crawl_network(self.config.peering.as_ref(), mine).await)
    }
}

/// The network as far as `peering` can see, for `/api/network`: this node
/// (with its peers `mine`) first, then every node reachable through
/// `p2p:get_peers`, breadth first, 16 questions at a time, at most
/// [`MAX_NETWORK_NODES`] nodes, each question bounded by 2 s, no new wave
/// after 5 s (so about 7 s at most). A node
/// that did not answer is listed as unreachable. Run one at a time (each
/// opens up to [`MAX_NETWORK_NODES`] probe connections).
pub async fn crawl_network(peering: &dyn PeerAdmin, mine: Vec<String>) -> NetworkView {
    let me = peering.local_addr();
    let mut seen: HashSet<String> = std::iter::once(me.clone()).chain(mine.iter().cloned()).collect();
    let mut frontier: VecDeque<String> = mine.iter().cloned().collect();
    let mut nodes = vec![NetworkNode { addr: me, peers: mine, reachable: true }];
    let deadline = tokio::time::Instant::now() + NETWORK_DEADLINE;
    while !frontier.is_empty() && nodes.len() < MAX_NETWORK_NODES && tokio::time::Instant::now() < deadline {
        let take = frontier.len().min(NETWORK_FANOUT).min(MAX_NETWORK_NODES - nodes.len());
        let wave: Vec<String> = frontier.drain(..take).collect();
        let answers = futures::future::join_all(wave.into_iter().map(|addr| async move {
            let list =
                tokio::time::timeout(NETWORK_ASK_TIMEOUT, peering.ask_peers(&addr)).await.ok().and_then(Result::ok);
            (addr, list)
        }))
        .await;
        for (addr, list) in answers {
            let reachable = list.is_some();
            let peers = list.unwrap_or_default();
            for p in &peers {
                if seen.insert(p.clone()) {
                    frontier.push_back(p.clone());
                }
            }
            nodes.push(NetworkNode { addr, peers, reachable });
        }
    }
    NetworkView { nodes }
}

impl From<MempoolError> for ApiError {
    fn from(e: MempoolError) -> Self {
        ApiError::Rejected(format!("rejected: {e}"))
    }
}

/// The answer to `/api/mine` when the tip moved to `height` while it
/// mined (409).
pub fn tip_moved(height: u64) -> ApiError {
    ApiError::Conflict(format!(
        "the tip moved to height {height} while mining (another block came first); mining stopped, try again"
    ))
}

/// Waits for `grind` (a block being mined on demand) unless the tip `tips`
/// watches stops being the one it mines on (`on_parent` turns false)
/// first: then sets `cancel`, waits for the grinding to stop, and gives the
/// new tip. Any chain's `/api/mine` uses it, whatever its tip type.
pub async fn unless_tip_moves<T, W: Clone>(
    mut grind: tokio::task::JoinHandle<T>,
    tips: &mut tokio::sync::watch::Receiver<W>,
    on_parent: impl Fn(&W) -> bool,
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<Result<T, tokio::task::JoinError>, W> {
    loop {
        tokio::select! {
            found = &mut grind => return Ok(found),
            changed = tips.changed() => {
                if changed.is_err() || !on_parent(&tips.borrow_and_update()) {
                    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                    let _ = grind.await;
                    return Err(tips.borrow().clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod mine_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn grinding_stops_when_the_tip_moves_and_says_where_it_went() {
        let parent = Hash([1; 32]);
        let (tx, mut rx) = tokio::sync::watch::channel(toy_chain::Tip { hash: parent, height: 5, work: 0 });
        let cancel = Arc::new(AtomicBool::new(false));
        let c = cancel.clone();
        // Grinds until cancelled, as mine_within does.
        let grind = tokio::task::spawn_blocking(move || {
            while !c.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
            "stopped"
        });
        // A change that keeps the same tip does not stop it.
        tx.send_modify(|t| t.work = 1);
        let mover = tokio::spawn(async move {
            tokio::task::yield_now().await;
            let _ = tx.send(toy_chain::Tip { hash: Hash([2; 32]), height: 6, work: 2 });
            tx
        });
        let outcome = unless_tip_moves(grind, &mut rx, |t| t.hash == parent, &cancel).await;
        assert_eq!(outcome.err().map(|t| t.height), Some(6));
        assert!(cancel.load(Ordering::Relaxed), "the grinding was told to stop");
        drop(mover.await);
    }

    #[tokio::test]
    async fn a_block_found_before_the_tip_moves_is_returned() {
        let parent = Hash([1; 32]);
        let (_tx, mut rx) = tokio::sync::watch::channel(toy_chain::Tip { hash: parent, height: 5, work: 0 });
        let cancel = AtomicBool::new(false);
        let grind = tokio::task::spawn_blocking(|| 42);
        let outcome = unless_tip_moves(grind, &mut rx, |t| t.hash == parent, &cancel).await;
        assert_eq!(outcome.ok().and_then(Result::ok), Some(42));
    }
}
