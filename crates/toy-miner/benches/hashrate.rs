//! Miner hash rate next to raw SHA-256 compression, in the same run.
//!
//! * `raw_compress256` — sha2's `compress256`, one 64-byte block per
//!   iteration: the ceiling for one thread.
//! * `midstate_grind/1_thread` — the miner's inner loop (one compression per
//!   nonce from the midstate, target check included): on a CPU with SHA-NI,
//!   two nonces compressed side by side (`toy_miner::shani`).
//! * `midstate_grind_shani_x4/1_thread`, `midstate_grind_avx512_x16/1_thread`
//!   — each lane path forced (`Midstate::with_path`), where the CPU has it.
//! * `midstate_grind_portable/1_thread` — the same loop on sha2's
//!   `compress256`, one nonce at a time (the path before the lanes, and on
//!   CPUs without SHA-NI).
//! * `midstate_grind/all_threads` — the same on every core at once.
//! * `python_like/full_header_hash` — hashing the whole 165-byte header per
//!   nonce (three compressions), what a straightforward loop does.
//! * `workshop_text/empty` and `workshop_text/ten_txs` — the workshop
//!   chain's miner (`toy_workshop::miner::grind`): the decimal nonce sits in
//!   the block text's first SHA-256 block, so every try writes the text and
//!   hashes all of it (2 compressions for an empty block of ~122 bytes, 34
//!   for one with ten transactions, ~2.15 KB; the text is also written
//!   anew each try, which is why even the empty block runs below toy's
//!   header hashed whole).
//!
//! Run: `cargo bench -p toy-miner --bench hashrate`.
#![allow(missing_docs)] // criterion_group! generates undocumented items
#![allow(deprecated)] // sha2 0.10 takes generic-array 0.14 blocks (see toy_miner::pow)

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};
use sha2::compress256;
use sha2::digest::generic_array::GenericArray;
use toy_chain::{ChainParams, Hash};
use toy_miner::pow::{GrindPath, Midstate};

const BATCH: u64 = 100_000;

fn hashrate(c: &mut Criterion) {
    let mut header = ChainParams::dev().genesis().header;
    header.target = Hash::ZERO; // never met: every nonce is tried
    let mid = Midstate::new(&header);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut g = c.benchmark_group("hashrate");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("raw_compress256", |b| {
        let block = GenericArray::clone_from_slice(&[0x5au8; 64]);
        let mut state = [0u32; 8];
        b.iter(|| {
            for _ in 0..BATCH {
                compress256(&mut state, std::slice::from_ref(&block));
            }
            std::hint::black_box(state)
        })
    });
    g.bench_function("midstate_grind/1_thread", |b| b.iter(|| std::hint::black_box(mid.grind(0, BATCH))));
    g.bench_function("midstate_grind_portable/1_thread", |b| {
        b.iter(|| std::hint::black_box(mid.grind_portable(0, BATCH)))
    });
    for (name, path) in [("shani_x4", GrindPath::ShaNi), ("avx512_x16", GrindPath::Avx512)] {
        match Midstate::with_path(&header, path) {
            Some(m) => {
                g.bench_function(format!("midstate_grind_{name}/1_thread"), |b| {
                    b.iter(|| std::hint::black_box(m.grind(0, BATCH)))
                });
            }
            None => println!("hashrate: {name} not available on this CPU"),
        }
    }
    println!("hashrate: the miner grinds on {:?}", mid.path());
    g.throughput(Throughput::Elements(BATCH * threads as u64));
    g.bench_function("midstate_grind/all_threads", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for t in 0..threads as u64 {
                    let mid = &mid;
                    s.spawn(move || std::hint::black_box(mid.grind(t * BATCH, BATCH)));
                }
            })
        })
    });
    g.throughput(Throughput::Elements(BATCH / 10));
    g.bench_function("python_like/full_header_hash", |b| {
        b.iter(|| {
            let mut h = header.clone();
            for n in 0..BATCH / 10 {
                h.nonce = n;
                std::hint::black_box(h.hash());
            }
        })
    });
    let key = toy_workshop::SecretKey::from_hex(&format!("{:048x}", 7)).expect("key");
    let empty = toy_workshop::Block {
        number: 1,
        nonce: 0,
        parent: toy_workshop::Block::genesis().hash(),
        coinbase: key.public_hex(),
        txs: Vec::new(),
    };
    let txs = (0..10).map(|n| toy_workshop::state::sign_tx(&key, &key.public_hex(), n, 1)).collect();
    let full = toy_workshop::Block { txs, ..empty.clone() };
    g.throughput(Throughput::Elements(BATCH / 10));
    // Difficulty 64 is never met: every nonce is tried.
    g.bench_function("workshop_text/empty", |b| {
        b.iter(|| std::hint::black_box(toy_workshop::miner::grind(&empty, 64, 0, BATCH / 10)))
    });
    g.throughput(Throughput::Elements(BATCH / 100));
    g.bench_function("workshop_text/ten_txs", |b| {
        b.iter(|| std::hint::black_box(toy_workshop::miner::grind(&full, 64, 0, BATCH / 100)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1)).sample_size(20);
    targets = hashrate
}

fn main() {
    println!("threads: {}", std::thread::available_parallelism().map_or(1, |n| n.get()));
    benches();
    Criterion::default().configure_from_args().final_summary();
}
