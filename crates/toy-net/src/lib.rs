//! # toy-net — the transport layer
//!
//! The bottom floor of toy. It moves *frames* — byte strings — between nodes
//! and reports what happens to connections as a stream of [`Event`]s, the
//! three events of the workshop's network layer:
//!
//! ```text
//!   layer above (toy-msg)          send(conn, frame)    close(conn)
//!         ▲  Event::Connected { conn, incoming }           │
//!         │  Event::Frame { conn, data }                   ▼
//!         │  Event::Disconnected { conn, reason }   ┌─────────────┐
//!         └───────────── Events ◄─────────────────── │  Transport  │
//!                                                    └─────────────┘
//!                                TcpTransport: [len: u32 BE][payload] on TCP
//!                             MemoryTransport: the same frames, in process
//! ```
//!
//! Two implementations of the [`Transport`] trait ship here:
//!
//! * [`TcpTransport`] — real TCP on tokio, with the frame format of
//!   [`codec`]: a 4-byte big-endian length, then the payload.
//! * [`MemoryTransport`] — endpoints of a [`MemoryNetwork`] in one process,
//!   with per-link latency, cut links and healable partitions, for tests and
//!   simulations of thousands of nodes.
//!
//! Every limit is bounded and configurable through [`Config`]: the maximum
//! frame length (checked before allocating), a per-connection send queue (a
//! peer that stops reading is disconnected when it fills), the number of
//! inbound connections and the connect timeout.
//!
//! ## Example
//!
//! ```
//! use bytes::Bytes;
//! use toy_net::{Config, Event, TcpTransport, Transport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), toy_net::Error> {
//! let (server, mut server_events) = TcpTransport::new(Config::default());
//! let addr = server.listen("127.0.0.1:0").await?;
//!
//! let (client, _client_events) = TcpTransport::new(Config::default());
//! let conn = client.connect(&addr).await?;
//! client.send(conn, Bytes::from_static(b"hello"))?;
//!
//! loop {
//!     match server_events.next().await {
//!         Some(Event::Frame { data, .. }) => {
//!             assert_eq!(&data[..], b"hello");
//!             break;
//!         }
//!         Some(_) => continue, // the Connected event comes first
//!         None => unreachable!("the transport is alive"),
//!     }
//! }
//! client.shutdown().await;
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod addr;
pub mod codec;
mod config;
mod conns;
mod error;
mod memory;
mod queue;
mod tcp;
pub mod throttle;

#[cfg(feature = "test-utils")]
pub mod conformance;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::queue::EventQueue;

pub use addr::{netgroup_of, origin_of};
pub use codec::{DEFAULT_MAX_FRAME_LEN, FrameCodec};
pub use config::{
    Config, ConfigBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_EVENT_BUFFER, DEFAULT_MAX_INBOUND,
    DEFAULT_MAX_INBOUND_PER_GROUP, DEFAULT_MAX_STRANGERS_PER_GROUP, DEFAULT_MAX_UNVERIFIED_FRAME_LEN,
    DEFAULT_READ_BUDGET, DEFAULT_SEND_QUEUE_BYTES, DEFAULT_SEND_QUEUE_FRAMES,
};
pub use error::Error;
pub use memory::{MemoryNetwork, MemoryTransport};
pub use tcp::TcpTransport;
pub use throttle::Throttle;

/// Identifies one connection of one transport. Ids are never reused by a
/// transport instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The hasher of maps keyed by [`ConnId`] (use it as
/// `HashMap<ConnId, V, ConnIdHasher>`): one multiplication.
///
/// Connection ids are handed out by the transport, never chosen by a peer,
/// so these maps need none of the flood resistance the default SipHash buys
/// and which costs tens of nanoseconds on every frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnIdHasher(u64);

