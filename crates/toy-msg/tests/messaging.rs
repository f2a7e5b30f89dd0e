//! Messaging over real TCP on loopback and over the in-memory transport: the
//! same checks, instantiated for both.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use toy_msg::{Config, DecodeError, Error, Event, Events, Messaging, Messenger, handler_fn};
use toy_net::conformance::{DEADLINE, Harness, MemoryHarness, TcpHarness};
use toy_net::{DisconnectReason, Transport};

/// Waits for the first messaging event matching `pred`.
async fn wait_for<R>(events: &mut Events, what: &str, mut pred: impl FnMut(Event) -> Option<R>) -> R {
    let fut = async {
        loop {
            let ev = events.next().await.unwrap_or_else(|| panic!("events ended waiting for {what}"));
            if let Some(r) = pred(ev) {
                return r;
            }
        }
    };
    tokio::time::timeout(DEADLINE, fut).await.unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}"))
}

fn node<H: Harness>(h: &H, config: Config) -> (Messaging<H::T>, Events) {
    let (t, ev) = h.endpoint(toy_net::Config::default());
    Messaging::new(t, ev, config)
}

/// A server with an `echo` handler, and a client connected to it.
async fn echo_pair<H: Harness>(
    h: &H,
    client_cfg: Config,
) -> (Messaging<H::T>, Events, Messaging<H::T>, Events, toy_msg::ConnId) {
    let (server, server_events) = node(h, Config::default());
    server.register_handler("echo", handler_fn(|_, p| async move { Some(p) })).expect("register");
    let addr = server.listen(h.any_addr()).await.expect("listen");
    let (client, client_events) = node(h, client_cfg);
    let conn = client.connect(&addr).await.expect("connect");
    (server, server_events, client, client_events, conn)
}

async fn echo_round_trip<H: Harness>(h: H) {
    let (server, _se, client, _ce, conn) = echo_pair(&h, Config::default()).await;
    for payload in [&b""[..], b"ping", &[0u8; 5000][..]] {
        let got = client.request(conn, "echo", Bytes::copy_from_slice(payload)).await.expect("answered");
        assert_eq!(&got[..], payload);
    }
    client.shutdown().await;
    server.shutdown().await;
}

async fn thousand_concurrent_requests_on_one_connection<H: Harness>(h: H) {
    let (server, _se, client, _ce, conn) = echo_pair(&h, Config::default()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0u32..1000 {
        let client = client.clone();
        tasks.spawn(async move {
            let payload = Bytes::from(format!("request number {i}"));
            let got = client.request(conn, "echo", payload.clone()).await.expect("answered");
            assert_eq!(got, payload, "response matched to its own request");
        });
    }
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        r.expect("request task");
        done += 1;
    }
    assert_eq!(done, 1000);
    client.shutdown().await;
    server.shutdown().await;
}

async fn unanswered_request_times_out<H: Harness>(h: H) {
    let (server, _se, client, _ce, conn) = echo_pair(&h, Config::default()).await;
    server.register_handler("silent", handler_fn(|_, _| async { None })).expect("register");
    let err = client
        .request_timeout(conn, "silent", Bytes::new(), Duration::from_millis(200))
        .await
        .expect_err("no response");
    assert!(matches!(err, Error::Timeout { ref kind, .. } if kind == "silent"), "{err}");
    // Unknown kinds are ignored too, and the connection stays usable.
    let err = client
        .request_timeout(conn, "nobody:home", Bytes::new(), Duration::from_millis(200))
        .await
        .expect_err("ignored");
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    client.send(conn, "nobody:home", Bytes::from_static(b"x")).expect("one-way to unknown kind");
    assert_eq!(&client.request(conn, "echo", Bytes::from_static(b"ok")).await.expect("still open")[..], b"ok");
    client.shutdown().await;
    server.shutdown().await;
}

async fn disconnect_mid_request_resolves_at_once<H: Harness>(h: H) {
    let (server, _se, client, _ce, conn) = echo_pair(&h, Config::default()).await;
    let entered = Arc::new(Notify::new());
    let e = entered.clone();
    server
        .register_handler(
            "hang",
            handler_fn(move |_, _| {
                let e = e.clone();
                async move {
                    e.notify_one();
                    std::future::pending::<()>().await;
                    None
                }
            }),
        )
        .expect("register");
    let c = client.clone();
    // A timeout far longer than the test's deadline: only the disconnect can
    // end this request in time.
    let req = tokio::spawn(async move { c.request_timeout(conn, "hang", Bytes::new(), DEADLINE * 10).await });
    tokio::time::timeout(DEADLINE, entered.notified()).await.expect("handler entered");
    server.shutdown().await;
    let res = tokio::time::timeout(DEADLINE, req).await.expect("resolved before the timeout").expect("task");
    assert!(matches!(res, Err(Error::Disconnected { conn: c }) if c == conn), "{res:?}");
    client.shutdown().await;
}

