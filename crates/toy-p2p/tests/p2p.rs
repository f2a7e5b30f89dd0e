//! Peering rules over the in-memory network: no self-peering, no duplicate
//! peering (also on simultaneous dials), handshake required, bans.

use std::time::Duration;

use bytes::Bytes;
use toy_msg::{Messaging, Messenger};
use toy_net::{MemoryNetwork, MemoryTransport, Transport};
use toy_p2p::{Config, Contribution, Misbehaviour, P2p, PeerEvent, PeerId, PeerNetwork, peer_handler_fn};

use toy_testing::{DEADLINE, wait_until};

type Node = P2p<Messaging<MemoryTransport>>;

async fn node(net: &MemoryNetwork, addr: &str, boot: Vec<String>) -> Node {
    let (t, ev) = net.endpoint(Default::default());
    let (msg, events) = Messaging::new(t, ev, Default::default());
    msg.listen(addr).await.expect("listen");
    let config =
        Config::builder().max_peers(4).bootstrap(boot).seed(1).tick(Duration::from_millis(50)).build().expect("config");
    P2p::start(msg, events, config).expect("start")
}

#[tokio::test]
async fn never_peers_with_itself() {
    let net = MemoryNetwork::new();
    let a = node(&net, "a:1", vec!["a:1".into()]).await;
    assert!(a.connect("a:1").await.is_err());
    assert!(a.peers().is_empty());
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_leave_one_link() {
    for round in 0..20 {
        let net = MemoryNetwork::new();
        let a = node(&net, "a:1", vec![]).await;
        let b = node(&net, "b:1", vec![]).await;
        let (ra, rb) = tokio::join!(a.connect("b:1"), b.connect("a:1"));
        assert!(ra.is_ok() || rb.is_ok(), "round {round}: one of the dials wins");
        wait_until("both see each other", || {
            a.peers() == vec![PeerId("b:1".into())] && b.peers() == vec![PeerId("a:1".into())]
        })
        .await;
        // The losing connection is closed by its dialler.
        wait_until("a single connection is left", || {
            a.messenger().connections().len() == 1 && b.messenger().connections().len() == 1
        })
        .await;
        assert_eq!(a.peers().len(), 1, "round {round}");
        a.shutdown().await;
        b.shutdown().await;
    }
}

#[tokio::test]
async fn duplicate_dial_is_refused() {
    let net = MemoryNetwork::new();
    let a = node(&net, "a:1", vec![]).await;
    let b = node(&net, "b:1", vec![]).await;
    a.connect("b:1").await.expect("first");
    assert!(a.connect("b:1").await.is_err());
    assert_eq!(a.peers().len(), 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn only_handshaked_peers_reach_handlers() {
    let net = MemoryNetwork::new();
    let a = node(&net, "a:1", vec![]).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    a.register_handler(
        "app:ping",
        peer_handler_fn(move |peer, _| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(peer).await;
                Some(Bytes::from_static(b"pong"))
            }
        }),
    )
    .expect("register");
    // A raw messaging client that never says hello.
    let (t, ev) = net.endpoint(Default::default());
    let (raw, _events) = Messaging::new(t, ev, Default::default());
    let conn = raw.connect("a:1").await.expect("connect");
    let res = raw.request_timeout(conn, "app:ping", Bytes::new(), Duration::from_millis(300)).await;
    assert!(res.is_err(), "no answer without a handshake");
    // A real peer is answered and identified.
    let b = node(&net, "b:1", vec![]).await;
    b.connect("a:1").await.expect("peer");
    let answer = b.request(&PeerId("a:1".into()), "app:ping", Bytes::new()).await.expect("answered");
    assert_eq!(&answer[..], b"pong");
    assert_eq!(rx.recv().await, Some(PeerId("b:1".into())));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn misbehaving_peer_is_dropped_and_banned() {
    let net = MemoryNetwork::new();
    let a = node(&net, "a:1", vec![]).await;
    let b = node(&net, "b:1", vec![]).await;
    let mut events = a.subscribe();
    b.connect("a:1").await.expect("peer");
    let bid = PeerId("b:1".into());
    wait_until("a sees b", || a.peers().contains(&bid)).await;
    a.report(&bid, Misbehaviour::InvalidTransaction);
    assert_eq!(a.score(&bid), Some(25), "below the threshold: kept");
    a.report(&bid, Misbehaviour::InvalidBlock);
    wait_until("b dropped", || a.peers().is_empty()).await;
    assert!(a.is_banned("b:1"));
    loop {
        match tokio::time::timeout(DEADLINE, events.recv()).await.expect("event").expect("open") {
            PeerEvent::Removed(p) if p == bid => break,
            _ => continue,
        }
    }
    // Its hello is refused for the ban period.
    wait_until("b notices", || b.peers().is_empty()).await;
    assert!(matches!(b.connect("a:1").await, Err(toy_p2p::Error::Rejected { .. })));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn malformed_messages_get_the_sender_banned() {
    let net = MemoryNetwork::new();
    let a = node(&net, "a:1", vec![]).await;
    let (t, ev) = net.endpoint(Default::default());
    let (msg, events) = Messaging::new(t, ev, Default::default());
    msg.listen("m:1").await.expect("listen");
    let m = P2p::start(msg, events, Config::builder().build().expect("config")).expect("start");
    m.connect("a:1").await.expect("peer");
    wait_until("a sees m", || a.peers().len() == 1).await;
    // Bypass the codec: a frame that is not a message.
    let conn = m.messenger().connections()[0];
    m.messenger().transport().send(conn, Bytes::from_static(&[9, 9])).expect("raw send");
    wait_until("m dropped and banned", || a.peers().is_empty() && a.is_banned("m:1")).await;
    a.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_peers_probes_a_stranger_without_peering_with_it() {
    let net = MemoryNetwork::new();
    let a = node(&net, "a:1", vec![]).await;
    let b = node(&net, "b:1", vec![]).await;
    let c = node(&net, "c:1", vec!["b:1".into()]).await;
    wait_until("b and c peer", || b.peers() == vec![PeerId("c:1".into())]).await;
    // A stranger: b answers over a short-lived connection, no handshake.
    assert_eq!(a.ask_peers("b:1").await.expect("b answers"), vec!["c:1".to_owned()]);
    assert!(a.peers().is_empty(), "the probe did not make b a peer");
    wait_until("the probe connection is closed", || a.messenger().connections().is_empty()).await;
    assert_eq!(b.peers(), vec![PeerId("c:1".into())], "nor did it touch b's peers");
    // Our own address gives our own peers; garbage is refused.
    assert_eq!(c.ask_peers("c:1").await.expect("self"), vec!["b:1".to_owned()]);
    assert!(a.ask_peers("no port").await.is_err());
    assert!(a.ask_peers("nobody:1").await.is_err(), "nobody listens there");
    for p in [a, b, c] {
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_probe_closes_its_connection() {
    let net = MemoryNetwork::new();
    let a = node(&net, "a:1", vec![]).await;
    // A listener that accepts and never answers anything.
    let (t, ev) = net.endpoint(Default::default());
    let (mute, _events) = Messaging::new(t, ev, Default::default());
    mute.listen("mute:1").await.expect("listen");
    let asked = tokio::time::timeout(Duration::from_millis(200), a.ask_peers("mute:1")).await;
    assert!(asked.is_err(), "no answer: the caller gave up");
    wait_until("the probe connection is closed", || a.messenger().connections().is_empty()).await;
    a.shutdown().await;
}

/// A node listening at `listen` that announces `claim` in its hello.
async fn impostor(net: &MemoryNetwork, listen: &str, claim: &str) -> P2p<Messaging<MemoryTransport>> {
    let (t, ev) = net.endpoint(Default::default());
    let (msg, events) = Messaging::new(t, ev, Default::default());
    msg.listen(listen).await.expect("listen");
    let config = Config::builder().advertise(claim).seed(2).tick(Duration::from_millis(50)).build().expect("config");
    P2p::start(msg, events, config).expect("start")
}

#[tokio::test]
async fn claiming_an_honest_address_gets_only_the_claimant_banned() {
    // Before: bans were keyed by the announced address, so an attacker that
    // said hello as b:1 and misbehaved got b:1 banned for ten minutes.
    let net = MemoryNetwork::new();
    let a = node(&net, "a:1", vec![]).await;
    let m = impostor(&net, "m:1", "b:1").await;
    m.connect("a:1").await.expect("hello accepted");
    wait_until("a sees the claim", || a.peers() == vec![PeerId("b:1".into())]).await;
    let conn = m.messenger().connections()[0];
    m.messenger().transport().send(conn, Bytes::from_static(&[9, 9])).expect("raw send");
    wait_until("the impostor is dropped", || a.peers().is_empty()).await;
    assert!(a.is_banned("m:1"), "where the connection came from is banned");
    assert!(!a.is_banned("b:1"), "the claimed address is not");
    let b = node(&net, "b:1", vec![]).await;
    b.connect("a:1").await.expect("the real b:1 is welcome");
    wait_until("a peers with b", || a.peers() == vec![PeerId("b:1".into())]).await;
    for n in [a, b, m] {
        n.shutdown().await;
    }
}

/// An impostor m:1 claims b:1 at a:1 first; then the real b:1 says hello,
/// a dials b:1 to settle the claim and keeps b. Returns (a, b, m) once the
/// impostor's connection is closed.
async fn claim_then_displace() -> (Node, Node, Node) {
    let net = MemoryNetwork::new();
    let a = node(&net, "a:1", vec![]).await;
    let m = impostor(&net, "m:1", "b:1").await;
    m.connect("a:1").await.expect("hello accepted");
    wait_until("a sees the claim", || a.peers() == vec![PeerId("b:1".into())]).await;
    let b = node(&net, "b:1", vec![]).await;
    // b's hello collides with the claim; a dials b:1 to find out who is who.
    let _ = b.connect("a:1").await;
    wait_until("a and b peer", || a.peers() == vec![PeerId("b:1".into())] && b.peers() == vec![PeerId("a:1".into())])
        .await;
    wait_until("the impostor's connection is closed", || m.peers().is_empty()).await;
    (a, b, m)
}

#[tokio::test]
async fn an_early_false_claim_does_not_keep_the_real_owner_out() {
    // Before: an impostor that claimed b:1 first made b's own hello refused
    // ("already peers") for as long as it stayed connected.
    let (a, b, m) = claim_then_displace().await;
    for n in [a, b, m] {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn get_peers_is_answered_at_a_bounded_rate_per_connection() {
    let net = MemoryNetwork::new();
    let a = node(&net, "a:1", vec![]).await;
    let b = node(&net, "b:1", vec![]).await;
    let bid = a.connect("b:1").await.expect("peer");
    let started = std::time::Instant::now();
    let mut answered = 0;
    for _ in 0..20 {
        let ask = a.request(&bid, "p2p:get_peers", Bytes::new());
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(100), ask).await {
            answered += 1;
        }
    }
    let allowed = 5.0 + started.elapsed().as_secs_f64() + 1.0;
    assert!(answered >= 5, "the burst is answered ({answered})");
    assert!((answered as f64) <= allowed, "{answered} answers, at most {allowed:.1} allowed");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_accepted_in_a_burst_of_connects_stay_past_the_handshake_timeout() {
    // Before: the hello could be handled before the connection's Connected
    // event reached the peer manager, which then counted the connection as
    // still waiting for a hello and closed it at the handshake timeout.
    let timeout = Duration::from_millis(500);
    let tcp_node = |seed: u64| async move {
        let (t, ev) = toy_net::TcpTransport::new(Default::default());
        let (msg, events) = Messaging::new(t, ev, Default::default());
        msg.listen("127.0.0.1:0").await.expect("listen");
        let config = Config::builder().max_peers(16).seed(seed).handshake_timeout(timeout).build().expect("config");
        P2p::start(msg, events, config).expect("start")
    };
    let hub = tcp_node(0).await;
    let hub_addr = hub.local_addr();
    let mut spokes = Vec::new();
    for i in 1..=12u64 {
        spokes.push(tcp_node(i).await);
    }
    // All at once.
    let dials: Vec<_> = spokes
        .iter()
        .map(|s| {
            let (s, addr) = (s.clone(), hub_addr.clone());
            tokio::spawn(async move { s.connect(&addr).await })
        })
        .collect();
    for d in dials {
        d.await.expect("task").expect("accepted");
    }
    wait_until("the hub has all twelve", || hub.peers().len() == 12).await;
    // Watched over six handshake timeouts (a property over time: no
    // condition to wait for).
    let settle = tokio::time::Instant::now() + timeout * 6;
    while tokio::time::Instant::now() < settle {
        assert_eq!(hub.peers().len(), 12, "an accepted peer was closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in spokes {
        s.shutdown().await;
    }
    hub.shutdown().await;
}

/// Opens inbound connections to `target` from ever new endpoints (as from
/// many hosts), each saying hello with a fresh made-up address, until
/// dropped. Returns how many hellos were accepted.
fn fake_hello_flood(net: &MemoryNetwork, target: &'static str) -> tokio::task::JoinHandle<usize> {
    let net = net.clone();
    tokio::spawn(async move {
        let mut accepted = 0;
        let mut keep = Vec::new();
        for i in 0.. {
            let (t, ev) = net.endpoint(Default::default());
            let (msg, _events) = Messaging::new(t, ev, Default::default());
            if let Ok(conn) = msg.connect(target).await
                && let Ok(answer) = msg.request(conn, "p2p:hello", Bytes::from(format!("fake{i}:1"))).await
                && answer.first() == Some(&1)
            {
                accepted += 1;
            }
            // Connections stay open (as an attacker keeps them).
            keep.push((msg, _events));
            tokio::time::sleep(Duration::from_millis(20)).await;
            if keep.len() > 200 {
                keep.remove(0);
            }
        }
        accepted
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_hello_flood_does_not_evict_the_proven_inbound_peer() {
    // Before: inbound peers over the limit were trimmed at random, so a
    // stream of fresh fake hellos soon evicted the honest inbound peer.
    let net = MemoryNetwork::new();
    let v = node(&net, "v:1", vec![]).await;
    let h = node(&net, "h:1", vec![]).await;
    h.connect("v:1").await.expect("honest peer connects");
    let honest = PeerId("h:1".into());
    wait_until("v has h", || v.peers().contains(&honest)).await;
    // h delivered a valid block first (the chain layer's credit).
    v.credit(&honest, Contribution::Block);
    let flood = fake_hello_flood(&net, "v:1");
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut saw_flood = false;
    while tokio::time::Instant::now() < until {
        assert!(v.peers().contains(&honest), "the honest inbound peer was evicted: {:?}", v.peers());
        saw_flood |= v.peers().iter().any(|p| p.0.starts_with("fake"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    flood.abort();
    assert!(saw_flood, "the flood reached the peer table");
    assert!(v.peers().len() <= 2 * 4, "inbound stays bounded: {:?}", v.peers());
    v.shutdown().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_flood_cannot_take_the_outbound_slots() {
    // Before: outbound dials were counted against all peers, so with the
    // inbound side full a node never dialled again after losing an
    // outbound peer; its peers were then all of the attacker's choosing.
    let net = MemoryNetwork::new();
    let o1 = node(&net, "o1:1", vec![]).await;
    let o2 = node(&net, "o2:1", vec![]).await;
    let v = node(&net, "v:1", vec!["o1:1".into(), "o2:1".into()]).await;
    let (p1, p2) = (PeerId("o1:1".into()), PeerId("o2:1".into()));
    wait_until("v dialled both", || v.peers().contains(&p1) && v.peers().contains(&p2)).await;
    let flood = fake_hello_flood(&net, "v:1");
    wait_until("the inbound side is crowded", || v.peers().iter().filter(|p| p.0.starts_with("fake")).count() >= 4)
        .await;
    // o2 drops v; v must dial out again although inbound peers abound.
    let mut events = v.subscribe();
    o2.disconnect(&PeerId("v:1".into()));
    // Seen as an event: v may dial o2 again before a poll could see it gone.
    tokio::time::timeout(DEADLINE, async {
        while !matches!(events.recv().await, Ok(PeerEvent::Removed(p)) if p == p2) {}
    })
    .await
    .expect("v lost o2");
    wait_until("v dialled o2 again", || v.peers().contains(&p2)).await;
    assert!(v.peers().contains(&p1), "o1 stayed");
    flood.abort();
    for n in [v, o1, o2] {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn a_stream_of_messages_nobody_handles_costs_the_sender() {
    // Before: messages of unknown kinds were dropped at no cost, however many.
    let net = MemoryNetwork::new();
    let a = node(&net, "a:1", vec![]).await;
    let m = node(&net, "m:1", vec![]).await;
    m.connect("a:1").await.expect("peer");
    let target = PeerId("a:1".into());
    // A few are fine (a newer protocol, say).
    for _ in 0..20 {
        m.send(&target, "gossip:nobody", Bytes::from_static(b"x")).expect("send");
    }
    // Answered after the 20 were dispatched (one connection is in order).
    m.request(&target, "p2p:get_peers", Bytes::new()).await.expect("answered");
    assert_eq!(a.score(&PeerId("m:1".into())), Some(0), "a few unknown kinds cost nothing");
    for _ in 0..500 {
        if m.send(&target, "gossip:nobody", Bytes::from_static(b"x")).is_err() {
            break;
        }
    }
    wait_until("the flooder is banned", || a.is_banned("m:1")).await;
    a.shutdown().await;
    m.shutdown().await;
}

#[tokio::test]
async fn a_late_report_about_a_displaced_claimant_does_not_hit_the_real_owner() {
    // Before: an impostor's bad messages judged after the real owner of the
    // address had displaced it were reported under the shared name, and
    // the real owner was banned for them.
    let (a, b, m) = claim_then_displace().await;
    // The chain layer finishes judging a block the impostor sent earlier.
    a.report(&PeerId("b:1".into()), Misbehaviour::InvalidBlock);
    assert!(a.is_banned("m:1"), "the claimant's origin pays");
    assert!(!a.is_banned("b:1"), "the real owner does not");
    assert_eq!(a.score(&PeerId("b:1".into())), Some(0));
    assert_eq!(a.peers(), vec![PeerId("b:1".into())]);
    for n in [a, b, m] {
        n.shutdown().await;
    }
}

/// A p2p node over TCP on loopback with a short handshake timeout.
async fn tcp_node(seed: u64, timeout: Duration) -> P2p<Messaging<toy_net::TcpTransport>> {
    let (t, ev) = toy_net::TcpTransport::new(Default::default());
    let (msg, events) = Messaging::new(t, ev, Default::default());
    msg.listen("127.0.0.1:0").await.expect("listen");
    let config = Config::builder().max_peers(8).seed(seed).handshake_timeout(timeout).build().expect("config");
    P2p::start(msg, events, config).expect("start")
}

/// A bare messaging endpoint (no peering layer): it says only what a test
/// makes it say, as a workshop node's extra connections do.
fn raw_endpoint() -> Messaging<toy_net::TcpTransport> {
    let (t, ev) = toy_net::TcpTransport::new(Default::default());
    Messaging::new(t, ev, Default::default()).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_duplicate_hello_is_not_closed_by_the_handshake_timeout() {
    // Before: a connection whose hello was refused because its address was
    // already a peer was closed at the handshake timeout. Workshop nodes
    // open several connections to one address and forget the peer when any
    // of them closes, so peering with them broke after 10 s, for good.
    let timeout = Duration::from_millis(300);
    let hub = tcp_node(1, timeout).await;
    hub.register_handler("test:ping", peer_handler_fn(|_, _| async { None })).expect("handler");
    let b = tcp_node(2, timeout).await;
    b.connect(&hub.local_addr()).await.expect("b peers with the hub");
    let raw = raw_endpoint();
    let conn = raw.connect(&hub.local_addr()).await.expect("connect");
    let answer = raw.request(conn, "p2p:hello", Bytes::from(b.local_addr())).await.expect("answered");
    assert_eq!(answer.first(), Some(&0), "a second hello for a peered address is refused");
    // Watched over six handshake timeouts (a property over time).
    let settle = tokio::time::Instant::now() + timeout * 6;
    while tokio::time::Instant::now() < settle {
        assert_eq!(raw.connections(), vec![conn], "the refused connection was closed");
        assert_eq!(hub.peers(), vec![PeerId(b.local_addr())], "the live peer was dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What it sends reaches nobody; a spare that keeps talking is closed.
    for _ in 0..100 {
        let _ = raw.send(conn, "test:ping", Bytes::new());
    }
    wait_until("the talkative spare is closed", || raw.connections().is_empty()).await;
    assert_eq!(hub.peers(), vec![PeerId(b.local_addr())], "the live peer stays");
    for n in [hub, b] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_kept_open_are_bounded_per_peer_and_go_with_it() {
    let timeout = Duration::from_millis(300);
    let hub = tcp_node(3, timeout).await;
    let b = tcp_node(4, timeout).await;
    b.connect(&hub.local_addr()).await.expect("b peers with the hub");
    let raw = raw_endpoint();
    let extra = 3;
    for _ in 0..toy_p2p::MAX_SPARES_PER_PEER + extra {
        let conn = raw.connect(&hub.local_addr()).await.expect("connect");
        let answer = raw.request(conn, "p2p:hello", Bytes::from(b.local_addr())).await.expect("answered");
        assert_eq!(answer.first(), Some(&0));
    }
    // Past the limit the handshake timeout closes them, as before; the
    // first ones kept are not displaced.
    wait_until("the extra connections are closed", || raw.connections().len() == toy_p2p::MAX_SPARES_PER_PEER).await;
    let settle = tokio::time::Instant::now() + timeout * 4;
    while tokio::time::Instant::now() < settle {
        assert_eq!(raw.connections().len(), toy_p2p::MAX_SPARES_PER_PEER);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A spare saying hello again and refused is closed.
    let first = raw.connections()[0];
    let _ = raw.request(first, "p2p:hello", Bytes::from(b.local_addr())).await;
    wait_until("the spare that said hello again is closed", || !raw.connections().contains(&first)).await;
    // The spares go with their peer.
    b.shutdown().await;
    wait_until("the spares close when their peer goes", || raw.connections().is_empty()).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_made_up_addresses_fills_only_its_share_of_the_new_table() {
    // Before: learned addresses went into one queue of 1 000, oldest
    // dropped first, so a peer answering every request with 100 fresh
    // made-up addresses replaced everything the node had heard of. Now
    // they land only in the buckets of that peer's network group (Bitcoin
    // Core's new table): at most 8 × 16 of the 1 024 slots.
    let net = MemoryNetwork::new();
    let (t, ev) = net.endpoint(Default::default());
    let (msg, events) = Messaging::new(t, ev, Default::default());
    msg.listen("victim:1").await.expect("listen");
    let config = Config::builder().max_peers(8).seed(1).tick(Duration::from_millis(20)).build().expect("config");
    let victim = P2p::start(msg, events, config).expect("start");
    // The attacker: a bare endpoint answering every address request with
    // 100 new made-up addresses.
    let (t, ev) = net.endpoint(Default::default());
    let (evil, _events) = Messaging::new(t, ev, Default::default());
    evil.listen("evil:1").await.expect("listen");
    let answers = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for kind in ["p2p:get_addrs", "p2p:get_peers"] {
        let c = answers.clone();
        evil.register_handler(
            kind,
            toy_msg::handler_fn(move |_, _| {
                let n = c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let list: Vec<String> = (0..100).map(|i| format!("junk{}:1", n * 100 + i)).collect();
                async move { Some(Bytes::from(list.join(","))) }
            }),
        )
        .expect("register");
    }
    // Four connections from the one host, each claiming another name:
    // claims are free, so they must not count as four sources.
    for claim in ["evil:1", "evil-b:1", "evil-c:1", "evil-d:1"] {
        let conn = evil.connect("victim:1").await.expect("connect");
        let hello = evil.request(conn, "p2p:hello", Bytes::from(claim)).await.expect("hello");
        assert_eq!(hello.first(), Some(&1), "the attacker is a peer as {claim}");
    }
    // Short of peers, the victim asks a random peer for addresses every few
    // ticks: 30 answers are 3 000 made-up addresses.
    wait_until("30 address answers", || answers.load(std::sync::atomic::Ordering::Relaxed) >= 30).await;
    let junk = victim.candidates().iter().filter(|a| a.starts_with("junk")).count();
    assert!(junk > 0, "the victim did learn from its peer");
    assert!(junk <= 8 * 16, "{junk} made-up addresses from one host in the table");
    victim.shutdown().await;
}

#[tokio::test]
async fn get_peers_names_only_peers_and_get_addrs_reaches_past_them() {
    // get_peers keeps the workshop's meaning (a crawl of the network reads
    // its answers as edges); get_addrs and the hello answer carry a sample
    // of the tables too, which is what mixes the graph.
    let net = MemoryNetwork::new();
    let a = node(&net, "a:1", vec![]).await;
    let b = node(&net, "b:1", vec![]).await;
    let c = node(&net, "c:1", vec![]).await;
    // b reached c by dialling: c is in b's tried table (an inbound claim
    // alone would not be).
    b.connect("c:1").await.expect("peer");
    // c leaves; b still knows of it (tried), but it is no peer.
    c.shutdown().await;
    wait_until("c is gone", || !b.peers().contains(&PeerId("c:1".into()))).await;
    let bid = a.connect("b:1").await.expect("peer");
    let peers = a.request(&bid, "p2p:get_peers", Bytes::new()).await.expect("answer");
    assert_eq!(String::from_utf8_lossy(&peers), "", "b's only peer is the asker");
    let addrs = a.request(&bid, "p2p:get_addrs", Bytes::new()).await.expect("answer");
    assert!(String::from_utf8_lossy(&addrs).contains("c:1"), "the sample names c: {addrs:?}");
    a.shutdown().await;
    b.shutdown().await;
}
