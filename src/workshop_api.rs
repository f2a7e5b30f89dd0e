//! The HTTP API and web wallet over the workshop chain: the same routes,
//! page and access rules as a toy node (`toy-api`), answered from a
//! [`WorkshopNode`] instead of `toy-chain`.
//!
//! What the workshop chain has no field for is left out, not made up: no
//! timestamps (`time_ms` is absent, so the page shows no times or interval
//! chart), no fees (`fee` is absent and a non-zero one is refused), no
//! cumulative work (the fork choice is the highest number), no batch sync
//! and no `/api/resolve` (the workshop has no message to ask a peer for its
//! tip; missing blocks are fetched by `search:block` as they are needed).
//! [`ChainProfile`] tells the page and the OpenAPI document so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use toy_api::{
    AccountView, ApiError, BlockId, BlockSummary, BlockView, ChainApi, ChainProfile, MetricsSnapshot, MinerApi,
    NetworkApi, NetworkView, SendRequest, StatusView, TreeNode, TxJson, TxStatus, WalletApi,
};
use toy_chain::network::ResolveReport;
use toy_gossip::PeerNetwork;
use toy_workshop::{Block, Chain, Error, Hash, Inserted, SecretKey, Tx, WorkshopNode};

use crate::workshop_node::{WorkshopGossip, WorkshopP2p};

/// Most nonces one `/api/mine` tries on the workshop chain: 2^27, about
/// 19 s at the workshop-format miner's ~7 M hashes/s on one core (its text
/// leaves no midstate), eight times the expected work at difficulty 6, the
/// hardest at which mining on demand is offered ([`MAX_DIFFICULTY_TO_MINE`]).
pub const MINE_MAX_NONCES: u64 = 1 << 27;

/// Hardest difficulty (leading zero hex digits) at which `/api/mine` works:
/// 6, about 16.8 M hashes (2.4 s) expected. At the workshop's own 7 a block
/// takes 16 times that, so it is left to the miner threads.
pub const MAX_DIFFICULTY_TO_MINE: u8 = 6;

/// How long the hash rate is averaged over, at least: 2 s.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// What the workshop chain's records hold.
pub fn profile() -> ChainProfile {
    ChainProfile {
        name: "workshop".into(),
        // A compressed P-192 key: 25 bytes.
        address_digits: 50,
        // Raw r‖s on P-192: 48 bytes.
        signature_digits: 96,
        fees: false,
        timestamps: false,
        resolve: false,
    }
}

/// The last hash-rate sample: the miner's hash count at an instant.
struct RateSample {
    at: Instant,
    hashes: u64,
    rate: f64,
}

/// [`toy_api::NodeApi`] over a running workshop node.
pub struct WorkshopApi {
    node: WorkshopNode<WorkshopGossip>,
    p2p: WorkshopP2p,
    key: SecretKey,
    can_mine: bool,
    rate: Mutex<RateSample>,
    /// Serialises sends from the node's key so that nonces do not collide.
    send_lock: tokio::sync::Mutex<()>,
    /// One on-demand block at a time (each grinds a core).
    mine_lock: tokio::sync::Mutex<()>,
    /// One network crawl at a time.
    crawl_lock: tokio::sync::Mutex<()>,
    /// The hash-rate history (filled by [`WorkshopApi::sample_rates`]).
    history: Arc<toy_api::RateHistory>,
}

impl WorkshopApi {
    /// The API over `node`, its peer layer and its key.
    pub fn new(node: WorkshopNode<WorkshopGossip>, p2p: WorkshopP2p, key: SecretKey) -> Self {
        let can_mine = node.read(|c| c.params().difficulty) <= MAX_DIFFICULTY_TO_MINE;
        let rate = Mutex::new(RateSample { at: Instant::now(), hashes: node.hashes(), rate: 0.0 });
        Self {
            node,
            p2p,
            key,
            can_mine,
            rate,
            send_lock: tokio::sync::Mutex::new(()),
            mine_lock: tokio::sync::Mutex::new(()),
            crawl_lock: tokio::sync::Mutex::new(()),
            history: Default::default(),
        }
    }

