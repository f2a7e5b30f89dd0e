//! # toy-gossip — spreading messages through the network
//!
//! Two implementations of one trait, [`GossipNetwork`], which the chain layer
//! uses to announce transactions and blocks and to search for missing ones:
//!
//! * [`Gossip`] — the workshop's flood gossip over a [`PeerNetwork`]:
//!
//!   ```text
//!    kind "gossip:<kind>"   payload: [16-byte random id][message]
//!    on receipt: seen id? drop : handler(message) →
//!        Accept  → forward to every peer but the sender
//!        Ignore  → keep, do not forward
//!        Reject  → do not forward, report the sender (penalty)
//!   ```
//!
//!   Search: the query floods as `gossip:search:<kind>` =
//!   `[gossip id][search id][query]` (the workshop's layout); a node with the
//!   answer replies to the peer it came from with `search_response:<kind>` =
//!   `[search id][answer]`; every hop remembers where a search id came from
//!   and passes the response back by it.
//!
//! * [`relay::RelayGossip`] — the toycoin design: a central
//!   [`relay::RelayServer`] with channels; nodes publish to a channel and the
//!   relay forwards to every subscriber. The same chain layer runs over it.
//!
//! Every map is bounded: the seen-set and the search return paths by count
//! and age ([`seen::IdMap`]), pending searches by [`MAX_PENDING_SEARCHES`].
//!
//! ## Example
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use toy_gossip::{Gossip, GossipNetwork, Verdict, gossip_handler_fn};
//! use toy_msg::{Messaging, Messenger};
//! use toy_p2p::{P2p, PeerNetwork};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let net = toy_net::MemoryNetwork::new();
//! let (tx, mut rx) = tokio::sync::mpsc::channel(4);
//! let mut nodes = Vec::new();
//! for i in 0..2 {
//!     let (t, ev) = net.endpoint(Default::default());
//!     let (msg, events) = Messaging::new(t, ev, Default::default());
//!     msg.listen(&format!("n{i}:1")).await?;
//!     let boot = if i == 0 { vec![] } else { vec!["n0:1".to_owned()] };
//!     let p2p = P2p::start(msg, events, toy_p2p::Config::builder().bootstrap(boot).build()?)?;
//!     let gossip = Gossip::new(p2p.clone(), Default::default());
//!     let tx = tx.clone();
//!     gossip.register_handler("chat", gossip_handler_fn(move |_, m| {
//!         let tx = tx.clone();
//!         async move { let _ = tx.send(m).await; Verdict::Accept }
//!     }))?;
//!     nodes.push((p2p, gossip));
//! }
//! while nodes[1].0.peers().is_empty() { tokio::task::yield_now().await; }
//! nodes[1].1.broadcast("chat", Bytes::from_static(b"hello"))?;
//! assert_eq!(&rx.recv().await.unwrap()[..], b"hello");
//! # Ok(())
//! # }
//! ```

pub mod chat;
pub mod conformance;
mod flood;
pub mod memory;
mod peers;
pub mod relay;
pub mod seen;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use flood::{Gossip, ROUTE_SHARE_DIVISOR, SEARCH_BUDGET_PEERS, SEARCH_BURST, SEARCH_PER_SEC, Stats};
pub use memory::{MemoryGossip, MemoryGossipNet};
pub use peers::PeerServices;
pub use toy_p2p::{Contribution, Misbehaviour, PeerEvent, PeerHandler, PeerId, PeerNetwork, peer_handler_fn};

/// Length of gossip and search ids.
pub const ID_LEN: usize = 16;

/// Most searches of this node in flight at once: 256.
pub const MAX_PENDING_SEARCHES: usize = 256;

/// What a gossip handler decided about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: forward it to every peer but the sender.
    Accept,
    /// Keep quiet: do not forward (e.g. valid but already known).
    Ignore,
    /// Invalid: do not forward, and penalise the sender.
    Reject,
}

/// Whether a search should wait for more answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep the search open for more answers.
    Continue,
    /// Enough: end the search.
    Done,
}

