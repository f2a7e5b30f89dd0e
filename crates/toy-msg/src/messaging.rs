//! [`Messaging`]: the messaging layer over any [`Transport`].

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use toy_net::{ConnId, ConnIdHasher, Transport};

use crate::codec::{self, MessageType};
use crate::{Config, Error, Event, Events, Handler, Messenger};

type Waiter = oneshot::Sender<Result<Bytes, Error>>;

/// Transport events taken per wake-up of the dispatcher.
const EVENT_BATCH: usize = 256;

/// The messaging layer: one-way messages and requests with responses over a
/// [`Transport`], with handlers registered per kind.
///
/// A cheap handle: clones share the same state. One dispatcher task reads the
/// transport's events and drives the handlers' futures, at most
/// [`Config::max_concurrent_handlers`] at once.
pub struct Messaging<T: Transport> {
    inner: Arc<Inner<T>>,
}

impl<T: Transport> Clone for Messaging<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<T: Transport> std::fmt::Debug for Messaging<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messaging").field("local_addr", &self.inner.transport.local_addr()).finish_non_exhaustive()
    }
}

struct Inner<T> {
    transport: T,
    config: Config,
    /// One entry per registered kind; only the local program adds entries.
    handlers: RwLock<HashMap<String, Arc<dyn Handler>>>,
    /// Requests awaiting a response: at most `max_pending_per_conn` per open
    /// connection; an entry leaves when answered, timed out, cancelled or its
    /// connection ends.
    pending: Mutex<HashMap<ConnId, HashMap<u32, Waiter>>>,
    next_id: AtomicU32,
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// Warnings a flood would repeat, summarised (one line per kind per 10 s,
/// with the count held back).
static WARNINGS: std::sync::LazyLock<toy_net::Throttle> = std::sync::LazyLock::new(toy_net::Throttle::default);

/// Releases one of a connection's handler slots when dropped (the
/// invocation finished or was dropped unfinished).
struct SlotGuard(Arc<AtomicUsize>);

/// What the dispatcher keeps per connection: its handler slots in use and
/// its token bucket for messages of unhandled kinds.
struct ConnShare {
    slots: Arc<AtomicUsize>,
    /// Of those, the slots held by priority kinds (what the reserve is
    /// rationed by).
    priority: Arc<AtomicUsize>,
    unhandled: f64,
    at: Instant,
}

impl ConnShare {
    fn new() -> Self {
        Self { slots: Arc::default(), priority: Arc::default(), unhandled: crate::UNHANDLED_BURST, at: Instant::now() }
    }

