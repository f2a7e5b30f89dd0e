//! A full toy node: TCP, peers, gossip, the chain on disk, a miner — the
//! layers wired together, nothing more.
//!
//! ```text
//! cargo run --example node                                   # first node, mining
//! cargo run --example node -- --peer 127.0.0.1:15151         # a second one
//! RUST_LOG=debug cargo run --example node -- --no-mine --peer 127.0.0.1:15151
//! ```
//!
//! With no flags it listens on 15151 (or the next free port), uses the `dev`
//! preset, keeps its data in `toy-data/node-<port>/` (chain database, peers
//! book, wallet key created on first run) and mines on every core.
//!
//! How blocks travel: a mined block is gossiped as `bc:new_block`; every node
//! validates it before forwarding (an invalid one is rejected and its sender
//! penalised). A block whose parent is unknown waits as an orphan while the
//! node asks the peers directly (`chain:status`, `chain:hashes`,
//! `chain:blocks`) and downloads what it misses in batches, then asks the
//! block's announcer for any parent still missing; when that fails, or over a
//! relay, it walks back with `search:block`. When a peer connects both sides
//! exchange their tip and work, so a node that was away catches up.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use toy::chain::network::{ChainHandle, ChainNode};
use toy::chain::{Chain, ChainParams, K256Verifier, Keypair, RedbStore, SigCache, StoreError};
use toy::gossip::relay::RelayGossip;
use toy::gossip::{Gossip, GossipNetwork};
use toy::miner::{Config as MinerConfig, Miner};
use toy::msg::{Messaging, Messenger};
use toy::net::TcpTransport;
use toy::p2p::{P2p, PeerId, PeerNetwork};

/// A toy proof-of-work node.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on; the port is the first free one from here.
    #[arg(long, default_value = "127.0.0.1:15151")]
    listen: String,
    /// Address announced to peers (default: the listening address).
    #[arg(long)]
    advertise: Option<String>,
    /// A peer to connect to (repeatable).
    #[arg(long)]
    peer: Vec<String>,
    /// A tracker to discover peers through.
    #[arg(long)]
    tracker: Option<String>,
    /// Gossip through this relay instead of flooding.
    #[arg(long)]
    relay: Option<String>,
    /// Data directory (default: toy-data/node-<port>).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Wallet key file (default: <data-dir>/wallet.key, created if absent).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Mine (the default).
    #[arg(long, overrides_with = "no_mine")]
    mine: bool,
    /// Do not mine.
    #[arg(long)]
    no_mine: bool,
    /// Mining threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Chain preset: dev, workshop or test.
    #[arg(long, default_value = "dev")]
    preset: String,
    /// A network of its own: a genesis file (chain spec, JSON) naming the
    /// base preset, allocations and mint authority; overrides --preset.
    /// Example: examples/genesis.json.
    #[arg(long, value_name = "FILE")]
    genesis: Option<PathBuf>,
    /// Peers kept (between half and all of this).
    #[arg(long, default_value_t = 8)]
    max_peers: usize,
    /// HTTP API and web wallet address; the port is the first free one from here.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: String,
    /// Do not serve the HTTP API and web wallet.
    #[arg(long)]
    no_http: bool,
}

/// The log filter when `RUST_LOG` is not set.
const DEFAULT_LOG: &str = "warn,toy_net=info,toy_msg=info,toy_p2p=info,toy_gossip=info,toy_chain=info,toy_miner=info";

/// Longest wait for the program's tasks on Ctrl-C.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How many ports from `--listen`'s upward a node tries.
const PORT_TRIES: u16 = 100;

