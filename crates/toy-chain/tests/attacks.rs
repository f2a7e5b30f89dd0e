//! Attacks on the block tree by a peer who has read the source, each named
//! after what it tries. In every case the genuine chain still connects and
//! the node follows the most-work honest chain (SPEC §3, issue "consensus
//! hardening").

mod common;

use common::*;
use toy_chain::{
    Block, BlockError, Chain, ChainParams, Hash, InsertOutcome, Keypair, MemoryStore, Retarget, Signature, Store,
    Transaction, TreeConfig, types::merkle_root,
};

/// An honest block on `parent` in `c` with `n` transfers from wallet 0
/// starting at nonce `first_nonce`.
fn honest(c: &Chain<impl Store>, parent: Hash, first_nonce: u64, n: u64) -> Block {
    let txs = (0..n).map(|i| transfer(&wallet(0), miner(), 10 + i, 1, first_nonce + i)).collect();
    child(c, parent, txs, miner(), 1000)
}

/// Asserts the victim refuses `mutated` without remembering it, then takes
/// the genuine block and a child of it.
fn genuine_still_connects(mutated: Block, genuine: Block) {
    assert_eq!(mutated.hash(), genuine.hash(), "the attack keeps the genuine header");
    let mut victim = chain();
    let out = victim.insert_at(mutated, NOW).expect("no storage error");
    assert!(matches!(out, InsertOutcome::Malformed { .. }), "{out:?}");
    assert!(!victim.is_invalid(&genuine.hash()), "the genuine hash is not poisoned");
    let out = victim.insert_at(genuine.clone(), NOW).expect("ok");
    assert!(matches!(out, InsertOutcome::Connected { height: 1, .. }), "{out:?}");
    let next = honest(&victim, genuine.hash(), genuine.txs.len() as u64, 1);
    assert!(matches!(victim.insert_at(next, NOW).expect("ok"), InsertOutcome::Connected { height: 2, .. }));
}

#[test]
fn replaced_body_does_not_poison_the_genuine_block() {
    let c = chain();
    let genuine = honest(&c, c.tip().hash, 0, 2);
    let mut mutated = genuine.clone();
    mutated.txs = vec![transfer(&wallet(1), miner(), 5, 1, 0)];
    genuine_still_connects(mutated, genuine);
}

#[test]
fn repeated_last_transaction_does_not_poison_the_genuine_block() {
    // CVE-2012-2459: [a, b, c] and [a, b, c, c] shared a root when the odd
    // leaf was paired with itself.
    let c = chain();
    let genuine = honest(&c, c.tip().hash, 0, 3);
    let mut mutated = genuine.clone();
    mutated.txs.push(genuine.txs[2].clone());
    assert_ne!(
        merkle_root(mutated.txs.iter().map(Transaction::wtxid)),
        genuine.header.merkle_root,
        "the repeated leaf changes the root"
    );
    genuine_still_connects(mutated, genuine);
}

#[test]
fn swapped_signature_does_not_poison_the_genuine_block() {
    // The id leaves out the signature; the Merkle leaf (wtxid) does not.
    let c = chain();
    let genuine = honest(&c, c.tip().hash, 0, 2);
    let mut mutated = genuine.clone();
    mutated.txs[1].signature = wallet(3).sign_hash(&mutated.txs[1].id());
    assert_eq!(mutated.txs[1].id(), genuine.txs[1].id());
    genuine_still_connects(mutated, genuine);
}

