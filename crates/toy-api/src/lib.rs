//! # toy-api — the node's HTTP API, web wallet and block explorer
//!
//! A JSON API on axum over one trait, [`NodeApi`], so it can be served by a
//! real node ([`LiveNode`], the chain over any gossip network) or tested
//! against a double. The same router serves the web wallet and explorer
//! (HTML, CSS and JavaScript embedded in the binary — no CDN), an OpenAPI
//! document, a `/docs` page rendered from it, and Prometheus metrics.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/api/status` | height, tip, work, peers, mempool, hash rate, sync |
//! | GET | `/api/blocks?from=&limit=` | canonical blocks, newest first, paged |
//! | GET | `/api/blocks/{height or hash}` | one block with its transactions |
//! | GET | `/api/blocks/{id}/txs` | a block's transactions |
//! | GET | `/api/txs/{id}` | a transaction: pending or confirmed (height, confirmations) |
//! | POST | `/api/txs` | submit a signed transaction |
//! | GET | `/api/accounts/{address}` | balance, nonce, next nonce |
//! | GET | `/api/wallet` | the node wallet's address and balance |
//! | POST | `/api/wallet/send` | send from the node wallet, signed or not |
//! | POST | `/api/mine` | mine one block now (easy presets only) |
//! | GET/POST | `/api/peers` | the peers / register one |
//! | POST | `/api/resolve` | sync with the peer with the most work |
//! | GET | `/api/network` | each reachable node and its peers (crawled through `p2p:get_peers`) |
//! | GET | `/api/tree?depth=` | the recent block tree with its forks |
//! | GET | `/api/mempool?limit=` | pending transactions, highest fee first |
//! | GET | `/openapi.json`, `/docs`, `/metrics`, `/` | document, docs page, metrics, web page |
//!
//! Every error is a 4xx (or 503 when the node cannot serve) with
//! `{"error": "…"}` saying what is wrong.
//!
//! ## Example
//!
//! ```
//! use std::sync::Arc;
//! use toy_api::{ApiError, NodeApi, router};
//! # use toy_api::*;
//! # struct Double;
//! # #[async_trait::async_trait]
//! # impl NodeApi for Double {
//! #     async fn status(&self) -> Result<StatusView, ApiError> { Err(ApiError::Unavailable("double".into())) }
//! #     async fn blocks(&self, _: Option<u64>, _: usize) -> Result<Vec<BlockSummary>, ApiError> { Ok(vec![]) }
//! #     async fn block(&self, _: BlockId) -> Result<BlockView, ApiError> { Err(ApiError::NotFound("no".into())) }
//! #     async fn tx(&self, _: toy_chain::Hash) -> Result<TxStatus, ApiError> { Err(ApiError::NotFound("no".into())) }
//! #     async fn account(&self, a: toy_chain::Address) -> Result<AccountView, ApiError> { Ok(AccountView { address: a.to_hex(), balance: 0, nonce: 0, next_nonce: 0 }) }
//! #     async fn submit_tx(&self, _: toy_chain::Transaction) -> Result<String, ApiError> { Err(ApiError::Rejected("no".into())) }
//! #     async fn wallet(&self) -> Result<AccountView, ApiError> { Err(ApiError::Unavailable("no".into())) }
//! #     async fn send(&self, _: SendRequest) -> Result<String, ApiError> { Err(ApiError::Rejected("no".into())) }
//! #     async fn mine(&self) -> Result<BlockSummary, ApiError> { Err(ApiError::Forbidden("no".into())) }
//! #     async fn peers(&self) -> Result<Vec<String>, ApiError> { Ok(vec![]) }
//! #     async fn register_peer(&self, _: String) -> Result<String, ApiError> { Err(ApiError::Unavailable("no".into())) }
//! #     async fn resolve(&self) -> Result<toy_chain::network::ResolveReport, ApiError> { Ok(Default::default()) }
//! #     async fn network(&self) -> Result<NetworkView, ApiError> { Ok(NetworkView { nodes: vec![] }) }
//! #     async fn tree(&self, _: u64) -> Result<Vec<TreeNode>, ApiError> { Ok(vec![]) }
//! #     async fn metrics(&self) -> Result<MetricsSnapshot, ApiError> { Ok(Default::default()) }
//! #     async fn mempool(&self, _: usize) -> Result<Vec<TxJson>, ApiError> { Ok(vec![]) }
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! // Any NodeApi — here a double — behind the router, on a free port.
//! let api: Arc<dyn NodeApi> = Arc::new(Double);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move { axum::serve(listener, router(api)).await });
//! # let _ = addr;
//! # Ok(())
//! # }
//! ```

