//! The in-memory transport: many endpoints in one process, for tests and
//! simulations.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::conns::{ConnParts, ConnTable, Outgoing, SendRx};
use crate::{Config, ConnId, DisconnectReason, Error, Event, Events, Transport};

/// A simulated network: a registry of listening endpoints, link latencies and
/// cut links.
///
/// Cheap to clone; clones share the same network. Endpoints are created with
/// [`MemoryNetwork::endpoint`] and speak the same [`Transport`] trait as TCP,
/// so the layers above cannot tell the difference.
///
/// Bounded by its users: one registry entry per endpoint (removed at
/// shutdown), one latency entry per link the caller configures, one cut entry
/// per pair the caller cuts (cleared by [`MemoryNetwork::heal`]).
#[derive(Debug, Clone, Default)]
pub struct MemoryNetwork {
    inner: Arc<NetInner>,
}

#[derive(Debug, Default)]
struct NetInner {
    next_endpoint: AtomicU64,
    /// Whether any latency was ever set, so the frame path can skip the lock.
    any_latency: AtomicBool,
    state: Mutex<NetState>,
}

#[derive(Debug, Default)]
struct NetState {
    endpoints: HashMap<u64, Weak<Endpoint>>,
    listeners: HashMap<String, u64>,
    latency: HashMap<(u64, u64), Duration>,
    default_latency: Duration,
    cut: HashSet<(u64, u64)>,
}

fn pair(a: u64, b: u64) -> (u64, u64) {
    if a <= b { (a, b) } else { (b, a) }
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new endpoint on this network, and the stream of its events.
    pub fn endpoint(&self, config: Config) -> (MemoryTransport, Events) {
        let id = self.inner.next_endpoint.fetch_add(1, Ordering::Relaxed) + 1;
        let (table, events) = ConnTable::new(config, true);
        let endpoint = Arc::new(Endpoint { id, table, net: self.clone(), local: Mutex::new(None) });
        self.state().endpoints.insert(id, Arc::downgrade(&endpoint));
        (MemoryTransport { endpoint }, events)
    }

    /// Sets the one-way delay of every frame between `a` and `b` (both ways).
    pub fn set_latency(&self, a: &MemoryTransport, b: &MemoryTransport, latency: Duration) {
        self.inner.any_latency.store(true, Ordering::Release);
        self.state().latency.insert(pair(a.id(), b.id()), latency);
    }

    /// Sets the delay of every link without its own latency.
    pub fn set_default_latency(&self, latency: Duration) {
        self.inner.any_latency.store(true, Ordering::Release);
        self.state().default_latency = latency;
    }

    fn latency(&self, a: u64, b: u64) -> Duration {
        if !self.inner.any_latency.load(Ordering::Acquire) {
            return Duration::ZERO;
        }
        let state = self.state();
        state.latency.get(&pair(a, b)).copied().unwrap_or(state.default_latency)
    }

    /// Cuts the link between `a` and `b`: their connections end with
    /// [`DisconnectReason::LinkCut`] and new dials fail until healed.
    pub fn cut(&self, a: &MemoryTransport, b: &MemoryTransport) {
        self.cut_ids(a.id(), b.id());
    }

    fn cut_ids(&self, a: u64, b: u64) {
        let (ea, eb) = {
            let mut state = self.state();
            state.cut.insert(pair(a, b));
            let get = |id| state.endpoints.get(&id).and_then(Weak::upgrade);
            (get(a), get(b))
        };
        if let Some(ea) = ea {
            ea.table.abort_tagged(b, DisconnectReason::LinkCut);
        }
        if let Some(eb) = eb {
            eb.table.abort_tagged(a, DisconnectReason::LinkCut);
        }
    }

    /// Splits the network: every link between endpoints of different groups
    /// is cut. Endpoints in no group keep their links.
    pub fn partition(&self, groups: &[Vec<MemoryTransport>]) {
        for (i, g1) in groups.iter().enumerate() {
            for g2 in &groups[i + 1..] {
                for a in g1 {
                    for b in g2 {
                        self.cut_ids(a.id(), b.id());
                    }
                }
            }
        }
    }

    /// Restores every cut link. Connections that ended stay closed; the nodes
    /// may dial again.
    pub fn heal(&self) {
        self.state().cut.clear();
    }

    /// Restores the link between `a` and `b`.
    pub fn heal_link(&self, a: &MemoryTransport, b: &MemoryTransport) {
        self.state().cut.remove(&pair(a.id(), b.id()));
    }
}

