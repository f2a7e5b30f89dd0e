//! The central relay (toycoin seed) and the gossip implementation over it.
//!
//! The relay is a node of the peer network like any other, with three kinds:
//!
//! | kind | payload | |
//! | --- | --- | --- |
//! | `relay:subscribe` | channel name | client → relay |
//! | `relay:publish` | channel `0x00` message | client → relay |
//! | `relay:message` | channel `0x00` message | relay → every other subscriber |
//!
//! [`RelayGossip`] maps the [`GossipNetwork`] trait onto channels:
//! `gossip:<kind>` carries `[gossip id][message]`, `search:<kind>` carries
//! `[gossip id][search id][query]` and `search_response:<kind>` carries
//! `[search id][answer]`, as over flood gossip.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use toy_p2p::{Contribution, Misbehaviour, PeerEvent, PeerHandler, PeerId, PeerNetwork, peer_handler_fn};

use crate::seen::{IdMap, seen_key};
use crate::{Error, Flow, GossipHandler, GossipNetwork, SearchAnswerer, Verdict, lock, new_id, split_id, with_id};

/// Most channels a relay keeps: 1 024.
pub const MAX_CHANNELS: usize = 1024;
/// Longest channel name: 128 bytes.
pub const MAX_CHANNEL_LEN: usize = 128;

fn framed(channel: &str, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(channel.len() + 1 + body.len());
    b.put_slice(channel.as_bytes());
    b.put_u8(0);
    b.put_slice(body);
    b.freeze()
}

fn unframe(payload: &Bytes) -> Option<(String, Bytes)> {
    let nul = payload.iter().position(|b| *b == 0)?;
    let channel = std::str::from_utf8(&payload[..nul]).ok()?;
    if channel.is_empty() || channel.len() > MAX_CHANNEL_LEN {
        return None;
    }
    Some((channel.to_owned(), payload.slice(nul + 1..)))
}

/// The relay's subscriptions: channel → subscribers.
///
/// Bounded: [`MAX_CHANNELS`] channels (new ones refused beyond); subscribers
/// are the relay's peers (bounded by its peer limit) and leave with them.
#[derive(Debug, Default)]
pub struct RelayServer {
    channels: Mutex<HashMap<String, HashSet<PeerId>>>,
}