#[test]
fn mutated_orphan_does_not_poison_the_genuine_block() {
    // The victim is behind: the attacker sends a mutated copy of a block
    // whose parent the victim lacks.
    let mut honest_node = chain();
    let b1 = honest(&honest_node, honest_node.tip().hash, 0, 1);
    honest_node.insert_at(b1.clone(), NOW).expect("b1");
    let b2 = honest(&honest_node, b1.hash(), 1, 2);
    let mut mutated = b2.clone();
    mutated.txs[0].signature = Signature::EMPTY;
    let mut victim = chain();
    assert!(matches!(victim.insert_at(mutated, NOW).expect("ok"), InsertOutcome::Malformed { .. }));
    assert_eq!(victim.orphan_count(), 0, "a mutated body is not even kept as an orphan");
    assert!(matches!(victim.insert_at(b2.clone(), NOW).expect("ok"), InsertOutcome::Orphan { .. }));
    assert!(matches!(victim.insert_at(b1, NOW).expect("ok"), InsertOutcome::Connected { .. }));
    assert_eq!(victim.tip().hash, b2.hash(), "the genuine orphan connected");
}

#[test]
fn side_branch_with_swapped_signature_does_not_break_the_reorg_to_the_honest_branch() {
    // The victim mines its own short chain; the honest network's branch
    // overtakes it. The attacker first offers the honest branch's block with
    // a swapped signature, hoping it sits under the genuine hash.
    let mut victim = chain();
    let g = victim.tip().hash;
    let mine_a1 = child(&victim, g, vec![], Keypair::from_seed(b"victim").address(), 1000);
    let a1 = mine_a1.hash();
    victim.insert_at(mine_a1, NOW).expect("a1");
    let a2 = child(&victim, a1, vec![], Keypair::from_seed(b"victim").address(), 1000);
    victim.insert_at(a2, NOW).expect("a2");

    let mut network = chain();
    let h1 = honest(&network, g, 0, 2);
    network.insert_at(h1.clone(), NOW).expect("h1");
    let h2 = honest(&network, h1.hash(), 2, 1);
    network.insert_at(h2.clone(), NOW).expect("h2");
    let h3 = honest(&network, h2.hash(), 3, 1);

    let mut mutated = h1.clone();
    mutated.txs[0].signature = wallet(5).sign_hash(&mutated.txs[0].id());
    assert!(matches!(victim.insert_at(mutated, NOW).expect("ok"), InsertOutcome::Malformed { .. }));
    assert!(!victim.contains(&h1.hash()), "the mutated copy is not stored under the genuine hash");
    assert!(matches!(victim.insert_at(h1, NOW).expect("ok"), InsertOutcome::SideBranch { .. }));
    assert!(matches!(victim.insert_at(h2, NOW).expect("ok"), InsertOutcome::SideBranch { .. }));
    let out = victim.insert_at(h3.clone(), NOW).expect("ok");
    assert!(matches!(out, InsertOutcome::Reorganised { disconnected: 2, connected: 3, .. }), "{out:?}");
    assert_eq!(victim.tip().hash, h3.hash(), "the victim follows the most-work honest chain");
}

#[test]
fn block_with_a_timestamp_ahead_of_the_victims_clock_is_not_remembered() {
    // Sent a few seconds early to one victim, it must not fork the victim off
    // once the rest of the network builds on it.
    let mut victim = chain();
    let g = victim.tip().hash;
    let drift = victim.params().max_future_drift_ms;
    let mut early = unmined(&victim, g, vec![], miner(), 1000);
    early.header.timestamp_ms = NOW + drift + 3_000;
    let early = mine(early);
    assert!(matches!(victim.insert_at(early.clone(), NOW).expect("ok"), InsertOutcome::TooEarly { .. }));
    assert!(!victim.is_invalid(&early.hash()));
    assert!(matches!(victim.insert_at(early, NOW + 3_000).expect("ok"), InsertOutcome::Connected { .. }));
}

