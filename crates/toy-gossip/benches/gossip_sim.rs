//! Gossip simulation over the in-memory transport, at 100 and 1 000 nodes
//! with `max_peers` 8: time to full delivery of one message, hops, messages
//! sent per node, duplicates, and peak heap.
//!
//! Hops are the shortest-path distances from the origin over the peer graph
//! at the moment of sending: with equal link delays, the first copy of a
//! flooded message reaches each node along such a path.
//!
//! Run: `cargo bench -p toy-gossip --bench gossip_sim` (add `-- 100` for
//! one size).
#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use toy_gossip::{Gossip, GossipNetwork, Verdict, gossip_handler_fn};
use toy_msg::{Messaging, Messenger};
use toy_net::{MemoryNetwork, MemoryTransport};
use toy_p2p::{P2p, PeerNetwork};

struct Peak;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only adds counters.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Peak = Peak;

const MAX_PEERS: usize = 8;
const DEADLINE: Duration = Duration::from_secs(300);

type Node = (P2p<Messaging<MemoryTransport>>, Gossip<P2p<Messaging<MemoryTransport>>>);

fn addr(i: usize) -> String {
    format!("sim{i}:1")
}

async fn wait(what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

fn hops(nodes: &[Node], from: usize) -> HashMap<String, usize> {
    let graph: HashMap<String, Vec<String>> =
        nodes.iter().enumerate().map(|(i, (p, _))| (addr(i), p.peers().into_iter().map(|x| x.0).collect())).collect();
    let mut dist = HashMap::from([(addr(from), 0)]);
    let mut q = VecDeque::from([addr(from)]);
    let mut seen = HashSet::from([addr(from)]);
    while let Some(a) = q.pop_front() {
        let d = dist[&a];
        for p in graph.get(&a).into_iter().flatten() {
            if seen.insert(p.clone()) {
                dist.insert(p.clone(), d + 1);
                q.push_back(p.clone());
            }
        }
    }
    dist
}

async fn simulate(n: usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let net = MemoryNetwork::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let started = Instant::now();
    let mut nodes: Vec<Node> = Vec::new();
    let handled: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
    for i in 0..n {
        let (t, ev) = net.endpoint(toy_net::Config::builder().event_buffer(256).build().expect("config"));
        let (msg, events) = Messaging::new(t, ev, Default::default());
        msg.listen(&addr(i)).await.expect("listen");
        let boot = if i == 0 { vec![] } else { vec![addr(rng.gen_range(0..i))] };
        let config = toy_p2p::Config::builder()
            .max_peers(MAX_PEERS)
            .bootstrap(boot)
            .seed(i as u64)
            .tick(Duration::from_millis(100))
            .build()
            .expect("config");
        let p2p = P2p::start(msg, events, config).expect("p2p");
        let g = Gossip::new(p2p.clone(), Default::default());
        let h = handled.clone();
        g.register_handler(
            "sim",
            gossip_handler_fn(move |_, _| {
                let h = h.clone();
                async move {
                    h[i].fetch_add(1, Ordering::Relaxed);
                    Verdict::Accept
                }
            }),
        )
        .expect("register");
        nodes.push((p2p, g));
    }
    let settle =
        wait("peering", || nodes.iter().all(|(p, _)| p.peers().len() >= MAX_PEERS / 2) && hops(&nodes, 0).len() == n)
            .await;
    let dist = hops(&nodes, 0);
    let sent_before: u64 = nodes.iter().map(|(_, g)| g.stats().sent).sum();
    let dups_before: u64 = nodes.iter().map(|(_, g)| g.stats().duplicates).sum();
    let t0 = Instant::now();
    nodes[0].1.broadcast("sim", Bytes::from(vec![0u8; 256])).expect("broadcast");
    let delivery = wait("delivery", || handled[1..].iter().all(|h| h.load(Ordering::Relaxed) >= 1)).await;
    let _ = t0;
    let reached = handled[1..].iter().filter(|h| h.load(Ordering::Relaxed) >= 1).count();
    let once = handled[1..].iter().all(|h| h.load(Ordering::Relaxed) == 1);
    let sent: u64 = nodes.iter().map(|(_, g)| g.stats().sent).sum::<u64>() - sent_before;
    let dups: u64 = nodes.iter().map(|(_, g)| g.stats().duplicates).sum::<u64>() - dups_before;
    let max_hops = dist.values().max().copied().unwrap_or(0);
    let mean_hops = dist.values().sum::<usize>() as f64 / (dist.len().max(2) - 1) as f64;
    let degrees: Vec<usize> = nodes.iter().map(|(p, _)| p.peers().len()).collect();
    let mean_degree = degrees.iter().sum::<usize>() as f64 / n as f64;
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    println!(
        "gossip_sim n={n:>5}: delivery {reached}/{} ({:.1} %) in {:.1} ms, each handled once: {once}; \
         hops max {max_hops}, mean {mean_hops:.2}; sent {:.2}/node, duplicates {:.2}/node; \
         peers mean {mean_degree:.2} (min {}, max {}); peering settled in {:.2} s; peak heap {:.1} MiB ({:.1} KiB/node); total {:.1} s",
        n - 1,
        100.0 * reached as f64 / (n - 1) as f64,
        delivery.as_secs_f64() * 1000.0,
        sent as f64 / n as f64,
        dups as f64 / n as f64,
        degrees.iter().min().unwrap_or(&0),
        degrees.iter().max().unwrap_or(&0),
        settle.as_secs_f64(),
        peak as f64 / (1 << 20) as f64,
        peak as f64 / 1024.0 / n as f64,
        started.elapsed().as_secs_f64(),
    );
    for (p, _) in &nodes {
        p.shutdown().await;
    }
}

fn main() {
    let sizes: Vec<usize> = match std::env::args().skip(1).find_map(|a| a.parse().ok()) {
        Some(n) => vec![n],
        None => vec![100, 1000],
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    for n in sizes {
        rt.block_on(simulate(n));
    }
}
