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
//!
//! ## An internet in a box (root)
//!
//! ```text
//! sudo target/debug/examples/testnet --nodes 20 --miners 4 --netns \
//!     --latency 50ms --jitter 10ms --loss 1% --rate 10mbit --chaos 7 --duration 600 --verify
//! ```
//!
//! `--netns` puts node `i` in a network namespace of its own at
//! 10.79.0.(i+1); every packet between two nodes crosses the testnet's
//! [wire](wire), which delays, drops and paces it as `tc netem` would on
//! the sender's link (`--latency`, `--jitter`, `--loss`, `--rate`).
//! `--chaos SEED` runs a seeded schedule of faults while the oracle sends
//! transfers: `kill -9` and restart, a group cut off and healed, latency
//! spikes (kills only without `--netns`). At the end the testnet prints a
//! [summary](report) from the nodes' own logs: stale-block rate, longest
//! reorganisation, and block propagation p50/p90/p99 next to the bound the
//! peer graph allows.

mod chaos;
mod netns;
mod report;
mod wire;

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Each node in a network namespace of its own (10.79.0.i+1), its
    /// links through the testnet's wire. Root only.
    #[arg(long)]
    netns: bool,
    /// One-way delay on every link (with --netns), e.g. 50ms.
    #[arg(long, value_parser = millis, value_name = "TIME")]
    latency: Option<Duration>,
    /// Uniform variation of the delay (with --netns), e.g. 10ms.
    #[arg(long, value_parser = millis, value_name = "TIME")]
    jitter: Option<Duration>,
    /// Packets lost on every link (with --netns), e.g. 1%.
    #[arg(long, value_parser = percent, value_name = "PERCENT")]
    loss: Option<f64>,
    /// Bits per second each node's link carries (with --netns), e.g. 10mbit.
    #[arg(long, value_parser = bits_per_second, value_name = "RATE")]
    rate: Option<u64>,
    /// Run a seeded schedule of faults (kill -9 and restart; with --netns
    /// also partitions and latency spikes) and print a summary at the end.
    /// Needs --duration.
    #[arg(long, value_name = "SEED")]
    chaos: Option<u64>,
}

/// `50ms`, `1.5s` or a bare number of milliseconds.
fn millis(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1e-3)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("{s:?}: a time such as 50ms or 1s"))?;
    if !(0.0..=60.0).contains(&(v * scale)) {
        return Err(format!("{s:?}: between 0 and 60 s"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// `1%` or a fraction such as `0.01`.
fn percent(s: &str) -> Result<f64, String> {
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => s.trim().parse::<f64>(),
    }
    .map_err(|_| format!("{s:?}: a loss such as 1% or 0.01"))?;
    if (0.0..=1.0).contains(&v) { Ok(v) } else { Err(format!("{s:?}: between 0 and 100 %")) }
}

/// `10mbit`, `500kbit`, `1gbit` or bits per second (netem's units).
fn bits_per_second(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let (num, scale) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .iter()
        .find_map(|(unit, scale)| lower.strip_suffix(unit).map(|n| (n.to_owned(), *scale)))
        .unwrap_or((lower.clone(), 1.0));
    let v: f64 = num.trim().parse().map_err(|_| format!("{s:?}: a rate such as 10mbit"))?;
    let bps = v * scale;
    if bps < 8_000.0 { Err(format!("{s:?}: at least 8kbit")) } else { Ok(bps as u64) }
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
        for (_, c) in &mut self.0 {
            if c.try_wait().ok().flatten().is_none() {
                let _ = Command::new("kill").arg("-INT").arg(c.id().to_string()).status();
            }
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
///
/// A testnet that dies without stopping its children (SIGKILL) takes them
/// with it rather than leaving them mining, in its namespaces or not.
fn own_group(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let parent = std::process::id();
    // SAFETY: prctl and getppid are async-signal-safe; nothing else runs
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The testnet died before prctl took effect: no signal will come.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("the testnet exited"));
            }
            Ok(())
        });
    }
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

/// How long after a restart, or after a partition heals, arrivals across
/// the fault are left out of propagation: the node (or the group cut off)
/// reconnects and catches up by sync first, which measures the fault, not
/// relaying (a 20-node run saw a healed group take up to 30 s).
const CATCH_UP_GRACE_MS: u64 = 15_000;

