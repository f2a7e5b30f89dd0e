//! A terminal wallet, through a node's HTTP API.
//!
//! ```text
//! cargo run --example wallet -- new                       # create a key (toy-data/wallet.key)
//! cargo run --example wallet -- show                      # address, balance, nonce
//! cargo run --example wallet -- send --to <address> --amount 100 --fee 1
//! cargo run --example wallet -- --node http://127.0.0.1:8081 show
//! cargo run --example wallet -- history                   # this key's transactions
//! cargo run --example wallet -- wait <tx id>              # until it is in a block
//! cargo run --example wallet -- balance --height 120      # the balance then
//! cargo run --example wallet -- --json show               # JSON for scripts
//! ```
//!
//! The commands follow what people use with `bitcoin-cli` on regtest:
//! `getbalance`, `listtransactions`, waiting for a confirmation, `--json`
//! output. History and past balances are read from the node's blocks
//! (`/api/blocks`), newest first, as deep as `--depth` blocks.
//!
//! The key stays on this machine: transactions are signed here and submitted
//! to `POST /api/txs`; the balance and the nonce come from
//! `GET /api/accounts/{address}`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use toy::api::{AccountView, TxJson};
use toy::chain::{Keypair, Signature, Transaction, TxKind};

/// A terminal wallet for a toy node: the key stays here, transactions are
/// signed here and sent to the node's API.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The node's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    node: String,
    /// The node's cookie file (`<data-dir>/api.cookie`), for a node whose
    /// API is reachable from other hosts: writes then need its token.
    #[arg(long, value_name = "FILE")]
    cookie: Option<std::path::PathBuf>,
    /// The key file (created by `new`).
    #[arg(long, default_value = "toy-data/wallet.key")]
    key: PathBuf,
    /// Print JSON instead of text (one value per command: an array for
    /// `history`, an object otherwise).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a key (keeps an existing one).
    New,
    /// Show the address, balance and nonce.
    Show,
    /// The balance, now or as it was at a height of the best chain.
    Balance {
        /// The height (default: the tip).
        #[arg(long)]
        height: Option<u64>,
        /// Blocks read at most to go back (from the tip).
        #[arg(long, default_value_t = 10_000)]
        depth: u64,
    },
    /// This key's transactions: pending ones, then those in blocks, newest
    /// first, and the blocks it mined.
    History {
        /// Blocks read at most (from the tip).
        #[arg(long, default_value_t = 1_000)]
        depth: u64,
    },
    /// Waits until a transaction is in a block.
    Wait {
        /// Its id (64 hex digits).
        id: String,
        /// Longest wait, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Send coins, signed here.
    Send {
        /// Recipient address: a compressed secp256k1 public key, 66 hex
        /// digits (checked here: coins sent to anything else are lost).
        #[arg(long, value_parser = parse_recipient)]
        to: toy::chain::Address,
        /// Amount, at least 1 (the API's rule too).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        amount: u64,
        /// Fee.
        #[arg(long, default_value_t = 1)]
        fee: u64,
        /// Wait until the transaction is in a block.
        #[arg(long)]
        wait: bool,
        /// Longest wait with --wait, in seconds.
        #[arg(long, default_value_t = 600)]
        wait_timeout: u64,
    },
}

/// `--to`: an address that is a point on the curve.
fn parse_recipient(s: &str) -> Result<toy::chain::Address, String> {
    s.trim()
        .parse::<toy::chain::Address>()
        .ok()
        .filter(toy::chain::Address::is_valid_key)
        .ok_or_else(|| format!("{s:?} is not an address (a compressed secp256k1 public key, 66 hex digits)"))
}