    /// Samples the miner's hash rate into the history `/api/hashrate`
    /// answers from, every [`toy_api::RATE_SAMPLE_EVERY`] until `cancel`.
    pub async fn sample_rates(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        let history = self.history.clone();
        history.sample(move || self.hash_rate(), cancel).await;
    }

    /// Hashes per second of the miner threads, averaged since the previous
    /// sample taken at least [`RATE_WINDOW`] before.
    fn hash_rate(&self) -> f64 {
        let mut s = self.rate.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = s.at.elapsed();
        if elapsed >= RATE_WINDOW {
            let now = self.node.hashes();
            s.rate = now.saturating_sub(s.hashes) as f64 / elapsed.as_secs_f64();
            s.hashes = now;
            s.at = Instant::now();
        }
        s.rate
    }

    /// Runs `f` on the chain off the runtime's worker threads: the chain's
    /// lock is also held by imports (an fsync, signature checks), which must
    /// not stall the workers that serve p2p and HTTP.
    async fn read<R: Send + 'static>(&self, f: impl FnOnce(&Chain) -> R + Send + 'static) -> Result<R, ApiError> {
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || node.read(f))
            .await
            .map_err(|_| ApiError::Unavailable("the node is shutting down".into()))
    }

    fn peer_names(&self) -> Vec<String> {
        PeerNetwork::peers(&self.p2p).into_iter().map(|p| p.0).collect()
    }
}

/// The target a difficulty stands for: the highest hash with `zeros`
/// leading zero hex digits.
fn target_hex(zeros: u8) -> String {
    let zeros = usize::from(zeros).min(64);
    format!("{}{}", "0".repeat(zeros), "f".repeat(64 - zeros))
}

fn summary(c: &Chain, hash: Hash, block: &Block) -> BlockSummary {
    let canonical = c.is_active(&hash);
    BlockSummary {
        height: block.number,
        hash: hash.to_hex(),
        parent: block.parent.to_hex(),
        time_ms: None,
        miner: block.coinbase.clone(),
        // Genesis paid nobody.
        reward: if block.number == 0 { 0 } else { c.params().reward },
        tx_count: block.txs.len(),
        nonce: block.nonce,
        target: target_hex(c.params().difficulty),
        canonical,
        confirmations: if canonical { c.height().saturating_sub(block.number) + 1 } else { 0 },
    }
}

fn tx_json(tx: &Tx) -> TxJson {
    TxJson {
        id: Some(tx.id().to_hex()),
        kind: "transfer".into(),
        sender: tx.sender.clone(),
        recipient: tx.recipient.clone(),
        amount: tx.amount,
        fee: None,
        nonce: tx.nonce,
        signature: tx.signature.clone(),
    }
}

fn account_view(c: &Chain, address: &str) -> AccountView {
    let a = c.account(address);
    AccountView { address: address.to_owned(), balance: a.balance, nonce: a.nonce, next_nonce: c.next_nonce(address) }
}

/// A refusal by the workshop chain as an API error.
fn refused(e: Error) -> ApiError {
    match e {
        Error::Malformed(_) | Error::BadKey => ApiError::BadRequest(e.to_string()),
        Error::Store(_) => ApiError::Unavailable(e.to_string()),
        _ => ApiError::Rejected(format!("rejected: {e}")),
    }
}

/// A transaction sent to `/api/txs`, read through the workshop's own codec
/// (its text is rebuilt and decoded, so the API takes exactly what the
/// network would).
fn decode_tx(j: &TxJson) -> Result<Tx, ApiError> {
    if j.kind != "transfer" {
        return Err(ApiError::BadRequest(format!("kind must be transfer on the workshop chain, not {:?}", j.kind)));
    }
    if j.fee.is_some_and(|f| f > 0) {
        return Err(ApiError::BadRequest("the workshop chain has no fees: leave fee out or send 0".into()));
    }
    let text = format!("{},{},{},{},{}", j.sender, j.recipient, j.nonce, j.amount, j.signature);
    Tx::decode(&text).map_err(refused)
}

