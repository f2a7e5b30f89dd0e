//! Over real TCP on loopback: peering from one bootstrap, gossip, restart from
//! the peers book alone, discovery through the tracker, gossip over the relay.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use toy_gossip::relay::{RelayGossip, RelayServer};
use toy_gossip::{GossipNetwork, Verdict, gossip_handler_fn};
use toy_msg::{Messaging, Messenger};
use toy_net::TcpTransport;
use toy_p2p::{PeerId, PeerNetwork};

fn counting_handler(counter: &Arc<AtomicUsize>) -> Arc<dyn toy_gossip::GossipHandler> {
    let c = counter.clone();
    gossip_handler_fn(move |_, _| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Verdict::Accept
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_bootstrap_from_one_and_gossip_reaches_all() {
    let first = tcp_node("127.0.0.1:0", p2p_config(4, vec![], 0)).await;
    let boot = first.0.local_addr();
    let mut nodes = vec![first];
    for i in 1..10 {
        nodes.push(tcp_node("127.0.0.1:0", p2p_config(4, vec![boot.clone()], i)).await);
    }
    wait_until("all nodes have at least max/2 peers", || nodes.iter().all(|(p, _)| p.peers().len() >= 2)).await;
    let counters: Vec<Arc<AtomicUsize>> = (0..10).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    for (i, (_, g)) in nodes.iter().enumerate() {
        g.register_handler("note", counting_handler(&counters[i])).expect("register");
    }
    nodes[9].1.broadcast("note", Bytes::from_static(b"over tcp")).expect("broadcast");
    wait_until("gossip reaches all", || counters[..9].iter().all(|c| c.load(Ordering::SeqCst) == 1)).await;
    // Inbound peers may briefly exceed the maximum; trimming brings every
    // node back between max/2 and max.
    wait_until("all nodes settle between max/2 and max peers", || {
        nodes.iter().all(|(p, _)| (2..=4).contains(&p.peers().len()))
    })
    .await;
    for (p, _) in &nodes {
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_reconnects_from_its_peers_book_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let book = dir.path().join("peers.json");
    let a = tcp_node("127.0.0.1:0", p2p_config(4, vec![], 1)).await;
    let b = tcp_node("127.0.0.1:0", p2p_config(4, vec![a.0.local_addr()], 2)).await;
    let c = tcp_node("127.0.0.1:0", p2p_config(4, vec![a.0.local_addr()], 3).book_path(&book)).await;
    wait_until("c peers with a and b", || c.0.peers().len() == 2).await;
    let c_addr = c.0.local_addr();
    c.0.shutdown().await;
    assert!(book.exists(), "the book was saved at shutdown");
    wait_until("a and b notice c left", || !a.0.peers().contains(&PeerId(c_addr.clone()))).await;
    // Same address, no bootstrap: only the book knows where the network is.
    let c2 = tcp_node(&c_addr, p2p_config(4, vec![], 4).book_path(&book)).await;
    wait_until("c reconnects from its book", || c2.0.peers().len() == 2).await;
    for n in [&a, &b, &c2] {
        n.0.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_discover_each_other_through_the_tracker() {
    let (t, ev) = TcpTransport::new(toy_net::Config::default());
    let (tracker_msg, _tracker_events) = Messaging::new(t, ev, toy_msg::Config::default());
    let tracker = toy_p2p::tracker::Tracker::install(&tracker_msg, Default::default()).expect("tracker");
    let tracker_addr = tracker_msg.listen("127.0.0.1:0").await.expect("listen");
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(tcp_node("127.0.0.1:0", p2p_config(4, vec![], i).tracker(tracker_addr.clone())).await);
    }
    wait_until("all three joined the tracker", || tracker.members().len() == 3).await;
    wait_until("every node found the other two", || nodes.iter().all(|(p, _)| p.peers().len() == 2)).await;
    nodes[0].0.shutdown().await;
    wait_until("a leaving node leaves the tracker", || tracker.members().len() == 2).await;
    for (p, _) in &nodes[1..] {
        p.shutdown().await;
    }
    tracker_msg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_over_the_relay_reaches_every_subscriber() {
    // The relay: a peer with room for many clients.
    let relay = tcp_node("127.0.0.1:0", p2p_config(64, vec![], 0)).await;
    let server = RelayServer::install(&relay.0).expect("relay");
    let relay_addr = relay.0.local_addr();
    let counters: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let mut clients = Vec::new();
    for (i, counter) in counters.iter().enumerate() {
        let (p2p, _) = tcp_node("127.0.0.1:0", p2p_config(1, vec![relay_addr.clone()], 10 + i as u64)).await;
        let g = RelayGossip::new(p2p.clone(), PeerId(relay_addr.clone()), Default::default()).expect("relay gossip");
        g.register_handler("note", counting_handler(counter)).expect("register");
        clients.push((p2p, g));
    }
    wait_until("all clients subscribed", || server.subscribers("gossip:note") == 3).await;
    clients[0].1.broadcast("note", Bytes::from_static(b"via relay")).expect("broadcast");
    wait_until("both other clients got it", || {
        counters[1].load(Ordering::SeqCst) == 1 && counters[2].load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(counters[0].load(Ordering::SeqCst), 0, "not echoed to the publisher");
    // Search over the relay too.
    clients[2]
        .1
        .register_search_answerer(
            "obj",
            toy_gossip::answerer_fn(|q| async move { (&q[..] == b"k").then(|| Bytes::from_static(b"v")) }),
        )
        .expect("answerer");
    wait_until("answerer subscribed", || server.subscribers("search:obj") == 1).await;
    let mut got = None;
    clients[0]
        .1
        .search("obj", Bytes::from_static(b"k"), Duration::from_secs(30), &mut |a| {
            got = a;
            toy_gossip::Flow::Done
        })
        .await
        .expect("search");
    assert_eq!(got, Some(Bytes::from_static(b"v")));
    for (p, _) in &clients {
        p.shutdown().await;
    }
    relay.0.shutdown().await;
}
