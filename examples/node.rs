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
//!
//! `--preset workshop` runs the workshop's own chain instead (ASCII blocks
//! and transactions, P-192 keys, `search:block`; see the `toy-workshop`
//! crate) over the same TCP, peering and gossip, so it mines one chain with
//! nodes written to the workshop's description. Its web wallet and API
//! leave out what the workshop chain has no field for (times, fees); its
//! terminal takes `key`, `balance [KEY]`, `send KEY AMOUNT`, `tip`, `say TEXT` and
//! `peers`, one per line.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use toy::chain::ChainParams;
use toy::node::{NodeBuilder, NodeConfig, NodeError};
use toy::p2p::PeerNetwork;

/// A toy proof-of-work node: peers, gossip, the chain on disk, a miner
/// and the web wallet.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on; the port is the first free one from here.
    #[arg(long, env = "TOY_LISTEN", default_value = "127.0.0.1:15151", value_parser = listen_addr)]
    listen: String,
    /// Address announced to peers (default: the listening address).
    #[arg(long, env = "TOY_ADVERTISE", value_parser = peer_addr)]
    advertise: Option<String>,
    /// A peer to connect to (repeatable).
    #[arg(long, env = "TOY_PEER", value_delimiter = ',', value_parser = peer_addr)]
    peer: Vec<String>,
    /// A tracker to discover peers through.
    #[arg(long, env = "TOY_TRACKER", value_parser = peer_addr)]
    tracker: Option<String>,
    /// Gossip through this relay instead of flooding.
    #[arg(long, env = "TOY_RELAY", value_parser = peer_addr)]
    relay: Option<String>,
    /// Data directory (default: toy-data/node-<port>).
    #[arg(long, env = "TOY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Wallet key file (default: <data-dir>/wallet.key, created if absent).
    #[arg(long, env = "TOY_KEY")]
    key: Option<PathBuf>,
    /// Mine (the default).
    #[arg(long, env = "TOY_MINE", overrides_with = "no_mine")]
    mine: bool,
    /// Do not mine.
    #[arg(long, env = "TOY_NO_MINE")]
    no_mine: bool,
    /// Mining threads (default: every core).
    #[arg(long, env = "TOY_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Chain preset: dev, test, workshop-constants (toy's formats at the
    /// workshop's constants), or workshop (the workshop's own chain, byte
    /// for byte).
    #[arg(long, env = "TOY_PRESET", default_value = "dev")]
    preset: String,
    /// With --preset workshop: leading zero hex digits a block needs (the
    /// workshop's is 7; a classroom short of time may agree on 5).
    #[arg(long, env = "TOY_DIFFICULTY", default_value_t = 7, value_parser = clap::value_parser!(u8).range(1..=64))]
    difficulty: u8,
    /// A network of its own: a genesis file (chain spec, JSON) naming the
    /// base preset, allocations and mint authority; overrides --preset.
    /// Example: examples/genesis.json.
    #[arg(long, env = "TOY_GENESIS", value_name = "FILE")]
    genesis: Option<PathBuf>,
    /// Peers kept (between half and all of this).
    #[arg(long, env = "TOY_MAX_PEERS", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    max_peers: u16,
    /// HTTP API and web wallet address; the port is the first free one from
    /// here.
    #[arg(long, env = "TOY_HTTP", default_value = "127.0.0.1:8080", value_parser = listen_addr)]
    http: String,
    /// Do not serve the HTTP API and web wallet.
    #[arg(long, env = "TOY_NO_HTTP")]
    no_http: bool,
    /// A host name the API answers to besides localhost and IP addresses
    /// (repeatable); requests naming any other host are refused, against
    /// DNS rebinding. When --http is not a loopback address, writes also
    /// need the token in <data-dir>/api.cookie.
    #[arg(long, env = "TOY_HTTP_HOST", value_delimiter = ',', value_name = "NAME")]
    http_host: Vec<String>,
    /// Fault injection for demonstrations: drop this fraction (0 to 1) of
    /// the gossip copies this node sends (transactions lost on the way are
    /// repaired by re-announcing and mempool reconciliation).
    #[arg(long, env = "TOY_GOSSIP_LOSS", value_name = "FRACTION", default_value_t = 0.0, value_parser = fraction)]
    gossip_loss: f64,
    /// Signature verifier: k256 (pure Rust, the default) or secp256k1
    /// (libsecp256k1, as Bitcoin Core; needs `--features secp256k1`).
    #[arg(long, env = "TOY_VERIFIER", default_value = "k256", value_parser = ["k256", "secp256k1"])]
    verifier: String,
}

