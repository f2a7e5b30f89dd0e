//! Helpers for the gossip tests: nodes over the in-memory network or TCP.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use toy_gossip::Gossip;
use toy_msg::{Messaging, Messenger};
use toy_net::{MemoryNetwork, MemoryTransport, TcpTransport};
use toy_p2p::{Config, P2p, PeerId, PeerNetwork};

/// Every wait in these tests ends by this deadline.
pub const DEADLINE: Duration = Duration::from_secs(90);

pub type MemNode = (P2p<Messaging<MemoryTransport>>, Gossip<P2p<Messaging<MemoryTransport>>>);
pub type TcpNode = (P2p<Messaging<TcpTransport>>, Gossip<P2p<Messaging<TcpTransport>>>);

/// Waits until `cond` holds, checking every 20 ms, failing after [`DEADLINE`].
pub async fn wait_until<F: FnMut() -> bool>(what: &str, mut cond: F) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Same, for an async condition.
pub async fn wait_until_async<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn p2p_config(max_peers: usize, bootstrap: Vec<String>, seed: u64) -> toy_p2p::ConfigBuilder {
    Config::builder()
        .max_peers(max_peers)
        .bootstrap(bootstrap)
        .seed(seed)
        .tick(Duration::from_millis(100))
        .trim_grace(Duration::from_secs(1))
}

pub async fn mem_node(net: &MemoryNetwork, addr: &str, config: Config) -> MemNode {
    let (t, ev) = net.endpoint(toy_net::Config::default());
    let (msg, events) = Messaging::new(t, ev, toy_msg::Config::default());
    msg.listen(addr).await.expect("listen");
    let p2p = P2p::start(msg, events, config).expect("p2p");
    let gossip = Gossip::new(p2p.clone(), Default::default());
    (p2p, gossip)
}

pub async fn tcp_node(listen: &str, config: toy_p2p::ConfigBuilder) -> TcpNode {
    let (t, ev) = TcpTransport::new(toy_net::Config::default());
    let (msg, events) = Messaging::new(t, ev, toy_msg::Config::default());
    msg.listen(listen).await.expect("listen");
    let p2p = P2p::start(msg, events, config.build().expect("config")).expect("p2p");
    let gossip = Gossip::new(p2p.clone(), Default::default());
    (p2p, gossip)
}

/// Hop distances from `from` over the current peer graph.
pub fn distances<P: PeerNetwork>(nodes: &[(String, &P)], from: &str) -> HashMap<String, usize> {
    let graph: HashMap<&str, Vec<PeerId>> = nodes.iter().map(|(a, p)| (a.as_str(), p.peers())).collect();
    let mut dist = HashMap::from([(from.to_owned(), 0usize)]);
    let mut queue = VecDeque::from([from.to_owned()]);
    let mut seen = HashSet::from([from.to_owned()]);
    while let Some(a) = queue.pop_front() {
        let d = dist[&a];
        for p in graph.get(a.as_str()).into_iter().flatten() {
            if seen.insert(p.0.clone()) {
                dist.insert(p.0.clone(), d + 1);
                queue.push_back(p.0.clone());
            }
        }
    }
    dist
}
