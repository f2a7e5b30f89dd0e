//! Mempool admission, limits, eviction and replacement.

mod common;

use common::*;
use toy_chain::{ChainParams, K256Verifier, Keypair, Mempool, MempoolConfig, MempoolError, SigCache, State};

struct Pool {
    pool: Mempool,
    state: State,
    params: ChainParams,
    cache: SigCache,
}

impl Pool {
    fn new(config: MempoolConfig) -> Self {
        let params = ChainParams::test();
        Self { pool: Mempool::new(config), state: State::genesis(&params), params, cache: SigCache::default() }
    }
    fn add(&mut self, tx: toy_chain::Transaction) -> Result<toy_chain::Hash, MempoolError> {
        self.pool.add(tx, &self.state, &self.params, &K256Verifier::new(), &self.cache, NOW)
    }
}

fn bob() -> toy_chain::Address {
    Keypair::from_seed(b"bob").address()
}

#[test]
fn every_rejection_has_its_reason() {
    let mut p = Pool::new(MempoolConfig::default());
    let w = wallet(0);
    let tx = transfer(&w, bob(), 10, 1, 0);
    p.add(tx.clone()).expect("valid");
    assert_eq!(p.add(tx), Err(MempoolError::AlreadyKnown));
    let mut bad = transfer(&w, bob(), 10, 1, 1);
    bad.signature = wallet(1).sign_hash(&bad.id());
    assert_eq!(p.add(bad), Err(MempoolError::BadSignature));
    assert_eq!(p.add(mint(&w, bob(), 5, 1)), Err(MempoolError::UnauthorisedMint));
    assert_eq!(p.add(transfer(&w, bob(), u64::MAX, 1, 1)), Err(MempoolError::Overflow));
    assert_eq!(p.add(transfer(&w, bob(), 1, 1, 500)), Err(MempoolError::NonceTooHigh { expected: 0, got: 500 }));
    // 33 bytes that are no point on the curve: the coins would be burnt.
    assert_eq!(p.add(transfer(&w, toy_chain::Address([5; 33]), 1, 1, 1)), Err(MempoolError::BadRecipient));
    let poor = Keypair::from_seed(b"poor");
    assert!(matches!(
        p.add(transfer(&poor, bob(), 1, 0, 0)),
        Err(MempoolError::InsufficientBalance { balance: 0, .. })
    ));
}

#[test]
fn pending_total_must_be_covered() {
    let mut p = Pool::new(MempoolConfig::default());
    let w = wallet(0);
    let all = toy_chain::params::DEV_WALLET_BALANCE;
    p.add(transfer(&w, bob(), all - 10, 0, 0)).expect("fits");
    p.add(transfer(&w, bob(), 5, 5, 1)).expect("exactly the rest");
    assert!(matches!(p.add(transfer(&w, bob(), 1, 0, 2)), Err(MempoolError::InsufficientBalance { .. })));
}

#[test]
fn stale_nonce_is_refused_after_the_account_moved() {
    let mut p = Pool::new(MempoolConfig::default());
    let w = wallet(0);
    let mut undo = toy_chain::Undo::default();
    p.state.apply_tx(&transfer(&w, bob(), 1, 0, 0), &p.params, &mut undo).expect("apply");
    assert_eq!(p.add(transfer(&w, bob(), 1, 0, 0)), Err(MempoolError::NonceTooLow { expected: 1, got: 0 }));
}

#[test]
fn replace_by_fee_needs_a_higher_fee() {
    let mut p = Pool::new(MempoolConfig::default());
    let w = wallet(0);
    let first = transfer(&w, bob(), 10, 5, 0);
    p.add(first.clone()).expect("first");
    assert_eq!(
        p.add(transfer(&w, bob(), 11, 5, 0)),
        Err(MempoolError::ReplacementUnderpriced { old_fee: 5, new_fee: 5 })
    );
    let better = transfer(&w, bob(), 11, 6, 0);
    p.add(better.clone()).expect("replaces");
    assert!(!p.pool.contains(&first.id()));
    assert!(p.pool.contains(&better.id()));
    assert_eq!(p.pool.len(), 1);
}

