//! # toy-api — the node's HTTP API, web wallet and block explorer
//!
//! A JSON API on axum over [`NodeApi`] — four traits by concern,
//! [`ChainApi`], [`WalletApi`], [`MinerApi`] and [`NetworkApi`], as reth
//! splits its RPC into namespaces — so it can be served by a real node
//! ([`LiveNode`], the chain over any gossip network, with the peering
//! services of a [`PeerAdmin`]) or tested against a double. Files: `views`
//! (what is answered and accepted), `error`, `handlers` (the routes),
//! `server` (serving, the connection cap, timeouts), `live`, `metrics`,
//! `openapi`, `web`. The same router serves the web wallet and explorer
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
//! | GET | `/api/hashrate` | the local miner's hash rate, one sample per 10 s for the last hour |
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
//! # impl ChainApi for Double {
//! #     async fn status(&self) -> Result<StatusView, ApiError> { Err(ApiError::Unavailable("double".into())) }
//! #     async fn blocks(&self, _: Option<u64>, _: usize) -> Result<Vec<BlockSummary>, ApiError> { Ok(vec![]) }
//! #     async fn block(&self, _: BlockId) -> Result<BlockView, ApiError> { Err(ApiError::NotFound("no".into())) }
//! #     async fn tx(&self, _: toy_chain::Hash) -> Result<TxStatus, ApiError> { Err(ApiError::NotFound("no".into())) }
//! #     async fn account(&self, a: String) -> Result<AccountView, ApiError> { Ok(AccountView { address: a, balance: 0, nonce: 0, next_nonce: 0 }) }
//! #     async fn submit_tx(&self, _: TxJson) -> Result<String, ApiError> { Err(ApiError::Rejected("no".into())) }
//! #     async fn tree(&self, _: u64) -> Result<Vec<TreeNode>, ApiError> { Ok(vec![]) }
//! #     async fn metrics(&self) -> Result<MetricsSnapshot, ApiError> { Ok(Default::default()) }
//! #     async fn mempool(&self, _: usize) -> Result<Vec<TxJson>, ApiError> { Ok(vec![]) }
//! # }
//! # #[async_trait::async_trait]
//! # impl WalletApi for Double {
//! #     async fn wallet(&self) -> Result<AccountView, ApiError> { Err(ApiError::Unavailable("no".into())) }
//! #     async fn send(&self, _: SendRequest) -> Result<String, ApiError> { Err(ApiError::Rejected("no".into())) }
//! # }
//! # #[async_trait::async_trait]
//! # impl MinerApi for Double {
//! #     async fn mine(&self) -> Result<BlockSummary, ApiError> { Err(ApiError::Forbidden("no".into())) }
//! # }
//! # #[async_trait::async_trait]
//! # impl NetworkApi for Double {
//! #     async fn peers(&self) -> Result<Vec<String>, ApiError> { Ok(vec![]) }
//! #     async fn register_peer(&self, _: String) -> Result<String, ApiError> { Err(ApiError::Unavailable("no".into())) }
//! #     async fn resolve(&self) -> Result<toy_chain::network::ResolveReport, ApiError> { Ok(Default::default()) }
//! #     async fn network(&self) -> Result<NetworkView, ApiError> { Ok(NetworkView { nodes: vec![] }) }
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

pub mod access;
mod error;
mod handlers;
mod history;
mod live;
mod metrics;
mod openapi;
mod server;
mod views;
mod web;

use async_trait::async_trait;
use toy_chain::Hash;
use toy_chain::network::ResolveReport;

pub use access::Access;
pub use error::{ApiError, ErrorBody};
pub use handlers::{router, router_with};
pub use history::{RATE_HISTORY_LEN, RATE_SAMPLE_EVERY, RateHistory, RateSample};
pub use live::{
    LiveConfig, LiveNode, MAX_NETWORK_NODES, MINE_MAX_NONCES, PeerAdmin, crawl_network, tip_moved, unless_tip_moves,
};
pub use metrics::MetricsSnapshot;
pub use server::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_HTTP_CONNECTIONS, DEFAULT_REQUEST_TIMEOUT, HttpLimits, bind_free, serve,
    serve_guarded, serve_with,
};
pub use views::*;