#[test]
fn failing_store_changes_nothing_and_the_block_connects_later() {
    let store = FailingStore::default();
    let mut c = open(store.clone());
    let g = c.tip().hash;
    let tx = transfer(&wallet(0), miner(), 10, 1, 0);
    c.add_tx(tx.clone(), NOW).expect("mempool");
    let b1 = child(&c, g, vec![tx.clone()], miner(), 1000);
    let (state, tip) = (c.state().clone(), c.tip());
    for allowed in 0..2 {
        // Fail at the block write, then at the commit after it.
        store.fail_after(allowed);
        assert!(c.insert_at(b1.clone(), NOW).is_err(), "the disk is full");
        assert_eq!(c.state(), &state, "state unchanged");
        assert_eq!(c.tip(), tip, "tip unchanged");
        assert!(c.mempool().contains(&tx.id()), "mempool unchanged");
        assert!(!c.is_invalid(&b1.hash()) && c.header(&b1.hash()).is_none(), "index unchanged");
    }
    store.heal();
    c.recover_store().expect("the store recovers");
    assert!(matches!(c.insert_at(b1, NOW).expect("ok"), InsertOutcome::Connected { height: 1, .. }));
    assert!(!c.mempool().contains(&tx.id()));
    assert_eq!(c.account(&miner()).balance, 10_000 + 1 + 10);
}

#[test]
fn failing_store_during_a_reorg_resumes_to_the_best_chain() {
    let store = FailingStore::default();
    let mut c = open(store.clone());
    let g = c.tip().hash;
    let a1 = child(&c, g, vec![], miner(), 1000);
    c.insert_at(a1.clone(), NOW).expect("a1");
    let a2 = child(&c, a1.hash(), vec![], miner(), 1000);
    c.insert_at(a2.clone(), NOW).expect("a2");
    let other = Keypair::from_seed(b"other").address();
    let b1 = child(&c, g, vec![transfer(&wallet(0), other, 7, 0, 0)], other, 1001);
    c.insert_at(b1.clone(), NOW).expect("b1");
    let b2 = child(&c, b1.hash(), vec![], other, 1001);
    c.insert_at(b2.clone(), NOW).expect("b2");
    let b3 = child(&c, b2.hash(), vec![], other, 1001);
    let state = c.state().clone();
    // The block is written, then the first disconnect fails.
    store.fail_after(1);
    assert!(c.insert_at(b3.clone(), NOW).is_err());
    assert_eq!(c.tip().hash, a2.hash(), "still on the old chain");
    assert_eq!(c.state(), &state, "with its state");
    store.heal();
    c.recover_store().expect("the store recovers");
    // The next insert finishes the reorganisation first.
    assert_eq!(c.insert_at(b3.clone(), NOW).expect("ok"), InsertOutcome::Duplicate);
    assert_eq!(c.tip().hash, b3.hash());
    assert_eq!(c.account(&other).balance, 3 * 10_000 + 7);
}

/// Builds the side branch b1..b5 (b3 spends a nonce wallet 0 never reached)
/// against a chain a1..a4 and feeds both to `c` in the same order.
fn feed_failing_reorg<S: Store>(c: &mut Chain<S>) -> (Vec<Block>, Vec<Block>) {
    let g = c.tip().hash;
    let mut a = Vec::new();
    let mut parent = g;
    for _ in 0..4 {
        let b = child(c, parent, vec![], miner(), 1000);
        parent = b.hash();
        c.insert_at(b.clone(), NOW).expect("a");
        a.push(b);
    }
    let other = Keypair::from_seed(b"other").address();
    let mut b = Vec::new();
    let mut parent = g;
    for i in 0..5u64 {
        let txs = if i == 2 { vec![transfer(&wallet(0), other, 1, 0, 9)] } else { vec![] };
        let blk = child(c, parent, txs, other, 1001);
        parent = blk.hash();
        b.push(blk.clone());
        let out = c.insert_at(blk, NOW).expect("b");
        if i < 4 {
            assert!(matches!(out, InsertOutcome::SideBranch { .. }), "b{}: {out:?}", i + 1);
        } else {
            assert!(matches!(out, InsertOutcome::Invalid { .. }), "b5: {out:?}");
        }
    }
    (a, b)
}

