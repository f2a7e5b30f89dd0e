//! # toy-msg — the messaging layer
//!
//! Turns toy-net's frames into *messages*: each frame carries one message with
//! a type, an id, a kind and a payload, exactly as the workshop's protocol:
//!
//! ```text
//!  +------+--------------+------------------+----+-------------+
//!  | type | id (u32, BE) | kind (UTF-8)     | 00 | payload     |
//!  +------+--------------+------------------+----+-------------+
//!   0x00 one-way · 0x01 request · 0x02 response (id of the request, empty kind)
//! ```
//!
//! The layer above registers a [`Handler`] per kind with
//! [`Messenger::register_handler`]; a handler may answer a request by
//! returning a payload. [`Messenger::send`] sends one-way messages and
//! [`Messenger::request`] waits for the response, resolving to
//! [`Error::Timeout`] after 10 s by default or to [`Error::Disconnected`] at
//! once when the connection drops.
//!
//! Bad input is normal input: a malformed frame (short header, unknown type
//! byte, no `0x00` after the kind, bad UTF-8) closes the connection and emits
//! [`Event::Misbehaved`] so the layer above can penalise the peer. Unknown
//! kinds are ignored.
//!
//! [`Messaging`] is generic over [`toy_net::Transport`] only: over
//! [`toy_net::TcpTransport`] it is the real thing, over
//! [`toy_net::MemoryTransport`] it is the in-memory double for the layers
//! above.
//!
//! ## Example
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use toy_msg::{Config, Event, Messaging, Messenger, handler_fn};
//! use toy_net::{MemoryNetwork, Transport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), toy_msg::Error> {
//! let net = MemoryNetwork::new();
//! let (t, ev) = net.endpoint(toy_net::Config::default());
//! let (server, _server_events) = Messaging::new(t, ev, Config::default());
//! server.register_handler("echo", handler_fn(|_conn, payload| async move { Some(payload) }))?;
//! let addr = server.listen("server:1").await?;
//!
//! let (t, ev) = net.endpoint(toy_net::Config::default());
//! let (client, _client_events) = Messaging::new(t, ev, Config::default());
//! let conn = client.connect(&addr).await?;
//! let answer = client.request(conn, "echo", Bytes::from_static(b"ping")).await?;
//! assert_eq!(&answer[..], b"ping");
//! # client.shutdown().await;
//! # server.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod codec;
mod config;
mod error;
mod messaging;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

pub use codec::{DecodeError, Header, InvalidKind, Message, MessageType};
pub use config::{
    Config, ConfigBuilder, DEFAULT_EVENT_BUFFER, DEFAULT_MAX_CONCURRENT_HANDLERS, DEFAULT_MAX_HANDLERS_PER_CONN,
    DEFAULT_MAX_PENDING_PER_CONN, DEFAULT_PRIORITY_KINDS, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RESERVED_HANDLERS,
};
pub use error::Error;
pub use messaging::Messaging;
pub use toy_net::{ConnId, DisconnectReason, netgroup_of, origin_of};

/// What the messaging layer reports to the layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection is open.
    Connected {
        /// The connection.
        conn: ConnId,
        /// Whether the peer dialled us.
        incoming: bool,
        /// The peer's address as the transport sees it.
        remote: String,
    },
    /// A connection ended; its pending requests have failed.
    Disconnected {
        /// The connection.
        conn: ConnId,
        /// Why; [`DisconnectReason::is_peer_fault`] says whether to penalise.
        reason: DisconnectReason,
    },
    /// The peer sent a malformed message; the connection is being closed.
    Misbehaved {
        /// The connection.
        conn: ConnId,
        /// What was wrong.
        error: DecodeError,
    },
    /// The peer sent messages of kinds nobody handles faster than
    /// [`UNHANDLED_PER_SEC`] (after a burst of [`UNHANDLED_BURST`]): each
    /// one past the rate is reported (best effort: dropped when the event
    /// channel is full), so the layer above can charge the sender.
    Unhandled {
        /// The connection.
        conn: ConnId,
        /// The kind of the message past the rate.
        kind: String,
    },
}

/// Messages of unhandled kinds one connection may send at once before
/// [`Event::Unhandled`] is reported: 32. Unknown kinds are dropped either
/// way (a peer may speak a newer protocol); only a stream of them costs.
pub const UNHANDLED_BURST: f64 = 32.0;
/// Refill of [`UNHANDLED_BURST`] per second: 4.
pub const UNHANDLED_PER_SEC: f64 = 4.0;

