//! A local test network in one command: several nodes (child processes on
//! their own ports), some mining, the oracle, optionally an adversary, and a
//! live table of every node.
//!
//! ```text
//! cargo build --examples && cargo run --example testnet -- --nodes 4 --miners 2 --adversary
//! ```
//!
//! Node `i` listens on `--base-port + i` (p2p) and `--http-port + i` (its web
//! wallet), or the next free ports (the addresses it prints are used and
//! shown), keeps its data and logs in `<data-dir>/node-i` and bootstraps
//! from node 0 (and node 1). The node, oracle and adversary programs are the sibling
//! example binaries, so build the examples first. Ctrl-C (or `--duration`)
//! stops everything (each node shuts down cleanly); with `--verify` the
//! oracle first checks every node against its ledger, and the testnet exits
//! non-zero on a mismatch. The previous run's logs are kept as
//! `<name>.prev.log` (not with `--fresh`, which starts from nothing).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use serde::Deserialize;

/// A local network of toy node processes (some mining), optionally with
/// the oracle and an adversary, and a live table of their state.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// How many of them mine (one thread each).
    #[arg(long, default_value_t = 2)]
    miners: usize,
    /// p2p port of node 0; node i uses base + i.
    #[arg(long, default_value_t = 16100)]
    base_port: u16,
    /// HTTP port of node 0; node i uses this + i.
    #[arg(long, default_value_t = 18100)]
    http_port: u16,
    /// Where the nodes keep their data.
    #[arg(long, default_value = "toy-data/testnet")]
    data_dir: PathBuf,
    /// Start from empty data directories.
    #[arg(long)]
    fresh: bool,
    /// Chain preset.
    #[arg(long, default_value = "dev")]
    preset: String,
    /// Run the oracle (random transfers to every node).
    #[arg(long)]
    oracle: bool,
    /// Run an adversary against the last node.
    #[arg(long)]
    adversary: bool,
    /// At the end, have the oracle check every node against its ledger
    /// (implies --oracle); exit non-zero on a mismatch.
    #[arg(long)]
    verify: bool,
    /// Stop after this many seconds (default: at Ctrl-C).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
}

#[derive(Deserialize)]
struct Status {
    height: u64,
    tip: String,
    peers: usize,
    mempool: usize,
    hash_rate: f64,
    sync: Sync,
}

#[derive(Deserialize)]
struct Sync {
    active: bool,
    done: u64,
    total: u64,
}

/// Children, interrupted (then killed) when dropped.
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &self.0 {
            let _ = Command::new("kill").arg("-INT").arg(c.id().to_string()).status();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for (name, c) in &mut self.0 {
            while c.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                println!("{name} killed");
            }
            let _ = c.wait();
        }
    }
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name(name);
    if !p.exists() {
        bail!("{} not found: run `cargo build --examples` first", p.display());
    }
    Ok(p)
}

/// A fresh log file; the previous run's is kept as `<name>.prev.log`.
fn log_file(dir: &Path, name: &str) -> anyhow::Result<Stdio> {
    let path = dir.join(format!("{name}.log"));
    if path.exists() {
        std::fs::rename(&path, dir.join(format!("{name}.prev.log")))?;
    }
    Ok(std::fs::File::create(path)?.into())
}

/// A child in a process group of its own: a terminal's Ctrl-C reaches only
/// the testnet, which then stops the children in order (the oracle first,
/// so it can verify while the nodes still run).
fn own_group(cmd: &mut Command) -> &mut Command {
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    cmd
}

/// The last non-empty line of a log, cut to `max` characters.
fn last_line(path: &Path, max: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(nothing yet)");
    line.chars().take(max).collect()
}

