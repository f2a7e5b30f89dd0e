//! Flood gossip and search over a [`PeerNetwork`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use toy_p2p::{Misbehaviour, PeerId, PeerNetwork, peer_handler_fn};

use crate::seen::{IdMap, MsgId, Routes, seen_key};
use crate::{Error, Flow, GossipHandler, GossipNetwork, SearchAnswerer, Verdict, lock, new_id, split_id, with_id};

/// New search queries one peer may send at once: 32. Past the rate a query
/// is neither answered, routed nor forwarded. Its sender is not charged:
/// it may be an honest node relaying the searches of the whole network.
///
/// Routes are bounded per peer too ([`ROUTE_SHARE_DIVISOR`]): queries for
/// things nobody has cannot flush other peers' routes out of the table.
pub const SEARCH_BURST: f64 = 32.0;
/// Refill of [`SEARCH_BURST`] per second: 4.
pub const SEARCH_PER_SEC: f64 = 4.0;
/// One peer's share of the route table: an eighth of its capacity (Bitcoin
/// Core bounds each peer's share of its orphan and request tables alike).
pub const ROUTE_SHARE_DIVISOR: usize = 8;
/// Peers whose search budget is remembered: 4 096.
pub const SEARCH_BUDGET_PEERS: usize = 4_096;

/// Limits of the flood gossip.
#[derive(Debug, Clone)]
pub struct Config {
    /// Ids remembered (default 100 000: minutes of a busy network).
    pub seen_capacity: usize,
    /// How long an id is remembered (default 10 min, far longer than a
    /// message takes to cross the network).
    pub seen_ttl: Duration,
    /// Search return paths remembered (default 10 000).
    pub route_capacity: usize,
    /// How long a return path is kept (default 60 s, longer than any search
    /// timeout).
    pub route_ttl: Duration,
    /// Fault injection, for tests and demonstrations: the fraction (0 to 1)
    /// of gossip copies this node drops instead of sending, each peer's copy
    /// drawn on its own (default 0: none). A lossy network shows that
    /// re-announcing and mempool reconciliation repair what flooding loses.
    pub loss: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seen_capacity: 100_000,
            seen_ttl: Duration::from_secs(600),
            route_capacity: 10_000,
            route_ttl: Duration::from_secs(60),
            loss: 0.0,
        }
    }
}

/// Counters of what this node's gossip did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Gossip messages received (first copies and duplicates).
    pub received: u64,
    /// Copies dropped because their id was seen.
    pub duplicates: u64,
    /// Messages sent to peers (originated or forwarded), counted per peer.
    pub sent: u64,
    /// Messages a handler rejected.
    pub rejected: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    duplicates: AtomicU64,
    sent: AtomicU64,
    rejected: AtomicU64,
}

struct Inner<P: PeerNetwork> {
    p2p: P,
    handlers: crate::Registry<dyn GossipHandler>,
    answerers: crate::Registry<dyn SearchAnswerer>,
    /// Kinds whose response handler is installed on the peer network.
    response_kinds: Mutex<HashSet<String>>,
    seen: Mutex<IdMap<()>>,
    routes: Mutex<Routes<PeerId>>,
    /// Search tokens per peer ([`SEARCH_BURST`], [`SEARCH_PER_SEC`]); at
    /// most [`SEARCH_BUDGET_PEERS`] entries, the longest idle evicted.
    search_budget: Mutex<HashMap<PeerId, (f64, Instant)>>,
    searches: crate::Searches,
    counters: Counters,
    /// [`Config::loss`].
    loss: f64,
}

/// The workshop's flood gossip; implements [`GossipNetwork`].
pub struct Gossip<P: PeerNetwork> {
    inner: Arc<Inner<P>>,
}

