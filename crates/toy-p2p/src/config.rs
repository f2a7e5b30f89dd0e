//! Peering limits and settings.

use std::path::PathBuf;
use std::time::Duration;

use crate::{Error, is_valid_addr};

/// `p2p:get_peers` answers one connection gets: a burst of 5, then one a
/// second (the workshop's nodes ask every second). Past it the request is
/// not answered (no penalty: a peer list is cheap, and an honest node's
/// timer may run a little fast).
pub(crate) const GET_PEERS_BURST: f64 = 5.0;
/// See [`GET_PEERS_BURST`].
pub(crate) const GET_PEERS_PER_SEC: f64 = 1.0;

/// Rate-penalty points ([`Misbehaviour::Spam`]) a peer loses every
/// maintenance tick (default tick 500 ms: 2 points a second), so only a rate
/// kept broken reaches a ban.
pub(crate) const SCORE_DECAY_PER_TICK: u32 = 1;

/// How long a new inbound peer is spared by the periodic trim above
/// `max_peers` (not by eviction when the inbound side is full): 30 s, time
/// to show a record (a block, a transaction, a round trip) that protects it.
pub const DEFAULT_TRIM_GRACE: Duration = Duration::from_secs(30);

/// How long after a claimant is displaced by the verified owner of its
/// address reports under that address are charged to the claimant: 30 s,
/// far longer than judging a message takes.
pub(crate) const DISPLACED_GRACE: Duration = Duration::from_secs(30);

/// Removed peers whose origin is remembered for reports that arrive after
/// they left: 1 024 (the oldest forgotten first).
pub(crate) const MAX_GONE: usize = 1_024;

/// Announced addresses being verified by dialling, after two inbound peers
/// claimed the same one: at most 256 (new claims past it are not verified).
pub(crate) const MAX_CONTESTED: usize = 256;

/// Spare connections one peer may have: 3 (a workshop node opens two or
/// three to one address).
///
/// Nodes written to the workshop's description open several connections
/// to one address, say hello on each, never close the refused ones, and
/// name a peer by its remote address: closing *any* of them makes them
/// forget the live peer. So a connection whose hello was refused because
/// its address is already a peer (or being verified) stays open as a
/// *spare* of that peer, provided it comes from the peer's own host (the
/// same IP as the peer's connection). A spare reaches nothing above this
/// layer (what it sends is dropped), is never promoted, and is closed when
/// its peer goes, when it says hello again and is refused, or after
/// 64 messages. Bound: 3 per peer, so at most
/// `3 × (3 × max_peers)` in all; past that a refused connection is closed
/// by the handshake timeout as before.
pub const MAX_SPARES_PER_PEER: usize = 3;
/// Messages a spare may send that reach nobody before it is closed: 64. An
/// honest node's messages already in flight when its connection became a
/// spare are dropped quietly; a spare that keeps talking is not idle.
pub(crate) const MAX_SPARE_MESSAGES: u32 = 64;

/// Default maximum of peers: 8.
pub const DEFAULT_MAX_PEERS: usize = 8;
/// Peer events ([`crate::PeerEvent`]) a subscriber may fall behind by: 64.
/// Past it the subscriber misses the oldest and is told it lagged.
pub const PEER_EVENT_BUFFER: usize = 64;
/// Random addresses from the tried and new tables that `p2p:get_addrs`
/// and hello answers carry besides our peers: 32 (half from each table).
pub const PEER_LIST_SAMPLE: usize = 32;
/// Ticks a drawn sample of [`PEER_LIST_SAMPLE`] addresses is reused: 1
/// (a fresh draw at most once a tick, however many ask). Longer reuse
/// hands every newcomer of a busy moment the same addresses: at 10 ticks
/// the 1 000-node simulation's mean distance rose from 1.03× to 1.14× a
/// random graph's.
pub const SAMPLE_REFRESH_TICKS: u64 = 1;
/// A feeler every this many ticks: a short connection to a random address
/// of the new table that asks for its peers and closes. An address that
/// answers is moved to the tried table (the book), its list learned; one
/// that does not counts a failure (Bitcoin Core's feelers, every 2
/// minutes there; every 20 ticks, 10 s at the default tick, here, where
/// networks are small and young).
pub const FEELER_EVERY: u64 = 20;
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
    pub(crate) max_peers: usize,
    pub(crate) advertise: Option<String>,
    pub(crate) bootstrap: Vec<String>,
    pub(crate) book_path: Option<PathBuf>,
    pub(crate) tracker: Option<String>,
    pub(crate) tick: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) ban_period: Duration,
    pub(crate) trim_grace: Duration,
    pub(crate) tracker_ping: Duration,
    pub(crate) seed: Option<u64>,
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