mod live;
mod metrics;
mod openapi;
mod web;

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use toy_chain::network::ResolveReport;
use toy_chain::{Address, Block, Hash, Signature, Transaction, TxKind};

pub use live::{LiveConfig, LiveNode, MAX_NETWORK_NODES, MINE_MAX_NONCES, PeerAdmin};
pub use metrics::MetricsSnapshot;

/// Most blocks in one page of `/api/blocks`.
pub const MAX_PAGE: usize = 100;
/// Deepest block tree `/api/tree` returns.
pub const MAX_TREE_DEPTH: u64 = 200;
/// Largest request body accepted: 64 KiB.
pub const MAX_BODY: usize = 64 * 1024;

/// An API error: its variant decides the HTTP status, its text is the
/// `error` field of the JSON body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such thing.
    #[error("{0}")]
    NotFound(String),
    /// 403: not allowed on this node (mining on a hard preset, say).
    #[error("{0}")]
    Forbidden(String),
    /// 422: well-formed but refused (a transaction the mempool rejects).
    #[error("{0}")]
    Rejected(String),
    /// 503: the node cannot serve this now.
    #[error("{0}")]
    Unavailable(String),
    /// 429: the same kind of work is already running (a block being mined
    /// on demand); try again later.
    #[error("{0}")]
    Busy(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// The JSON body of every error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What is wrong.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(ErrorBody { error: self.to_string() })).into_response()
    }
}

/// A block named by height or by hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockId {
    /// On the best chain at this height.
    Height(u64),
    /// Any known block.
    Hash(Hash),
}

impl FromStr for BlockId {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        if let Ok(h) = s.parse::<u64>() {
            return Ok(Self::Height(h));
        }
        s.parse::<Hash>()
            .map(Self::Hash)
            .map_err(|_| ApiError::BadRequest(format!("{s:?} is neither a height nor a 64-hex-digit block hash")))
    }
}

/// Node status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// Height of the best tip.
    pub height: u64,
    /// Hash of the best tip.
    pub tip: String,
    /// The chain id (genesis hash) every transaction signature is bound to:
    /// a wallet signs [`toy_chain::Transaction::sighash`] with it.
    pub chain_id: String,
    /// Cumulative work of the best chain (decimal: it exceeds JSON's exact
    /// integers).
    pub work: String,
    /// Number of peers.
    pub peers: usize,
    /// Transactions in the mempool.
    pub mempool: usize,
    /// Bytes in the mempool.
    pub mempool_bytes: usize,
    /// Blocks waiting for their parent.
    pub orphans: usize,
    /// Whether the store writes: `false` after a storage failure (a full
    /// disk, say) until it recovers; blocks are neither stored nor mined
    /// meanwhile.
    pub store_ok: bool,
    /// The storage failure while `store_ok` is false; empty otherwise.
    pub store_error: String,
    /// Their bytes (the pool is bounded in both).
    pub orphan_bytes: usize,
    /// Hashes per second of the local miner (0 when not mining).
    pub hash_rate: f64,
    /// The address peers reach this node at.
    pub address: String,
    /// The node wallet's address.
    pub wallet: String,
    /// Whether `/api/mine` works here.
    pub can_mine: bool,
    /// Sync progress.
    pub sync: toy_chain::sync::SyncProgress,
}

