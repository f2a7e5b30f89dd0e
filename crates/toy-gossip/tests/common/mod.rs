//! Helpers for the gossip tests: nodes over the in-memory network or TCP.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use toy_net::MemoryNetwork;
use toy_p2p::{Config, PeerId, PeerNetwork};

pub use toy_testing::{DEADLINE, MemStack as MemNode, TcpStack as TcpNode, p2p_config, wait_until};

/// [`wait_until`] for an async condition, checked every 20 ms.
pub async fn wait_until_async<F, Fut>(what: &str, cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    toy_testing::wait_until_async(DEADLINE, Duration::from_millis(20), what, cond).await;
}

pub async fn mem_node(net: &MemoryNetwork, addr: &str, config: Config) -> MemNode {
    toy_testing::mem_stack(net, addr, config).await
}

pub async fn tcp_node(listen: &str, config: toy_p2p::ConfigBuilder) -> TcpNode {
    toy_testing::tcp_stack(listen, config.build().expect("config")).await
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