/// Listens on the first free port from `addr`'s port upward (port 0: any).
/// Binding is the test, so two nodes started at once never pick the same
/// port (and so never the same default data directory).
async fn listen_free(msg: &impl Messenger, addr: &str) -> anyhow::Result<String> {
    let (host, port) = addr.rsplit_once(':').context("--listen must be host:port")?;
    let port: u16 = port.parse().context("--listen: bad port")?;
    let last = if port == 0 { 0 } else { port.saturating_add(PORT_TRIES - 1) };
    for p in port..=last {
        match msg.listen(&format!("{host}:{p}")).await {
            Ok(bound) => return Ok(bound),
            Err(toy::msg::Error::Transport(toy::net::Error::Io(e))) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => return Err(e).with_context(|| format!("listening on {host}:{p}")),
        }
    }
    anyhow::bail!("no free port from {port} to {last} on {host}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs to stderr; by default the layers' own events (sync progress,
    // reorganisations, invalid blocks, bans) and warnings from everything.
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT_LOG.into()))
        .init();
    let args = Args::parse();
    // The API's share of the descriptors; the p2p side keeps the rest.
    let http_cap = descriptor_budget(args.max_peers);
    let params = match &args.genesis {
        Some(path) => ChainParams::from_genesis_file(path)?,
        None => ChainParams::preset(&args.preset).context("--preset must be dev, workshop or test")?,
    };
    // /api/mine grinds on the request path: only where blocks are cheap.
    let easy_rules = params.initial_target != ChainParams::workshop().initial_target;
    let chain_name = params.name.clone();

    // Listen first: the port names the default data directory.
    let (transport, net_events) = TcpTransport::new(Default::default());
    // Blocks and sync share the handler slots kept for handshakes, so a
    // transaction flood never starves them.
    let msg_config = toy::chain::network::PRIORITY_KINDS
        .iter()
        .fold(toy::msg::Config::builder(), |b, kind| b.priority_kind(*kind))
        .build()?;
    let (msg, msg_events) = Messaging::new(transport, net_events, msg_config);
    let addr = listen_free(&msg, &args.listen).await?;
    let port = addr.rsplit_once(':').map(|(_, p)| p.to_owned()).unwrap_or_default();
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("toy-data/node-{port}")));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    // Said plainly up front, before the key or the database trip over it.
    let probe = data_dir.join(".write-test");
    if let Err(e) = std::fs::write(&probe, b"") {
        anyhow::bail!(
            "the data directory {} is not writable ({e}); fix its permissions or choose another with --data-dir",
            data_dir.display()
        );
    }
    let _ = std::fs::remove_file(&probe);
    let key_path = args.key.clone().unwrap_or_else(|| data_dir.join("wallet.key"));
    let (wallet, created) =
        Keypair::load_or_create(&key_path).with_context(|| format!("key {}", key_path.display()))?;

    // The chain, on disk.
    let db = data_dir.join("chain.redb");
    let store = RedbStore::open(&db).map_err(|e| {
        let hint = match &e {
            StoreError::InUse => "another node is using this data directory; give this one its own with --data-dir",
            StoreError::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                "the data directory is not writable by this user; fix its permissions or choose another with --data-dir"
            }
            StoreError::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => "the disk is full",
            _ => "the file is not a toy chain database, or is damaged",
        };
        anyhow::anyhow!("opening {}: {e} ({hint})", db.display())
    })?;
    let chain =
        Chain::open(params, store, Arc::new(K256Verifier::new()), Arc::new(SigCache::default()), Default::default())?;
    // One thread owns the chain and its store from here on.
    let chain: ChainHandle<RedbStore> = ChainHandle::spawn(chain)?;
    let mut tips = chain.subscribe();

    // The network stack above the listening messenger: peers → gossip.
    let mut p2p_config = toy::p2p::Config::builder()
        .max_peers(if args.relay.is_some() { 1 } else { args.max_peers })
        .book_path(data_dir.join("peers.json"))
        .bootstrap(args.peer.iter().cloned().chain(args.relay.iter().cloned()).collect());
    if let Some(a) = &args.advertise {
        p2p_config = p2p_config.advertise(a.clone());
    }
    if let Some(t) = &args.tracker {
        p2p_config = p2p_config.tracker(t.clone());
    }
    let p2p = P2p::start(msg, msg_events, p2p_config.build()?)?;
    let gossip: Arc<dyn GossipNetwork> = match &args.relay {
        Some(r) => Arc::new(RelayGossip::new(p2p.clone(), PeerId(r.clone()), Default::default())?),
        None => Arc::new(Gossip::new(p2p.clone(), Default::default())),
    };

    let mining = !args.no_mine;
    println!("toy node listening on {addr}");
    println!("wallet {} ({})", wallet.address(), if created { "new key" } else { "existing key" });
    println!("data in {}; chain {}; mining {}", data_dir.display(), chain_name, if mining { "on" } else { "off" });
    {
        let tip = chain.tip();
        println!("tip {} at height {}", tip.hash, tip.height);
    }

    let node = ChainNode::install(chain.clone(), gossip.clone())?;
    // The program's own tasks (mined-block forwarder, HTTP server), stopped
    // and awaited on shutdown.
    let tasks = tokio_util::task::TaskTracker::new();
    let cancel = tokio_util::sync::CancellationToken::new();

    // The miner, fed from the chain; its blocks are imported and announced.
    let miner = if mining {
        let c = chain.clone();
        let miner_addr = wallet.address();
        // Called on the miner's own thread, outside the runtime.
        let source = move || c.blocking_template(miner_addr).ok();
        let config =
            MinerConfig { threads: args.threads.unwrap_or(MinerConfig::default().threads), ..Default::default() };
        let (miner, mut found) = Miner::start(config, Arc::new(source))?;
        let n = node.clone();
        tasks.spawn(async move {
            while let Some(block) = found.recv().await {
                if let Err(e) = n.submit_block(block).await {
                    tracing::warn!("mined block not imported: {e}");
                }
            }
        });
        Some(miner)
    } else {
        None
    };

    // The HTTP API and the web wallet.
    if !args.no_http {
        let listener = toy::api::bind_free(&args.http).await.with_context(|| format!("--http {}", args.http))?;
        let http_addr = listener.local_addr()?;
        let rate = miner.as_ref().map(|m| m.rate_handle());
        let live = toy::api::LiveNode::new(
            node.clone(),
            toy::api::LiveConfig {
                wallet: wallet.clone(),
                can_mine: easy_rules,
                mine_max_nonces: toy::api::MINE_MAX_NONCES,
                hash_rate: rate.map(|r| Arc::new(move || r.hash_rate()) as Arc<dyn Fn() -> f64 + Send + Sync>),
                peering: Arc::new(p2p.clone()),
            },
        );
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let limits = toy::api::HttpLimits { max_connections: http_cap, ..Default::default() };
            if let Err(e) = toy::api::serve_with(listener, Arc::new(live), cancel, limits).await {
                tracing::error!("HTTP server stopped: {e}");
            }
        });
        println!("web wallet and API on http://{http_addr}/ (docs at /docs)");
    }

    let mut last_height = chain.tip().height;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            changed = tips.changed() => {
                if changed.is_err() { break; }
                let tip = tips.borrow_and_update().clone();
                if let Some(m) = &miner { m.new_template(); }
                let rate = miner.as_ref().map(|m| format!(", {:.2} MH/s", m.hash_rate() / 1e6)).unwrap_or_default();
                let marker = if tip.height <= last_height { " (reorg)" } else { "" };
                last_height = tip.height;
                println!("tip {} at height {}{marker}, {} peers{rate}", tip.hash, tip.height, p2p.peers().len());
            }
        }
    }
    println!("shutting down");
    cancel.cancel();
    node.shutdown();
    if let Some(m) = miner {
        // Joins the mining threads; the forwarder ends with their channel.
        tokio::task::spawn_blocking(move || m.stop()).await?;
    }
    p2p.shutdown().await;
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait()).await.is_err() {
        tracing::warn!("tasks still running after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    // The chain actor commits what it holds and closes the store. Every
    // write it answered was durable already; this covers the rest.
    let height = chain.tip().height;
    chain.shutdown().await;
    println!("stopped at height {height}; data in {}", data_dir.display());
    Ok(())
}

/// Descriptors the p2p side may hold at once: its inbound cap, twice
/// `max_peers` for outbound peers and dials, a network crawl's 16 probes,
/// and 64 for files (database, book, key) and the runtime.
fn p2p_descriptors(max_peers: usize) -> u64 {
    (toy::net::DEFAULT_MAX_INBOUND + 2 * max_peers + toy::p2p::MAX_PARALLEL_DIALS + 16 + 64) as u64
}

/// Makes room for the p2p side and the API in the descriptor limit, so
/// neither can take the other's: raises the soft limit towards the hard one
/// when it is short (as servers commonly do), and when even the hard limit
/// is short, gives the API what is left after the p2p side's share. Returns
/// the API's connection cap.
fn descriptor_budget(max_peers: usize) -> usize {
    let p2p = p2p_descriptors(max_peers);
    let wanted = p2p + toy::api::DEFAULT_MAX_HTTP_CONNECTIONS as u64;
    let limit = raise_descriptor_limit(wanted);
    let http = limit.saturating_sub(p2p).min(toy::api::DEFAULT_MAX_HTTP_CONNECTIONS as u64);
    if limit < wanted {
        tracing::warn!(
            limit,
            wanted,
            http,
            "few file descriptors (ulimit -n): the API serves fewer connections at once"
        );
    }
    (http as usize).max(1)
}

/// The soft `RLIMIT_NOFILE` after raising it to `wanted` (at most the hard
/// limit) if it was lower.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // `rlim_t` is u64 here, narrower on some platforms.
fn raise_descriptor_limit(wanted: u64) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own; no other memory.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return wanted;
    }
    let (soft, hard) = (lim.rlim_cur as u64, lim.rlim_max as u64);
    if soft >= wanted {
        return soft;
    }
    let raised = libc::rlimit { rlim_cur: wanted.min(hard) as libc::rlim_t, rlim_max: lim.rlim_max };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 { wanted.min(hard) } else { soft }
}

/// Elsewhere the limit is not ours to change; assume it suffices.
#[cfg(not(unix))]
fn raise_descriptor_limit(wanted: u64) -> u64 {
    wanted
}