impl WorkshopApi {
    /// Submits `tx` (id `id`) and says what became of it: its id when it
    /// is pending (newly or already), 409 when another transaction holds
    /// its sender's nonce.
    async fn submitted(&self, tx: Tx, id: Hash) -> Result<String, ApiError> {
        self.node.submit(tx).await.map_err(refused)?;
        if self.read(move |c| c.mempool().contains(&id)).await? {
            Ok(id.to_hex())
        } else {
            Err(ApiError::Conflict(
                "another transaction with this sender and nonce is pending (or the nonce is used); not added".into(),
            ))
        }
    }
}

#[async_trait]
impl ChainApi for WorkshopApi {
    fn profile(&self) -> ChainProfile {
        profile()
    }

    async fn status(&self) -> Result<StatusView, ApiError> {
        let hash_rate = self.hash_rate();
        let peers = self.peer_names().len();
        let (height, tip, mempool, mempool_bytes, orphans, orphan_bytes, store_error) = self
            .read(|c| {
                (
                    c.height(),
                    c.tip().to_hex(),
                    c.mempool().len(),
                    c.mempool().bytes(),
                    c.orphan_count(),
                    c.orphan_bytes(),
                    c.store_failure().map(str::to_owned),
                )
            })
            .await?;
        Ok(StatusView {
            chain: profile(),
            height,
            tip,
            chain_id: Block::genesis().hash().to_hex(),
            work: None,
            peers,
            mempool,
            mempool_bytes,
            orphans,
            store_ok: store_error.is_none(),
            store_error: store_error.unwrap_or_default(),
            orphan_bytes,
            hash_rate,
            address: toy_api::PeerAdmin::local_addr(&self.p2p),
            wallet: self.key.public_hex(),
            can_mine: self.can_mine,
            sync: None,
        })
    }

    async fn blocks(&self, from: Option<u64>, limit: usize) -> Result<Vec<BlockSummary>, ApiError> {
        self.read(move |c| {
            let from = from.unwrap_or(c.height()).min(c.height());
            (0..=from)
                .rev()
                .take(limit)
                .filter_map(|n| c.hash_at(n).and_then(|h| c.block(&h).map(|b| summary(c, h, b))))
                .collect()
        })
        .await
    }

    async fn block(&self, id: BlockId) -> Result<BlockView, ApiError> {
        self.read(move |c| {
            let hash = match id {
                BlockId::Height(n) => c.hash_at(n),
                BlockId::Hash(h) => Some(Hash(h.0)),
            };
            let block = hash.and_then(|h| c.block(&h).map(|b| (h, b)));
            let (hash, block) = block.ok_or_else(|| ApiError::NotFound("no such block".into()))?;
            Ok(BlockView { summary: summary(c, hash, block), txs: block.txs.iter().map(tx_json).collect() })
        })
        .await?
    }

    async fn tx(&self, id: toy_chain::Hash) -> Result<TxStatus, ApiError> {
        let id = Hash(id.0);
        self.read(move |c| {
            if let Some(tx) = c.mempool().get(&id) {
                return Ok(TxStatus {
                    tx: tx_json(tx),
                    status: "pending".into(),
                    block_height: None,
                    block_hash: None,
                    confirmations: 0,
                });
            }
            let (block, pos) = c.find_tx(&id).ok_or_else(|| {
                ApiError::NotFound(format!("transaction {} is neither pending nor on the best chain", id.to_hex()))
            })?;
            Ok(TxStatus {
                tx: tx_json(&block.txs[pos]),
                status: "confirmed".into(),
                block_height: Some(block.number),
                block_hash: Some(block.hash().to_hex()),
                confirmations: c.height().saturating_sub(block.number) + 1,
            })
        })
        .await?
    }

    async fn account(&self, address: String) -> Result<AccountView, ApiError> {
        // Workshop nodes write keys in lowercase hex, and an account is
        // named by its key's exact text.
        let address = address.to_ascii_lowercase();
        self.read(move |c| account_view(c, &address)).await
    }