/// A block without its transactions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockSummary {
    /// Height.
    pub height: u64,
    /// Block hash.
    pub hash: String,
    /// Parent hash.
    pub parent: String,
    /// Timestamp, ms since the Unix epoch.
    pub time_ms: u64,
    /// Miner address.
    pub miner: String,
    /// Reward claimed (subsidy + fees).
    pub reward: u64,
    /// Number of transactions.
    pub tx_count: usize,
    /// Nonce.
    pub nonce: u64,
    /// Target (hex).
    pub target: String,
    /// On the best chain.
    pub canonical: bool,
    /// Blocks on top of it, itself included (0 when not on the best chain).
    pub confirmations: u64,
}

/// A block with its transactions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockView {
    /// The header and position.
    #[serde(flatten)]
    pub summary: BlockSummary,
    /// The transactions.
    pub txs: Vec<TxJson>,
}

/// A transaction in JSON: hex for keys and signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxJson {
    /// The id (ignored on submission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `transfer` or `mint`.
    pub kind: String,
    /// Sender address (hex).
    pub sender: String,
    /// Recipient address (hex).
    pub recipient: String,
    /// Amount.
    pub amount: u64,
    /// Fee.
    pub fee: u64,
    /// Sender's nonce.
    pub nonce: u64,
    /// Signature (128 hex digits).
    pub signature: String,
}

impl From<&Transaction> for TxJson {
    fn from(tx: &Transaction) -> Self {
        Self {
            id: Some(tx.id().to_hex()),
            kind: match tx.kind {
                TxKind::Transfer => "transfer".into(),
                TxKind::Mint => "mint".into(),
            },
            sender: tx.sender.to_hex(),
            recipient: tx.recipient.to_hex(),
            amount: tx.amount,
            fee: tx.fee,
            nonce: tx.nonce,
            signature: tx.signature.to_hex(),
        }
    }
}

impl TryFrom<&TxJson> for Transaction {
    type Error = ApiError;
    fn try_from(j: &TxJson) -> Result<Self, ApiError> {
        let kind = match j.kind.as_str() {
            "transfer" => TxKind::Transfer,
            "mint" => TxKind::Mint,
            other => return Err(ApiError::BadRequest(format!("kind must be transfer or mint, not {other:?}"))),
        };
        Ok(Transaction {
            kind,
            sender: parse_address("sender", &j.sender)?,
            recipient: parse_address("recipient", &j.recipient)?,
            amount: j.amount,
            fee: j.fee,
            nonce: j.nonce,
            signature: j
                .signature
                .parse::<Signature>()
                .map_err(|_| ApiError::BadRequest("signature must be 128 hex digits".into()))?,
        })
    }
}

/// Parses an address field, naming it in the error.
pub fn parse_address(field: &str, s: &str) -> Result<Address, ApiError> {
    s.trim()
        .parse::<Address>()
        .map_err(|_| ApiError::BadRequest(format!("{field} must be a 66-hex-digit address (a compressed public key)")))
}

/// Where a transaction is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxStatus {
    /// The transaction.
    pub tx: TxJson,
    /// `pending` (in the mempool) or `confirmed`.
    pub status: String,
    /// Height of the block holding it.
    pub block_height: Option<u64>,
    /// Hash of the block holding it.
    pub block_hash: Option<String>,
    /// Blocks on top of it, its own included.
    pub confirmations: u64,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// Address (hex).
    pub address: String,
    /// Balance on the best chain.
    pub balance: u64,
    /// Nonce on the best chain.
    pub nonce: u64,
    /// The nonce its next transaction needs (counting its pending ones).
    pub next_nonce: u64,
}

