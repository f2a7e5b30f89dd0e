//! The connection table shared by both transports: id allocation, the
//! bounded send queues, closing, and the events that report it all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::queue::{EventQueue, Refused, SendQueue, TryPush};
pub(crate) use crate::queue::{Head, Outgoing};
use crate::{Config, ConnId, DisconnectReason, Error, Event, Events};

/// How long [`ConnTable::shutdown`] waits for connection tasks to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The table's handle on a connection's send queue: when the entry leaves
/// the table, the queue's reader sees the end after what is queued.
#[derive(Debug)]
struct SendTx(Arc<SendQueue>);

impl Drop for SendTx {
    fn drop(&mut self) {
        self.0.close_senders();
    }
}

/// The task's handle on a connection's send queue: when the task ends,
/// later sends are refused ([`Error::UnknownConnection`]).
#[derive(Debug)]
pub(crate) struct SendRx(Arc<SendQueue>);

impl SendRx {
    /// See [`SendQueue::take`].
    pub(crate) async fn take(
        &self,
        into: &mut std::collections::VecDeque<Outgoing>,
        max_bytes: usize,
        give_back: &mut Vec<bytes::BytesMut>,
    ) -> bool {
        self.0.take(into, max_bytes, give_back).await
    }

    /// See [`SendQueue::written`].
    pub(crate) fn written(&self) {
        self.0.written();
    }
}

impl Drop for SendRx {
    fn drop(&mut self) {
        self.0.close_receiver();
    }
}

/// The first reason recorded for a connection's end wins.
#[derive(Debug, Default)]
pub(crate) struct ReasonSlot(Mutex<Option<DisconnectReason>>);

impl ReasonSlot {
    pub(crate) fn set(&self, reason: DisconnectReason) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(reason);
        }
    }

    pub(crate) fn get(&self) -> Option<DisconnectReason> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// What a connection's task owns: its queue's receiving end and its controls.
#[derive(Debug)]
pub(crate) struct ConnParts {
    pub(crate) id: ConnId,
    /// The send queue this task drains.
    pub(crate) rx: SendRx,
    pub(crate) cancel: CancellationToken,
    pub(crate) reason: Arc<ReasonSlot>,
    /// The largest frame the reader accepts now (raised by `promote`).
    pub(crate) frame_limit: Arc<AtomicUsize>,
    /// Bytes of partial frames its reader holds (see [`ConnTable::hold`]).
    pub(crate) held: Arc<AtomicUsize>,
}

impl ConnParts {
    /// The reason to report after the cancel token fired.
    pub(crate) fn cancelled_reason(&self) -> DisconnectReason {
        self.reason.get().unwrap_or(DisconnectReason::Shutdown)
    }
}

#[derive(Debug)]
struct Entry {
    tx: SendTx,
    cancel: CancellationToken,
    reason: Arc<ReasonSlot>,
    remote: String,
    /// Its network group ([`crate::netgroup_of`]), for per-group limits.
    group: String,
    incoming: bool,
    /// Promoted by the layer above ([`crate::Transport::promote`]).
    promoted: std::sync::atomic::AtomicBool,
    /// Implementation-defined tag: the peer endpoint's id for the memory
    /// transport, 0 for TCP.
    tag: u64,
    /// The largest frame its reader accepts now.
    frame_limit: Arc<AtomicUsize>,
    /// Bytes of partial frames its reader holds.
    held: Arc<AtomicUsize>,
}

