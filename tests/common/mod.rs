//! Helpers for the system tests: node, oracle and adversary processes (the
//! example binaries cargo builds for `cargo test`), their output, and the
//! nodes' HTTP APIs.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// Generous: the machine may be a loaded 2-core CI runner.
pub const DEADLINE: Duration = Duration::from_secs(240);

/// One system test at a time: each starts several mining processes.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The directory of the example binaries (`target/<profile>/examples`).
pub fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/system-<hash> → target/<profile>/examples
    exe.parent().and_then(Path::parent).map(|p| p.join("examples")).expect("target dir")
}

/// An example binary, built by `cargo test` (which builds the examples).
pub fn example(name: &str) -> PathBuf {
    let p = examples_dir().join(name);
    assert!(p.exists(), "{} missing: run `cargo build --examples` (cargo test builds them)", p.display());
    p
}

/// The first of `names` found on `PATH` (optional tools: a browser,
/// schemathesis).
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n))).find(|p| p.exists())
}

/// A child process whose output is collected line by line.
pub struct Proc {
    pub child: Child,
    /// Its standard input, when spawned with [`Proc::spawn_piped`].
    pub stdin: Option<std::process::ChildStdin>,
    pub lines: Arc<Mutex<VecDeque<String>>>,
    pub name: String,
}

/// Lines kept per process (the oldest are dropped).
const KEEP_LINES: usize = 20_000;

