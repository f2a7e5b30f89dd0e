//! The TCP transport.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

use crate::codec::FrameCodec;
use crate::conns::{ConnParts, ConnTable, Outgoing};
use crate::{Config, ConnId, DisconnectReason, Error, Event, Events, Transport};

/// Initial read buffer per connection; it grows only up to one frame.
/// Warnings a flood of bad connections would repeat, summarised (one line
/// per kind per 10 s, with the count held back).
static WARNINGS: std::sync::LazyLock<crate::Throttle> = std::sync::LazyLock::new(crate::Throttle::default);

const READ_BUF: usize = 16 * 1024;
/// Frames are gathered into one write until the buffer holds this much.
const WRITE_BATCH: usize = 64 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// TCP transport on tokio: frames are `[len: u32 BE][payload]`.
///
/// A cheap handle; clones share the same listener and connections. Each
/// connection runs one task that reads and writes concurrently.
#[derive(Debug, Clone)]
pub struct TcpTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    table: Arc<ConnTable>,
    local: Mutex<Option<String>>,
}

impl TcpTransport {
    /// A transport with the given limits, and the stream of its events.
    pub fn new(config: Config) -> (Self, Events) {
        let (table, events) = ConnTable::new(config, false);
        let inner = Inner { table, local: Mutex::new(None) };
        (Self { inner: Arc::new(inner) }, events)
    }

    fn table(&self) -> &Arc<ConnTable> {
        &self.inner.table
    }

    fn spawn_conn(&self, stream: TcpStream, remote: String, incoming: bool) -> Option<ConnId> {
        let table = self.table().clone();
        let parts = table.register(remote.clone(), incoming, 0)?;
        let id = parts.id;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(conn = %id, "set_nodelay failed: {e}");
        }
        self.table().tracker.spawn(run_conn(table, stream, parts, remote, incoming));
        Some(id)
    }
}

#[async_trait]
impl Transport for TcpTransport {
    async fn listen(&self, addr: &str) -> Result<String, Error> {
        if self.table().root.is_cancelled() {
            return Err(Error::Shutdown);
        }
        if self.local_addr().is_some() {
            return Err(Error::Listen("already listening".into()));
        }
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?.to_string();
        {
            let mut local = self.inner.local.lock().unwrap_or_else(PoisonError::into_inner);
            if local.is_some() {
                return Err(Error::Listen("already listening".into()));
            }
            *local = Some(bound.clone());
        }
        tracing::info!(addr = %bound, "listening");
        let this = self.clone();
        let cancel = self.table().root.clone();
        self.table().tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = this.accept_loop(listener) => {}
            }
        });
        Ok(bound)
    }

    async fn connect(&self, addr: &str) -> Result<ConnId, Error> {
        if self.table().root.is_cancelled() {
            return Err(Error::Shutdown);
        }
        let timeout = self.table().config().connect_timeout();
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(Error::ConnectTimeout { addr: addr.to_owned() });
            }
            Ok(Err(e)) => {
                return Err(Error::Unreachable { addr: addr.to_owned(), reason: e.to_string() });
            }
            Ok(Ok(stream)) => stream,
        };
        let remote = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| addr.to_owned());
        self.spawn_conn(stream, remote, false).ok_or(Error::Shutdown)
    }

    fn send(&self, conn: ConnId, frame: Bytes) -> Result<(), Error> {
        self.table().send(conn, frame)
    }

    fn close(&self, conn: ConnId) {
        self.table().close(conn);
    }

    fn remote_addr(&self, conn: ConnId) -> Option<String> {
        self.table().remote_addr(conn)
    }

    fn local_addr(&self) -> Option<String> {
        self.inner.local.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn connections(&self) -> Vec<ConnId> {
        self.table().connections()
    }

    fn max_frame_len(&self) -> usize {
        self.table().config().max_frame_len()
    }

    fn promote(&self, conn: ConnId) {
        self.table().promote(conn);
    }

    fn demote(&self, conn: ConnId) {
        self.table().demote(conn);
    }

    async fn shutdown(&self) {
        self.table().shutdown().await;
    }
}

impl TcpTransport {
    async fn accept_loop(&self, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    if let Some(why) = self.table().refuse_inbound(&peer.to_string()) {
                        if let Some(held_back) = WARNINGS.allow(why) {
                            tracing::warn!(%peer, held_back, "{why}; refusing");
                        }
                        drop(stream);
                        continue;
                    }
                    self.spawn_conn(stream, peer.to_string(), true);
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// Runs one connection: reports it, then reads and writes until either side
/// ends, the connection is closed or the transport shuts down.
async fn run_conn(table: Arc<ConnTable>, stream: TcpStream, mut parts: ConnParts, remote: String, incoming: bool) {
    let reason = if table.emit_connected(&parts, remote, incoming).await {
        let (r, w) = stream.into_split();
        let cancel = parts.cancel.clone();
        let queued = parts.queued_bytes.clone();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => parts.cancelled_reason(),
            reason = write_loop(w, &mut parts.rx, &queued) => reason,
            reason = read_loop(&table, parts.id, &cancel, &parts.frame_limit, r) => reason,
        }
    } else {
        parts.cancelled_reason()
    };
    // Prefer a reason recorded by `close`/`send` (e.g. SendQueueFull).
    let reason = match (&reason, parts.reason.get()) {
        (DisconnectReason::Io(_) | DisconnectReason::RemoteClosed | DisconnectReason::Closed, Some(recorded)) => {
            recorded
        }
        _ => reason,
    };
    table.finish(parts.id, reason).await;
}

/// Bytes of partial frames one reader holds against the transport's read
/// budget; given back when dropped, however the reader ends (its future is
/// dropped when the connection is closed from our side).
struct Held<'a> {
    table: &'a ConnTable,
    id: ConnId,
    bytes: usize,
}

