//! The block tree: forks, reorganisations, orphans, pruning, the mempool
//! following the best chain, and reopening from disk.

mod common;

use common::*;
use toy_chain::{Chain, Hash, InsertOutcome, Keypair, MemoryStore, RedbStore, Store, now_ms};

/// Extends `parent` with `n` empty blocks (slot distinguishes branches).
fn extend<S: Store>(c: &mut Chain<S>, mut parent: Hash, n: usize, slot: u64) -> Vec<Hash> {
    let mut out = Vec::new();
    for _ in 0..n {
        let b = child(c, parent, vec![], miner(), slot);
        parent = b.hash();
        let outcome = c.insert_at(b, NOW).expect("insert");
        assert!(!matches!(outcome, InsertOutcome::Invalid { .. } | InsertOutcome::Orphan { .. }), "{outcome:?}");
        out.push(parent);
    }
    out
}

#[test]
fn most_work_wins_and_first_seen_breaks_ties() {
    let mut c = chain();
    let g = c.tip().hash;
    let a = extend(&mut c, g, 2, 1000);
    let b = extend(&mut c, g, 2, 1001);
    assert_eq!(c.tip().hash, a[1], "equal work: the first seen stays");
    let b3 = child(&c, b[1], vec![], miner(), 1001);
    let b3h = b3.hash();
    let outcome = c.insert_at(b3, NOW).expect("insert");
    assert_eq!(outcome, InsertOutcome::Reorganised { from: a[1], to: b3h, disconnected: 2, connected: 3 });
    assert_eq!(c.tip().hash, b3h);
    assert_eq!(c.hash_at(1), Some(b[0]));
}

#[test]
fn reorg_returns_disconnected_txs_to_mempool() {
    let mut c = chain();
    let g = c.tip().hash;
    let bob = Keypair::from_seed(b"bob").address();
    let tx = transfer(&wallet(0), bob, 100, 5, 0);
    // Branch A includes the payment.
    let a1 = child(&c, g, vec![tx.clone()], miner(), 1000);
    let a1h = a1.hash();
    c.insert_at(a1, NOW).expect("a1");
    assert_eq!(c.account(&bob).balance, 100);
    let found = c.find_tx(&tx.id()).expect("index").map(|(b, pos)| (b.hash(), pos));
    assert_eq!(found, Some((a1h, 0)), "indexed in A");
    // Branch B, without it, overtakes.
    extend(&mut c, g, 2, 1001);
    assert_eq!(c.account(&bob).balance, 0, "payment undone");
    assert!(c.mempool().contains(&tx.id()), "and back in the mempool");
    assert_eq!(c.find_tx(&tx.id()).expect("index"), None, "no longer on the best chain");
    // The next template mines it again.
    let t = c.template(miner(), NOW);
    assert_eq!(t.txs, vec![tx.clone()]);
    let b = mine(t);
    c.insert_at(b, NOW).expect("mined again");
    assert_eq!(c.account(&bob).balance, 100);
    assert!(c.mempool().is_empty());
    let found = c.find_tx(&tx.id()).expect("index").map(|(b, _)| b.header.height);
    assert_eq!(found, Some(3), "indexed where it was mined again");
}

#[test]
fn reorganising_a_to_b_to_a_equals_staying_on_a() {
    let mut c = chain();
    let g = c.tip().hash;
    let bob = Keypair::from_seed(b"bob").address();
    let a1 = child(&c, g, vec![transfer(&wallet(0), bob, 7, 1, 0)], miner(), 1000);
    let a1h = a1.hash();
    c.insert_at(a1, NOW).expect("a1");
    let a2 = extend(&mut c, a1h, 1, 1000)[0];
    let on_a = c.state().clone();
    let b = extend(&mut c, g, 3, 1001);
    assert_eq!(c.tip().hash, b[2]);
    extend(&mut c, a2, 2, 1000);
    let back = c.tip();
    assert_eq!(back.height, 4);
    // Same state as a chain that never left A (same blocks).
    let mut straight = chain();
    for h in 1..=4 {
        let block = c.block_at(h).expect("read").expect("canonical");
        straight.insert_at(block, NOW).expect("replay");
    }
    assert_eq!(c.state(), straight.state());
    assert_ne!(c.state(), &on_a, "two more blocks of rewards since");
}

