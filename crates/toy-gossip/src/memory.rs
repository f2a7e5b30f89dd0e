//! An in-memory double of the gossip layer, for testing the layer above
//! (the chain) without sockets, as `toy_net::MemoryNetwork` is for the
//! transport.
//!
//! ```text
//!  MemoryGossipNet (a hub)
//!    ├─ join("a") → MemoryGossip ─┐  every node is every other's peer;
//!    ├─ join("b") → MemoryGossip ─┤  broadcast = flood with verdicts and a
//!    └─ join("c") → MemoryGossip ─┘  seen-set; search asks every answerer;
//!                                     requests call the peer's handler
//! ```
//!
//! It keeps the contract of [`GossipNetwork`] (the conformance suite in
//! [`crate::conformance`] runs against it, flood and relay alike): a message
//! is handled once per node, never by its originator, and passed on only
//! when accepted; a rejected message costs its sender, as recorded by
//! [`MemoryGossip::reports`]. A link can drop chosen messages
//! ([`MemoryGossipNet::drop_where`]) to test what the layer above does
//! about loss.
//!
//! Bounded like the real thing: the seen-set by [`crate::Config`]'s
//! capacity and age, the recorded reports and credits by
//! [`MAX_RECORDED`] (oldest dropped).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use toy_p2p::{Contribution, Misbehaviour, PeerEvent, PeerHandler, PeerId};

use crate::seen::{IdMap, MsgId};
use crate::{Error, Flow, GossipHandler, GossipNetwork, PeerServices, Registry, SearchAnswerer, Verdict, lock};

/// Reports and credits each node remembers for inspection: 1 024.
pub const MAX_RECORDED: usize = 1_024;

/// Decides whether a message on a link is dropped: `(from, to, kind,
/// message)`; `kind` is the gossip kind.
pub type DropRule = Arc<dyn Fn(&PeerId, &PeerId, &str, &Bytes) -> bool + Send + Sync>;

#[derive(Default)]
struct Hub {
    nodes: BTreeMap<PeerId, Weak<Node>>,
    drop_rule: Option<DropRule>,
}

/// The hub every [`MemoryGossip`] node of one network joins.
#[derive(Clone, Default)]
pub struct MemoryGossipNet {
    hub: Arc<Mutex<Hub>>,
}

impl std::fmt::Debug for MemoryGossipNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryGossipNet").field("nodes", &lock(&self.hub).nodes.len()).finish()
    }
}

impl MemoryGossipNet {
    /// A new, empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// A node named `name`, peer of every node already here (they see it
    /// arrive).
    pub fn join(&self, name: &str) -> MemoryGossip {
        self.join_with(name, crate::Config::default())
    }

    /// [`MemoryGossipNet::join`] with the seen-set's limits from `config`.
    pub fn join_with(&self, name: &str, config: crate::Config) -> MemoryGossip {
        let id = PeerId(name.to_owned());
        let node = Arc::new(Node {
            id: id.clone(),
            hub: self.hub.clone(),
            handlers: Registry::default(),
            answerers: Registry::default(),
            requests: Registry::default(),
            seen: Mutex::new(IdMap::new(config.seen_capacity, config.seen_ttl)),
            events: tokio::sync::broadcast::channel(64).0,
            reports: Mutex::default(),
            credits: Mutex::default(),
        });
        let others: Vec<Arc<Node>> = {
            let mut hub = lock(&self.hub);
            hub.nodes.retain(|_, n| n.strong_count() > 0);
            let others = hub.nodes.values().filter_map(Weak::upgrade).collect();
            hub.nodes.insert(id.clone(), Arc::downgrade(&node));
            others
        };
        for other in others {
            let _ = other.events.send(PeerEvent::Added(id.clone()));
            let _ = node.events.send(PeerEvent::Added(other.id.clone()));
        }
        MemoryGossip { node }
    }

    /// Drops every message for which `rule` says so, from now on (one rule;
    /// a new one replaces it).
    pub fn drop_where(&self, rule: impl Fn(&PeerId, &PeerId, &str, &Bytes) -> bool + Send + Sync + 'static) {
        lock(&self.hub).drop_rule = Some(Arc::new(rule));
    }
}

struct Node {
    id: PeerId,
    /// The hub lives as long as any of its nodes (it holds them weakly).
    hub: Arc<Mutex<Hub>>,
    handlers: Registry<dyn GossipHandler>,
    answerers: Registry<dyn SearchAnswerer>,
    requests: Registry<dyn PeerHandler>,
    seen: Mutex<IdMap<()>>,
    events: tokio::sync::broadcast::Sender<PeerEvent>,
    reports: Mutex<VecDeque<(PeerId, Misbehaviour)>>,
    credits: Mutex<VecDeque<(PeerId, Contribution)>>,
}

impl Node {
    /// The other nodes still alive, and the link rule.
    fn others(&self) -> (Vec<Arc<Node>>, Option<DropRule>) {
        let hub = lock(&self.hub);
        let others = hub.nodes.iter().filter(|(id, _)| **id != self.id).filter_map(|(_, n)| n.upgrade()).collect();
        (others, hub.drop_rule.clone())
    }

    /// Sends `message` of `kind` to every other node but `except`.
    fn flood(self: &Arc<Self>, kind: &str, id: MsgId, message: &Bytes, except: Option<&PeerId>) {
        let (others, rule) = self.others();
        for to in others.into_iter().filter(|n| Some(&n.id) != except) {
            if rule.as_ref().is_some_and(|r| r(&self.id, &to.id, kind, message)) {
                continue;
            }
            let (from, kind, message) = (self.clone(), kind.to_owned(), message.clone());
            tokio::spawn(async move { to.receive(&from, &kind, id, message).await });
        }
    }

