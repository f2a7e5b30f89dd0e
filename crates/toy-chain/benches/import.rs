//! Block import speed next to raw k256 verification, measured in the same run.
//!
//! * `verify/raw_k256` — one `VerifyingKey::verify_prehash` per iteration, on
//!   one core: the ceiling per core.
//! * `import/cold` — a 1 000-transaction block imported by `Chain::insert_at`
//!   with an empty signature cache: every signature checked, on all cores.
//! * `import/warm` — the same block with every signature already cached (as
//!   when its transactions came through the mempool).
//! * `verify/raw_secp256k1`, `import/cold_secp256k1` — the same with the
//!   second verifier, libsecp256k1 (`Secp256k1Verifier`, feature
//!   `secp256k1`), in the same run.
//! * `redb/blocks` — 10-transaction blocks (cache warm) imported into a redb
//!   store, one durable commit each.
//! * `open/100k_blocks` — `Chain::open` on a store holding a 100 000-block
//!   chain (empty blocks, in memory): rebuilding the block index, the
//!   canonical chain and the side-branch set. Printed beside it, measured
//!   once on the same index: the side-branch set built the way `open` did
//!   before (`Vec::contains` per indexed hash, quadratic).
//! * `headers/check_2000` — `Chain::check_headers` on a 2 000-header answer
//!   (what headers-first sync does before fetching any body), next to
//!   `headers/sha256_2000`: only the 2 000 header hashes, the proof-of-work
//!   part of the check and its floor.
//!
//! Run: `cargo bench -p toy-chain --bench import`.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use toy_chain::{
    Address, Block, Chain, ChainParams, Hash, K256Verifier, Keypair, MemoryStore, RedbStore, Secp256k1Verifier,
    SigCache, Signature, Store, Transaction, TxKind, Verifier, mine_simple,
};

const BLOCK_TXS: usize = 1000;
const NOW: u64 = 1_700_000_000_000 + 86_400_000;

fn params() -> ChainParams {
    ChainParams { max_txs_per_block: BLOCK_TXS, ..ChainParams::test() }
}

fn open<S: Store>(store: S, cache: Arc<SigCache>) -> Chain<S> {
    open_with(store, cache, Arc::new(K256Verifier::new()))
}

fn open_with<S: Store>(store: S, cache: Arc<SigCache>, verifier: Arc<dyn Verifier>) -> Chain<S> {
    Chain::open(params(), store, verifier, cache, Default::default()).expect("open")
}

/// A signed transfer from dev wallet `w` with nonce `n`.
fn transfer(keys: &[Keypair], w: usize, n: u64) -> Transaction {
    let mut tx = Transaction {
        kind: TxKind::Transfer,
        sender: keys[w].address(),
        recipient: Address([2; 33]),
        amount: 1,
        fee: 1,
        nonce: n,
        signature: Signature::EMPTY,
    };
    keys[w].sign_tx(&mut tx, &params().chain_id());
    tx
}

fn block_on(chain: &mut Chain<MemoryStore>, txs: Vec<Transaction>) -> Block {
    for tx in txs {
        chain.add_tx(tx, NOW).expect("valid");
    }
    mine_simple(chain.template(Address([3; 33]), NOW)).expect("test difficulty")
}