    /// Takes one token for a message nobody handles; `false` past the rate.
    fn take_unhandled(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * crate::UNHANDLED_PER_SEC;
        self.unhandled = (self.unhandled + refill).min(crate::UNHANDLED_BURST);
        self.at = now;
        if self.unhandled >= 1.0 {
            self.unhandled -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The dispatcher's copy of the handlers of the kinds it saw last, with
/// whether each is a priority kind: a message of a known kind costs a short
/// comparison, not a lock, a keyed hash and the priority list.
///
/// At most [`KnownHandlers::CAP`] kinds; a new one replaces the oldest.
/// Only registered kinds enter (handlers are never removed, so an entry
/// never goes stale); an unknown kind is looked up in the registry each
/// time, so a handler registered later is found.
#[derive(Default)]
struct KnownHandlers {
    entries: Vec<(Box<str>, Arc<dyn Handler>, bool)>,
    next: usize,
}

impl KnownHandlers {
    const CAP: usize = 16;

    fn get(&self, kind: &str) -> Option<(Arc<dyn Handler>, bool)> {
        self.entries.iter().find(|(k, _, _)| &**k == kind).map(|(_, h, p)| (h.clone(), *p))
    }

    fn insert(&mut self, kind: &str, handler: Arc<dyn Handler>, priority: bool) -> (Arc<dyn Handler>, bool) {
        let entry = (kind.into(), handler.clone(), priority);
        if self.entries.len() < Self::CAP {
            self.entries.push(entry);
        } else {
            self.entries[self.next] = entry;
            self.next = (self.next + 1) % Self::CAP;
        }
        (handler, priority)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<T: Transport> Messaging<T> {
    /// Starts the messaging layer on `transport`, taking its events. Returns
    /// the handle and the stream of connection events for the layer above.
    ///
    /// Must be called inside a tokio runtime.
    pub fn new(transport: T, net_events: toy_net::Events, config: Config) -> (Self, Events) {
        let (tx, rx) = mpsc::channel(config.event_buffer);
        let inner = Arc::new(Inner {
            transport,
            config,
            handlers: RwLock::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(1),
            events: tx,
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        let this = Self { inner };
        let dispatcher = this.clone();
        this.inner.tracker.spawn(async move { dispatcher.dispatch(net_events).await });
        (this, Events::new(rx))
    }

    /// The transport underneath.
    pub fn transport(&self) -> &T {
        &self.inner.transport
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, HashMap<u32, Waiter>>> {
        self.inner.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The dispatcher: takes the transport's events in batches and runs the
    /// handlers as futures of its own (no task per message), so a handler
    /// waiting for a response never stops the responses from being read.
    async fn dispatch(&self, mut net_events: toy_net::Events) {
        let mut running: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
        let mut in_use: HashMap<ConnId, ConnShare, ConnIdHasher> = HashMap::default();
        let mut known = KnownHandlers::default();
        let mut batch = Vec::with_capacity(EVENT_BATCH);
        loop {
            tokio::select! {
                biased;
                _ = self.inner.cancel.cancelled() => return,
                Some(()) = running.next(), if !running.is_empty() => {}
                n = net_events.next_batch(&mut batch, EVENT_BATCH) => {
                    if n == 0 {
                        return;
                    }
                    for event in batch.drain(..) {
                        self.on_event(event, &mut running, &mut in_use, &mut known).await;
                    }
                }
            }
        }
    }

    async fn on_event(
        &self,
        event: toy_net::Event,
        running: &mut FuturesUnordered<BoxFuture<'static, ()>>,
        in_use: &mut HashMap<ConnId, ConnShare, ConnIdHasher>,
        known: &mut KnownHandlers,
    ) {
        match event {
            toy_net::Event::Connected { conn, incoming, remote } => {
                self.emit(Event::Connected { conn, incoming, remote }).await;
            }
            toy_net::Event::Frame { conn, data } => {
                let share = in_use.entry(conn).or_insert_with(ConnShare::new);
                self.on_frame(conn, data, running, share, known).await;
            }
            toy_net::Event::Disconnected { conn, reason } => {
                in_use.remove(&conn);
                // Fail every request still waiting on this connection now,
                // not at its timeout.
                let waiting = self.pending().remove(&conn);
                for (_, waiter) in waiting.into_iter().flatten() {
                    let _ = waiter.send(Err(Error::Disconnected { conn }));
                }
                self.emit(Event::Disconnected { conn, reason }).await;
            }
            other => tracing::debug!(?other, "unhandled transport event"),
        }
    }

    async fn emit(&self, event: Event) {
        let event = match self.inner.events.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
            Err(mpsc::error::TrySendError::Full(event)) => event,
        };
        tokio::select! {
            biased;
            _ = self.inner.cancel.cancelled() => {}
            _ = self.inner.events.send(event) => {}
        }
    }

    /// Decodes one frame and runs its handler. `slots` counts this
    /// connection's handler invocations still running: past its share
    /// ([`Config::max_handlers_per_conn`]) its messages are dropped, so a
    /// flooding peer slows only itself.
    ///
    /// The header is read in place (the kind borrowed from the frame) and
    /// the payload is the rest of the frame, so a message costs no
    /// allocation until its handler runs.
    async fn on_frame(
        &self,
        conn: ConnId,
        mut data: Bytes,
        running: &mut FuturesUnordered<BoxFuture<'static, ()>>,
        share: &mut ConnShare,
        known: &mut KnownHandlers,
    ) {
        let header = match codec::Header::decode(&data) {
            Ok(header) => header,
            Err(error) => {
                let remote = self.inner.transport.remote_addr(conn).unwrap_or_default();
                if let Some(held_back) = WARNINGS.allow("malformed message") {
                    tracing::warn!(%conn, %remote, %error, held_back, "malformed message; closing connection");
                }
                self.inner.transport.close(conn);
                self.emit(Event::Misbehaved { conn, error }).await;
                return;
            }
        };
        let (ty, id, at) = (header.ty, header.id, header.payload_at);
        match ty {
            MessageType::Response => {
                let waiter = {
                    let mut pending = self.pending();
                    let waiter = pending.get_mut(&conn).and_then(|m| m.remove(&id));
                    if pending.get(&conn).is_some_and(HashMap::is_empty) {
                        pending.remove(&conn);
                    }
                    waiter
                };
                match waiter {
                    Some(w) => {
                        data.advance(at);
                        let _ = w.send(Ok(data));
                    }
                    None => tracing::debug!(%conn, id, "response to no pending request (late or unknown)"),
                }
            }
            MessageType::OneWay | MessageType::Request => {
                let found = known.get(header.kind).or_else(|| {
                    let handler =
                        self.inner.handlers.read().unwrap_or_else(PoisonError::into_inner).get(header.kind).cloned()?;
                    let priority = self.inner.config.is_priority(header.kind);
                    Some(known.insert(header.kind, handler, priority))
                });
                let Some((handler, priority)) = found else {
                    tracing::debug!(%conn, kind = %header.kind, "no handler for kind; ignored");
                    if !share.take_unhandled(Instant::now()) {
                        // Best effort: never wait for room on the dispatcher.
                        let _ = self.inner.events.try_send(Event::Unhandled { conn, kind: header.kind.to_owned() });
                    }
                    return;
                };
                // Checked before the handler runs at all: a message dropped
                // here has had no effect (the gossip layer has not marked it
                // seen, so another peer's copy is still handled).
                if share.slots.load(Ordering::Acquire) >= self.inner.config.max_handlers_per_conn {
                    tracing::debug!(%conn, kind = %header.kind, "this connection's handler share is busy; message dropped");
                    return;
                }
                // The last slots are kept for priority kinds (handshakes,
                // blocks): floods from several connections fill the rest.
                // One connection may hold an eighth of the reserve at most
                // (counted by its priority handlers, so a peer busy with
                // ordinary work still gets its handshake or block through),
                // and priority kinds flooded by a few cannot take it all.
                let config = &self.inner.config;
                let ordinary = config.max_concurrent_handlers.saturating_sub(config.reserved_handlers);
                let limit =
                    if priority && share.priority.load(Ordering::Acquire) < (config.reserved_handlers / 8).max(1) {
                        config.max_concurrent_handlers
                    } else {
                        ordinary
                    };
                if running.len() >= limit {
                    if let Some(held_back) = WARNINGS.allow("handlers busy") {
                        tracing::warn!(%conn, kind = %header.kind, held_back, "all handlers busy; message dropped");
                    }
                    return;
                }
                data.advance(at);
                let mut fut = handler.handle(conn, data);
                // Most handlers finish without waiting: poll once here, and
                // only a future that has to wait is kept (and holds a slot of
                // its connection's share while it does). A pending future was
                // polled with the dispatcher's waker, which at worst wakes the
                // dispatcher once more; `running` polls it with its own after.
                let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                match first {
                    Poll::Ready(response) => self.respond(conn, ty, id, response),
                    Poll::Pending => {
                        share.slots.fetch_add(1, Ordering::AcqRel);
                        let slot = SlotGuard(share.slots.clone());
                        let priority_slot = priority.then(|| {
                            share.priority.fetch_add(1, Ordering::AcqRel);
                            SlotGuard(share.priority.clone())
                        });
                        let this = self.clone();
                        running.push(Box::pin(async move {
                            let _slot = slot;
                            let _priority_slot = priority_slot;
                            let response = fut.await;
                            this.respond(conn, ty, id, response);
                        }));
                    }
                }
            }
        }
    }

    /// Sends a handler's answer to a request; the answer to a one-way
    /// message is dropped.
    fn respond(&self, conn: ConnId, ty: MessageType, id: u32, response: Option<Bytes>) {
        let (MessageType::Request, Some(payload)) = (ty, response) else {
            return;
        };
        let sent = codec::with_head(MessageType::Response, id, "", |head| {
            self.inner.transport.send_parts(conn, head, payload)
        });
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(%conn, id, "response not sent: {e}"),
            Err(e) => tracing::error!("cannot encode response: {e}"),
        }
    }

    /// Registers a waiter for a new request id on `conn`.
    fn register_waiter(&self, conn: ConnId) -> Result<(u32, oneshot::Receiver<Result<Bytes, Error>>), Error> {
        let max = self.inner.config.max_pending_per_conn;
        let mut pending = self.pending();
        let map = pending.entry(conn).or_default();
        if map.len() >= max {
            return Err(Error::TooManyPending { conn, max });
        }
        // Ids wrap after 2^32 requests; skip any still in use on this connection.
        loop {
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            if let Entry::Vacant(slot) = map.entry(id) {
                let (tx, rx) = oneshot::channel();
                slot.insert(tx);
                return Ok((id, rx));
            }
        }
    }

    fn forget_waiter(&self, conn: ConnId, id: u32) {
        let mut pending = self.pending();
        if let Some(map) = pending.get_mut(&conn) {
            map.remove(&id);
            if map.is_empty() {
                pending.remove(&conn);
            }
        }
    }
}

/// Removes a request's waiter when the request future ends in any way,
/// including being dropped, so cancelled requests leave nothing behind.
struct WaiterGuard<'a, T: Transport> {
    msg: &'a Messaging<T>,
    conn: ConnId,
    id: u32,
}

impl<T: Transport> Drop for WaiterGuard<'_, T> {
    fn drop(&mut self) {
        self.msg.forget_waiter(self.conn, self.id);
    }
}

#[async_trait]
impl<T: Transport> Messenger for Messaging<T> {
    async fn listen(&self, addr: &str) -> Result<String, Error> {
        Ok(self.inner.transport.listen(addr).await?)
    }

    async fn connect(&self, addr: &str) -> Result<ConnId, Error> {
        Ok(self.inner.transport.connect(addr).await?)
    }

    fn send(&self, conn: ConnId, kind: &str, payload: Bytes) -> Result<(), Error> {
        codec::with_head(MessageType::OneWay, 0, kind, |head| self.inner.transport.send_parts(conn, head, payload))??;
        Ok(())
    }

    async fn request_timeout(
        &self,
        conn: ConnId,
        kind: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        codec::check_kind(kind)?;
        if self.inner.cancel.is_cancelled() {
            return Err(Error::Shutdown);
        }
        // Register before sending: a response or disconnect processed right
        // after the send then finds the waiter.
        let (id, rx) = self.register_waiter(conn)?;
        let _guard = WaiterGuard { msg: self, conn, id };
        match codec::with_head(MessageType::Request, id, kind, |head| {
            self.inner.transport.send_parts(conn, head, payload)
        })? {
            Ok(()) => {}
            Err(toy_net::Error::UnknownConnection(_)) => return Err(Error::Disconnected { conn }),
            Err(e) => return Err(e.into()),
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            // The waiter was dropped without an answer: shutdown.
            Ok(Err(_)) => Err(Error::Shutdown),
            Err(_) => Err(Error::Timeout { conn, kind: kind.to_owned(), after: timeout }),
        }
    }

    fn default_timeout(&self) -> Duration {
        self.inner.config.request_timeout
    }

    fn register_handler(&self, kind: &str, handler: Arc<dyn Handler>) -> Result<(), Error> {
        codec::check_kind(kind)?;
        let mut handlers = self.inner.handlers.write().unwrap_or_else(PoisonError::into_inner);
        match handlers.entry(kind.to_owned()) {
            Entry::Occupied(_) => Err(Error::DuplicateHandler { kind: kind.to_owned() }),
            Entry::Vacant(slot) => {
                slot.insert(handler);
                Ok(())
            }
        }
    }

    fn close(&self, conn: ConnId) {
        self.inner.transport.close(conn);
    }

    fn promote(&self, conn: ConnId) {
        self.inner.transport.promote(conn);
    }

    fn demote(&self, conn: ConnId) {
        self.inner.transport.demote(conn);
    }

    fn remote_addr(&self, conn: ConnId) -> Option<String> {
        self.inner.transport.remote_addr(conn)
    }

    fn local_addr(&self) -> Option<String> {
        self.inner.transport.local_addr()
    }

    fn connections(&self) -> Vec<ConnId> {
        self.inner.transport.connections()
    }

    async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.transport.shutdown().await;
        let pending = std::mem::take(&mut *self.pending());
        for (_, waiter) in pending.into_values().flatten() {
            let _ = waiter.send(Err(Error::Shutdown));
        }
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}