async fn error_text(r: reqwest::Response) -> String {
    let status = r.status();
    match r.json::<serde_json::Value>().await {
        Ok(v) => v["error"].as_str().map_or_else(|| status.to_string(), str::to_owned),
        Err(_) => status.to_string(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let node = args.node.trim_end_matches('/');
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(cookie_headers(args.cookie.as_deref())?)
        .build()?;
    // Only `new` creates a key; every other command needs one already.
    let (key, created) = if matches!(args.command, Cmd::New) {
        if let Some(dir) = args.key.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Keypair::load_or_create(&args.key).with_context(|| format!("--key {}", args.key.display()))?
    } else if !args.key.exists() {
        bail!("no key at {} (--key); create one with `wallet new`", args.key.display());
    } else {
        (Keypair::load(&args.key).with_context(|| format!("--key {}", args.key.display()))?, false)
    };
    if matches!(args.command, Cmd::New) {
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "created": created, "key": args.key, "address": key.address().to_hex() })
            );
        } else {
            println!("{} key {}", if created { "created" } else { "existing" }, args.key.display());
            println!("address {}", key.address());
        }
        return Ok(());
    }
    let r = http.get(format!("{node}/api/accounts/{}", key.address())).send().await.context("is the node running?")?;
    if !r.status().is_success() {
        bail!("{}", error_text(r).await);
    }
    let account: AccountView = r.json().await?;
    let me = key.address().to_hex();
    match args.command {
        Cmd::New => {}
        Cmd::Show => {
            if args.json {
                println!("{}", serde_json::to_string(&account)?);
            } else {
                println!("address {}", account.address);
                println!("balance {}", account.balance);
                println!("nonce   {} (next {})", account.nonce, account.next_nonce);
            }
        }
        Cmd::Balance { height, depth } => {
            let status: toy::api::StatusView = get(&http, &format!("{node}/api/status")).await?;
            let at = height.unwrap_or(status.height);
            if at > status.height {
                bail!("--height {at} is above the tip ({})", status.height);
            }
            if status.height - at > depth {
                bail!("--height {at} is {} blocks below the tip; raise --depth", status.height - at);
            }
            // Now, minus what every block above the height did to us.
            let mut balance = i128::from(account.balance);
            for (block, txs) in blocks_down(&http, node, status.height, status.height - at).await? {
                balance -= delta(&me, &block, &txs);
            }
            let balance = u64::try_from(balance).context("the node's blocks do not add up to this balance")?;
            if args.json {
                println!("{}", serde_json::json!({ "address": me, "height": at, "balance": balance }));
            } else {
                println!("balance {balance} at height {at}");
            }
        }
        Cmd::History { depth } => {
            let status: toy::api::StatusView = get(&http, &format!("{node}/api/status")).await?;
            let pending: Vec<TxJson> = get(&http, &format!("{node}/api/mempool?limit={}", toy::api::MAX_PAGE)).await?;
            let mut entries = Vec::new();
            for tx in pending.iter().filter(|t| t.sender == me || t.recipient == me) {
                entries.push(entry(&me, tx, None));
            }
            for (block, txs) in blocks_down(&http, node, status.height, depth.min(status.height)).await? {
                for tx in txs.iter().filter(|t| t.sender == me || t.recipient == me) {
                    entries.push(entry(&me, tx, Some(block.height)));
                }
                if block.miner == me {
                    entries.push(serde_json::json!({
                        "height": block.height, "kind": "mined", "block": block.hash, "amount": block.reward,
                    }));
                }
            }
            if args.json {
                println!("{}", serde_json::Value::Array(entries));
            } else if entries.is_empty() {
                println!("no transactions in the last {depth} blocks or pending");
            } else {
                for e in entries {
                    let height = e["height"].as_u64().map_or_else(|| "pending".to_owned(), |h| format!("#{h}"));
                    match e["kind"].as_str() {
                        Some("mined") => println!(
                            "{height:>9}  mined     +{}  block {}",
                            e["amount"],
                            e["block"].as_str().unwrap_or("")
                        ),
                        Some(kind) => println!(
                            "{height:>9}  {kind:<8} {}{}  fee {}  {} {}  tx {}",
                            if kind == "received" { "+" } else { "-" },
                            e["amount"],
                            e["fee"],
                            if kind == "received" { "from" } else { "to" },
                            e["counterparty"].as_str().unwrap_or(""),
                            e["id"].as_str().unwrap_or("")
                        ),
                        None => {}
                    }
                }
            }
        }
        Cmd::Wait { id, timeout } => {
            let id: toy::chain::Hash =
                id.parse().map_err(|_| anyhow::anyhow!("{id:?} is not a transaction id (64 hex digits)"))?;
            let v = wait_confirmed(&http, node, &id, timeout).await?;
            if args.json {
                println!("{v}");
            } else {
                println!("confirmed in block {} ({} confirmations)", v["block_height"], v["confirmations"]);
            }
        }
        Cmd::Send { to, amount, fee, wait, wait_timeout } => {
            let recipient = to;
            let mut tx = Transaction {
                kind: TxKind::Transfer,
                sender: key.address(),
                recipient,
                amount,
                fee,
                nonce: account.next_nonce,
                signature: Signature::EMPTY,
            };
            // The signature is bound to the node's chain (its genesis hash).
            let status: toy::api::StatusView = get(&http, &format!("{node}/api/status")).await?;
            let chain_id = status.chain_id.parse().context("the node's chain id is not a hash")?;
            key.sign_tx(&mut tx, &chain_id);
            let r = http.post(format!("{node}/api/txs")).json(&TxJson::from(&tx)).send().await?;
            if !r.status().is_success() {
                bail!("{}", error_text(r).await);
            }
            let id = tx.id();
            if !args.json {
                println!("sent {id} (nonce {})", tx.nonce);
            }
            let confirmed = if wait { Some(wait_confirmed(&http, node, &id, wait_timeout).await?) } else { None };
            if args.json {
                println!("{}", serde_json::json!({ "id": id.to_hex(), "nonce": tx.nonce, "confirmed": confirmed }));
            } else if let Some(v) = confirmed {
                println!("confirmed in block {} ({} confirmations)", v["block_height"], v["confirmations"]);
            }
        }
    }
    Ok(())
}

