//! The two queues a transport keeps, built for batches: a connection's send
//! queue and the transport's event queue.
//!
//! Both are a `VecDeque` behind a mutex, not a channel. A channel costs a
//! few atomic operations on a cache line shared between two threads for
//! every item, and tokio's allocates a block of slots for every 32 items;
//! at small frames that was most of what the transport cost (toy-net ran at
//! 31 % of raw framing with 128 heap bytes per 64-byte frame). Here the
//! producer appends under a short lock, and the consumer takes *everything*
//! queued in one lock by swapping the deque with an empty one of its own, so
//! it pays one lock per batch and no allocation once both deques have grown
//! to the batch size. The same design as the write buffers of tokio-util's
//! `Framed` or a `crossbeam` segment queue drained in bulk, kept to what a
//! transport needs: bounded, cancel-safe, closable from either side.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Event;

/// Header bytes a frame keeps inline (see [`Head`]); longer ones go to the
/// heap. 38 bytes hold toy-msg's 6 header bytes and a kind of 32.
const HEAD_INLINE: usize = 38;

/// Frames up to this length are copied into the send queue's wire buffer
/// by [`SendQueue::push_copy`]; longer ones are queued by reference (the
/// writer copies them into its own buffer, or writes them from their own
/// memory when they are large).
pub(crate) const COPY_MAX: usize = 1024;

/// A wire buffer's capacity: it takes frames while they fit and never grows;
/// the next frame starts another.
const WIRE_CHUNK: usize = 16 * 1024;

/// Wire buffers the queue keeps for reuse once the writer has written them:
/// what a connection keeps for sending once its traffic stops (64 KiB).
/// Enough that the sender rarely finds none while the writer writes.
const WIRE_SPARES: usize = 4;

/// Queue slots kept once the queue is empty again; a burst beyond them gives
/// its memory back.
const SLOTS_KEPT: usize = 64;

/// The first part of a frame given to [`crate::Transport::send_parts`]:
/// copied in, inline when short, so a message header costs no allocation.
#[derive(Debug, Clone)]
pub(crate) enum Head {
    /// Up to [`HEAD_INLINE`] bytes.
    Inline { len: u8, bytes: [u8; HEAD_INLINE] },
    /// Longer heads.
    Heap(Box<[u8]>),
}

impl Head {
    pub(crate) fn new(head: &[u8]) -> Self {
        match u8::try_from(head.len()) {
            Ok(len) if head.len() <= HEAD_INLINE => {
                let mut bytes = [0; HEAD_INLINE];
                bytes[..head.len()].copy_from_slice(head);
                Head::Inline { len, bytes }
            }
            _ => Head::Heap(head.into()),
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Head::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Head::Heap(bytes) => bytes,
        }
    }
}

/// An item of a connection's send queue.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A frame: `head` then `body` on the wire. `at` is the moment it was
    /// queued when the transport simulates latency (the memory transport).
    Frame { head: Head, body: Bytes, at: Option<Instant> },
    /// Small frames already in wire format (length prefix, head, body),
    /// copied in by [`SendQueue::push_copy`]: written as they are. `frames`
    /// and `bytes` are what the queue's limits counted for them (`bytes` is
    /// the buffer's capacity, whatever it holds).
    Wire { wire: BytesMut, frames: usize, bytes: usize },
    /// Close after everything queued before this marker is written.
    Close,
}

impl Outgoing {
    /// What the queue's limits count for this item: frames, and bytes
    /// without the length prefixes.
    fn counted(&self) -> (usize, usize) {
        match self {
            Outgoing::Frame { head, body, .. } => (1, head.as_slice().len() + body.len()),
            Outgoing::Wire { frames, bytes, .. } => (*frames, *bytes),
            Outgoing::Close => (1, 0),
        }
    }
}

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue is at its frame or byte limit.
    Full { frames: usize, bytes: usize },
    /// Nobody drains the queue any more (the connection's task ended).
    Gone,
}