    async fn submit_tx(&self, tx: TxJson) -> Result<String, ApiError> {
        let tx = decode_tx(&tx)?;
        let id = tx.id();
        self.submitted(tx, id).await
    }

    async fn tree(&self, depth: u64) -> Result<Vec<TreeNode>, ApiError> {
        self.read(move |c| {
            let low = c.height().saturating_sub(depth);
            c.blocks_from(low)
                .into_iter()
                .map(|(hash, b)| TreeNode {
                    hash: hash.to_hex(),
                    parent: b.parent.to_hex(),
                    height: b.number,
                    canonical: c.is_active(&hash),
                    miner: b.coinbase.clone(),
                    time_ms: None,
                })
                .collect()
        })
        .await
    }

    async fn metrics(&self) -> Result<MetricsSnapshot, ApiError> {
        let hash_rate = self.hash_rate();
        let peers = self.peer_names().len() as u64;
        self.read(move |c| MetricsSnapshot {
            height: c.height(),
            peers,
            mempool: c.mempool().len() as u64,
            orphans: c.orphan_count() as u64,
            store_ok: c.store_failure().is_none(),
            hash_rate,
            counters: Vec::new(),
        })
        .await
    }

    async fn hash_rates(&self) -> Result<Vec<toy_api::RateSample>, ApiError> {
        Ok(self.history.samples())
    }

    async fn mempool(&self, limit: usize) -> Result<Vec<TxJson>, ApiError> {
        self.read(move |c| {
            // No fees to order by: by sender, then nonce (the order they
            // can be mined in).
            let mut txs: Vec<&Tx> = c.mempool().iter().collect();
            txs.sort_by(|a, b| (&a.sender, a.nonce).cmp(&(&b.sender, b.nonce)));
            txs.into_iter().take(limit).map(tx_json).collect()
        })
        .await
    }
}

#[async_trait]
impl WalletApi for WorkshopApi {
    async fn wallet(&self) -> Result<AccountView, ApiError> {
        let me = self.key.public_hex();
        self.read(move |c| account_view(c, &me)).await
    }

    async fn send(&self, req: SendRequest) -> Result<String, ApiError> {
        if req.fee > 0 {
            return Err(ApiError::BadRequest("the workshop chain has no fees: leave fee out or send 0".into()));
        }
        let to = req.to.to_ascii_lowercase();
        if !toy_workshop::crypto::is_public_key(&to) {
            return Err(ApiError::BadRequest(
                "to must be an address: a compressed P-192 public key, 50 hex digits".into(),
            ));
        }
        let _one_at_a_time = self.send_lock.lock().await;
        if req.sign {
            return self.node.send(&self.key, &to, req.amount).await.map(|tx| tx.id().to_hex()).map_err(refused);
        }
        // Unsigned, as the toy API allows, to show what the chain says.
        let me = self.key.public_hex();
        let nonce = self.read(move |c| c.next_nonce(&me)).await?;
        let tx =
            Tx { sender: self.key.public_hex(), recipient: to, nonce, amount: req.amount, signature: String::new() };
        let id = tx.id();
        self.submitted(tx, id).await
    }
}

