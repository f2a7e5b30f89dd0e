//! The gossip conformance suite: the same checks for every
//! [`GossipNetwork`] — flood gossip, relay gossip and the in-memory double.
//!
//! An implementation provides a [`Harness`] that builds a few connected
//! nodes, then instantiates the suite with [`gossip_conformance_suite!`](crate::gossip_conformance_suite):
//!
//! ```no_run
//! struct Double;
//! #[async_trait::async_trait]
//! impl toy_gossip::conformance::Harness for Double {
//!     async fn nodes(&self, n: usize) -> Vec<std::sync::Arc<dyn toy_gossip::GossipNetwork>> {
//!         let net = toy_gossip::MemoryGossipNet::new();
//!         (0..n).map(|i| std::sync::Arc::new(net.join(&format!("n{i}"))) as _).collect()
//!     }
//! }
//! toy_gossip::gossip_conformance_suite!(double, Double);
//! # fn main() {}
//! ```
//!
//! What every implementation promises the layer above: a broadcast reaches
//! every other node's handler exactly once and intact, never its
//! originator's; a kind nobody handles is dropped without harm; a handler
//! or answerer is registered once per kind; a search gets the answer a node
//! holds, and a search nobody answers ends with one `None` at its timeout.
//! Subscriptions may take a moment to reach the network (the relay's do),
//! so the checks first wait until a warm-up message gets through; every
//! wait has a generous deadline ([`DEADLINE`]) and nothing depends on
//! timing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Error, Flow, GossipNetwork, Verdict, answerer_fn, gossip_handler_fn};

/// The longest any check waits.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Builds nodes of one implementation.
#[async_trait]
pub trait Harness: Send + Sync {
    /// `n` nodes, each able to reach every other through the network
    /// (directly or through a relay), peered or about to be.
    async fn nodes(&self, n: usize) -> Vec<Arc<dyn GossipNetwork>>;
}

/// What each node's handler of one kind received, by node index.
type Inbox = Arc<Mutex<Vec<Vec<Bytes>>>>;

fn inbox(n: usize) -> Inbox {
    Arc::new(Mutex::new(vec![Vec::new(); n]))
}

