//! # toy-p2p — peering and discovery
//!
//! Turns connections into *peers*: nodes that completed the workshop's
//! `p2p:hello` handshake and are known by the listening address they
//! announced. Keeps the peer count between `max_peers / 2` and `max_peers`
//! (accepting inbound up to `2 × max_peers`), discovers addresses, and drops
//! and bans peers that misbehave.
//!
//! ```text
//!  dialler                                   listener
//!  ── p2p:hello  "10.0.0.1:15151" ─────────►  accept?  not itself, not a duplicate,
//!  ◄──────── 0x01 "10.0.0.2:15151,10.0.0.3:15151"      not banned, inbound < 2·max
//!             (0x00 + peers on rejection: the dialler closes and tries those)
//!  ── p2p:get_peers  "" ───────────────────►
//!  ◄──────── "10.0.0.2:15151,10.0.0.3:15151"
//! ```
//!
//! Discovery sources, each optional and combinable: a bootstrap list, the
//! persisted [`book::PeerBook`], a [`tracker`], and the peer lists of peers.
//! Addresses learned from others are only *candidates* until a dial to them
//! succeeds. When two nodes dial each other at once, the connection opened by
//! the node with the smaller address wins on both sides.
//!
//! The layer above uses the [`PeerNetwork`] trait; [`P2p`] implements it over
//! any [`toy_msg::Messenger`] — TCP or the in-memory network alike.
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

pub mod book;
mod error;
mod evict;
pub mod tracker;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use toy_msg::{ConnId, Messenger, handler_fn};

pub use error::Error;
pub use toy_msg::{netgroup_of, origin_of};

use crate::book::PeerBook;

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

/// Closes a connection when dropped.
struct CloseOnDrop<'a, M: Messenger>(&'a M, ConnId);

impl<M: Messenger> Drop for CloseOnDrop<'_, M> {
    fn drop(&mut self) {
        self.0.close(self.1);
    }
}

/// `p2p:get_peers` answers one connection gets: a burst of 5, then one a
/// second (the workshop's nodes ask every second). Past it the request is
/// not answered (no penalty: a peer list is cheap, and an honest node's
/// timer may run a little fast).
const GET_PEERS_BURST: f64 = 5.0;
/// See [`GET_PEERS_BURST`].
const GET_PEERS_PER_SEC: f64 = 1.0;

/// Rate-penalty points ([`Misbehaviour::Spam`]) a peer loses every
/// maintenance tick (default tick 500 ms: 2 points a second), so only a rate
/// kept broken reaches a ban.
const SCORE_DECAY_PER_TICK: u32 = 1;

/// How long a new inbound peer is spared by the periodic trim above
/// `max_peers` (not by eviction when the inbound side is full): 30 s, time
/// to show a record (a block, a transaction, a round trip) that protects it.
pub const DEFAULT_TRIM_GRACE: Duration = Duration::from_secs(30);

/// How long after a claimant is displaced by the verified owner of its
/// address reports under that address are charged to the claimant: 30 s,
/// far longer than judging a message takes.
const DISPLACED_GRACE: Duration = Duration::from_secs(30);

/// Removed peers whose origin is remembered for reports that arrive after
/// they left: 1 024 (the oldest forgotten first).
const MAX_GONE: usize = 1_024;

/// Announced addresses being verified by dialling, after two inbound peers
/// claimed the same one: at most 256 (new claims past it are not verified).
const MAX_CONTESTED: usize = 256;

/// Whether `s` looks like `host:port`.
pub fn is_valid_addr(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && host.len() <= 253
                && port.parse::<u16>().is_ok_and(|p| p != 0)
                && !host.contains(',')
                && host.chars().all(|c| c.is_ascii_graphic())
        }
        None => false,
    }
}

/// Parses a comma-separated peer list, keeping at most `max` valid addresses.
pub fn parse_addrs(bytes: &[u8], max: usize) -> Vec<String> {
    std::str::from_utf8(bytes)
        .map(|s| s.split(',').map(str::trim).filter(|a| is_valid_addr(a)).take(max).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Joins addresses with commas.
pub fn join_addrs<'a>(addrs: impl IntoIterator<Item = &'a str>) -> String {
    addrs.into_iter().collect::<Vec<_>>().join(",")
}

/// Default maximum of peers: 8.
pub const DEFAULT_MAX_PEERS: usize = 8;
/// Most candidate addresses remembered: 1 000 (oldest dropped first).
pub const MAX_CANDIDATES: usize = 1000;
/// Most addresses taken from one peer list.
pub const MAX_ADDRS_PER_LIST: usize = 100;
/// Most bans remembered: 10 000 (the soonest to expire dropped first).
pub const MAX_BANS: usize = 10_000;
/// Dials in flight at once.
pub const MAX_PARALLEL_DIALS: usize = 8;
/// Between `max_peers / 2` and `max_peers`, one extra dial every this many
/// ticks.
pub const TOP_UP_EVERY: u64 = 10;
/// Score at which a peer is dropped and banned.
pub const BAN_THRESHOLD: u32 = 100;

/// Peering settings. Build with [`Config::builder`].
#[derive(Debug, Clone)]
pub struct Config {
    max_peers: usize,
    advertise: Option<String>,
    bootstrap: Vec<String>,
    book_path: Option<PathBuf>,
    tracker: Option<String>,
    tick: Duration,
    handshake_timeout: Duration,
    ban_period: Duration,
    trim_grace: Duration,
    tracker_ping: Duration,
    seed: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_peers: DEFAULT_MAX_PEERS,
            advertise: None,
            bootstrap: Vec::new(),
            book_path: None,
            tracker: None,
            tick: Duration::from_millis(500),
            handshake_timeout: Duration::from_secs(10),
            ban_period: Duration::from_secs(600),
            trim_grace: DEFAULT_TRIM_GRACE,
            tracker_ping: Duration::from_secs(10),
            seed: None,
        }
    }
}

