//! The gossip conformance suite, run against flood gossip, relay gossip
//! (both over the in-memory transport, the real stack above it) and the
//! in-memory double.

use std::sync::Arc;

use async_trait::async_trait;
use toy_gossip::conformance::Harness;
use toy_gossip::relay::{RelayGossip, RelayServer};
use toy_gossip::{GossipNetwork, MemoryGossipNet, PeerId};
use toy_net::MemoryNetwork;
use toy_p2p::PeerNetwork;
use toy_testing::{mem_stack, p2p_config};

/// Flood gossip: node 0 is every other's bootstrap.
struct Flood;

#[async_trait]
impl Harness for Flood {
    async fn nodes(&self, n: usize) -> Vec<Arc<dyn GossipNetwork>> {
        let net = MemoryNetwork::new();
        let mut out: Vec<Arc<dyn GossipNetwork>> = Vec::new();
        for i in 0..n {
            let boot = if i == 0 { vec![] } else { vec!["flood0:1".to_owned()] };
            let (_, gossip) =
                mem_stack(&net, &format!("flood{i}:1"), p2p_config(8, boot, i as u64).build().expect("config")).await;
            out.push(Arc::new(gossip));
        }
        out
    }
}

/// Relay gossip: a relay node, and `n` clients of it.
struct Relay;

#[async_trait]
impl Harness for Relay {
    async fn nodes(&self, n: usize) -> Vec<Arc<dyn GossipNetwork>> {
        let net = MemoryNetwork::new();
        let (relay, _) = mem_stack(&net, "relay:1", p2p_config(64, vec![], 0).build().expect("config")).await;
        RelayServer::install(&relay).expect("relay server");
        let mut out: Vec<Arc<dyn GossipNetwork>> = Vec::new();
        for i in 0..n {
            let config = p2p_config(1, vec![relay.local_addr()], 1 + i as u64).build().expect("config");
            let (p2p, _) = mem_stack(&net, &format!("client{i}:1"), config).await;
            let gossip = RelayGossip::new(p2p, PeerId(relay.local_addr()), Default::default()).expect("relay gossip");
            out.push(Arc::new(gossip));
        }
        out
    }
}

/// The in-memory double.
struct Double;

#[async_trait]
impl Harness for Double {
    async fn nodes(&self, n: usize) -> Vec<Arc<dyn GossipNetwork>> {
        let net = MemoryGossipNet::new();
        (0..n).map(|i| Arc::new(net.join(&format!("double{i}"))) as Arc<dyn GossipNetwork>).collect()
    }
}

toy_gossip::gossip_conformance_suite!(flood, Flood);
toy_gossip::gossip_conformance_suite!(relay, Relay);
toy_gossip::gossip_conformance_suite!(double, Double);