/// Handles gossip of one kind.
#[async_trait]
pub trait GossipHandler: Send + Sync + 'static {
    /// Judges a message; `from` is the peer it came through (`None` over a
    /// relay, where the sender is unknown).
    async fn handle(&self, from: Option<PeerId>, message: Bytes) -> Verdict;
}

struct GossipHandlerFn<F>(F);

#[async_trait]
impl<F, Fut> GossipHandler for GossipHandlerFn<F>
where
    F: Fn(Option<PeerId>, Bytes) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Verdict> + Send + 'static,
{
    async fn handle(&self, from: Option<PeerId>, message: Bytes) -> Verdict {
        (self.0)(from, message).await
    }
}

/// Wraps an async closure as a [`GossipHandler`].
pub fn gossip_handler_fn<F, Fut>(f: F) -> Arc<dyn GossipHandler>
where
    F: Fn(Option<PeerId>, Bytes) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Verdict> + Send + 'static,
{
    Arc::new(GossipHandlerFn(f))
}

/// Answers searches of one kind.
#[async_trait]
pub trait SearchAnswerer: Send + Sync + 'static {
    /// The answer to `query`, if this node has one.
    async fn answer(&self, query: Bytes) -> Option<Bytes>;
}

struct AnswererFn<F>(F);

#[async_trait]
impl<F, Fut> SearchAnswerer for AnswererFn<F>
where
    F: Fn(Bytes) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Bytes>> + Send + 'static,
{
    async fn answer(&self, query: Bytes) -> Option<Bytes> {
        (self.0)(query).await
    }
}

/// Wraps an async closure as a [`SearchAnswerer`].
pub fn answerer_fn<F, Fut>(f: F) -> Arc<dyn SearchAnswerer>
where
    F: Fn(Bytes) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Bytes>> + Send + 'static,
{
    Arc::new(AnswererFn(f))
}

/// Errors of the gossip layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A handler for this kind already exists.
    #[error("a handler for {0:?} is already registered")]
    DuplicateHandler(String),
    /// Too many searches in flight.
    #[error("too many searches in flight (max {MAX_PENDING_SEARCHES})")]
    TooManySearches,
    /// The peering layer failed.
    #[error(transparent)]
    P2p(#[from] toy_p2p::Error),
    /// The peer gave no answer to a request (no handler for the kind, or it
    /// declined).
    #[error("{0} gave no answer")]
    NoAnswer(String),
}

/// The gossip service the chain layer is generic over; implemented by the
/// flood [`Gossip`] and by [`relay::RelayGossip`].
#[async_trait]
pub trait GossipNetwork: Send + Sync + 'static {
    /// Originates a message of `kind` (it is not passed to our own handler).
    fn broadcast(&self, kind: &str, message: Bytes) -> Result<(), Error>;

    /// Registers the handler judging messages of `kind`.
    fn register_handler(&self, kind: &str, handler: Arc<dyn GossipHandler>) -> Result<(), Error>;

    /// Registers the answerer of searches of `kind`.
    fn register_search_answerer(&self, kind: &str, answerer: Arc<dyn SearchAnswerer>) -> Result<(), Error>;

    /// Searches the network: `on_answer` gets `Some(answer)` per answer until
    /// it returns [`Flow::Done`], and `None` once if `timeout` passes first.
    /// Cancel-safe: dropping the future ends the search.
    async fn search(
        &self,
        kind: &str,
        query: Bytes,
        timeout: Duration,
        on_answer: &mut (dyn FnMut(Option<Bytes>) -> Flow + Send),
    ) -> Result<(), Error>;

    /// The peer layer's services, passed through so that the layer above
    /// (the chain asking one peer for blocks) never reaches past this one:
    /// the peer network itself for flood gossip, a view without the relay
    /// for relay gossip.
    fn peer_services(&self) -> &dyn PeerServices;
}

/// A fresh random id.
pub(crate) fn new_id() -> seen::MsgId {
    rand::random()
}

