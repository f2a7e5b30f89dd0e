//! The transport conformance suite: the same checks for every [`Transport`].
//!
//! An implementation provides a [`Harness`] that makes endpoints able to reach
//! each other, then instantiates the suite with [`conformance_suite!`]:
//!
//! ```no_run
//! toy_net::conformance_suite!(tcp, toy_net::conformance::TcpHarness);
//! # fn main() {}
//! ```
//!
//! Every wait has a generous deadline ([`DEADLINE`]) and no check depends on
//! timing, so the suite passes on a loaded machine.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Config, ConnId, DisconnectReason, Event, Events, MemoryNetwork, TcpTransport, Transport};

/// The longest any check waits for an event.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Makes endpoints of one implementation that can reach each other.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The transport under test.
    type T: Transport + Clone;
    /// A new endpoint with `config`.
    fn endpoint(&self, config: Config) -> (Self::T, Events);
    /// An address `listen` accepts on this implementation.
    fn any_addr(&self) -> &'static str {
        "127.0.0.1:0"
    }
}

/// Real TCP on loopback.
#[derive(Debug, Default)]
pub struct TcpHarness;

impl Harness for TcpHarness {
    type T = TcpTransport;
    fn endpoint(&self, config: Config) -> (TcpTransport, Events) {
        TcpTransport::new(config)
    }
}

/// Endpoints of one [`MemoryNetwork`].
#[derive(Debug, Default)]
pub struct MemoryHarness {
    /// The network every endpoint joins.
    pub net: MemoryNetwork,
}

impl Harness for MemoryHarness {
    type T = crate::MemoryTransport;
    fn endpoint(&self, config: Config) -> (crate::MemoryTransport, Events) {
        self.net.endpoint(config)
    }
}

/// Waits for the first event matching `pred`, skipping others; panics after
/// [`DEADLINE`].
pub async fn wait_for<F, R>(events: &mut Events, what: &str, mut pred: F) -> R
where
    F: FnMut(Event) -> Option<R>,
{
    let fut = async {
        loop {
            match events.next().await {
                Some(ev) => {
                    if let Some(r) = pred(ev) {
                        return r;
                    }
                }
                None => panic!("event stream ended while waiting for {what}"),
            }
        }
    };
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(r) => r,
        Err(_) => panic!("no {what} within {DEADLINE:?}"),
    }
}

/// Waits for `Connected` and returns its connection id and direction.
pub async fn wait_connected(events: &mut Events) -> (ConnId, bool) {
    wait_for(events, "Connected", |ev| match ev {
        Event::Connected { conn, incoming, .. } => Some((conn, incoming)),
        _ => None,
    })
    .await
}

/// Waits for `Disconnected` of `conn` and returns its reason.
pub async fn wait_disconnected(events: &mut Events, conn: ConnId) -> DisconnectReason {
    wait_for(events, "Disconnected", |ev| match ev {
        Event::Disconnected { conn: c, reason } if c == conn => Some(reason),
        _ => None,
    })
    .await
}

/// A connected pair: `(a, a_events, a_conn, b, b_events, b_conn)`.
pub type Pair<T> = (T, Events, ConnId, T, Events, ConnId);

/// Makes `a` dial `b` and waits until both sides report the connection.
pub async fn connected_pair<H: Harness>(h: &H, a_cfg: Config, b_cfg: Config) -> Pair<H::T> {
    let (b, mut b_events) = h.endpoint(b_cfg);
    let addr = b.listen(h.any_addr()).await.expect("listen");
    let (a, mut a_events) = h.endpoint(a_cfg);
    let a_conn = a.connect(&addr).await.expect("connect");
    let (c, incoming) = wait_connected(&mut a_events).await;
    assert_eq!((c, incoming), (a_conn, false), "dialler sees an outgoing connection");
    let (b_conn, incoming) = wait_connected(&mut b_events).await;
    assert!(incoming, "listener sees an incoming connection");
    // As the layer above does once the peer has said hello: full-size frames.
    b.promote(b_conn);
    (a, a_events, a_conn, b, b_events, b_conn)
}

fn frame(i: usize, len: usize) -> Bytes {
    let mut v = vec![(i % 251) as u8; len];
    if len >= 4 {
        v[..4].copy_from_slice(&(i as u32).to_be_bytes());
    }
    Bytes::from(v)
}