impl std::hash::Hasher for ConnIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        // Fibonacci hashing: the high bits, which hashbrown uses, mix well.
        self.0 = (self.0 ^ id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl std::hash::BuildHasher for ConnIdHasher {
    type Hasher = ConnIdHasher;

    fn build_hasher(&self) -> ConnIdHasher {
        ConnIdHasher(0)
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// We closed it with [`Transport::close`].
    Closed,
    /// The peer closed it (end of stream).
    RemoteClosed,
    /// The peer announced a frame over our maximum.
    FrameTooLarge {
        /// Announced length.
        len: u64,
        /// Our maximum.
        max: usize,
    },
    /// The peer did not read fast enough and our send queue filled.
    SendQueueFull,
    /// The operating system reported an error on the socket.
    Io(std::io::ErrorKind),
    /// The transport was shut down.
    Shutdown,
    /// The in-memory link was cut (see [`MemoryNetwork::cut`]).
    LinkCut,
    /// Its partial frame would take the bytes all readers buffer together
    /// past the transport's budget ([`Config::read_budget`]).
    ReadBudget,
}

impl DisconnectReason {
    /// Whether the disconnect was initiated by our side (the workshop's
    /// `incoming = False` of `on_disconnect`).
    pub fn initiated_by_us(&self) -> bool {
        matches!(self, Self::Closed | Self::FrameTooLarge { .. } | Self::SendQueueFull | Self::Shutdown)
    }

    /// Whether the peer misbehaved (so the layer above may penalise it).
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, Self::FrameTooLarge { .. } | Self::SendQueueFull)
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("closed by us"),
            Self::RemoteClosed => f.write_str("closed by peer"),
            Self::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes over the maximum of {max}")
            }
            Self::SendQueueFull => f.write_str("send queue full"),
            Self::Io(kind) => write!(f, "i/o error: {kind}"),
            Self::Shutdown => f.write_str("transport shut down"),
            Self::LinkCut => f.write_str("link cut"),
            Self::ReadBudget => f.write_str("read budget of all connections exhausted"),
        }
    }
}

/// What happens on a transport's connections, in order per connection:
/// one `Connected`, any number of `Frame`s, one `Disconnected`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection is open.
    Connected {
        /// The new connection.
        conn: ConnId,
        /// `true` when the peer dialled us, `false` when we dialled.
        incoming: bool,
        /// The peer's address as this transport sees it.
        remote: String,
    },
    /// A whole frame arrived.
    Frame {
        /// The connection it came on.
        conn: ConnId,
        /// The frame's payload, without the length prefix.
        data: Bytes,
    },
    /// A connection ended; no more events follow for it.
    Disconnected {
        /// The connection that ended.
        conn: ConnId,
        /// Why. [`DisconnectReason::initiated_by_us`] tells who ended it.
        reason: DisconnectReason,
    },
}

/// The receiving end of a transport's events.
///
/// Bounded by [`Config::event_buffer`] events, plus at most
/// [`Events::TAKE_AHEAD`] that [`Events::next`] took in its last batch: when
/// nobody drains it, reading from the network stops (and the peers' send
/// queues fill), so memory stays bounded.
#[derive(Debug)]
pub struct Events {
    queue: Arc<EventQueue>,
    /// Events [`Events::next`] took in one batch and has not handed out yet.
    ready: std::collections::VecDeque<Event>,
}

impl Events {
    pub(crate) fn new(queue: Arc<EventQueue>) -> Self {
        Self { queue, ready: std::collections::VecDeque::new() }
    }

    /// Events [`Events::next`] takes from the queue at once, handing them
    /// out one by one: one lock per batch rather than per event.
    pub const TAKE_AHEAD: usize = 64;

    /// The next event, or `None` once every handle of the transport is
    /// dropped and every event was taken. Cancel-safe: no event is lost if the
    /// future is dropped.
    pub async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.ready.pop_front() {
            return Some(event);
        }
        let ready = &mut self.ready;
        std::future::poll_fn(|cx| self.queue.poll_take(cx, ready, Self::TAKE_AHEAD)).await;
        self.ready.pop_front()
    }

    /// The next event if one is ready now.
    pub fn try_next(&mut self) -> Option<Event> {
        self.ready.pop_front().or_else(|| self.queue.try_take())
    }

    /// Waits for at least one event, then appends up to `limit` ready events
    /// to `buf`; returns how many, 0 once the stream has ended (or when
    /// `limit` is 0). Taking events in batches saves a lock and a wake-up per
    /// event under load. Cancel-safe.
    pub async fn next_batch(&mut self, buf: &mut Vec<Event>, limit: usize) -> usize {
        if limit == 0 {
            return 0;
        }
        if !self.ready.is_empty() {
            let n = self.ready.len().min(limit);
            buf.extend(self.ready.drain(..n));
            return n;
        }
        std::future::poll_fn(|cx| self.queue.poll_take(cx, buf, limit)).await
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.queue.close_consumer();
    }
}