#[test]
fn invalid_block_on_a_heavier_branch_restores_the_old_chain() {
    let mut c = chain();
    let g = c.tip().hash;
    let a = extend(&mut c, g, 2, 1000);
    let state = c.state().clone();
    // B: a bad transaction (wrong nonce) in its first block, then more work.
    let bad = child(&c, g, vec![transfer(&wallet(0), miner(), 1, 0, 9)], miner(), 1001);
    let bad_h = bad.hash();
    assert_eq!(c.insert_at(bad, NOW).expect("ok"), InsertOutcome::SideBranch { hash: bad_h });
    let b2 = child(&c, bad_h, vec![], miner(), 1001);
    let b2h = b2.hash();
    c.insert_at(b2, NOW).expect("ok");
    let b3 = child(&c, b2h, vec![], miner(), 1001);
    assert!(matches!(c.insert_at(b3.clone(), NOW).expect("ok"), InsertOutcome::Invalid { .. }));
    assert_eq!(c.tip().hash, a[1]);
    assert_eq!(c.state(), &state);
    assert!(c.is_invalid(&bad_h));
    // Its descendants are refused from now on.
    let b4 = child_of_known_header(&b3);
    assert!(matches!(c.insert_at(b4, NOW).expect("ok"), InsertOutcome::Invalid { .. }));
}

/// A child of a block the chain no longer indexes, built by hand.
fn child_of_known_header(parent: &toy_chain::Block) -> toy_chain::Block {
    let mut h = parent.header.clone();
    h.parent = parent.hash();
    h.height += 1;
    h.timestamp_ms += 1000;
    h.merkle_root = Hash::ZERO;
    mine(toy_chain::Block { header: h, txs: vec![] })
}

#[test]
fn side_branch_behind_prune_depth_is_dropped_and_its_txs_return() {
    let mut c = chain();
    let g = c.tip().hash;
    let bob = Keypair::from_seed(b"bob").address();
    let tx = transfer(&wallet(3), bob, 50, 2, 0);
    let side = child(&c, g, vec![tx.clone()], miner(), 1001);
    let side_h = side.hash();
    let main = extend(&mut c, g, 1, 1000);
    assert_eq!(c.insert_at(side, NOW).expect("ok"), InsertOutcome::SideBranch { hash: side_h });
    assert!(c.header(&side_h).is_some());
    let depth = c.params().prune_depth as usize;
    extend(&mut c, main[0], depth + 1, 1000);
    assert!(c.header(&side_h).is_none(), "pruned");
    assert!(c.block(&side_h).expect("read").is_none(), "deleted from the store");
    assert!(c.mempool().contains(&tx.id()), "its transaction went back to the mempool");
}

fn with_config(config: toy_chain::TreeConfig) -> Chain<MemoryStore> {
    open_with(toy_chain::ChainParams::test(), MemoryStore::new(), config)
}

/// A mined block whose parent nobody has, with `txs` (signed, so it is big).
fn orphan(c: &Chain<MemoryStore>, n: u64, txs: Vec<toy_chain::Transaction>) -> toy_chain::Block {
    let mut b = c.params().genesis();
    b.header.parent = Hash::digest(&n.to_be_bytes());
    b.header.height = 5;
    b.header.merkle_root = toy_chain::types::merkle_root(txs.iter().map(toy_chain::Transaction::wtxid));
    b.txs = txs;
    mine(b)
}

#[test]
fn orphans_are_bounded() {
    let mut c = with_config(toy_chain::TreeConfig { max_orphans: 4, ..Default::default() });
    for i in 0..10u64 {
        let out = c.insert_from(orphan(&c, i, vec![]), Some(&format!("peer-{i}")), NOW).expect("ok");
        assert!(matches!(out, InsertOutcome::Orphan { .. }));
    }
    assert_eq!(c.orphan_count(), 4);
}

