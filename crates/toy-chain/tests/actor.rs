//! The chain actor's promises: an answered write is durable (group commit
//! never answers early), writes queued together share durable commits, and
//! a failed commit reaches every writer that waited for it.

mod common;

use std::future::Future;
use std::sync::atomic::Ordering;

use common::*;
use toy_chain::actor::{ActorConfig, ChainHandle};
use toy_chain::{Block, ChainError, InsertOutcome, Store};

/// `n` blocks on the test chain's genesis, built on a scratch chain.
fn blocks(n: usize) -> Vec<Block> {
    let mut scratch = chain();
    let mut out = Vec::new();
    for i in 0..n {
        let tip = scratch.tip().hash;
        let b = child(&scratch, tip, vec![], miner(), 1_000 + i as u64);
        scratch.insert_at(b.clone(), NOW).expect("insert");
        out.push(b);
    }
    out
}

/// What survives a crash now: the store reopened at its last durable point.
async fn after_crash(handle: &ChainHandle<FailingStore>) -> Option<toy_chain::Hash> {
    let mut store = handle.read(|c| c.store().clone()).await.expect("read");
    store.reopen().expect("reopen");
    store.tip().expect("tip")
}

/// Runs `jobs` with all of them queued before the actor takes the first: a
/// gate job holds the actor while `jobs` is polled once (every send lands),
/// then lets it go.
async fn queued_together<T>(handle: &ChainHandle<FailingStore>, jobs: impl Future<Output = T>) -> T {
    let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let gate = handle.read(move |_| {
        let _ = held_tx.send(());
        let _ = go_rx.recv();
    });
    let mut gate = std::pin::pin!(gate);
    tokio::select! {
        _ = held_rx => {}
        _ = gate.as_mut() => panic!("the gate ended before holding"),
    }
    let mut jobs = std::pin::pin!(jobs);
    let first = futures::poll!(jobs.as_mut());
    assert!(first.is_pending(), "queued, not answered");
    go_tx.send(()).expect("release");
    gate.await.expect("gate");
    jobs.await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_write_survives_a_crash_and_queued_writes_share_commits() {
    let store = FailingStore::default();
    let commits = store.group_commits.clone();
    let handle = ChainHandle::spawn(open(store)).expect("actor");
    let blocks = blocks(40);
    let inserts = futures::future::join_all(blocks.iter().map(|b| handle.insert(b.clone(), Some("peer".into()))));
    let answers = queued_together(&handle, inserts).await;
    for a in &answers {
        assert!(matches!(a, Ok(InsertOutcome::Connected { .. })), "{a:?}");
    }
    assert_eq!(after_crash(&handle).await, blocks.last().map(Block::hash), "every answered block is on disk");
    let grouped = commits.load(Ordering::SeqCst);
    assert!(grouped >= 1 && grouped < blocks.len(), "{grouped} durable commits for {} writes", blocks.len());
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_group_commit_each_write_is_durable_on_its_own() {
    let store = FailingStore::default();
    let commits = store.group_commits.clone();
    let config = ActorConfig { group_commit: false, ..Default::default() };
    let handle = ChainHandle::spawn_with(open(store), config).expect("actor");
    let blocks = blocks(10);
    let inserts = futures::future::join_all(blocks.iter().map(|b| handle.insert(b.clone(), None)));
    let answers = queued_together(&handle, inserts).await;
    assert!(answers.iter().all(|a| matches!(a, Ok(InsertOutcome::Connected { .. }))));
    assert_eq!(commits.load(Ordering::SeqCst), 0, "nothing was relaxed");
    assert_eq!(after_crash(&handle).await, blocks.last().map(Block::hash));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_group_commit_reaches_every_writer_that_waited_for_it() {
    let store = FailingStore::default();
    let handle = ChainHandle::spawn(open(store.clone())).expect("actor");
    let blocks = blocks(20);
    // The writes go through; the fsync that should make them durable fails.
    store.fail_fsync.store(true, Ordering::SeqCst);
    let inserts = futures::future::join_all(blocks.iter().map(|b| handle.insert(b.clone(), None)));
    let answers = queued_together(&handle, inserts).await;
    assert!(
        answers.iter().all(|a| matches!(a, Err(ChainError::Store(_)))),
        "every writer hears of the failed commit: {answers:?}"
    );
    assert_eq!(after_crash(&handle).await, Some(toy_chain::ChainParams::test().genesis_hash()), "nothing durable");
    assert!(handle.snapshot().store_failure.is_some(), "the failure is published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_work_goes_before_a_full_network_lane() {
    // A peer's jobs fill the network lane; the node's own (its miner, its
    // API) take the local lane and are served first.
    let handle = ChainHandle::spawn(open(FailingStore::default())).expect("actor");
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let network: Vec<_> = (0..32)
        .map(|i| {
            let order = order.clone();
            handle.read(move |_| order.lock().expect("order").push(format!("network {i}")))
        })
        .collect();
    let local_lane = handle.local();
    let local = {
        let order = order.clone();
        local_lane.read(move |_| order.lock().expect("order").push("local".to_owned()))
    };
    let both = futures::future::join(futures::future::join_all(network), local);
    let (net, loc) = queued_together(&handle, both).await;
    assert!(net.iter().all(Result::is_ok) && loc.is_ok());
    let order = order.lock().expect("order").clone();
    let at = order.iter().position(|o| o == "local").expect("ran");
    assert!(at <= 1, "the local job waited behind {at} network jobs: {order:?}");
}