fn verify(c: &mut Criterion) {
    let key = Keypair::from_seed(b"bench");
    let hash = Hash::digest(b"message");
    let sig = key.sign_hash(&hash);
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&key.address().0).expect("key");
    let s = k256::ecdsa::Signature::from_slice(&sig.0).expect("sig");
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_k256", |b| b.iter(|| vk.verify_prehash(&hash.0, &s).expect("valid")));
    // The same signature through libsecp256k1 directly (no key cache, no
    // trait): its ceiling per core.
    let ctx = secp256k1::Secp256k1::verification_only();
    let pk = secp256k1::PublicKey::from_slice(&key.address().0).expect("key");
    let ss = secp256k1::ecdsa::Signature::from_compact(&sig.0).expect("sig");
    let msg = secp256k1::Message::from_digest(hash.0);
    g.bench_function("raw_secp256k1", |b| b.iter(|| ctx.verify_ecdsa(&msg, &ss, &pk).expect("valid")));
    // The same loop on every core at once: what the hardware really gives
    // when all cores verify (SMT siblings or a busy host share one core).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    g.throughput(Throughput::Elements(cores as u64 * 100));
    g.sample_size(20);
    g.bench_function("raw_k256_all_cores", |b| {
        b.iter(|| {
            std::thread::scope(|sc| {
                for _ in 0..cores {
                    sc.spawn(|| {
                        for _ in 0..100 {
                            vk.verify_prehash(&hash.0, &s).expect("valid");
                        }
                    });
                }
            })
        })
    });
    g.finish();
}

