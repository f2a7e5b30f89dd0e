//! # toy-p2p — peering and discovery
//!
//! Turns connections into *peers*: nodes that completed the workshop's
//! `p2p:hello` handshake and are known by the listening address they
//! announced. Dials out to `max_peers / 2` peers whatever the inbound side
//! holds, keeps the total near `max_peers` (accepting inbound up to
//! `2 × max_peers`, evicting by the rules in `evict`), discovers addresses,
//! and drops and bans, by where a connection comes from, peers that
//! misbehave.
//!
//! ```text
//!  dialler                                   listener
//!  ── p2p:hello  "10.0.0.1:15151" ─────────►  accept?  not itself, not a duplicate,
//!  ◄──────── 0x01 "10.0.0.2:15151,10.0.0.3:15151"      not banned, inbound < 2·max
//!             (peers and a random sample of the tables; 0x00 + the same on
//!             rejection: the dialler closes and keeps them in its new table)
//!  ── p2p:get_peers  "" ───────────────────►
//!  ◄──────── "10.0.0.2:15151,10.0.0.3:15151"        (peers only)
//!  ── p2p:get_addrs  "" ───────────────────►
//!  ◄──────── "10.0.0.2:15151,10.0.7.9:15151,…"   (peers and a sample)
//! ```
//!
//! Discovery sources, each optional and combinable: a bootstrap list, the
//! persisted [`book::PeerBook`] (the "tried" table), a [`tracker`], and the
//! address lists of peers (`p2p:get_addrs`, hello answers), kept in the
//! [`addrman`] "new" table bucketed by who told us, until a dial or a
//! feeler reaches them. Dials pick at random from both tables, which keeps
//! the network's graph close to a random one. When two nodes dial each other at once, the connection opened by
//! the node with the smaller address wins on both sides.
//!
//! The layer above uses the [`PeerNetwork`] trait; [`P2p`] implements it over
//! any [`toy_msg::Messenger`] — TCP or the in-memory network alike.
//!
//! Where things are: this file holds the types and the trait; `config`
//! the limits and [`Config`]; `addr` the address format; `state` the peer
//! table, scores and bans; `evict` which inbound peer gives way (after
//! Bitcoin Core's `AttemptToEvictConnection`); `node` the [`P2p`] handle and
//! its start and shutdown; `handshake` the hello both ways, contested
//! claims and connection events; `maintenance` the tick (dialling towards
//! the outbound target, discovery, feelers, trimming, the book, the
//! tracker); `service` the [`PeerNetwork`] implementation; [`addrman`],
//! [`book`] and [`tracker`].
//!
//! ## Example
//!
//! ```
//! use toy_msg::{Messaging, Messenger};
//! use toy_net::MemoryNetwork;
//! use toy_p2p::{Config, P2p, PeerNetwork};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), toy_p2p::Error> {
//! let net = MemoryNetwork::new();
//! let mut nodes = Vec::new();
//! for i in 0..3 {
//!     let (t, ev) = net.endpoint(Default::default());
//!     let (msg, events) = Messaging::new(t, ev, Default::default());
//!     let addr = msg.listen(&format!("node{i}:1")).await?;
//!     let bootstrap = if i == 0 { vec![] } else { vec!["node0:1".to_owned()] };
//!     let config = Config::builder().max_peers(4).bootstrap(bootstrap).build()?;
//!     nodes.push(P2p::start(msg, events, config)?);
//! }
//! // Wait (bounded) until node 0 sees both others.
//! let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
//! while nodes[0].peers().len() < 2 && tokio::time::Instant::now() < deadline {
//!     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! }
//! assert_eq!(nodes[0].peers().len(), 2);
//! # for n in &nodes { n.shutdown().await; }
//! # Ok(())
//! # }
//! ```

mod addr;
pub mod addrman;
pub mod book;
mod config;
mod error;
mod evict;
mod handshake;
mod maintenance;
mod node;
mod service;
mod state;
pub mod tracker;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

pub(crate) use addr::same_host;
pub use addr::{is_valid_addr, join_addrs, parse_addrs};
pub use config::{
    BAN_THRESHOLD, Config, ConfigBuilder, DEFAULT_MAX_PEERS, DEFAULT_TRIM_GRACE, FEELER_EVERY, MAX_ADDRS_PER_LIST,
    MAX_BANS, MAX_PARALLEL_DIALS, MAX_SPARES_PER_PEER, PEER_EVENT_BUFFER, PEER_LIST_SAMPLE, SAMPLE_REFRESH_TICKS,
    TOP_UP_EVERY,
};
pub use error::Error;
pub use node::P2p;
pub use toy_msg::{netgroup_of, origin_of};