/// The addresses a node printed in its log (`toy node listening on …`,
/// `web wallet and API on http://…/`): a node moves to the next free port
/// when its own is taken, so these are the truth, not the flags.
async fn started_addrs(log: &Path, child: &mut Child) -> anyhow::Result<(String, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let p2p = text.lines().find_map(|l| l.strip_prefix("toy node listening on "));
        let http = text
            .lines()
            .find_map(|l| l.strip_prefix("web wallet and API on http://"))
            .and_then(|l| l.split('/').next());
        if let (Some(p), Some(h)) = (p2p, http) {
            return Ok((p.trim().to_owned(), h.trim().to_owned()));
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("node exited ({status}); see {}", log.display());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("node did not start in time; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.nodes == 0 || args.miners > args.nodes {
        bail!("need at least one node and at most --nodes miners");
    }
    if args.preset == "workshop" {
        bail!("--preset workshop: the workshop chain has no HTTP API yet, which the testnet's table and oracle use");
    }
    if args.fresh && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir).with_context(|| format!("removing {}", args.data_dir.display()))?;
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let node_bin = sibling("node")?;
    let mut children = Children(Vec::new());
    let mut p2p: Vec<String> = Vec::new();
    let mut http: Vec<String> = Vec::new();
    // Shown above the table on every redraw.
    let mut banner: Vec<String> = Vec::new();
    for i in 0..args.nodes {
        let mut cmd = Command::new(&node_bin);
        cmd.arg("--listen").arg(format!("127.0.0.1:{}", args.base_port as usize + i));
        cmd.arg("--http").arg(format!("127.0.0.1:{}", args.http_port as usize + i));
        cmd.arg("--data-dir").arg(args.data_dir.join(format!("node-{i}"))).arg("--preset").arg(&args.preset);
        if i < args.miners {
            cmd.args(["--threads", "1"]);
        } else {
            cmd.arg("--no-mine");
        }
        for peer in p2p.iter().take(2) {
            cmd.arg("--peer").arg(peer);
        }
        let log = args.data_dir.join(format!("node-{i}.log"));
        cmd.stdout(log_file(&args.data_dir, &format!("node-{i}"))?)
            .stderr(log_file(&args.data_dir, &format!("node-{i}.err"))?);
        let mut child = own_group(&mut cmd).spawn().context("starting a node")?;
        let started = started_addrs(&log, &mut child).await;
        children.0.push((format!("node {i}"), child));
        let (p, h) = started?;
        let line =
            format!("  node {i}: p2p {p}  web wallet http://{h}/{}", if i < args.miners { "  (mining)" } else { "" });
        println!("{line}");
        banner.push(line);
        p2p.push(p);
        http.push(h);
    }
    let line = format!("{} nodes started; logs in {}", args.nodes, args.data_dir.display());
    println!("{line}");
    banner.push(line);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    if args.oracle || args.verify {
        let mut cmd = Command::new(sibling("oracle")?);
        for h in &http {
            cmd.arg("--node").arg(format!("http://{h}"));
        }
        cmd.stdout(log_file(&args.data_dir, "oracle")?).stderr(log_file(&args.data_dir, "oracle.err")?);
        if args.verify {
            cmd.arg("--verify");
        }
        children.0.push(("oracle".into(), own_group(&mut cmd).spawn()?));
        banner.push("  oracle: random transfers to every node (log: oracle.log)".to_owned());
    }
    if args.adversary {
        let mut cmd = Command::new(sibling("adversary")?);
        cmd.arg("--peer").arg(&p2p[args.nodes - 1]).arg("--preset").arg(&args.preset);
        cmd.stdout(log_file(&args.data_dir, "adversary")?).stderr(log_file(&args.data_dir, "adversary.err")?);
        children.0.push(("adversary".into(), own_group(&mut cmd).spawn()?));
        banner.push(format!("  adversary: attacking node {} (log: adversary.log)", args.nodes - 1));
    }

    for line in banner.iter().skip(args.nodes + 1) {
        println!("{line}");
    }
    let live = std::io::stdout().is_terminal();
    let stop = async {
        match args.duration {
            Some(secs) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    () = tokio::time::sleep(Duration::from_secs(secs)) => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        if live {
            // Redraw in place on a terminal; append when logged to a file.
            print!("\x1b[2J\x1b[H");
            println!("toy testnet: {} nodes (Ctrl-C stops everything)", args.nodes);
            for line in &banner {
                println!("{line}");
            }
        }
        println!("\n{:<6} {:>7}  {:<18} {:>5} {:>7} {:>9}  sync", "node", "height", "tip", "peers", "mempool", "MH/s");
        for (i, h) in http.iter().enumerate() {
            let s = match client.get(format!("http://{h}/api/status")).send().await {
                Ok(r) => r.json::<Status>().await.ok(),
                Err(_) => None,
            };
            match s {
                Some(s) => {
                    let sync = if s.sync.active { format!("{}/{}", s.sync.done, s.sync.total) } else { "-".into() };
                    println!(
                        "{:<6} {:>7}  {:<18} {:>5} {:>7} {:>9.2}  {sync}",
                        i,
                        s.height,
                        &s.tip[..16.min(s.tip.len())],
                        s.peers,
                        s.mempool,
                        s.hash_rate / 1e6
                    );
                }
                None => println!("{i:<6} (not answering)"),
            }
        }
        for (name, c) in &mut children.0 {
            let state = match c.try_wait() {
                Ok(Some(status)) => format!("exited: {status}"),
                _ => "running".to_owned(),
            };
            if name == "oracle" || name == "adversary" {
                let log = args.data_dir.join(format!("{name}.log"));
                println!("{name:<10} {state:<10} {}", last_line(&log, 90));
            } else if state != "running" {
                println!("{name} {state}");
            }
        }
    }
    let mut verified = true;
    if args.verify
        && let Some((_, oracle)) = children.0.iter_mut().find(|(n, _)| n == "oracle")
    {
        // The oracle stops sending at SIGINT and verifies while the nodes
        // still run (they must mine what is pending).
        println!("stopping the oracle; it verifies every node against its ledger (up to 4 minutes)");
        let _ = Command::new("kill").arg("-INT").arg(oracle.id().to_string()).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(240);
        let status = loop {
            if let Ok(Some(status)) = oracle.try_wait() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let log = args.data_dir.join("oracle.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("MISMATCH") || l.contains("verified") || l.contains("lacks")) {
            println!("{line}");
        }
        verified = status.is_some_and(|s| s.success());
        println!("verify: {}", if verified { "every node matches the ledger" } else { "FAILED (see oracle.log)" });
    }
    println!("stopping {} processes", children.0.len());
    drop(children);
    if !verified {
        std::process::exit(1);
    }
    Ok(())
}
