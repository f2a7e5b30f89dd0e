//! The toycoin transaction oracle: random valid transfers between wallets
//! funded at genesis, sent to the nodes' HTTP APIs, with the authoritative
//! ledger kept here; `--verify` then checks every node against it.
//!
//! ```text
//! cargo run --example oracle -- --node http://127.0.0.1:8080 --count 200 --verify
//! ```
//!
//! The wallets are the dev preset's genesis wallets (deterministic keys,
//! `ChainParams::dev_wallet(i)`). The opening ledger is read from the first
//! node (at height 0 it is exactly the genesis allocation), so the oracle can
//! be run again on a chain it already used. Each transfer moves a random
//! amount between two oracle wallets; only transfers a node accepted enter
//! the ledger. With `--verify` the oracle waits until the nodes are quiet
//! (same tip, none of its transfers pending, for a few polls), then compares every node's
//! balance and nonce of every oracle wallet with the ledger, prints each
//! mismatch and exits non-zero on any. With `--rebroadcast` (runs that
//! kill nodes) it sends the transfers they have not confirmed again while
//! they settle, as a wallet rebroadcasts: a node killed just after
//! accepting one loses it with its mempool.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use toy::api::{AccountView, TxJson};
use toy::chain::{ChainParams, Hash, Keypair, Signature, Transaction, TxKind, params::DEV_WALLETS};

/// Random transfers between the genesis wallets, and a check of every
/// node's balances against the oracle's own ledger.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// A node's HTTP API (repeatable); transfers go to a random one.
    #[arg(long = "node", default_value = "http://127.0.0.1:8080")]
    nodes: Vec<String>,
    /// A node's cookie file (`<data-dir>/api.cookie`), for a node whose API
    /// is reachable from other hosts: writes then need its token. Repeatable:
    /// the n-th `--cookie` is for the n-th `--node`, and is sent to no other.
    #[arg(long, value_name = "FILE")]
    cookie: Vec<std::path::PathBuf>,
    /// Oracle wallets: the first N dev genesis wallets (2 to 16).
    #[arg(long, default_value_t = 8)]
    wallets: usize,
    /// Transfers to send (default: until Ctrl-C; 0 with --verify: only verify).
    #[arg(long)]
    count: Option<u64>,
    /// Mean pause between transfers in milliseconds (uniform 0..2×).
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// Seed of the random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// After sending, wait for the nodes to be quiet and compare them with the ledger.
    #[arg(long)]
    verify: bool,
    /// Longest wait for the nodes to be quiet, in seconds.
    #[arg(long, default_value_t = 180)]
    quiet_timeout: u64,
    /// While verifying, send the transfers the nodes have not confirmed
    /// again (for runs that kill nodes: a node killed just after accepting
    /// a transfer loses it with its mempool). Off, a lost transfer is a
    /// failure, as it should be when nothing was killed.
    #[arg(long)]
    rebroadcast: bool,
    /// Keep the ledger in this JSON file: read at start if it exists (instead
    /// of the first node's view), written after sending.
    #[arg(long)]
    ledger: Option<std::path::PathBuf>,
}

/// The transfers each wallet sent, kept to send again while the nodes
/// settle (a node killed right after accepting one may have taken it down
/// with its mempool, as a wallet's node can; wallets rebroadcast, as
/// Bitcoin Core's does). The newest [`Sent::PER_WALLET`] per wallet: far
/// more than a node keeps pending for one sender.
#[derive(Default)]
struct Sent(HashMap<usize, VecDeque<Transaction>>);

impl Sent {
    const PER_WALLET: usize = 512;

    fn push(&mut self, wallet: usize, tx: Transaction) {
        let q = self.0.entry(wallet).or_default();
        if q.len() == Self::PER_WALLET {
            q.pop_front();
        }
        q.push_back(tx);
    }