impl RelayServer {
    /// Installs the relay's kinds on `p2p` and follows its peers leaving.
    ///
    /// # Errors
    /// When a `relay:*` kind is already registered.
    pub fn install<P: PeerNetwork + Clone>(p2p: &P) -> Result<Arc<Self>, Error> {
        let server = Arc::new(Self::default());
        let s = server.clone();
        p2p.register_handler(
            "relay:subscribe",
            peer_handler_fn(move |peer, payload| {
                let s = s.clone();
                async move {
                    let ok = s.subscribe(peer, &payload);
                    Some(Bytes::from_static(if ok { &[1] } else { &[0] }))
                }
            }),
        )?;
        let s = server.clone();
        let net = p2p.clone();
        p2p.register_handler(
            "relay:publish",
            peer_handler_fn(move |peer, payload| {
                let s = s.clone();
                let net = net.clone();
                async move {
                    s.publish(&net, &peer, payload);
                    None
                }
            }),
        )?;
        let s = Arc::downgrade(&server);
        let mut events = p2p.subscribe();
        let peers = p2p.clone();
        tokio::spawn(async move {
            loop {
                let ev = events.recv().await;
                let Some(s) = s.upgrade() else { return };
                match ev {
                    Ok(PeerEvent::Removed(peer)) => {
                        for subs in lock(&s.channels).values_mut() {
                            subs.remove(&peer);
                        }
                    }
                    Ok(PeerEvent::Added(_)) => {}
                    // Some removals were missed: keep only current peers.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let current: HashSet<PeerId> = peers.peers().into_iter().collect();
                        for subs in lock(&s.channels).values_mut() {
                            subs.retain(|p| current.contains(p));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(server)
    }

    fn subscribe(&self, peer: PeerId, payload: &[u8]) -> bool {
        let Some(channel) = std::str::from_utf8(payload).ok().filter(|c| !c.is_empty() && c.len() <= MAX_CHANNEL_LEN)
        else {
            return false;
        };
        let mut channels = lock(&self.channels);
        if !channels.contains_key(channel) && channels.len() >= MAX_CHANNELS {
            return false;
        }
        channels.entry(channel.to_owned()).or_default().insert(peer);
        true
    }

    fn publish<P: PeerNetwork>(&self, p2p: &P, from: &PeerId, payload: Bytes) {
        let Some((channel, _)) = unframe(&payload) else { return };
        let subs: Vec<PeerId> = lock(&self.channels)
            .get(&channel)
            .map(|s| s.iter().filter(|p| *p != from).cloned().collect())
            .unwrap_or_default();
        for sub in subs {
            let _ = p2p.send(&sub, "relay:message", payload.clone());
        }
    }

    /// Subscribers of `channel`.
    pub fn subscribers(&self, channel: &str) -> usize {
        lock(&self.channels).get(channel).map_or(0, HashSet::len)
    }
}

/// The peer services a relay node passes up: its peers without the relay
/// (nobody asks the relay for blocks), and their events.
struct RelayPeers<P: PeerNetwork> {
    p2p: P,
    relay: PeerId,
    /// Peer events other than the relay's own (bounded broadcast channel).
    events: tokio::sync::broadcast::Sender<PeerEvent>,
}

#[async_trait]
impl<P: PeerNetwork> crate::PeerServices for RelayPeers<P> {
    fn peers(&self) -> Vec<PeerId> {
        self.p2p.peers().into_iter().filter(|p| *p != self.relay).collect()
    }

    async fn request(&self, peer: &PeerId, kind: &str, payload: Bytes) -> Result<Bytes, Error> {
        Ok(self.p2p.request(peer, kind, payload).await?)
    }

    fn register_request_handler(&self, kind: &str, handler: Arc<dyn PeerHandler>) -> Result<(), Error> {
        Ok(self.p2p.register_handler(kind, handler)?)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<PeerEvent> {
        self.events.subscribe()
    }

    fn report(&self, peer: &PeerId, what: Misbehaviour) {
        self.p2p.report(peer, what);
    }

    fn credit(&self, peer: &PeerId, what: Contribution) {
        self.p2p.credit(peer, what);
    }
}

struct Inner<P: PeerNetwork> {
    peers: RelayPeers<P>,
    handlers: crate::Registry<dyn GossipHandler>,
    answerers: crate::Registry<dyn SearchAnswerer>,
    channels: Mutex<HashSet<String>>,
    seen: Mutex<IdMap<()>>,
    searches: crate::Searches,
}

/// [`GossipNetwork`] over a central relay: publish instead of flooding.
pub struct RelayGossip<P: PeerNetwork> {
    inner: Arc<Inner<P>>,
}

impl<P: PeerNetwork> Clone for RelayGossip<P> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<P: PeerNetwork> RelayGossip<P> {
    /// Gossip through the relay at `relay` (a peer of `p2p`, e.g. its only
    /// bootstrap address). Subscriptions are renewed whenever the relay
    /// (re)connects.
    ///
    /// # Errors
    /// When `relay:message` is already registered on `p2p`.
    pub fn new(p2p: P, relay: PeerId, config: crate::Config) -> Result<Self, Error> {
        let inner = Arc::new(Inner {
            peers: RelayPeers { p2p, relay, events: tokio::sync::broadcast::channel(64).0 },
            handlers: crate::Registry::default(),
            answerers: crate::Registry::default(),
            channels: Mutex::new(HashSet::new()),
            seen: Mutex::new(IdMap::new(config.seen_capacity, config.seen_ttl)),
            searches: crate::Searches::default(),
        });
        let weak: Weak<Inner<P>> = Arc::downgrade(&inner);
        inner.peers.p2p.register_handler(
            "relay:message",
            peer_handler_fn(move |from, payload| {
                let this = weak.upgrade().map(|inner| RelayGossip { inner });
                async move {
                    if let Some(this) = this
                        && from == this.inner.peers.relay
                    {
                        this.on_message(payload).await;
                    }
                    None
                }
            }),
        )?;
        let weak = Arc::downgrade(&inner);
        let mut events = inner.peers.p2p.subscribe();
        tokio::spawn(async move {
            loop {
                let ev = match events.recv().await {
                    Ok(ev) => ev,
                    // Missed events: if the relay is a peer now, it may have
                    // come back unseen; subscribing again is harmless.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let Some(inner) = weak.upgrade() else { return };
                        PeerEvent::Added(inner.peers.relay.clone())
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(inner) = weak.upgrade() else { return };
                let about = match &ev {
                    PeerEvent::Added(p) | PeerEvent::Removed(p) => p,
                };
                if *about != inner.peers.relay {
                    let _ = inner.peers.events.send(ev.clone());
                }
                if ev == PeerEvent::Added(inner.peers.relay.clone())
                    && inner.peers.p2p.peers().contains(&inner.peers.relay)
                {
                    let channels: Vec<String> = lock(&inner.channels).iter().cloned().collect();
                    for c in channels {
                        let _ = inner.peers.p2p.send(&inner.peers.relay, "relay:subscribe", Bytes::from(c));
                    }
                }
            }
        });
        Ok(Self { inner })
    }

    fn join_channel(&self, channel: String) {
        if lock(&self.inner.channels).insert(channel.clone()) {
            // If the relay is not connected yet, the reconnect hook sends it.
            let _ = self.inner.peers.p2p.send(&self.inner.peers.relay, "relay:subscribe", Bytes::from(channel));
        }
    }

    fn publish(&self, channel: &str, body: &[u8]) {
        if let Err(e) = self.inner.peers.p2p.send(&self.inner.peers.relay, "relay:publish", framed(channel, body)) {
            tracing::debug!(channel, "relay publish failed: {e}");
        }
    }

    async fn on_message(&self, payload: Bytes) {
        let Some((channel, body)) = unframe(&payload) else { return };
        let Some((id, rest)) = split_id(&body) else { return };
        if channel.starts_with("search_response:") {
            self.inner.searches.deliver(&id, rest);
            return;
        }
        if !lock(&self.inner.seen).insert(seen_key(&channel, &id, &rest), ()) {
            return;
        }
        if let Some(kind) = channel.strip_prefix("search:") {
            // gossip id | search id | query, as over flood gossip.
            let Some((search_id, query)) = split_id(&rest) else { return };
            let answerer = self.inner.answerers.get(kind);
            if let Some(answerer) = answerer
                && let Some(answer) = answerer.answer(query).await
            {
                self.publish(&format!("search_response:{kind}"), &with_id(&search_id, &answer));
            }
        } else if let Some(kind) = channel.strip_prefix("gossip:") {
            let handler = self.inner.handlers.get(kind);
            if let Some(handler) = handler
                && handler.handle(None, rest).await == Verdict::Reject
            {
                // The relay hides the sender: nobody to penalise.
                tracing::debug!(kind, "relayed gossip rejected");
            }
        }
    }
}

#[async_trait]
impl<P: PeerNetwork> GossipNetwork for RelayGossip<P> {
    fn broadcast(&self, kind: &str, message: Bytes) -> Result<(), Error> {
        let id = new_id();
        let channel = format!("gossip:{kind}");
        lock(&self.inner.seen).insert(seen_key(&channel, &id, &message), ());
        self.publish(&channel, &with_id(&id, &message));
        Ok(())
    }

    fn register_handler(&self, kind: &str, handler: Arc<dyn GossipHandler>) -> Result<(), Error> {
        self.inner.handlers.insert(kind, handler, kind.to_owned())?;
        self.join_channel(format!("gossip:{kind}"));
        Ok(())
    }

    fn register_search_answerer(&self, kind: &str, answerer: Arc<dyn SearchAnswerer>) -> Result<(), Error> {
        self.inner.answerers.insert(kind, answerer, format!("search:{kind}"))?;
        self.join_channel(format!("search:{kind}"));
        Ok(())
    }

    async fn search(
        &self,
        kind: &str,
        query: Bytes,
        timeout: Duration,
        on_answer: &mut (dyn FnMut(Option<Bytes>) -> Flow + Send),
    ) -> Result<(), Error> {
        self.join_channel(format!("search_response:{kind}"));
        let slot = self.inner.searches.open()?;
        let channel = format!("search:{kind}");
        let gossip_id = new_id();
        let body = with_id(&slot.id, &query);
        lock(&self.inner.seen).insert(seen_key(&channel, &gossip_id, &body), ());
        self.publish(&channel, &with_id(&gossip_id, &body));
        slot.collect(timeout, on_answer).await;
        Ok(())
    }

    /// Direct peers other than the relay (none when it is the only one).
    fn peer_services(&self) -> &dyn crate::PeerServices {
        &self.inner.peers
    }
}