/// Most peer-graph snapshots a run keeps.
const MAX_GRAPHS: usize = 20_000;

/// The nodes' log filter: their usual one, plus the arrival of every block
/// (the summary's source).
const NODE_LOG: &str = "warn,toy_net=info,toy_msg=info,toy_p2p=info,toy_gossip=info,toy_chain=info,toy_miner=info,toy_chain::arrival=debug";

/// How node `i` is started, and started again after a kill.
struct NodeSpec {
    /// Its namespace (`ip netns exec`), with --netns.
    netns: Option<String>,
    /// The node's arguments.
    args: Vec<String>,
}

/// Starts a node. `again`: after a kill, appending to its logs (the
/// summary reads every run's lines) instead of starting new ones.
fn spawn_node(bin: &Path, spec: &NodeSpec, dir: &Path, i: usize, again: bool) -> anyhow::Result<Child> {
    let mut cmd = match &spec.netns {
        Some(ns) => {
            // `ip netns exec` execs the node in place: the child is the node.
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(&spec.args);
    let rust_log =
        std::env::var("RUST_LOG").map_or_else(|_| NODE_LOG.to_owned(), |l| format!("{l},toy_chain::arrival=debug"));
    cmd.env("RUST_LOG", rust_log);
    let (out, err) = if again {
        let append = |name: String| -> anyhow::Result<Stdio> {
            Ok(std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name))?.into())
        };
        (append(format!("node-{i}.log"))?, append(format!("node-{i}.err.log"))?)
    } else {
        (log_file(dir, &format!("node-{i}"))?, log_file(dir, &format!("node-{i}.err"))?)
    };
    cmd.stdout(out).stderr(err);
    own_group(&mut cmd).spawn().context("starting a node")
}

/// Milliseconds since the epoch (the clock the nodes' logs use).
fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A fault under way, and how to end it.
struct Active {
    planned: chaos::Planned,
    ends: Instant,
    started_ms: u64,
}

/// What a run's faults did: the outages the summary leaves out of
/// propagation, and the lines it prints.
#[derive(Default)]
struct ChaosLog {
    outages: Vec<report::Outage>,
    lines: Vec<String>,
}

/// The chaos schedule's hands: kill and restart nodes, change the wire.
struct Chaos<'a> {
    plan: std::collections::VecDeque<chaos::Planned>,
    active: Option<Active>,
    start: Instant,
    node_bin: &'a Path,
    specs: &'a [NodeSpec],
    dir: &'a Path,
    log: ChaosLog,
}

impl Chaos<'_> {
    fn say(&mut self, line: String) {
        println!("{line}");
        self.log.lines.push(line);
    }

    /// Starts the next fault when it is due, ends the current one when its
    /// time is up.
    fn step(&mut self, children: &mut Children, wire: Option<&wire::Wire>) -> anyhow::Result<()> {
        let now = Instant::now();
        if self.active.as_ref().is_some_and(|a| now >= a.ends) {
            self.heal(children, wire)?;
        }
        if self.active.is_none() && self.plan.front().is_some_and(|p| self.start + p.at <= now) {
            let Some(planned) = self.plan.pop_front() else { return Ok(()) };
            let t = self.start.elapsed().as_secs_f64();
            match &planned.fault {
                chaos::Fault::Kill { node } => {
                    let child = &mut children.0[*node].1;
                    let _ = child.kill();
                    let _ = child.wait();
                }
                chaos::Fault::Partition { group } => {
                    let n = self.specs.len();
                    let sides: Vec<u8> = (0..n).map(|i| u8::from(group.contains(&i))).collect();
                    if let Some(w) = wire {
                        w.change(|c| c.sides = Some(sides));
                    }
                }
                chaos::Fault::Spike { node, extra } => {
                    if let Some(w) = wire {
                        w.change(|c| {
                            c.spikes.insert(*node, *extra);
                        });
                    }
                }
            }
            self.say(format!("chaos +{t:.0}s: {} for {} s", planned.fault, planned.lasts.as_secs()));
            self.active = Some(Active { ends: now + planned.lasts, started_ms: wall_ms(), planned });
        }
        Ok(())
    }

    /// Ends the current fault: restarts the killed node, heals the
    /// partition, removes the spike.
    fn heal(&mut self, children: &mut Children, wire: Option<&wire::Wire>) -> anyhow::Result<()> {
        let Some(active) = self.active.take() else { return Ok(()) };
        let t = self.start.elapsed().as_secs_f64();
        let outage = |group: Vec<usize>, partition| report::Outage {
            from_ms: active.started_ms,
            to_ms: wall_ms(),
            group,
            partition,
        };
        match &active.planned.fault {
            chaos::Fault::Kill { node } => {
                children.0[*node].1 = spawn_node(self.node_bin, &self.specs[*node], self.dir, *node, true)?;
                // Reconnecting and catching up take a while after the
                // restart: blocks of that time measure the restart, not
                // propagation.
                let mut down = outage(vec![*node], false);
                down.to_ms += CATCH_UP_GRACE_MS;
                self.log.outages.push(down);
                self.say(format!("chaos +{t:.0}s: node {node} restarted"));
            }
            chaos::Fault::Partition { group } => {
                if let Some(w) = wire {
                    w.change(|c| c.sides = None);
                }
                let mut cut = outage(group.clone(), true);
                cut.to_ms += CATCH_UP_GRACE_MS;
                self.log.outages.push(cut);
                self.say(format!("chaos +{t:.0}s: partition healed"));
            }
            chaos::Fault::Spike { node, .. } => {
                if let Some(w) = wire {
                    w.change(|c| {
                        c.spikes.remove(node);
                    });
                }
                self.say(format!("chaos +{t:.0}s: node {node}'s links back to normal"));
            }
        }
        Ok(())
    }
}

