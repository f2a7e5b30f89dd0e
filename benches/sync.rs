//! Sync speed: a fresh node downloading a 2 000-block chain (10 transactions
//! each) from one peer over loopback TCP, next to the chain's own import rate
//! for the same blocks, measured in the same run.
//!
//! * `sync/import` — the 2 000 blocks inserted straight into a fresh chain
//!   (redb store in a temporary directory, empty signature cache), one
//!   durable commit per write, as a node importing gossiped blocks does.
//! * `sync/import_batched` — the same with the sync's durability: relaxed
//!   for each batch of 32 blocks, one durable commit at its end. The fair
//!   ceiling for a sync.
//! * `sync/tcp` — a fresh node (same store, empty cache) connects to a node
//!   holding the chain and syncs it: `chain:status`, `chain:hashes`, batched
//!   `chain:blocks` over the whole stack (TCP, messages, peers, gossip trait).
//!
//! * `latency` (printed, not a criterion bench) — how long a node takes to
//!   answer `p2p:get_peers` on a fresh connection while it imports the
//!   2 000-block sync, next to the same probe on the idle source node in the
//!   same run (p50, p99, max). Before the chain handlers left the messaging
//!   dispatcher, a durable commit held every peer's messages.
//!
//! Throughput is in blocks; transactions are ten times that.
//! Run: `cargo bench --bench sync`.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use toy::chain::actor::ActorConfig;
use toy::chain::network::{ChainHandle, ChainNode};
use toy::chain::sync::BATCH;
use toy::chain::{
    Address, Block, Chain, ChainParams, Keypair, MemoryStore, RedbStore, Signature, Store, Transaction, TxKind,
    mine_simple, now_ms,
};
use toy::gossip::Gossip;
use toy::msg::{Messaging, Messenger};
use toy::net::TcpTransport;
use toy::p2p::{P2p, PeerNetwork};

const BLOCKS: usize = 2_000;
const TXS: usize = 10;

fn open<S: Store>(store: S) -> Chain<S> {
    toy_testing::chain::open(ChainParams::test(), store)
}

/// 2 000 blocks of 10 signed transfers each, built on the test preset.
fn build_chain() -> (Chain<MemoryStore>, Vec<Block>) {
    let mut chain = open(MemoryStore::new());
    let keys: Vec<Keypair> = (0..16).map(ChainParams::dev_wallet).collect();
    let mut nonces = [0u64; 16];
    let miner = Keypair::from_seed(b"bench-miner").address();
    let start = now_ms() - (BLOCKS as u64 + 10) * 1_000;
    let mut blocks = Vec::with_capacity(BLOCKS);
    for b in 0..BLOCKS {
        let now = start + b as u64 * 1_000;
        for t in 0..TXS {
            let w = (b * TXS + t) % keys.len();
            let mut tx = Transaction {
                kind: TxKind::Transfer,
                sender: keys[w].address(),
                recipient: Address([2; 33]),
                amount: 1,
                fee: 1,
                nonce: nonces[w],
                signature: Signature::EMPTY,
            };
            keys[w].sign_tx(&mut tx, &ChainParams::test().chain_id());
            nonces[w] += 1;
            chain.add_tx(tx, now).expect("valid");
        }
        let block = mine_simple(chain.template(miner, now)).expect("test difficulty");
        assert_eq!(block.txs.len(), TXS);
        chain.insert_at(block.clone(), now).expect("insert");
        blocks.push(block);
    }
    (chain, blocks)
}

/// Inserts `blocks` into a fresh chain on a fresh redb store; with `batch`
/// above 1, durability is relaxed for each `batch` blocks and restored at
/// the end of each (as a sync does). The time taken.
fn import(blocks: &[Block], batch: usize, want: &toy::chain::Tip) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = open(RedbStore::open(&dir.path().join("chain.redb")).expect("redb"));
    let t = Instant::now();
    for part in blocks.chunks(batch) {
        if batch > 1 {
            let out = chain.import_batch(part.to_vec(), None, toy::chain::now_ms());
            assert!(out.iter().all(Result::is_ok), "import");
        } else {
            for block in part {
                chain.insert(block.clone()).expect("insert");
            }
        }
    }
    let took = t.elapsed();
    assert_eq!(&chain.tip(), want);
    took
}

type Net = Gossip<P2p<Messaging<TcpTransport>>>;