impl Config {
    /// A builder from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Self::default())
    }

    /// The peer maximum.
    pub fn max_peers(&self) -> usize {
        self.max_peers
    }
}

/// Builds a [`Config`].
#[derive(Debug, Clone)]
pub struct ConfigBuilder(Config);

impl ConfigBuilder {
    /// Peers kept: between `max / 2` and `max` (default 8).
    pub fn max_peers(mut self, max: usize) -> Self {
        self.0.max_peers = max;
        self
    }
    /// The address announced in `p2p:hello` (default: the listening address).
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.0.advertise = Some(addr.into());
        self
    }
    /// Addresses dialled at start and whenever no peer is left.
    pub fn bootstrap(mut self, addrs: Vec<String>) -> Self {
        self.0.bootstrap = addrs;
        self
    }
    /// File of the persisted peers book.
    pub fn book_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.0.book_path = Some(path.into());
        self
    }
    /// A tracker to join and ping.
    pub fn tracker(mut self, addr: impl Into<String>) -> Self {
        self.0.tracker = Some(addr.into());
        self
    }
    /// Period of the maintenance task (default 500 ms).
    pub fn tick(mut self, tick: Duration) -> Self {
        self.0.tick = tick;
        self
    }
    /// How long an inbound connection may stay without `p2p:hello` (10 s).
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.0.handshake_timeout = t;
        self
    }
    /// How long a banned address is refused (default 10 min).
    pub fn ban_period(mut self, t: Duration) -> Self {
        self.0.ban_period = t;
        self
    }
    /// How long a new inbound peer is spared by the trim above the maximum
    /// (default [`DEFAULT_TRIM_GRACE`]).
    pub fn trim_grace(mut self, t: Duration) -> Self {
        self.0.trim_grace = t;
        self
    }
    /// Seed of the peer-selection randomness (default: from the OS).
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = Some(seed);
        self
    }
    /// Checks invariants.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero maximum or tick, or a bad address.
    pub fn build(self) -> Result<Config, Error> {
        let c = self.0;
        if c.max_peers == 0 {
            return Err(Error::InvalidConfig("max_peers must be at least 1"));
        }
        if c.tick.is_zero() || c.handshake_timeout.is_zero() {
            return Err(Error::InvalidConfig("tick and handshake_timeout must be positive"));
        }
        if c.bootstrap.iter().chain(c.advertise.iter()).chain(c.tracker.iter()).any(|a| !is_valid_addr(a)) {
            return Err(Error::InvalidConfig("addresses must be host:port"));
        }
        Ok(c)
    }
}

#[derive(Debug)]
struct PeerInfo {
    conn: ConnId,
    /// We dialled it (the connection's direction, for trimming and slots).
    outbound: bool,
    /// Its address is verified: we reached it by dialling. Inbound peers
    /// only claim one (unless a contested claim was settled by our dial).
    verified: bool,
    /// Penalties for going over a rate ([`Misbehaviour::Spam`]): they fade
    /// ([`SCORE_DECAY_PER_TICK`]); the rest of the score does not.
    spam: u32,
    score: u32,
    /// Where its connection comes from ([`origin_of`]): what a ban hits.
    origin: String,
    /// Its network group ([`netgroup_of`]), for eviction.
    netgroup: String,
    /// When the handshake completed.
    since: Instant,
    /// The fastest answer it gave to one of our requests.
    min_rtt: Option<Duration>,
    /// When it last delivered a new valid block / transaction first.
    last_block: Option<Instant>,
    last_tx: Option<Instant>,
}

impl PeerInfo {
    fn new(conn: ConnId, outbound: bool, verified: bool, remote: &str) -> Self {
        Self {
            conn,
            outbound,
            verified,
            spam: 0,
            score: 0,
            origin: origin_of(remote),
            netgroup: netgroup_of(remote),
            since: Instant::now(),
            min_rtt: None,
            last_block: None,
            last_tx: None,
        }
    }
}

/// Everything the peer manager knows. Bounded: peers by `2 × max_peers`
/// inbound plus `max_peers` outbound; pending handshakes by the transport's
/// inbound limit and the handshake timeout; candidates by [`MAX_CANDIDATES`];
/// bans by [`MAX_BANS`]; the book by its own limit.
struct State {
    peers: HashMap<PeerId, PeerInfo>,
    by_conn: HashMap<ConnId, PeerId>,
    pending_inbound: HashMap<ConnId, Instant>,
    dialing: HashSet<String>,
    candidates: VecDeque<String>,
    /// Bans by origin ([`origin_of`]), never by announced address.
    bans: HashMap<String, Instant>,
    /// Origins of recently removed peers, for late reports.
    gone: VecDeque<(PeerId, String)>,
    /// Claimants displaced by a verified peer of the same address, with
    /// their origin and when: reports under that name within
    /// [`DISPLACED_GRACE`] are theirs (bounded by [`MAX_CONTESTED`]).
    displaced: VecDeque<(PeerId, String, Instant)>,
    /// Addresses two inbound peers claimed: dialled to find the real one.
    contested: HashSet<String>,
    /// `p2p:get_peers` tokens per open connection (entries leave with it).
    get_peers_budget: HashMap<ConnId, (f64, Instant)>,
    book: PeerBook,
    rng: rand::rngs::StdRng,
    /// Secret key of the eviction rule's network-group ranking.
    evict_key: u64,
    tracker_conn: Option<ConnId>,
    last_tracker_ping: Option<Instant>,
    ticks: u64,
}

