//! # toy — a small but real proof-of-work blockchain node, layer by layer
//!
//! This facade re-exports the layers so a program can depend on one crate:
//!
//! ```text
//!   toy-api     HTTP API, web wallet and explorer                   (NodeApi)
//!   toy-miner   nonce grinding on all cores                         (TemplateSource)
//!   toy-chain   transactions, blocks, state, block tree, storage    (Store, Verifier)
//!   toy-gossip  flood gossip, search, relay                         (GossipNetwork)
//!      │ generic over
//!   toy-p2p     peers: p2p:hello, discovery, scores                 (PeerNetwork)
//!      │ generic over
//!   toy-msg   messages: type, id, kind, payload; request/response   (Messenger)
//!      │ generic over
//!   toy-net   frames: [len u32 BE][payload] over TCP or in memory   (Transport)
//! ```
//!
//! Each layer depends only on the trait of the layer beneath, so any layer can
//! be swapped (TCP for the in-memory network, say) without touching the rest.
//!
//! [`node::NodeBuilder`] wires them all into a running node (config in,
//! [`node::RunningNode`] out, one shutdown that knows the order); the
//! `node` example is its flags.
//!
//! ## Example
//!
//! ```
//! use bytes::Bytes;
//! use toy::msg::{handler_fn, Messaging, Messenger};
//! use toy::net::{MemoryNetwork, Transport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), toy::msg::Error> {
//! let net = MemoryNetwork::new();
//! let (t, ev) = net.endpoint(Default::default());
//! let (alice, _) = Messaging::new(t, ev, Default::default());
//! alice.register_handler("echo", handler_fn(|_, p| async move { Some(p) }))?;
//! let addr = alice.listen("alice:1").await?;
//!
//! let (t, ev) = net.endpoint(Default::default());
//! let (bob, _) = Messaging::new(t, ev, Default::default());
//! let conn = bob.connect(&addr).await?;
//! assert_eq!(&bob.request(conn, "echo", Bytes::from_static(b"hi")).await?[..], b"hi");
//! # Ok(())
//! # }
//! ```

pub mod node;
pub mod workshop_api;
pub mod workshop_node;

/// The HTTP API, web wallet and explorer.
pub use toy_api as api;
pub use toy_chain as chain;
pub use toy_gossip as gossip;
pub use toy_miner as miner;
pub use toy_msg as msg;
pub use toy_net as net;
pub use toy_p2p as p2p;
pub use toy_workshop as workshop;