#[test]
fn failed_reorg_lands_on_the_best_valid_chain_and_a_restart_agrees() {
    let mut node = chain();
    let (a, b) = feed_failing_reorg(&mut node);
    assert_eq!(node.tip().hash, a[3].hash(), "the old chain has more work than the valid prefix b1-b2");
    for blk in &b[2..] {
        assert!(node.is_invalid(&blk.hash()));
    }
    // A second node fed the same blocks, then restarted from its store.
    let mut other = chain();
    feed_failing_reorg(&mut other);
    let reopened = open(other.store().clone());
    assert_eq!(reopened.tip(), node.tip(), "the restarted node agrees");
    assert_eq!(reopened.state(), node.state());
}

#[test]
fn resumed_reorg_settles_on_the_valid_prefix_when_it_has_more_work() {
    // A crash (here: a store reopened) in the middle of a reorg whose branch
    // turns out invalid past the point where it already has more work.
    let mut c = chain();
    let g = c.tip().hash;
    let a1 = child(&c, g, vec![], miner(), 1000);
    c.insert_at(a1.clone(), NOW).expect("a1");
    let other = Keypair::from_seed(b"other").address();
    let mut builder = chain();
    let mut branch = Vec::new();
    let mut parent = g;
    for i in 0..4u64 {
        let txs = if i == 3 { vec![transfer(&wallet(0), other, 1, 0, 9)] } else { vec![] };
        let blk = child(&builder, parent, txs, other, 1001);
        parent = blk.hash();
        if i < 3 {
            builder.insert_at(blk.clone(), NOW).expect("valid prefix");
        }
        branch.push(blk);
    }
    // Stored behind the chain's back: every block of the branch is in the
    // store, the tip still a1 (as after a crash mid-reorg).
    let mut store = c.store().clone();
    for blk in &branch {
        store.put_block(&blk.hash(), blk).expect("put");
    }
    let reopened = open(store);
    assert_eq!(reopened.tip().hash, branch[2].hash(), "the valid prefix b1-b3 has the most work");
}

/// `n` blocks on `parent`, built on a scratch chain that knows `parent`'s
/// ancestry (`base`, a copy of the victim before), paying `to`.
fn branch(base: &Chain<MemoryStore>, parent: Hash, n: usize, to: toy_chain::Address) -> Vec<Block> {
    let mut scratch = open(base.store().clone());
    let mut out = Vec::new();
    let mut parent = parent;
    for _ in 0..n {
        let b = child(&scratch, parent, vec![], to, 1001);
        parent = b.hash();
        let got = scratch.import_batch(vec![b.clone()], None, NOW);
        assert!(got.iter().all(Result::is_ok), "{got:?}");
        out.push(b);
    }
    out
}

#[test]
fn building_on_an_old_block_is_refused_before_anything_is_written() {
    let mut c = chain();
    let g = c.tip().hash;
    let mut hashes = vec![g];
    let mut parent = g;
    for _ in 0..9 {
        let b = child(&c, parent, vec![], miner(), 1000);
        parent = b.hash();
        c.insert_at(b, NOW).expect("ok");
        hashes.push(parent);
    }
    // Prune depth 6: a fork from height 2 (7 below the tip) with less work.
    let deep = child(&c, hashes[2], vec![], Keypair::from_seed(b"x").address(), 1001);
    let out = c.insert_at(deep.clone(), NOW).expect("ok");
    assert_eq!(out, InsertOutcome::ForkTooDeep { fork_height: 2, tip_height: 9 });
    assert!(c.block(&deep.hash()).expect("read").is_none(), "nothing written");
    assert!(!c.is_invalid(&deep.hash()));
    let shallow = child(&c, hashes[3], vec![], Keypair::from_seed(b"x").address(), 1001);
    assert!(matches!(c.insert_at(shallow, NOW).expect("ok"), InsertOutcome::SideBranch { .. }));
}