impl State {
    fn add_candidate(&mut self, addr: String, me: &str) {
        if addr == me || self.peers.contains_key(&PeerId(addr.clone())) || self.candidates.contains(&addr) {
            return;
        }
        self.candidates.push_back(addr);
        while self.candidates.len() > MAX_CANDIDATES {
            self.candidates.pop_front();
        }
    }

    fn banned(&self, addr: &str) -> bool {
        self.bans.get(addr).is_some_and(|until| *until > Instant::now())
    }

    fn peer_list(&self, except: Option<&str>) -> String {
        join_addrs(self.peers.keys().map(|p| p.0.as_str()).filter(|a| Some(*a) != except))
    }

    fn inbound_count(&self) -> usize {
        self.peers.values().filter(|p| !p.outbound).count()
    }

    fn outbound_count(&self) -> usize {
        self.peers.values().filter(|p| p.outbound).count()
    }

    /// The inbound peer that gives way first ([`evict::select`]) among those
    /// connected for at least `min_age`; `None` without such peers.
    /// Outbound peers never do.
    fn eviction_candidate(&self, min_age: Duration) -> Option<PeerId> {
        let cands = self
            .peers
            .iter()
            .filter(|(_, p)| !p.outbound && p.since.elapsed() >= min_age)
            .map(|(id, p)| evict::Candidate {
                id: id.clone(),
                netgroup: p.netgroup.clone(),
                connected: p.since,
                min_rtt: p.min_rtt,
                last_block: p.last_block,
                last_tx: p.last_tx,
            })
            .collect();
        evict::select(cands, self.evict_key)
    }
}

struct Inner<M: Messenger> {
    msg: M,
    config: Config,
    me: String,
    state: Mutex<State>,
    events: broadcast::Sender<PeerEvent>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// The peer manager over a [`Messenger`]; implements [`PeerNetwork`].
///
/// A cheap handle (clones share state). Runs two tasks: one reading the
/// messaging layer's events, one doing maintenance every tick (dialling,
/// trimming, discovery, handshake timeouts, the book, the tracker).
pub struct P2p<M: Messenger> {
    inner: Arc<Inner<M>>,
}

impl<M: Messenger> Clone for P2p<M> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<M: Messenger> fmt::Debug for P2p<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("P2p").field("me", &self.inner.me).field("peers", &self.peers().len()).finish()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl<M: Messenger> P2p<M> {
    /// Starts peering on `msg`, which should already listen. Takes the
    /// messaging layer's events.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] without an address to announce;
    /// [`Error::Msg`] if the `p2p:*` kinds are taken.
    pub fn start(msg: M, msg_events: toy_msg::Events, config: Config) -> Result<Self, Error> {
        let me = config
            .advertise
            .clone()
            .or_else(|| msg.local_addr())
            .ok_or(Error::InvalidConfig("listen first or set an advertise address"))?;
        let book = match &config.book_path {
            Some(p) => PeerBook::load(p),
            None => PeerBook::in_memory(),
        };
        let rng = match config.seed {
            Some(s) => rand::rngs::StdRng::seed_from_u64(s),
            None => rand::rngs::StdRng::from_entropy(),
        };
        let mut state = State {
            peers: HashMap::new(),
            by_conn: HashMap::new(),
            pending_inbound: HashMap::new(),
            dialing: HashSet::new(),
            candidates: VecDeque::new(),
            bans: HashMap::new(),
            gone: VecDeque::new(),
            displaced: VecDeque::new(),
            contested: HashSet::new(),
            get_peers_budget: HashMap::new(),
            book,
            rng,
            evict_key: 0,
            tracker_conn: None,
            last_tracker_ping: None,
            ticks: 0,
        };
        state.evict_key = rand::Rng::r#gen(&mut state.rng);
        for a in config.bootstrap.iter().cloned().chain(state.book.addrs()) {
            state.add_candidate(a, &me);
        }
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            msg,
            config,
            me,
            state: Mutex::new(state),
            events,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let this = Self { inner };
        this.install_handlers()?;
        let (a, b) = (this.clone(), this.clone());
        this.inner.tasks.spawn(async move { a.event_loop(msg_events).await });
        this.inner.tasks.spawn(async move { b.maintenance().await });
        Ok(this)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn weak(&self) -> Weak<Inner<M>> {
        Arc::downgrade(&self.inner)
    }

    fn install_handlers(&self) -> Result<(), Error> {
        let weak = self.weak();
        self.inner.msg.register_handler(
            "p2p:hello",
            handler_fn(move |conn, payload| {
                let this = weak.upgrade().map(|inner| P2p { inner });
                async move { Some(this?.on_hello(conn, &payload)) }
            }),
        )?;
        let weak = self.weak();
        self.inner.msg.register_handler(
            "p2p:get_peers",
            handler_fn(move |conn, _| {
                let this = weak.upgrade().map(|inner| P2p { inner });
                async move {
                    let this = this?;
                    let mut st = this.state();
                    let now = Instant::now();
                    let (tokens, at) = st.get_peers_budget.entry(conn).or_insert((GET_PEERS_BURST, now));
                    *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * GET_PEERS_PER_SEC)
                        .min(GET_PEERS_BURST);
                    *at = now;
                    if *tokens < 1.0 {
                        return None;
                    }
                    *tokens -= 1.0;
                    let asker = st.by_conn.get(&conn).map(|p| p.0.clone());
                    Some(Bytes::from(st.peer_list(asker.as_deref())))
                }
            }),
        )?;
        Ok(())
    }