/// One connection's send queue, between the callers of `send` and the
/// connection's writer.
///
/// Bounded by the transport's `send_queue_frames` and `send_queue_bytes`
/// (checked by [`SendQueue::push`]). The bytes the writer has taken stay
/// counted until it has written them, so a writer stuck on a peer that does
/// not read holds part of the same byte budget, never a second one; frames
/// leave the count when taken (the writer takes about 64 KiB at a time, so
/// a stuck writer holds at most that many more). A wire buffer is charged
/// its whole capacity. Besides, the queue keeps up to [`WIRE_SPARES`]
/// written-out wire buffers (64 KiB) for reuse for the connection's life:
/// trimming them after light batches cost a burst after a pause three new
/// buffers (about 30 heap bytes per 64 B message in the bench). Nothing is
/// evicted: a frame that does not fit is refused and the connection closed,
/// since a peer that does not read must not make us buffer for it.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    state: Mutex<SendState>,
    /// Wakes the writer; one permit is stored when it is not waiting.
    ready: Notify,
}

#[derive(Debug, Default)]
struct SendState {
    items: VecDeque<Outgoing>,
    /// Frames (and close markers) queued, those in wire buffers included.
    frames: usize,
    /// Frame bytes queued or being written.
    bytes: usize,
    /// Of those, the bytes the writer took last and may still be writing.
    taken_bytes: usize,
    /// Wire buffers the writer gave back, for the next small frames (at
    /// most [`WIRE_SPARES`]).
    spares: Vec<BytesMut>,
    /// The writer is gone; `push` refuses.
    gone: bool,
    /// Every sending handle is gone; the writer ends once the queue is empty.
    closed: bool,
}