fn import(c: &mut Criterion) {
    let keys: Vec<Keypair> = (0..toy_chain::params::DEV_WALLETS).map(ChainParams::dev_wallet).collect();
    let txs: Vec<Transaction> =
        (0..BLOCK_TXS).map(|i| transfer(&keys, i % keys.len(), (i / keys.len()) as u64)).collect();
    let mut builder = open(MemoryStore::new(), Arc::new(SigCache::default()));
    let block = block_on(&mut builder, txs);
    assert_eq!(block.txs.len(), BLOCK_TXS);
    println!("import: a {BLOCK_TXS}-transaction block encodes to {} bytes", block.encode().len());
    let warm = Arc::new(SigCache::default());
    for tx in &block.txs {
        warm.insert(tx.id(), tx.signature);
    }
    let mut g = c.benchmark_group("import");
    g.throughput(Throughput::Elements(BLOCK_TXS as u64));
    g.sample_size(20);
    g.bench_function("cold", |b| {
        b.iter_batched(
            || (open(MemoryStore::new(), Arc::new(SigCache::default())), block.clone()),
            |(mut chain, block)| {
                let out = chain.insert_at(block, NOW).expect("insert");
                assert!(matches!(out, toy_chain::InsertOutcome::Connected { .. }));
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("cold_secp256k1", |b| {
        b.iter_batched(
            || {
                (
                    open_with(MemoryStore::new(), Arc::new(SigCache::default()), Arc::new(Secp256k1Verifier::new())),
                    block.clone(),
                )
            },
            |(mut chain, block)| {
                let out = chain.insert_at(block, NOW).expect("insert");
                assert!(matches!(out, toy_chain::InsertOutcome::Connected { .. }));
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("warm", |b| {
        b.iter_batched(
            || (open(MemoryStore::new(), warm.clone()), block.clone()),
            |(mut chain, block)| {
                let out = chain.insert_at(block, NOW).expect("insert");
                assert!(matches!(out, toy_chain::InsertOutcome::Connected { .. }));
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn redb_blocks(c: &mut Criterion) {
    // A chain of small blocks, built once in memory.
    let keys: Vec<Keypair> = (0..toy_chain::params::DEV_WALLETS).map(ChainParams::dev_wallet).collect();
    let cache = Arc::new(SigCache::default());
    let mut builder = open(MemoryStore::new(), cache.clone());
    let mut blocks = Vec::new();
    let mut nonce = vec![0u64; keys.len()];
    for _ in 0..300 {
        let txs: Vec<Transaction> = (0..10)
            .map(|i| {
                let w = i % keys.len();
                nonce[w] += 1;
                transfer(&keys, w, nonce[w] - 1)
            })
            .collect();
        let mut block = block_on(&mut builder, txs);
        block.header.timestamp_ms = NOW - 1_000_000 + blocks.len() as u64 * 1000;
        let block = mine_simple(block).expect("mine");
        builder.insert_at(block.clone(), NOW).expect("build");
        blocks.push(block);
    }
    let mut g = c.benchmark_group("redb");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    let mut file_bytes = 0u64;
    g.bench_function("blocks", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("bench.redb");
                let mut chain = open(RedbStore::open(&path).expect("open"), cache.clone());
                let n = left.min(blocks.len());
                let start = Instant::now();
                for block in &blocks[..n] {
                    chain.insert_at(block.clone(), NOW).expect("insert");
                }
                total += start.elapsed();
                left -= n;
                drop(chain);
                if n == blocks.len() {
                    file_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                }
            }
            total
        })
    });
    g.finish();
    if file_bytes > 0 {
        println!("redb: {} bytes on disk for {} blocks of 10 transactions", file_bytes, blocks.len());
    }
}

/// Blocks in the chain `open` is measured on.
const OPEN_BLOCKS: usize = 100_000;

fn open_long_chain(c: &mut Criterion) {
    // No proof of work to grind: every hash meets the easiest target.
    let easy = ChainParams {
        initial_target: toy_chain::target::leading_zeros(0),
        pow_limit: toy_chain::target::leading_zeros(0),
        ..ChainParams::test()
    };
    let fresh = |store: MemoryStore| {
        Chain::open(
            easy.clone(),
            store,
            Arc::new(K256Verifier::new()),
            Arc::new(SigCache::default()),
            Default::default(),
        )
        .expect("open")
    };
    let mut chain = fresh(MemoryStore::new());
    let miner = Keypair::from_seed(b"bench-miner").address();
    let t = Instant::now();
    for i in 0..OPEN_BLOCKS {
        let block = chain.template(miner, NOW + i as u64 * 1000);
        chain.insert_at(block, NOW + i as u64 * 1000).expect("insert");
    }
    println!("open: built a {OPEN_BLOCKS}-block chain in {:?}", t.elapsed());
    let store = chain.store().clone();
    // The quadratic side-set computation `open` used before, once.
    let canonical: Vec<Hash> = (0..=OPEN_BLOCKS as u64).filter_map(|h| chain.hash_at(h)).collect();
    let t = Instant::now();
    let side = canonical.iter().filter(|h| !canonical.contains(h)).count();
    println!(
        "open: baseline, side set by Vec::contains over {} hashes: {:?} ({side} side)",
        canonical.len(),
        t.elapsed()
    );
    let mut g = c.benchmark_group("open");
    g.sample_size(10);
    g.throughput(Throughput::Elements(OPEN_BLOCKS as u64));
    g.bench_function("100k_blocks", |b| {
        b.iter_batched(|| store.clone(), |s| fresh(s).tip().height, BatchSize::LargeInput)
    });
    g.finish();
}

fn headers_first(c: &mut Criterion) {
    const HEADERS: usize = 2_000;
    let mut source = open(MemoryStore::new(), Arc::new(SigCache::default()));
    for i in 0..HEADERS as u64 {
        let block = mine_simple(source.template(Address([3; 33]), NOW + i)).expect("test difficulty");
        source.insert_at(block, NOW + HEADERS as u64).expect("insert");
    }
    let headers: Vec<toy_chain::Header> =
        (1..=HEADERS as u64).filter_map(|h| source.hash_at(h).and_then(|x| source.header(&x)).cloned()).collect();
    let fresh = open(MemoryStore::new(), Arc::new(SigCache::default()));
    let mut g = c.benchmark_group("headers");
    g.throughput(Throughput::Elements(HEADERS as u64));
    g.bench_function("sha256_2000", |b| b.iter(|| headers.iter().map(toy_chain::Header::hash).count()));
    g.bench_function("check_2000", |b| {
        b.iter(|| fresh.check_headers(&headers, NOW + HEADERS as u64).expect("valid").hashes.len())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = verify, import, redb_blocks, open_long_chain, headers_first
}

fn main() {
    println!("cores: {}", std::thread::available_parallelism().map_or(1, |n| n.get()));
    benches();
    Criterion::default().configure_from_args().final_summary();
}