#[test]
fn long_cheap_chain_does_not_lock_a_fresh_node_out_of_the_honest_chain() {
    // The attacker feeds a new node a chain longer than any depth limit;
    // the honest chain, with more work, forks at genesis.
    let mut victim = chain();
    let g = victim.tip().hash;
    let fresh = chain();
    let attacker = branch(&fresh, g, 10, Keypair::from_seed(b"attacker").address());
    for b in &attacker {
        victim.insert_at(b.clone(), NOW).expect("ok");
    }
    assert_eq!(victim.tip().height, 10);
    let honest = branch(&fresh, g, 12, miner());
    // By gossip, block by block from the fork, the first honest blocks have
    // less work and are refused unwritten; a sync that asked for them takes
    // them at any depth.
    assert!(matches!(victim.insert_at(honest[0].clone(), NOW).expect("ok"), InsertOutcome::ForkTooDeep { .. }));
    let out = victim.import_batch(honest.clone(), Some("honest"), NOW);
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(victim.tip().hash, honest[11].hash(), "on the most-work honest chain");
    // A heavier branch is taken at any depth even unasked.
    let longer = branch(&fresh, g, 14, Keypair::from_seed(b"third").address());
    let mut v2 = chain();
    for b in &attacker {
        v2.insert_at(b.clone(), NOW).expect("ok");
    }
    let _ = v2.import_batch(longer[..10].to_vec(), None, NOW);
    for b in &longer[10..] {
        v2.insert_at(b.clone(), NOW).expect("ok");
    }
    assert_eq!(v2.tip().hash, longer[13].hash());
}

#[test]
fn block_on_the_tip_between_sync_batches_does_not_prune_the_branch_being_synced() {
    let mut victim = chain();
    let g = victim.tip().hash;
    let base = chain();
    let own = branch(&base, g, 10, Keypair::from_seed(b"victim").address());
    for b in &own {
        victim.insert_at(b.clone(), NOW).expect("ok");
    }
    let honest = branch(&base, g, 14, miner());
    let first = victim.import_batch(honest[..4].to_vec(), Some("honest"), NOW);
    assert!(first.iter().all(|o| matches!(o, Ok(InsertOutcome::SideBranch { .. }))), "{first:?}");
    // The attacker puts one block on the victim's tip: the tree prunes.
    let extra = child(&victim, victim.tip().hash, vec![], Keypair::from_seed(b"attacker").address(), 1000);
    victim.insert_at(extra, NOW).expect("ok");
    let rest = victim.import_batch(honest[4..].to_vec(), Some("honest"), NOW);
    assert!(rest.iter().all(|o| !matches!(o, Ok(InsertOutcome::Orphan { .. }))), "{rest:?}");
    assert_eq!(victim.tip().hash, honest[13].hash());
}

#[test]
fn sybil_orphans_do_not_evict_a_large_honest_orphan() {
    let mut c = open_with(ChainParams::test(), MemoryStore::new(), TreeConfig { max_orphans: 8, ..Default::default() });
    let orphan = |n: u64, txs: Vec<Transaction>| {
        let mut b = ChainParams::test().genesis();
        b.header.parent = Hash::digest(&n.to_be_bytes());
        b.header.height = 9;
        b.header.merkle_root = merkle_root(txs.iter().map(Transaction::wtxid));
        b.txs = txs;
        mine(b)
    };
    for i in 0..8u64 {
        c.insert_from(orphan(i, vec![]), Some(&format!("sybil-{}", i % 4)), NOW).expect("ok");
    }
    let big = orphan(100, (0..10).map(|n| transfer(&wallet(0), miner(), 1, 0, n)).collect());
    let big_hash = big.hash();
    c.insert_from(big, Some("honest"), NOW).expect("ok");
    assert!(c.contains(&big_hash), "the honest orphan stays");
    assert_eq!(c.orphan_count(), 8);
}

