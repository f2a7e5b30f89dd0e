//! Crash test: a child process imports blocks into a redb store and is killed
//! with SIGKILL at random moments, 100 times. After every kill the store must
//! reopen consistent: the tip, the canonical index, the transaction index and
//! the account state agree with a replay of the canonical blocks from genesis.
//! The child syncs batches (durability relaxed for each batch's own writes)
//! while it also mines; every block it announced (printed once its insert
//! returned) must be in the store after the kill.
//!
//! Runs without the test harness: the same binary is the parent (no
//! arguments) and the child (`TOY_CRASH_CHILD=<db path>`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use common::*;
use rand::{Rng, SeedableRng};
use toy_chain::{Address, Block, Chain, ChainParams, Hash, InsertOutcome, Keypair, MemoryStore, RedbStore, now_ms};

const KILLS: usize = 100;
const CHILD_ENV: &str = "TOY_CRASH_CHILD";

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(path) => child_main(Path::new(&path)),
        Err(_) => parent_main(),
    }
}

/// The child's chain: test rules, but side branches are never pruned, so
/// every block written stays to be found after the kill.
fn child_chain(path: &Path) -> Chain<RedbStore> {
    open_with(
        ChainParams { prune_depth: u64::MAX, ..ChainParams::test() },
        RedbStore::open(path).expect("open store"),
        Default::default(),
    )
}

/// A mined block on `prev` paying `to`, built without a chain.
fn next_block(prev: &Block, to: Address) -> Block {
    let mut header = prev.header.clone();
    header.parent = prev.hash();
    header.height += 1;
    header.timestamp_ms = prev.header.timestamp_ms.max(now_ms()) + 1;
    header.merkle_root = Hash::ZERO;
    header.miner = to;
    header.reward = ChainParams::test().block_reward;
    header.nonce = 0;
    mine(Block { header, txs: Vec::new() })
}

/// Two threads on one chain: a sync thread importing batches of blocks built
/// on the tip (durability relaxed per batch), and a miner thread making
/// payments, blocks and one-block reorgs with durable writes, printing
/// `announced <hash>` once each of its blocks is in.
fn child_main(path: &Path) {
    let chain = Arc::new(Mutex::new(child_chain(path)));
    let height = chain.lock().expect("lock").tip().height;
    println!("ready {height}");
    let syncer = {
        let chain = chain.clone();
        std::thread::spawn(move || {
            let peer = Keypair::from_seed(b"crash-peer").address();
            loop {
                let tip = {
                    let c = chain.lock().expect("lock");
                    c.block(&c.tip().hash).expect("read").expect("tip block")
                };
                let mut batch = vec![next_block(&tip, peer)];
                for _ in 0..3 {
                    let prev = batch.last().expect("non-empty").clone();
                    batch.push(next_block(&prev, peer));
                }
                let out = chain.lock().expect("lock").import_batch(batch, Some("peer"), now_ms());
                assert!(out.iter().all(Result::is_ok), "{out:?}");
            }
        })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(height);
    let recipient = Keypair::from_seed(b"crash-recipient").address();
    let announce = |hash: Hash| println!("announced {hash}");
    loop {
        let mut c = chain.lock().expect("lock");
        for i in 0..3 {
            let w = wallet(i);
            let nonce = c.account(&w.address()).nonce;
            let _ = c.add_tx(transfer(&w, recipient, rng.gen_range(1..100), 1, nonce), now_ms());
        }
        let tip = c.tip();
        if tip.height > 2 && rng.gen_bool(0.2) {
            // Two blocks on the tip's parent: a one-block reorg.
            let parent = c.header(&tip.hash).expect("tip header").parent;
            let a = child(&c, parent, vec![], miner(), 1 + rng.gen_range(0..1000));
            let ah = a.hash();
            c.insert_at(a, now_ms()).expect("insert");
            announce(ah);
            let b = child(&c, ah, vec![], miner(), 1000);
            let bh = b.hash();
            c.insert_at(b, now_ms()).expect("insert");
            announce(bh);
        } else {
            let template = c.template(miner(), now_ms());
            drop(c);
            let block = mine(template);
            let hash = block.hash();
            let out = chain.lock().expect("lock").insert_at(block, now_ms()).expect("insert");
            if matches!(
                out,
                InsertOutcome::Connected { .. } | InsertOutcome::SideBranch { .. } | InsertOutcome::Reorganised { .. }
            ) {
                announce(hash);
            }
        }
        if syncer.is_finished() {
            panic!("the sync thread stopped");
        }
    }
}

fn parent_main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe().expect("own path");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x70c4);
    let start = Instant::now();
    let mut max_height = 0;
    let mut announced_total = 0;
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        stdout.read_line(&mut line).expect("child output");
        assert!(line.starts_with("ready"), "round {round}: child said {line:?}");
        // Everything the child prints from here: the blocks it announced.
        let reader = std::thread::spawn(move || {
            stdout
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("announced ").and_then(|h| h.parse::<Hash>().ok()))
                .collect::<Vec<Hash>>()
        });
        // Let it import for a random while, then kill it mid-write.
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..60)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let announced = reader.join().expect("reader");
        max_height = max_height.max(check_consistent(&path, round));
        let reopened = child_chain(&path);
        for hash in &announced {
            assert!(
                reopened.block(hash).expect("read").is_some(),
                "round {round}: announced block {hash} lost by the kill"
            );
        }
        announced_total += announced.len();
    }
    println!(
        "crash: {KILLS} kills survived, chain reached height {max_height}, {announced_total} announced blocks all kept, {:?}",
        start.elapsed()
    );
    assert!(max_height > 10, "the child made progress between kills");
    assert!(announced_total > 10, "the miner announced blocks between kills");
}

/// Reopens the store and replays its canonical chain from genesis.
fn check_consistent(path: &Path, round: usize) -> u64 {
    let chain = child_chain(path);
    let tip = chain.tip();
    let mut replay: Chain<MemoryStore> = common::chain();
    for h in 1..=tip.height {
        let block = chain
            .block_at(h)
            .unwrap_or_else(|e| panic!("round {round}: read {h}: {e}"))
            .unwrap_or_else(|| panic!("round {round}: canonical block {h} missing"));
        assert_eq!(chain.hash_at(h), Some(block.hash()));
        for (i, tx) in block.txs.iter().enumerate() {
            let found = chain.find_tx(&tx.id()).unwrap_or_else(|e| panic!("round {round}: index: {e}"));
            assert_eq!(found.map(|(b, pos)| (b.header.height, pos)), Some((h, i)), "round {round}: tx index at {h}");
        }
        let out = replay.insert_at(block, now_ms()).expect("replay");
        assert!(matches!(out, InsertOutcome::Connected { .. }), "round {round}: block {h} replays: {out:?}");
    }
    assert_eq!(replay.tip().hash, tip.hash, "round {round}: tip agrees");
    assert_eq!(replay.state(), chain.state(), "round {round}: state agrees with the canonical blocks");
    tip.height
}