#[derive(Debug)]
struct Endpoint {
    id: u64,
    table: Arc<ConnTable>,
    net: MemoryNetwork,
    local: Mutex<Option<String>>,
}

impl Endpoint {
    fn name(&self) -> String {
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| format!("mem-{}:0", self.id))
    }
}

/// One endpoint of a [`MemoryNetwork`]; implements [`Transport`].
///
/// Frames keep the TCP transport's limits (maximum length checked by the
/// receiver, bounded send queues, inbound limit), so behaviour under a slow or
/// hostile peer matches TCP.
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    endpoint: Arc<Endpoint>,
}

impl MemoryTransport {
    fn id(&self) -> u64 {
        self.endpoint.id
    }

    fn table(&self) -> &Arc<ConnTable> {
        &self.endpoint.table
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn listen(&self, addr: &str) -> Result<String, Error> {
        if self.table().root.is_cancelled() {
            return Err(Error::Shutdown);
        }
        let mut local = self.endpoint.local.lock().unwrap_or_else(PoisonError::into_inner);
        if local.is_some() {
            return Err(Error::Listen("already listening".into()));
        }
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| Error::Listen(format!("{addr:?} is not host:port")))?;
        // Port 0 picks a unique port, as with TCP.
        let bound = if port == "0" { format!("{host}:{}", 10_000 + self.id()) } else { addr.to_owned() };
        let mut state = self.endpoint.net.state();
        if state.listeners.contains_key(&bound) {
            return Err(Error::Listen(format!("{bound} already in use")));
        }
        state.listeners.insert(bound.clone(), self.id());
        *local = Some(bound.clone());
        Ok(bound)
    }

    async fn connect(&self, addr: &str) -> Result<ConnId, Error> {
        if self.table().root.is_cancelled() {
            return Err(Error::Shutdown);
        }
        let net = &self.endpoint.net;
        let remote = {
            let state = net.state();
            let unreachable = |reason: &str| Error::Unreachable { addr: addr.to_owned(), reason: reason.to_owned() };
            let id = *state.listeners.get(addr).ok_or_else(|| unreachable("connection refused"))?;
            if state.cut.contains(&pair(self.id(), id)) {
                return Err(Error::ConnectTimeout { addr: addr.to_owned() });
            }
            state.endpoints.get(&id).and_then(Weak::upgrade).ok_or_else(|| unreachable("connection refused"))?
        };
        if remote.table.root.is_cancelled() {
            return Err(Error::Unreachable { addr: addr.to_owned(), reason: "connection refused".into() });
        }
        if remote.table.refuse_inbound(&self.endpoint.name()).is_some() {
            return Err(Error::Unreachable { addr: addr.to_owned(), reason: "connection reset".into() });
        }
        let ours = self.table().register(addr.to_owned(), false, remote.id).ok_or(Error::Shutdown)?;
        let Some(theirs) = remote.table.register(self.endpoint.name(), true, self.id()) else {
            self.table().finish(ours.id, DisconnectReason::RemoteClosed).await;
            return Err(Error::Unreachable { addr: addr.to_owned(), reason: "connection refused".into() });
        };
        let id = ours.id;
        let (our_id, their_id) = (ours.id, theirs.id);
        // Each end's task delivers the frames the *other* end queued.
        let our_side =
            Side { endpoint: self.endpoint.clone(), conn: our_id, peer: remote.clone(), peer_conn: their_id };
        let their_side =
            Side { endpoint: remote.clone(), conn: their_id, peer: self.endpoint.clone(), peer_conn: our_id };
        // Swap the queues: each task drains the other end's send queue and
        // releases that end's queued-byte count.
        let our_parts = ConnParts { rx: theirs.rx, ..ours };
        let their_parts = ConnParts { rx: ours.rx, ..theirs };
        self.table().tracker.spawn(our_side.run(our_parts, addr.to_owned(), false));
        remote.table.tracker.spawn(their_side.run(their_parts, self.endpoint.name(), true));
        Ok(id)
    }

    fn send(&self, conn: ConnId, frame: Bytes) -> Result<(), Error> {
        self.table().send(conn, &[], frame)
    }

    fn send_parts(&self, conn: ConnId, head: &[u8], body: Bytes) -> Result<(), Error> {
        self.table().send(conn, head, body)
    }

    fn close(&self, conn: ConnId) {
        self.table().close(conn);
    }

