//! A terminal wallet, through a node's HTTP API.
//!
//! ```text
//! cargo run --example wallet -- new                       # create a key (toy-data/wallet.key)
//! cargo run --example wallet -- show                      # address, balance, nonce
//! cargo run --example wallet -- send --to <address> --amount 100 --fee 1
//! cargo run --example wallet -- --node http://127.0.0.1:8081 show
//! ```
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
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a key (keeps an existing one).
    New,
    /// Show the address, balance and nonce.
    Show,
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
        println!("{} key {}", if created { "created" } else { "existing" }, args.key.display());
        println!("address {}", key.address());
        return Ok(());
    }
    let r = http.get(format!("{node}/api/accounts/{}", key.address())).send().await.context("is the node running?")?;
    if !r.status().is_success() {
        bail!("{}", error_text(r).await);
    }
    let account: AccountView = r.json().await?;
    match args.command {
        Cmd::New => {}
        Cmd::Show => {
            println!("address {}", account.address);
            println!("balance {}", account.balance);
            println!("nonce   {} (next {})", account.nonce, account.next_nonce);
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
            let status: toy::api::StatusView = http.get(format!("{node}/api/status")).send().await?.json().await?;
            let chain_id = status.chain_id.parse().context("the node's chain id is not a hash")?;
            key.sign_tx(&mut tx, &chain_id);
            let r = http.post(format!("{node}/api/txs")).json(&TxJson::from(&tx)).send().await?;
            if !r.status().is_success() {
                bail!("{}", error_text(r).await);
            }
            let id = tx.id();
            println!("sent {id} (nonce {})", tx.nonce);
            if wait {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_timeout);
                loop {
                    let r = http.get(format!("{node}/api/txs/{id}")).send().await?;
                    if r.status().is_success() {
                        let v: serde_json::Value = r.json().await?;
                        if v["status"] == "confirmed" {
                            println!("confirmed in block {} ({} confirmations)", v["block_height"], v["confirmations"]);
                            break;
                        }
                    } else if r.status() == reqwest::StatusCode::NOT_FOUND {
                        // Dropped from the node's pool (replaced or expired).
                        bail!("{id} is no longer known to the node: {}", error_text(r).await);
                    }
                    if tokio::time::Instant::now() > deadline {
                        bail!("{id} not confirmed within {wait_timeout} s");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
    Ok(())
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
