//! Gossip simulation over the in-memory transport, at 100, 1 000 and
//! 10 000 nodes with `max_peers` 8: time to full delivery of one message,
//! hops, messages sent per node, duplicates, and peak heap.
//!
//! Hops are the shortest-path distances from the origin over the peer graph
//! at the moment of sending: with equal link delays, the first copy of a
//! flooded message reaches each node along such a path. Next to them, in
//! the same run, the mean distance of a random graph of the same size and
//! mean degree d: ln N / ln(d − 1).
//!
//! Then every link gets a one-way latency ([`LATENCY`]) and a random node
//! floods a second message: each node's arrival time, next to the bound
//! its own shortest path allows (hops × latency).
//!
//! Run: `cargo bench -p toy-gossip --bench gossip_sim` (add `-- 100` for
//! one size).
#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
const DEADLINE: Duration = Duration::from_secs(600);
/// One-way delay of every link in the propagation run.
const LATENCY: Duration = Duration::from_millis(20);

type Node = (P2p<Messaging<MemoryTransport>>, Gossip<P2p<Messaging<MemoryTransport>>>);

fn addr(i: usize) -> String {
    format!("sim{i}:1")
}

/// Waits for `cond`, checked every `every` (a check over 10 000 nodes is
/// itself work the runtime must do).
async fn wait(what: &str, every: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out: {what}");
        tokio::time::sleep(every).await;
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
    // Arrival of the latency run's message: microseconds after `epoch`, + 1.
    let arrived: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let epoch = Instant::now();
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
        let a = arrived.clone();
        g.register_handler(
            "lat",
            gossip_handler_fn(move |_, _| {
                let a = a.clone();
                async move {
                    let at = epoch.elapsed().as_micros() as u64 + 1;
                    let _ = a[i].compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
                    Verdict::Accept
                }
            }),
        )
        .expect("register");
        nodes.push((p2p, g));
    }
    let every = Duration::from_millis(if n > 1000 { 250 } else { 5 });
    let settle = wait("peering", every, || {
        nodes.iter().all(|(p, _)| p.peers().len() >= MAX_PEERS / 2) && hops(&nodes, 0).len() == n
    })
    .await;
    let dist = hops(&nodes, 0);
    let sent_before: u64 = nodes.iter().map(|(_, g)| g.stats().sent).sum();
    let dups_before: u64 = nodes.iter().map(|(_, g)| g.stats().duplicates).sum();
    let t0 = Instant::now();
    nodes[0].1.broadcast("sim", Bytes::from(vec![0u8; 256])).expect("broadcast");
    let delivery =
        wait("delivery", Duration::from_millis(1), || handled[1..].iter().all(|h| h.load(Ordering::Relaxed) >= 1))
            .await;
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
    // A random graph of the same size and mean degree: mean distance
    // ln N / ln(d − 1) (the branching factor of a flood is d − 1).
    let random = (n as f64).ln() / (mean_degree - 1.0).ln();
    println!(
        "gossip_sim n={n:>5}: mean hops {mean_hops:.2} against a random graph's {random:.2} \
         (ln N / ln(d - 1), d = {mean_degree:.2}): {:.2}x",
        mean_hops / random
    );
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

    // Propagation with a latency on every link, from a random node.
    net.set_default_latency(LATENCY);
    let origin = rng.gen_range(0..n);
    let dist = hops(&nodes, origin);
    let sent_at = epoch.elapsed().as_micros() as u64 + 1;
    arrived[origin].store(sent_at, Ordering::Relaxed);
    nodes[origin].1.broadcast("lat", Bytes::from(vec![1u8; 256])).expect("broadcast");
    wait("delivery with latency", Duration::from_millis(5), || arrived.iter().all(|a| a.load(Ordering::Relaxed) > 0))
        .await;
    let mut taken: Vec<u64> = Vec::new();
    let mut bound: Vec<u64> = Vec::new();
    for (i, a) in arrived.iter().enumerate().filter(|(i, _)| *i != origin) {
        taken.push((a.load(Ordering::Relaxed) - sent_at) / 1000);
        bound.push(dist.get(&addr(i)).copied().unwrap_or(0) as u64 * LATENCY.as_millis() as u64);
    }
    taken.sort_unstable();
    bound.sort_unstable();
    let pct = |v: &[u64], p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    println!(
        "gossip_sim n={n:>5}: with {} ms per link, arrival p50 {} / p90 {} / max {} ms; \
         the graph's bound (hops x latency) p50 {} / p90 {} / max {} ms",
        LATENCY.as_millis(),
        pct(&taken, 0.5),
        pct(&taken, 0.9),
        pct(&taken, 1.0),
        pct(&bound, 0.5),
        pct(&bound, 0.9),
        pct(&bound, 1.0),
    );
    for (p, _) in &nodes {
        p.shutdown().await;
    }
}

fn main() {
    let sizes: Vec<usize> = match std::env::args().skip(1).find_map(|a| a.parse().ok()) {
        Some(n) => vec![n],
        None => vec![100, 1000, 10_000],
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    for n in sizes {
        rt.block_on(simulate(n));
    }
}