/// The log filter when `RUST_LOG` is not set.
const DEFAULT_LOG: &str = "warn,toy_net=info,toy_msg=info,toy_p2p=info,toy_gossip=info,toy_chain=info,toy_miner=info";

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
    // Every flag is checked before anything is bound or written (clap's
    // parsers above check the addresses and numbers); the key too.
    if let Some(path) = args.key.as_ref().filter(|p| p.exists()) {
        if args.preset == "workshop" {
            let text = std::fs::read_to_string(path).with_context(|| format!("--key {}", path.display()))?;
            toy::workshop::SecretKey::from_hex(&text).with_context(|| format!("--key {}", path.display()))?;
        } else {
            toy::chain::Keypair::load(path).with_context(|| format!("--key {}", path.display()))?;
        }
    }
    let verifier = match args.verifier.as_str() {
        "secp256k1" => toy::node::VerifierChoice::Secp256k1,
        _ => toy::node::VerifierChoice::K256,
    };
    verifier.build().context("--verifier")?;
    if args.preset == "workshop" && args.genesis.is_none() {
        // Flags that mean nothing on the workshop chain are refused, not
        // ignored.
        for (given, flag) in [
            (args.tracker.is_some(), "--tracker"),
            (args.relay.is_some(), "--relay"),
            (args.gossip_loss > 0.0, "--gossip-loss"),
        ] {
            if given {
                anyhow::bail!("{flag} does not apply to --preset workshop (it gossips by flood only)");
            }
        }
        return run_workshop(args).await;
    }
    let params = match &args.genesis {
        Some(path) => ChainParams::from_genesis_file(path)?,
        None => ChainParams::preset(&args.preset)
            .with_context(|| format!("--preset {}: must be dev, test, workshop or workshop-constants", args.preset))?,
    };
    let chain_name = params.name.clone();
    let mining = !args.no_mine;
    let pinned = args.data_dir.is_some();
    // Flags → config → launch: the wiring and the shutdown order live in
    // `toy::node`.
    let config = NodeConfig {
        listen: args.listen,
        advertise: args.advertise,
        peers: args.peer,
        tracker: args.tracker,
        relay: args.relay,
        data_dir: args.data_dir,
        key: args.key,
        params,
        max_peers: usize::from(args.max_peers),
        mine_threads: mining.then_some(args.threads.map_or(0, usize::from)),
        http: (!args.no_http).then_some(args.http),
        // The API's share of the descriptors; the p2p side keeps the rest.
        http_connections: descriptor_budget(usize::from(args.max_peers)),
        http_hosts: args.http_host,
        gossip_loss: args.gossip_loss,
        verifier,
        ..Default::default()
    };
    let node = NodeBuilder::new(config).launch().await.map_err(|e| match e {
        // The flags that fix these, named.
        NodeError::Listen(m) => anyhow::anyhow!("--listen: {m}"),
        NodeError::DataDir { .. } | NodeError::Store { .. } => anyhow::anyhow!("{e} (see --data-dir)"),
        NodeError::Http { .. } => anyhow::anyhow!("--{e}"),
        other => other.into(),
    })?;

    println!("toy node listening on {}", node.addr());
    let created = if node.new_key() { "new key" } else { "existing key" };
    println!("wallet {} ({created})", node.wallet().address());
    let on = if mining { "on" } else { "off" };
    println!("data in {}; chain {chain_name}; mining {on}", node.data_dir().display());
    if !pinned {
        // Identity follows the port: whichever node starts first on 15151
        // is toy-data/node-15151, key and all.
        println!("identity: port {} (its data directory and key; --data-dir pins them)", port_of(node.addr()));
    }
    let tip = node.tip();
    println!("tip {} at height {}", tip.hash, tip.height);
    if let Some(http) = node.http_addr() {
        println!("web wallet and API on http://{http}/ (docs at /docs)");
    }
    if let Some(cookie) = node.cookie_file() {
        println!("API writes need the token in {} (wallet and oracle: --cookie)", cookie.display());
    }

    let mut tips = node.chain().subscribe();
    let mut last_height = tip.height;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            changed = tips.changed() => {
                if changed.is_err() { break; }
                let tip = tips.borrow_and_update().clone();
                let rate = if mining { format!(", {:.2} MH/s", node.hash_rate() / 1e6) } else { String::new() };
                let marker = if tip.height <= last_height { " (reorg)" } else { "" };
                last_height = tip.height;
                println!("tip {} at height {}{marker}, {} peers{rate}", tip.hash, tip.height, node.p2p().peers().len());
            }
        }
    }
    println!("shutting down");
    let data_dir = node.data_dir().to_owned();
    let tip = node.shutdown().await;
    println!("stopped at height {}; data in {}", tip.height, data_dir.display());
    Ok(())
}