    /// Sends every transfer the nodes have not confirmed (nonce at or past
    /// the wallet's confirmed nonce on the first node that answers) again,
    /// each to the first node that takes it (gossip carries it to the
    /// rest; a node that has it refuses it harmlessly). Stops at `deadline`.
    /// Returns how many a node accepted again: each one had been lost.
    async fn rebroadcast(
        &mut self,
        client: &Client,
        nodes: &[String],
        keys: &[Keypair],
        deadline: tokio::time::Instant,
    ) -> usize {
        let mut sent = 0;
        for (wallet, q) in &mut self.0 {
            if tokio::time::Instant::now() > deadline {
                break;
            }
            let mut confirmed = None;
            for n in nodes {
                if let Ok(a) = client.get::<AccountView>(n, &format!("/api/accounts/{}", keys[*wallet].address())).await
                {
                    confirmed = Some(a.nonce);
                    break;
                }
            }
            let Some(confirmed) = confirmed else { continue };
            q.retain(|tx| tx.nonce >= confirmed);
            for tx in q.iter() {
                for n in nodes {
                    match client.submit(n, tx).await {
                        Ok(Ok(_)) => {
                            sent += 1;
                            break;
                        }
                        // Known already (pending or confirmed): not lost.
                        Ok(Err(_)) => break,
                        Err(_) => {}
                    }
                }
            }
        }
        sent
    }
}

/// What the oracle believes each wallet holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
struct Entry {
    balance: u64,
    nonce: u64,
}

/// Books a transfer the chain took into the oracle's ledger: the sender
/// pays amount and fee and uses its nonce, the recipient gets the amount.
fn record_transfer(
    ledger: &mut HashMap<usize, Entry>,
    from: usize,
    to: usize,
    amount: u64,
    fee: u64,
) -> anyhow::Result<()> {
    let e = ledger.get_mut(&from).context("wallet")?;
    e.balance -= amount + fee;
    e.nonce += 1;
    ledger.get_mut(&to).context("wallet")?.balance += amount;
    Ok(())
}

#[derive(Deserialize)]
struct Status {
    height: u64,
    tip: String,
    chain_id: String,
    mempool: usize,
}

#[derive(Deserialize)]
struct Submitted {
    id: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

struct Client {
    http: reqwest::Client,
    /// `Authorization` per node URL, from its cookie file (`--cookie`),
    /// read again when the node answers 401 (a restarted node writes a new
    /// token).
    tokens: std::sync::Mutex<HashMap<String, (std::path::PathBuf, reqwest::header::HeaderValue)>>,
}

impl Client {
    async fn get<T: for<'de> Deserialize<'de>>(&self, node: &str, path: &str) -> anyhow::Result<T> {
        let r = self.http.get(format!("{node}{path}")).send().await.with_context(|| format!("{node}{path}"))?;
        if !r.status().is_success() {
            bail!("{node}{path}: {}", r.status());
        }
        Ok(r.json().await?)
    }