fn received(inbox: &Inbox) -> Vec<Vec<Bytes>> {
    inbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// Registers on every node a handler of `kind` that records into `inbox`
/// and returns `verdict`.
fn record_kind(nodes: &[Arc<dyn GossipNetwork>], kind: &str, verdict: Verdict, inbox: &Inbox) {
    for (i, node) in nodes.iter().enumerate() {
        let inbox = inbox.clone();
        let handler = gossip_handler_fn(move |_, m| {
            inbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[i].push(m);
            async move { verdict }
        });
        if let Err(e) = node.register_handler(kind, handler) {
            panic!("registering {kind} on node {i}: {e}");
        }
    }
}

/// Polls `cond` every 20 ms until it holds, or panics naming `what`.
async fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(tokio::time::Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Broadcasts distinct warm-up messages of `kind` from node 0 until every
/// other node has one: the network (subscriptions, peerings) is ready.
async fn warm_up(nodes: &[Arc<dyn GossipNetwork>], kind: &str, inbox: &Inbox) {
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut n = 0u64;
    loop {
        if received(inbox).iter().skip(1).all(|got| !got.is_empty()) {
            return;
        }
        assert!(tokio::time::Instant::now() < until, "the network never got ready for {kind}");
        n += 1;
        let _ = nodes[0].broadcast(kind, Bytes::from(format!("warm-up {n}")));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every broadcast reaches every other node exactly once, intact, and never
/// its originator.
pub async fn broadcast_reaches_every_other_node_once(h: &impl Harness) {
    let nodes = h.nodes(3).await;
    let inbox = inbox(nodes.len());
    record_kind(&nodes, "conf", Verdict::Accept, &inbox);
    warm_up(&nodes, "conf", &inbox).await;
    let before = received(&inbox);
    let messages: Vec<Bytes> = (0..20).map(|i| Bytes::from(format!("message {i}"))).collect();
    for (i, m) in messages.iter().enumerate() {
        // From every node in turn.
        nodes[i % nodes.len()].broadcast("conf", m.clone()).expect("broadcast");
    }
    wait("every message at every other node", || {
        let got = received(&inbox);
        messages
            .iter()
            .enumerate()
            .all(|(i, m)| got.iter().enumerate().filter(|(n, _)| *n != i % nodes.len()).all(|(_, g)| g.contains(m)))
    })
    .await;
    // A moment for any duplicate to arrive: a later warm-up round trip.
    let marker = inbox_marker(&nodes, &inbox).await;
    let got = received(&inbox);
    for (n, g) in got.iter().enumerate() {
        let fresh = &g[before[n].len()..];
        for (i, m) in messages.iter().enumerate() {
            let count = fresh.iter().filter(|x| *x == m).count();
            let want = usize::from(i % nodes.len() != n);
            assert_eq!(count, want, "node {n} got message {i} {count} times (marker {marker})");
        }
    }
}

/// Sends one more message from every node and waits until it arrived
/// everywhere else: anything sent before it has had a full round to arrive.
async fn inbox_marker(nodes: &[Arc<dyn GossipNetwork>], inbox: &Inbox) -> usize {
    let marks: Vec<Bytes> = (0..nodes.len()).map(|i| Bytes::from(format!("marker from {i}"))).collect();
    for (i, m) in marks.iter().enumerate() {
        nodes[i].broadcast("conf", m.clone()).expect("marker");
    }
    wait("the markers", || {
        let got = received(inbox);
        marks
            .iter()
            .enumerate()
            .all(|(i, m)| got.iter().enumerate().filter(|(n, _)| *n != i).all(|(_, g)| g.contains(m)))
    })
    .await;
    marks.len()
}

/// A kind nobody handles is dropped; the network goes on.
pub async fn an_unhandled_kind_is_dropped_without_harm(h: &impl Harness) {
    let nodes = h.nodes(2).await;
    let inbox = inbox(nodes.len());
    record_kind(&nodes, "known", Verdict::Accept, &inbox);
    warm_up(&nodes, "known", &inbox).await;
    nodes[0].broadcast("nobody-handles-this", Bytes::from_static(b"x")).expect("broadcast");
    nodes[0].broadcast("known", Bytes::from_static(b"after")).expect("broadcast");
    wait("the known kind still arrives", || received(&inbox)[1].iter().any(|m| m.as_ref() == b"after")).await;
}

/// A handler, and an answerer, is registered once per kind.
pub async fn a_kind_is_registered_once(h: &impl Harness) {
    let nodes = h.nodes(1).await;
    let handler = || gossip_handler_fn(|_, _| async { Verdict::Ignore });
    nodes[0].register_handler("once", handler()).expect("first");
    assert!(matches!(nodes[0].register_handler("once", handler()), Err(Error::DuplicateHandler(_))));
    let answerer = || answerer_fn(|_| async { None });
    nodes[0].register_search_answerer("once", answerer()).expect("first");
    assert!(matches!(nodes[0].register_search_answerer("once", answerer()), Err(Error::DuplicateHandler(_))));
}

/// A search gets the answer a node holds; a search nobody answers ends with
/// one `None` at its timeout.
pub async fn search_finds_what_a_node_holds(h: &impl Harness) {
    let nodes = h.nodes(3).await;
    let store: HashMap<Bytes, Bytes> = [(Bytes::from_static(b"key"), Bytes::from_static(b"value"))].into();
    nodes[2]
        .register_search_answerer("conf-obj", answerer_fn(move |q| std::future::ready(store.get(&q).cloned())))
        .expect("answerer");
    // Asked until it works: subscriptions and peerings may still be on the way.
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut got = Vec::new();
        nodes[0]
            .search("conf-obj", Bytes::from_static(b"key"), Duration::from_secs(2), &mut |a| {
                got.push(a);
                Flow::Done
            })
            .await
            .expect("search");
        if got == [Some(Bytes::from_static(b"value"))] {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "no answer to a held key: {got:?}");
    }
    let mut got = Vec::new();
    nodes[0]
        .search("conf-obj", Bytes::from_static(b"missing"), Duration::from_millis(500), &mut |a| {
            got.push(a);
            Flow::Continue
        })
        .await
        .expect("search");
    assert_eq!(got, vec![None], "one None at the timeout, nothing else");
}

/// Instantiates the suite as a module of tests named `$name`, each building
/// its nodes with `$harness` (an expression implementing [`Harness`]).
#[macro_export]
macro_rules! gossip_conformance_suite {
    ($name:ident, $harness:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn broadcast_reaches_every_other_node_once() {
                $crate::conformance::broadcast_reaches_every_other_node_once(&$harness).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_unhandled_kind_is_dropped_without_harm() {
                $crate::conformance::an_unhandled_kind_is_dropped_without_harm(&$harness).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_kind_is_registered_once() {
                $crate::conformance::a_kind_is_registered_once(&$harness).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn search_finds_what_a_node_holds() {
                $crate::conformance::search_finds_what_a_node_holds(&$harness).await;
            }
        }
    };
}