    /// Decides an inbound `p2p:hello`.
    fn on_hello(&self, conn: ConnId, payload: &[u8]) -> Bytes {
        let me = &self.inner.me;
        let max = self.inner.config.max_peers;
        // A connection already gone has no address: it gets one of its own.
        let remote = self.inner.msg.remote_addr(conn).unwrap_or_else(|| format!("conn:{conn}"));
        let origin = origin_of(&remote);
        let mut st = self.state();
        let addr = std::str::from_utf8(payload).ok().filter(|a| is_valid_addr(a)).map(str::to_owned);
        let mut verify = None;
        let mut evict = None;
        let verdict = match &addr {
            None => Err("malformed address"),
            Some(a) if a == me => Err("that is us"),
            Some(_) if st.by_conn.contains_key(&conn) => Err("already handshaked"),
            // Where the connection comes from is banned, whatever it claims.
            Some(_) if st.banned(&origin) => Err("banned"),
            Some(a) if st.peers.get(&PeerId(a.clone())).is_some_and(|p| p.verified) => Err("already peers"),
            Some(a) if st.peers.contains_key(&PeerId(a.clone())) => {
                // Two inbound peers claim one address; neither is verified,
                // so neither may keep the other out: dial it and keep
                // whoever answers there.
                // Bounded: no more verification dials than dials at once.
                if st.contested.len() < MAX_CONTESTED.min(MAX_PARALLEL_DIALS) && st.contested.insert(a.clone()) {
                    verify = Some(a.clone());
                }
                Err("address claimed by another connection; verifying it by dialling")
            }
            // Both dial at once: the connection opened by the smaller address wins.
            Some(a) if st.dialing.contains(a) && me.as_str() < a.as_str() => Err("simultaneous dial; ours wins"),
            Some(_) if st.inbound_count() >= 2 * max => match st.eviction_candidate(Duration::ZERO) {
                // Full: a newcomer gets in by evicting the peer the eviction
                // rule picks, never one with a proven record while others
                // have none (see `evict`).
                Some(victim) => {
                    evict = st.peers.get(&victim).map(|p| (victim, p.conn));
                    Ok(())
                }
                None => Err("full"),
            },
            Some(_) => Ok(()),
        };
        let list = st.peer_list(addr.as_deref());
        match (verdict, addr) {
            (Ok(()), Some(a)) => {
                st.pending_inbound.remove(&conn);
                let id = PeerId(a);
                st.by_conn.insert(conn, id.clone());
                // The evicted peer leaves the table now, not when its
                // connection's end is reported (a peer that does not read
                // could keep its place long after).
                if let Some((victim, victim_conn)) = &evict
                    && let Some(info) = st.peers.remove(victim)
                {
                    st.by_conn.remove(victim_conn);
                    st.gone.push_back((victim.clone(), info.origin));
                    while st.gone.len() > MAX_GONE {
                        st.gone.pop_front();
                    }
                }
                st.peers.insert(id.clone(), PeerInfo::new(conn, false, false, &remote));
                drop(st);
                if let Some((victim, victim_conn)) = evict {
                    tracing::debug!(me = %self.inner.me, peer = %victim, "inbound side full; evicted for a newcomer");
                    self.inner.msg.close(victim_conn);
                    let _ = self.inner.events.send(PeerEvent::Removed(victim));
                }
                // Said hello: it may now send blocks and sync answers.
                self.inner.msg.promote(conn);
                tracing::debug!(me = %self.inner.me, peer = %id, "inbound peer accepted");
                let _ = self.inner.events.send(PeerEvent::Added(id));
                let mut out = vec![1u8];
                out.extend_from_slice(list.as_bytes());
                Bytes::from(out)
            }
            (verdict, addr) => {
                drop(st);
                if let Some(a) = verify {
                    let this = self.clone();
                    self.inner.tasks.spawn(async move {
                        tokio::select! {
                            _ = this.inner.cancel.cancelled() => {}
                            r = this.connect(&a) => tracing::debug!(addr = %a, ok = r.is_ok(), "contested address dialled"),
                        }
                        this.state().contested.remove(&a);
                    });
                }
                tracing::debug!(me = %self.inner.me, ?addr, reason = verdict.err().unwrap_or(""), "hello rejected");
                let mut out = vec![0u8];
                out.extend_from_slice(list.as_bytes());
                Bytes::from(out)
            }
        }
    }