#[test]
fn orphans_are_bounded_in_bytes() {
    let txs: Vec<_> = (0..20u64).map(|n| transfer(&wallet(0), miner(), 1, 0, n)).collect();
    let probe = orphan(&chain(), 0, txs.clone());
    let size = probe.encode().len();
    let mut c = with_config(toy_chain::TreeConfig { max_orphan_bytes: size * 8, ..Default::default() });
    for i in 0..10u64 {
        c.insert_from(orphan(&c, i, txs.clone()), Some(&format!("peer-{i}")), NOW).expect("ok");
    }
    assert!(c.orphan_bytes() <= size * 8, "{} bytes held, budget {}", c.orphan_bytes(), size * 8);
    // Sizes differ by a byte or two (the nonce's varint).
    assert!((7..=8).contains(&c.orphan_count()), "{} orphans", c.orphan_count());
}

#[test]
fn orphan_without_proof_of_work_is_not_kept() {
    // Before: a 4 MiB block with target 0 and no work was kept as an orphan.
    let mut c = chain();
    let mut b = orphan(&c, 1, vec![]);
    while toy_chain::target::meets(&b.hash(), &b.header.target) {
        b.header.nonce += 1;
    }
    assert!(matches!(c.insert_at(b, NOW).expect("ok"), InsertOutcome::Malformed { .. }));
    let mut easy = orphan(&c, 2, vec![]);
    easy.header.target = Hash([0xff; 32]);
    assert!(matches!(c.insert_at(easy, NOW).expect("ok"), InsertOutcome::Malformed { .. }));
    assert_eq!(c.orphan_count(), 0);
}

#[test]
fn one_peer_flooding_orphans_does_not_evict_another_peers_orphans() {
    let mut c = with_config(toy_chain::TreeConfig { max_orphans: 8, ..Default::default() });
    let honest = orphan(&c, 0, vec![]);
    let honest_hash = honest.hash();
    c.insert_from(honest, Some("honest"), NOW).expect("ok");
    for i in 1..100u64 {
        c.insert_from(orphan(&c, i, vec![]), Some("flooder"), NOW).expect("ok");
    }
    assert!(c.contains(&honest_hash), "the honest peer's orphan survives the flood");
    assert!(c.orphan_count() <= 8);
    assert_eq!(c.orphan_count(), 1 + 2, "the flooder keeps only its share (a quarter of 8)");
}

#[test]
fn duplicate_is_reported() {
    let mut c = chain();
    let b = child(&c, c.tip().hash, vec![], miner(), 1000);
    c.insert_at(b.clone(), NOW).expect("first");
    assert_eq!(c.insert_at(b, NOW).expect("second"), InsertOutcome::Duplicate);
}

#[test]
fn locator_walks_back_exponentially_to_genesis() {
    let mut c = chain();
    let g = c.tip().hash;
    extend(&mut c, g, 40, 1000);
    let loc = c.locator();
    assert_eq!(loc[0], c.tip().hash);
    assert_eq!(*loc.last().expect("non-empty"), g);
    assert!(loc.len() < 20);
}

#[test]
fn tip_subscription_sees_new_tips() {
    let mut c = chain();
    let rx = c.subscribe();
    let b = child(&c, c.tip().hash, vec![], miner(), 1000);
    let h = b.hash();
    c.insert_at(b, NOW).expect("ok");
    assert_eq!(rx.borrow().hash, h);
    assert_eq!(rx.borrow().height, 1);
}