/// Body of `/api/wallet/send`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendRequest {
    /// Recipient address (hex).
    pub to: String,
    /// Amount.
    pub amount: u64,
    /// Fee.
    #[serde(default)]
    pub fee: u64,
    /// Sign it with the node's key (default true); an unsigned one is
    /// refused by the mempool and the reason comes back.
    #[serde(default = "yes")]
    pub sign: bool,
}

fn yes() -> bool {
    true
}

/// Body of `POST /api/peers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterPeer {
    /// `host:port`.
    pub addr: String,
}

/// One node of the network picture.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkNode {
    /// Its address.
    pub addr: String,
    /// Its peers, when it answered `p2p:get_peers`.
    pub peers: Vec<String>,
    /// Whether it answered.
    pub reachable: bool,
}

/// The network as far as this node can see: every node reachable from it
/// through `p2p:get_peers`, itself first (at most
/// [`MAX_NETWORK_NODES`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkView {
    /// The nodes, this one first.
    pub nodes: Vec<NetworkNode>,
}

/// One block of the recent block tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeNode {
    /// Hash.
    pub hash: String,
    /// Parent hash.
    pub parent: String,
    /// Height.
    pub height: u64,
    /// On the best chain.
    pub canonical: bool,
    /// Miner address.
    pub miner: String,
    /// Timestamp.
    pub time_ms: u64,
}

/// What the API needs from a node.
#[async_trait]
pub trait NodeApi: Send + Sync + 'static {
    /// Node status.
    async fn status(&self) -> Result<StatusView, ApiError>;
    /// Up to `limit` canonical blocks from height `from` (default: the tip)
    /// downwards.
    async fn blocks(&self, from: Option<u64>, limit: usize) -> Result<Vec<BlockSummary>, ApiError>;
    /// One block with its transactions.
    async fn block(&self, id: BlockId) -> Result<BlockView, ApiError>;
    /// A transaction by id.
    async fn tx(&self, id: Hash) -> Result<TxStatus, ApiError>;
    /// An account.
    async fn account(&self, address: Address) -> Result<AccountView, ApiError>;
    /// Submits a signed transaction; returns its id.
    async fn submit_tx(&self, tx: Transaction) -> Result<String, ApiError>;
    /// The node wallet.
    async fn wallet(&self) -> Result<AccountView, ApiError>;
    /// Sends from the node wallet; returns the transaction id.
    async fn send(&self, req: SendRequest) -> Result<String, ApiError>;
    /// Mines a block now.
    async fn mine(&self) -> Result<BlockSummary, ApiError>;
    /// The peers' addresses.
    async fn peers(&self) -> Result<Vec<String>, ApiError>;
    /// Connects to a peer; returns its id.
    async fn register_peer(&self, addr: String) -> Result<String, ApiError>;
    /// Syncs with the best peer.
    async fn resolve(&self) -> Result<ResolveReport, ApiError>;
    /// The network picture.
    async fn network(&self) -> Result<NetworkView, ApiError>;
    /// Blocks of the last `depth` heights, forks included.
    async fn tree(&self, depth: u64) -> Result<Vec<TreeNode>, ApiError>;
    /// Figures for `/metrics`.
    async fn metrics(&self) -> Result<MetricsSnapshot, ApiError>;
    /// Up to `limit` pending transactions, highest fee first.
    async fn mempool(&self, limit: usize) -> Result<Vec<TxJson>, ApiError>;
}

/// A block's summary.
pub fn summarise(block: &Block, canonical: bool, tip_height: u64) -> BlockSummary {
    let h = &block.header;
    BlockSummary {
        height: h.height,
        hash: block.hash().to_hex(),
        parent: h.parent.to_hex(),
        time_ms: h.timestamp_ms,
        miner: h.miner.to_hex(),
        reward: h.reward,
        tx_count: block.txs.len(),
        nonce: h.nonce,
        target: h.target.to_hex(),
        canonical,
        confirmations: if canonical { tip_height.saturating_sub(h.height) + 1 } else { 0 },
    }
}

