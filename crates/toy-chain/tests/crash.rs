//! Crash test: a child process imports blocks into a redb store and is killed
//! with SIGKILL at random moments, 100 times. After every kill the store must
//! reopen consistent: the tip, the canonical index, the transaction index and
//! the account state agree with a replay of the canonical blocks from genesis.
//!
//! Runs without the test harness: the same binary is the parent (no
//! arguments) and the child (`TOY_CRASH_CHILD=<db path>`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};
use toy_chain::{Chain, InsertOutcome, Keypair, MemoryStore, RedbStore, now_ms};

const KILLS: usize = 100;
const CHILD_ENV: &str = "TOY_CRASH_CHILD";

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(path) => child_main(Path::new(&path)),
        Err(_) => parent_main(),
    }
}

/// Imports blocks forever: payments, and every few blocks a competing branch
/// that wins, so disconnects are written too; durability is relaxed at
/// random, as a sync does per batch.
fn child_main(path: &Path) {
    let mut chain = open(RedbStore::open(path).expect("open store"));
    println!("ready {}", chain.tip().height);
    let mut rng = rand::rngs::StdRng::seed_from_u64(chain.tip().height);
    let recipient = Keypair::from_seed(b"crash-recipient").address();
    loop {
        // Half the time durability is relaxed, as during a sync batch: a
        // kill may then lose the blocks since the last durable point, never
        // consistency.
        let relax = rng.gen_bool(0.5);
        chain.set_durable(!relax).expect("durability");
        for i in 0..3 {
            let w = wallet(i);
            let nonce = chain.account(&w.address()).nonce;
            let _ = chain.add_tx(transfer(&w, recipient, rng.gen_range(1..100), 1, nonce), now_ms());
        }
        let tip = chain.tip();
        if tip.height > 2 && rng.gen_bool(0.2) {
            // Two blocks on the tip's parent: a one-block reorg.
            let parent = chain.header(&tip.hash).expect("tip header").parent;
            let a = child(&chain, parent, vec![], miner(), 1 + rng.gen_range(0..1000));
            let ah = a.hash();
            chain.insert_at(a, now_ms()).expect("insert");
            let b = child(&chain, ah, vec![], miner(), 1000);
            chain.insert_at(b, now_ms()).expect("insert");
        } else {
            let block = mine(chain.template(miner(), now_ms()));
            chain.insert_at(block, now_ms()).expect("insert");
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
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        BufReader::new(stdout).read_line(&mut line).expect("child output");
        assert!(line.starts_with("ready"), "round {round}: child said {line:?}");
        // Let it import for a random while, then kill it mid-write.
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..60)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        max_height = max_height.max(check_consistent(&path, round));
    }
    println!("crash: {KILLS} kills survived, chain reached height {max_height}, {:?}", start.elapsed());
    assert!(max_height > 10, "the child made progress between kills");
}

/// Reopens the store and replays its canonical chain from genesis.
fn check_consistent(path: &Path, round: usize) -> u64 {
    let chain: Chain<RedbStore> = open(RedbStore::open(path).unwrap_or_else(|e| panic!("round {round}: reopen: {e}")));
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