/// `--gossip-loss`: a number from 0 to 1.
fn fraction(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|f| (0.0..=1.0).contains(f))
        .ok_or_else(|| format!("{s:?} is not a fraction from 0 to 1"))
}

/// The port of `host:port`.
fn port_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(_, p)| p)
}

/// `--listen`, `--http`: `host:port`, port 0 meaning any free one.
fn listen_addr(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_owned()),
        _ => Err(format!("{s:?} is not host:port")),
    }
}

/// `--peer`, `--advertise`, `--tracker`, `--relay`: `host:port`, port 1 to
/// 65535.
fn peer_addr(s: &str) -> Result<String, String> {
    if toy::p2p::is_valid_addr(s) { Ok(s.to_owned()) } else { Err(format!("{s:?} is not host:port (port 1 to 65535)")) }
}

/// `--preset workshop`: the workshop's chain over toy's network layers, with
/// a terminal for the wallet.
async fn run_workshop(args: Args) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let mining = !args.no_mine;
    let config = toy::workshop_node::WorkshopConfig {
        listen: args.listen,
        advertise: args.advertise,
        peers: args.peer,
        data_dir: args.data_dir,
        key: args.key,
        difficulty: args.difficulty,
        mine_threads: mining.then_some(args.threads.map_or(0, usize::from)),
        max_peers: usize::from(args.max_peers),
        http: (!args.no_http).then_some(args.http),
        http_hosts: args.http_host,
    };
    let node = config.launch().await?;
    let me = node.key().public_hex();
    println!("toy node on the workshop chain, listening on {}", node.addr());
    let created = if node.new_key() { "new key" } else { "existing key" };
    println!("key {me} ({created})");
    let on = if mining { "on" } else { "off" };
    println!("data in {}; difficulty {}; mining {on}", node.data_dir().display(), args.difficulty);
    if let Some(http) = node.http_addr() {
        println!("web wallet and API on http://{http}/ (docs at /docs)");
    }
    println!("commands: key | balance [KEY] | send KEY AMOUNT | tip | peers | say TEXT");
    let mut tips = node.node().watch_tip();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            changed = tips.changed() => {
                if changed.is_err() { break; }
                let (height, tip) = *tips.borrow_and_update();
                println!("tip {tip} at height {height}, {} peers", node.p2p().peers().len());
            }
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => workshop_command(&node, &me, line.trim()).await,
                _ => stdin_open = false,
            },
        }
    }
    println!("shutting down");
    node.shutdown().await;
    Ok(())
}

/// One terminal command of `--preset workshop`.
async fn workshop_command(node: &toy::workshop_node::RunningWorkshop, me: &str, line: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let chain = node.node();
    match words[..] {
        [] => {}
        ["key"] => println!("{me}"),
        ["balance"] => println!("{}", chain.read(|c| c.balance(me))),
        ["balance", key] => println!("{}", chain.read(|c| c.balance(key))),
        ["tip"] => {
            let (height, tip) = chain.read(|c| (c.height(), c.tip()));
            println!("tip {tip} at height {height}");
        }
        ["peers"] => {
            for p in node.p2p().peers() {
                println!("{}", p.0);
            }
        }
        ["say", ..] => {
            let line = toy::gossip::chat::ChatMessage { from: node.addr().to_owned(), text: words[1..].join(" ") };
            match toy::gossip::GossipNetwork::broadcast(
                &**chain.gossip(),
                toy::gossip::chat::KIND,
                line.encode().into(),
            ) {
                Ok(()) => println!("said"),
                Err(e) => println!("not said: {e}"),
            }
        }
        ["send", to, amount] => match amount.parse::<u64>() {
            Ok(amount) => match chain.send(node.key(), to, amount).await {
                Ok(tx) => println!("sent: transaction {} (nonce {})", tx.id(), tx.nonce),
                Err(e) => println!("not sent: {e}"),
            },
            Err(_) => println!("not sent: amount {amount:?} is not a whole number of coins"),
        },
        _ => println!("commands: key | balance [KEY] | send KEY AMOUNT | tip | peers | say TEXT"),
    }
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
