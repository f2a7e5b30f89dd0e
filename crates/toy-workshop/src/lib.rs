//! The workshop's chain as a chain layer of toy.
//!
//! The workshop (seed 001) describes a chain of its own: transactions and
//! blocks as ASCII text, ECDSA on P-192 with SHA-1, proof of work as leading
//! zero hex digits of the block's SHA-256, a reward of 10 000, at most ten
//! transactions, the highest block number as fork choice, and `search:block`
//! to fetch a missing parent. This crate is that chain, swapped in for
//! `toy-chain` above the same gossip layer, so a toy node can mine on one
//! chain with the workshop's Python nodes.
//!
//! ```
//! use toy_workshop::{Block, Chain, Params, SecretKey};
//!
//! let params = Params::with_difficulty(2);
//! let mut chain = Chain::in_memory(params);
//! let miner = SecretKey::generate();
//! let template = chain.template(&miner.public_hex());
//! let block = toy_workshop::miner::grind(&template, params.difficulty, 0, u64::MAX).expect("found");
//! chain.insert(block).expect("valid");
//! assert_eq!(chain.height(), 1);
//! assert_eq!(chain.balance(&miner.public_hex()), 10_000);
//! ```

pub mod chain;
pub mod crypto;
pub mod mempool;
pub mod miner;
pub mod node;
pub mod params;
pub mod state;
pub mod store;
pub mod types;

pub use chain::{Chain, Inserted};
pub use crypto::SecretKey;
pub use node::WorkshopNode;
pub use params::Params;
pub use types::{Block, Hash, Tx};

/// Errors of the workshop chain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Text that is not a block or transaction as the workshop writes them.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// A key that is not a P-192 secret key.
    #[error("not a P-192 secret key (48 hex digits, non-zero, below the order)")]
    BadKey,
    /// A block whose hash misses the difficulty (costs nothing to make).
    #[error("invalid: the hash does not meet the difficulty")]
    InsufficientWork,
    /// A transaction whose signature does not verify (costs nothing to make).
    #[error("invalid: bad signature")]
    BadSignature,
    /// A block or transaction that breaks another rule of the chain.
    #[error("invalid: {0}")]
    Invalid(&'static str),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}