impl<P: PeerNetwork> Clone for Gossip<P> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<P: PeerNetwork> std::fmt::Debug for Gossip<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl<P: PeerNetwork> Gossip<P> {
    /// Flood gossip over `p2p`.
    pub fn new(p2p: P, config: Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                p2p,
                handlers: crate::Registry::default(),
                answerers: crate::Registry::default(),
                response_kinds: Mutex::new(HashSet::new()),
                seen: Mutex::new(IdMap::new(config.seen_capacity, config.seen_ttl)),
                routes: Mutex::new(Routes::new(
                    config.route_capacity,
                    config.route_ttl,
                    config.route_capacity / ROUTE_SHARE_DIVISOR,
                )),
                search_budget: Mutex::new(HashMap::new()),
                searches: crate::Searches::default(),
                counters: Counters::default(),
                loss: config.loss.clamp(0.0, 1.0),
            }),
        }
    }

    /// The peer network underneath.
    pub fn p2p(&self) -> &P {
        &self.inner.p2p
    }

    /// What this node's gossip has done so far.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            received: c.received.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
        }
    }

    fn weak(&self) -> Weak<Inner<P>> {
        Arc::downgrade(&self.inner)
    }

    fn from_weak(weak: &Weak<Inner<P>>) -> Option<Self> {
        weak.upgrade().map(|inner| Self { inner })
    }

    /// First sight of this message (its [`seen_key`])? Counts receipts and
    /// duplicates.
    fn first_sight(&self, id: MsgId) -> bool {
        let c = &self.inner.counters;
        c.received.fetch_add(1, Ordering::Relaxed);
        let new = lock(&self.inner.seen).insert(id, ());
        if !new {
            c.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        new
    }

    /// One of `peer`'s search tokens, if it has one left.
    fn take_search_token(&self, peer: &PeerId) -> bool {
        let now = Instant::now();
        let mut budget = lock(&self.inner.search_budget);
        if !budget.contains_key(peer)
            && budget.len() >= SEARCH_BUDGET_PEERS
            && let Some(idle) = budget.iter().min_by_key(|(_, (_, at))| *at).map(|(p, _)| p.clone())
        {
            budget.remove(&idle);
        }
        let (tokens, at) = budget.entry(peer.clone()).or_insert((SEARCH_BURST, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * SEARCH_PER_SEC).min(SEARCH_BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn forward(&self, wire_kind: &str, payload: Bytes, except: &[PeerId]) {
        let n = if self.inner.loss > 0.0 {
            let mut n = 0;
            for peer in self.inner.p2p.peers().iter().filter(|p| !except.contains(p)) {
                if rand::random::<f64>() < self.inner.loss {
                    continue;
                }
                if self.inner.p2p.send(peer, wire_kind, payload.clone()).is_ok() {
                    n += 1;
                }
            }
            n
        } else {
            self.inner.p2p.broadcast(wire_kind, payload, except)
        };
        self.inner.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    async fn on_gossip(&self, kind: &str, wire_kind: &str, from: PeerId, payload: Bytes) {
        let Some((id, message)) = split_id(&payload) else {
            self.inner.p2p.report(&from, Misbehaviour::ProtocolViolation);
            return;
        };
        if !self.first_sight(seen_key(wire_kind, &id, &message)) {
            return;
        }
        let handler = self.inner.handlers.get(kind);
        let Some(handler) = handler else { return };
        match handler.handle(Some(from.clone()), message).await {
            Verdict::Accept => self.forward(wire_kind, payload, &[from]),
            Verdict::Ignore => {}
            Verdict::Reject => {
                self.inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, kind, "gossip rejected; sender penalised");
                self.inner.p2p.report(&from, Misbehaviour::InvalidGossip);
            }
        }
    }

    async fn on_search(&self, kind: &str, from: PeerId, payload: Bytes) {
        // gossip id | search id | query: the gossip id keys the seen-set,
        // the search id the return path (the workshop's layout).
        let Some((id, body)) = split_id(&payload) else {
            self.inner.p2p.report(&from, Misbehaviour::ProtocolViolation);
            return;
        };
        let Some((search_id, query)) = split_id(&body) else {
            self.inner.p2p.report(&from, Misbehaviour::ProtocolViolation);
            return;
        };
        let key = seen_key(&format!("gossip:search:{kind}"), &id, &body);
        // The rate is checked before the query is marked seen: a query
        // dropped here is still taken from the next peer that sends it, so
        // a peer that keeps its budget empty cannot black-hole the searches
        // it relays first. Copies already seen cost no token.
        if lock(&self.inner.seen).get(&key).is_none() && !self.take_search_token(&from) {
            // Dropped, not charged: `from` may only be relaying searches
            // that others started (the flood forwards them all).
            tracing::debug!(%from, kind, "search past its sender's rate; dropped");
            return;
        }
        if !self.first_sight(key) {
            return;
        }
        // One return path per search id: a copy of the id on another query
        // (it passes the seen-set, which looks at the gossip id and the
        // content) must not replace the route the first query laid.
        if !lock(&self.inner.routes).insert(search_id, from.clone()) {
            return;
        }
        let answerer = self.inner.answerers.get(kind);
        if let Some(answerer) = answerer
            && let Some(answer) = answerer.answer(query).await
        {
            let _ = self.inner.p2p.send(&from, &format!("search_response:{kind}"), with_id(&search_id, &answer));
            return;
        }
        self.forward(&format!("gossip:search:{kind}"), payload, &[from]);
    }

    fn on_response(&self, kind: &str, from: &PeerId, payload: Bytes) {
        let Some((id, answer)) = split_id(&payload) else {
            self.inner.p2p.report(from, Misbehaviour::ProtocolViolation);
            return;
        };
        if self.inner.searches.deliver(&id, answer) {
            return;
        }
        let back = lock(&self.inner.routes).get(&id).cloned();
        match back {
            Some(peer) => {
                let _ = self.inner.p2p.send(&peer, &format!("search_response:{kind}"), payload);
            }
            None => tracing::debug!(%from, kind, "search response with no return path"),
        }
    }

    fn install_response_handler(&self, kind: &str) -> Result<(), Error> {
        if !lock(&self.inner.response_kinds).insert(kind.to_owned()) {
            return Ok(());
        }
        let weak = self.weak();
        let k = kind.to_owned();
        self.inner.p2p.register_handler(
            &format!("search_response:{kind}"),
            peer_handler_fn(move |from, payload| {
                if let Some(g) = Self::from_weak(&weak) {
                    g.on_response(&k, &from, payload);
                }
                async { None }
            }),
        )?;
        Ok(())
    }
}

#[async_trait]
impl<P: PeerNetwork> GossipNetwork for Gossip<P> {
    fn broadcast(&self, kind: &str, message: Bytes) -> Result<(), Error> {
        let id = new_id();
        let wire = format!("gossip:{kind}");
        lock(&self.inner.seen).insert(seen_key(&wire, &id, &message), ());
        self.forward(&wire, with_id(&id, &message), &[]);
        Ok(())
    }

    fn register_handler(&self, kind: &str, handler: Arc<dyn GossipHandler>) -> Result<(), Error> {
        self.inner.handlers.insert(kind, handler, kind.to_owned())?;
        let weak = self.weak();
        let k = kind.to_owned();
        let wire = format!("gossip:{kind}");
        let w = wire.clone();
        self.inner.p2p.register_handler(
            &wire,
            peer_handler_fn(move |from, payload| {
                let g = Self::from_weak(&weak);
                let (k, w) = (k.clone(), w.clone());
                async move {
                    if let Some(g) = g {
                        g.on_gossip(&k, &w, from, payload).await;
                    }
                    None
                }
            }),
        )?;
        Ok(())
    }

    fn register_search_answerer(&self, kind: &str, answerer: Arc<dyn SearchAnswerer>) -> Result<(), Error> {
        self.inner.answerers.insert(kind, answerer, format!("search:{kind}"))?;
        let weak = self.weak();
        let k = kind.to_owned();
        self.inner.p2p.register_handler(
            &format!("gossip:search:{kind}"),
            peer_handler_fn(move |from, payload| {
                let g = Self::from_weak(&weak);
                let k = k.clone();
                async move {
                    if let Some(g) = g {
                        g.on_search(&k, from, payload).await;
                    }
                    None
                }
            }),
        )?;
        // Relaying answers back needs the response kind on every node that
        // takes part in searches of this kind.
        self.install_response_handler(kind)
    }

    async fn search(
        &self,
        kind: &str,
        query: Bytes,
        timeout: Duration,
        on_answer: &mut (dyn FnMut(Option<Bytes>) -> Flow + Send),
    ) -> Result<(), Error> {
        self.install_response_handler(kind)?;
        let slot = self.inner.searches.open()?;
        let wire = format!("gossip:search:{kind}");
        let gossip_id = new_id();
        let body = with_id(&slot.id, &query);
        lock(&self.inner.seen).insert(seen_key(&wire, &gossip_id, &body), ());
        self.forward(&wire, with_id(&gossip_id, &body), &[]);
        slot.collect(timeout, on_answer).await;
        Ok(())
    }

    fn peer_services(&self) -> &dyn crate::PeerServices {
        &self.inner.p2p
    }
}