type Api = State<Arc<dyn NodeApi>>;

/// Query of `/api/blocks`.
#[derive(Debug, Deserialize)]
struct Page {
    from: Option<u64>,
    limit: Option<usize>,
}

/// Query of `/api/tree`.
#[derive(Debug, Deserialize)]
struct Depth {
    depth: Option<u64>,
}

/// A JSON body whose rejection is an [`ApiError`] (axum's own rejection
/// would answer in plain text).
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// A path or query whose rejection is an [`ApiError`].
struct Q<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Q(v)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

async fn status(State(api): Api) -> Result<Json<StatusView>, ApiError> {
    api.status().await.map(Json)
}

async fn blocks(State(api): Api, Q(page): Q<Page>) -> Result<Json<Vec<BlockSummary>>, ApiError> {
    let limit = page.limit.unwrap_or(20);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!("limit must be 1 to {MAX_PAGE}")));
    }
    api.blocks(page.from, limit).await.map(Json)
}

async fn block(State(api): Api, Path(id): Path<String>) -> Result<Json<BlockView>, ApiError> {
    api.block(id.parse()?).await.map(Json)
}

async fn block_txs(State(api): Api, Path(id): Path<String>) -> Result<Json<Vec<TxJson>>, ApiError> {
    api.block(id.parse()?).await.map(|b| Json(b.txs))
}

async fn tx(State(api): Api, Path(id): Path<String>) -> Result<Json<TxStatus>, ApiError> {
    let id = id.parse::<Hash>().map_err(|_| ApiError::BadRequest("a transaction id is 64 hex digits".into()))?;
    api.tx(id).await.map(Json)
}

#[derive(Serialize)]
struct Submitted {
    id: String,
}

async fn submit_tx(State(api): Api, Body(tx): Body<TxJson>) -> Result<Json<Submitted>, ApiError> {
    let tx = Transaction::try_from(&tx)?;
    api.submit_tx(tx).await.map(|id| Json(Submitted { id }))
}

async fn account(State(api): Api, Path(addr): Path<String>) -> Result<Json<AccountView>, ApiError> {
    api.account(parse_address("address", &addr)?).await.map(Json)
}

async fn wallet(State(api): Api) -> Result<Json<AccountView>, ApiError> {
    api.wallet().await.map(Json)
}

async fn send(State(api): Api, Body(req): Body<SendRequest>) -> Result<Json<Submitted>, ApiError> {
    parse_address("to", &req.to)?;
    if req.amount == 0 {
        return Err(ApiError::BadRequest("amount must be above 0".into()));
    }
    api.send(req).await.map(|id| Json(Submitted { id }))
}

async fn mine(State(api): Api) -> Result<Json<BlockSummary>, ApiError> {
    api.mine().await.map(Json)
}

async fn peers(State(api): Api) -> Result<Json<Vec<String>>, ApiError> {
    api.peers().await.map(Json)
}

#[derive(Serialize)]
struct Registered {
    peer: String,
}

async fn register_peer(State(api): Api, Body(req): Body<RegisterPeer>) -> Result<Json<Registered>, ApiError> {
    let addr = req.addr.trim().to_owned();
    let valid = addr.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !valid {
        return Err(ApiError::BadRequest(format!("addr must be host:port, not {addr:?}")));
    }
    api.register_peer(addr).await.map(|peer| Json(Registered { peer }))
}

async fn resolve(State(api): Api) -> Result<Json<ResolveReport>, ApiError> {
    api.resolve().await.map(Json)
}

async fn network(State(api): Api) -> Result<Json<NetworkView>, ApiError> {
    api.network().await.map(Json)
}

async fn tree(State(api): Api, Q(d): Q<Depth>) -> Result<Json<Vec<TreeNode>>, ApiError> {
    let depth = d.depth.unwrap_or(30);
    if depth == 0 || depth > MAX_TREE_DEPTH {
        return Err(ApiError::BadRequest(format!("depth must be 1 to {MAX_TREE_DEPTH}")));
    }
    api.tree(depth).await.map(Json)
}

