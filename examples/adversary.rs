//! The course's bad actor: a peer that keeps sending invalid data.
//!
//! ```text
//! cargo run --example adversary -- --peer 127.0.0.1:15151
//! ```
//!
//! It follows the real chain (it syncs like any node, so its forgeries sit on
//! the current tip), then sends, straight onto the wire and bypassing its own
//! checks: every invalid-block case of the chain rules (bad proof of work,
//! wrong target, wrong height, bad Merkle root, timestamps too old and too far
//! ahead, an overpaid reward, a bad signature inside, insufficient funds, a
//! double spend inside one block, a wrong nonce, an unauthorised mint, and a
//! block changed in the middle of the chain and re-mined), invalid
//! transactions (bad signature, replayed nonce, insufficient funds, double
//! spend, unauthorised mint), malformed bytes, a gossip flood, and on raw TCP
//! a garbage message and an oversize frame.
//!
//! Honest nodes ban it quickly, so whenever it is dropped it comes back as a
//! new identity (a new port) and goes on with the next attack. It prints one
//! line per invalid block or transaction (`sent invalid block <hash> (<case>)`)
//! and per drop, so a test can check that no honest node kept any of it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use rand::Rng;
use toy::chain::network::{ChainNode, NEW_BLOCK, NEW_TX, lock};
use toy::chain::types::merkle_root;
use toy::chain::{
    Block, Chain, ChainParams, Hash, K256Verifier, Keypair, MemoryStore, SigCache, Signature, Transaction, TxKind,
    now_ms,
};
use toy::gossip::Gossip;
use toy::msg::{Messaging, Messenger};
use toy::net::TcpTransport;
use toy::p2p::{P2p, PeerEvent, PeerNetwork};

/// A peer that sends invalid data.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Honest node(s) to attack (p2p address, repeatable).
    #[arg(long, required = true)]
    peer: Vec<String>,
    /// Chain preset of the network.
    #[arg(long, default_value = "dev")]
    preset: String,
    /// Rounds through the whole list of attacks (0: until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    rounds: u64,
    /// Pause between attacks in milliseconds.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
}

/// One forged message: what it carries (`block` or `tx`), which case it
/// is, and its bytes.
struct Attack {
    kind: &'static str,
    case: &'static str,
    bytes: Vec<u8>,
    /// Block hash or transaction id, printed so tests can look for it.
    id: Option<Hash>,
}

fn block_attack(case: &'static str, block: Block) -> Attack {
    Attack { kind: "block", case, id: Some(block.hash()), bytes: block.encode() }
}

fn tx_attack(case: &'static str, tx: Transaction) -> Attack {
    Attack { kind: "tx", case, id: Some(tx.id()), bytes: tx.encode() }
}

fn transfer(from: &Keypair, to: &Keypair, amount: u64, nonce: u64) -> Transaction {
    let mut tx = Transaction {
        kind: TxKind::Transfer,
        sender: from.address(),
        recipient: to.address(),
        amount,
        fee: 1,
        nonce,
        signature: Signature::EMPTY,
    };
    from.sign_tx(&mut tx, &ChainParams::dev().chain_id());
    tx
}

/// Sets the Merkle root for `txs` and grinds a nonce meeting the header's target.
fn seal(mut block: Block) -> Block {
    block.header.merkle_root = merkle_root(block.txs.iter().map(Transaction::wtxid));
    remine(block)
}

/// Grinds with the miner's midstate code (the network's real difficulty
/// applies: forging costs the adversary real work).
fn remine(block: Block) -> Block {
    let fallback = block.clone();
    toy::miner::mine_blocking(block, u64::MAX).unwrap_or(fallback)
}

/// Every forgery, built on the current tip of `chain`. The chain is only
/// read at the start (a snapshot), so the node keeps running while we grind.
fn forge(chain: &Arc<Mutex<Chain<MemoryStore>>>) -> Vec<Attack> {
    let snapshot = {
        let c = lock(chain);
        let tip = c.tip();
        let header = c.header(&tip.hash).cloned().unwrap_or_else(|| c.params().genesis().header);
        let ctx = c.context_for(&tip.hash, now_ms()).ok();
        let nonce = c.account(&ChainParams::dev_wallet(15).address()).nonce;
        let mid = if tip.height >= 2 { c.block_at(tip.height / 2).ok().flatten() } else { None };
        (tip, header, ctx, nonce, mid, c.params().clone())
    };
    forge_from(snapshot)
}

type Snapshot =
    (toy::chain::Tip, toy::chain::Header, Option<toy::chain::BlockContext>, u64, Option<Block>, ChainParams);

