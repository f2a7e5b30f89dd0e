//! The peer manager: [`P2p`], its handshake, dialling, maintenance and its
//! [`PeerNetwork`] implementation.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use toy_msg::{ConnId, Messenger, handler_fn};

use crate::addrman::NewTable;
use crate::book::PeerBook;
use crate::config::*;
use crate::state::State;
use crate::{Config, Error, PeerEvent, PeerId, PeerNetwork, origin_of};

/// Closes a connection when dropped.
pub(crate) struct CloseOnDrop<'a, M: Messenger>(pub(crate) &'a M, pub(crate) ConnId);

impl<M: Messenger> Drop for CloseOnDrop<'_, M> {
    fn drop(&mut self) {
        self.0.close(self.1);
    }
}

pub(crate) struct Inner<M: Messenger> {
    pub(crate) msg: M,
    pub(crate) config: Config,
    pub(crate) me: String,
    pub(crate) state: Mutex<State>,
    pub(crate) events: broadcast::Sender<PeerEvent>,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

/// The peer manager over a [`Messenger`]; implements [`PeerNetwork`].
///
/// A cheap handle (clones share state). Runs two tasks: one reading the
/// messaging layer's events, one doing maintenance every tick (dialling,
/// trimming, discovery, handshake timeouts, the book, the tracker).
pub struct P2p<M: Messenger> {
    pub(crate) inner: Arc<Inner<M>>,
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

pub(crate) fn now_ms() -> u64 {
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
            new: NewTable::new(0),
            sample: None,
            bans: HashMap::new(),
            gone: VecDeque::new(),
            displaced: VecDeque::new(),
            contested: HashSet::new(),
            spares: HashMap::new(),
            get_peers_budget: HashMap::new(),
            bootstrap_failures: HashMap::new(),
            book,
            rng,
            evict_key: 0,
            tracker_conn: None,
            last_tracker_ping: None,
            ticks: 0,
        };
        state.evict_key = rand::Rng::r#gen(&mut state.rng);
        state.new = NewTable::new(rand::Rng::r#gen(&mut state.rng));
        for a in config.bootstrap.iter().cloned() {
            state.learn(a, "bootstrap", &me);
        }
        // A broadcast channel allocates every slot up front (about 64 bytes
        // each): 1 024 were most of an idle node's heap in the 10 000-node
        // simulation. A subscriber that lags past PEER_EVENT_BUFFER events
        // is told so (`Lagged`) and must look at `peers()` again.
        let (events, _) = broadcast::channel(PEER_EVENT_BUFFER);
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

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn weak(&self) -> Weak<Inner<M>> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn install_handlers(&self) -> Result<(), Error> {
        let weak = self.weak();
        self.inner.msg.register_handler(
            "p2p:hello",
            handler_fn(move |conn, payload| {
                let this = weak.upgrade().map(|inner| P2p { inner });
                async move { Some(this?.on_hello(conn, &payload)) }
            }),
        )?;
        self.register_list("p2p:get_peers", |st, asker| st.peer_list(asker))?;
        self.register_list("p2p:get_addrs", |st, asker| st.addr_sample(asker))?;
        Ok(())
    }

    /// Registers `kind`, answered with `list` (our peers, or a sample of
    /// the tables) on any connection, handshake or not, within one budget
    /// per connection shared by both kinds: [`GET_PEERS_BURST`] at once,
    /// then [`GET_PEERS_PER_SEC`].
    fn register_list(&self, kind: &str, list: fn(&mut State, Option<&str>) -> String) -> Result<(), Error> {
        let weak = self.weak();
        self.inner.msg.register_handler(
            kind,
            handler_fn(move |conn, _| {
                let this = weak.upgrade().map(|inner| P2p { inner });
                async move {
                    let this = this?;
                    let mut st = this.state();
                    if st.spare_spoke(conn) {
                        drop(st);
                        this.inner.msg.close(conn);
                        return None;
                    }
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
                    Some(Bytes::from(list(&mut st, asker.as_deref())))
                }
            }),
        )?;
        Ok(())
    }

    /// Drops a peer (closing its connection).
    pub fn disconnect(&self, peer: &PeerId) {
        let conn = self.state().peers.get(peer).map(|p| p.conn);
        if let Some(conn) = conn {
            self.inner.msg.close(conn);
        }
    }

    /// Addresses heard of and not reached yet (the new table,
    /// [`crate::addrman`]).
    pub fn candidates(&self) -> Vec<String> {
        self.state().new.addrs()
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

    pub(crate) fn conn_of(&self, peer: &PeerId) -> Result<ConnId, Error> {
        self.state().peers.get(peer).map(|p| p.conn).ok_or_else(|| Error::UnknownPeer(peer.0.clone()))
    }
}