async fn mempool(State(api): Api, Q(page): Q<Page>) -> Result<Json<Vec<TxJson>>, ApiError> {
    let limit = page.limit.unwrap_or(MAX_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!("limit must be 1 to {MAX_PAGE}")));
    }
    api.mempool(limit).await.map(Json)
}

async fn metrics_text(State(api): Api) -> Result<Response, ApiError> {
    let snapshot = api.metrics().await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], snapshot.render()).into_response())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see /docs".into())
}

/// The whole HTTP surface over `api`: the JSON API, the web page, the
/// OpenAPI document, `/docs` and `/metrics`.
pub fn router(api: Arc<dyn NodeApi>) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/blocks", get(blocks))
        .route("/api/blocks/{id}", get(block))
        .route("/api/blocks/{id}/txs", get(block_txs))
        .route("/api/txs", post(submit_tx))
        .route("/api/txs/{id}", get(tx))
        .route("/api/accounts/{address}", get(account))
        .route("/api/wallet", get(wallet))
        .route("/api/wallet/send", post(send))
        .route("/api/mine", post(mine))
        .route("/api/peers", get(peers).post(register_peer))
        .route("/api/resolve", post(resolve))
        .route("/api/network", get(network))
        .route("/api/tree", get(tree))
        .route("/api/mempool", get(mempool))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .merge(web::routes())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// Binds the first free port from `addr`'s port upward (up to 100 further),
/// as the node does for its p2p port.
///
/// # Errors
/// A malformed address, or no free port.
pub async fn bind_free(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr:?} is not host:port"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return tokio::net::TcpListener::bind(addr).await;
    }
    let mut last = None;
    for p in port..=port.saturating_add(100) {
        match tokio::net::TcpListener::bind((host, p)).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(bad))
}

/// Limits of the HTTP server, against clients that open connections and
/// never finish a request (slowloris).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections served at once; past it new ones are closed at once, so
    /// the API cannot take all of the process's file descriptors from the
    /// p2p side.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: std::time::Duration,
    /// How long one request may take from its headers to its answer, its
    /// body included: a client trickling a body (or never sending the one
    /// its `Content-Length` promised) gets 408 and its connection is freed.
    pub request_timeout: std::time::Duration,
}

/// Default request timeout: 30 s (the longest handler, `/api/network`,
/// takes about 7 s; `/api/mine` gives up well before this).
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Default connections served at once: 128 (a browser opens six; the page,
/// the wallet and a few scripts fit many times over, and 128 sockets leave
/// most of a 1 024 descriptor limit to the p2p side).
pub const DEFAULT_MAX_HTTP_CONNECTIONS: usize = 128;

/// Default header read timeout: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_HTTP_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Open connections not busy with a request, longest waiting first, each
/// with the token that ends it. Bounded by the connection cap (an entry
/// leaves when its connection ends).
#[derive(Default)]
struct Unserved {
    next: u64,
    /// Waiting since (a sequence number) → connection.
    idle: std::collections::BTreeMap<u64, u64>,
    /// Connection → its token and, while idle, its place in `idle`.
    conns: std::collections::HashMap<u64, (tokio_util::sync::CancellationToken, Option<u64>)>,
}

impl Unserved {
    fn add(&mut self) -> (u64, tokio_util::sync::CancellationToken) {
        self.next += 1;
        let (id, token) = (self.next, tokio_util::sync::CancellationToken::new());
        self.conns.insert(id, (token.clone(), None));
        self.set_busy(id, false);
        (id, token)
    }

    fn set_busy(&mut self, id: u64, busy: bool) {
        self.next += 1;
        let seq = self.next;
        let Some((_, place)) = self.conns.get_mut(&id) else { return };
        if let Some(old) = place.take() {
            self.idle.remove(&old);
        }
        if !busy {
            *place = Some(seq);
            self.idle.insert(seq, id);
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some((_, Some(seq))) = self.conns.remove(&id) {
            self.idle.remove(&seq);
        }
    }

    /// Ends the connection waiting longest without a request; `false` when
    /// every one is busy.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, id)) = self.idle.pop_first() else { return false };
        if let Some((token, _)) = self.conns.remove(&id) {
            token.cancel();
        }
        true
    }
}

/// Takes a connection out of [`Unserved`] when its task ends.
struct UnservedGuard(Arc<std::sync::Mutex<Unserved>>, u64);

impl Drop for UnservedGuard {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(self.1);
    }
}