#[test]
fn store_failure_while_connecting_orphans_keeps_them_for_later() {
    let store = FailingStore::default();
    let mut c = open(store.clone());
    let g = c.tip().hash;
    let base = chain();
    let blocks = branch(&base, g, 2, miner());
    assert!(matches!(c.insert_at(blocks[1].clone(), NOW).expect("ok"), InsertOutcome::Orphan { .. }));
    // The parent goes in (two writes); its waiting child fails to.
    store.fail_after(2);
    let out = c.insert_at(blocks[0].clone(), NOW).expect("the parent itself is in");
    assert!(matches!(out, InsertOutcome::Connected { height: 1, .. }), "{out:?}");
    assert!(c.contains(&blocks[1].hash()), "the orphan waits again");
    store.heal();
    c.recover_store().expect("the store recovers");
    let next = child(&base, g, vec![], Keypair::from_seed(b"other").address(), 2000);
    c.insert_at(next, NOW).expect("any insert retries the orphans");
    assert_eq!(c.tip().hash, blocks[1].hash());
}

#[test]
fn store_failure_mid_reorg_keeps_the_mempool_and_the_published_tip_true() {
    let store = FailingStore::default();
    let mut c = open(store.clone());
    let tips = c.subscribe();
    let g = c.tip().hash;
    let tx = transfer(&wallet(0), miner(), 5, 1, 0);
    let a1 = child(&c, g, vec![tx.clone()], miner(), 1000);
    c.insert_at(a1, NOW).expect("a1");
    let base = chain();
    let b = branch(&base, g, 2, Keypair::from_seed(b"other").address());
    c.insert_at(b[0].clone(), NOW).expect("b1 side");
    // b2 is written, a1 is undone, then connecting b1 fails.
    store.fail_after(2);
    assert!(c.insert_at(b[1].clone(), NOW).is_err());
    assert_eq!(c.tip().hash, g, "stopped at the fork point");
    assert_eq!(tips.borrow().hash, g, "and says so");
    assert!(c.mempool().contains(&tx.id()), "a1's transaction is back in the pool");
    store.heal();
    c.recover_store().expect("the store recovers");
    let _ = c.insert_at(b[1].clone(), NOW).expect("resumes");
    assert_eq!(c.tip().hash, b[1].hash());
    assert!(c.mempool().contains(&tx.id()), "still pending on the new chain");
}

/// A chain with a 5-block retarget window aiming at 10 s blocks.
fn retargeting() -> Chain<MemoryStore> {
    let params = ChainParams {
        retarget: Some(Retarget { interval: 5, target_block_ms: 10_000, max_timewarp_ms: 10_000 }),
        pow_limit: toy_chain::target::leading_zeros(4),
        initial_target: toy_chain::target::leading_zeros(10),
        ..ChainParams::test()
    };
    open_with(params, MemoryStore::new(), Default::default())
}

/// Mines `blocks` blocks, block `k` found at real time genesis + k × 10 s and
/// stamped by `stamp(height, real_ms, earliest_allowed_ms)`; returns the
/// target required after each window.
fn run_schedule(stamp: impl Fn(u64, u64, u64) -> u64, blocks: u64) -> Vec<Hash> {
    let mut c = retargeting();
    let start = c.params().genesis_timestamp_ms;
    let mut targets = Vec::new();
    for k in 1..=blocks {
        let real = start + k * 10_000;
        let tip = c.tip().hash;
        let ctx = c.context_for(&tip, real).expect("ctx");
        let mut b = unmined(&c, tip, vec![], miner(), 0);
        let earliest = (ctx.median_time_past_ms + 1).max(ctx.min_timestamp_ms);
        b.header.timestamp_ms = stamp(k, real, earliest);
        let out = c.insert_at(mine(b), real).expect("ok");
        assert!(matches!(out, InsertOutcome::Connected { .. }), "block {k}: {out:?}");
        if (k + 1) % 5 == 0 {
            targets.push(c.context_for(&c.tip().hash, real).expect("ctx").expected_target);
        }
    }
    targets
}