    async fn event_loop(&self, mut events: toy_msg::Events) {
        loop {
            let ev = tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                ev = events.next() => match ev { Some(ev) => ev, None => return },
            };
            match ev {
                toy_msg::Event::Connected { conn, incoming: true, .. } => {
                    // The hello may already have been handled: the messaging
                    // layer dispatches it on its own task, so it can overtake
                    // this event. Such a connection is a peer, not pending
                    // (this race closed accepted peers after the handshake
                    // timeout).
                    let deadline = Instant::now() + self.inner.config.handshake_timeout;
                    let mut st = self.state();
                    if !st.by_conn.contains_key(&conn) {
                        st.pending_inbound.insert(conn, deadline);
                    }
                }
                toy_msg::Event::Disconnected { conn, reason } => {
                    let removed = {
                        let mut st = self.state();
                        st.pending_inbound.remove(&conn);
                        st.get_peers_budget.remove(&conn);
                        if st.tracker_conn == Some(conn) {
                            st.tracker_conn = None;
                        }
                        // Only a handshaked peer on this very connection is
                        // removed (a provisional dial or a replaced
                        // connection is not).
                        match st.by_conn.remove(&conn) {
                            Some(id) if st.peers.get(&id).is_some_and(|p| p.conn == conn) => {
                                if let Some(info) = st.peers.remove(&id) {
                                    st.gone.push_back((id.clone(), info.origin));
                                    while st.gone.len() > MAX_GONE {
                                        st.gone.pop_front();
                                    }
                                }
                                Some(id)
                            }
                            _ => None,
                        }
                    };
                    if let Some(id) = removed {
                        if reason.is_peer_fault() {
                            self.report(&id, Misbehaviour::OversizeFrame);
                        }
                        tracing::debug!(me = %self.inner.me, peer = %id, %reason, "peer removed");
                        let _ = self.inner.events.send(PeerEvent::Removed(id));
                    }
                }
                toy_msg::Event::Unhandled { conn, kind } => {
                    // Kinds nobody here speaks, past their rate: a slip costs
                    // little and fades; a stream of them gets the sender banned.
                    let id = self.state().by_conn.get(&conn).cloned();
                    if let Some(id) = id {
                        tracing::debug!(peer = %id, %kind, "messages of unhandled kinds past their rate");
                        self.report(&id, Misbehaviour::Spam);
                    }
                }
                toy_msg::Event::Misbehaved { conn, error } => {
                    let id = self.state().by_conn.get(&conn).cloned();
                    if let Some(id) = id {
                        tracing::info!(peer = %id, %error, "peer sent a malformed message");
                        self.report(&id, Misbehaviour::MalformedMessage);
                    }
                }
                _ => {}
            }
        }
    }

    /// Dials `addr` and performs the handshake.
    ///
    /// # Errors
    /// [`Error::Refused`] for ourselves, an existing peer or a banned address,
    /// [`Error::Rejected`] when the peer said no, and transport errors.
    pub async fn connect(&self, addr: &str) -> Result<PeerId, Error> {
        if !is_valid_addr(addr) {
            return Err(Error::BadAddress(addr.to_owned()));
        }
        {
            let mut st = self.state();
            let refuse = |reason| Err(Error::Refused { addr: addr.to_owned(), reason });
            if addr == self.inner.me {
                return refuse("that is us");
            }
            let contested = st.contested.contains(addr);
            if st.peers.get(&PeerId(addr.to_owned())).is_some_and(|p| p.verified || !contested) {
                return refuse("already a peer");
            }
            if st.banned(&origin_of(addr)) {
                return refuse("banned");
            }
            if !st.dialing.insert(addr.to_owned()) {
                return refuse("already dialling");
            }
        }
        let result = self.dial(addr).await;
        let mut st = self.state();
        st.dialing.remove(addr);
        match &result {
            Ok(_) => st.book.seen(addr, now_ms()),
            Err(Error::Rejected { .. }) => st.book.seen(addr, now_ms()),
            Err(_) => st.book.failed(addr),
        }
        result
    }

    async fn dial(&self, addr: &str) -> Result<PeerId, Error> {
        let msg = &self.inner.msg;
        let conn = msg.connect(addr).await?;
        let remote = msg.remote_addr(conn).unwrap_or_else(|| addr.to_owned());
        let id = PeerId(addr.to_owned());
        // Provisionally map the connection to the peer: if it accepts, it may
        // send us gossip before its answer to our hello is processed here.
        self.state().by_conn.insert(conn, id.clone());
        let fail = |e: Error| {
            self.state().by_conn.remove(&conn);
            msg.close(conn);
            Err(e)
        };
        let response = match msg.request(conn, "p2p:hello", Bytes::from(self.inner.me.clone())).await {
            Ok(r) => r,
            Err(e) => return fail(e.into()),
        };
        let Some((&flag, list)) = response.split_first() else {
            return fail(Error::BadHelloResponse { addr: addr.to_owned() });
        };
        let learned = parse_addrs(list, MAX_ADDRS_PER_LIST);
        let mut st = self.state();
        for a in learned {
            st.add_candidate(a, &self.inner.me);
        }
        // The address answered: an inbound peer merely claiming it while it
        // was contested gives way to the verified connection.
        let mut displaced = None;
        if flag == 1
            && st.contested.contains(addr)
            && let Some(old) = st.peers.get(&id).filter(|p| !p.verified).map(|p| p.conn)
        {
            if let Some(info) = st.peers.remove(&id) {
                // Its messages still being judged are its own: reports under
                // this name for a while go to where it came from, not to the
                // verified peer that now holds the name.
                st.displaced.push_back((id.clone(), info.origin, Instant::now()));
                while st.displaced.len() > MAX_CONTESTED {
                    st.displaced.pop_front();
                }
            }
            st.by_conn.remove(&old);
            displaced = Some(old);
        }
        if flag != 1 || st.peers.contains_key(&id) {
            st.by_conn.remove(&conn);
        }
        match flag {
            1 if !st.peers.contains_key(&id) => {
                st.by_conn.insert(conn, id.clone());
                // A dial that settled a contested claim takes the claimant's
                // inbound slot; it does not add an outbound one (so claims
                // cannot fill our outbound slots with dials we were made to do).
                let outbound = displaced.is_none();
                st.peers.insert(id.clone(), PeerInfo::new(conn, outbound, true, &remote));
                drop(st);
                if let Some(old) = displaced {
                    tracing::info!(me = %self.inner.me, peer = %id, "a connection claiming this address was not it; closed");
                    msg.close(old);
                    let _ = self.inner.events.send(PeerEvent::Removed(id.clone()));
                }
                tracing::debug!(me = %self.inner.me, peer = %id, "outbound peer added");
                let _ = self.inner.events.send(PeerEvent::Added(id.clone()));
                Ok(id)
            }
            1 => {
                // They dialled us meanwhile and that connection won.
                drop(st);
                msg.close(conn);
                Err(Error::Refused { addr: addr.to_owned(), reason: "already a peer" })
            }
            0 => {
                drop(st);
                msg.close(conn);
                Err(Error::Rejected { addr: addr.to_owned() })
            }
            _ => {
                drop(st);
                msg.close(conn);
                Err(Error::BadHelloResponse { addr: addr.to_owned() })
            }
        }
    }

