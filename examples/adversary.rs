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
//!
//! `--attack` picks what it does (default `all`, each in turn):
//!
//! | attack | what it tries | what an honest node must do |
//! | --- | --- | --- |
//! | `classic` | every invalid case above | refuse, never forward, ban the sender |
//! | `mutated-body` | mines a real block, sends copies with a replaced body, a repeated last transaction and a swapped signature under its header first, then the genuine block from a second identity | refuse the copies without remembering the hash; accept the genuine block |
//! | `future-block` | mines a real block stamped just past the allowed drift, sends it, and again once its time has come | refuse it for now without penalty, accept it later |
//! | `timewarp` | stamps the first block of a retarget window before its parent minus the grace (BIP 94) | refuse it for good |
//! | `orphan-flood` | blocks with unknown parents and padded bodies, meeting only the easiest target | keep at most this sender's share of the orphan pool |
//! | `claim-address` | says hello as one of the victim's honest peers, then sends a malformed message | ban where the connection comes from, never the claimed address |
//! | `hashes-flood` | asks `chain:hashes` for `u32::MAX` hashes, 100 times in a row | stop answering past the rate, penalise the asker |
//! | `lying-status` | claims the most work there is and has no blocks | penalise it and sync from an honest peer |
//! | `stranger-flood` | 128 raw connections announcing 16 MiB frames, 1 MiB of bytes each, no hello | refuse each at its prefix; memory stays small |
//! | `fake-headers` | claims the most work and backs it with 500 linked headers that carry no proof of work | refuse the first header, ban the sender, fetch no body |
//! | `eclipse` | 48 connections, each saying hello with a fresh made-up address, held for 5 s | evict the newcomers, keep the honest peers that delivered blocks, keep dialling out |
//! | `rejoin` | gets banned (a malformed message), then says hello again from a new port with a new address | refuse it: the ban is on the host's IP (on loopback each connection is its own origin, so there it is let in) |
//! | `slowloris` | with `--http`: 300 connections to the API that send half a request line and never finish, then asks `/api/status` and says hello on p2p | close them (10 s header timeout, 128 at once), and keep answering the API and the p2p side |
//! | `web-page` | with `--http`: what a page on another site could send: a wallet send and read under a DNS-rebound `Host`, a form post to `/api/mine`, a JSON send with a foreign `Origin` | refuse all four (403) |
//! | `unknown-kinds` | 300 messages of a kind nobody handles | drop them, and past 32 at once and 4 a second charge the sender until it is banned |
//! | `search-flood` | 400 searches for things nobody has, each with a fresh id | answer, route and forward at most 32 at once and 4 a second from it |
//! | `mempool-flood` | 100 `chain:mempool` inventory requests and 100 `chain:txs` requests for 256 ids nobody has, back to back | answer 4 inventories then one per 10 s, and 32 fetches then 4 a second; past it no answer, and spam points that end the peering |
//! | `gossip-shadow` | mines a real block and sends an old block under the gossip id it will use, then the real block under that id | accept the real block (the seen-set is keyed by content too) |
//!
//! Each consensus attack prints `victim <addr> kept genuine block <hash>`
//! or `victim <addr> refused genuine block <hash>` after asking the victim
//! for the block by direct request, so a test can check the outcome.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use rand::Rng;
use toy::chain::network::{ChainHandle, ChainNode, NEW_BLOCK, NEW_TX};
use toy::chain::sync;
use toy::chain::types::merkle_root;
use toy::chain::{
    Block, Chain, ChainParams, Hash, K256Verifier, Keypair, MemoryStore, SigCache, Signature, Transaction, TxKind,
    now_ms,
};
use toy::gossip::{Gossip, GossipNetwork};
use toy::msg::{Messaging, Messenger};
use toy::net::{TcpTransport, Transport};
use toy::p2p::{P2p, PeerEvent, PeerId, PeerNetwork};

/// A hostile peer: invalid blocks and transactions, malformed bytes,
/// floods, and the attacks of someone who read the source.
#[derive(Parser, Debug)]
#[command(version)]
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
    /// A victim's HTTP API (`host:port`), for `slowloris` (skipped without).
    #[arg(long)]
    http: Option<String>,
    /// Which attack (see the module docs); `all` runs each in turn.
    #[arg(long, value_enum, default_value = "all")]
    attack: AttackMode,
}

/// The attacks `--attack` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AttackMode {
    /// Every attack in turn.
    All,
    /// Every invalid block and transaction case, malformed bytes, floods.
    Classic,
    /// Mutated bodies under a genuine header, sent first.
    MutatedBody,
    /// A real block from just past the allowed clock drift.
    FutureBlock,
    /// The first block of a retarget window stamped too early (BIP 94).
    Timewarp,
    /// Orphans that meet only the easiest target, with padded bodies.
    OrphanFlood,
    /// Hello as an honest peer's address, then misbehaviour.
    ClaimAddress,
    /// `chain:hashes` requests for everything, as fast as possible.
    HashesFlood,
    /// The most work there is, and no blocks.
    LyingStatus,
    /// Connections that announce huge frames before any hello.
    StrangerFlood,
    /// A claim of work backed by headers without proof of work.
    FakeHeaders,
    /// Inbound connections with made-up hello addresses, to crowd out honest peers.
    Eclipse,
    /// A genuine block's gossip id used first on other content.
    GossipShadow,
    /// Banned, then back from the same host under a new address.
    Rejoin,
    /// HTTP connections that never finish their headers (needs `--http`).
    Slowloris,
    /// What a web page on another site could send the API (needs
    /// `--http`): a DNS-rebound write and read, a form post, a cross-origin
    /// JSON write.
    WebPage,
    /// Messages of a kind nobody handles, as fast as possible.
    UnknownKinds,
    /// Searches for things nobody has, as fast as possible.
    SearchFlood,
    /// Mempool reconciliation asked for as fast as possible: `chain:mempool`
    /// inventories and `chain:txs` for ids nobody has.
    MempoolFlood,
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

