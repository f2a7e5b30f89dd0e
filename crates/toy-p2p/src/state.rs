//! What the peer manager knows about its peers: the table, scores, bans,
//! candidates, and the eviction choice over it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use toy_msg::ConnId;

use crate::addrman::NewTable;
use crate::book::PeerBook;
use crate::config::{MAX_SPARES_PER_PEER, PEER_LIST_SAMPLE, SAMPLE_REFRESH_TICKS};
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
/// addresses heard of by the new table's limit ([`crate::addrman`]); bans
/// by [`MAX_BANS`]; the book by its own limit.
pub(crate) struct State {
    pub(crate) peers: HashMap<PeerId, PeerInfo>,
    pub(crate) by_conn: HashMap<ConnId, PeerId>,
    pub(crate) pending_inbound: HashMap<ConnId, Instant>,
    pub(crate) dialing: HashSet<String>,
    /// Addresses heard of, not reached yet (Bitcoin Core's "new" table;
    /// the book is the "tried" one).
    pub(crate) new: NewTable,
    /// The random addresses `p2p:get_addrs` and hello answers carry, and
    /// the tick they were drawn at ([`State::addr_sample`]).
    pub(crate) sample: Option<(u64, Vec<String>)>,
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
    /// Remembers `addr`, heard from `source` (a peer's address, or
    /// `"bootstrap"` for the configured ones), in the new table; our own
    /// address, current peers and addresses already reached are skipped.
    pub(crate) fn learn(&mut self, addr: String, source: &str, me: &str) {
        if addr == me || self.peers.contains_key(&PeerId(addr.clone())) || self.book.contains(&addr) {
            return;
        }
        self.new.add(addr, source);
    }

    /// An address to dial: at random from the tried (the book) or the new
    /// table, half and half (Bitcoin Core's choice), skipping peers,
    /// dials under way and banned origins.
    pub(crate) fn pick_dial(&mut self) -> Option<String> {
        let mut rng = self.rng.clone();
        let skip = |a: &str| {
            self.peers.contains_key(&PeerId(a.to_owned())) || self.dialing.contains(a) || self.banned(&origin_of(a))
        };
        let mut pick = None;
        for _ in 0..8 {
            let from_tried = !self.book.is_empty() && (self.new.len() == 0 || rand::Rng::gen_bool(&mut rng, 0.5));
            let a = if from_tried {
                self.book.random(&mut rng).filter(|a| !skip(a)).map(str::to_owned)
            } else {
                self.new.select(&mut rng, skip)
            };
            if a.is_some() {
                pick = a;
                break;
            }
        }
        self.rng = rng;
        pick
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

    /// The answer to `p2p:get_peers`: our peers (the workshop's meaning,
    /// and what a crawl of the network reads as its edges).
    pub(crate) fn peer_list(&self, except: Option<&str>) -> String {
        join_addrs(self.peers.keys().map(|p| p.0.as_str()).filter(|a| Some(*a) != except))
    }

    /// The answer to `p2p:get_addrs` and the list sent with a hello's
    /// answer: our peers, then a random sample of
    /// [`PEER_LIST_SAMPLE`] addresses from the tried and new tables, so
    /// what a node learns reaches past its neighbourhood (Bitcoin Core
    /// answers `getaddr` with a random part of its table).
    ///
    /// The sample is drawn at most once per [`SAMPLE_REFRESH_TICKS`] and
    /// reused: a stranger's hello (answered with this list) costs a copy,
    /// not a draw, and asking again and again reads out no more of the
    /// tables.
    pub(crate) fn addr_sample(&mut self, except: Option<&str>) -> String {
        if self.sample.as_ref().is_none_or(|(at, _)| self.ticks >= at + SAMPLE_REFRESH_TICKS) {
            let mut rng = self.rng.clone();
            let mut drawn: Vec<String> = Vec::with_capacity(PEER_LIST_SAMPLE);
            for _ in 0..PEER_LIST_SAMPLE / 2 {
                if let Some(a) = self.book.random(&mut rng) {
                    drawn.push(a.to_owned());
                }
            }
            drawn.extend(self.new.sample(&mut rng, PEER_LIST_SAMPLE / 2));
            drawn.sort();
            drawn.dedup();
            self.rng = rng;
            self.sample = Some((self.ticks, drawn));
        }
        let drawn = self.sample.as_ref().map(|(_, d)| d.as_slice()).unwrap_or_default();
        let peers = self.peers.keys().map(|p| p.0.as_str());
        let mut list: Vec<&str> =
            peers.chain(drawn.iter().map(String::as_str)).filter(|a| Some(*a) != except).collect();
        list.sort_unstable();
        list.dedup();
        join_addrs(list)
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