    /// Drops a peer (closing its connection).
    pub fn disconnect(&self, peer: &PeerId) {
        let conn = self.state().peers.get(peer).map(|p| p.conn);
        if let Some(conn) = conn {
            self.inner.msg.close(conn);
        }
    }

    /// Addresses waiting to be tried.
    pub fn candidates(&self) -> Vec<String> {
        self.state().candidates.iter().cloned().collect()
    }

    /// The peers book's addresses.
    pub fn book(&self) -> Vec<String> {
        self.state().book.addrs()
    }

    /// A peer's misbehaviour score (`None` if not a peer).
    pub fn score(&self, peer: &PeerId) -> Option<u32> {
        self.state().peers.get(peer).map(|p| p.score.saturating_add(p.spam))
    }

    /// Whether connections from `addr`'s origin ([`origin_of`]) are refused
    /// now.
    pub fn is_banned(&self, addr: &str) -> bool {
        self.state().banned(&origin_of(addr))
    }

    /// The messaging layer underneath.
    pub fn messenger(&self) -> &M {
        &self.inner.msg
    }

    /// Stops the tasks, saves the book and shuts the messaging layer down.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        let tracker_conn = self.state().tracker_conn;
        if let Some(conn) = tracker_conn {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                self.inner.msg.request(conn, "tracker:leave", Bytes::from(self.inner.me.clone())),
            )
            .await;
        }
        self.inner.msg.shutdown().await;
        self.inner.tasks.wait().await;
        if let Err(e) = self.state().book.save() {
            tracing::warn!("cannot save peers book: {e}");
        }
    }

    async fn maintenance(&self) {
        let mut interval = tokio::time::interval(self.inner.config.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                _ = interval.tick() => {}
            }
            self.tick().await;
        }
    }

    async fn tick(&self) {
        let max = self.inner.config.max_peers;
        let now = Instant::now();
        let (to_close, dials, ask, trim, tracker_due) = {
            let mut st = self.state();
            st.ticks += 1;
            // Rate penalties fade: an honest peer that now and then goes
            // over a rate is not banned by the sum of a day's slips; a flood
            // still is. Other misbehaviour is remembered as long as the peer.
            for p in st.peers.values_mut() {
                p.spam = p.spam.saturating_sub(SCORE_DECAY_PER_TICK);
            }
            // Handshake timeouts and expired bans.
            let expired: Vec<ConnId> = st
                .pending_inbound
                .iter()
                .filter(|(c, d)| **d <= now && !st.by_conn.contains_key(c))
                .map(|(c, _)| *c)
                .collect();
            for c in &expired {
                st.pending_inbound.remove(c);
            }
            st.bans.retain(|_, until| *until > now);
            let n = st.peers.len();
            let low = max.div_ceil(2).max(1);
            let out = st.outbound_count();
            // Re-bootstrap when short of peers (or of outbound ones) with
            // nothing to try.
            if (n < max || out < low) && st.candidates.is_empty() && st.dialing.is_empty() {
                let again: Vec<String> = self.inner.config.bootstrap.iter().cloned().chain(st.book.addrs()).collect();
                for a in again {
                    st.add_candidate(a, &self.inner.me);
                }
            }
            let mut dials = Vec::new();
            // Below max/2: dial until back in range at once. Between max/2 and
            // max: one dial every TOP_UP_EVERY ticks, slow enough not to churn,
            // steady enough that separate clusters of peers find each other.
            // The outbound target is counted on its own: inbound peers, however
            // many, never stop us from dialling out (an eclipse needs all our
            // peers; these it cannot choose).
            let room = if out < low {
                low - out
            } else if n < max && st.ticks.is_multiple_of(TOP_UP_EVERY) {
                1
            } else {
                0
            };
            if room > 0 {
                let room = room.min(MAX_PARALLEL_DIALS.saturating_sub(st.dialing.len()));
                // Random picks mix the graph better than oldest-first.
                let mut pool: Vec<String> = st.candidates.drain(..).collect();
                let mut rng = st.rng.clone();
                pool.shuffle(&mut rng);
                st.rng = rng;
                st.candidates = pool.into();
                while dials.len() < room {
                    let Some(a) = st.candidates.pop_front() else { break };
                    if !st.peers.contains_key(&PeerId(a.clone()))
                        && !st.dialing.contains(&a)
                        && !st.banned(&origin_of(&a))
                    {
                        dials.push(a);
                    }
                }
            }
            // Top up candidates from a random peer's list now and then.
            let ask = if n > 0 && (n < max || out < low) && st.candidates.len() < max && st.ticks.is_multiple_of(4) {
                let peers: Vec<PeerId> = st.peers.keys().cloned().collect();
                let mut rng = st.rng.clone();
                let pick = peers.choose(&mut rng).cloned();
                st.rng = rng;
                pick
            } else {
                None
            };
            // Trim above the maximum: inbound peers by the eviction rule
            // (proven peers stay), then outbound ones above the target.
            let mut trim = Vec::new();
            if n > max {
                let mut gone = Vec::new();
                // Never below the inbound share: max minus the outbound target.
                let inbound = st.inbound_count();
                let excess = (n - max).min(inbound.saturating_sub(max.saturating_sub(low)));
                while trim.len() < excess {
                    // Newcomers are not candidates until TRIM_GRACE: a
                    // trim would otherwise always take the youngest, and
                    // peers holding old slots would keep every newcomer out.
                    let Some(victim) = st.eviction_candidate(self.inner.config.trim_grace) else { break };
                    if let Some(info) = st.peers.remove(&victim) {
                        gone.push((victim.clone(), info));
                    }
                    trim.push(victim);
                }
                // Back in the table: the disconnect event removes them.
                for (id, info) in gone {
                    st.peers.insert(id, info);
                }
                let mut outbound: Vec<PeerId> =
                    st.peers.iter().filter(|(_, p)| p.outbound).map(|(id, _)| id.clone()).collect();
                let mut rng = st.rng.clone();
                outbound.shuffle(&mut rng);
                st.rng = rng;
                let spare = outbound.len().saturating_sub(low);
                let more = (n - max).saturating_sub(trim.len()).min(spare);
                trim.extend(outbound.into_iter().take(more));
            }
            if st.ticks.is_multiple_of(20) {
                st.book.age_out(now_ms());
                if let Err(e) = st.book.save() {
                    tracing::warn!("cannot save peers book: {e}");
                }
            }
            let tracker_due = self.inner.config.tracker.is_some()
                && (st.tracker_conn.is_none()
                    || st.last_tracker_ping.is_none_or(|t| t.elapsed() >= self.inner.config.tracker_ping));
            (expired, dials, ask, trim, tracker_due)
        };
        for c in to_close {
            tracing::debug!(conn = %c, "no hello in time; closing");
            self.inner.msg.close(c);
        }
        for p in trim {
            tracing::debug!(peer = %p, "above max peers; dropping");
            self.disconnect(&p);
        }
        for addr in dials {
            let this = self.clone();
            self.inner.tasks.spawn(async move {
                if let Err(e) = this.connect(&addr).await {
                    tracing::debug!(me = %this.inner.me, %addr, "dial failed: {e}");
                }
            });
        }
        if let Some(peer) = ask {
            let this = self.clone();
            self.inner.tasks.spawn(async move {
                if let Ok(list) = this.request(&peer, "p2p:get_peers", Bytes::new()).await {
                    let mut st = this.state();
                    for a in parse_addrs(&list, MAX_ADDRS_PER_LIST) {
                        st.add_candidate(a, &this.inner.me);
                    }
                }
            });
        }
        if tracker_due {
            self.tracker_round().await;
        }
    }

    /// Joins the tracker (when not a member) or pings it.
    async fn tracker_round(&self) {
        let Some(tracker) = self.inner.config.tracker.clone() else { return };
        let me = Bytes::from(self.inner.me.clone());
        let existing = self.state().tracker_conn;
        let conn = match existing {
            Some(c) => c,
            None => match self.inner.msg.connect(&tracker).await {
                Ok(c) => {
                    self.state().tracker_conn = Some(c);
                    c
                }
                Err(e) => {
                    tracing::debug!(%tracker, "tracker unreachable: {e}");
                    self.state().last_tracker_ping = Some(Instant::now());
                    return;
                }
            },
        };
        let joined = existing.is_some()
            && matches!(self.inner.msg.request(conn, "tracker:ping", me.clone()).await.as_deref(), Ok([1]));
        if !joined {
            match self.inner.msg.request(conn, "tracker:join", me).await {
                Ok(list) => {
                    let mut st = self.state();
                    for a in parse_addrs(&list, MAX_ADDRS_PER_LIST) {
                        st.add_candidate(a, &self.inner.me);
                    }
                }
                Err(e) => tracing::debug!(%tracker, "tracker join failed: {e}"),
            }
        }
        self.state().last_tracker_ping = Some(Instant::now());
    }

    fn conn_of(&self, peer: &PeerId) -> Result<ConnId, Error> {
        self.state().peers.get(peer).map(|p| p.conn).ok_or_else(|| Error::UnknownPeer(peer.0.clone()))
    }
}