fn transfer(from: &Keypair, to: &Keypair, amount: u64, nonce: u64, chain_id: &Hash) -> Transaction {
    let mut tx = Transaction {
        kind: TxKind::Transfer,
        sender: from.address(),
        recipient: to.address(),
        amount,
        fee: 1,
        nonce,
        signature: Signature::EMPTY,
    };
    from.sign_tx(&mut tx, chain_id);
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

/// What every forgery is built on: the current tip of `chain` (a snapshot,
/// so the node keeps running while we grind).
fn forge_base(c: &Chain<MemoryStore>) -> Snapshot {
    let tip = c.tip();
    let header = c.header(&tip.hash).cloned().unwrap_or_else(|| c.params().genesis().header);
    let ctx = c.context_for(&tip.hash, now_ms()).ok();
    let nonce = c.account(&ChainParams::dev_wallet(15).address()).nonce;
    let mid = if tip.height >= 2 { c.block_at(tip.height / 2).ok().flatten() } else { None };
    (tip, header, ctx, nonce, mid, c.params().clone())
}

type Snapshot =
    (toy::chain::Tip, toy::chain::Header, Option<toy::chain::BlockContext>, u64, Option<Block>, ChainParams);

fn forge_from((tip, tip_header, ctx, nonce, mid, params): Snapshot) -> Vec<Attack> {
    let me = Keypair::from_seed(b"adversary");
    let victim = ChainParams::dev_wallet(15);
    let poor = Keypair::from_seed(b"adversary-poor");
    let id = params.chain_id();
    let transfer = |from: &Keypair, to: &Keypair, amount: u64, nonce: u64| transfer(from, to, amount, nonce, &id);
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
    me.sign_tx(&mut mint, &id);
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
    let params = ChainParams::preset(&args.preset).context("--preset must be dev, test or workshop-constants")?;
    // One chain followed across identities.
    let chain = ChainHandle::spawn(Chain::open(
        params,
        MemoryStore::new(),
        Arc::new(K256Verifier::new()),
        Arc::new(SigCache::default()),
        Default::default(),
    )?)?;
    let mut identities = 0u64;
    let all = args.attack == AttackMode::All;
    if all || args.attack == AttackMode::MutatedBody {
        mutated_body(&args, &chain, &mut identities).await?;
    }
    if all || args.attack == AttackMode::FutureBlock {
        future_block(&args, &chain, &mut identities).await?;
    }
    if all || args.attack == AttackMode::Timewarp {
        timewarp(&args, &chain, &mut identities).await?;
    }
    if all || args.attack == AttackMode::OrphanFlood {
        orphan_flood(&args, &chain, &mut identities).await?;
    }
    if all || args.attack == AttackMode::ClaimAddress {
        claim_address(&args).await?;
    }
    if all || args.attack == AttackMode::HashesFlood {
        hashes_flood(&args, &chain, &mut identities).await?;
    }
    if all || args.attack == AttackMode::LyingStatus {
        lying_status(&args, &chain).await?;
    }
    if all || args.attack == AttackMode::StrangerFlood {
        stranger_flood(&args).await;
    }
    if all || args.attack == AttackMode::FakeHeaders {
        fake_headers(&args, &chain).await?;
    }
    if all || args.attack == AttackMode::Eclipse {
        eclipse(&args).await?;
    }
    if all || args.attack == AttackMode::Rejoin {
        rejoin(&args).await?;
    }
    if all || args.attack == AttackMode::Slowloris {
        slowloris(&args).await;
    }
    if all || args.attack == AttackMode::WebPage {
        web_page(&args).await;
    }
    if all || args.attack == AttackMode::UnknownKinds {
        unknown_kinds(&args).await?;
    }
    if all || args.attack == AttackMode::SearchFlood {
        search_flood(&args).await?;
    }
    if all || args.attack == AttackMode::MempoolFlood {
        mempool_flood(&args, &chain, &mut identities).await?;
    }
    if all || args.attack == AttackMode::GossipShadow {
        gossip_shadow(&args, &chain, &mut identities).await?;
    }
    if all || args.attack == AttackMode::Classic {
        classic(&args, &chain, &mut identities).await?;
    }
    println!("adversary: done with {identities} identities");
    Ok(())
}

type Net = P2p<Messaging<TcpTransport>>;
type Shared = ChainHandle<MemoryStore>;

/// One connection to the honest network under a fresh address.
struct Identity {
    p2p: Net,
    node: ChainNode<MemoryStore, Gossip<Net>>,
}

impl Identity {
    /// A fresh identity (a new port, so no ban on an earlier one applies)
    /// connected to at least one of `peers` within 30 s, following `chain`.
    async fn join(peers: &[String], chain: &Shared, count: &mut u64) -> anyhow::Result<Option<Self>> {
        *count += 1;
        let (transport, net_events) = TcpTransport::new(Default::default());
        let (msg, msg_events) = Messaging::new(transport, net_events, Default::default());
        msg.listen("127.0.0.1:0").await?;
        let config = toy::p2p::Config::builder().max_peers(peers.len().max(1)).bootstrap(peers.to_vec()).build()?;
        let p2p = P2p::start(msg, msg_events, config)?;
        let gossip = Arc::new(Gossip::new(p2p.clone(), Default::default()));
        let node = ChainNode::install(chain.clone(), gossip)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while p2p.peers().is_empty() {
            if tokio::time::Instant::now() > deadline {
                println!("adversary: no honest node accepts identity {count}");
                node.shutdown();
                p2p.shutdown().await;
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("adversary: identity {count} ({}) connected to {:?}", p2p.local_addr(), p2p.peers());
        Ok(Some(Self { p2p, node }))
    }

    async fn leave(self) {
        self.node.shutdown();
        self.p2p.shutdown().await;
    }

    /// Whether `peer` answers a direct request for `hash` with that block,
    /// asked a few times over `wait` (it may still be importing it).
    async fn holds(&self, peer: &PeerId, hash: Hash, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let ask = self.node.gossip().peer_services().request(peer, sync::BLOCKS, sync::encode_hashes(&[hash]));
            if let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_secs(5), ask).await
                && sync::decode_blocks(&answer, 1).is_ok_and(|b| b.first().is_some_and(|b| b.hash() == hash))
            {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Joins with two identities at once: one to be burnt, one kept clean.
async fn two_identities(args: &Args, chain: &Shared, count: &mut u64) -> anyhow::Result<Option<(Identity, Identity)>> {
    let Some(burn) = Identity::join(&args.peer, chain, count).await? else { return Ok(None) };
    let Some(clean) = Identity::join(&args.peer, chain, count).await? else {
        burn.leave().await;
        return Ok(None);
    };
    Ok(Some((burn, clean)))
}

/// How far behind the network's tip a genuine block's parent may fall
/// before it is mined again: a light branch forking below the prune depth
/// (6) is refused for that alone, whatever else the attack shows.
const MAX_BEHIND: u64 = 3;

/// Tries at mining a block that is still near the tip when done.
const MINING_ATTEMPTS: usize = 4;

/// How many blocks the network's tip is past `block`'s parent.
async fn behind(id: &Identity, chain: &Shared, block: &Block) -> u64 {
    let _ = id.node.resolve().await;
    chain.tip().height.saturating_sub(block.header.height.saturating_sub(1))
}

/// A block on our view of the tip, with the mempool's transactions (the
/// oracle's, when one runs), mined for real; mined again (a few times at
/// most) when the network has moved on meanwhile.
async fn mine_genuine(id: &Identity, chain: &Shared, stamp: impl Fn(u64) -> u64) -> anyhow::Result<Block> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let _ = id.node.resolve().await;
        let mut template = chain.template(Keypair::from_seed(b"adversary").address()).await?;
        template.header.timestamp_ms = stamp(template.header.timestamp_ms);
        let block = tokio::task::spawn_blocking(move || remine(template)).await?;
        let lag = behind(id, chain, &block).await;
        if lag <= MAX_BEHIND || attempt >= MINING_ATTEMPTS {
            return Ok(block);
        }
        println!("adversary: the network moved {lag} blocks on while mining; mining again");
    }
}

/// Whether every victim holds `hash`, asked through `id`. With `last`,
/// prints the verdict per victim; otherwise a miss is only noted (the
/// caller tries again with a new block).
async fn report_victims(id: &Identity, hash: Hash, what: &str, last: bool) -> bool {
    let mut all = true;
    for peer in id.p2p.peers() {
        let kept = id.holds(&peer, hash, Duration::from_secs(10)).await;
        all &= kept;
        if kept {
            println!("victim {peer} kept genuine block {hash} ({what})");
        } else if last {
            println!("victim {peer} refused genuine block {hash} ({what})");
        } else {
            println!("adversary: {peer} does not hold {hash} ({what}); the network may have moved on, trying again");
        }
    }
    all
}

/// Attempts of a consensus attack before a victim's refusal is reported:
/// a block refused for good (the bug these attacks look for) is refused on
/// every attempt, each with a new block; a block the network merely left
/// behind while the adversary mined it is not.
const ATTACK_ATTEMPTS: usize = 3;

/// Mutated copies of a real block first, then the block itself.
async fn mutated_body(args: &Args, chain: &Shared, count: &mut u64) -> anyhow::Result<()> {
    for attempt in 1..=ATTACK_ATTEMPTS {
        let Some((burn, clean)) = two_identities(args, chain, count).await? else { return Ok(()) };
        let genuine = mine_genuine(&clean, chain, |t| t).await?;
        let hash = genuine.hash();
        let mut copies: Vec<(&str, Block)> = Vec::new();
        let mut replaced = genuine.clone();
        replaced.txs = vec![transfer(
            &Keypair::from_seed(b"adversary-poor"),
            &Keypair::from_seed(b"adversary"),
            1,
            0,
            &Hash::ZERO,
        )];
        copies.push(("body replaced", replaced));
        if let Some(last) = genuine.txs.last() {
            let mut repeated = genuine.clone();
            repeated.txs.push(last.clone());
            copies.push(("last transaction repeated (CVE-2012-2459)", repeated));
            let mut swapped = genuine.clone();
            if let Some(tx) = swapped.txs.first_mut() {
                tx.signature = Keypair::from_seed(b"adversary").sign_hash(&tx.id());
            }
            copies.push(("signature swapped", swapped));
        }
        for (case, copy) in &copies {
            let sent = inject(&burn.p2p, "block", &copy.encode());
            println!("sent mutated block {hash} ({case}) to {sent} peers");
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
        let sent = inject(&clean.p2p, "block", &genuine.encode());
        println!("sent genuine block {hash} ({} transactions) to {sent} peers", genuine.txs.len());
        let kept = report_victims(&clean, hash, "after mutated copies", attempt == ATTACK_ATTEMPTS).await;
        burn.leave().await;
        clean.leave().await;
        if kept {
            break;
        }
    }
    Ok(())
}

/// A real block stamped just past the victims' allowed drift: refused for
/// now (and the sender not punished), accepted once its time has come.
async fn future_block(args: &Args, chain: &Shared, count: &mut u64) -> anyhow::Result<()> {
    let Some(id) = Identity::join(&args.peer, chain, count).await? else { return Ok(()) };
    let drift = chain.params().max_future_drift_ms;
    // The block must be early when it first arrives (mining takes a while
    // after the timestamp is set: the lead grows when it was not enough) and
    // still near the tip once its time has come (a block the network has
    // left behind meanwhile is mined again).
    let mut ahead_ms: u64 = 2_000;
    let attempts = 2 * MINING_ATTEMPTS;
    for attempt in 1..=attempts {
        let lead = ahead_ms;
        let block = mine_genuine(&id, chain, move |_| now_ms() + drift + lead).await?;
        let hash = block.hash();
        let early_by = block.header.timestamp_ms.saturating_sub(now_ms() + drift);
        if early_by < 500 && attempt < attempts {
            ahead_ms = (ahead_ms * 2).min(16_000);
            println!("adversary: mining took longer than the lead; again with {ahead_ms} ms");
            continue;
        }
        let sent = inject(&id.p2p, "block", &block.encode());
        println!("sent early block {hash} ({early_by} ms past the allowed drift) to {sent} peers");
        // Wait until its time has come (plus a margin), then send it again.
        let due = block.header.timestamp_ms.saturating_sub(drift).saturating_sub(now_ms()) + 1_000;
        tokio::time::sleep(Duration::from_millis(due)).await;
        let lag = behind(&id, chain, &block).await;
        if lag > MAX_BEHIND {
            if attempt < attempts {
                println!("adversary: the network moved {lag} blocks past its parent meanwhile; mining it again");
                continue;
            }
            // Left behind every time: a stale block proves nothing either way.
            println!("adversary: future block: the network outran every attempt (last lag {lag}); not judged");
            break;
        }
        let sent = inject(&id.p2p, "block", &block.encode());
        println!("sent the same block {hash} again, now in time, to {sent} peers");
        if report_victims(&id, hash, "once its time had come", attempt == attempts).await {
            break;
        }
    }
    id.leave().await;
    Ok(())
}

/// The first block of a retarget window stamped before its parent minus
/// the grace, built on the last canonical block that opens a window.
async fn timewarp(args: &Args, chain: &Shared, count: &mut u64) -> anyhow::Result<()> {
    let Some(id) = Identity::join(&args.peer, chain, count).await? else { return Ok(()) };
    // A window must have been opened once for its rule to apply: wait (a
    // minute at most) for the chain to get that far.
    let interval = chain.params().retarget.as_ref().map_or(0, |r| r.interval);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let _ = id.node.resolve().await;
        if chain.tip().height + 1 >= interval || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let params = chain.params().clone();
    let Some(rt) = params.retarget.clone().filter(|r| r.interval > 1) else {
        println!("adversary: timewarp needs a retargeting preset; {} has none", params.name);
        id.leave().await;
        return Ok(());
    };
    let reward = params.block_reward;
    let forged = chain
        .read(move |c| {
            let tip = c.tip().height;
            // The newest parent whose child opens a window.
            let parent_height = (tip + 1) / rt.interval * rt.interval;
            let parent = parent_height.checked_sub(1).and_then(|h| c.block_at(h).ok().flatten());
            let ctx = parent.as_ref().and_then(|p| c.context_for(&p.hash(), now_ms()).ok());
            parent.zip(ctx).map(|(p, ctx)| {
                let mut b = Block { header: p.header.clone(), txs: vec![] };
                b.header.parent = p.hash();
                b.header.height += 1;
                b.header.target = ctx.expected_target;
                b.header.miner = Keypair::from_seed(b"adversary").address();
                b.header.reward = reward;
                b.header.timestamp_ms = p.header.timestamp_ms.saturating_sub(rt.max_timewarp_ms + 1);
                b
            })
        })
        .await?;
    if let Some(b) = forged {
        let b = tokio::task::spawn_blocking(move || seal(b)).await?;
        let sent = inject(&id.p2p, "block", &b.encode());
        println!("sent invalid block {} (timewarp: window opened before its parent) to {sent} peers", b.hash());
    } else {
        println!("adversary: timewarp found no window to open yet");
    }
    tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    id.leave().await;
    Ok(())
}

/// Blocks whose parents nobody has, meeting only the preset's easiest
/// target, each padded with junk transactions to the size limit's share.
async fn orphan_flood(args: &Args, chain: &Shared, count: &mut u64) -> anyhow::Result<()> {
    const ORPHANS: u64 = 300;
    const PADDING_TXS: u64 = 200;
    let Some(id) = Identity::join(&args.peer, chain, count).await? else { return Ok(()) };
    let params = chain.params().clone();
    let blocks = tokio::task::spawn_blocking(move || {
        let me = Keypair::from_seed(b"adversary");
        (0..ORPHANS)
            .map(|n| {
                let mut b = params.genesis();
                b.header.parent = Hash::digest(&n.to_be_bytes());
                b.header.height = 1_000_000 + n;
                b.header.target = params.pow_limit;
                b.header.timestamp_ms = now_ms();
                b.txs = (0..PADDING_TXS)
                    .map(|i| Transaction {
                        kind: TxKind::Transfer,
                        sender: me.address(),
                        recipient: me.address(),
                        amount: n,
                        fee: 0,
                        nonce: i,
                        signature: Signature([0x5a; 64]),
                    })
                    .collect();
                seal(b)
            })
            .collect::<Vec<Block>>()
    })
    .await?;
    let bytes: usize = blocks.iter().map(|b| b.encode().len()).sum();
    for b in &blocks {
        inject(&id.p2p, "block", &b.encode());
    }
    println!("sent {ORPHANS} orphans ({} MiB) with no known parent", bytes >> 20);
    tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    id.leave().await;
    Ok(())
}

/// A bare peer (no chain) listening on a fresh port, announcing `claim`.
async fn bare_peer(peers: &[String], claim: Option<String>) -> anyhow::Result<Net> {
    let (transport, net_events) = TcpTransport::new(Default::default());
    let (msg, msg_events) = Messaging::new(transport, net_events, Default::default());
    msg.listen("127.0.0.1:0").await?;
    let mut config = toy::p2p::Config::builder().max_peers(peers.len().max(1));
    if let Some(claim) = claim {
        config = config.advertise(claim);
    }
    Ok(P2p::start(msg, msg_events, config.build()?)?)
}

/// Says hello to each victim as one of its honest peers, then sends a
/// malformed message. Bans used to follow the announced address, so the
/// honest peer was the one banned.
async fn claim_address(args: &Args) -> anyhow::Result<()> {
    for victim in &args.peer {
        let probe = bare_peer(&args.peer, None).await?;
        let honest = probe.ask_peers(victim).await.unwrap_or_default();
        probe.shutdown().await;
        let Some(claimed) = honest.into_iter().find(|a| a != victim) else {
            println!("adversary: {victim} has no other peer to impersonate");
            continue;
        };
        let impostor = bare_peer(&args.peer, Some(claimed.clone())).await?;
        match impostor.connect(victim).await {
            Ok(_) => {
                if let Some(conn) = impostor.messenger().connections().first().copied() {
                    let _ = impostor.messenger().transport().send(conn, Bytes::from_static(&[9, 9]));
                }
                println!("claimed {claimed} at {victim} and sent a malformed message");
            }
            Err(e) => println!("claimed {claimed} at {victim}: hello refused ({e})"),
        }
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        impostor.shutdown().await;
    }
    Ok(())
}

/// Asks for every hash there is, again and again.
async fn hashes_flood(args: &Args, chain: &Shared, count: &mut u64) -> anyhow::Result<()> {
    const REQUESTS: usize = 100;
    let Some(id) = Identity::join(&args.peer, chain, count).await? else { return Ok(()) };
    let request = Bytes::from(sync::HashesRequest { locator: vec![], max: u32::MAX }.encode());
    for victim in id.p2p.peers() {
        let mut answered = 0;
        for _ in 0..REQUESTS {
            let ask = id.p2p.request(&victim, sync::HASHES, request.clone());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(50), ask).await {
                answered += 1;
            }
        }
        println!("hashes flood: {victim} answered {answered} of {REQUESTS}");
    }
    id.leave().await;
    Ok(())
}

/// Asks for the victims' mempool inventories and for transactions nobody
/// has, far past the rates reconciliation allows (`chain:mempool`: 4 at
/// once, then one per 10 s; `chain:txs`: 32 at once, then 4 a second).
/// What to see: a few answers, then none, and the victim closing on us for
/// spam, while its honest peers keep reconciling.
async fn mempool_flood(args: &Args, chain: &Shared, count: &mut u64) -> anyhow::Result<()> {
    use toy::chain::network::{GET_TXS, MAX_GET_TXS, MEMPOOL_IDS};
    const REQUESTS: usize = 200;
    let Some(id) = Identity::join(&args.peer, chain, count).await? else { return Ok(()) };
    // MAX_GET_TXS ids that no one holds.
    let nobody: Vec<u8> = (0..MAX_GET_TXS).flat_map(|_| rand::random::<[u8; 32]>()).collect();
    let nobody = Bytes::from(nobody);
    for victim in id.p2p.peers() {
        let (mut inventories, mut fetches) = (0, 0);
        for i in 0..REQUESTS {
            let (kind, payload) = if i % 2 == 0 { (MEMPOOL_IDS, Bytes::new()) } else { (GET_TXS, nobody.clone()) };
            let ask = id.p2p.request(&victim, kind, payload);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(100), ask).await {
                if kind == MEMPOOL_IDS {
                    inventories += 1;
                } else {
                    fetches += 1;
                }
            }
        }
        let still_peer = id.p2p.peers().contains(&victim);
        println!(
            "mempool flood: {victim} answered {inventories} of {} inventory requests and {fetches} of {} fetches; still our peer: {still_peer}",
            REQUESTS / 2,
            REQUESTS / 2
        );
    }
    id.leave().await;
    Ok(())
}

/// Claims the most work there is, with no blocks to back it.
async fn lying_status(args: &Args, chain: &Shared) -> anyhow::Result<()> {
    let liar = bare_peer(&args.peer, None).await?;
    let genesis = chain.params().genesis_hash();
    let claim = sync::Status { genesis, tip: Hash([7; 32]), height: u64::MAX / 2, work: u128::MAX };
    liar.register_handler(
        sync::STATUS,
        toy::p2p::peer_handler_fn(move |_, _| async move { Some(Bytes::from(claim.encode())) }),
    )?;
    liar.register_handler(sync::HEADERS, toy::p2p::peer_handler_fn(|_, _| async { Some(Bytes::new()) }))?;
    for victim in &args.peer {
        match liar.connect(victim).await {
            Ok(_) => println!("lying status: claimed u128::MAX work to {victim}"),
            Err(e) => println!("lying status: {victim} refused us ({e})"),
        }
    }
    // Long enough for the victims' sync on a new peer to ask us and give up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    liar.shutdown().await;
    Ok(())
}

/// Claims the most work there is and answers `chain:headers` with a long
/// chain of linked headers (right heights, targets and times) that carry
/// no proof of work; counts the bodies it is asked for.
async fn fake_headers(args: &Args, chain: &Shared) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let genesis = chain.params().genesis_hash();
    let mut parent = chain.read(|c| c.header(&c.tip().hash).cloned()).await?.context("tip header")?;
    let mut headers = Vec::new();
    for _ in 0..500 {
        let mut h = parent.clone();
        h.height += 1;
        h.parent = parent.hash();
        h.timestamp_ms = parent.timestamp_ms + 1_000;
        h.nonce = 0;
        while toy::chain::target::meets(&h.hash(), &h.target) {
            h.nonce += 1;
        }
        headers.push(h.clone());
        parent = h;
    }
    let liar = bare_peer(&args.peer, None).await?;
    let claim = sync::Status { genesis, tip: parent.hash(), height: parent.height, work: u128::MAX };
    liar.register_handler(
        sync::STATUS,
        toy::p2p::peer_handler_fn(move |_, _| async move { Some(Bytes::from(claim.encode())) }),
    )?;
    let answer = sync::encode_headers(&headers);
    liar.register_handler(
        sync::HEADERS,
        toy::p2p::peer_handler_fn(move |_, _| {
            let answer = answer.clone();
            async move { Some(answer) }
        }),
    )?;
    let bodies = Arc::new(AtomicUsize::new(0));
    let counter = bodies.clone();
    liar.register_handler(
        sync::BLOCKS,
        toy::p2p::peer_handler_fn(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { None }
        }),
    )?;
    let mut events = liar.subscribe();
    for victim in &args.peer {
        if let Err(e) = liar.connect(victim).await {
            println!("fake headers: {victim} refused us ({e})");
        }
    }
    // Each victim asks on the new peer, checks the first header and drops us
    // (a generous deadline: a victim busy importing a fast dev chain's
    // blocks on a loaded machine may start that sync late; the wait ends as
    // soon as every victim has dropped us).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !liar.peers().is_empty() && tokio::time::Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(500), events.recv()).await;
    }
    let kept: Vec<String> = liar.peers().into_iter().map(|p| p.0).collect();
    println!(
        "fake headers: 500 headers without work; dropped by {} of {} victims, {} bodies asked for",
        args.peer.len() - kept.len().min(args.peer.len()),
        args.peer.len(),
        bodies.load(Ordering::SeqCst)
    );
    liar.shutdown().await;
    Ok(())
}