async fn one_way_messages_reach_their_handler<H: Harness>(h: H) {
    let (server, _se, client, _ce, conn) = echo_pair(&h, Config::default()).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    server
        .register_handler(
            "note",
            handler_fn(move |_, p| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(p).await;
                    Some(Bytes::from_static(b"ignored for one-way"))
                }
            }),
        )
        .expect("register");
    client.send(conn, "note", Bytes::from_static(b"hi")).expect("send");
    let got = tokio::time::timeout(DEADLINE, rx.recv()).await.expect("delivered").expect("open");
    assert_eq!(&got[..], b"hi");
    client.shutdown().await;
    server.shutdown().await;
}

async fn malformed_message_closes_and_reports<H: Harness>(h: H) {
    let (server, mut se, client, _ce, _conn) = echo_pair(&h, Config::default()).await;
    let server_conn = wait_for(&mut se, "Connected", |e| match e {
        Event::Connected { conn, .. } => Some(conn),
        _ => None,
    })
    .await;
    let addr = server.local_addr().expect("listening");
    for (bad, want) in [
        (&[0u8, 0, 0][..], DecodeError::TooShort { len: 3 }),
        (&[9, 0, 0, 0, 1, 0][..], DecodeError::UnknownType(9)),
        (&[0, 0, 0, 0, 1, b'k', b'k'][..], DecodeError::UnterminatedKind),
        (&[1, 0, 0, 0, 1, 0xc3, 0x28, 0][..], DecodeError::KindNotUtf8),
    ] {
        // A raw transport speaks frames but not messages.
        let (raw, mut raw_events) = h.endpoint(toy_net::Config::default());
        let c = raw.connect(&addr).await.expect("connect");
        raw.send(c, Bytes::copy_from_slice(bad)).expect("send");
        let (conn, error) = wait_for(&mut se, "Misbehaved", |e| match e {
            Event::Misbehaved { conn, error } => Some((conn, error)),
            _ => None,
        })
        .await;
        assert_eq!(error, want);
        wait_for(&mut se, "Disconnected", |e| {
            matches!(e, Event::Disconnected { conn: d, .. } if d == conn).then_some(())
        })
        .await;
        let reason = toy_net::conformance::wait_disconnected(&mut raw_events, c).await;
        assert!(!reason.initiated_by_us());
        raw.shutdown().await;
    }
    // The well-behaved client was not affected.
    assert!(server.connections().contains(&server_conn));
    client.shutdown().await;
    server.shutdown().await;
}

async fn registering_a_kind_twice_fails<H: Harness>(h: H) {
    let (server, _se) = node(&h, Config::default());
    server.register_handler("k", handler_fn(|_, _| async { None })).expect("first");
    let err = server.register_handler("k", handler_fn(|_, _| async { None })).expect_err("second");
    assert!(matches!(err, Error::DuplicateHandler { ref kind } if kind == "k"));
    assert!(matches!(server.register_handler("a\0b", handler_fn(|_, _| async { None })), Err(Error::InvalidKind(_))));
    server.shutdown().await;
}

async fn pending_requests_are_bounded<H: Harness>(h: H) {
    let cfg = Config::builder().max_pending_per_conn(4).build().expect("config");
    let (server, _se, client, _ce, conn) = echo_pair(&h, cfg).await;
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel(8);
    server
        .register_handler(
            "silent",
            handler_fn(move |_, _| {
                let seen_tx = seen_tx.clone();
                async move {
                    let _ = seen_tx.send(()).await;
                    None
                }
            }),
        )
        .expect("register");
    let mut waiting = Vec::new();
    for _ in 0..4 {
        let c = client.clone();
        waiting.push(tokio::spawn(async move { c.request_timeout(conn, "silent", Bytes::new(), DEADLINE).await }));
    }
    // The server has seen all four, so all four are pending at the client.
    for _ in 0..4 {
        tokio::time::timeout(DEADLINE, seen.recv()).await.expect("request arrives");
    }
    let fifth = client.request_timeout(conn, "silent", Bytes::new(), DEADLINE).await;
    assert!(matches!(fifth, Err(Error::TooManyPending { max: 4, .. })), "{fifth:?}");
    // Cancelling a request frees its slot.
    waiting.pop().expect("four").abort();
    let freed = tokio::time::timeout(DEADLINE, async {
        loop {
            match client.request_timeout(conn, "silent", Bytes::new(), Duration::from_millis(10)).await {
                Err(Error::Timeout { .. }) => return,
                _ => tokio::task::yield_now().await,
            }
        }
    });
    freed.await.expect("a slot is free after cancelling");
    for w in waiting {
        w.abort();
    }
    client.shutdown().await;
    server.shutdown().await;
}

