//! What the peer manager knows about its peers: the table, scores, bans,
//! candidates, and the eviction choice over it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use toy_msg::ConnId;

use crate::book::PeerBook;
use crate::config::{MAX_CANDIDATES, MAX_SPARES_PER_PEER};
use crate::{PeerId, evict, join_addrs, netgroup_of, origin_of, same_host};

#[derive(Debug)]
pub(crate) struct PeerInfo {
    pub(crate) conn: ConnId,
    /// We dialled it (the connection's direction, for trimming and slots).
    pub(crate) outbound: bool,
    /// Its address is verified: we reached it by dialling. Inbound peers
    /// only claim one (unless a contested claim was settled by our dial).
    pub(crate) verified: bool,
    /// Penalties for going over a rate ([`Misbehaviour::Spam`]): they fade
    /// ([`SCORE_DECAY_PER_TICK`]); the rest of the score does not.
    pub(crate) spam: u32,
    pub(crate) score: u32,
    /// Where its connection comes from ([`origin_of`]): what a ban hits.
    pub(crate) origin: String,
    /// Its connection's remote address (for spares: same host or not).
    pub(crate) remote: String,
    /// Its network group ([`netgroup_of`]), for eviction.
    pub(crate) netgroup: String,
    /// When the handshake completed.
    pub(crate) since: Instant,
    /// The fastest answer it gave to one of our requests.
    pub(crate) min_rtt: Option<Duration>,
    /// When it last delivered a new valid block / transaction first.
    pub(crate) last_block: Option<Instant>,
    pub(crate) last_tx: Option<Instant>,
}

impl PeerInfo {
    pub(crate) fn new(conn: ConnId, outbound: bool, verified: bool, remote: &str) -> Self {
        Self {
            conn,
            outbound,
            verified,
            spam: 0,
            score: 0,
            origin: origin_of(remote),
            remote: remote.to_owned(),
            netgroup: netgroup_of(remote),
            since: Instant::now(),
            min_rtt: None,
            last_block: None,
            last_tx: None,
        }
    }
}

/// A refused connection kept open for a peer (see [`MAX_SPARES_PER_PEER`]).
#[derive(Debug)]
pub(crate) struct Spare {
    /// The peer whose host it comes from; it closes when that peer goes.
    pub(crate) peer: PeerId,
    /// Messages it sent that reached nobody.
    pub(crate) dropped: u32,
}

/// Everything the peer manager knows. Bounded: peers by `2 × max_peers`
/// inbound plus `max_peers` outbound; pending handshakes by the transport's
/// inbound limit and the handshake timeout; spares by
/// [`MAX_SPARES_PER_PEER`] per peer;
/// candidates by [`MAX_CANDIDATES`]; bans by [`MAX_BANS`]; the book by its
/// own limit.
pub(crate) struct State {
    pub(crate) peers: HashMap<PeerId, PeerInfo>,
    pub(crate) by_conn: HashMap<ConnId, PeerId>,
    pub(crate) pending_inbound: HashMap<ConnId, Instant>,
    pub(crate) dialing: HashSet<String>,
    pub(crate) candidates: VecDeque<String>,
    /// Bans by origin ([`origin_of`]), never by announced address.
    pub(crate) bans: HashMap<String, Instant>,
    /// Origins of recently removed peers, for late reports.
    pub(crate) gone: VecDeque<(PeerId, String)>,
    /// Claimants displaced by a verified peer of the same address, with
    /// their origin and when: reports under that name within
    /// [`DISPLACED_GRACE`] are theirs (bounded by [`MAX_CONTESTED`]).
    pub(crate) displaced: VecDeque<(PeerId, String, Instant)>,
    /// Addresses two inbound peers claimed: dialled to find the real one.
    pub(crate) contested: HashSet<String>,
    /// Refused connections kept open for a peer ([`MAX_SPARES_PER_PEER`]
    /// each). Entries leave with the connection, and their connections are
    /// closed when the peer goes.
    pub(crate) spares: HashMap<ConnId, Spare>,
    /// `p2p:get_peers` tokens per open connection (entries leave with it).
    pub(crate) get_peers_budget: HashMap<ConnId, (f64, Instant)>,
    /// Failed dials in a row per bootstrap address (only those: bounded by
    /// the bootstrap list), for the warnings' backoff.
    pub(crate) bootstrap_failures: HashMap<String, u32>,
    pub(crate) book: PeerBook,
    pub(crate) rng: rand::rngs::StdRng,
    /// Secret key of the eviction rule's network-group ranking.
    pub(crate) evict_key: u64,
    pub(crate) tracker_conn: Option<ConnId>,
    pub(crate) last_tracker_ping: Option<Instant>,
    pub(crate) ticks: u64,
}

impl State {
    pub(crate) fn add_candidate(&mut self, addr: String, me: &str) {
        if addr == me || self.peers.contains_key(&PeerId(addr.clone())) || self.candidates.contains(&addr) {
            return;
        }
        self.candidates.push_back(addr);
        while self.candidates.len() > MAX_CANDIDATES {
            self.candidates.pop_front();
        }
    }

    /// Keeps `conn` (from `remote`, its hello for `claim` refused) open as
    /// a spare of the peer `claim` when that peer's connection comes from
    /// the same host and has room; `false` leaves it to the handshake
    /// timeout.
    pub(crate) fn keep_spare(&mut self, conn: ConnId, remote: &str, claim: &PeerId) -> bool {
        if self.spares.contains_key(&conn) {
            return true;
        }
        let Some(peer) = self.peers.get(claim) else { return false };
        if peer.conn == conn || !same_host(remote, &peer.remote) {
            return false;
        }
        if self.spares.values().filter(|s| s.peer == *claim).count() >= MAX_SPARES_PER_PEER {
            return false;
        }
        self.pending_inbound.remove(&conn);
        self.spares.insert(conn, Spare { peer: claim.clone(), dropped: 0 });
        true
    }

    /// Counts a message from spare `conn` that reached nobody; `true` when
    /// it has now sent too many and must be closed (it is forgotten).
    pub(crate) fn spare_spoke(&mut self, conn: ConnId) -> bool {
        let Some(spare) = self.spares.get_mut(&conn) else { return false };
        spare.dropped += 1;
        if spare.dropped > crate::config::MAX_SPARE_MESSAGES {
            self.spares.remove(&conn);
            return true;
        }
        false
    }

    pub(crate) fn banned(&self, addr: &str) -> bool {
        self.bans.get(addr).is_some_and(|until| *until > Instant::now())
    }

    pub(crate) fn peer_list(&self, except: Option<&str>) -> String {
        join_addrs(self.peers.keys().map(|p| p.0.as_str()).filter(|a| Some(*a) != except))
    }

    pub(crate) fn inbound_count(&self) -> usize {
        self.peers.values().filter(|p| !p.outbound).count()
    }

    pub(crate) fn outbound_count(&self) -> usize {
        self.peers.values().filter(|p| p.outbound).count()
    }

    /// The inbound peer that gives way first ([`evict::select`]) among those
    /// connected for at least `min_age`; `None` without such peers.
    /// Outbound peers never do.
    pub(crate) fn eviction_candidate(&self, min_age: Duration) -> Option<PeerId> {
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