    /// Submits; `Ok(Err(reason))` when the node refused it.
    async fn submit(&self, node: &str, tx: &Transaction) -> anyhow::Result<Result<String, String>> {
        let token = |c: &Client| c.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(node).cloned();
        let send = |auth: Option<reqwest::header::HeaderValue>| {
            let mut req = self.http.post(format!("{node}/api/txs")).json(&TxJson::from(tx));
            if let Some(auth) = auth {
                req = req.header(reqwest::header::AUTHORIZATION, auth);
            }
            req.send()
        };
        let mut r = send(token(self).map(|t| t.1)).await?;
        if r.status() == reqwest::StatusCode::UNAUTHORIZED
            && let Some((path, _)) = token(self)
        {
            // Restarted since: its cookie holds a new token.
            let fresh = bearer(&path)?;
            self.tokens
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(node.to_owned(), (path, fresh.clone()));
            r = send(Some(fresh)).await?;
        }
        if r.status().is_success() {
            Ok(Ok(r.json::<Submitted>().await?.id))
        } else if r.status().is_client_error() {
            Ok(Err(r.json::<ErrorBody>().await.map(|e| e.error).unwrap_or_default()))
        } else {
            bail!("{node}: {}", r.status())
        }
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
    if !(2..=DEV_WALLETS).contains(&args.wallets) {
        bail!("--wallets must be 2 to {DEV_WALLETS}");
    }
    let nodes: Vec<String> = args.nodes.iter().map(|n| n.trim_end_matches('/').to_owned()).collect();
    if args.cookie.len() > args.nodes.len() {
        bail!(
            "--cookie: {} cookie files for {} nodes (the n-th is for the n-th --node)",
            args.cookie.len(),
            args.nodes.len()
        );
    }
    let mut tokens = std::collections::HashMap::new();
    for (node, cookie) in args.nodes.iter().zip(&args.cookie) {
        tokens.insert(node.clone(), (cookie.clone(), bearer(cookie)?));
    }
    let client = Client {
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
        tokens: std::sync::Mutex::new(tokens),
    };
    let keys: Vec<Keypair> = (0..args.wallets).map(ChainParams::dev_wallet).collect();

    // The opening ledger: the saved one, or the first node's view.
    let saved: Option<HashMap<usize, Entry>> = match &args.ledger {
        Some(path) if path.exists() => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let ledger: HashMap<usize, Entry> = serde_json::from_str(&text).context("ledger file")?;
            if (0..keys.len()).any(|i| !ledger.contains_key(&i)) {
                bail!("{} does not cover {} wallets", path.display(), keys.len());
            }
            println!("oracle: {} wallets, ledger from {}", keys.len(), path.display());
            Some(ledger)
        }
        _ => None,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // Signatures are bound to the nodes' chain id (their genesis hash).
    let chain_id: Hash = 'id: loop {
        for node in &nodes {
            if let Ok(s) = client.get::<Status>(node, "/api/status").await {
                break 'id s.chain_id.parse().context("the node's chain id is not a hash")?;
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no node answered in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut ledger: HashMap<usize, Entry> = if let Some(l) = saved {
        l
    } else {
        'open: loop {
            for node in &nodes {
                let mut all = HashMap::new();
                for (i, k) in keys.iter().enumerate() {
                    match client.get::<AccountView>(node, &format!("/api/accounts/{}", k.address())).await {
                        Ok(a) => {
                            all.insert(i, Entry { balance: a.balance, nonce: a.next_nonce });
                        }
                        Err(_) => break,
                    }
                }
                if all.len() == keys.len() {
                    println!("oracle: {} wallets, opening ledger from {node}", keys.len());
                    break 'open all;
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no node answered in 60 s");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };

    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut sent = 0u64;
    let mut refused = 0u64;
    let mut kept = Sent::default();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    while args.count.is_none_or(|c| sent < c) {
        let from = rng.gen_range(0..keys.len());
        let mut to = rng.gen_range(0..keys.len() - 1);
        if to >= from {
            to += 1;
        }
        let amount = rng.gen_range(1..=1_000u64);
        let fee = rng.gen_range(1..=5u64);
        let entry = ledger[&from];
        if entry.balance < amount + fee {
            continue;
        }
        let mut tx = Transaction {
            kind: TxKind::Transfer,
            sender: keys[from].address(),
            recipient: keys[to].address(),
            amount,
            fee,
            nonce: entry.nonce,
            signature: Signature::EMPTY,
        };
        keys[from].sign_tx(&mut tx, &chain_id);
        let node = &nodes[rng.gen_range(0..nodes.len())];
        match client.submit(node, &tx).await {
            Ok(Ok(id)) => {
                sent += 1;
                record_transfer(&mut ledger, from, to, amount, fee)?;
                kept.push(from, tx);
                tracing::debug!(%id, from, to, amount, fee, "sent");
                if sent.is_multiple_of(50) {
                    println!("oracle: {sent} transfers sent");
                }
            }
            Ok(Err(reason)) => {
                // Too many pending for this sender, say: slow down, retry later.
                refused += 1;
                tracing::info!(%reason, "transfer refused");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                // No answer: the node may have taken it (and gossiped it)
                // before failing. If another node counts the nonce as used,
                // it went through; otherwise it is sent again under the same
                // nonce later.
                tracing::warn!("{e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                let mut used = false;
                for n in nodes.iter().filter(|n| *n != node) {
                    if let Ok(a) =
                        client.get::<AccountView>(n, &format!("/api/accounts/{}", keys[from].address())).await
                    {
                        used = a.next_nonce > entry.nonce;
                        break;
                    }
                }
                if used {
                    sent += 1;
                    record_transfer(&mut ledger, from, to, amount, fee)?;
                    kept.push(from, tx);
                    tracing::info!(from, nonce = entry.nonce, "no answer, but the transfer went through");
                }
            }
        }
        let pause = Duration::from_millis(rng.gen_range(0..=2 * args.interval_ms));
        tokio::select! {
            _ = &mut stop => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    println!("oracle: {sent} transfers sent, {refused} refused and retried");
    if let Some(path) = &args.ledger {
        std::fs::write(path, serde_json::to_string_pretty(&ledger)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }

    if args.verify
        && !verify(
            &client,
            &nodes,
            &keys,
            &ledger,
            args.rebroadcast.then_some(&mut kept),
            Duration::from_secs(args.quiet_timeout),
        )
        .await?
    {
        std::process::exit(1);
    }
    Ok(())
}

/// Waits until the nodes agree and their mempools are empty (three polls in
/// a row), then compares them with the ledger. `true` when all match.
/// Every [`REBROADCAST_POLLS`] polls that are not quiet, the transfers not
/// yet confirmed are sent again.
async fn verify(
    client: &Client,
    nodes: &[String],
    keys: &[Keypair],
    ledger: &HashMap<usize, Entry>,
    mut kept: Option<&mut Sent>,
    timeout: Duration,
) -> anyhow::Result<bool> {
    /// Polls (one a second) between rebroadcasts while the nodes settle.
    const REBROADCAST_POLLS: u32 = 15;
    let mut unsettled = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    let ours: Vec<String> = keys.iter().map(|k| k.address().to_hex()).collect();
    let mut quiet_polls = 0;
    let mut last = String::new();
    loop {
        let mut tips = Vec::new();
        let mut pending = 0;
        for n in nodes {
            match client.get::<Status>(n, "/api/status").await {
                Ok(s) => {
                    tips.push((s.tip, s.height));
                    if s.mempool > 0 {
                        // Only our own transfers count: others' may wait
                        // for a missing nonce until they expire.
                        let txs = client.get::<Vec<TxJson>>(n, "/api/mempool?limit=100").await.unwrap_or_default();
                        pending += txs.iter().filter(|t| ours.contains(&t.sender)).count();
                    }
                }
                Err(e) => tips.push((format!("unreachable: {e}"), 0)),
            }
        }
        let same = tips.windows(2).all(|w| w[0].0 == w[1].0);
        let now = format!("{tips:?}");
        quiet_polls = if same && pending == 0 && now == last { quiet_polls + 1 } else { 0 };
        unsettled = if quiet_polls == 0 { unsettled + 1 } else { 0 };
        if unsettled % REBROADCAST_POLLS == 0
            && unsettled > 0
            && let Some(kept) = kept.as_deref_mut()
        {
            let n = kept.rebroadcast(client, nodes, keys, deadline).await;
            if n > 0 {
                println!("oracle: {n} unconfirmed transfers accepted again");
            }
        }
        last = now;
        if quiet_polls >= 3 {
            let mismatches = compare(client, nodes, keys, ledger).await?;
            // Quiet but short of the ledger's nonces: the last transfer of a
            // wallet was lost with a node's mempool. Send it again and wait.
            let behind = mismatches.iter().all(|m| m.behind);
            let Some(kept) = kept
                .as_deref_mut()
                .filter(|_| !mismatches.is_empty() && behind && tokio::time::Instant::now() < deadline)
            else {
                println!("oracle: nodes quiet at height {} ({})", tips[0].1, tips[0].0);
                for m in &mismatches {
                    println!("oracle: MISMATCH {}", m.text);
                }
                if mismatches.is_empty() {
                    println!("oracle: verified {} nodes × {} wallets: all match the ledger", nodes.len(), keys.len());
                }
                return Ok(mismatches.is_empty());
            };
            let n = kept.rebroadcast(client, nodes, keys, deadline).await;
            println!(
                "oracle: nodes quiet but {} wallet views short of the ledger; {n} transfers accepted again",
                mismatches.len()
            );
            quiet_polls = 0;
        }
        if tokio::time::Instant::now() > deadline {
            println!("oracle: MISMATCH the nodes did not settle in {timeout:?}: tips {tips:?}, {pending} pending");
            for cause in diagnose(client, nodes, keys).await {
                println!("oracle: {cause}");
            }
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
}

/// A node's view of a wallet that differs from the ledger.
struct Mismatch {
    text: String,
    /// The node has confirmed fewer of the wallet's transfers than were
    /// sent (one may yet arrive); otherwise the view is simply wrong.
    behind: bool,
}

/// Every node's view of every wallet against the ledger.
async fn compare(
    client: &Client,
    nodes: &[String],
    keys: &[Keypair],
    ledger: &HashMap<usize, Entry>,
) -> anyhow::Result<Vec<Mismatch>> {
    let mut out = Vec::new();
    for n in nodes {
        for (i, k) in keys.iter().enumerate() {
            let want = ledger[&i];
            let got = client.get::<AccountView>(n, &format!("/api/accounts/{}", k.address())).await?;
            if got.balance != want.balance || got.nonce != want.nonce {
                out.push(Mismatch {
                    text: format!(
                        "{n} wallet {i}: balance {} nonce {} — ledger balance {} nonce {}",
                        got.balance, got.nonce, want.balance, want.nonce
                    ),
                    behind: got.nonce < want.nonce,
                });
            }
        }
    }
    Ok(out)
}

/// Why our transfers are stuck, named: for each wallet, a node whose
/// pending transactions start past its account nonce lacks that nonce
/// ("node … lacks nonce 78 of 0371…, which … holds"), the cause that keeps
/// every later one out of a block.
async fn diagnose(client: &Client, nodes: &[String], keys: &[Keypair]) -> Vec<String> {
    // Per node: its mempool (our wallets' part) and each wallet's nonce.
    let mut views = Vec::new();
    for n in nodes {
        let txs = client.get::<Vec<TxJson>>(n, &format!("/api/mempool?limit={}", toy::api::MAX_PAGE)).await;
        let mut accounts = Vec::new();
        for k in keys {
            accounts.push(client.get::<AccountView>(n, &format!("/api/accounts/{}", k.address())).await.ok());
        }
        views.push((n, txs.unwrap_or_default(), accounts));
    }
    let mut causes = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let addr = k.address().to_hex();
        for (n, txs, accounts) in &views {
            let Some(account) = &accounts[i] else { continue };
            let pending: std::collections::BTreeSet<u64> =
                txs.iter().filter(|t| t.sender == addr).map(|t| t.nonce).collect();
            let Some(first) = pending.first() else { continue };
            if *first > account.nonce {
                let missing = account.nonce;
                let holders: Vec<&str> = views
                    .iter()
                    .filter(|(_, other, _)| other.iter().any(|t| t.sender == addr && t.nonce == missing))
                    .map(|(m, _, _)| m.as_str())
                    .collect();
                let held = if holders.is_empty() {
                    "which no node holds".to_owned()
                } else {
                    format!("which {} holds", holders.join(", "))
                };
                causes.push(format!(
                    "{n} lacks nonce {missing} of {}… ({held}); its nonces {}..={} wait behind it",
                    &addr[..8],
                    first,
                    pending.last().unwrap_or(first)
                ));
            }
        }
    }
    if causes.is_empty() {
        causes.push("no node lacks a nonce of ours: the tips did not converge (a partition or a stalled sync?)".into());
    }
    causes
}

/// `Bearer <token>` from a node's cookie file, marked sensitive (kept out of
/// logs and debug output).
fn bearer(path: &std::path::Path) -> anyhow::Result<reqwest::header::HeaderValue> {
    let token = std::fs::read_to_string(path).with_context(|| format!("--cookie {}", path.display()))?;
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
        .with_context(|| format!("--cookie {}: not a token", path.display()))?;
    value.set_sensitive(true);
    Ok(value)
}