fn forge_from((tip, tip_header, ctx, nonce, mid, params): Snapshot) -> Vec<Attack> {
    let me = Keypair::from_seed(b"adversary");
    let victim = ChainParams::dev_wallet(15);
    let poor = Keypair::from_seed(b"adversary-poor");
    let template = || {
        let mut c = Block { header: tip_header.clone(), txs: vec![] };
        c.header.parent = tip.hash;
        c.header.height += 1;
        c.header.timestamp_ms = now_ms();
        c.header.miner = me.address();
        c.header.reward = params.block_reward;
        if let Some(ctx) = &ctx {
            c.header.target = ctx.expected_target;
            c.header.timestamp_ms = c.header.timestamp_ms.max(ctx.median_time_past_ms + 1);
        }
        c
    };
    let mut out = Vec::new();

    // Blocks.
    let mut b = seal(template());
    while b.hash() <= b.header.target {
        b.header.nonce = b.header.nonce.wrapping_add(1);
    }
    out.push(block_attack("bad proof of work", b));
    let mut b = template();
    b.header.target = Hash([0xff; 32]);
    out.push(block_attack("wrong target", seal(b)));
    let mut b = template();
    b.header.height += 1;
    out.push(block_attack("wrong height", seal(b)));
    let mut b = template();
    b.txs = vec![transfer(&victim, &me, 1, nonce)];
    b.header.reward += 1;
    b.header.merkle_root = Hash([7; 32]);
    out.push(block_attack("bad merkle root", remine(b)));
    let mut b = template();
    b.header.timestamp_ms = now_ms() + 24 * 3600 * 1000;
    out.push(block_attack("timestamp too far ahead", seal(b)));
    let mut b = template();
    b.header.timestamp_ms = params.genesis_timestamp_ms;
    out.push(block_attack("timestamp before the median", seal(b)));
    let mut b = template();
    b.header.reward += 1_000_000;
    out.push(block_attack("overpaid reward", seal(b)));
    let mut b = template();
    let mut forged = transfer(&victim, &me, 5, nonce);
    forged.amount = 500_000;
    b.txs = vec![forged];
    b.header.reward += 1;
    out.push(block_attack("bad signature inside", seal(b)));
    let mut b = template();
    b.txs = vec![transfer(&poor, &me, 1_000, 0)];
    b.header.reward += 1;
    out.push(block_attack("insufficient funds", seal(b)));
    let mut b = template();
    b.txs = vec![transfer(&victim, &me, 10, nonce), transfer(&victim, &poor, 10, nonce)];
    b.header.reward += 2;
    out.push(block_attack("double spend in one block", seal(b)));
    let mut b = template();
    b.txs = vec![transfer(&victim, &me, 10, nonce + 3)];
    b.header.reward += 1;
    out.push(block_attack("wrong nonce", seal(b)));
    let mut b = template();
    let mut mint = Transaction {
        kind: TxKind::Mint,
        sender: me.address(),
        recipient: me.address(),
        amount: 1_000_000,
        fee: 0,
        nonce: 0,
        signature: Signature::EMPTY,
    };
    me.sign_tx(&mut mint, &ChainParams::dev().chain_id());
    b.txs = vec![mint.clone()];
    out.push(block_attack("unauthorised mint", seal(b)));
    if let Some(mut mid) = mid {
        // History rewritten: a past block paying its miner more, re-mined.
        mid.header.reward += 1_000;
        mid.header.nonce = 0;
        out.push(block_attack("block changed in the middle of the chain and re-mined", remine(mid)));
    }

    // Transactions.
    let mut t = transfer(&victim, &me, 5, nonce);
    t.amount = 9_999;
    out.push(tx_attack("transaction with a bad signature", t));
    if nonce > 0 {
        out.push(tx_attack("replayed nonce", transfer(&victim, &me, 5, nonce - 1)));
    }
    out.push(tx_attack("transaction without funds", transfer(&poor, &me, 100, 0)));
    out.push(tx_attack("unauthorised mint transaction", mint));
    // A double spend: the first half is a valid payment, the second spends
    // the same nonce again.
    let first = transfer(&victim, &me, 7, nonce);
    out.push(Attack { kind: "tx", case: "double spend, first half (valid)", id: None, bytes: first.encode() });
    out.push(tx_attack("double spend, second half (same nonce)", transfer(&victim, &poor, 7, nonce)));

    // Malformed bytes.
    let mut rng = rand::thread_rng();
    let junk: Vec<u8> = (0..200).map(|_| rng.r#gen()).collect();
    out.push(Attack { kind: "block", case: "malformed block bytes", bytes: junk.clone(), id: None });
    out.push(Attack { kind: "tx", case: "malformed transaction bytes", bytes: junk, id: None });
    out
}

/// Sends `bytes` as `bc:new_block` (`kind` "block") or `bc:new_tx` gossip
/// to every peer, bypassing our own checks.
fn inject(p2p: &P2p<Messaging<TcpTransport>>, kind: &str, bytes: &[u8]) -> usize {
    let gossip_kind = if kind == "block" { NEW_BLOCK } else { NEW_TX };
    let mut payload: Vec<u8> = rand::random::<[u8; 16]>().to_vec();
    payload.extend_from_slice(bytes);
    p2p.broadcast(&format!("gossip:{gossip_kind}"), Bytes::from(payload), &[])
}

/// Raw TCP: a garbage message, then a frame longer than any node accepts.
async fn raw_attacks(target: &str) {
    use tokio::io::AsyncWriteExt;
    if let Ok(mut s) = tokio::net::TcpStream::connect(target).await {
        let _ = s.write_all(&[0, 0, 0, 5, 0x07, 0xde, 0xad, 0xbe, 0xef]).await;
        println!("sent malformed message frame to {target}");
    }
    if let Ok(mut s) = tokio::net::TcpStream::connect(target).await {
        let _ = s.write_all(&[0xff, 0xff, 0xff, 0xf0, 1, 2, 3]).await;
        println!("sent oversize frame header to {target}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let args = Args::parse();
    // Ctrl-C ends it wherever it is (forging can take a while).
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(0);
        }
    });
    let params = ChainParams::preset(&args.preset).context("--preset must be dev, workshop or test")?;
    // One chain followed across identities.
    let chain = Arc::new(Mutex::new(Chain::open(
        params,
        MemoryStore::new(),
        Arc::new(K256Verifier::new()),
        Arc::new(SigCache::default()),
        Default::default(),
    )?));
    let pause = Duration::from_millis(args.interval_ms);
    let mut round = 0u64;
    let mut next = 0usize;
    let mut identities = 0u64;
    let mut attacks: Vec<Attack> = Vec::new();
    'identities: loop {
        // A fresh identity: a new port, so a ban on the last one does not apply.
        identities += 1;
        let (transport, net_events) = TcpTransport::new(Default::default());
        let (msg, msg_events) = Messaging::new(transport, net_events, Default::default());
        msg.listen("127.0.0.1:0").await?;
        let config =
            toy::p2p::Config::builder().max_peers(args.peer.len().max(1)).bootstrap(args.peer.clone()).build()?;
        let p2p = P2p::start(msg, msg_events, config)?;
        let gossip = Arc::new(Gossip::new(p2p.clone(), Default::default()));
        let node = ChainNode::install(chain.clone(), gossip)?;
        let mut events = p2p.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while p2p.peers().is_empty() {
            if tokio::time::Instant::now() > deadline {
                println!("adversary: no honest node accepts identity {identities}; retrying");
                node.shutdown();
                p2p.shutdown().await;
                continue 'identities;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("adversary: identity {identities} ({}) connected to {:?}", p2p.local_addr(), p2p.peers());
        if next == 0 || attacks.is_empty() {
            // Forged once per round (grinding costs real work), on the tip.
            let _ = node.resolve().await;
            attacks = tokio::task::spawn_blocking({
                let c = chain.clone();
                move || forge(&c)
            })
            .await?;
            println!("adversary: {} forgeries ready", attacks.len());
        }
        let mut dropped_by = std::collections::HashSet::new();
        loop {
            if next == 0 {
                for t in &args.peer {
                    raw_attacks(t).await;
                }
            }
            let Some(attack) = attacks.get(next) else {
                // A flood of junk, then the next round.
                let n = (0..500).map(|_| inject(&p2p, "tx", b"flood")).sum::<usize>();
                println!("adversary: flooded {n} junk transactions");
                round += 1;
                next = 0;
                if args.rounds != 0 && round >= args.rounds {
                    println!("adversary: {round} rounds done with {identities} identities");
                    node.shutdown();
                    p2p.shutdown().await;
                    return Ok(());
                }
                node.shutdown();
                p2p.shutdown().await;
                continue 'identities;
            };
            let sent = inject(&p2p, attack.kind, &attack.bytes);
            match attack.id {
                Some(id) => println!("sent invalid {} {id} ({}) to {sent} peers", attack.kind, attack.case),
                None => println!("sent {} to {sent} peers", attack.case),
            }
            next += 1;
            tokio::time::sleep(pause).await;
            let mut dropped = false;
            while let Ok(ev) = events.try_recv() {
                if let PeerEvent::Removed(p) = ev {
                    if dropped_by.insert(p.clone()) {
                        println!("adversary: dropped by {p}");
                    }
                    dropped = true;
                }
            }
            if dropped && p2p.peers().is_empty() {
                node.shutdown();
                p2p.shutdown().await;
                continue 'identities;
            }
        }
    }
}
