//! The TCP transport.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Decoder;

use crate::codec::FrameCodec;
use crate::conns::{ConnParts, ConnTable, Outgoing, SendRx};
use crate::{Config, ConnId, DisconnectReason, Error, Event, Events, Transport};

/// Warnings a flood of bad connections would repeat, summarised (one line
/// per kind per 10 s, with the count held back).
static WARNINGS: std::sync::LazyLock<crate::Throttle> = std::sync::LazyLock::new(crate::Throttle::default);

/// A read buffer's size; one grows past this only to hold a frame larger
/// than it.
const READ_BUF: usize = 16 * 1024;
/// Read buffers of [`READ_BUF`] a promoted connection keeps besides the one
/// it reads into, while frames cut from them may still be on their way up
/// (see [`read_loop`]): at most 64 KiB per connection. After a read of less
/// than an eighth of a buffer (the stream is not busy) it keeps one free
/// spare at most; those still held by frames stay until they are free. A
/// stranger (not promoted) keeps none, and a buffer grown for a large frame
/// is never kept.
const READ_SPARES: usize = 4;
/// Frames are gathered into one write until the buffer holds this much; a
/// frame body this large is written from its own memory, not copied.
const WRITE_BATCH: usize = 64 * 1024;
/// Frames of one read handed to the event queue at a time: one connection's
/// share of a turn at the queue (a quarter of the default event buffer), and
/// the most events a reader holds outside it.
const EVENT_CHUNK: usize = 256;
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
async fn run_conn(table: Arc<ConnTable>, stream: TcpStream, parts: ConnParts, remote: String, incoming: bool) {
    let reason = if table.emit_connected(&parts, remote, incoming).await {
        let (r, w) = stream.into_split();
        let cancel = parts.cancel.clone();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => parts.cancelled_reason(),
            reason = write_loop(w, &parts.rx) => reason,
            reason = read_loop(&table, parts.id, &cancel, &parts.frame_limit, &parts.held, r) => reason,
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
    /// The connection's entry in the table's view of who holds what.
    count: &'a AtomicUsize,
    bytes: usize,
}

impl Held<'_> {
    /// Sets what is held to `now` bytes. `false` when growing to it would
    /// pass the budget and this connection holds the most: it is the one to
    /// close. When another holds more, that one is closed instead.
    fn set(&mut self, now: usize) -> bool {
        if now <= self.bytes {
            self.table.release(self.bytes - now);
            self.count.store(now, Ordering::Release);
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
        self.count.store(now, Ordering::Release);
        self.bytes = now;
        true
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.table.release(self.bytes);
        self.count.store(0, Ordering::Release);
    }
}

/// Reads frames until the connection ends. What it buffers of a frame still
/// arriving is counted against the transport's read budget, and the frame
/// limit is the connection's current one (small until promoted).
///
/// The frames of one read go to the event queue together, and they are cut
/// from the read buffer without a copy, so they keep its memory until the
/// layer above drops them. When a buffer runs out of room the reader turns
/// to the oldest of its spares (the buffers before) if every frame cut from
/// it has been dropped (`BytesMut::try_reclaim`), and allocates only when
/// some are still held: a connection read steadily allocates nothing, where
/// a single buffer would need a new one every 16 KiB (its last frames are
/// always still on their way up when it fills).
async fn read_loop(
    table: &ConnTable,
    id: ConnId,
    cancel: &tokio_util::sync::CancellationToken,
    frame_limit: &AtomicUsize,
    held_count: &AtomicUsize,
    mut r: OwnedReadHalf,
) -> DisconnectReason {
    let mut held = Held { table, id, count: held_count, bytes: 0 };
    let mut codec = FrameCodec::new(frame_limit.load(Ordering::Acquire));
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut spares = std::collections::VecDeque::<BytesMut>::new();
    // Whether `buf` was grown past READ_BUF for a large frame.
    let mut grown = false;
    let mut batch = Vec::with_capacity(EVENT_CHUNK);
    loop {
        let limit = frame_limit.load(Ordering::Acquire);
        codec.set_max_frame_len(limit);
        let promoted = limit >= table.config().max_frame_len();
        if !promoted {
            spares.clear();
        }
        let mut bad = None;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(data)) => {
                    batch.push(Event::Frame { conn: id, data });
                    if batch.len() >= EVENT_CHUNK && !table.emit_all(&mut batch, cancel).await {
                        return DisconnectReason::Shutdown;
                    }
                }
                Ok(None) => break,
                Err(Error::FrameTooLarge { len, max }) => {
                    if let Some(held_back) = WARNINGS.allow("oversize frame") {
                        tracing::warn!(conn = %id, len, max, held_back, "peer sent an oversize frame; closing");
                    }
                    bad = Some(DisconnectReason::FrameTooLarge { len, max });
                    break;
                }
                Err(e) => {
                    if let Some(held_back) = WARNINGS.allow("frame decode") {
                        tracing::warn!(conn = %id, held_back, "frame decode failed: {e}");
                    }
                    bad = Some(DisconnectReason::Io(std::io::ErrorKind::InvalidData));
                    break;
                }
            }
        }
        // The whole frames before a bad one are delivered, as if they had
        // come in a read of their own.
        if !batch.is_empty() && !table.emit_all(&mut batch, cancel).await {
            return DisconnectReason::Shutdown;
        }
        if let Some(reason) = bad {
            return reason;
        }
        // Frames taken out of the buffer are no longer held.
        held.set(buf.len());
        if buf.capacity() - buf.len() < READ_BUF / 4 {
            if buf.len() >= READ_BUF / 4 {
                // A large frame arriving: grow this buffer to hold it.
                buf.reserve(READ_BUF);
                grown = true;
            } else {
                // Move the few bytes of the next frame to the oldest spare
                // if it is free again, else to a new buffer; this one
                // becomes a spare, free once its frames are dropped.
                let free = spares.front_mut().is_some_and(|oldest| oldest.try_reclaim(READ_BUF));
                let mut next = match spares.pop_front() {
                    Some(oldest) if free => oldest,
                    held => {
                        if let Some(held) = held {
                            spares.push_front(held);
                        }
                        BytesMut::with_capacity(READ_BUF)
                    }
                };
                next.extend_from_slice(&buf);
                let mut old = std::mem::replace(&mut buf, next);
                let was_grown = std::mem::take(&mut grown);
                if promoted && !was_grown {
                    old.clear();
                    spares.push_back(old);
                    if spares.len() > READ_SPARES {
                        spares.pop_front();
                    }
                }
            }
        }
        match r.read_buf(&mut buf).await {
            Ok(0) => return DisconnectReason::RemoteClosed,
            Ok(n) if n < READ_BUF / 8 && spares.len() > 1 => {
                let mut free_kept = false;
                spares.retain_mut(|spare| {
                    let free = spare.try_reclaim(READ_BUF);
                    let keep = !free || !free_kept;
                    free_kept |= free;
                    keep
                });
            }
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

/// Writes what the send queue holds: about [`WRITE_BATCH`] bytes of it are
/// taken at a time in one lock (they count against the queue's limits until
/// written), wire buffers are written as they are, other frames gathered
/// into one buffer (length prefix, head, body); a body of [`WRITE_BATCH`]
/// bytes or more is written from its own memory.
async fn write_loop(mut w: OwnedWriteHalf, rx: &SendRx) -> DisconnectReason {
    // Only frames over the copy threshold pass through here (small ones come
    // in wire buffers), so it starts empty and grows when one does.
    let mut buf = BytesMut::new();
    let mut items = std::collections::VecDeque::new();
    // Wire buffers taken and not yet written; at most one of `wires` and
    // `buf` holds bytes at a time, so the order on the wire is the queue's.
    let mut wires: Vec<BytesMut> = Vec::new();
    let mut done_wire: Vec<BytesMut> = Vec::new();
    loop {
        if !rx.take(&mut items, WRITE_BATCH, &mut done_wire).await {
            return DisconnectReason::Shutdown;
        }
        let mut close = false;
        while let Some(item) = items.pop_front() {
            let (head, mut body) = match item {
                Outgoing::Frame { head, body, .. } => (head, body),
                Outgoing::Wire { wire, .. } => {
                    // Frames already in wire format: written as they are,
                    // after what is gathered before them.
                    if !buf.is_empty()
                        && let Err(e) = w.write_all_buf(&mut buf).await
                    {
                        return DisconnectReason::Io(e.kind());
                    }
                    wires.push(wire);
                    continue;
                }
                Outgoing::Close => {
                    close = true;
                    break;
                }
            };
            if let Err(e) = write_wires(&mut w, &mut wires, &mut done_wire).await {
                return DisconnectReason::Io(e.kind());
            }
            let head = head.as_slice();
            // Length was checked by `send`; it fits the prefix.
            buf.put_u32((head.len() + body.len()) as u32);
            buf.extend_from_slice(head);
            if body.len() >= WRITE_BATCH {
                if let Err(e) = w.write_all_buf(&mut buf).await {
                    return DisconnectReason::Io(e.kind());
                }
                if let Err(e) = w.write_all_buf(&mut body).await {
                    return DisconnectReason::Io(e.kind());
                }
                continue;
            }
            buf.extend_from_slice(&body);
            if buf.len() >= WRITE_BATCH
                && let Err(e) = w.write_all_buf(&mut buf).await
            {
                return DisconnectReason::Io(e.kind());
            }
        }
        if let Err(e) = write_wires(&mut w, &mut wires, &mut done_wire).await {
            return DisconnectReason::Io(e.kind());
        }
        if !buf.is_empty()
            && let Err(e) = w.write_all_buf(&mut buf).await
        {
            return DisconnectReason::Io(e.kind());
        }
        rx.written();
        if close {
            let _ = w.shutdown().await;
            return DisconnectReason::Closed;
        }
        items.clear();
    }
}

/// Writes wire buffers in order with vectored writes (a take's worth, about
/// [`WRITE_BATCH`], in one syscall when the socket takes it), moving each
/// written one to `done` for reuse. Partial writes resume where they ended.
async fn write_wires<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    wires: &mut Vec<BytesMut>,
    done: &mut Vec<BytesMut>,
) -> std::io::Result<()> {
    use bytes::Buf;
    const SLICES: usize = 8;
    let mut first = 0;
    loop {
        // Empty buffers have nothing to write (none are queued empty).
        while first < wires.len() && wires[first].is_empty() {
            first += 1;
        }
        if first == wires.len() {
            break;
        }
        let mut slices = [std::io::IoSlice::new(&[]); SLICES];
        let n = (wires.len() - first).min(SLICES);
        for (slice, wire) in slices.iter_mut().zip(&wires[first..first + n]) {
            *slice = std::io::IoSlice::new(wire);
        }
        let mut written = w.write_vectored(&slices[..n]).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 && first < wires.len() {
            let wire = &mut wires[first];
            let k = written.min(wire.len());
            wire.advance(k);
            written -= k;
            if wire.is_empty() {
                first += 1;
            }
        }
    }
    done.append(wires);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn wire_buffers_are_written_whole_and_in_order_through_partial_writes() {
        // A pipe that takes 7 bytes at a time (and, like most writers, only
        // the first slice of a vectored write): every write is partial.
        let (mut w, mut r) = tokio::io::duplex(7);
        let mut wires: Vec<BytesMut> =
            (0..13u8).map(|i| BytesMut::from(&vec![i; 1 + usize::from(i) * 3][..])).collect();
        wires.insert(5, BytesMut::new());
        let want: Vec<u8> = wires.iter().flat_map(|b| b.to_vec()).collect();
        let reading = tokio::spawn(async move {
            let mut got = vec![0; want.len()];
            r.read_exact(&mut got).await.map(|_| (got, want))
        });
        let mut done = Vec::new();
        write_wires(&mut w, &mut wires, &mut done).await.expect("written");
        let (got, want) = reading.await.expect("task").expect("read");
        assert_eq!(got, want);
        assert!(wires.is_empty());
        assert_eq!(done.len(), 14, "every buffer comes back for reuse");
        assert!(done.iter().all(BytesMut::is_empty));
    }
}