#[test]
fn per_sender_cap() {
    let mut p = Pool::new(MempoolConfig { max_per_sender: 3, ..Default::default() });
    let w = wallet(0);
    for n in 0..3 {
        p.add(transfer(&w, bob(), 1, 1, n)).expect("within the cap");
    }
    assert!(matches!(
        p.add(transfer(&w, bob(), 1, 1, 3)),
        Err(MempoolError::NonceTooHigh { .. } | MempoolError::SenderFull { .. })
    ));
}

#[test]
fn full_pool_evicts_lowest_fee_first() {
    let mut p = Pool::new(MempoolConfig { max_count: 3, ..Default::default() });
    let low = transfer(&wallet(0), bob(), 1, 1, 0);
    p.add(low.clone()).expect("add");
    p.add(transfer(&wallet(1), bob(), 1, 5, 0)).expect("add");
    p.add(transfer(&wallet(2), bob(), 1, 7, 0)).expect("add");
    assert_eq!(
        p.add(transfer(&wallet(3), bob(), 1, 1, 0)),
        Err(MempoolError::PoolFull { fee: 1 }),
        "not better than the cheapest"
    );
    p.add(transfer(&wallet(3), bob(), 1, 9, 0)).expect("evicts the cheapest");
    assert_eq!(p.pool.len(), 3);
    assert!(!p.pool.contains(&low.id()));
}

#[test]
fn eviction_takes_the_senders_later_nonces_too() {
    let mut p = Pool::new(MempoolConfig { max_count: 3, ..Default::default() });
    let w = wallet(0);
    p.add(transfer(&w, bob(), 1, 1, 0)).expect("add");
    p.add(transfer(&w, bob(), 1, 9, 1)).expect("add");
    p.add(transfer(&wallet(1), bob(), 1, 5, 0)).expect("add");
    p.add(transfer(&wallet(2), bob(), 1, 6, 0)).expect("evicts nonce 0 and so nonce 1");
    assert_eq!(p.pool.len(), 2);
    assert!(p.pool.by_sender().all(|(a, _)| *a != w.address()));
}

#[test]
fn bytes_are_bounded() {
    let one = transfer(&wallet(0), bob(), 1, 1, 0).encoded_len();
    let mut p = Pool::new(MempoolConfig { max_bytes: one * 2, ..Default::default() });
    p.add(transfer(&wallet(0), bob(), 1, 1, 0)).expect("add");
    p.add(transfer(&wallet(1), bob(), 1, 2, 0)).expect("add");
    p.add(transfer(&wallet(2), bob(), 1, 3, 0)).expect("evicts");
    assert!(p.pool.bytes() <= one * 2);
    assert_eq!(p.pool.len(), 2);
}

#[test]
fn old_entries_expire() {
    let mut p = Pool::new(MempoolConfig { expiry_ms: 1000, ..Default::default() });
    p.add(transfer(&wallet(0), bob(), 1, 1, 0)).expect("add");
    assert_eq!(p.pool.expire(NOW + 500), 0);
    assert_eq!(p.pool.expire(NOW + 1001), 1);
    assert!(p.pool.is_empty());
}

#[test]
fn template_orders_by_fee_and_keeps_each_senders_nonces_in_order() {
    let mut c = chain();
    c.add_tx(transfer(&wallet(0), bob(), 1, 1, 0), NOW).expect("add");
    c.add_tx(transfer(&wallet(0), bob(), 1, 50, 1), NOW).expect("add");
    c.add_tx(transfer(&wallet(1), bob(), 1, 10, 0), NOW).expect("add");
    let t = c.template(miner(), NOW);
    let order: Vec<(u64, u64)> = t.txs.iter().map(|tx| (tx.fee, tx.nonce)).collect();
    assert_eq!(order, vec![(10, 0), (1, 0), (50, 1)], "fee first, but nonce 1 waits for nonce 0");
    assert_eq!(t.header.reward, 10_000 + 61);
    let b = mine(t);
    assert!(matches!(c.insert_at(b, NOW).expect("ok"), toy_chain::InsertOutcome::Connected { .. }));
    assert!(c.mempool().is_empty(), "included transactions leave the pool");
}

#[test]
fn template_respects_max_txs() {
    let mut c = chain();
    let max = c.params().max_txs_per_block;
    for n in 0..(max as u64 + 5) {
        c.add_tx(transfer(&wallet((n % 8) as usize), bob(), 1, 1, n / 8), NOW).expect("add");
    }
    assert_eq!(c.template(miner(), NOW).txs.len(), max);
}