async fn peer_that_stops_reading_is_dropped<H: Harness>(h: H) {
    let (sender, mut se) = node(&h, Config::default());
    let addr = sender.listen(h.any_addr()).await.expect("listen");
    // A raw endpoint whose events nobody drains: it has stopped reading.
    let cfg = toy_net::Config::builder().event_buffer(2).build().expect("config");
    let (raw, _raw_events) = h.endpoint(cfg);
    raw.connect(&addr).await.expect("connect");
    let conn = wait_for(&mut se, "Connected", |e| match e {
        Event::Connected { conn, .. } => Some(conn),
        _ => None,
    })
    .await;
    let chunk = Bytes::from(vec![1u8; 64 * 1024]);
    let fill = async {
        loop {
            match sender.send(conn, "bulk", chunk.clone()) {
                Ok(()) => tokio::task::yield_now().await,
                Err(Error::Transport(toy_net::Error::SendQueueFull { .. })) => return,
                Err(e) => panic!("unexpected {e}"),
            }
        }
    };
    tokio::time::timeout(DEADLINE * 3, fill).await.expect("queue fills");
    let reason = wait_for(&mut se, "Disconnected", |e| match e {
        Event::Disconnected { conn: c, reason } if c == conn => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::SendQueueFull);
    assert!(reason.is_peer_fault());
    raw.shutdown().await;
    sender.shutdown().await;
}

/// A server whose `slow` handler counts its invocations (the counter) and
/// waits until the `Notify` is notified.
fn slow_server<H: Harness>(h: &H) -> (Messaging<H::T>, Events, Arc<Notify>, Arc<std::sync::atomic::AtomicUsize>) {
    let (server, events) = node(h, Config::default());
    let release = Arc::new(Notify::new());
    let entered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (r, e) = (release.clone(), entered.clone());
    server
        .register_handler(
            "slow",
            handler_fn(move |_, p| {
                let (r, e) = (r.clone(), e.clone());
                async move {
                    e.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    r.notified().await;
                    Some(p)
                }
            }),
        )
        .expect("register");
    (server, events, release, entered)
}

/// Five connections sending 400 `slow` messages each to `addr`, until the
/// server's ordinary handler slots are full (`entered` counts them).
async fn fill_ordinary_slots<H: Harness>(
    h: &H,
    addr: &str,
    entered: &std::sync::atomic::AtomicUsize,
) -> Vec<(Messaging<H::T>, Events)> {
    let mut flooders = Vec::new();
    for _ in 0..5 {
        let (t, ev) = h.endpoint(toy_net::Config::builder().send_queue_frames(4_096).build().expect("config"));
        let (flooder, fe) = Messaging::new(t, ev, Config::default());
        let fconn = flooder.connect(addr).await.expect("connect");
        for _ in 0..400 {
            flooder.send(fconn, "slow", Bytes::from_static(b"x")).expect("one-way");
        }
        flooders.push((flooder, fe));
    }
    let ordinary = toy_msg::DEFAULT_MAX_CONCURRENT_HANDLERS - toy_msg::DEFAULT_RESERVED_HANDLERS;
    tokio::time::timeout(DEADLINE, async {
        while entered.load(std::sync::atomic::Ordering::SeqCst) < ordinary {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the floods filled the ordinary slots");
    flooders
}

/// A flood on one connection does not silence another: each connection
/// holds at most its share of the handler slots.
async fn a_flooding_connection_does_not_silence_another<H: Harness>(h: H) {
    // Before: 1 024 slots shared by all; one connection flooding slow
    // requests took them all and other connections' messages were dropped.
    let (server, _se, release, entered) = slow_server(&h);
    let addr = server.listen(h.any_addr()).await.expect("listen");
    // Room to queue the whole flood at once.
    let (t, ev) = h.endpoint(toy_net::Config::builder().send_queue_frames(4_096).build().expect("config"));
    let (flooder, _fe) = Messaging::new(t, ev, Config::default());
    let fconn = flooder.connect(&addr).await.expect("connect");
    for _ in 0..2_000 {
        flooder.send(fconn, "slow", Bytes::from_static(b"x")).expect("one-way");
    }
    // The flood holds all the slots it may: its share (the whole pool before).
    let share = toy_msg::DEFAULT_MAX_HANDLERS_PER_CONN;
    tokio::time::timeout(DEADLINE, async {
        while entered.load(std::sync::atomic::Ordering::SeqCst) < share {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the flood reached the server");
    let (other, _oe) = node(&h, Config::default());
    let oconn = other.connect(&addr).await.expect("connect");
    let released = release.clone();
    let slow = tokio::spawn(async move {
        // The other connection's slow request is admitted and answered once
        // released; the flood's extra copies were dropped, not queued.
        other.request(oconn, "slow", Bytes::from_static(b"mine")).await
    });
    // Release waiters until the other connection's request is answered.
    let answered = tokio::time::timeout(DEADLINE, async {
        loop {
            released.notify_waiters();
            if slow.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(answered.is_ok(), "the other connection's request was never handled");
    flooder.shutdown().await;
    server.shutdown().await;
}

/// Several connections flooding at their share fill the ordinary handler
/// slots; a handshake (a priority kind) still finds one of the reserved.
async fn floods_from_several_connections_do_not_starve_a_handshake<H: Harness>(h: H) {
    // Before: four connections at their share (4 × 256) took all 1 024
    // slots, and a new peer's p2p:hello was dropped.
    let (server, _se, release, entered) = slow_server(&h);
    server.register_handler("p2p:hello", handler_fn(|_, p| async move { Some(p) })).expect("register");
    let addr = server.listen(h.any_addr()).await.expect("listen");
    let flooders = fill_ordinary_slots(&h, &addr, &entered).await;
    let (newcomer, _ne) = node(&h, Config::default());
    let nconn = newcomer.connect(&addr).await.expect("connect");
    let hello = newcomer.request(nconn, "p2p:hello", Bytes::from_static(b"me"));
    let answer = tokio::time::timeout(DEADLINE, hello).await.expect("in time").expect("answered");
    assert_eq!(&answer[..], b"me");
    let ordinary = toy_msg::DEFAULT_MAX_CONCURRENT_HANDLERS - toy_msg::DEFAULT_RESERVED_HANDLERS;
    assert!(entered.load(std::sync::atomic::Ordering::SeqCst) <= ordinary, "floods stay out of the reserved slots");
    release.notify_waiters();
    for (f, _) in flooders {
        f.shutdown().await;
    }
    server.shutdown().await;
}

/// A peer with ordinary work of its own running (transactions being
/// checked, say) still gets its handshake through the reserve while floods
/// from others fill the ordinary slots: the reserve is rationed by a
/// connection's priority handlers, not by all of them.
async fn a_busy_honest_peer_still_gets_its_handshake_through_the_reserve<H: Harness>(h: H) {
    let (server, _se, release, entered) = slow_server(&h);
    server.register_handler("p2p:hello", handler_fn(|_, p| async move { Some(p) })).expect("register");
    let addr = server.listen(h.any_addr()).await.expect("listen");
    // The honest peer's own ordinary work: 20 slow handlers.
    let (honest, _he) = node(&h, Config::default());
    let hconn = honest.connect(&addr).await.expect("connect");
    for _ in 0..20 {
        honest.send(hconn, "slow", Bytes::from_static(b"mine")).expect("one-way");
    }
    tokio::time::timeout(DEADLINE, async {
        while entered.load(std::sync::atomic::Ordering::SeqCst) < 20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("its work is running");
    let flooders = fill_ordinary_slots(&h, &addr, &entered).await;
    let hello = honest.request(hconn, "p2p:hello", Bytes::from_static(b"me"));
    let answer = tokio::time::timeout(DEADLINE, hello).await.expect("in time").expect("answered");
    assert_eq!(&answer[..], b"me");
    release.notify_waiters();
    for (f, _) in flooders {
        f.shutdown().await;
    }
    server.shutdown().await;
}

macro_rules! suite {
    ($name:ident, $harness:expr) => {
        mod $name {
            use super::*;
            suite!(@tests $harness;
                echo_round_trip,
                thousand_concurrent_requests_on_one_connection,
                unanswered_request_times_out,
                disconnect_mid_request_resolves_at_once,
                one_way_messages_reach_their_handler,
                malformed_message_closes_and_reports,
                registering_a_kind_twice_fails,
                pending_requests_are_bounded,
                a_flooding_connection_does_not_silence_another,
                floods_from_several_connections_do_not_starve_a_handshake,
                a_busy_honest_peer_still_gets_its_handshake_through_the_reserve,
                peer_that_stops_reading_is_dropped,
            );
        }
    };
    (@tests $harness:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                super::$check($harness).await;
            }
        )*
    };
}

suite!(tcp, TcpHarness);
suite!(memory, MemoryHarness::default());

#[tokio::test]
async fn oversize_length_prefix_over_tcp_is_a_peer_fault() {
    use tokio::io::AsyncWriteExt;
    let (server, mut se) = node(&TcpHarness, Config::default());
    let addr = server.listen("127.0.0.1:0").await.expect("listen");
    let mut raw = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    raw.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
    let reason = wait_for(&mut se, "Disconnected", |e| match e {
        Event::Disconnected { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert!(matches!(reason, DisconnectReason::FrameTooLarge { len: 0xffff_ffff, .. }), "{reason:?}");
    assert!(reason.is_peer_fault());
    server.shutdown().await;
}