/// Sends 300 messages of a kind nobody handles to each victim and reports
/// whether the victim dropped us for it.
async fn unknown_kinds(args: &Args) -> anyhow::Result<()> {
    const SENT: usize = 300;
    for victim in &args.peer {
        let p = bare_peer(&args.peer, None).await?;
        let Ok(id) = p.connect(victim).await else {
            println!("unknown kinds: {victim} refused us");
            p.shutdown().await;
            continue;
        };
        let mut events = p.subscribe();
        for _ in 0..SENT {
            if p.send(&id, "gossip:nobody-handles-this", Bytes::from_static(b"x")).is_err() {
                break;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !p.peers().is_empty() && tokio::time::Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(500), events.recv()).await;
        }
        let dropped = p.peers().is_empty();
        println!("unknown kinds: {SENT} messages nobody handles to {victim}; dropped: {dropped}");
        p.shutdown().await;
    }
    Ok(())
}

/// Sends 400 searches for a block nobody has, each with a fresh id, then
/// asks the victim for its peers on the same connection (answered once every
/// search before it was handled) and reports how the victim took them.
async fn search_flood(args: &Args) -> anyhow::Result<()> {
    const SENT: u32 = 400;
    for victim in &args.peer {
        let p = bare_peer(&args.peer, None).await?;
        let Ok(id) = p.connect(victim).await else {
            println!("search flood: {victim} refused us");
            p.shutdown().await;
            continue;
        };
        for i in 0..SENT {
            // gossip id | search id | a 32-byte block hash nobody has.
            let mut payload = rand::random::<[u8; 32]>().to_vec();
            payload.extend_from_slice(&i.to_be_bytes());
            payload.extend_from_slice(&[0xee; 28]);
            if p.send(&id, &format!("gossip:search:{}", toy::chain::network::SEARCH_BLOCK), Bytes::from(payload))
                .is_err()
            {
                break;
            }
        }
        let still_peer = p.request(&id, "p2p:get_peers", Bytes::new()).await.is_ok();
        println!("search flood: {SENT} searches for nothing to {victim}; still a peer afterwards: {still_peer}");
        p.shutdown().await;
    }
    Ok(())
}