/// The receiving end of the messaging layer's events. Bounded: the layer
/// above must drain it.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    pub(crate) fn new(rx: mpsc::Receiver<Event>) -> Self {
        Self { rx }
    }

    /// The next event; `None` after shutdown. Cancel-safe.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is ready now.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

/// Handles the messages of one kind.
///
/// Invocations run concurrently (for messages of one connection too) as
/// futures on the messaging layer's dispatcher task: awaiting is fine (a
/// request to another peer, a channel send), blocking is not. Move CPU-heavy
/// work (signature checks, hashing large data) to `spawn_blocking` or a task of
/// your own and await its result.
///
/// The dispatcher polls a new invocation once, straight away, and keeps it only if
/// it has to wait, so a handler that answers without waiting costs its
/// future's box and nothing else. That is why `handle` is written out
/// rather than `async fn`: the handler comes as an `Arc` so its future can
/// own what it needs and be kept when it waits, and an implementation boxes
/// only the state its future really holds ([`handler_fn`]'s boxes the
/// closure's future alone: one byte for a closure that does its work before
/// its `async` block).
pub trait Handler: Send + Sync + 'static {
    /// Handles a message from `conn`. For a request, `Some(payload)` is sent
    /// back as the response; `None` sends nothing (the requester times out).
    /// The return value of a one-way message is ignored.
    fn handle(self: Arc<Self>, conn: ConnId, payload: Bytes) -> BoxFuture<'static, Option<Bytes>>;
}

/// A [`Handler`] made from an async closure; see [`handler_fn`].
pub struct HandlerFn<F>(F);

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(ConnId, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Bytes>> + Send + 'static,
{
    fn handle(self: Arc<Self>, conn: ConnId, payload: Bytes) -> BoxFuture<'static, Option<Bytes>> {
        Box::pin((self.0)(conn, payload))
    }
}

/// Wraps an async closure `|conn, payload| async { ... }` as a handler.
pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn Handler>
where
    F: Fn(ConnId, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Bytes>> + Send + 'static,
{
    Arc::new(HandlerFn(f))
}

/// The messaging service the peering layer is generic over.
///
/// [`Messaging`] implements it over any transport.
#[async_trait]
pub trait Messenger: Send + Sync + 'static {
    /// Starts accepting connections; returns the bound address.
    async fn listen(&self, addr: &str) -> Result<String, Error>;

    /// Dials `addr`. Cancel-safe.
    async fn connect(&self, addr: &str) -> Result<ConnId, Error>;

    /// Sends a one-way message; never waits.
    fn send(&self, conn: ConnId, kind: &str, payload: Bytes) -> Result<(), Error>;

    /// Sends a request and waits for its response, at most `timeout`.
    ///
    /// Cancel-safe: dropping the future forgets the request, and a late
    /// response is ignored.
    async fn request_timeout(
        &self,
        conn: ConnId,
        kind: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, Error>;

    /// The timeout [`Messenger::request`] uses.
    fn default_timeout(&self) -> Duration {
        DEFAULT_REQUEST_TIMEOUT
    }

    /// Sends a request and waits for its response, at most
    /// [`Messenger::default_timeout`]. Cancel-safe.
    async fn request(&self, conn: ConnId, kind: &str, payload: Bytes) -> Result<Bytes, Error> {
        self.request_timeout(conn, kind, payload, self.default_timeout()).await
    }

    /// Registers the handler of `kind`.
    ///
    /// # Errors
    /// [`Error::DuplicateHandler`] when the kind already has one,
    /// [`Error::InvalidKind`] when it contains 0x00.
    fn register_handler(&self, kind: &str, handler: Arc<dyn Handler>) -> Result<(), Error>;

    /// Closes a connection after its queued messages are written.
    fn close(&self, conn: ConnId);

    /// Lets an inbound connection send frames of the full size (passed to
    /// [`toy_net::Transport::promote`]); until then only small ones. The
    /// peering layer promotes a connection when it accepts the peer's hello.
    fn promote(&self, conn: ConnId);

    /// Undoes [`Messenger::promote`] (passed to
    /// [`toy_net::Transport::demote`]).
    fn demote(&self, conn: ConnId);

    /// The peer's address of an open connection.
    fn remote_addr(&self, conn: ConnId) -> Option<String>;

    /// Our listening address.
    fn local_addr(&self) -> Option<String>;

    /// The open connections.
    fn connections(&self) -> Vec<ConnId>;

    /// Stops everything; pending requests fail with [`Error::Shutdown`].
    async fn shutdown(&self);
}