/// A peer, known by the listening address it announced in `p2p:hello`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub String);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Something a peer did wrong; each costs a penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misbehaviour {
    /// A message that does not parse (closes the connection too).
    MalformedMessage,
    /// A frame over the maximum length.
    OversizeFrame,
    /// Gossip its handler rejected.
    InvalidGossip,
    /// An invalid block.
    InvalidBlock,
    /// An invalid transaction.
    InvalidTransaction,
    /// Too many messages.
    Spam,
    /// A protocol rule broken.
    ProtocolViolation,
    /// A custom penalty.
    Custom(u32),
}

impl Misbehaviour {
    /// The penalty added to the peer's score; 100 is a ban.
    pub fn penalty(self) -> u32 {
        match self {
            Self::MalformedMessage | Self::OversizeFrame | Self::InvalidBlock => 100,
            Self::InvalidGossip | Self::ProtocolViolation => 50,
            Self::InvalidTransaction => 25,
            Self::Spam => 10,
            Self::Custom(p) => p,
        }
    }
}

/// Something useful a peer did first: it protects the peer from eviction
/// when the inbound side is full (see [`PeerNetwork::credit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contribution {
    /// A new block that passed validation.
    Block,
    /// A new transaction the mempool accepted.
    Transaction,
}

/// Peers coming and going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// A handshake completed.
    Added(PeerId),
    /// A peer disconnected or was dropped.
    Removed(PeerId),
}

/// Handles one message kind from peers.
#[async_trait]
pub trait PeerHandler: Send + Sync + 'static {
    /// Handles `payload` from `peer`; for a request, `Some` is the response.
    async fn handle(&self, peer: PeerId, payload: Bytes) -> Option<Bytes>;
}

struct PeerHandlerFn<F>(F);

#[async_trait]
impl<F, Fut> PeerHandler for PeerHandlerFn<F>
where
    F: Fn(PeerId, Bytes) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Bytes>> + Send + 'static,
{
    async fn handle(&self, peer: PeerId, payload: Bytes) -> Option<Bytes> {
        (self.0)(peer, payload).await
    }
}

/// Wraps an async closure `|peer, payload| async { ... }` as a handler.
pub fn peer_handler_fn<F, Fut>(f: F) -> Arc<dyn PeerHandler>
where
    F: Fn(PeerId, Bytes) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Bytes>> + Send + 'static,
{
    Arc::new(PeerHandlerFn(f))
}

/// The peer network the gossip layer is generic over.
#[async_trait]
pub trait PeerNetwork: Send + Sync + 'static {
    /// The current peers.
    fn peers(&self) -> Vec<PeerId>;

    /// Sends a one-way message to a peer.
    fn send(&self, peer: &PeerId, kind: &str, payload: Bytes) -> Result<(), Error>;

    /// Sends a request to a peer and waits for its response (the messaging
    /// layer's timeout). Cancel-safe.
    async fn request(&self, peer: &PeerId, kind: &str, payload: Bytes) -> Result<Bytes, Error>;

    /// Sends to every peer not in `except`; returns how many were sent.
    fn broadcast(&self, kind: &str, payload: Bytes, except: &[PeerId]) -> usize {
        self.peers()
            .iter()
            .filter(|p| !except.contains(p))
            .filter(|p| self.send(p, kind, payload.clone()).is_ok())
            .count()
    }

    /// Registers the handler of `kind`; only handshaked peers reach it.
    fn register_handler(&self, kind: &str, handler: Arc<dyn PeerHandler>) -> Result<(), Error>;

    /// Peer added / removed events. Bounded: a receiver that falls more than
    /// 1 024 events behind misses the oldest.
    fn subscribe(&self) -> broadcast::Receiver<PeerEvent>;

    /// Reports misbehaviour; past the threshold the peer is dropped and its
    /// address banned for the ban period.
    fn report(&self, peer: &PeerId, what: Misbehaviour);

    /// Credits `peer` with something useful it delivered first; the layer
    /// above calls it for new valid blocks and transactions. Peers with a
    /// recent record are the last an inbound flood can evict (Bitcoin Core
    /// protects such peers the same way).
    fn credit(&self, peer: &PeerId, what: Contribution);

    /// The address we announce.
    fn local_addr(&self) -> String;

    /// Dials `addr` and completes the handshake (manual registration of a
    /// peer, toychain's `/nodes/register`).
    async fn connect(&self, addr: &str) -> Result<PeerId, Error>;

    /// Asks the node at `addr` for its peer list (`p2p:get_peers`, the
    /// workshop's network discovery): over the existing connection when it
    /// is a peer, otherwise over a short-lived connection without a
    /// handshake, closed as soon as the answer is in. Our own address gives
    /// our peers. Waits at most the messenger's request timeout after
    /// connecting. Cancel-safe: dropping the future closes the probe
    /// connection.
    ///
    /// # Errors
    /// A malformed or banned address, or the dial's or the request's error.
    async fn ask_peers(&self, addr: &str) -> Result<Vec<String>, Error>;
}