#[async_trait]
impl MinerApi for WorkshopApi {
    async fn mine(&self) -> Result<BlockSummary, ApiError> {
        if !self.can_mine {
            return Err(ApiError::Forbidden(format!(
                "mining on demand needs a difficulty of {MAX_DIFFICULTY_TO_MINE} or less; this chain's miner threads \
                 mine instead"
            )));
        }
        let Ok(_one_at_a_time) = self.mine_lock.try_lock() else {
            return Err(ApiError::Busy("a block is already being mined on demand; try again when it is done".into()));
        };
        let me = self.key.public_hex();
        // Watch the tip before taking the template, so a move in between
        // is seen.
        let mut tips = self.node.watch_tip();
        tips.borrow_and_update();
        let (template, difficulty) = self.read(move |c| (c.template(&me), c.params().difficulty)).await?;
        let parent = template.parent;
        if tips.borrow().1 != parent {
            return Err(toy_api::tip_moved(tips.borrow().0));
        }
        // Stopped however the request ends (a client gone, a timeout).
        struct CancelOnDrop(Arc<AtomicBool>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let _stop = CancelOnDrop(cancel.clone());
        let grinding = cancel.clone();
        let grind = tokio::task::spawn_blocking(move || {
            let chunk = toy_workshop::node::MINE_CHUNK;
            let mut start = 0;
            while start < MINE_MAX_NONCES && !grinding.load(Ordering::Relaxed) {
                let count = chunk.min(MINE_MAX_NONCES - start);
                if let Some(b) = toy_workshop::miner::grind(&template, difficulty, start, count) {
                    return Some(b);
                }
                start += count;
            }
            None
        });
        let found = toy_api::unless_tip_moves(grind, &mut tips, |(_, tip)| *tip == parent, &cancel)
            .await
            .map_err(|(height, _)| toy_api::tip_moved(height))?;
        let block = found.map_err(|_| ApiError::Unavailable("shutting down".into()))?.ok_or_else(|| {
            ApiError::Unavailable(format!("no block found in {MINE_MAX_NONCES} hashes at this difficulty; try again"))
        })?;
        let hash = block.hash();
        match self.node.submit_block(block.clone()).await.map_err(refused)? {
            Inserted::Tip { .. } | Inserted::Side | Inserted::Known => {
                self.read(move |c| summary(c, hash, &block)).await
            }
            other => Err(ApiError::Unavailable(format!("the mined block was not connected: {other:?}"))),
        }
    }
}

#[async_trait]
impl NetworkApi for WorkshopApi {
    async fn peers(&self) -> Result<Vec<String>, ApiError> {
        Ok(self.peer_names())
    }

    async fn register_peer(&self, addr: String) -> Result<String, ApiError> {
        toy_api::PeerAdmin::connect(&self.p2p, &addr).await.map_err(ApiError::Rejected)
    }

    async fn resolve(&self) -> Result<ResolveReport, ApiError> {
        Err(ApiError::NotFound(
            "the workshop chain has no resolve: it has no message to ask a peer for its tip, and fetches missing \
             blocks by search:block as they are needed"
                .into(),
        ))
    }

    async fn network(&self) -> Result<NetworkView, ApiError> {
        let Ok(_one_at_a_time) = self.crawl_lock.try_lock() else {
            return Err(ApiError::Busy("the network is already being crawled; try again in a few seconds".into()));
        };
        Ok(toy_api::crawl_network(&self.p2p, self.peer_names()).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_has_the_difficulty_in_leading_zeros() {
        assert_eq!(target_hex(7), format!("0000000{}", "f".repeat(57)));
        assert_eq!(target_hex(70).len(), 64);
    }

    #[test]
    fn a_transaction_is_read_through_the_workshop_codec() {
        let key = SecretKey::generate();
        let to = SecretKey::generate().public_hex();
        let tx = toy_workshop::state::sign_tx(&key, &to, 0, 5);
        assert_eq!(decode_tx(&tx_json(&tx)).ok(), Some(tx.clone()));
        // A field smuggling a separator is malformed, not a sixth field.
        let sneaky = TxJson { recipient: format!("{to},1"), ..tx_json(&tx) };
        assert!(matches!(decode_tx(&sneaky), Err(ApiError::BadRequest(_))));
        // A `:` would make every block holding it unreadable.
        let breaking = TxJson { recipient: "ab:cd".into(), ..tx_json(&tx) };
        assert!(matches!(decode_tx(&breaking), Err(ApiError::BadRequest(_))));
        assert!(matches!(decode_tx(&TxJson { fee: Some(1), ..tx_json(&tx) }), Err(ApiError::BadRequest(_))));
        assert!(matches!(decode_tx(&TxJson { kind: "mint".into(), ..tx_json(&tx) }), Err(ApiError::BadRequest(_))));
    }
}