/// Bounded table of open connections.
///
/// Bounded by the transport's limits: inbound entries by `max_inbound`,
/// outbound entries by the caller's dials; entries are removed when their
/// connection's task ends.
#[derive(Debug)]
pub(crate) struct ConnTable {
    config: Config,
    next_id: AtomicU64,
    map: RwLock<HashMap<ConnId, Entry, crate::ConnIdHasher>>,
    inbound: AtomicUsize,
    /// Bytes all readers hold in partial frames, bounded by the config's
    /// `read_budget`.
    buffered: AtomicUsize,
    events: Arc<EventQueue>,
    /// Whether frames carry their queueing time (the memory transport's
    /// latency needs it; TCP skips the clock read).
    stamp_time: bool,
    pub(crate) root: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

impl Drop for ConnTable {
    fn drop(&mut self) {
        // Every handle and task is gone: the events end after the last one.
        self.events.close_producers();
    }
}

impl ConnTable {
    pub(crate) fn new(config: Config, stamp_time: bool) -> (Arc<Self>, Events) {
        let events = Arc::new(EventQueue::new(config.event_buffer));
        let rx = events.clone();
        let table = Self {
            config,
            next_id: AtomicU64::new(1),
            map: RwLock::new(HashMap::default()),
            inbound: AtomicUsize::new(0),
            buffered: AtomicUsize::new(0),
            events,
            stamp_time,
            root: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        (Arc::new(table), Events::new(rx))
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ConnId, Entry, crate::ConnIdHasher>> {
        self.map.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ConnId, Entry, crate::ConnIdHasher>> {
        self.map.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why another inbound connection from `remote` is refused now, if it
    /// is: the total limit, its network group's limit, or its group's limit
    /// of handshakes in flight (connections not promoted yet).
    pub(crate) fn refuse_inbound(&self, remote: &str) -> Option<&'static str> {
        if self.inbound.load(Ordering::Acquire) >= self.config.max_inbound {
            return Some("inbound limit reached");
        }
        let group = crate::netgroup_of(remote);
        let (mut open, mut strangers) = (0, 0);
        for e in self.read().values().filter(|e| e.incoming && e.group == group) {
            open += 1;
            if !e.promoted.load(Ordering::Acquire) {
                strangers += 1;
            }
        }
        if open >= self.config.max_inbound_per_group {
            Some("network group's inbound limit reached")
        } else if strangers >= self.config.max_strangers_per_group {
            Some("network group's handshakes in flight at the limit")
        } else {
            None
        }
    }

    /// Registers a new connection and returns what its task needs.
    ///
    /// Returns `None` once the transport is shut down.
    pub(crate) fn register(&self, remote: String, incoming: bool, tag: u64) -> Option<ConnParts> {
        if self.root.is_cancelled() {
            return None;
        }
        let id = ConnId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let queue = Arc::new(SendQueue::default());
        let held = Arc::new(AtomicUsize::new(0));
        let cancel = self.root.child_token();
        let reason = Arc::new(ReasonSlot::default());
        if incoming {
            self.inbound.fetch_add(1, Ordering::AcqRel);
        }
        // Strangers dialling in may send only small frames until promoted.
        let limit = if incoming { self.config.max_unverified_frame_len() } else { self.config.max_frame_len() };
        let frame_limit = Arc::new(AtomicUsize::new(limit));
        self.write().insert(
            id,
            Entry {
                tx: SendTx(queue.clone()),
                cancel: cancel.clone(),
                reason: reason.clone(),
                group: crate::netgroup_of(&remote),
                remote,
                incoming,
                promoted: std::sync::atomic::AtomicBool::new(!incoming),
                tag,
                frame_limit: frame_limit.clone(),
                held: held.clone(),
            },
        );
        Some(ConnParts { id, rx: SendRx(queue), cancel, reason, frame_limit, held })
    }

    /// Emits `Connected` for a registered connection. Waits for room in the
    /// event channel unless the connection or transport is cancelled first.
    pub(crate) async fn emit_connected(&self, parts: &ConnParts, remote: String, incoming: bool) -> bool {
        self.emit(Event::Connected { conn: parts.id, incoming, remote }, &parts.cancel).await
    }

    /// Emits a frame event, waiting for room (this is the backpressure).
    /// Returns `false` when the connection was cancelled meanwhile.
    pub(crate) async fn emit(&self, event: Event, cancel: &CancellationToken) -> bool {
        // Fast path: room in the queue, no waiting and no cancel future.
        let event = match self.events.try_push(event) {
            Ok(()) => return true,
            Err(TryPush::Gone) => return false,
            Err(TryPush::Full(event)) => event,
        };
        self.events.push_all(&mut vec![event], cancel).await
    }

    /// Emits every event of `events` in order (draining it), waiting for
    /// room: one lock for what fits. Returns `false` when the connection was
    /// cancelled meanwhile or nobody takes events any more.
    pub(crate) async fn emit_all(&self, events: &mut Vec<Event>, cancel: &CancellationToken) -> bool {
        self.events.push_all(events, cancel).await
    }

    /// Removes a connection whose task ended and reports it.
    pub(crate) async fn finish(&self, id: ConnId, reason: DisconnectReason) {
        let Some(entry) = self.write().remove(&id) else {
            return;
        };
        if entry.incoming {
            self.inbound.fetch_sub(1, Ordering::AcqRel);
        }
        entry.cancel.cancel();
        tracing::debug!(conn = %id, remote = %entry.remote, %reason, "connection closed");
        let event = Event::Disconnected { conn: id, reason };
        // Wait for room, but never past shutdown: a consumer that stopped
        // draining must not keep the task alive.
        self.events.push_all(&mut vec![event], &self.root).await;
    }

    /// Queues the frame `head` + `body` without waiting.
    pub(crate) fn send(&self, id: ConnId, head: &[u8], body: Bytes) -> Result<(), Error> {
        let len = head.len() + body.len();
        if len > self.config.max_frame_len {
            return Err(Error::FrameTooLarge { len: len as u64, max: self.config.max_frame_len });
        }
        let map = self.read();
        let entry = map.get(&id).ok_or(Error::UnknownConnection(id))?;
        let (max_frames, max_bytes) = (self.config.send_queue_frames, self.config.send_queue_bytes);
        // Small frames are copied into the writer's wire buffer (TCP); the
        // memory transport keeps each frame whole, with its time.
        let queued = if !self.stamp_time && len <= crate::queue::COPY_MAX {
            entry.tx.0.push_copy(head, &body, max_frames, max_bytes)
        } else {
            let frame = Outgoing::Frame { head: Head::new(head), body, at: self.stamp_time.then(Instant::now) };
            entry.tx.0.push(frame, max_frames, max_bytes)
        };
        let err = match queued {
            Ok(()) => return Ok(()),
            Err(Refused::Gone) => return Err(Error::UnknownConnection(id)),
            Err(Refused::Full { frames, bytes }) => Error::SendQueueFull { queued_frames: frames, queued_bytes: bytes },
        };
        tracing::debug!(conn = %id, remote = %entry.remote, "peer too slow: {err}");
        entry.reason.set(DisconnectReason::SendQueueFull);
        entry.cancel.cancel();
        Err(err)
    }

    /// Closes gracefully: queued frames are written first. When the queue is
    /// full the connection is closed at once.
    pub(crate) fn close(&self, id: ConnId) {
        self.close_with(id, DisconnectReason::Closed);
    }

    /// Closes with a given reason (first reason recorded wins).
    pub(crate) fn close_with(&self, id: ConnId, reason: DisconnectReason) {
        let map = self.read();
        if let Some(entry) = map.get(&id) {
            entry.reason.set(reason);
            // The marker counts as a frame, not as bytes: a full queue
            // closes at once, as before.
            if entry.tx.0.push(Outgoing::Close, self.config.send_queue_frames, usize::MAX).is_err() {
                entry.cancel.cancel();
            }
        }
    }

    /// Ends a connection at once, dropping whatever is queued.
    pub(crate) fn abort_with(&self, id: ConnId, reason: DisconnectReason) {
        if let Some(entry) = self.read().get(&id) {
            entry.reason.set(reason);
            entry.cancel.cancel();
        }
    }

    /// Ends at once every connection whose tag matches.
    pub(crate) fn abort_tagged(&self, tag: u64, reason: DisconnectReason) {
        for entry in self.read().values().filter(|e| e.tag == tag) {
            entry.reason.set(reason.clone());
            entry.cancel.cancel();
        }
    }

    /// Raises a connection's frame limit to the maximum.
    pub(crate) fn promote(&self, id: ConnId) {
        if let Some(entry) = self.read().get(&id) {
            entry.frame_limit.store(self.config.max_frame_len(), Ordering::Release);
            entry.promoted.store(true, Ordering::Release);
        }
    }

    /// The largest frame `id` may receive now (0 for an unknown connection).
    pub(crate) fn frame_limit(&self, id: ConnId) -> usize {
        self.read().get(&id).map_or(0, |e| e.frame_limit.load(Ordering::Acquire))
    }

    /// Lowers an inbound connection's frame limit back to the stranger's
    /// (outbound connections keep theirs).
    pub(crate) fn demote(&self, id: ConnId) {
        if let Some(entry) = self.read().get(&id)
            && entry.incoming
        {
            entry.frame_limit.store(self.config.max_unverified_frame_len(), Ordering::Release);
            entry.promoted.store(false, Ordering::Release);
        }
    }

    /// Counts `more` bytes held by a reader; `false` (and nothing counted)
    /// when that would pass the read budget.
    pub(crate) fn hold(&self, more: usize) -> bool {
        let budget = self.config.read_budget();
        self.buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(more).filter(|total| *total <= budget)
            })
            .is_ok()
    }

    /// Counts `more` bytes even past the budget (a reader that made the
    /// largest holder close; it gives its bytes back as it goes).
    pub(crate) fn force_hold(&self, more: usize) {
        self.buffered.fetch_add(more, Ordering::AcqRel);
    }

    /// The connection whose reader holds the most, and how much.
    pub(crate) fn largest_holder(&self) -> Option<(ConnId, usize)> {
        self.read().iter().map(|(id, e)| (*id, e.held.load(Ordering::Acquire))).max_by_key(|(_, held)| *held)
    }

    /// Returns `less` bytes a reader no longer holds.
    pub(crate) fn release(&self, less: usize) {
        self.buffered.fetch_sub(less, Ordering::AcqRel);
    }

    /// Bytes all readers hold now.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Acquire)
    }

    pub(crate) fn remote_addr(&self, id: ConnId) -> Option<String> {
        self.read().get(&id).map(|e| e.remote.clone())
    }

    pub(crate) fn connections(&self) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self.read().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Cancels everything and waits, at most [`SHUTDOWN_GRACE`], for the
    /// tasks to end.
    pub(crate) async fn shutdown(&self) {
        for entry in self.read().values() {
            entry.reason.set(DisconnectReason::Shutdown);
        }
        self.root.cancel();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait()).await.is_err() {
            tracing::warn!("transport tasks still running after {SHUTDOWN_GRACE:?}");
        }
    }
}
