//! What someone who read toy-workshop (and the workshop's Python) could try,
//! each named after the attack, and what the chain does instead.

use std::sync::Arc;
use std::time::Duration;

use toy_workshop::mempool::{MAX_PER_SENDER, MAX_TXS, Mempool};
use toy_workshop::state::{Accounts, sign_tx};
use toy_workshop::{Block, Chain, Inserted, Params, SecretKey, Tx, WorkshopNode, miner};

const P: Params = Params::with_difficulty(1);

fn mine_on(parent: &Block, coinbase: &str, txs: Vec<Tx>) -> Block {
    let template = Block { number: parent.number + 1, nonce: 0, parent: parent.hash(), coinbase: coinbase.into(), txs };
    miner::grind(&template, P.difficulty, 0, u64::MAX).expect("found")
}

#[test]
fn a_transfer_to_a_name_that_is_no_key_does_not_split_us_from_the_workshop() {
    // A workshop node checks neither the recipient nor the coinbase: an
    // amount-0 transfer to "bob" from a fresh key is valid there, and its
    // miners include it. Refusing it would leave us on our own chain.
    let mut chain = Chain::in_memory(P);
    let key = SecretKey::generate();
    let tx = sign_tx(&key, "bob", 0, 0);
    let block = mine_on(&Block::genesis(), "not a key either", vec![tx]);
    assert_eq!(chain.insert(block).expect("accepted as the workshop does"), Inserted::Tip { reorg: 0 });
    assert_eq!(chain.balance("not a key either"), 10_000);
    assert_eq!(chain.account(&key.public_hex()).nonce, 1);
}

#[test]
fn a_key_in_capitals_or_uncompressed_signs_as_it_does_for_the_workshop() {
    let mut chain = Chain::in_memory(P);
    let key = SecretKey::generate();
    let funded = mine_on(&Block::genesis(), &key.public_hex().to_uppercase(), vec![]);
    chain.insert(funded.clone()).expect("b1");
    let mut tx = Tx {
        sender: key.public_hex().to_uppercase(),
        recipient: "ab".into(),
        nonce: 0,
        amount: 7,
        signature: String::new(),
    };
    tx.signature = key.sign(tx.signing_text().as_bytes()).to_uppercase();
    let b2 = mine_on(&funded, "ab", vec![tx]);
    chain.insert(b2).expect("a capital-hex key and signature verify, as bytes.fromhex reads them");
    assert_eq!(chain.balance("ab"), 10_007);
}

#[test]
fn transactions_of_a_block_undone_by_a_reorg_go_back_to_the_mempool() {
    let mut chain = Chain::in_memory(P);
    let key = SecretKey::generate();
    let me = key.public_hex();
    let g = Block::genesis();
    let a1 = mine_on(&g, &me, vec![]);
    let a2 = mine_on(&a1, "aa", vec![sign_tx(&key, "cc", 0, 100)]);
    chain.insert(a1.clone()).expect("a1");
    chain.insert(a2).expect("a2");
    assert!(chain.mempool().is_empty());
    // A higher branch from a1 without the transfer.
    let b2 = mine_on(&a1, "bb", vec![]);
    let b3 = mine_on(&b2, "bb", vec![]);
    chain.insert(b2).expect("b2");
    assert_eq!(chain.insert(b3).expect("b3"), Inserted::Tip { reorg: 1 });
    assert_eq!(chain.mempool().len(), 1, "the transfer waits again instead of being lost");
    assert_eq!(chain.template("x").txs.len(), 1);
}

#[test]
fn throwaway_keys_flooding_the_mempool_push_out_each_other_not_an_honest_transfer() {
    let mut pool = Mempool::default();
    let mut accounts = Accounts::default();
    let honest = SecretKey::generate();
    // Accounts with coins come from blocks; one block pays the honest key.
    let pay = mine_on(&Block::genesis(), &honest.public_hex(), vec![]);
    accounts.apply(&pay, &P, true).expect("reward");
    let transfer = sign_tx(&honest, "ab", 0, 5);
    assert!(pool.add(transfer.clone(), &accounts).expect("honest"));
    // Amount-0 transfers from keys without coins are valid; the signature
    // is not checked by the pool (the node checks it first), so unsigned
    // ones stand in for them here.
    let per_key = MAX_PER_SENDER as usize;
    for k in 0..(MAX_TXS / per_key + 8) {
        for n in 0..per_key as u64 {
            let tx =
                Tx { sender: format!("{k:050x}"), recipient: "ab".into(), nonce: n, amount: 0, signature: "00".into() };
            let _ = pool.add(tx, &accounts);
        }
    }
    assert!(pool.len() <= MAX_TXS);
    assert!(pool.contains(&transfer.id()), "the honest transfer stays");
}

#[test]
fn a_transfer_of_more_than_the_senders_coins_along_its_pending_nonces_is_refused() {
    let mut pool = Mempool::default();
    let mut accounts = Accounts::default();
    let key = SecretKey::generate();
    accounts.apply(&mine_on(&Block::genesis(), &key.public_hex(), vec![]), &P, true).expect("reward");
    assert!(pool.add(sign_tx(&key, "ab", 0, 6_000), &accounts).expect("first"));
    assert!(pool.add(sign_tx(&key, "ab", 1, 5_000), &accounts).is_err(), "6 000 + 5 000 > 10 000");
    assert!(pool.add(sign_tx(&key, "ab", 1, 4_000), &accounts).expect("fits"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_more_blocks_behind_than_the_orphan_pool_holds_catches_up_in_one_walk() {
    // Before: each fetched ancestor waited as an orphan, and the pool (64)
    // dropped the oldest, the ones nearest the tip: a node 100 behind never
    // caught up.
    let behind = toy_workshop::chain::MAX_ORPHANS as u64 + 40;
    let mut ahead = Chain::in_memory(P);
    for _ in 0..behind {
        let t = ahead.template("aa");
        ahead.insert(miner::grind(&t, P.difficulty, 0, u64::MAX).expect("found")).expect("insert");
    }
    let net = toy_gossip::MemoryGossipNet::new();
    let a = WorkshopNode::start(Arc::new(net.join("a")), ahead).expect("a");
    let b = WorkshopNode::start(Arc::new(net.join("b")), Chain::in_memory(P)).expect("b");
    a.mine("aa", 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while b.read(Chain::height) <= behind {
        assert!(tokio::time::Instant::now() < deadline, "b stuck at {}", b.read(Chain::height));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.shutdown();
    b.shutdown();
}
