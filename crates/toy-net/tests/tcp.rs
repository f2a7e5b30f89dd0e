//! TCP-only behaviour, checked with raw sockets that do not follow the rules.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use toy_net::conformance::{DEADLINE, wait_connected, wait_disconnected, wait_for};
use toy_net::{Config, DisconnectReason, Event, TcpTransport, Transport};

#[tokio::test]
async fn oversize_length_prefix_closes_before_allocating() {
    let (server, mut events) = TcpTransport::new(Config::default());
    let addr = server.listen("127.0.0.1:0").await.expect("listen");
    let mut raw = TcpStream::connect(&addr).await.expect("connect");
    let (conn, _) = wait_connected(&mut events).await;
    // Announce 4 GiB - 1 and send only a few bytes of it.
    raw.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await.expect("write");
    let reason = wait_disconnected(&mut events, conn).await;
    // A stranger (not yet promoted) is held to the small limit.
    assert_eq!(
        reason,
        DisconnectReason::FrameTooLarge { len: 0xffff_ffff, max: toy_net::DEFAULT_MAX_UNVERIFIED_FRAME_LEN }
    );
    // The raw peer sees the socket close.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, raw.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "connection closed: {n:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn frames_split_across_reads_and_merged_in_one_read() {
    let (server, mut events) = TcpTransport::new(Config::default());
    let addr = server.listen("127.0.0.1:0").await.expect("listen");
    let mut raw = TcpStream::connect(&addr).await.expect("connect");
    raw.set_nodelay(true).expect("nodelay");
    let (conn, _) = wait_connected(&mut events).await;
    // Three frames in one write.
    raw.write_all(b"\0\0\0\x01a\0\0\0\x02bc\0\0\0\0").await.expect("write");
    // One frame dribbled byte by byte.
    for b in b"\0\0\0\x03xyz" {
        raw.write_all(&[*b]).await.expect("write");
        raw.flush().await.expect("flush");
    }
    let mut got = Vec::new();
    while got.len() < 4 {
        let data = wait_for(&mut events, "frame", |ev| match ev {
            Event::Frame { conn: c, data } if c == conn => Some(data),
            _ => None,
        })
        .await;
        got.push(data);
    }
    assert_eq!(
        got,
        vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc"), Bytes::new(), Bytes::from_static(b"xyz")]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn peer_that_never_reads_is_dropped_with_bounded_queue() {
    let config = Config::builder().send_queue_frames(64).send_queue_bytes(1024 * 1024).build().expect("config");
    let (server, mut events) = TcpTransport::new(config);
    let addr = server.listen("127.0.0.1:0").await.expect("listen");
    // A raw client that connects and never reads a byte.
    let _raw = TcpStream::connect(&addr).await.expect("connect");
    let (conn, _) = wait_connected(&mut events).await;
    let chunk = Bytes::from(vec![0u8; 64 * 1024]);
    let fill = async {
        let mut sent = 0usize;
        loop {
            match server.send(conn, chunk.clone()) {
                Ok(()) => sent += 1,
                Err(toy_net::Error::SendQueueFull { queued_bytes, .. }) => {
                    assert!(queued_bytes <= 1024 * 1024, "queue stayed within its byte limit");
                    return sent;
                }
                Err(e) => panic!("unexpected {e}"),
            }
            // Give the writer a chance to push into the socket buffers.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let sent = tokio::time::timeout(DEADLINE * 3, fill).await.expect("the queue fills");
    // Kernel socket buffers absorb some megabytes before the queue fills.
    assert!(sent > 16, "some frames went out before the queue filled ({sent})");
    assert_eq!(wait_disconnected(&mut events, conn).await, DisconnectReason::SendQueueFull);
    server.shutdown().await;
}

#[tokio::test]
async fn connect_timeout_is_reported() {
    // A non-routable address (TEST-NET-1, RFC 5737): the SYN goes nowhere, or
    // the sandbox refuses it at once; either way connect returns an error.
    let config = Config::builder().connect_timeout(Duration::from_millis(200)).build().expect("config");
    let (client, _events) = TcpTransport::new(config);
    let res = tokio::time::timeout(DEADLINE, client.connect("192.0.2.1:15151")).await.expect("bounded by timeout");
    assert!(matches!(res, Err(toy_net::Error::ConnectTimeout { .. } | toy_net::Error::Unreachable { .. })), "{res:?}");
    client.shutdown().await;
}

/// Resident memory of this process, in KiB (Linux; `None` elsewhere).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident memory may grow by at most this much under the flood: 100 MB.
const FLOOD_RSS_BOUND_KIB: u64 = 100 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_declaring_huge_frames_before_hello_cost_little_memory() {
    // Before: the reader reserved the declared length as soon as the prefix
    // arrived; 256 connections announcing 16 MiB held gigabytes.
    let Some(before) = rss_kib() else {
        println!("SKIP strangers_declaring_huge_frames_before_hello_cost_little_memory: no /proc/self/status");
        return;
    };
    let (server, mut events) = TcpTransport::new(Config::default());
    let addr = server.listen("127.0.0.1:0").await.expect("listen");
    // 128 strangers each announce a maximum-size frame and send 1.25 MiB of
    // it: 160 MiB held if the reader kept what it was sent.
    let chunk = vec![0x5au8; 1280 * 1024];
    let mut socks = Vec::new();
    for _ in 0..128u32 {
        let mut raw = TcpStream::connect(&addr).await.expect("connect");
        let len: u32 = 16 * 1024 * 1024 - 1;
        let _ = raw.write_all(&len.to_be_bytes()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), raw.write_all(&chunk)).await;
        socks.push(raw);
    }
    // Every one is refused at its prefix: a stranger may send small frames only.
    let mut refused = 0;
    wait_for(&mut events, "128 oversize prefixes refused", |ev| {
        if matches!(ev, Event::Disconnected { reason: DisconnectReason::FrameTooLarge { .. }, .. }) {
            refused += 1;
        }
        (refused == 128).then_some(())
    })
    .await;
    let after = rss_kib().unwrap_or(0);
    let grown = after.saturating_sub(before);
    println!("128 strangers: resident memory grew by {grown} KiB (bound {FLOOD_RSS_BOUND_KIB} KiB)");
    assert!(grown < FLOOD_RSS_BOUND_KIB, "resident memory grew by {grown} KiB");
    drop(socks);
    server.shutdown().await;
}

#[tokio::test]
async fn a_promoted_connection_may_send_large_frames() {
    let (server, mut events) = TcpTransport::new(Config::default());
    let addr = server.listen("127.0.0.1:0").await.expect("listen");
    let (client, mut client_events) = TcpTransport::new(Config::default());
    let out = client.connect(&addr).await.expect("connect");
    let _ = wait_connected(&mut client_events).await;
    let (conn, _) = wait_connected(&mut events).await;
    server.promote(conn);
    let big = Bytes::from(vec![7u8; 1024 * 1024]);
    client.send(out, big.clone()).expect("send");
    wait_for(&mut events, "the large frame", |ev| matches!(ev, Event::Frame { data, .. } if data == big).then_some(()))
        .await;
    server.shutdown().await;
    client.shutdown().await;
}

#[tokio::test]
async fn readers_together_stay_within_the_read_budget() {
    let mib = 1024 * 1024;
    let config =
        Config::builder().max_frame_len(mib).max_unverified_frame_len(mib).read_budget(mib).build().expect("config");
    let (server, mut events) = TcpTransport::new(config);
    let addr = server.listen("127.0.0.1:0").await.expect("listen");
    let half = vec![1u8; mib / 2 + 1024];
    let mut socks = Vec::new();
    for _ in 0..4 {
        let mut raw = TcpStream::connect(&addr).await.expect("connect");
        let _ = raw.write_all(&(mib as u32 - 1).to_be_bytes()).await;
        let _ = raw.write_all(&half).await;
        socks.push(raw);
    }
    // Four half frames do not fit a budget of one frame: someone is closed.
    wait_for(&mut events, "a connection closed for the budget", |ev| {
        matches!(ev, Event::Disconnected { reason: DisconnectReason::ReadBudget, .. }).then_some(())
    })
    .await;
    drop(socks);
    server.shutdown().await;
}

#[tokio::test]
async fn the_read_budget_is_given_back_when_we_close_a_connection() {
    // A reader whose connection we close is dropped mid-frame: what it held
    // must come back, or closing strangers would eat the budget for good.
    let mib = 1024 * 1024;
    let config =
        Config::builder().max_frame_len(mib).max_unverified_frame_len(mib).read_budget(mib).build().expect("config");
    let (server, mut events) = TcpTransport::new(config);
    let addr = server.listen("127.0.0.1:0").await.expect("listen");
    let part = vec![1u8; 200 * 1024];
    let mut socks = Vec::new();
    for _ in 0..4 {
        let mut raw = TcpStream::connect(&addr).await.expect("connect");
        let (conn, _) = wait_connected(&mut events).await;
        raw.write_all(&(mib as u32 - 1).to_be_bytes()).await.expect("prefix");
        raw.write_all(&part).await.expect("part");
        socks.push((raw, conn));
    }
    // Give the readers time to take the bytes in, then close all four.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (_, conn) in &socks {
        server.close(*conn);
        wait_disconnected(&mut events, *conn).await;
    }
    // Nearly a whole budget's worth now fits on one connection.
    let mut raw = TcpStream::connect(&addr).await.expect("connect");
    let (conn, _) = wait_connected(&mut events).await;
    let frame = vec![2u8; mib - 64];
    raw.write_all(&(frame.len() as u32).to_be_bytes()).await.expect("prefix");
    raw.write_all(&frame).await.expect("frame");
    let got = wait_for(&mut events, "the large frame or a close", |ev| match ev {
        Event::Frame { conn: c, data } if c == conn => Some(Ok(data.len())),
        Event::Disconnected { conn: c, reason } if c == conn => Some(Err(reason)),
        _ => None,
    })
    .await;
    assert_eq!(got, Ok(frame.len()), "the budget came back");
    server.shutdown().await;
}