/// How long connections still open at shutdown may take to finish.
const HTTP_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves [`router`] on `listener` until `cancel` fires, with the default
/// [`HttpLimits`].
///
/// # Errors
/// Never at present (accept errors are logged and retried); kept for
/// callers that may see bind-time errors in future.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<dyn NodeApi>,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, api, cancel, HttpLimits::default()).await
}

/// Serves [`router`] on `listener` until `cancel` fires: HTTP/1 through
/// hyper, one task per connection (tracked, stopped at shutdown), at most
/// `limits.max_connections` at once, each closed when its headers take
/// longer than `limits.header_read_timeout`.
///
/// At the cap, a new connection takes the place of the one that has waited
/// longest without a request being served on it (a slowloris client sends a
/// few bytes and waits; an honest client sends its request at once and is
/// busy only while it is answered), so slow clients cannot keep new ones out
/// for a header timeout after another. When every open connection is busy
/// with a request, the new one is closed.
///
/// # Errors
/// As [`serve`].
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    api: Arc<dyn NodeApi>,
    cancel: tokio_util::sync::CancellationToken,
    limits: HttpLimits,
) -> std::io::Result<()> {
    let app = router(api);
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let tasks = tokio_util::task::TaskTracker::new();
    let waiting = Arc::new(std::sync::Mutex::new(Unserved::default()));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("http accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Full: the oldest connection still without a whole request
                // gives way, if there is one.
                let evicted = waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).evict_oldest();
                let freed = match evicted {
                    true => tokio::time::timeout(std::time::Duration::from_secs(1), permits.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok),
                    false => None,
                };
                match freed {
                    Some(permit) => permit,
                    None => {
                        tracing::debug!(%peer, max = limits.max_connections, "http connection limit reached; closing");
                        drop(stream);
                        continue;
                    }
                }
            }
        };
        let (id, kill) = waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).add();
        let inner = hyper_util::service::TowerToHyperService::new(app.clone());
        let w = waiting.clone();
        let service = hyper::service::service_fn(move |req| {
            // A whole request arrived: busy, not a candidate for eviction
            // until it is answered.
            let lock = |w: &std::sync::Mutex<Unserved>| {
                w.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set_busy(id, true)
            };
            lock(&w);
            let answer = hyper::service::Service::call(&inner, req);
            let w = w.clone();
            async move {
                let r = match tokio::time::timeout(limits.request_timeout, answer).await {
                    Ok(r) => r,
                    Err(_) => Ok((StatusCode::REQUEST_TIMEOUT, "request took too long").into_response()),
                };
                w.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set_busy(id, false);
                r
            }
        });
        let cancel = cancel.clone();
        let waiting = waiting.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let _gone = UnservedGuard(waiting, id);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, "http connection ended: {e}");
                    }
                }
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(HTTP_SHUTDOWN_GRACE, conn).await;
                }
                _ = kill.cancelled() => {
                    tracing::debug!(%peer, "http connection without a request evicted for a new one");
                }
            }
        });
    }
    tasks.close();
    let _ = tokio::time::timeout(HTTP_SHUTDOWN_GRACE, tasks.wait()).await;
    Ok(())
}