/// Opens 300 connections to the API that never finish their headers, then
/// checks that the API and the p2p side still answer.
async fn slowloris(args: &Args) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SLOW: usize = 300;
    let Some(http) = &args.http else {
        println!("slowloris: skipped (no --http)");
        return;
    };
    let mut held = Vec::new();
    for _ in 0..SLOW {
        if let Ok(mut s) = tokio::net::TcpStream::connect(http).await {
            let _ = s.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\n").await;
            held.push(s);
        }
    }
    // While they hang: a fresh client is served, and a peer can say hello.
    let mut served = false;
    if let Ok(mut s) = tokio::net::TcpStream::connect(http).await {
        let request = format!("GET /api/status HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(request.as_bytes()).await;
        let mut answer = vec![0u8; 64];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(10), s.read(&mut answer)).await {
            served = answer[..n].starts_with(b"HTTP/1.1 200");
        }
    }
    let mut peered = 0;
    for victim in &args.peer {
        if let Ok(p) = bare_peer(&args.peer, None).await {
            if p.connect(victim).await.is_ok() {
                peered += 1;
            }
            p.shutdown().await;
        }
    }
    println!(
        "slowloris: {} slow connections held to {http}; the API {} a new client; {peered} of {} victims accepted a hello meanwhile",
        held.len(),
        if served { "served" } else { "did not serve" },
        args.peer.len()
    );
}