/// A full node stack on loopback around `chain`.
async fn node<S: Store>(
    chain: Chain<S>,
    boot: Vec<String>,
    actor: ActorConfig,
) -> (P2p<Messaging<TcpTransport>>, ChainNode<S, Net>) {
    let (t, ev) = TcpTransport::new(Default::default());
    let (msg, events) = Messaging::new(t, ev, Default::default());
    msg.listen("127.0.0.1:0").await.expect("listen");
    let config = toy::p2p::Config::builder().bootstrap(boot).build().expect("config");
    let p2p = P2p::start(msg, events, config).expect("p2p");
    let gossip = Arc::new(Gossip::new(p2p.clone(), Default::default()));
    let chain = ChainHandle::spawn_with(chain, actor).expect("actor");
    let node = ChainNode::install(chain, gossip).expect("install");
    (p2p, node)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (source_chain, blocks) = build_chain();
    let want = source_chain.tip();
    let (source_p2p, source) = rt.block_on(node(source_chain, vec![], ActorConfig::default()));
    let source_addr = source_p2p.local_addr();

    let mut g = c.benchmark_group("sync");
    g.sample_size(10).measurement_time(Duration::from_secs(40)).throughput(Throughput::Elements(BLOCKS as u64));
    // Durable: one commit per write. Batched: the sync's durability.
    for (name, batch) in [("import", 1), ("import_batched", BATCH)] {
        g.bench_function(name, |b| b.iter_custom(|iters| (0..iters).map(|_| import(&blocks, batch, &want)).sum()));
    }
    // Through the chain actor: with its group commits (`tcp`), and with
    // every write durable on its own (`tcp_each_durable`).
    for (name, group_commit) in [("tcp", true), ("tcp_each_durable", false)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let chain = open(RedbStore::open(&dir.path().join("chain.redb")).expect("redb"));
                    let actor = ActorConfig { group_commit, ..Default::default() };
                    total += rt.block_on(async {
                        let t = Instant::now();
                        let (p2p, sink) = node(chain, vec![source_addr.clone()], actor).await;
                        let mut tips = sink.chain().subscribe();
                        let _ = tips.wait_for(|t| *t == want).await;
                        let took = t.elapsed();
                        sink.shutdown();
                        sink.chain().shutdown().await;
                        p2p.shutdown().await;
                        took
                    });
                }
                total
            })
        });
    }
    g.finish();
    source.shutdown();
    rt.block_on(source_p2p.shutdown());
}

/// Latencies of `p2p:get_peers` at `addr`, one fresh connection per probe,
/// every 10 ms until `done` says stop (at most 2 000 probes).
async fn probe(addr: &str, done: impl Fn() -> bool) -> Vec<Duration> {
    let (t, ev) = TcpTransport::new(Default::default());
    let (msg, _events) = Messaging::new(t, ev, Default::default());
    let mut out = Vec::new();
    while !done() && out.len() < 2_000 {
        if let Ok(conn) = msg.connect(addr).await {
            let t = Instant::now();
            if msg.request(conn, "p2p:get_peers", bytes::Bytes::new()).await.is_ok() {
                out.push(t.elapsed());
            }
            msg.close(conn);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    msg.shutdown().await;
    out
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at =
        |q: f64| v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or_default();
    format!("n={} p50={:?} p99={:?} max={:?}", v.len(), at(0.5), at(0.99), v.last().copied().unwrap_or_default())
}

fn latency(_c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (source_chain, _) = build_chain();
    let want = source_chain.tip();
    let (source_p2p, source) = rt.block_on(node(source_chain, vec![], ActorConfig::default()));
    let source_addr = source_p2p.local_addr();
    rt.block_on(async {
        // Baseline: the idle source, 200 probes.
        let n = std::sync::atomic::AtomicUsize::new(0);
        let idle = probe(&source_addr, || n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= 200).await;
        println!("latency: get_peers on an idle node:          {}", percentiles(idle));
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = open(RedbStore::open(&dir.path().join("chain.redb")).expect("redb"));
        let (p2p, sink) = node(chain, vec![source_addr.clone()], ActorConfig::default()).await;
        let sink_addr = p2p.local_addr();
        let busy = probe(&sink_addr, || sink.chain().tip() == want).await;
        println!("latency: get_peers on a node syncing 2 000 blocks: {}", percentiles(busy));
        sink.shutdown();
        p2p.shutdown().await;
    });
    source.shutdown();
    rt.block_on(source_p2p.shutdown());
}

criterion_group!(benches, bench, latency);
criterion_main!(benches);
