//! Property tests of the state transition.

mod common;

use common::*;
use proptest::prelude::*;
use toy_chain::state::apply_body;
use toy_chain::{
    Block, ChainParams, Header, InsertOutcome, K256Verifier, Keypair, SigCache, Signature, State, Transaction, TxKind,
};

const SENDERS: usize = 4;

/// A transaction as generated: which wallet pays whom, and how it may be
/// broken.
#[derive(Debug, Clone)]
struct TxPlan {
    from: usize,
    to: usize,
    amount: u64,
    fee: u64,
    nonce_skew: i8,
    sign: bool,
    mint: bool,
}

fn tx_plan() -> impl Strategy<Value = TxPlan> {
    (
        0..SENDERS,
        0..SENDERS + 2,
        prop_oneof![8 => 0u64..5_000, 1 => Just(u64::MAX), 1 => Just(2_000_000_000u64)],
        0u64..20,
        prop_oneof![12 => Just(0i8), 1 => Just(1i8), 1 => Just(-1i8)],
        prop_oneof![15 => Just(true), 1 => Just(false)],
        prop_oneof![15 => Just(false), 1 => Just(true)],
    )
        .prop_map(|(from, to, amount, fee, nonce_skew, sign, mint)| TxPlan {
            from,
            to,
            amount,
            fee,
            nonce_skew,
            sign,
            mint,
        })
}

fn keys() -> Vec<Keypair> {
    let mut k: Vec<Keypair> = (0..SENDERS).map(wallet).collect();
    k.push(Keypair::from_seed(b"fresh-1"));
    k.push(Keypair::from_seed(b"fresh-2"));
    k
}

/// Materialises plans against the nonces expected so far (tracked in `next`).
fn build_txs(plans: &[TxPlan], keys: &[Keypair], next: &mut [u64]) -> Vec<Transaction> {
    let auth = ChainParams::dev_mint_key();
    plans
        .iter()
        .map(|p| {
            let (signer, slot) = if p.mint { (&auth, SENDERS + 2) } else { (&keys[p.from], p.from) };
            let nonce = (next[slot] as i64 + p.nonce_skew as i64).max(0) as u64;
            next[slot] = nonce + 1;
            let mut tx = Transaction {
                kind: if p.mint { TxKind::Mint } else { TxKind::Transfer },
                sender: signer.address(),
                recipient: keys[p.to].address(),
                amount: p.amount,
                fee: p.fee,
                nonce,
                signature: Signature::EMPTY,
            };
            if p.sign {
                signer.sign_tx(&mut tx, &ChainParams::test().chain_id());
            }
            tx
        })
        .collect()
}

fn block_of(txs: Vec<Transaction>, reward_extra: u64) -> Block {
    let fees: u64 = txs.iter().fold(0u64, |a, t| a.saturating_add(t.fee));
    let mut b = ChainParams::test().genesis();
    b.header = Header {
        merkle_root: toy_chain::types::merkle_root(txs.iter().map(Transaction::wtxid)),
        reward: 10_000u64.saturating_add(fees).saturating_add(reward_extra),
        miner: miner(),
        height: 1,
        ..b.header
    };
    b.txs = txs;
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Conservation, nonce steps, no-op on failure, apply∘undo = identity.
    #[test]
    fn state_transition_invariants(blocks in prop::collection::vec((prop::collection::vec(tx_plan(), 0..8), prop_oneof![9 => Just(0u64), 1 => Just(1u64)]), 1..6)) {
        let params = ChainParams::test();
        let keys = keys();
        let cache = SigCache::default();
        let mut state = State::genesis(&params);
        let mut supply = params.genesis_supply();
        let mut next = vec![0u64; SENDERS + 3];
        for (plans, extra) in blocks {
            let snapshot_next = next.clone();
            let block = block_of(build_txs(&plans, &keys, &mut next), extra);
            let before = state.clone();
            match apply_body(&mut state, &block, &params, &K256Verifier::new(), &cache) {
                Ok(undo) => {
                    let minted: u128 = block.txs.iter().filter(|t| t.kind == TxKind::Mint).map(|t| t.amount as u128).sum();
                    let fees: u128 = block.txs.iter().map(|t| t.fee as u128).sum();
                    // Fees move from senders to the miner; the reward and mints are new.
                    supply += minted + block.header.reward as u128 - fees;
                    prop_assert_eq!(state.total_supply(), supply, "conservation");
                    for tx in &block.txs {
                        let n = block.txs.iter().filter(|t| t.sender == tx.sender).count() as u64;
                        prop_assert_eq!(state.account(&tx.sender).nonce, before.account(&tx.sender).nonce + n, "nonce steps by one per tx");
                    }
                    let mut undone = state.clone();
                    undone.undo(&undo);
                    prop_assert_eq!(&undone, &before, "apply then undo is the identity");
                }
                Err(_) => {
                    prop_assert_eq!(&state, &before, "an invalid block changes nothing");
                    next = snapshot_next;
                    // Rebase the expected nonces on the state.
                    for (i, k) in keys.iter().enumerate().take(SENDERS) {
                        next[i] = state.account(&k.address()).nonce;
                    }
                    next[SENDERS + 2] = state.account(&ChainParams::dev_mint_key().address()).nonce;
                }
            }
        }
    }

    /// Reorganising A→B→A ends in the same state as staying on A.
    #[test]
    fn reorg_a_b_a_equals_staying_on_a(len_a in 1usize..4, extra_b in 1usize..3, pays in prop::collection::vec((0..SENDERS, 1u64..1000), 0..4)) {
        let keys = keys();
        let mut c = chain();
        let g = c.tip().hash;
        // Branch A carries payments; B is empty and longer; A then grows past B.
        let mut next = [0u64; SENDERS];
        let mut parent = g;
        let mut a_blocks = Vec::new();
        for i in 0..len_a {
            let txs: Vec<Transaction> = pays.iter().enumerate().filter(|(j, _)| j % len_a == i).map(|(_, (s, amt))| {
                let tx = transfer(&keys[*s], keys[SENDERS].address(), *amt, 1, next[*s]);
                next[*s] += 1;
                tx
            }).collect();
            let b = child(&c, parent, txs, miner(), 1000);
            parent = b.hash();
            a_blocks.push(b.clone());
            let outcome = c.insert_at(b, NOW).expect("insert");
            prop_assert!(!matches!(outcome, InsertOutcome::Invalid { .. }), "{:?}", outcome);
        }
        let mut straight = chain();
        for b in &a_blocks {
            straight.insert_at(b.clone(), NOW).expect("insert");
        }
        let mut bp = g;
        for _ in 0..len_a + extra_b {
            let b = child(&c, bp, vec![], miner(), 1001);
            bp = b.hash();
            c.insert_at(b, NOW).expect("insert");
        }
        prop_assert_eq!(c.tip().hash, bp, "B took over");
        for _ in 0..extra_b + 1 {
            let b = child(&c, parent, vec![], miner(), 1000);
            parent = b.hash();
            straight.insert_at(b.clone(), NOW).expect("insert");
            c.insert_at(b, NOW).expect("insert");
        }
        prop_assert_eq!(c.tip().hash, parent, "A took back over");
        prop_assert_eq!(c.state(), straight.state());
    }
}