#[test]
fn redb_chain_reopens_with_same_tip_state_and_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chain.redb");
    let (tip, state) = {
        let mut c = open(RedbStore::open(&path).expect("open"));
        let g = c.tip().hash;
        let bob = Keypair::from_seed(b"bob").address();
        let b1 = child(&c, g, vec![transfer(&wallet(0), bob, 9, 1, 0)], miner(), 1000);
        let h1 = b1.hash();
        c.insert_at(b1, NOW).expect("b1");
        extend(&mut c, h1, 3, 1000);
        // A fork that wins, to exercise disconnect on disk.
        extend(&mut c, g, 5, 1001);
        (c.tip(), c.state().clone())
    };
    let c = open(RedbStore::open(&path).expect("reopen"));
    assert_eq!(c.tip(), tip);
    assert_eq!(c.state(), &state);
    for h in 0..=tip.height {
        assert!(c.block_at(h).expect("read").is_some(), "canonical block {h}");
    }
}

#[test]
fn relaxed_durability_keeps_the_chain_once_restored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chain.redb");
    let (tip, state) = {
        let mut c = open(RedbStore::open(&path).expect("open"));
        let g = c.tip().hash;
        let mut builder = chain();
        let hs = extend(&mut builder, g, 4, 1000);
        let batch = |b: &Chain<MemoryStore>, hs: &[Hash]| -> Vec<toy_chain::Block> {
            hs.iter().map(|h| b.block(h).expect("read").expect("block")).collect()
        };
        let out = c.import_batch(batch(&builder, &hs), Some("peer"), NOW);
        assert!(out.iter().all(|o| matches!(o, Ok(InsertOutcome::Connected { .. }))), "{out:?}");
        // A fork that wins, in a second batch.
        let fork = extend(&mut builder, hs[1], 4, 1001);
        let out = c.import_batch(batch(&builder, &fork), Some("peer"), NOW);
        assert!(out.iter().any(|o| matches!(o, Ok(InsertOutcome::Reorganised { .. }))), "{out:?}");
        (c.tip(), c.state().clone())
    };
    let c = open(RedbStore::open(&path).expect("reopen"));
    assert_eq!(c.tip(), tip);
    assert_eq!(c.state(), &state);
}

#[test]
fn retargeting_follows_the_block_interval() {
    use toy_chain::{ChainParams, Retarget};
    let params = ChainParams {
        retarget: Some(Retarget { interval: 5, target_block_ms: 10_000, max_timewarp_ms: 10_000 }),
        pow_limit: toy_chain::target::leading_zeros(4),
        initial_target: toy_chain::target::leading_zeros(8),
        ..ChainParams::test()
    };
    let mut c = open_with(params, MemoryStore::new(), Default::default());
    // Blocks every second instead of every ten: at height 5 (the first
    // adjustment) the target must tighten.
    let mut parent = c.tip().hash;
    for _ in 0..4 {
        let b = child(&c, parent, vec![], miner(), 1000);
        parent = b.hash();
        assert!(matches!(c.insert_at(b, NOW).expect("ok"), InsertOutcome::Connected { .. }));
    }
    let before = c.header(&parent).expect("tip").target;
    let ctx = c.context_for(&parent, NOW).expect("ctx");
    assert!(ctx.expected_target.0 < before.0, "faster blocks → harder target");
    // At most 4× harder per adjustment.
    let floor = toy_chain::target::scale(&before, 1, 4, &toy_chain::target::leading_zeros(0));
    assert!(ctx.expected_target.0 >= floor.0);
    // A block claiming the old target is refused at the adjustment height.
    let mut stale = unmined(&c, parent, vec![], miner(), 1000);
    stale.header.target = before;
    let out = c.insert_at(mine(stale), NOW).expect("ok");
    assert!(matches!(out, InsertOutcome::Invalid { reason: toy_chain::BlockError::WrongTarget { .. } }), "{out:?}");
    // Slow blocks loosen it again, up to the limit.
    let b = child(&c, parent, vec![], miner(), 1000);
    let mut parent = b.hash();
    c.insert_at(b, NOW).expect("ok");
    for _ in 0..4 {
        let b = child(&c, parent, vec![], miner(), 100_000);
        parent = b.hash();
        c.insert_at(b, NOW + 10_000_000).expect("ok");
    }
    let tight = c.header(&parent).expect("tip").target;
    let ctx = c.context_for(&parent, NOW + 10_000_000).expect("ctx");
    assert!(ctx.expected_target.0 > tight.0, "slower blocks → easier target");
}