#[async_trait]
impl<M: Messenger> PeerNetwork for P2p<M> {
    fn peers(&self) -> Vec<PeerId> {
        let mut v: Vec<PeerId> = self.state().peers.keys().cloned().collect();
        v.sort();
        v
    }

    fn send(&self, peer: &PeerId, kind: &str, payload: Bytes) -> Result<(), Error> {
        let conn = self.conn_of(peer)?;
        Ok(self.inner.msg.send(conn, kind, payload)?)
    }

    async fn request(&self, peer: &PeerId, kind: &str, payload: Bytes) -> Result<Bytes, Error> {
        let conn = self.conn_of(peer)?;
        let asked = Instant::now();
        let answer = self.inner.msg.request(conn, kind, payload).await?;
        // The fastest answer a peer gives is its round trip (plus the least
        // work an answer takes): one of the things eviction protects.
        let rtt = asked.elapsed();
        if let Some(p) = self.state().peers.get_mut(peer).filter(|p| p.conn == conn) {
            p.min_rtt = Some(p.min_rtt.map_or(rtt, |m| m.min(rtt)));
        }
        Ok(answer)
    }

    async fn connect(&self, addr: &str) -> Result<PeerId, Error> {
        P2p::connect(self, addr).await
    }

    async fn ask_peers(&self, addr: &str) -> Result<Vec<String>, Error> {
        if !is_valid_addr(addr) {
            return Err(Error::BadAddress(addr.to_owned()));
        }
        if addr == self.inner.me {
            return Ok(self.peers().into_iter().map(|p| p.0).collect());
        }
        let peer = PeerId(addr.to_owned());
        let list = if self.state().peers.contains_key(&peer) {
            self.request(&peer, "p2p:get_peers", Bytes::new()).await?
        } else {
            if self.state().banned(&origin_of(addr)) {
                return Err(Error::Refused { addr: addr.to_owned(), reason: "banned" });
            }
            let msg = &self.inner.msg;
            let conn = msg.connect(addr).await?;
            // Closed however this ends, a dropped future included: a node
            // that accepts and never answers must not keep the probe open.
            let _close = CloseOnDrop(msg, conn);
            msg.request(conn, "p2p:get_peers", Bytes::new()).await?
        };
        Ok(parse_addrs(&list, MAX_ADDRS_PER_LIST))
    }

