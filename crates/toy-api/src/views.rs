//! What the API answers and accepts: the JSON views and requests.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use toy_chain::{Address, Block, Hash, Signature, Transaction, TxKind};

use crate::ApiError;

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

/// What a chain's records hold, so that one API and one page serve chains
/// of different shapes: the toy chain ([`ChainProfile::toy`]) and the
/// workshop's (plain-text blocks without timestamps or fees). The page
/// leaves out what a chain has no field for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainProfile {
    /// Its name: `toy` or `workshop`.
    pub name: String,
    /// Hex digits of an address (a compressed public key): 66 for
    /// secp256k1, 50 for the workshop's P-192.
    pub address_digits: usize,
    /// Hex digits of a transaction signature.
    pub signature_digits: usize,
    /// Whether transactions carry a fee.
    pub fees: bool,
    /// Whether blocks carry a timestamp.
    pub timestamps: bool,
    /// Whether `/api/resolve` can ask peers for their tips.
    pub resolve: bool,
}

impl ChainProfile {
    /// The toy chain's: secp256k1 addresses, 64-byte signatures, fees,
    /// timestamps, `chain:status` to resolve with.
    pub fn toy() -> Self {
        Self {
            name: "toy".into(),
            address_digits: 66,
            signature_digits: 128,
            fees: true,
            timestamps: true,
            resolve: true,
        }
    }

    /// Whether `s` is an address's shape here: a compressed key's `02` or
    /// `03`, [`ChainProfile::address_digits`] hex digits in all (whether it
    /// is a point on the curve is the chain's check).
    pub fn looks_like_address(&self, s: &str) -> bool {
        s.len() == self.address_digits
            && (s.starts_with("02") || s.starts_with("03"))
            && s.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

impl Default for ChainProfile {
    fn default() -> Self {
        Self::toy()
    }
}

/// Node status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// Which chain, and what its records hold.
    #[serde(default)]
    pub chain: ChainProfile,
    /// Height of the best tip.
    pub height: u64,
    /// Hash of the best tip.
    pub tip: String,
    /// The chain id: its genesis hash. On the toy chain every transaction
    /// signature is bound to it (a wallet signs
    /// [`toy_chain::Transaction::sighash`] with it); the workshop's
    /// signatures cover the transaction text alone.
    pub chain_id: String,
    /// Cumulative work of the best chain (decimal: it exceeds JSON's exact
    /// integers); absent on a chain whose fork choice is by height alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<String>,
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
    /// Sync progress; absent on a chain that does not sync in batches
    /// (the workshop's fetches missing parents one by one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<toy_chain::sync::SyncProgress>,
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
    /// Timestamp, ms since the Unix epoch (absent on a chain without
    /// timestamps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<u64>,
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
    /// Fee (absent on a chain without fees; 0 when left out of a
    /// submission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<u64>,
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
            fee: Some(tx.fee),
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
            fee: j.fee.unwrap_or(0),
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
    s.trim().parse::<Address>().ok().filter(Address::is_valid_key).ok_or_else(|| {
        ApiError::BadRequest(format!("{field} must be an address: a compressed secp256k1 public key, 66 hex digits"))
    })
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
    /// Fee (default 0; a chain without fees refuses any other).
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
/// [`MAX_NETWORK_NODES`](crate::MAX_NETWORK_NODES)).
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
    /// Timestamp (absent on a chain without timestamps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<u64>,
}

/// A block's summary.
pub fn summarise(block: &Block, canonical: bool, tip_height: u64) -> BlockSummary {
    let h = &block.header;
    BlockSummary {
        height: h.height,
        hash: block.hash().to_hex(),
        parent: h.parent.to_hex(),
        time_ms: Some(h.timestamp_ms),
        miner: h.miner.to_hex(),
        reward: h.reward,
        tx_count: block.txs.len(),
        nonce: h.nonce,
        target: h.target.to_hex(),
        canonical,
        confirmations: if canonical { tip_height.saturating_sub(h.height) + 1 } else { 0 },
    }
}