/// The peer graph: which nodes each node is connected to, from their
/// `/api/peers` (`None` unless every node answered).
async fn peer_graph(
    client: &reqwest::Client,
    http: &[String],
    p2p: &[String],
    netns: bool,
) -> Option<Vec<HashSet<usize>>> {
    let mut graph = vec![HashSet::new(); http.len()];
    for (i, h) in http.iter().enumerate() {
        let peers: Vec<String> = client.get(format!("http://{h}/api/peers")).send().await.ok()?.json().await.ok()?;
        for p in peers {
            let host = |a: &str| a.rsplit_once(':').map(|(h, _)| h.to_owned());
            let j = p2p.iter().position(|a| *a == p).or_else(|| {
                // In namespaces every node has its own address: the host
                // names the node whatever port the peer is known by.
                if netns { p2p.iter().position(|a| host(a) == host(&p)) } else { None }
            });
            if let Some(j) = j.filter(|j| *j != i) {
                graph[i].insert(j);
                graph[j].insert(i);
            }
        }
    }
    Some(graph)
}

async fn status(client: &reqwest::Client, h: &str) -> Option<Status> {
    client.get(format!("http://{h}/api/status")).send().await.ok()?.json::<Status>().await.ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.nodes == 0 || args.miners > args.nodes {
        bail!("need at least one node and at most --nodes miners");
    }
    if args.preset == "workshop" {
        bail!("--preset workshop: the testnet's oracle speaks toy's transaction format only");
    }
    let shaped = args.latency.is_some() || args.jitter.is_some() || args.loss.is_some() || args.rate.is_some();
    if shaped && !args.netns {
        bail!("--latency, --jitter, --loss and --rate shape the links between namespaces: add --netns");
    }
    if args.chaos.is_some() && args.duration.is_none() {
        bail!("--chaos needs --duration (the schedule is planned over the whole run)");
    }
    if args.fresh && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir).with_context(|| format!("removing {}", args.data_dir.display()))?;
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let node_bin = sibling("node")?;
    let shape = wire::Shape {
        latency: args.latency.unwrap_or_default(),
        jitter: args.jitter.unwrap_or_default(),
        loss: args.loss.unwrap_or_default(),
        rate_bps: args.rate,
    };
    // Dropped last: the nodes stop before their links and namespaces go.
    let wire_stats = Arc::new(Mutex::new(wire::WireStats::default()));
    let (namespaces, wire) = if args.netns {
        let (ns, ports, host) = netns::Namespaces::create(args.nodes)?;
        let conditions = wire::Conditions { shape, ..wire::Conditions::default() };
        let w = wire::Wire::start(
            ports,
            host,
            netns::index(args.nodes),
            conditions,
            args.chaos.unwrap_or(1),
            wire_stats.clone(),
        );
        (Some(ns), Some(w))
    } else {
        (None, None)
    };
    let mut children = Children(Vec::new());
    let mut specs: Vec<NodeSpec> = Vec::new();
    let mut p2p: Vec<String> = Vec::new();
    let mut http: Vec<String> = Vec::new();
    // Shown above the table on every redraw.
    let mut banner: Vec<String> = Vec::new();
    for i in 0..args.nodes {
        // In namespaces every node has its own address and the same ports.
        let (host, offset) = if args.netns { (netns::address(i), 0) } else { ("127.0.0.1".to_owned(), i) };
        let mut a = vec![
            "--listen".to_owned(),
            format!("{host}:{}", args.base_port as usize + offset),
            "--http".to_owned(),
            format!("{host}:{}", args.http_port as usize + offset),
            "--data-dir".to_owned(),
            args.data_dir.join(format!("node-{i}")).display().to_string(),
            "--preset".to_owned(),
            args.preset.clone(),
        ];
        if i < args.miners {
            a.extend(["--threads".to_owned(), "1".to_owned()]);
        } else {
            a.push("--no-mine".to_owned());
        }
        for peer in p2p.iter().take(2) {
            a.extend(["--peer".to_owned(), peer.clone()]);
        }
        let spec = NodeSpec { netns: namespaces.as_ref().map(|n| n.name(i).to_owned()), args: a };
        let mut child = spawn_node(&node_bin, &spec, &args.data_dir, i, false)?;
        let log = args.data_dir.join(format!("node-{i}.log"));
        let started = started_addrs(&log, &mut child).await;
        children.0.push((format!("node {i}"), child));
        let (p, h) = started?;
        let line =
            format!("  node {i}: p2p {p}  web wallet http://{h}/{}", if i < args.miners { "  (mining)" } else { "" });
        println!("{line}");
        banner.push(line);
        p2p.push(p);
        http.push(h);
        specs.push(spec);
    }
    // Node 0 started alone; started again it needs someone to dial.
    if let Some(first) = specs.first_mut() {
        for peer in p2p.iter().skip(1).take(2) {
            first.args.extend(["--peer".to_owned(), peer.clone()]);
        }
    }
    let all_up_ms = wall_ms();
    let line = format!("{} nodes started; logs in {}", args.nodes, args.data_dir.display());
    println!("{line}");
    banner.push(line);
    if args.netns {
        banner.push(format!(
            "  links: {} ms ± {} ms, {:.1} % loss, {} (each node in its own namespace, 10.79.0.0/24)",
            shape.latency.as_millis(),
            shape.jitter.as_millis(),
            shape.loss * 100.0,
            shape.rate_bps.map_or_else(|| "no rate limit".to_owned(), |r| format!("{} kbit/s", r / 1000))
        ));
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let run = Duration::from_secs(args.duration.unwrap_or(0));
    let plan = args.chaos.map(|seed| chaos::schedule(seed, args.nodes, run, args.netns)).unwrap_or_default();
    if args.oracle || args.verify {
        let mut cmd = Command::new(sibling("oracle")?);
        for (i, h) in http.iter().enumerate() {
            cmd.arg("--node").arg(format!("http://{h}"));
            if args.netns {
                // Off loopback the API wants each node's token for writes.
                cmd.arg("--cookie").arg(args.data_dir.join(format!("node-{i}")).join("api.cookie"));
            }
        }
        cmd.stdout(log_file(&args.data_dir, "oracle")?).stderr(log_file(&args.data_dir, "oracle.err")?);
        if args.verify {
            cmd.arg("--verify");
        }
        if plan.iter().any(|p| matches!(p.fault, chaos::Fault::Kill { .. })) {
            // A node killed just after accepting a transfer loses it.
            cmd.arg("--rebroadcast");
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
    let mut chaos = Chaos {
        plan: plan.into(),
        active: None,
        start: Instant::now(),
        node_bin: &node_bin,
        specs: &specs,
        dir: &args.data_dir,
        log: ChaosLog::default(),
    };
    if let Some(seed) = args.chaos {
        let line = format!("  chaos (seed {seed}): {} faults planned", chaos.plan.len());
        banner.push(line);
        for p in &chaos.plan {
            banner.push(format!("    +{:>4}s  {} for {} s", p.at.as_secs(), p.fault, p.lasts.as_secs()));
        }
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
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut ticks = 0u64;
    // The peer graph over the run, a snapshot each time it changes: one a
    // table tick (2 s) at most, and at most MAX_GRAPHS (11 hours of
    // changes every tick; later blocks are then bounded by the last).
    let mut graphs: Vec<(u64, Vec<HashSet<usize>>)> = Vec::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        chaos.step(&mut children, wire.as_ref())?;
        ticks += 1;
        if ticks % 8 != 1 {
            continue;
        }
        if graphs.len() < MAX_GRAPHS
            && let Some(g) = peer_graph(&client, &http, &p2p, args.netns).await
            && graphs.last().is_none_or(|(_, last)| *last != g)
        {
            graphs.push((wall_ms(), g));
        }
        if live {
            // Redraw in place on a terminal; append when logged to a file.
            print!("\x1b[2J\x1b[H");
            println!("toy testnet: {} nodes (Ctrl-C stops everything)", args.nodes);
            for line in banner.iter().chain(chaos.log.lines.iter().rev().take(5).rev()) {
                println!("{line}");
            }
        }
        println!("\n{:<6} {:>7}  {:<18} {:>5} {:>7} {:>9}  sync", "node", "height", "tip", "peers", "mempool", "MH/s");
        for (i, h) in http.iter().enumerate() {
            match status(&client, h).await {
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
        if wire.is_some() {
            let s = *wire_stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            println!("wire: {} packets delivered, {} dropped", s.delivered, s.dropped);
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
    // A fault still under way at the end is healed first.
    chaos.heal(&mut children, wire.as_ref())?;
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
        for line in text
            .lines()
            .filter(|l| l.contains("MISMATCH") || l.contains("verified") || l.contains("lacks") || l.contains("again"))
        {
            println!("{line}");
        }
        verified = status.is_some_and(|s| s.success());
        println!("verify: {}", if verified { "every node matches the ledger" } else { "FAILED (see oracle.log)" });
    }
    if args.chaos.is_some() || args.netns {
        // The final tip: the one most nodes hold. The miners go on mining,
        // so a block may be on its way to some nodes: asked again until all
        // agree, for up to 30 s.
        let deadline = Instant::now() + Duration::from_secs(30);
        let tips = loop {
            let mut tips: Vec<(String, u64)> = Vec::new();
            for h in &http {
                if let Some(s) = status(&client, h).await {
                    tips.push((s.tip, s.height));
                }
            }
            let agree = tips.len() == http.len() && tips.windows(2).all(|w| w[0].0 == w[1].0);
            if agree || Instant::now() > deadline {
                break tips;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let mut counts: std::collections::HashMap<&str, (usize, u64)> = std::collections::HashMap::new();
        for (t, h) in &tips {
            counts.entry(t).or_insert((0, *h)).0 += 1;
        }
        let tip = counts.iter().max_by_key(|(_, (n, h))| (*n, *h)).map(|(t, _)| (*t).to_owned());
        let logs: Vec<report::NodeLog> =
            (0..args.nodes).map(|i| report::NodeLog::read(&args.data_dir.join(format!("node-{i}.err.log")))).collect();
        let run = report::Run {
            tip: tip.as_deref(),
            graphs: &graphs,
            latency_ms: shape.latency.as_millis() as u64,
            since_ms: all_up_ms,
            outages: &chaos.log.outages,
        };
        let summary = report::summarise(&logs, &run);
        let at_tip = tips.iter().filter(|(t, _)| Some(t) == tip.as_ref()).count();
        let mut text = summary.to_string();
        text.push_str(&format!("\n  nodes at the final tip: {at_tip} of {}", args.nodes));
        if let Some((_, g)) = graphs.last() {
            let edges: usize = g.iter().map(HashSet::len).sum::<usize>() / 2;
            text.push_str(&format!("\n  peer graph: {edges} links at the end, {} changes seen", graphs.len()));
        }
        if args.chaos.is_some() {
            text.push_str(&format!("\n  faults: {}", chaos.log.lines.iter().filter(|l| l.contains(" for ")).count()));
        }
        println!("{text}");
        std::fs::write(args.data_dir.join("summary.txt"), format!("{text}\n"))?;
        if args.verify && at_tip != args.nodes {
            println!("verify: FAILED ({} nodes not at the final tip)", args.nodes - at_tip);
            verified = false;
        }
    }
    println!("stopping {} processes", children.0.len());
    drop(children);
    drop(wire);
    drop(namespaces);
    if !verified {
        std::process::exit(1);
    }
    Ok(())
}