    fn remote_addr(&self, conn: ConnId) -> Option<String> {
        self.table().remote_addr(conn)
    }

    /// Frames between in-memory endpoints arrive whole, so no buffer grows
    /// with a declared length; the limit is kept for parity with TCP.
    fn promote(&self, conn: ConnId) {
        self.table().promote(conn);
    }

    fn demote(&self, conn: ConnId) {
        self.table().demote(conn);
    }

    fn local_addr(&self) -> Option<String> {
        self.endpoint.local.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn connections(&self) -> Vec<ConnId> {
        self.table().connections()
    }

    fn max_frame_len(&self) -> usize {
        self.table().config().max_frame_len()
    }

    async fn shutdown(&self) {
        {
            let mut state = self.endpoint.net.state();
            if let Some(addr) = self.local_addr()
                && state.listeners.get(&addr) == Some(&self.id())
            {
                state.listeners.remove(&addr);
            }
            state.endpoints.remove(&self.id());
        }
        self.table().shutdown().await;
    }
}

/// One end of an in-memory connection.
struct Side {
    endpoint: Arc<Endpoint>,
    conn: ConnId,
    peer: Arc<Endpoint>,
    peer_conn: ConnId,
}

impl Side {
    /// Reports the connection, then delivers the peer's frames into this
    /// end's events until either end closes.
    ///
    /// `parts.rx` is the *peer's* send queue.
    async fn run(self, parts: ConnParts, remote: String, incoming: bool) {
        let table = self.endpoint.table.clone();
        let reason = if table.emit_connected(&parts, remote, incoming).await {
            tokio::select! {
                biased;
                _ = parts.cancel.cancelled() => parts.cancelled_reason(),
                reason = self.deliver(&parts.rx, &parts.cancel) => reason,
            }
        } else {
            parts.cancelled_reason()
        };
        let reason = parts.reason.get().filter(|_| reason == DisconnectReason::RemoteClosed).unwrap_or(reason);
        table.finish(self.conn, reason.clone()).await;
        let peer_reason = match reason {
            DisconnectReason::LinkCut => DisconnectReason::LinkCut,
            _ => DisconnectReason::RemoteClosed,
        };
        self.peer.table.abort_with(self.peer_conn, peer_reason);
    }

    async fn deliver(&self, rx: &SendRx, cancel: &CancellationToken) -> DisconnectReason {
        let table = &self.endpoint.table;
        let mut items = std::collections::VecDeque::new();
        loop {
            // Everything queued. Its bytes stay counted against the
            // sender's byte limit until the next take, while its latency
            // runs; its frames leave the count now (as over TCP).
            if !rx.take(&mut items, usize::MAX, &mut Vec::new()).await {
                return DisconnectReason::RemoteClosed;
            }
            while let Some(item) = items.pop_front() {
                let (head, body, queued_at) = match item {
                    Outgoing::Close => {
                        self.peer.table.abort_with(self.peer_conn, DisconnectReason::Closed);
                        return DisconnectReason::RemoteClosed;
                    }
                    Outgoing::Frame { head, body, at } => (head, body, at),
                    // This transport queues every frame whole (its table
                    // stamps times); wire buffers are TCP's.
                    Outgoing::Wire { .. } => {
                        tracing::error!(conn = %self.conn, "wire buffer in a memory send queue; closing");
                        return DisconnectReason::Io(std::io::ErrorKind::InvalidData);
                    }
                };
                let latency = self.endpoint.net.latency(self.endpoint.id, self.peer.id);
                if let Some(queued_at) = queued_at.filter(|_| !latency.is_zero()) {
                    tokio::time::sleep_until((queued_at + latency).into()).await;
                }
                // The receiver gets one frame, as from TCP.
                let data = match head.as_slice() {
                    [] => body,
                    head => {
                        let mut frame = bytes::BytesMut::with_capacity(head.len() + body.len());
                        frame.extend_from_slice(head);
                        frame.extend_from_slice(&body);
                        frame.freeze()
                    }
                };
                // The connection's limit now: a stranger's until
                // promoted, as over TCP.
                let max = table.frame_limit(self.conn);
                if data.len() > max {
                    tracing::warn!(conn = %self.conn, len = data.len(), max, "peer sent an oversize frame; closing");
                    return DisconnectReason::FrameTooLarge { len: data.len() as u64, max };
                }
                if !table.emit(Event::Frame { conn: self.conn, data }, cancel).await {
                    return DisconnectReason::Shutdown;
                }
            }
        }
    }
}