/// Most blocks in one page of `/api/blocks`.
pub const MAX_PAGE: usize = 100;
/// Deepest block tree `/api/tree` returns.
pub const MAX_TREE_DEPTH: u64 = 200;
/// Largest request body accepted: 64 KiB.
pub const MAX_BODY: usize = 64 * 1024;

/// The chain: status, blocks, transactions, accounts, the tree, the
/// mempool, metrics.
#[async_trait]
pub trait ChainApi: Send + Sync + 'static {
    /// Which chain this is and what its records hold (the toy chain's
    /// unless overridden): the handlers check an address's shape by it, the
    /// OpenAPI document describes it, the page leaves out what it lacks.
    fn profile(&self) -> ChainProfile {
        ChainProfile::toy()
    }
    /// Node status.
    async fn status(&self) -> Result<StatusView, ApiError>;
    /// Up to `limit` canonical blocks from height `from` (default: the tip)
    /// downwards.
    async fn blocks(&self, from: Option<u64>, limit: usize) -> Result<Vec<BlockSummary>, ApiError>;
    /// One block with its transactions.
    async fn block(&self, id: BlockId) -> Result<BlockView, ApiError>;
    /// A transaction by id.
    async fn tx(&self, id: Hash) -> Result<TxStatus, ApiError>;
    /// An account. `address` has the profile's shape (checked by the
    /// handler); whether it is a key is the chain's to check.
    async fn account(&self, address: String) -> Result<AccountView, ApiError>;
    /// Submits a signed transaction, as sent (the chain decodes and checks
    /// it); returns its id.
    async fn submit_tx(&self, tx: TxJson) -> Result<String, ApiError>;
    /// Blocks of the last `depth` heights, forks included.
    async fn tree(&self, depth: u64) -> Result<Vec<TreeNode>, ApiError>;
    /// Figures for `/metrics`.
    async fn metrics(&self) -> Result<MetricsSnapshot, ApiError>;
    /// Up to `limit` pending transactions, highest fee first.
    async fn mempool(&self, limit: usize) -> Result<Vec<TxJson>, ApiError>;
    /// The local miner's hash rate over the last hour, oldest first (none
    /// unless overridden).
    async fn hash_rates(&self) -> Result<Vec<RateSample>, ApiError> {
        Ok(Vec::new())
    }
}

/// The node's own wallet: its account and sending from it.
#[async_trait]
pub trait WalletApi: Send + Sync + 'static {
    /// The node wallet.
    async fn wallet(&self) -> Result<AccountView, ApiError>;
    /// Sends from the node wallet; returns the transaction id. The handler
    /// has checked the recipient's shape and that the amount is above 0.
    async fn send(&self, req: SendRequest) -> Result<String, ApiError>;
}

/// Mining on demand.
#[async_trait]
pub trait MinerApi: Send + Sync + 'static {
    /// Mines a block now.
    async fn mine(&self) -> Result<BlockSummary, ApiError>;
}

/// The network: peers, registering one, resolving, the network picture.
#[async_trait]
pub trait NetworkApi: Send + Sync + 'static {
    /// The peers' addresses.
    async fn peers(&self) -> Result<Vec<String>, ApiError>;
    /// Connects to a peer; returns its id.
    async fn register_peer(&self, addr: String) -> Result<String, ApiError>;
    /// Syncs with the best peer.
    async fn resolve(&self) -> Result<ResolveReport, ApiError>;
    /// The network picture.
    async fn network(&self) -> Result<NetworkView, ApiError>;
}

/// What the API needs from a node: its four concerns together (as reth
/// splits its RPC into namespaces). Implement the four; every type that does
/// is a `NodeApi`.
pub trait NodeApi: ChainApi + WalletApi + MinerApi + NetworkApi {}

impl<T: ChainApi + WalletApi + MinerApi + NetworkApi> NodeApi for T {}