#[test]
fn blocks_above_a_pruned_side_branch_are_dropped_not_marked_invalid() {
    // The side branch, built on another chain: s1..s9.
    let mut other = chain();
    let g = other.tip().hash;
    let side: Vec<toy_chain::Block> = {
        let hashes = extend(&mut other, g, 9, 2000);
        hashes.iter().map(|h| other.block(h).expect("read").expect("stored")).collect()
    };
    let mut c = chain();
    let main = extend(&mut c, g, 8, 1000);
    // Asked for by a sync (unasked, a branch this deep and light is refused).
    let out = c.import_batch(side[..8].to_vec(), Some("peer"), NOW);
    assert!(out.iter().all(|o| matches!(o, Ok(InsertOutcome::SideBranch { .. }))), "{out:?}");
    c.finish_import();
    // Three more main blocks: s1..s4 fall below the pruning depth, and
    // s5..s8 lose their ancestry.
    extend(&mut c, main[7], 3, 1000);
    for b in &side[..8] {
        assert!(c.header(&b.hash()).is_none(), "dropped");
        assert!(!c.is_invalid(&b.hash()), "dropped, not invalid: an honest branch may go on");
    }
    // The next block of that branch is an orphan, not an invalid block.
    let out = c.insert_at(side[8].clone(), NOW).expect("insert");
    assert!(matches!(out, InsertOutcome::Orphan { .. }), "{out:?}");
    // Its parent fetched again: its ancestry is gone, so it is stale.
    let out = c.insert_at(side[7].clone(), NOW).expect("insert");
    assert!(matches!(out, InsertOutcome::Orphan { .. } | InsertOutcome::Stale { .. }), "{out:?}");
    assert!(!c.is_invalid(&side[8].hash()));
}

#[test]
fn a_header_chain_is_checked_like_blocks_before_any_body() {
    // A real branch of five blocks, built on a second chain.
    let mut source = chain();
    let mut parent = source.tip().hash;
    for slot in 1..=5 {
        let b = child(&source, parent, vec![], miner(), slot);
        parent = b.hash();
        source.insert(b).expect("insert");
    }
    let headers: Vec<_> =
        (1..=5).map(|h| source.header(&source.hash_at(h).expect("hash")).cloned().expect("h")).collect();
    let ours = chain();
    let checked = ours.check_headers(&headers, now_ms()).expect("valid headers");
    assert_eq!(checked.hashes.len(), 5);
    assert_eq!((checked.height, checked.work), (5, source.tip().work));
    // Not a chain, not connected, wrong target, no work: each refused.
    let mut gap = headers.clone();
    gap.remove(2);
    assert!(matches!(
        ours.check_headers(&gap, now_ms()),
        Err(toy_chain::headers::HeadersError::NotAChain { index: 2 })
    ));
    assert!(matches!(
        ours.check_headers(&headers[1..], now_ms()),
        Err(toy_chain::headers::HeadersError::Unconnected { .. })
    ));
    let mut easy = headers.clone();
    easy[0].target = toy_chain::Hash([0xff; 32]);
    assert!(matches!(
        ours.check_headers(&easy, now_ms()),
        Err(toy_chain::headers::HeadersError::Invalid { index: 0, .. })
    ));
    // From the clock's future: the valid prefix, not an error.
    let mut late = headers.clone();
    late[3].timestamp_ms = now_ms() + 3_600_000;
    while !toy_chain::target::meets(&late[3].hash(), &late[3].target) {
        late[3].nonce += 1;
    }
    let prefix = ours.check_headers(&late[..4], now_ms()).expect("prefix");
    assert!(prefix.ahead_of_clock);
    assert_eq!(prefix.hashes.len(), 3);
}
