//! Chain fixtures: a chain opened the way every test opens one, and a chain
//! node (actor and networking) on any gossip network.

use std::sync::Arc;

use toy_chain::network::{ChainHandle, ChainNode, GossipNetwork};
use toy_chain::{Chain, ChainParams, K256Verifier, MemoryStore, SigCache, Store};

/// A chain with `params` over `store`: the k256 verifier, a fresh
/// signature cache, the default tree limits.
///
/// # Panics
/// When the store belongs to another chain or fails (a test's mistake).
pub fn open<S: Store>(params: ChainParams, store: S) -> Chain<S> {
    Chain::open(params, store, Arc::new(K256Verifier::new()), Arc::new(SigCache::default()), Default::default())
        .expect("open the chain")
}

/// A chain on the test preset (trivial proof of work) in memory.
pub fn test_chain() -> Chain<MemoryStore> {
    open(ChainParams::test(), MemoryStore::new())
}

/// `chain` on its own actor, with its networking installed on `gossip`.
///
/// # Panics
/// When the actor cannot start or a chain kind is already registered.
pub fn chain_node<S: Store, G: GossipNetwork + ?Sized>(chain: Chain<S>, gossip: Arc<G>) -> ChainNode<S, G> {
    let handle = ChainHandle::spawn(chain).expect("start the chain actor");
    ChainNode::install(handle, gossip).expect("install the chain's networking")
}

/// A test-preset chain node named `name` on the in-memory gossip double:
/// the chain layer with no transport, messaging or peering beneath it.
pub fn memory_chain_node(
    net: &toy_gossip::MemoryGossipNet,
    name: &str,
) -> ChainNode<MemoryStore, toy_gossip::MemoryGossip> {
    chain_node(test_chain(), Arc::new(net.join(name)))
}