    /// A message from `from`: judged once, passed on if accepted.
    async fn receive(self: Arc<Self>, from: &Arc<Node>, kind: &str, id: MsgId, message: Bytes) {
        let key = crate::seen::seen_key(kind, &id, &message);
        if !lock(&self.seen).insert(key, ()) {
            return;
        }
        let Some(handler) = self.handlers.get(kind) else { return };
        match handler.handle(Some(from.id.clone()), message.clone()).await {
            Verdict::Accept => self.flood(kind, id, &message, Some(&from.id)),
            Verdict::Ignore => {}
            Verdict::Reject => record(&self.reports, (from.id.clone(), Misbehaviour::InvalidGossip)),
        }
    }
}

fn record<T>(list: &Mutex<VecDeque<T>>, item: T) {
    let mut l = lock(list);
    if l.len() >= MAX_RECORDED {
        l.pop_front();
    }
    l.push_back(item);
}

/// One node of a [`MemoryGossipNet`]. Leaving: drop every clone.
#[derive(Clone)]
pub struct MemoryGossip {
    node: Arc<Node>,
}

impl std::fmt::Debug for MemoryGossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryGossip").field("id", &self.node.id).finish_non_exhaustive()
    }
}

impl MemoryGossip {
    /// This node's name, as its peers know it.
    pub fn id(&self) -> &PeerId {
        &self.node.id
    }

    /// The reports this node made about its peers, oldest first.
    pub fn reports(&self) -> Vec<(PeerId, Misbehaviour)> {
        lock(&self.node.reports).iter().cloned().collect()
    }

    /// The credits this node gave its peers, oldest first.
    pub fn credits(&self) -> Vec<(PeerId, Contribution)> {
        lock(&self.node.credits).iter().cloned().collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let (others, _) = self.others();
        for other in others {
            let _ = other.events.send(PeerEvent::Removed(self.id.clone()));
        }
    }
}

#[async_trait]
impl GossipNetwork for MemoryGossip {
    fn broadcast(&self, kind: &str, message: Bytes) -> Result<(), Error> {
        let id = crate::new_id();
        // Our own message is seen: a copy coming back is not handled.
        lock(&self.node.seen).insert(crate::seen::seen_key(kind, &id, &message), ());
        self.node.flood(kind, id, &message, None);
        Ok(())
    }

    fn register_handler(&self, kind: &str, handler: Arc<dyn GossipHandler>) -> Result<(), Error> {
        self.node.handlers.insert(kind, handler, format!("gossip:{kind}"))
    }

    fn register_search_answerer(&self, kind: &str, answerer: Arc<dyn SearchAnswerer>) -> Result<(), Error> {
        self.node.answerers.insert(kind, answerer, format!("search:{kind}"))
    }

    async fn search(
        &self,
        kind: &str,
        query: Bytes,
        timeout: Duration,
        on_answer: &mut (dyn FnMut(Option<Bytes>) -> Flow + Send),
    ) -> Result<(), Error> {
        let (others, rule) = self.node.others();
        let (tx, mut rx) = tokio::sync::mpsc::channel(others.len().max(1));
        for n in others {
            if rule.as_ref().is_some_and(|r| r(&self.node.id, &n.id, &format!("search:{kind}"), &query)) {
                continue;
            }
            let Some(answerer) = n.answerers.get(kind) else { continue };
            let (tx, query) = (tx.clone(), query.clone());
            tokio::spawn(async move {
                if let Some(a) = answerer.answer(query).await {
                    let _ = tx.send(a).await;
                }
            });
        }
        drop(tx);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(a)) => {
                    if on_answer(Some(a)) == Flow::Done {
                        return Ok(());
                    }
                }
                // Everyone answered or declined: nothing more will come, but
                // the caller is told at the timeout, as over a network.
                Ok(None) => {
                    tokio::time::sleep_until(deadline).await;
                    on_answer(None);
                    return Ok(());
                }
                Err(_) => {
                    on_answer(None);
                    return Ok(());
                }
            }
        }
    }

    fn peer_services(&self) -> &dyn PeerServices {
        self
    }
}

#[async_trait]
impl PeerServices for MemoryGossip {
    fn peers(&self) -> Vec<PeerId> {
        self.node.others().0.into_iter().map(|n| n.id.clone()).collect()
    }

    async fn request(&self, peer: &PeerId, kind: &str, payload: Bytes) -> Result<Bytes, Error> {
        let (others, _) = self.node.others();
        let to = others
            .into_iter()
            .find(|n| n.id == *peer)
            .ok_or_else(|| Error::P2p(toy_p2p::Error::UnknownPeer(peer.0.clone())))?;
        let handler = to.requests.get(kind).ok_or_else(|| Error::NoAnswer(peer.0.clone()))?;
        handler.handle(self.node.id.clone(), payload).await.ok_or_else(|| Error::NoAnswer(peer.0.clone()))
    }

    fn register_request_handler(&self, kind: &str, handler: Arc<dyn PeerHandler>) -> Result<(), Error> {
        self.node.requests.insert(kind, handler, kind.to_owned())
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<PeerEvent> {
        self.node.events.subscribe()
    }

    fn report(&self, peer: &PeerId, what: Misbehaviour) {
        record(&self.node.reports, (peer.clone(), what));
    }

    fn credit(&self, peer: &PeerId, what: Contribution) {
        record(&self.node.credits, (peer.clone(), what));
    }
}