#[test]
fn timewarp_schedule_leaves_the_target_where_honest_timestamps_would() {
    let honest = run_schedule(|_, real, _| real, 30);
    // The majority miner stamps every block as early as the rules allow,
    // except the last of each window, stamped at the real time.
    let warped = run_schedule(|k, real, earliest| if (k + 1) % 5 == 0 { real } else { earliest }, 30);
    assert_eq!(warped, honest, "timestamp games do not move the target");
    // Blocks exactly on schedule keep the initial target: the span covers
    // exactly the intervals it is compared with.
    let initial = toy_chain::target::leading_zeros(10);
    assert!(honest.iter().all(|t| *t == initial), "{honest:?}");
}

#[test]
fn first_block_of_a_window_stamped_before_its_parent_is_refused() {
    let mut c = retargeting();
    let mut parent = c.tip().hash;
    for _ in 0..4 {
        let b = child(&c, parent, vec![], miner(), 10_000);
        parent = b.hash();
        c.insert_at(b, NOW).expect("ok");
    }
    let parent_ts = c.header(&parent).expect("tip").timestamp_ms;
    let mut warp = unmined(&c, parent, vec![], miner(), 0);
    warp.header.timestamp_ms = parent_ts - 10_001;
    let out = c.insert_at(mine(warp), NOW).expect("ok");
    assert!(matches!(out, InsertOutcome::Invalid { reason: BlockError::TimeWarp { .. } }), "{out:?}");
}

#[test]
fn a_full_disk_is_reported_until_the_store_recovers_without_a_restart() {
    // Before: the node answered as healthy while every write failed for good
    // (redb refuses all writes after an I/O error until reopened).
    let store = FailingStore::default();
    let mut c = open(store.clone());
    let g = c.tip().hash;
    let b1 = child(&c, g, vec![], miner(), 1000);
    assert_eq!(c.store_failure(), None);
    store.fail_after(0);
    assert!(c.insert_at(b1.clone(), NOW).is_err(), "the disk is full");
    let failure = c.store_failure().map(str::to_owned);
    assert!(failure.as_deref().is_some_and(|f| f.contains("disk full")), "{failure:?}");
    // Still full: recovery fails and the failure stays.
    assert!(c.recover_store().is_err() || c.insert_at(b1.clone(), NOW).is_err());
    assert!(c.store_failure().is_some());
    store.heal();
    assert!(c.recover_store().expect("recovered"), "there was something to recover");
    assert_eq!(c.store_failure(), None);
    assert!(matches!(c.insert_at(b1, NOW).expect("ok"), InsertOutcome::Connected { height: 1, .. }));
}

#[test]
fn writes_lost_with_a_failed_sync_batch_are_fetched_again_after_recovery() {
    // A sync batch's writes are not durable until its end; when that final
    // commit fails, reopening the store loses them. Before: the node kept a
    // tip the store did not have and, once a later block matched, wrote on
    // a store missing the lost blocks' undo data and accounts.
    let store = FailingStore::default();
    let mut c = open(store.clone());
    let mut parent = c.tip().hash;
    let mut source = open(FailingStore::default());
    let mut blocks = Vec::new();
    for slot in 1..=3 {
        let b = child(&source, parent, vec![], miner(), slot * 1000);
        parent = b.hash();
        source.insert_at(b.clone(), NOW).expect("source");
        blocks.push(b);
    }
    // Every block is written, then the batch's durable commit fails.
    store.fail_after(6);
    let outcomes = c.import_batch(blocks.clone(), Some("peer"), NOW);
    assert!(outcomes.iter().any(Result::is_err), "the final commit failed: {outcomes:?}");
    assert!(c.store_failure().is_some());
    assert_eq!(c.tip().height, 3, "memory holds the batch the store will lose");
    store.heal();
    assert!(c.recover_store().expect("recovered"));
    assert_eq!(c.store_failure(), None);
    assert_eq!(c.tip().height, 0, "the chain in memory is the store's again");
    for b in blocks {
        assert!(matches!(c.insert_at(b, NOW).expect("ok"), InsertOutcome::Connected { .. }));
    }
    assert_eq!(c.tip().height, 3);
}