/// A transport of length-prefixed frames: the trait the messaging layer is
/// generic over.
///
/// Implementations are cheap handles (clone them freely); their events come
/// through the [`Events`] returned with the handle at construction.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Starts accepting connections at `addr` (`host:port`; port 0 picks one)
    /// and returns the address actually bound. Accepted connections appear as
    /// [`Event::Connected`] with `incoming: true`.
    ///
    /// Cancel-safe: dropping the future before it completes binds nothing.
    async fn listen(&self, addr: &str) -> Result<String, Error>;

    /// Dials `addr` (`host:port`), within the configured connect timeout.
    ///
    /// The [`Event::Connected`] with `incoming: false` follows on the event
    /// stream. Cancel-safe: a dial dropped before it completes opens nothing.
    async fn connect(&self, addr: &str) -> Result<ConnId, Error>;

    /// Queues a frame for sending; never waits.
    ///
    /// # Errors
    /// [`Error::UnknownConnection`] when `conn` is not open,
    /// [`Error::FrameTooLarge`] when the frame is over the maximum, and
    /// [`Error::SendQueueFull`] when the peer is too slow — the connection is
    /// then closed.
    fn send(&self, conn: ConnId, frame: Bytes) -> Result<(), Error>;

    /// Queues the frame `head` followed by `body`, as [`Transport::send`]
    /// would queue their concatenation (same errors; the maximum counts
    /// both). `head` is copied and should be small, a header; `body` is
    /// shared, never copied. The layer above puts its header in front of a
    /// payload this way without building a frame of its own: both transports
    /// here keep a short head inline in the send queue and write the two
    /// parts straight into the connection's write buffer.
    ///
    /// The provided implementation concatenates and calls `send`.
    fn send_parts(&self, conn: ConnId, head: &[u8], body: Bytes) -> Result<(), Error> {
        if head.is_empty() {
            return self.send(conn, body);
        }
        let mut frame = BytesMut::with_capacity(head.len() + body.len());
        frame.extend_from_slice(head);
        frame.extend_from_slice(&body);
        self.send(conn, frame.freeze())
    }

    /// Closes a connection after the frames already queued are written.
    /// Closing an unknown or closed connection does nothing.
    fn close(&self, conn: ConnId);

    /// The peer's address of an open connection.
    fn remote_addr(&self, conn: ConnId) -> Option<String>;

    /// The address we listen on, once [`Transport::listen`] succeeded.
    fn local_addr(&self) -> Option<String>;

    /// The currently open connections.
    fn connections(&self) -> Vec<ConnId>;

    /// The largest frame this transport sends or accepts.
    fn max_frame_len(&self) -> usize;

    /// Lets an inbound connection send frames up to [`Transport::max_frame_len`].
    /// Until then it may send [`Config::max_unverified_frame_len`] at most:
    /// the layer above promotes a connection once its peer has identified
    /// itself (toy-p2p: an accepted hello). Outbound connections start
    /// promoted. Unknown connections are ignored.
    fn promote(&self, conn: ConnId);

    /// Undoes [`Transport::promote`] for an inbound connection: small frames
    /// only again, and it counts as a handshake in flight of its group
    /// (toy-p2p demotes a connection that stays open but is no longer a
    /// peer). Outbound and unknown connections are ignored.
    fn demote(&self, conn: ConnId);

    /// Stops listening, closes every connection and waits (bounded) for the
    /// transport's tasks to end. Idempotent.
    async fn shutdown(&self);
}
