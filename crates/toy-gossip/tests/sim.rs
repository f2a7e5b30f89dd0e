//! 200 nodes on the in-memory network: peering, gossip, rejection, search and
//! recovery after a quarter of the nodes die.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use rand::{Rng, SeedableRng};
use toy_gossip::{Flow, GossipNetwork, Verdict, answerer_fn, gossip_handler_fn};
use toy_net::MemoryNetwork;
use toy_p2p::{PeerId, PeerNetwork};

const N: usize = 200;
const MAX_PEERS: usize = 8;

fn addr(i: usize) -> String {
    format!("node{i}:15151")
}

/// Whether the peer graph of `members` is one connected component.
fn connected(nodes: &[MemNode], members: &[usize]) -> bool {
    let graph: Vec<(String, &toy_p2p::P2p<_>)> = members.iter().map(|&i| (addr(i), &nodes[i].0)).collect();
    let d = distances(&graph, &addr(members[0]));
    members.iter().all(|&i| d.contains_key(&addr(i)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_nodes_peer_gossip_search_and_recover() {
    let net = MemoryNetwork::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut nodes = Vec::new();
    for i in 0..N {
        let boot = if i == 0 { vec![] } else { vec![addr(rng.gen_range(0..i))] };
        let config = p2p_config(MAX_PEERS, boot, i as u64).build().expect("config");
        nodes.push(mem_node(&net, &addr(i), config).await);
    }
    let min = MAX_PEERS / 2;
    wait_until("every node has the minimum peer count", || nodes.iter().all(|(p, _)| p.peers().len() >= min)).await;
    // Flooding reaches a connected graph; the slow top-up joins any clusters.
    wait_until("the peer graph is connected", || connected(&nodes, &(0..N).collect::<Vec<_>>())).await;

    // One gossip message reaches every node, each handles it once.
    let handled: Vec<Arc<AtomicUsize>> = (0..N).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let rejected_seen: Vec<Arc<AtomicUsize>> = (0..N).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    for (i, (_, g)) in nodes.iter().enumerate() {
        let h = handled[i].clone();
        g.register_handler(
            "note",
            gossip_handler_fn(move |_, _| {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    Verdict::Accept
                }
            }),
        )
        .expect("register");
        let r = rejected_seen[i].clone();
        g.register_handler(
            "bad",
            gossip_handler_fn(move |_, _| {
                let r = r.clone();
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    Verdict::Reject
                }
            }),
        )
        .expect("register");
    }
    nodes[0].1.broadcast("note", Bytes::from_static(b"hello everyone")).expect("broadcast");
    wait_until("the message reaches every node", || handled[1..].iter().all(|h| h.load(Ordering::SeqCst) >= 1)).await;
    assert_eq!(handled[0].load(Ordering::SeqCst), 0, "the origin does not handle its own message");
    assert!(handled[1..].iter().all(|h| h.load(Ordering::SeqCst) == 1), "each node handles it exactly once");
    let dup: u64 = nodes.iter().map(|(_, g)| g.stats().duplicates).sum();
    println!("gossip over {N} nodes: {dup} duplicate copies dropped");

    // A rejected message stops at the first hop; the sender is penalised.
    let liar = 5;
    let liar_id = PeerId(addr(liar));
    let liar_peers: Vec<PeerId> = nodes[liar].0.peers();
    nodes[liar].1.broadcast("bad", Bytes::from_static(b"lies")).expect("broadcast");
    let index_of = |p: &PeerId| (0..N).find(|i| addr(*i) == p.0).expect("known node");
    wait_until("every direct peer judged it", || {
        liar_peers.iter().all(|p| rejected_seen[index_of(p)].load(Ordering::SeqCst) == 1)
    })
    .await;
    let total: usize = rejected_seen.iter().map(|r| r.load(Ordering::SeqCst)).sum();
    assert_eq!(total, liar_peers.len(), "nobody beyond the first hop saw it");
    for p in &liar_peers {
        let score = nodes[index_of(p)].0.score(&liar_id);
        assert!(
            score.is_none_or(|s| s >= toy_p2p::Misbehaviour::InvalidGossip.penalty()),
            "{p} penalised the liar: {score:?}"
        );
    }

    // A search finds an object held by a node at least 4 hops away.
    let graph: Vec<(String, &toy_p2p::P2p<_>)> = nodes.iter().enumerate().map(|(i, (p, _))| (addr(i), p)).collect();
    let (asker, holder) = (0..N)
        .find_map(|a| {
            let d = distances(&graph, &addr(a));
            d.iter().find(|(_, h)| **h >= 4).map(|(target, _)| (a, index_of(&PeerId(target.clone()))))
        })
        .expect("a pair of nodes 4 hops apart");
    for (i, (_, g)) in nodes.iter().enumerate() {
        let has = i == holder;
        g.register_search_answerer(
            "object",
            answerer_fn(
                move |q| async move { (has && &q[..] == b"the-key").then(|| Bytes::from_static(b"the-value")) },
            ),
        )
        .expect("register");
    }
    let mut answers = Vec::new();
    nodes[asker]
        .1
        .search("object", Bytes::from_static(b"the-key"), Duration::from_secs(30), &mut |a| {
            answers.push(a.clone());
            if a.is_some() { Flow::Done } else { Flow::Continue }
        })
        .await
        .expect("search");
    assert_eq!(answers, vec![Some(Bytes::from_static(b"the-value"))], "the answer came back from {holder} to {asker}");

    // Kill a quarter of the nodes; the rest re-peer and gossip still reaches all.
    let mut dead = std::collections::HashSet::new();
    while dead.len() < N / 4 {
        dead.insert(rng.gen_range(1..N));
    }
    for &d in &dead {
        nodes[d].0.shutdown().await;
    }
    let live: Vec<usize> = (0..N).filter(|i| !dead.contains(i)).collect();
    wait_until("live nodes re-peer to the minimum", || live.iter().all(|&i| nodes[i].0.peers().len() >= min)).await;
    wait_until("the live graph is connected", || connected(&nodes, &live)).await;
    nodes[live[0]].1.broadcast("note", Bytes::from_static(b"still here")).expect("broadcast");
    wait_until("the second message reaches every live node", || {
        live[1..].iter().all(|&i| handled[i].load(Ordering::SeqCst) >= 2)
    })
    .await;
    for &i in &live {
        nodes[i].0.shutdown().await;
    }
}