impl Proc {
    /// The process's resident memory in bytes (Linux: `VmRSS` in
    /// `/proc/<pid>/status`), if it can be read.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    }

    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null());
        Self::start(name, cmd)
    }

    /// [`Proc::spawn`] with a standard input to [`Proc::tell`] lines to.
    pub fn spawn_piped(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::piped());
        Self::start(name, cmd)
    }

    /// Writes `line` to the process's standard input.
    pub fn tell(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("spawned with a piped stdin");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).expect("write to the process");
    }

    fn start(name: &str, mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdin = child.stdin.take();
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        for out in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let mut l = lines.lock().expect("lines");
                    if l.len() == KEEP_LINES {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            });
        }
        Proc { child, stdin, lines, name: name.to_owned() }
    }

    /// Every line so far.
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().expect("lines").iter().cloned().collect()
    }

    /// The rest of the first line starting with `prefix`, waiting for it.
    pub async fn wait_line(&self, prefix: &str) -> String {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(l) = self.output().iter().find_map(|l| l.strip_prefix(prefix).map(str::to_owned)) {
                return l;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{}: no line {prefix:?}; output:\n{}", self.name, self.output().join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit; its success.
    pub async fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{} did not finish in {limit:?}; output:\n{}", self.name, self.output().join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGINT (a clean shutdown, like Ctrl-C), then waits.
    pub async fn interrupt(&mut self) {
        let _ = Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() {
            if tokio::time::Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node process with its addresses.
pub struct Node {
    pub proc: Proc,
    /// p2p address.
    pub p2p: String,
    /// `http://host:port`.
    pub http: String,
    pub data: PathBuf,
}

/// How to start a node.
#[derive(Clone)]
pub struct NodeOpts {
    pub mine: bool,
    pub peers: Vec<String>,
    pub preset: &'static str,
    pub host: &'static str,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// Fraction of gossip copies the node drops (in-process nodes only).
    pub gossip_loss: f64,
}

impl Default for NodeOpts {
    fn default() -> Self {
        Self { mine: false, peers: vec![], preset: "dev", host: "127.0.0.1", netns: None, gossip_loss: 0.0 }
    }
}

impl Node {
    pub async fn start(name: &str, data: &Path, opts: &NodeOpts) -> Node {
        let bin = example("node");
        let mut cmd = match &opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg("--listen")
            .arg(format!("{}:0", opts.host))
            .arg("--http")
            .arg(format!("{}:0", opts.host))
            .arg("--data-dir")
            .arg(data)
            .arg("--preset")
            .arg(opts.preset)
            .arg("--max-peers")
            .arg("6")
            .env("RUST_LOG", "warn,toy_chain::network=info,toy_chain::tree=debug");
        if opts.mine {
            cmd.args(["--threads", "1"]);
        } else {
            cmd.arg("--no-mine");
        }
        for p in &opts.peers {
            cmd.arg("--peer").arg(p);
        }
        let proc = Proc::spawn(name, cmd);
        let p2p = proc.wait_line("toy node listening on ").await;
        let http = proc.wait_line("web wallet and API on ").await;
        let http = http.split_whitespace().next().unwrap_or_default().trim_end_matches('/').to_owned();
        Node { proc, p2p, http, data: data.to_owned() }
    }
}

/// A node running inside the test process ([`toy::node::NodeBuilder`]):
/// the same wiring as the `node` example, without a process to spawn, and
/// with its handles at hand.
pub struct InNode {
    pub node: toy::node::RunningNode,
    /// p2p address.
    pub p2p: String,
    /// `http://host:port`.
    pub http: String,
}

impl InNode {
    /// Launches a node on loopback with `opts` (no network namespace), its
    /// data in `data`.
    pub async fn launch(data: &Path, opts: &NodeOpts) -> InNode {
        assert!(opts.netns.is_none(), "an in-process node has no namespace of its own");
        let config = toy::node::NodeConfig {
            listen: format!("{}:0", opts.host),
            http: Some(format!("{}:0", opts.host)),
            data_dir: Some(data.to_owned()),
            params: toy::chain::ChainParams::preset(opts.preset).expect("preset"),
            max_peers: 6,
            mine_threads: opts.mine.then_some(1),
            peers: opts.peers.clone(),
            gossip_loss: opts.gossip_loss,
            ..Default::default()
        };
        let node = toy::node::NodeBuilder::new(config).launch().await.expect("launch");
        let p2p = node.addr().to_owned();
        let http = format!("http://{}", node.http_addr().expect("http"));
        InNode { node, p2p, http }
    }
}

/// The nodes' APIs.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
}

impl Default for Api {
    fn default() -> Self {
        Self { http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client") }
    }
}

impl Api {
    pub async fn get(&self, base: &str, path: &str) -> Option<(u16, Value)> {
        let r = self.http.get(format!("{base}{path}")).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn post(&self, base: &str, path: &str, body: Value) -> Option<(u16, Value)> {
        let r = self.http.post(format!("{base}{path}")).json(&body).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn status(&self, base: &str) -> Option<Value> {
        self.get(base, "/api/status").await.filter(|(s, _)| *s == 200).map(|(_, v)| v)
    }

    pub async fn tip(&self, base: &str) -> Option<(u64, String)> {
        let s = self.status(base).await?;
        Some((s["height"].as_u64()?, s["tip"].as_str()?.to_owned()))
    }

    pub async fn peers(&self, base: &str) -> Vec<String> {
        match self.get(base, "/api/peers").await {
            Some((200, Value::Array(a))) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => vec![],
        }
    }
}

/// Polls `cond` until it holds, or panics with `what` after [`DEADLINE`].
pub async fn wait_for<F, Fut>(what: &str, cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    toy_testing::wait_until_async(DEADLINE, Duration::from_millis(250), what, cond).await;
}

/// Waits until every node reports the same tip, at least `min_height`.
pub async fn wait_converged(api: &Api, nodes: &[&str], min_height: u64) -> (u64, String) {
    let mut last = (0, String::new());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut tips = Vec::new();
        for n in nodes {
            tips.push(api.tip(n).await);
        }
        if let Some(Some(first)) = tips.first()
            && first.0 >= min_height
            && tips.iter().all(|t| t.as_ref() == Some(first))
        {
            return first.clone();
        }
        if let Some(Some(t)) = tips.first() {
            last = t.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "nodes did not converge (last {last:?}): {tips:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs the oracle against `nodes`; returns it running.
pub fn oracle(nodes: &[&str], count: u64, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(example("oracle"));
    for n in nodes {
        cmd.arg("--node").arg(n);
    }
    cmd.args(["--count", &count.to_string(), "--interval-ms", "10", "--quiet-timeout", "120"]).args(extra);
    Proc::spawn("oracle", cmd)
}
