//! The miner against toy-chain's rules: found blocks validate, stale work is
//! abandoned, and an exhausted nonce space moves the timestamp.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use toy_chain::{Block, Chain, ChainParams, InsertOutcome, K256Verifier, Keypair, MemoryStore, SigCache, now_ms};
use toy_miner::{Config, Miner, mine_blocking};

/// Generous deadline for a condition; never a fixed sleep.
const DEADLINE: Duration = Duration::from_secs(60);

fn chain(params: ChainParams) -> Chain<MemoryStore> {
    Chain::open(
        params,
        MemoryStore::new(),
        Arc::new(K256Verifier::new()),
        Arc::new(SigCache::default()),
        Default::default(),
    )
    .expect("open")
}

fn miner_addr() -> toy_chain::Address {
    Keypair::from_seed(b"miner").address()
}

/// Waits for the next found block.
fn next_block(rx: &mut tokio::sync::mpsc::Receiver<Block>) -> Block {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(DEADLINE, rx.recv()).await.expect("a block within the deadline").expect("open")
    })
}

#[test]
fn blocking_miner_output_validates() {
    let mut c = chain(ChainParams::test());
    for height in 1..=5 {
        let block = mine_blocking(c.template(miner_addr(), now_ms()), u64::MAX).expect("found");
        assert!(matches!(c.insert(block).expect("insert"), InsertOutcome::Connected { height: h, .. } if h == height));
    }
}

#[test]
fn threaded_miner_blocks_validate_at_dev_difficulty() {
    // The dev preset: 16 zero bits (about 65 000 hashes per block).
    let c = Arc::new(Mutex::new(chain(ChainParams::dev())));
    let source = {
        let c = c.clone();
        move || Some(c.lock().expect("chain").template(miner_addr(), now_ms()))
    };
    let (miner, mut found) =
        Miner::start(Config { threads: 2, ..Default::default() }, Arc::new(source)).expect("start");
    for height in 1..=3u64 {
        let block = next_block(&mut found);
        let out = c.lock().expect("chain").insert(block).expect("insert");
        assert!(matches!(out, InsertOutcome::Connected { height: h, .. } if h == height), "{out:?}");
        miner.new_template();
    }
    assert!(miner.total_hashes() > 0);
    miner.stop();
}

#[test]
fn new_template_abandons_stale_work() {
    // First template: an impossible target. Then the tip "changes" to an
    // easy template; the block found must be the new one.
    let params = ChainParams::test();
    let calls = Arc::new(AtomicU64::new(0));
    let source = {
        let calls = calls.clone();
        let params = params.clone();
        move || {
            let mut b = params.genesis();
            b.header.height = 1;
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                b.header.target = toy_chain::Hash::ZERO; // never met
                b.header.reward = 1;
            } else {
                b.header.reward = 2;
            }
            Some(b)
        }
    };
    let (miner, mut found) =
        Miner::start(Config { threads: 2, ..Default::default() }, Arc::new(source)).expect("start");
    // Wait until the miner is grinding the impossible template.
    let deadline = std::time::Instant::now() + DEADLINE;
    while miner.total_hashes() < 10_000 {
        assert!(std::time::Instant::now() < deadline, "miner never started");
        std::thread::yield_now();
    }
    miner.new_template();
    let block = next_block(&mut found);
    assert_eq!(block.header.reward, 2, "found on the fresh template, the stale one was dropped");
    assert!(toy_chain::target::meets(&block.hash(), &block.header.target));
    miner.stop();
}

#[test]
fn exhausted_nonce_space_moves_the_timestamp() {
    let params = ChainParams::test();
    // Find a template whose first 64 nonces all miss the target.
    let mut template = params.genesis();
    template.header.height = 1;
    let mut tweak = 0u64;
    loop {
        template.header.reward = tweak;
        let mid = toy_miner::pow::Midstate::new(&template.header);
        if mid.grind(0, 64).is_none() {
            break;
        }
        tweak += 1;
    }
    let ts = template.header.timestamp_ms;
    let block = mine_blocking(template.clone(), 64).expect("found after moving the timestamp");
    assert!(block.header.timestamp_ms > ts, "timestamp moved");
    assert!(block.header.nonce < 64);
    assert!(toy_chain::target::meets(&block.hash(), &block.header.target));
    // The threaded miner does the same with a small per-worker range.
    let (miner, mut found) = Miner::start(
        Config { threads: 1, nonces_per_worker: Some(64), ..Default::default() },
        Arc::new(move || Some(template.clone())),
    )
    .expect("start");
    let block = next_block(&mut found);
    assert!(block.header.timestamp_ms > ts);
    assert!(toy_chain::target::meets(&block.hash(), &block.header.target));
    miner.stop();
}

#[test]
fn zero_threads_is_refused() {
    let r = Miner::start(Config { threads: 0, ..Default::default() }, Arc::new(|| Some(ChainParams::test().genesis())));
    assert!(r.is_err());
}

#[test]
fn refreshes_templates_on_its_interval_and_reports_a_hash_rate() {
    let calls = Arc::new(AtomicU64::new(0));
    let source = {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let mut b = ChainParams::test().genesis();
            b.header.target = toy_chain::Hash::ZERO; // never met: keeps grinding
            Some(b)
        }
    };
    let config = Config { threads: 1, refresh: Duration::from_millis(50), ..Default::default() };
    let (miner, _found) = Miner::start(config, Arc::new(source)).expect("start");
    let deadline = std::time::Instant::now() + DEADLINE;
    while calls.load(Ordering::SeqCst) < 3 || miner.hash_rate() <= 0.0 {
        assert!(std::time::Instant::now() < deadline, "no refresh or no hash rate");
        std::thread::yield_now();
    }
    miner.stop();
}

#[test]
fn mining_within_a_budget_finds_the_first_nonce_and_stops_when_cancelled() {
    use std::sync::atomic::AtomicBool;
    let params = ChainParams::dev();
    let mut c = chain(params);
    let template = c.template(miner_addr(), now_ms());
    // The same nonce the plain grind finds first.
    let want = toy_miner::pow::Midstate::new(&template.header).grind(0, 1 << 28).expect("dev difficulty");
    let go = AtomicBool::new(false);
    let block = toy_miner::mine_within(template.clone(), want + 1, &go).expect("within the budget");
    assert_eq!(block.header.nonce, want);
    assert!(matches!(c.insert(block).expect("insert"), InsertOutcome::Connected { .. }));
    // A budget that stops short of it finds nothing; a cancelled search
    // finds nothing at once, whatever its budget.
    assert!(toy_miner::mine_within(template.clone(), want, &go).is_none());
    let stop = AtomicBool::new(true);
    assert!(toy_miner::mine_within(template, u64::MAX, &stop).is_none());
}