/// GETs JSON, or the node's error.
async fn get<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> anyhow::Result<T> {
    let r = http.get(url).send().await.context("is the node running?")?;
    if !r.status().is_success() {
        bail!("{}", error_text(r).await);
    }
    Ok(r.json().await?)
}

/// Polls `/api/txs/{id}` until it is confirmed; its status.
async fn wait_confirmed(
    http: &reqwest::Client,
    node: &str,
    id: &toy::chain::Hash,
    timeout: u64,
) -> anyhow::Result<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let r = http.get(format!("{node}/api/txs/{id}")).send().await?;
        if r.status().is_success() {
            let v: serde_json::Value = r.json().await?;
            if v["status"] == "confirmed" {
                return Ok(v);
            }
        } else if r.status() == reqwest::StatusCode::NOT_FOUND {
            // Dropped from the node's pool (replaced or expired), or never sent.
            bail!("{id} is not known to the node: {}", error_text(r).await);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{id} not confirmed within {timeout} s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The `count` best-chain blocks from `top` down, each with its
/// transactions (fetched only for blocks that have any).
async fn blocks_down(
    http: &reqwest::Client,
    node: &str,
    top: u64,
    count: u64,
) -> anyhow::Result<Vec<(toy::api::BlockSummary, Vec<TxJson>)>> {
    let mut out = Vec::new();
    let mut from = top;
    let floor = top.saturating_sub(count);
    while from > floor && (out.len() as u64) < count {
        let limit = (from - floor).min(toy::api::MAX_PAGE as u64);
        let page: Vec<toy::api::BlockSummary> =
            get(http, &format!("{node}/api/blocks?from={from}&limit={limit}")).await?;
        if page.is_empty() {
            break;
        }
        for b in page {
            if b.height <= floor {
                break;
            }
            let txs = if b.tx_count > 0 {
                get(http, &format!("{node}/api/blocks/{}/txs", b.hash)).await?
            } else {
                Vec::new()
            };
            from = b.height.saturating_sub(1);
            out.push((b, txs));
        }
    }
    Ok(out)
}

/// What `block` did to `me`'s balance: the reward when it mined it, what
/// it received, minus what it sent (a mint costs its sender the fee only).
fn delta(me: &str, block: &toy::api::BlockSummary, txs: &[TxJson]) -> i128 {
    let mut d = if block.miner == me { i128::from(block.reward) } else { 0 };
    for t in txs {
        if t.recipient == me {
            d += i128::from(t.amount);
        }
        if t.sender == me {
            d -= i128::from(t.fee.unwrap_or(0));
            if t.kind != "mint" {
                d -= i128::from(t.amount);
            }
        }
    }
    d
}

/// One history line as JSON.
fn entry(me: &str, tx: &TxJson, height: Option<u64>) -> serde_json::Value {
    let sent = tx.sender == me;
    serde_json::json!({
        "height": height,
        "kind": if sent { "sent" } else { "received" },
        "id": tx.id,
        "amount": tx.amount,
        "fee": if sent { tx.fee.unwrap_or(0) } else { 0 },
        "counterparty": if sent { &tx.recipient } else { &tx.sender },
        "nonce": tx.nonce,
    })
}

/// `Authorization: Bearer <token>` from a node's cookie file, when given.
fn cookie_headers(cookie: Option<&std::path::Path>) -> anyhow::Result<reqwest::header::HeaderMap> {
    use anyhow::Context;
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(path) = cookie {
        let token = std::fs::read_to_string(path).with_context(|| format!("--cookie {}", path.display()))?;
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .with_context(|| format!("--cookie {}: not a token", path.display()))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(headers)
}