    fn register_handler(&self, kind: &str, handler: Arc<dyn PeerHandler>) -> Result<(), Error> {
        let weak = self.weak();
        self.inner.msg.register_handler(
            kind,
            handler_fn(move |conn, payload| {
                // Only handshaked peers reach the layer above.
                let peer = weak.upgrade().and_then(|inner| {
                    inner.state.lock().unwrap_or_else(PoisonError::into_inner).by_conn.get(&conn).cloned()
                });
                let handler = handler.clone();
                async move { handler.handle(peer?, payload).await }
            }),
        )?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.inner.events.subscribe()
    }

    fn report(&self, peer: &PeerId, what: Misbehaviour) {
        let (conn, origin, newly) = {
            let mut st = self.state();
            // A report that may concern a claimant displaced from this name
            // moments ago (its messages judged after it left) is charged to
            // the claimant's origin alone: the verified peer now holding the
            // name sent none of them.
            let now = Instant::now();
            let claimant = st
                .displaced
                .iter()
                .rev()
                .find(|(p, _, at)| p == peer && now.saturating_duration_since(*at) < DISPLACED_GRACE)
                .map(|(_, origin, _)| origin.clone());
            if let Some(origin) = claimant {
                if what.penalty() >= BAN_THRESHOLD {
                    st.bans.insert(origin.clone(), now + self.inner.config.ban_period);
                    tracing::info!(%origin, claimed = %peer, "displaced claimant banned for misbehaviour");
                }
                return;
            }
            let Some(info) = st.peers.get_mut(peer) else {
                // Already gone: still ban where it came from when the offence
                // alone deserves it (never the address it announced).
                let origin = st.gone.iter().rev().find(|(p, _)| p == peer).map(|(_, o)| o.clone());
                if what.penalty() >= BAN_THRESHOLD
                    && let Some(origin) = origin
                {
                    let until = Instant::now() + self.inner.config.ban_period;
                    st.bans.insert(origin, until);
                }
                return;
            };
            if matches!(what, Misbehaviour::Spam) {
                info.spam = info.spam.saturating_add(what.penalty());
            } else {
                info.score = info.score.saturating_add(what.penalty());
            }
            let total = info.score.saturating_add(info.spam);
            tracing::debug!(%peer, ?what, score = total, "misbehaviour reported");
            if total < BAN_THRESHOLD {
                return;
            }
            let (conn, origin) = (info.conn, info.origin.clone());
            let now = Instant::now();
            let until = now + self.inner.config.ban_period;
            // Reports keep coming until the disconnect is processed (a flood
            // is judged message by message): only the first one bans.
            let newly = st.bans.insert(origin.clone(), until).is_none_or(|old| old <= now);
            if st.bans.len() > MAX_BANS
                && let Some(first) = st.bans.iter().min_by_key(|(_, u)| **u).map(|(a, _)| a.clone())
            {
                st.bans.remove(&first);
            }
            (conn, origin, newly)
        };
        if newly {
            tracing::info!(%origin, claimed = %peer, "peer banned for misbehaviour");
        }
        self.inner.msg.close(conn);
    }

    fn credit(&self, peer: &PeerId, what: Contribution) {
        if let Some(p) = self.state().peers.get_mut(peer) {
            let now = Some(Instant::now());
            match what {
                Contribution::Block => p.last_block = now,
                Contribution::Transaction => p.last_tx = now,
            }
        }
    }

    fn local_addr(&self) -> String {
        self.inner.me.clone()
    }
}