/// Frames of many sizes arrive whole, in order, both ways.
pub async fn frames_arrive_in_order_both_ways<H: Harness>(h: H) {
    let (a, mut ae, ac, b, mut be, bc) = connected_pair(&h, Config::default(), Config::default()).await;
    let sizes = [0usize, 1, 3, 4, 5, 100, 4096, 70_000, 1, 0, 300_000];
    for (i, &len) in sizes.iter().enumerate() {
        a.send(ac, frame(i, len)).expect("a sends");
        b.send(bc, frame(i + 1000, len)).expect("b sends");
    }
    for (i, &len) in sizes.iter().enumerate() {
        let got = wait_for(&mut be, "frame at b", |ev| match ev {
            Event::Frame { conn, data } if conn == bc => Some(data),
            _ => None,
        })
        .await;
        assert_eq!(got, frame(i, len), "frame {i} at b");
        let got = wait_for(&mut ae, "frame at a", |ev| match ev {
            Event::Frame { conn, data } if conn == ac => Some(data),
            _ => None,
        })
        .await;
        assert_eq!(got, frame(i + 1000, len), "frame {i} at a");
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Frames sent as a head and a body ([`Transport::send_parts`]) arrive as
/// their concatenation, in order with frames sent whole, at every size
/// (heads short and long, bodies small and large); the maximum counts both
/// parts.
pub async fn frames_sent_in_parts_arrive_whole_and_in_order<H: Harness>(h: H) {
    let small = Config::builder().max_frame_len(200_000).build().expect("config");
    let (a, _ae, ac, b, mut be, bc) = connected_pair(&h, small, Config::default()).await;
    let cases: &[(usize, usize)] =
        &[(0, 0), (6, 0), (6, 64), (11, 1013), (11, 1014), (40, 5), (100, 4000), (11, 70_000), (3, 1), (200, 0)];
    let mut want = Vec::new();
    for (i, &(head_len, body_len)) in cases.iter().enumerate() {
        let head = vec![(i + 1) as u8; head_len];
        let body = frame(i, body_len);
        a.send_parts(ac, &head, body.clone()).expect("a sends in parts");
        let whole = frame(i + 500, 10);
        a.send(ac, whole.clone()).expect("a sends whole");
        want.push([&head[..], &body[..]].concat());
        want.push(whole.to_vec());
    }
    // A burst of small frames (many of TCP's wire buffers, written together)
    // with a large one now and then.
    for i in 0..900 {
        let len = if i % 300 == 299 { 20_000 } else { 100 + i % 7 };
        let body = frame(i, len);
        a.send_parts(ac, &[0xee; 6], body.clone()).expect("within the queue's limits");
        want.push([&[0xee; 6][..], &body[..]].concat());
    }
    assert!(
        matches!(
            a.send_parts(ac, &[0; 100], frame(0, 199_901)),
            Err(crate::Error::FrameTooLarge { len: 200_001, max: 200_000 })
        ),
        "the maximum counts the head"
    );
    for (i, want) in want.iter().enumerate() {
        let got = wait_for(&mut be, "frame at b", |ev| match ev {
            Event::Frame { conn, data } if conn == bc => Some(data),
            _ => None,
        })
        .await;
        assert_eq!(&got[..], &want[..], "frame {i}");
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// A close writes what was queued, then both sides report who ended it.
pub async fn close_flushes_then_reports_both_sides<H: Harness>(h: H) {
    let (a, mut ae, ac, b, mut be, bc) = connected_pair(&h, Config::default(), Config::default()).await;
    for i in 0..50 {
        a.send(ac, frame(i, 1000)).expect("send");
    }
    a.close(ac);
    let mut received = 0;
    let reason = wait_for(&mut be, "Disconnected at b", |ev| match ev {
        Event::Frame { conn, .. } if conn == bc => {
            received += 1;
            None
        }
        Event::Disconnected { conn, reason } if conn == bc => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(received, 50, "frames queued before close are delivered");
    assert!(!reason.initiated_by_us(), "b did not end it: {reason:?}");
    let reason = wait_disconnected(&mut ae, ac).await;
    assert_eq!(reason, DisconnectReason::Closed);
    assert!(reason.initiated_by_us());
    assert!(a.send(ac, Bytes::new()).is_err(), "send after close fails");
    assert!(a.connections().is_empty() && b.connections().is_empty());
    a.shutdown().await;
    b.shutdown().await;
}

/// A frame over the receiver's maximum closes the connection with
/// `FrameTooLarge` at the receiver; the sender sees the peer end it.
pub async fn oversize_frame_closes_receiver<H: Harness>(h: H) {
    let small = Config::builder().max_frame_len(1024).build().expect("config");
    let (a, mut ae, ac, b, mut be, bc) = connected_pair(&h, Config::default(), small).await;
    a.send(ac, frame(0, 1024)).expect("a frame of exactly the maximum");
    a.send(ac, frame(1, 4096)).expect("the sender's own limit is larger");
    let got = wait_for(&mut be, "frame at b", |ev| match ev {
        Event::Frame { data, .. } => Some(data.len()),
        _ => None,
    })
    .await;
    assert_eq!(got, 1024);
    let reason = wait_disconnected(&mut be, bc).await;
    assert_eq!(reason, DisconnectReason::FrameTooLarge { len: 4096, max: 1024 });
    assert!(reason.is_peer_fault());
    let reason = wait_disconnected(&mut ae, ac).await;
    assert!(!reason.initiated_by_us(), "a sees the peer end it: {reason:?}");
    a.shutdown().await;
    b.shutdown().await;
}

/// A demoted inbound connection takes only a stranger's frames again.
pub async fn a_demoted_connection_takes_small_frames_again<H: Harness>(h: H) {
    let b_cfg = Config::builder().max_frame_len(8192).max_unverified_frame_len(1024).build().expect("config");
    let (a, _ae, ac, b, mut be, bc) = connected_pair(&h, Config::default(), b_cfg).await;
    a.send(ac, frame(0, 4096)).expect("promoted: a large frame");
    let got = wait_for(&mut be, "frame at b", |ev| match ev {
        Event::Frame { data, .. } => Some(data.len()),
        _ => None,
    })
    .await;
    assert_eq!(got, 4096);
    b.demote(bc);
    a.send(ac, frame(1, 4096)).expect("sent");
    let reason = wait_disconnected(&mut be, bc).await;
    assert_eq!(reason, DisconnectReason::FrameTooLarge { len: 4096, max: 1024 });
    a.shutdown().await;
    b.shutdown().await;
}

/// Sending more than our own maximum fails locally and keeps the connection.
pub async fn send_checks_own_limits<H: Harness>(h: H) {
    let small = Config::builder().max_frame_len(100).build().expect("config");
    let (a, _ae, ac, b, mut be, bc) = connected_pair(&h, small, Config::default()).await;
    assert!(matches!(a.send(ac, frame(0, 101)), Err(crate::Error::FrameTooLarge { len: 101, max: 100 })));
    assert!(matches!(a.send(ConnId(u64::MAX), Bytes::new()), Err(crate::Error::UnknownConnection(_))));
    a.send(ac, frame(1, 100)).expect("connection still open");
    let got = wait_for(&mut be, "frame", |ev| match ev {
        Event::Frame { conn, data } if conn == bc => Some(data),
        _ => None,
    })
    .await;
    assert_eq!(got, frame(1, 100));
    a.shutdown().await;
    b.shutdown().await;
}

/// A peer that stops reading is disconnected once our send queue fills, and
/// our queue never holds more than its limits (frames queued; bytes queued
/// or being written).
pub async fn slow_reader_is_disconnected<H: Harness>(h: H) {
    let tight = Config::builder().send_queue_frames(8).send_queue_bytes(256 * 1024).build().expect("config");
    let reader = Config::builder().event_buffer(4).build().expect("config");
    // `b` never drains its events after the handshake: it has stopped reading.
    let (a, mut ae, ac, b, _be, _bc) = connected_pair(&h, tight, reader).await;
    let chunk = Bytes::from(vec![7u8; 16 * 1024]);
    let sent_until_full = async {
        let mut sent = 0usize;
        loop {
            match a.send(ac, chunk.clone()) {
                Ok(()) => sent += 1,
                Err(crate::Error::SendQueueFull { queued_frames, queued_bytes }) => {
                    assert!(queued_frames <= 8 && queued_bytes <= 256 * 1024);
                    return sent;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
            // Let the writer drain what the network absorbs.
            tokio::task::yield_now().await;
        }
    };
    let sent = tokio::time::timeout(DEADLINE * 3, sent_until_full).await.expect("the queue fills");
    assert!(sent >= 8, "at least one queue's worth went out ({sent})");
    assert_eq!(wait_disconnected(&mut ae, ac).await, DisconnectReason::SendQueueFull);
    a.shutdown().await;
    b.shutdown().await;
}

/// A reader that keeps up is never disconnected by the same traffic.
pub async fn reading_peer_keeps_up<H: Harness>(h: H) {
    let tight = Config::builder().send_queue_frames(8).send_queue_bytes(256 * 1024).build().expect("config");
    let (a, _ae, ac, b, mut be, bc) = connected_pair(&h, tight, Config::default()).await;
    let chunk = Bytes::from(vec![7u8; 16 * 1024]);
    let total = 400;
    // Interleave: send one, read one, so the queue never exceeds its bound.
    for _ in 0..total {
        a.send(ac, chunk.clone()).expect("queue has room while the reader keeps up");
        wait_for(&mut be, "frame", |ev| matches!(ev, Event::Frame { conn, .. } if conn == bc).then_some(())).await;
    }
    assert_eq!(a.connections(), vec![ac]);
    a.shutdown().await;
    b.shutdown().await;
}

/// Inbound connections over the limit are refused; the limit frees up when
/// one closes.
pub async fn inbound_limit_is_enforced<H: Harness>(h: H) {
    let limited = Config::builder().max_inbound(2).build().expect("config");
    let (b, mut be) = h.endpoint(limited);
    let addr = b.listen(h.any_addr()).await.expect("listen");
    let mut dialers = Vec::new();
    for _ in 0..2 {
        let (a, mut ae) = h.endpoint(Config::default());
        let c = a.connect(&addr).await.expect("within the limit");
        wait_connected(&mut ae).await;
        wait_connected(&mut be).await;
        dialers.push((a, ae, c));
    }
    // The third either fails to connect or is closed at once by `b`.
    let (x, mut xe) = h.endpoint(Config::default());
    if let Ok(c) = x.connect(&addr).await {
        let reason = wait_disconnected(&mut xe, c).await;
        assert!(!reason.initiated_by_us(), "{reason:?}");
    }
    assert_eq!(b.connections().len(), 2, "b holds no more than its limit");
    // Free one slot; a new dial succeeds.
    let (a0, mut a0e, c0) = dialers.remove(0);
    a0.close(c0);
    wait_disconnected(&mut a0e, c0).await;
    wait_for(&mut be, "Disconnected at b", |ev| matches!(ev, Event::Disconnected { .. }).then_some(())).await;
    let c = x.connect(&addr).await.expect("a slot is free again");
    let (got, incoming) = wait_connected(&mut xe).await;
    assert_eq!((got, incoming), (c, false));
    for (a, _, _) in dialers {
        a.shutdown().await;
    }
    a0.shutdown().await;
    x.shutdown().await;
    b.shutdown().await;
}

/// Dialling an address nobody listens on fails with an error, not a hang.
pub async fn connect_to_nobody_fails<H: Harness>(h: H) {
    let (b, _be) = h.endpoint(Config::default());
    let addr = b.listen(h.any_addr()).await.expect("listen");
    b.shutdown().await;
    let (a, _ae) = h.endpoint(Config::default());
    let res = tokio::time::timeout(DEADLINE, a.connect(&addr)).await.expect("connect returns");
    assert!(res.is_err(), "nobody listens at {addr}");
    a.shutdown().await;
}

/// Shutting one side down ends its connections; the other side is told.
pub async fn shutdown_disconnects_peers<H: Harness>(h: H) {
    let (a, mut ae, ac, b, _be, _bc) = connected_pair(&h, Config::default(), Config::default()).await;
    b.shutdown().await;
    let reason = wait_disconnected(&mut ae, ac).await;
    assert!(!reason.initiated_by_us(), "{reason:?}");
    assert!(b.connect(&a.local_addr().unwrap_or_default()).await.is_err(), "a shut-down transport does not dial");
    a.shutdown().await;
}

/// Instantiates every conformance check as a `#[tokio::test]` in module
/// `$name`, with harnesses made by `$harness`.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $harness:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_suite!(@tests $harness;
                frames_arrive_in_order_both_ways,
                frames_sent_in_parts_arrive_whole_and_in_order,
                close_flushes_then_reports_both_sides,
                oversize_frame_closes_receiver,
                a_demoted_connection_takes_small_frames_again,
                send_checks_own_limits,
                slow_reader_is_disconnected,
                reading_peer_keeps_up,
                inbound_limit_is_enforced,
                connect_to_nobody_fails,
                shutdown_disconnects_peers,
            );
        }
    };
    (@tests $harness:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::conformance::$check($harness).await;
            }
        )*
    };
}