impl SendQueue {
    fn state(&self) -> MutexGuard<'_, SendState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` unless that would pass `max_frames` items or
    /// `max_bytes` bytes. One frame is always accepted into an empty queue
    /// (a frame larger than the byte limit still goes, alone).
    pub(crate) fn push(&self, item: Outgoing, max_frames: usize, max_bytes: usize) -> Result<(), Refused> {
        let (_, len) = item.counted();
        let was_empty = {
            let mut s = self.state();
            s.admit(len, max_frames, max_bytes)?;
            s.items.push_back(item);
            s.items.len() == 1
        };
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Queues the frame `head` + `body` (at most [`COPY_MAX`] bytes) by
    /// copying it, length prefix and all, into the wire buffer at the end of
    /// the queue, under the same limits as [`SendQueue::push`]. The writer
    /// then writes the buffer as it is, and gives it back for reuse: small
    /// frames cost the queue no allocation and the writer no copy, and the
    /// caller's `body` is released on the caller's thread.
    ///
    /// A frame that opens a new wire buffer is charged the buffer's whole
    /// [`WIRE_CHUNK`] against the byte limit, and those that join it nothing
    /// more: the limit counts the memory queued, so small frames between
    /// large ones (a buffer each) cannot hold more than it.
    pub(crate) fn push_copy(
        &self,
        head: &[u8],
        body: &[u8],
        max_frames: usize,
        max_bytes: usize,
    ) -> Result<(), Refused> {
        let len = head.len() + body.len();
        let was_empty = {
            let mut s = self.state();
            let on_wire = crate::codec::LEN_PREFIX + len;
            let fits = |wire: &BytesMut| wire.capacity() - wire.len() >= on_wire;
            if matches!(s.items.back(), Some(Outgoing::Wire { wire, .. }) if fits(wire)) {
                s.admit(0, max_frames, max_bytes)?;
            } else {
                s.admit(WIRE_CHUNK, max_frames, max_bytes)?;
                let fresh = s.spares.pop().unwrap_or_else(|| BytesMut::with_capacity(WIRE_CHUNK));
                s.items.push_back(Outgoing::Wire { wire: fresh, frames: 0, bytes: WIRE_CHUNK });
            }
            let was_empty = s.items.len() == 1;
            if let Some(Outgoing::Wire { wire, frames, .. }) = s.items.back_mut() {
                // Room was checked (a new buffer has room for any frame up
                // to COPY_MAX): this never allocates. `len` fits the prefix.
                wire.reserve(on_wire);
                wire.put_u32(len as u32);
                wire.extend_from_slice(head);
                wire.extend_from_slice(body);
                *frames += 1;
            }
            was_empty && matches!(s.items.back(), Some(Outgoing::Wire { frames: 1, .. }))
        };
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Marks the sending side gone (the connection left the table): the
    /// writer drains what is queued, then sees the end.
    pub(crate) fn close_senders(&self) {
        self.state().closed = true;
        self.ready.notify_one();
    }

    /// Moves the items at the front of the queue into `into`, up to about
    /// `max_bytes` of frames (at least one item), and waits while nothing is
    /// queued. Their frames leave the count now, their bytes when the writer
    /// calls [`SendQueue::written`] (or takes again). Returns `false` once the
    /// senders are gone and nothing is left. Cancel-safe: items are only
    /// taken when it returns.
    ///
    /// `give_back` holds wire buffers the writer is done with: kept (emptied)
    /// for the next small frames, up to [`WIRE_SPARES`].
    pub(crate) async fn take(
        &self,
        into: &mut VecDeque<Outgoing>,
        max_bytes: usize,
        give_back: &mut Vec<BytesMut>,
    ) -> bool {
        loop {
            let ready = self.ready.notified();
            {
                let mut s = self.state();
                s.release_taken();
                for mut wire in give_back.drain(..) {
                    wire.clear();
                    // Written out, the view sits at the end of its memory:
                    // move it back to the start (it is no one else's).
                    if s.spares.len() < WIRE_SPARES && wire.try_reclaim(WIRE_CHUNK) {
                        s.spares.push(wire);
                    }
                }
                if !s.items.is_empty() {
                    let mut taken = 0;
                    while let Some(item) = s.items.pop_front() {
                        let (frames, bytes) = item.counted();
                        s.frames = s.frames.saturating_sub(frames);
                        taken += bytes;
                        into.push_back(item);
                        if taken >= max_bytes {
                            break;
                        }
                    }
                    s.taken_bytes = taken;
                    if s.items.is_empty() && s.items.capacity() > SLOTS_KEPT {
                        s.items.shrink_to(SLOTS_KEPT);
                    }
                    return true;
                }
                if s.closed {
                    return false;
                }
            }
            ready.await;
        }
    }

    /// The writer has written what it took last: its bytes leave the count.
    pub(crate) fn written(&self) {
        self.state().release_taken();
    }

    /// Marks the receiving side gone: later pushes are refused, and what is
    /// queued is dropped.
    pub(crate) fn close_receiver(&self) {
        let mut s = self.state();
        s.gone = true;
        s.items = VecDeque::new();
        s.spares = Vec::new();
        s.bytes = 0;
        s.frames = 0;
        s.taken_bytes = 0;
    }

    /// Frames and bytes queued now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> (usize, usize) {
        let s = self.state();
        (s.frames, s.bytes)
    }
}

impl SendState {
    fn release_taken(&mut self) {
        self.bytes = self.bytes.saturating_sub(std::mem::take(&mut self.taken_bytes));
    }

    /// Counts a frame of `len` bytes in, or says why not.
    fn admit(&mut self, len: usize, max_frames: usize, max_bytes: usize) -> Result<(), Refused> {
        if self.gone {
            return Err(Refused::Gone);
        }
        if self.frames >= max_frames || (self.bytes > 0 && self.bytes + len > max_bytes) {
            return Err(Refused::Full { frames: self.frames, bytes: self.bytes });
        }
        self.frames += 1;
        self.bytes += len;
        Ok(())
    }
}

/// The transport's event queue, from every connection's task to the one
/// consumer of [`crate::Events`].
///
/// Bounded by the transport's `event_buffer` events: a producer waits for
/// room (this is the backpressure that stops reading from the network when
/// nobody drains the events); nothing is evicted. Fair enough between
/// connections: a TCP reader hands over at most 256 events per turn (a
/// quarter of the default buffer), and producers waiting for room are all
/// woken when the consumer takes, to race for it, not served in order as a
/// channel's semaphore would.
#[derive(Debug)]
pub(crate) struct EventQueue {
    state: Mutex<EventState>,
    /// Wakes producers waiting for room.
    space: Notify,
}

#[derive(Debug)]
struct EventState {
    items: VecDeque<Event>,
    cap: usize,
    rx_waker: Option<Waker>,
    /// A producer waits for room: the consumer notifies when it takes.
    producers_waiting: bool,
    /// The consumer is gone: producers are refused.
    rx_gone: bool,
    /// The producing side (the connection table) is gone: the consumer sees
    /// the end once the queue is empty.
    tx_gone: bool,
}

/// What [`EventQueue::try_push`] did not do.
pub(crate) enum TryPush {
    /// No room; the event is given back.
    Full(Event),
    /// The consumer is gone.
    Gone,
}

impl EventQueue {
    /// An empty queue holding at most `cap` events (at least one).
    pub(crate) fn new(cap: usize) -> Self {
        let state = EventState {
            items: VecDeque::new(),
            cap: cap.max(1),
            rx_waker: None,
            producers_waiting: false,
            rx_gone: false,
            tx_gone: false,
        };
        Self { state: Mutex::new(state), space: Notify::new() }
    }

