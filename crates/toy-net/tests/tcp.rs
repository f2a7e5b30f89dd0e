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
    assert_eq!(reason, DisconnectReason::FrameTooLarge { len: 0xffff_ffff, max: toy_net::DEFAULT_MAX_FRAME_LEN });
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
