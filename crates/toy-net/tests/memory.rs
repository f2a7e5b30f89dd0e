//! Behaviour only the in-memory network has: latency, cut links, partitions.

use std::time::Duration;

use bytes::Bytes;
use toy_net::conformance::{MemoryHarness, connected_pair, wait_connected, wait_disconnected, wait_for};
use toy_net::{Config, DisconnectReason, Event, MemoryNetwork, Transport};

#[tokio::test(start_paused = true)]
async fn latency_delays_frames_without_limiting_throughput() {
    let h = MemoryHarness::default();
    let (a, _ae, ac, b, mut be, bc) = connected_pair(&h, Config::default(), Config::default()).await;
    h.net.set_latency(&a, &b, Duration::from_millis(50));
    let start = tokio::time::Instant::now();
    for i in 0..100u8 {
        a.send(ac, Bytes::from(vec![i])).expect("send");
    }
    for i in 0..100u8 {
        let data = wait_for(&mut be, "frame", |ev| match ev {
            Event::Frame { conn, data } if conn == bc => Some(data),
            _ => None,
        })
        .await;
        assert_eq!(&data[..], &[i]);
    }
    let elapsed = start.elapsed();
    // Virtual time: the frames are delayed once by the latency, not 100 times.
    assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(100), "{elapsed:?}");
}

#[tokio::test]
async fn cut_link_disconnects_and_refuses_until_healed() {
    let h = MemoryHarness::default();
    let (a, mut ae, ac, b, mut be, bc) = connected_pair(&h, Config::default(), Config::default()).await;
    h.net.cut(&a, &b);
    assert_eq!(wait_disconnected(&mut ae, ac).await, DisconnectReason::LinkCut);
    assert_eq!(wait_disconnected(&mut be, bc).await, DisconnectReason::LinkCut);
    let addr = b.local_addr().expect("listening");
    assert!(a.connect(&addr).await.is_err(), "cut link refuses dials");
    h.net.heal_link(&a, &b);
    let c = a.connect(&addr).await.expect("healed");
    assert_eq!(wait_connected(&mut ae).await, (c, false));
}

#[tokio::test]
async fn partition_splits_groups_and_heal_restores() {
    let net = MemoryNetwork::new();
    let mut nodes = Vec::new();
    for _ in 0..4 {
        let (t, ev) = net.endpoint(Config::default());
        let addr = t.listen("node:0").await.expect("listen");
        nodes.push((t, ev, addr));
    }
    // Full mesh: i dials j for i < j.
    for i in 0..4 {
        for j in i + 1..4 {
            let addr = nodes[j].2.clone();
            nodes[i].0.connect(&addr).await.expect("dial");
        }
    }
    for (t, ev, _) in nodes.iter_mut() {
        for _ in 0..3 {
            wait_connected(ev).await;
        }
        assert_eq!(t.connections().len(), 3);
    }
    let g1 = vec![nodes[0].0.clone(), nodes[1].0.clone()];
    let g2 = vec![nodes[2].0.clone(), nodes[3].0.clone()];
    net.partition(&[g1, g2]);
    for (t, ev, _) in nodes.iter_mut() {
        for _ in 0..2 {
            let reason = wait_for(ev, "Disconnected", |e| match e {
                Event::Disconnected { reason, .. } => Some(reason),
                _ => None,
            })
            .await;
            assert_eq!(reason, DisconnectReason::LinkCut);
        }
        assert_eq!(t.connections().len(), 1, "only the link inside the group is left");
    }
    let addr2 = nodes[2].2.clone();
    assert!(nodes[0].0.connect(&addr2).await.is_err());
    net.heal();
    nodes[0].0.connect(&addr2).await.expect("healed");
}

#[tokio::test]
async fn thousands_of_endpoints_fit_in_one_process() {
    let net = MemoryNetwork::new();
    let small = Config::builder().event_buffer(16).send_queue_frames(16).build().expect("config");
    let (hub, mut hub_events) = net.endpoint(Config::builder().max_inbound(5000).build().expect("config"));
    let hub_addr = hub.listen("hub:1").await.expect("listen");
    let mut spokes = Vec::new();
    for _ in 0..2000 {
        let (t, ev) = net.endpoint(small.clone());
        let c = t.connect(&hub_addr).await.expect("dial hub");
        t.send(c, Bytes::from_static(b"hi")).expect("send");
        spokes.push((t, ev));
    }
    let mut frames = 0;
    while frames < 2000 {
        wait_for(&mut hub_events, "frame", |e| matches!(e, Event::Frame { .. }).then_some(())).await;
        frames += 1;
    }
    assert_eq!(hub.connections().len(), 2000);
    hub.shutdown().await;
}

/// One place (an endpoint here; a /16 over TCP) opening connection after
/// connection, never saying hello, holds no more than its group's share of
/// handshakes in flight, nor of inbound slots once promoted; another place
/// still gets in.
#[tokio::test]
async fn reconnect_flood_from_one_group_leaves_room_for_others() {
    let net = MemoryNetwork::new();
    let config =
        Config::builder().max_inbound(64).max_inbound_per_group(5).max_strangers_per_group(3).build().expect("config");
    let (victim, _victim_events) = net.endpoint(config);
    let addr = victim.listen("victim:1").await.expect("listen");
    let (flooder, _flooder_events) = net.endpoint(Config::default());
    let mut opened = 0;
    for _ in 0..20 {
        if flooder.connect(&addr).await.is_ok() {
            opened += 1;
        }
    }
    assert_eq!(opened, 3, "handshakes in flight from one group are capped");
    // Promoted connections (peers that said hello) count against the
    // group's inbound limit instead.
    for c in victim.connections() {
        victim.promote(c);
    }
    for _ in 0..20 {
        if flooder.connect(&addr).await.is_ok() {
            opened += 1;
        }
    }
    assert_eq!(opened, 5, "one group's inbound connections are capped");
    let (honest, _honest_events) = net.endpoint(Config::default());
    honest.connect(&addr).await.expect("another group still gets in");
    victim.shutdown().await;
}
