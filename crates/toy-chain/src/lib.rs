//! # toy-chain — transactions, blocks and the state transition
//!
//! The chain layer of toy: an account-model proof-of-work chain.
//!
//! ```text
//!  Transaction { kind, sender, recipient, amount, fee, nonce, signature }
//!        │ id = SHA-256(postcard(tx without signature))
//!        │ signed (secp256k1): sighash = SHA-256("toy-tx" ‖ chain id ‖ id)
//!        ▼
//!  Mempool ──build_template──► Block { Header, txs }
//!                                 │ merkle_root over wtxids (whole txs, RFC 6962 style)
//!                                 │ hash = SHA-256(165-byte header, nonce last)
//!                                 ▼
//!  Chain::insert ─ check_standalone ─ check_header ─ signatures ─ apply_txs(State) ─► Undo ─► Store::connect
//!     │  block tree: most work wins, reorg via undo, orphans (bounded per source),
//!     │  invalid set (header-decided failures only), pruning
//!     └► watch::Receiver<Tip>
//! ```
//!
//! * [`types`] — addresses (compressed public keys), transactions, headers,
//!   blocks; strict postcard decoding (trailing bytes, oversize input and
//!   non-canonical encodings are errors).
//! * [`crypto`] — keys, deterministic low-S signatures, the [`Verifier`]
//!   trait (k256 by default) and a bounded [`SigCache`].
//! * [`params`] — [`ChainParams`] with the `workshop`, `dev` and `test` presets,
//!   and [`ChainSpec`], a network of its own from a genesis file.
//! * [`state`] — [`State`], [`apply_block`] and its [`Undo`].
//! * [`mempool`], [`builder`] — pending transactions and block templates.
//! * [`tree`] — [`Chain`]: the block tree over a [`Store`].
//! * [`store`] — the [`Store`] trait, [`MemoryStore`] and [`RedbStore`].
//! * [`headers`] — the header-chain check of headers-first sync.
//! * [`sync`] — the wire formats of the chain's direct requests.
//! * `actor` (the `actor` feature, part of `network`) — the chain actor: a
//!   thread that owns the [`Chain`] and its store, a cloneable
//!   `ChainHandle`, the published tip and status, group commits.
//! * `network` (the `network` feature, on by default) — the chain layer on
//!   the gossip trait: gossip handlers, serving requests, headers-first
//!   sync, ancestor fetch, all through the chain actor.
//!
//! With `default-features = false` this crate is the rules, the state
//! transition, the block tree and the store, with no network crate and no
//! async runtime: `cargo tree -p toy-chain --no-default-features -e normal`
//! shows neither (toy-miner depends on it that way).
//!
//! ## Example
//!
//! ```
//! use std::sync::Arc;
//! use toy_chain::{Chain, ChainParams, InsertOutcome, K256Verifier, Keypair, MemoryStore, SigCache, Transaction, TxKind, Signature};
//!
//! let params = ChainParams::test();
//! let mut chain = Chain::open(params, MemoryStore::new(), Arc::new(K256Verifier::new()), Arc::new(SigCache::default()), Default::default())?;
//!
//! // A genesis wallet pays someone.
//! let alice = toy_chain::ChainParams::dev_wallet(0);
//! let bob = Keypair::from_seed(b"bob");
//! let mut tx = Transaction { kind: TxKind::Transfer, sender: alice.address(), recipient: bob.address(), amount: 500, fee: 2, nonce: 0, signature: Signature::EMPTY };
//! alice.sign_tx(&mut tx, &chain.params().chain_id());
//! let now = toy_chain::now_ms();
//! chain.add_tx(tx, now)?;
//!
//! // Mine a block with it and import it.
//! let miner = Keypair::from_seed(b"miner");
//! let template = chain.template(miner.address(), now);
//! let block = toy_chain::mine_simple(template).expect("test difficulty is tiny");
//! assert!(matches!(chain.insert_at(block, now)?, InsertOutcome::Connected { height: 1, .. }));
//! assert_eq!(chain.account(&bob.address()).balance, 500);
//! assert_eq!(chain.account(&miner.address()).balance, 10_000 + 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "actor")]
pub mod actor;
pub mod builder;
pub mod crypto;
pub mod error;
pub mod headers;
pub mod mempool;
#[cfg(feature = "network")]
pub mod network;
pub mod params;
pub mod state;
pub mod store;
pub mod sync;
pub mod target;
pub mod tree;
pub mod types;

pub use builder::{build_template, mine_simple};
#[cfg(feature = "secp256k1")]
pub use crypto::Secp256k1Verifier;
pub use crypto::{K256Verifier, Keypair, SigCache, Verifier};
pub use error::{BlockError, ChainError, DecodeError, KeyError, StoreError, TxError};
pub use mempool::{Mempool, MempoolConfig, MempoolError};
pub use params::{ChainParams, ChainSpec, Retarget, SpecError};
pub use state::{Account, BlockContext, State, Undo, apply_block, check_standalone};
pub use store::{MemoryStore, RedbStore, Store};
pub use tree::{Chain, InsertOutcome, Tip, TreeConfig, now_ms};
pub use types::{Address, Block, Hash, Header, Signature, Transaction, TxKind};