    fn state(&self) -> MutexGuard<'_, EventState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `event` if there is room now.
    pub(crate) fn try_push(&self, event: Event) -> Result<(), TryPush> {
        let waker = {
            let mut s = self.state();
            if s.rx_gone {
                return Err(TryPush::Gone);
            }
            if s.items.len() >= s.cap {
                return Err(TryPush::Full(event));
            }
            s.items.push_back(event);
            s.rx_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Queues every event of `events` in order (draining it), waiting for
    /// room as needed. Returns `false`, leaving in `events` what was not
    /// queued, when the consumer is gone or `cancel` fires first.
    /// Cancel-safe: what is not queued stays in `events`.
    pub(crate) async fn push_all(&self, events: &mut Vec<Event>, cancel: &CancellationToken) -> bool {
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            // Registered before the check, so a consumer taking events after
            // it cannot be missed.
            space.as_mut().enable();
            let waker = {
                let mut s = self.state();
                if s.rx_gone {
                    return false;
                }
                let room = s.cap.saturating_sub(s.items.len()).min(events.len());
                s.items.extend(events.drain(..room));
                if !events.is_empty() {
                    s.producers_waiting = true;
                }
                if room > 0 { s.rx_waker.take() } else { None }
            };
            if let Some(w) = waker {
                w.wake();
            }
            if events.is_empty() {
                return true;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return false,
                _ = &mut space => {}
            }
        }
    }

    /// Marks the producing side gone.
    pub(crate) fn close_producers(&self) {
        let waker = {
            let mut s = self.state();
            s.tx_gone = true;
            s.rx_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Marks the consumer gone: producers waiting for room give up.
    pub(crate) fn close_consumer(&self) {
        {
            let mut s = self.state();
            s.rx_gone = true;
            s.items = VecDeque::new();
        }
        self.space.notify_waiters();
    }

    /// Moves up to `limit` events into `into`: `Ready(0)` once the
    /// producers are gone and nothing is left.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>, into: &mut impl Extend<Event>, limit: usize) -> Poll<usize> {
        let notify = {
            let mut s = self.state();
            if s.items.is_empty() {
                if s.tx_gone {
                    return Poll::Ready(0);
                }
                match &s.rx_waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => s.rx_waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            let n = s.items.len().min(limit);
            into.extend(s.items.drain(..n));
            (n, std::mem::take(&mut s.producers_waiting))
        };
        if notify.1 {
            self.space.notify_waiters();
        }
        Poll::Ready(notify.0)
    }

    /// Takes one event if one is queued.
    pub(crate) fn try_take(&self) -> Option<Event> {
        let (event, notify) = {
            let mut s = self.state();
            let event = s.items.pop_front()?;
            (event, std::mem::take(&mut s.producers_waiting))
        };
        if notify {
            self.space.notify_waiters();
        }
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ConnId;

    fn frame(n: u8) -> Outgoing {
        Outgoing::Frame { head: Head::new(&[n]), body: Bytes::from_static(b"body"), at: None }
    }

    fn ev(n: u64) -> Event {
        Event::Frame { conn: ConnId(n), data: Bytes::new() }
    }

    #[test]
    fn a_head_is_inline_up_to_its_limit_and_on_the_heap_past_it() {
        let short = Head::new(&[7; HEAD_INLINE]);
        assert!(matches!(short, Head::Inline { .. }));
        assert_eq!(short.as_slice(), &[7; HEAD_INLINE]);
        let long = Head::new(&[9; HEAD_INLINE + 1]);
        assert!(matches!(long, Head::Heap(_)));
        assert_eq!(long.as_slice(), &[9; HEAD_INLINE + 1]);
        assert!(Head::new(&[]).as_slice().is_empty());
    }

    #[test]
    fn the_send_queue_refuses_past_its_frame_and_byte_limits_and_after_its_writer_left() {
        let q = SendQueue::default();
        assert_eq!(q.push(frame(1), 2, 1000), Ok(()));
        assert_eq!(q.push(frame(2), 2, 1000), Ok(()));
        assert_eq!(q.push(frame(3), 2, 1000), Err(Refused::Full { frames: 2, bytes: 10 }));
        let q = SendQueue::default();
        // One frame over the byte limit goes alone; a second is refused.
        assert_eq!(q.push(frame(1), 8, 3), Ok(()));
        assert_eq!(q.push(frame(2), 8, 3), Err(Refused::Full { frames: 1, bytes: 5 }));
        q.close_receiver();
        assert_eq!(q.len(), (0, 0));
        assert_eq!(q.push(frame(3), 8, 1000), Err(Refused::Gone));
    }

    #[tokio::test]
    async fn small_frames_are_copied_into_one_wire_buffer_in_order_and_the_buffer_is_reused() {
        let q = SendQueue::default();
        let max = 1 << 20;
        q.push_copy(b"h1", b"ab", 8, max).expect("room");
        q.push_copy(b"", b"c", 8, max).expect("room");
        q.push(frame(7), 8, max).expect("room");
        q.push_copy(b"h", b"", 8, max).expect("room");
        // Each wire buffer is charged its capacity, a frame by reference its length.
        assert_eq!(q.len(), (4, 2 * WIRE_CHUNK + 5));
        assert_eq!(q.push_copy(b"", b"x", 4, max), Err(Refused::Full { frames: 4, bytes: 2 * WIRE_CHUNK + 5 }));
        assert_eq!(
            q.push(frame(8), 8, 2 * WIRE_CHUNK + 5),
            Err(Refused::Full { frames: 4, bytes: 2 * WIRE_CHUNK + 5 }),
            "the charge counts against the byte limit"
        );
        let mut items = VecDeque::new();
        assert!(q.take(&mut items, usize::MAX, &mut Vec::new()).await);
        let kinds: Vec<Vec<u8>> = items
            .iter()
            .map(|i| match i {
                Outgoing::Wire { wire, .. } => wire.to_vec(),
                Outgoing::Frame { head, .. } => head.as_slice().to_vec(),
                Outgoing::Close => vec![],
            })
            .collect();
        assert_eq!(kinds, vec![b"\0\0\0\x04h1ab\0\0\0\x01c".to_vec(), vec![7], b"\0\0\0\x01h".to_vec()]);
        // The writer gives a buffer back; the next small frame goes into it.
        let Some(Outgoing::Wire { wire: used, .. }) = items.pop_front() else { panic!("a wire buffer first") };
        let capacity = used.capacity();
        let mut give_back = vec![used];
        q.push_copy(b"", b"z", 8, max).expect("room");
        items.clear();
        assert!(q.take(&mut items, usize::MAX, &mut give_back).await);
        assert!(give_back.is_empty(), "taken into the queue's spares");
        q.push_copy(b"", b"y", 8, max).expect("room");
        items.clear();
        assert!(q.take(&mut items, usize::MAX, &mut Vec::new()).await);
        match items.front() {
            Some(Outgoing::Wire { wire: w, .. }) => {
                assert_eq!(&w[..], b"\0\0\0\x01y");
                assert_eq!(w.capacity(), capacity, "the spare was reused");
            }
            other => panic!("expected a wire buffer, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_writer_takes_in_order_then_sees_the_senders_go() {
        let q = Arc::new(SendQueue::default());
        let waiting = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut into = VecDeque::new();
                let more = q.take(&mut into, usize::MAX, &mut Vec::new()).await;
                (more, into.len())
            })
        };
        q.push(frame(0), 8, 1000).expect("room");
        let (more, n) = waiting.await.expect("task");
        assert!(more && n == 1, "a waiting writer is woken with what was queued");
        for n in 1..3 {
            q.push(frame(n), 8, 1000).expect("room");
        }
        let mut taken = VecDeque::new();
        assert!(q.take(&mut taken, 5, &mut Vec::new()).await);
        assert_eq!(taken.len(), 1, "at most about max_bytes per take, at least one item");
        assert_eq!(q.len(), (1, 10), "the earlier take's bytes are released; this one's still count");
        q.written();
        assert_eq!(q.len(), (1, 5), "written: released");
        q.close_senders();
        assert!(
            q.take(&mut taken, usize::MAX, &mut Vec::new()).await,
            "what was queued before the close is still taken"
        );
        assert_eq!(taken.len(), 2);
        assert_eq!(q.len(), (0, 5));
        assert!(!q.take(&mut taken, usize::MAX, &mut Vec::new()).await, "then the end");
        assert_eq!(q.len(), (0, 0));
    }

    #[tokio::test]
    async fn a_writer_stuck_on_a_peer_that_does_not_read_holds_part_of_the_budget_not_a_second_one() {
        let q = SendQueue::default();
        for n in 0..4 {
            q.push(frame(n), 8, 20).expect("room");
        }
        let mut taken = VecDeque::new();
        assert!(q.take(&mut taken, usize::MAX, &mut Vec::new()).await);
        // The writer now blocks writing these: their bytes still fill the budget.
        assert_eq!(q.push(frame(9), 8, 20), Err(Refused::Full { frames: 0, bytes: 20 }));
        assert_eq!(q.push_copy(b"", b"x", 8, 20), Err(Refused::Full { frames: 0, bytes: 20 }));
        q.written();
        assert_eq!(q.push(frame(9), 8, 20), Ok(()));
    }

    #[tokio::test]
    async fn a_full_event_queue_holds_its_producer_until_the_consumer_takes() {
        let q = Arc::new(EventQueue::new(2));
        let cancel = CancellationToken::new();
        let producer = {
            let (q, cancel) = (q.clone(), cancel.clone());
            tokio::spawn(async move {
                let mut batch: Vec<Event> = (0..5).map(ev).collect();
                q.push_all(&mut batch, &cancel).await
            })
        };
        let mut got = Vec::new();
        while got.len() < 5 {
            let mut some = Vec::new();
            let n = std::future::poll_fn(|cx| q.poll_take(cx, &mut some, 1)).await;
            assert!(n <= 1, "the limit holds");
            got.extend(some);
        }
        assert!(producer.await.expect("task"));
        let order: Vec<u64> = got
            .iter()
            .map(|e| match e {
                Event::Frame { conn, .. } => conn.0,
                _ => u64::MAX,
            })
            .collect();
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn producers_give_up_when_cancelled_or_when_the_consumer_goes_and_the_consumer_sees_the_end() {
        let q = Arc::new(EventQueue::new(1));
        assert!(q.try_push(ev(1)).is_ok());
        assert!(matches!(q.try_push(ev(2)), Err(TryPush::Full(_))));
        let cancel = CancellationToken::new();
        let mut batch = vec![ev(2), ev(3)];
        let pushing = q.push_all(&mut batch, &cancel);
        cancel.cancel();
        assert!(!pushing.await);
        assert_eq!(batch.len(), 2, "nothing queued is lost from the caller's batch");

        let blocked = {
            let q = q.clone();
            tokio::spawn(async move { q.push_all(&mut vec![ev(4)], &CancellationToken::new()).await })
        };
        tokio::task::yield_now().await;
        q.close_consumer();
        assert!(!blocked.await.expect("task"), "a consumer gone frees a waiting producer");
        assert!(matches!(q.try_push(ev(5)), Err(TryPush::Gone)));

        let q = EventQueue::new(4);
        q.try_push(ev(1)).ok();
        q.close_producers();
        assert!(q.try_take().is_some());
        let mut rest = Vec::new();
        assert_eq!(std::future::poll_fn(|cx| q.poll_take(cx, &mut rest, 8)).await, 0, "the end after the last event");
    }
}