impl Held<'_> {
    /// Sets what is held to `now` bytes. `false` when growing to it would
    /// pass the budget and this connection holds the most: it is the one to
    /// close. When another holds more, that one is closed instead.
    fn set(&mut self, now: usize) -> bool {
        if now <= self.bytes {
            self.table.release(self.bytes - now);
            self.table.set_held(self.id, now);
            self.bytes = now;
            return true;
        }
        let more = now - self.bytes;
        if !self.table.hold(more) {
            match self.table.largest_holder() {
                Some((other, held)) if other != self.id && held > self.bytes => {
                    if let Some(held_back) = WARNINGS.allow("read budget") {
                        tracing::warn!(conn = %other, held, held_back, "read budget exhausted; closing the connection holding the most");
                    }
                    self.table.close_with(other, DisconnectReason::ReadBudget);
                    // Counted anyway: the other's bytes come back as it closes.
                    self.table.force_hold(more);
                }
                _ => return false,
            }
        }
        self.table.set_held(self.id, now);
        self.bytes = now;
        true
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.table.release(self.bytes);
        self.table.set_held(self.id, 0);
    }
}

/// Reads frames until the connection ends. What it buffers of a frame still
/// arriving is counted against the transport's read budget, and the frame
/// limit is the connection's current one (small until promoted).
async fn read_loop(
    table: &ConnTable,
    id: ConnId,
    cancel: &tokio_util::sync::CancellationToken,
    frame_limit: &AtomicUsize,
    mut r: OwnedReadHalf,
) -> DisconnectReason {
    let mut held = Held { table, id, bytes: 0 };
    let mut codec = FrameCodec::new(frame_limit.load(Ordering::Acquire));
    let mut buf = BytesMut::with_capacity(READ_BUF);
    loop {
        codec.set_max_frame_len(frame_limit.load(Ordering::Acquire));
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(data)) => {
                    if !table.emit(Event::Frame { conn: id, data }, cancel).await {
                        return DisconnectReason::Shutdown;
                    }
                }
                Ok(None) => break,
                Err(Error::FrameTooLarge { len, max }) => {
                    if let Some(held_back) = WARNINGS.allow("oversize frame") {
                        tracing::warn!(conn = %id, len, max, held_back, "peer sent an oversize frame; closing");
                    }
                    return DisconnectReason::FrameTooLarge { len, max };
                }
                Err(e) => {
                    if let Some(held_back) = WARNINGS.allow("frame decode") {
                        tracing::warn!(conn = %id, held_back, "frame decode failed: {e}");
                    }
                    return DisconnectReason::Io(std::io::ErrorKind::InvalidData);
                }
            }
        }
        // Frames taken out of the buffer are no longer held.
        held.set(buf.len());
        if buf.capacity() - buf.len() < READ_BUF / 4 {
            buf.reserve(READ_BUF);
        }
        match r.read_buf(&mut buf).await {
            Ok(0) => return DisconnectReason::RemoteClosed,
            Ok(_) => {}
            Err(e) => return DisconnectReason::Io(e.kind()),
        }
        if !held.set(buf.len()) {
            if let Some(held_back) = WARNINGS.allow("read budget") {
                tracing::warn!(conn = %id, buffered = table.buffered(), held_back, "read budget exhausted; closing the connection holding the most");
            }
            return DisconnectReason::ReadBudget;
        }
    }
}

async fn write_loop(
    mut w: OwnedWriteHalf,
    rx: &mut mpsc::Receiver<Outgoing>,
    queued: &AtomicUsize,
) -> DisconnectReason {
    let mut buf = BytesMut::with_capacity(WRITE_BATCH);
    loop {
        let Some(first) = rx.recv().await else {
            return DisconnectReason::Shutdown;
        };
        let mut close = false;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Outgoing::Frame(frame, _) => {
                    queued.fetch_sub(frame.len(), Ordering::AcqRel);
                    // Length was checked by `send`; it fits the prefix.
                    buf.reserve(4 + frame.len());
                    buf.extend_from_slice(&(frame.len() as u32).to_be_bytes());
                    buf.extend_from_slice(&frame);
                }
                Outgoing::Close => {
                    close = true;
                    break;
                }
            }
            if buf.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if let Err(e) = w.write_all_buf(&mut buf).await {
            return DisconnectReason::Io(e.kind());
        }
        if close {
            let _ = w.shutdown().await;
            return DisconnectReason::Closed;
        }
    }
}
