//! # toy-testing — the workspace's test kit
//!
//! What the tests of several crates need and used to write each for
//! itself: waiting for a condition under a generous deadline (never a fixed
//! sleep: tests must pass on a loaded two-core machine), and the
//! Messaging → P2p → Gossip stack built in one call, over the in-memory
//! network or TCP; with the `chain` feature, chain fixtures (module `chain`: a
//! chain on the test preset, a chain node on any gossip network, the
//! in-memory gossip double included). Not published; a dev-dependency
//! only.
//!
//! ## Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use toy_testing::{mem_stack, p2p_config, wait_until};
//! use toy_p2p::PeerNetwork;
//!
//! let net = toy_net::MemoryNetwork::new();
//! let a = mem_stack(&net, "a:1", p2p_config(4, vec![], 1).build().expect("config")).await;
//! let b = mem_stack(&net, "b:1", p2p_config(4, vec!["a:1".into()], 2).build().expect("config")).await;
//! wait_until("b peers with a", || b.0.peers().len() == 1).await;
//! # a.0.shutdown().await;
//! # b.0.shutdown().await;
//! # }
//! ```

#[cfg(feature = "chain")]
pub mod chain;

use std::future::Future;
use std::time::Duration;

use toy_gossip::Gossip;
use toy_msg::{Messaging, Messenger};
use toy_net::{MemoryNetwork, MemoryTransport, TcpTransport};
use toy_p2p::{Config, P2p};

/// How long any wait of these tests may take before it fails: 90 s, far
/// beyond what the conditions need on an idle machine.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// A peer manager and flood gossip over the in-memory network.
pub type MemStack = (P2p<Messaging<MemoryTransport>>, Gossip<P2p<Messaging<MemoryTransport>>>);
/// The flood gossip of a [`TcpStack`].
pub type TcpGossip = Gossip<P2p<Messaging<TcpTransport>>>;

/// A p2p node and its flood gossip over TCP.
pub type TcpStack = (P2p<Messaging<TcpTransport>>, TcpGossip);

/// Waits until `cond` holds, checking every 20 ms; fails the test naming
/// `what` after [`DEADLINE`].
pub async fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_within(DEADLINE, what, cond).await;
}

/// [`wait_until`] with a deadline of its own.
pub async fn wait_until_within(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + deadline;
    while !cond() {
        assert!(tokio::time::Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`wait_until`] for a condition that has to await (a request, say),
/// checked every `every`.
pub async fn wait_until_async<F, Fut>(deadline: Duration, every: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    while !cond().await {
        assert!(tokio::time::Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

/// Peering settings fit for tests: a fast tick (100 ms), a short trim grace
/// (1 s), a fixed seed.
pub fn p2p_config(max_peers: usize, bootstrap: Vec<String>, seed: u64) -> toy_p2p::ConfigBuilder {
    Config::builder()
        .max_peers(max_peers)
        .bootstrap(bootstrap)
        .seed(seed)
        .tick(Duration::from_millis(100))
        .trim_grace(Duration::from_secs(1))
}

/// Messaging, peering and flood gossip on a new endpoint of `net`,
/// listening at `addr`.
pub async fn mem_stack(net: &MemoryNetwork, addr: &str, config: Config) -> MemStack {
    let (t, ev) = net.endpoint(toy_net::Config::default());
    let (msg, events) = Messaging::new(t, ev, toy_msg::Config::default());
    msg.listen(addr).await.expect("listen");
    let p2p = P2p::start(msg, events, config).expect("p2p");
    let gossip = Gossip::new(p2p.clone(), Default::default());
    (p2p, gossip)
}

/// The same over TCP, listening at `listen` (`127.0.0.1:0` for any port).
pub async fn tcp_stack(listen: &str, config: Config) -> TcpStack {
    let (t, ev) = TcpTransport::new(toy_net::Config::default());
    let (msg, events) = Messaging::new(t, ev, toy_msg::Config::default());
    msg.listen(listen).await.expect("listen");
    let p2p = P2p::start(msg, events, config).expect("p2p");
    let gossip = Gossip::new(p2p.clone(), Default::default());
    (p2p, gossip)
}