/// This node's searches in flight, shared by both implementations.
///
/// Bounded: at most [`MAX_PENDING_SEARCHES`]; each entry leaves when its
/// search ends, however it ends (see [`SearchSlot`]).
#[derive(Debug, Default)]
pub(crate) struct Searches(std::sync::Mutex<std::collections::HashMap<seen::MsgId, tokio::sync::mpsc::Sender<Bytes>>>);

/// Answers buffered per search before further ones are dropped.
const SEARCH_ANSWER_BUFFER: usize = 64;

impl Searches {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<seen::MsgId, tokio::sync::mpsc::Sender<Bytes>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a search with a fresh id.
    pub(crate) fn open(&self) -> Result<SearchSlot<'_>, Error> {
        let id = new_id();
        let (tx, rx) = tokio::sync::mpsc::channel(SEARCH_ANSWER_BUFFER);
        let mut map = self.lock();
        if map.len() >= MAX_PENDING_SEARCHES {
            return Err(Error::TooManySearches);
        }
        map.insert(id, tx);
        Ok(SearchSlot { searches: self, id, rx })
    }

    /// Hands an answer to our own search `id`; `false` if it is not ours.
    pub(crate) fn deliver(&self, id: &seen::MsgId, answer: Bytes) -> bool {
        match self.lock().get(id) {
            Some(tx) => {
                let _ = tx.try_send(answer);
                true
            }
            None => false,
        }
    }
}

/// One open search; closing it (dropping) forgets its id.
pub(crate) struct SearchSlot<'a> {
    searches: &'a Searches,
    pub(crate) id: seen::MsgId,
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl SearchSlot<'_> {
    /// Feeds answers to `on_answer` until it says done, or `None` once at
    /// the timeout.
    pub(crate) async fn collect(
        mut self,
        timeout: Duration,
        on_answer: &mut (dyn FnMut(Option<Bytes>) -> Flow + Send),
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(answer)) => {
                    if on_answer(Some(answer)) == Flow::Done {
                        return;
                    }
                }
                Ok(None) | Err(_) => {
                    on_answer(None);
                    return;
                }
            }
        }
    }
}

impl Drop for SearchSlot<'_> {
    fn drop(&mut self) {
        self.searches.lock().remove(&self.id);
    }
}
pub use crate::flood::Config;

/// Locks a mutex, recovering from poisoning (the guarded maps stay valid).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `id ‖ body`: the payload of gossip, search queries and search answers.
pub(crate) fn with_id(id: &seen::MsgId, body: &[u8]) -> Bytes {
    let mut b = bytes::BytesMut::with_capacity(ID_LEN + body.len());
    b.extend_from_slice(id);
    b.extend_from_slice(body);
    b.freeze()
}

/// Splits `id ‖ body`; `None` when shorter than an id.
pub(crate) fn split_id(payload: &Bytes) -> Option<(seen::MsgId, Bytes)> {
    let id: seen::MsgId = payload.get(..ID_LEN)?.try_into().ok()?;
    Some((id, payload.slice(ID_LEN..)))
}

/// Handlers (or answerers) by kind, registered once each by the local
/// program; shared by both implementations.
pub(crate) struct Registry<T: ?Sized>(std::sync::RwLock<std::collections::HashMap<String, Arc<T>>>);

impl<T: ?Sized> Default for Registry<T> {
    fn default() -> Self {
        Self(std::sync::RwLock::new(std::collections::HashMap::new()))
    }
}

impl<T: ?Sized> Registry<T> {
    /// Adds the entry of `kind`; an existing one is an error named `what`.
    pub(crate) fn insert(&self, kind: &str, value: Arc<T>, what: String) -> Result<(), Error> {
        let mut map = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.contains_key(kind) {
            return Err(Error::DuplicateHandler(what));
        }
        map.insert(kind.to_owned(), value);
        Ok(())
    }

    /// The entry of `kind`.
    pub(crate) fn get(&self, kind: &str) -> Option<Arc<T>> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(kind).cloned()
    }
}