/// The status code of one raw HTTP/1.1 request to `http`, if answered.
async fn http_status(http: &str, request: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http).await.ok()?;
    s.write_all(request.as_bytes()).await.ok()?;
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut answer)).await.ok()?.ok()?;
    std::str::from_utf8(&answer[..n]).ok()?.split(' ').nth(1)?.parse().ok()
}

/// What a page on another site could send the API: each must be refused
/// (403), or the wallet could be spent from any web page the user visits.
async fn web_page(args: &Args) {
    let Some(http) = &args.http else {
        println!("web page: skipped (no --http)");
        return;
    };
    let to = Keypair::from_seed(b"web page").address().to_hex();
    let send = format!(r#"{{"to":"{to}","amount":1,"fee":1}}"#);
    let attempts = [
        (
            "a DNS-rebound wallet send",
            "POST",
            "/api/wallet/send",
            "evil.example:8080",
            "application/json",
            "",
            send.as_str(),
        ),
        ("a DNS-rebound wallet read", "GET", "/api/wallet", "evil.example:8080", "", "", ""),
        (
            "a cross-site form post to /api/mine",
            "POST",
            "/api/mine",
            http.as_str(),
            "application/x-www-form-urlencoded",
            "",
            "a=1",
        ),
        (
            "a cross-origin JSON send",
            "POST",
            "/api/wallet/send",
            http.as_str(),
            "application/json",
            "http://evil.example",
            send.as_str(),
        ),
    ];
    let mut refused = 0;
    for (what, method, path, host, content_type, origin, body) in attempts {
        let mut headers = format!("Host: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        if !content_type.is_empty() {
            headers.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        if !origin.is_empty() {
            headers.push_str(&format!("Origin: {origin}\r\n"));
        }
        let status = http_status(http, &format!("{method} {path} HTTP/1.1\r\n{headers}\r\n{body}")).await;
        if status == Some(403) {
            refused += 1;
        }
        println!("web page: {what}: {}", status.map_or("no answer".to_owned(), |s| s.to_string()));
    }
    println!("web page: {refused} of {} refused", attempts.len());
}

/// Misbehaves once (a malformed message: a ban), then says hello again from
/// a new port under a new address.
async fn rejoin(args: &Args) -> anyhow::Result<()> {
    for victim in &args.peer {
        let first = bare_peer(&args.peer, None).await?;
        if let Err(e) = first.connect(victim).await {
            println!("rejoin: {victim} refused the first identity ({e})");
            first.shutdown().await;
            continue;
        }
        let mut events = first.subscribe();
        // On every connection it has (it may also have dialled its
        // bootstrap list): the one the victim took as a peer gets it banned.
        for conn in first.messenger().connections() {
            let _ = first.messenger().transport().send(conn, Bytes::from_static(&[9, 9]));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !first.peers().is_empty() && tokio::time::Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(500), events.recv()).await;
        }
        let dropped = first.peers().is_empty();
        first.shutdown().await;
        if !dropped {
            println!("rejoin: {victim} kept the first identity after its malformed message; not judged");
            continue;
        }
        let second = bare_peer(&args.peer, Some(format!("198.51.100.{}:9000", rand::random::<u8>()))).await?;
        match second.connect(victim).await {
            Ok(_) => println!("rejoin: {victim} accepted a new identity from the same host"),
            Err(e) => println!("rejoin: {victim} refused a new identity from the same host ({e})"),
        }
        second.shutdown().await;
    }
    Ok(())
}

/// Opens many inbound connections to each victim, each saying hello with a
/// made-up address, and holds them: the inbound side fills with strangers,
/// and only the eviction rule decides who stays.
async fn eclipse(args: &Args) -> anyhow::Result<()> {
    const CROWD: usize = 48;
    for victim in &args.peer {
        let (transport, net_events) = TcpTransport::new(Default::default());
        let (msg, _msg_events) = Messaging::new(transport, net_events, Default::default());
        let mut accepted = 0;
        for i in 0..CROWD {
            let Ok(conn) = msg.connect(victim).await else { continue };
            let fake = format!("10.{}.{}.{}:{}", i % 200, rand::random::<u8>(), rand::random::<u8>(), 20_000 + i);
            if let Ok(Ok(answer)) =
                tokio::time::timeout(Duration::from_secs(2), msg.request(conn, "p2p:hello", Bytes::from(fake))).await
                && answer.first() == Some(&1)
            {
                accepted += 1;
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let open = msg.transport().connections().len();
        println!("eclipse: {CROWD} made-up hellos to {victim}, {accepted} accepted, {open} still open after 5 s");
        msg.shutdown().await;
    }
    Ok(())
}

/// Mines a genuine block and, before sending it, sends an old block under
/// the gossip id the genuine one will carry; then the genuine one under
/// that id. A seen-set keyed by id alone would drop the genuine block.
async fn gossip_shadow(args: &Args, chain: &Shared, count: &mut u64) -> anyhow::Result<()> {
    for attempt in 1..=ATTACK_ATTEMPTS {
        let Some(id) = Identity::join(&args.peer, chain, count).await? else { return Ok(()) };
        let genuine = mine_genuine(&id, chain, |t| t).await?;
        let hash = genuine.hash();
        let old = chain.read(|c| c.block_at(0).ok().flatten()).await?.context("genesis")?;
        let gossip_id: [u8; 16] = rand::random();
        let kind = format!("gossip:{NEW_BLOCK}");
        for body in [old.encode(), genuine.encode()] {
            let mut payload = gossip_id.to_vec();
            payload.extend_from_slice(&body);
            id.p2p.broadcast(&kind, Bytes::from(payload), &[]);
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
        println!("sent genuine block {hash} under a gossip id first used for another block");
        let kept = report_victims(&id, hash, "after a shadowing gossip id", attempt == ATTACK_ATTEMPTS).await;
        id.leave().await;
        if kept {
            break;
        }
    }
    Ok(())
}

/// Raw connections announcing maximum-size frames and sending 1 MiB of
/// each, never saying hello.
async fn stranger_flood(args: &Args) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const STRANGERS: usize = 128;
    let chunk = Arc::new(vec![0x5au8; 1024 * 1024]);
    for victim in &args.peer {
        // All at once; each counts as cut off when the victim closes it (a
        // read ends) within a few seconds instead of waiting for the rest.
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..STRANGERS {
            let (victim, chunk) = (victim.clone(), chunk.clone());
            tasks.spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(&victim).await else { return false };
                let _ = s.write_all(&(16u32 * 1024 * 1024 - 1).to_be_bytes()).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), s.write_all(&chunk)).await;
                let mut buf = [0u8; 64];
                matches!(tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
            });
        }
        let mut cut = 0;
        while let Some(closed) = tasks.join_next().await {
            cut += usize::from(closed.unwrap_or(false));
        }
        println!("stranger flood: {STRANGERS} connections to {victim}, {cut} cut off by it");
    }
}

/// Every invalid case of the chain rules, invalid transactions, malformed
/// bytes and floods, one round after another, with a new identity whenever
/// the honest nodes drop the last.
async fn classic(args: &Args, chain: &Shared, identities: &mut u64) -> anyhow::Result<()> {
    let pause = Duration::from_millis(args.interval_ms);
    let mut round = 0u64;
    let mut next = 0usize;
    let mut attacks: Vec<Attack> = Vec::new();
    'identities: loop {
        let Some(Identity { p2p, node }) = Identity::join(&args.peer, chain, identities).await? else {
            continue 'identities;
        };
        let mut events = p2p.subscribe();
        if next == 0 || attacks.is_empty() {
            // Forged once per round (grinding costs real work), on the tip.
            let _ = node.resolve().await;
            let base = chain.read(forge_base).await?;
            attacks = tokio::task::spawn_blocking(move || forge_from(base)).await?;
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
