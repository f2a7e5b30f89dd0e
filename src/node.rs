//! A whole node from a config: the one place that knows how the layers are
//! wired and in which order they stop.
//!
//! ```text
//!  NodeConfig ─► NodeBuilder::launch()
//!                  TcpTransport → Messaging (priority kinds) → P2p (book, tracker)
//!                    → Gossip | RelayGossip → ChainNode ◄─ ChainHandle (actor over redb)
//!                    → Miner (templates from the actor; new template on every tip)
//!                    → HTTP API (LiveNode; peering wired to P2p)
//!               ◄─ RunningNode: addresses, handles, shutdown()
//! ```
//!
//! Shutdown runs in the order that loses nothing: the HTTP server and the
//! program's tasks stop taking work, the chain's sync stops, the miner's
//! threads are joined (a block found meanwhile is still imported), the
//! peers are closed, and last the chain actor commits what it holds and
//! closes the store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use toy_chain::actor::ChainHandle;
use toy_chain::network::{ChainNode, GossipNetwork, PRIORITY_KINDS};
use toy_chain::{Chain, ChainParams, K256Verifier, Keypair, RedbStore, SigCache, StoreError, Tip};
use toy_gossip::relay::RelayGossip;
use toy_gossip::{Gossip, PeerId};
use toy_miner::{Miner, RateHandle};
use toy_msg::{Messaging, Messenger};
use toy_net::TcpTransport;
use toy_p2p::P2p;

/// The peer layer of a launched node: peers over messages over TCP.
pub type NodeP2p = P2p<Messaging<TcpTransport>>;

/// The chain layer of a launched node, over either kind of gossip.
pub type NodeChain = ChainNode<RedbStore, dyn GossipNetwork>;

/// How many ports from [`NodeConfig::listen`]'s upward a node tries by default.
pub const PORT_TRIES: u16 = 100;

/// Longest wait for the node's own tasks (the HTTP server, the forwarder of
/// mined blocks) on shutdown: 5 s.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything a node is launched with. [`NodeConfig::default`] is the
/// newcomer's node: port 15151 (or the next free one), the `dev` preset,
/// data in `toy-data/node-<port>/`, mining on every core, the API on 8080.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Address to listen on; the port is the first free one from here
    /// (port 0: any).
    pub listen: String,
    /// Ports tried from `listen`'s upward ([`PORT_TRIES`]).
    pub port_tries: u16,
    /// Address announced to peers (default: the listening address).
    pub advertise: Option<String>,
    /// Peers to connect to.
    pub peers: Vec<String>,
    /// A tracker to discover peers through.
    pub tracker: Option<String>,
    /// Gossip through this relay instead of flooding (keeps one peer).
    pub relay: Option<String>,
    /// Data directory (default: `toy-data/node-<port>`).
    pub data_dir: Option<PathBuf>,
    /// Wallet key file (default: `<data dir>/wallet.key`, created if absent).
    pub key: Option<PathBuf>,
    /// The chain's rules.
    pub params: ChainParams,
    /// Peers kept (between half and all of this).
    pub max_peers: usize,
    /// Mining threads; `None` does not mine, `Some(0)` is every core.
    pub mine_threads: Option<usize>,
    /// HTTP API and web wallet address (the first free port from here);
    /// `None` serves no API.
    pub http: Option<String>,
    /// Connections the API serves at once.
    pub http_connections: usize,
    /// Host names the API answers to besides `localhost` and IP literals
    /// (DNS-rebinding defence, `toy_api::access`).
    pub http_hosts: Vec<String>,
    /// Fault injection: the fraction of flood-gossip copies this node drops
    /// (`toy_gossip::Config::loss`; 0, the default, drops none).
    pub gossip_loss: f64,
    /// Which library checks signatures.
    pub verifier: VerifierChoice,
}

/// The signature verifier a node uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VerifierChoice {
    /// `k256`, pure Rust (the default, as the design names it).
    #[default]
    K256,
    /// libsecp256k1, the C library Bitcoin Core uses (needs the
    /// `secp256k1` feature of this crate).
    Secp256k1,
}

impl VerifierChoice {
    /// The verifier; an error when it was not compiled in.
    ///
    /// # Errors
    /// [`NodeError::Setting`] for `Secp256k1` without the `secp256k1`
    /// feature.
    pub fn build(self) -> Result<Arc<dyn toy_chain::Verifier>, NodeError> {
        match self {
            Self::K256 => Ok(Arc::new(K256Verifier::new())),
            #[cfg(feature = "secp256k1")]
            Self::Secp256k1 => Ok(Arc::new(toy_chain::Secp256k1Verifier::new())),
            #[cfg(not(feature = "secp256k1"))]
            Self::Secp256k1 => Err(NodeError::Setting(
                "the secp256k1 verifier is not compiled in; build with --features secp256k1".into(),
            )),
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:15151".into(),
            port_tries: PORT_TRIES,
            advertise: None,
            peers: Vec::new(),
            tracker: None,
            relay: None,
            data_dir: None,
            key: None,
            params: ChainParams::dev(),
            max_peers: 8,
            mine_threads: Some(0),
            http: Some("127.0.0.1:8080".into()),
            http_connections: toy_api::DEFAULT_MAX_HTTP_CONNECTIONS,
            http_hosts: Vec::new(),
            gossip_loss: 0.0,
            verifier: VerifierChoice::K256,
        }
    }
}

/// Why a node did not launch. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The listening address is malformed, or no port in the range is free.
    #[error("listen: {0}")]
    Listen(String),
    /// The data directory cannot be used.
    #[error("the data directory {path} is not usable ({reason}); fix its permissions or choose another")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The wallet key could not be read or created.
    #[error("key {path}: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What failed.
        source: toy_chain::KeyError,
    },
    /// The chain database could not be opened.
    #[error("opening {path}: {source} ({hint})")]
    Store {
        /// The database file.
        path: PathBuf,
        /// What failed.
        source: StoreError,
        /// What to do about it.
        hint: &'static str,
    },
    /// The chain could not be opened or started.
    #[error(transparent)]
    Chain(#[from] toy_chain::ChainError),
    /// The workshop chain (`--preset workshop`) could not be opened.
    #[error("the workshop chain {path}: {source}")]
    WorkshopChain {
        /// The database file.
        path: PathBuf,
        /// What failed.
        source: toy_workshop::Error,
    },
    /// A setting is out of its range.
    #[error("{0}")]
    Setting(String),
    /// The chain's networking could not be installed.
    #[error(transparent)]
    ChainNetwork(#[from] toy_chain::network::NetworkError),
    /// The messaging layer refused its config.
    #[error(transparent)]
    Messaging(#[from] toy_msg::Error),
    /// The peer layer refused its config.
    #[error(transparent)]
    P2p(#[from] toy_p2p::Error),
    /// The relay gossip could not start.
    #[error(transparent)]
    Gossip(#[from] toy_gossip::Error),
    /// The miner could not start.
    #[error(transparent)]
    Miner(#[from] toy_miner::Error),
    /// The HTTP API could not bind.
    #[error("http {addr}: {source}")]
    Http {
        /// The address asked for.
        addr: String,
        /// What failed.
        source: std::io::Error,
    },
}

/// Builds and launches a node from a [`NodeConfig`].
#[derive(Debug, Clone, Default)]
pub struct NodeBuilder {
    config: NodeConfig,
}

impl NodeBuilder {
    /// A builder for `config`.
    pub fn new(config: NodeConfig) -> Self {
        Self { config }
    }

    /// Starts every layer and returns the running node.
    ///
    /// # Errors
    /// [`NodeError`], saying which part did not start and why.
    pub async fn launch(self) -> Result<RunningNode, NodeError> {
        let config = self.config;
        // Checked before anything is bound or written.
        let verifier = config.verifier.build()?;
        // Blocks and sync share the handler slots kept for handshakes, so a
        // transaction flood never starves them.
        let msg_config =
            PRIORITY_KINDS.iter().fold(toy_msg::Config::builder(), |b, kind| b.priority_kind(*kind)).build()?;
        let (transport, net_events) = TcpTransport::new(Default::default());
        let (msg, msg_events) = Messaging::new(transport, net_events, msg_config);
        // Listen first: the port names the default data directory.
        let addr = listen_free(&msg, &config.listen, config.port_tries).await?;
        let port = addr.rsplit_once(':').map(|(_, p)| p.to_owned()).unwrap_or_default();
        let data_dir = config.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("toy-data/node-{port}")));
        check_data_dir(&data_dir)?;
        let key_path = config.key.clone().unwrap_or_else(|| data_dir.join("wallet.key"));
        let (wallet, new_key) =
            Keypair::load_or_create(&key_path).map_err(|source| NodeError::Key { path: key_path, source })?;

        // The API's port before anything is started: a busy one stops the
        // launch with nothing to undo.
        let listener = bind_http(config.http.as_deref()).await?;

        let db = data_dir.join("chain.redb");
        let store = RedbStore::open(&db).map_err(|source| {
            let hint = store_hint(&source);
            NodeError::Store { path: db, source, hint }
        })?;
        let easy_rules = config.params.initial_target != ChainParams::workshop_constants().initial_target;
        let chain =
            Chain::open(config.params.clone(), store, verifier, Arc::new(SigCache::default()), Default::default())?;
        // One thread owns the chain and its store from here on.
        // One thread owns the chain and its store from here on; what fails
        // after this stops what was started, so the store is free again.
        let chain = ChainHandle::spawn(chain)?;
        let (p2p, node) = match wire(&config, &chain, msg, msg_events, &data_dir).await {
            Ok(wired) => wired,
            Err(e) => {
                chain.shutdown().await;
                return Err(e);
            }
        };
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        let miner = match config.mine_threads.map(|t| start_miner(&chain, &node, &wallet, t, &tasks, &cancel)) {
            Some(Ok(miner)) => Some(miner),
            None => None,
            Some(Err(e)) => {
                node.shutdown();
                p2p.shutdown().await;
                chain.shutdown().await;
                return Err(e);
            }
        };
        let mut cookie = None;
        let http_addr = match listener {
            Some((listener, bound)) => {
                let (token, written) = match api_token(&data_dir, bound, &config.http_hosts) {
                    Ok(t) => t,
                    Err(e) => {
                        node.shutdown();
                        p2p.shutdown().await;
                        chain.shutdown().await;
                        return Err(e);
                    }
                };
                cookie = written;
                let access = toy_api::Access { hosts: config.http_hosts.clone(), token };
                let rate = miner.as_ref().map(|m| m.rate_handle());
                // The hash-rate history for the page's chart: sampled here
                // for as long as the API serves.
                let history = Arc::new(toy_api::RateHistory::new());
                let sampled = rate.clone();
                tasks.spawn(
                    history.clone().sample(move || sampled.as_ref().map_or(0.0, RateHandle::hash_rate), cancel.clone()),
                );
                let live = toy_api::LiveNode::new(
                    node.clone(),
                    toy_api::LiveConfig {
                        wallet: wallet.clone(),
                        can_mine: easy_rules,
                        mine_max_nonces: toy_api::MINE_MAX_NONCES,
                        hash_rate: rate
                            .map(|r: RateHandle| Arc::new(move || r.hash_rate()) as Arc<dyn Fn() -> f64 + Send + Sync>),
                        peering: Arc::new(p2p.clone()),
                        history,
                    },
                );
                let limits = toy_api::HttpLimits { max_connections: config.http_connections, ..Default::default() };
                let cancel = cancel.clone();
                tasks.spawn(async move {
                    if let Err(e) = toy_api::serve_guarded(listener, Arc::new(live), cancel, limits, access).await {
                        tracing::error!("HTTP server stopped: {e}");
                    }
                });
                Some(bound)
            }
            None => None,
        };
        Ok(RunningNode { addr, http_addr, data_dir, wallet, new_key, chain, node, p2p, miner, tasks, cancel, cookie })
    }
}

/// A launched node. Dropping it without [`RunningNode::shutdown`] stops
/// nothing cleanly; call it.
pub struct RunningNode {
    addr: String,
    http_addr: Option<SocketAddr>,
    data_dir: PathBuf,
    wallet: Keypair,
    new_key: bool,
    chain: ChainHandle<RedbStore>,
    node: NodeChain,
    p2p: NodeP2p,
    miner: Option<Arc<Miner>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// The API's cookie file, when writes need its token (removed on
    /// shutdown, as bitcoind does).
    cookie: Option<PathBuf>,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode").field("addr", &self.addr).field("http", &self.http_addr).finish_non_exhaustive()
    }
}

impl RunningNode {
    /// The address peers reach the node at.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The HTTP API's address, when it serves one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The node's wallet.
    pub fn wallet(&self) -> &Keypair {
        &self.wallet
    }

    /// Whether the wallet key was created by this launch.
    pub fn new_key(&self) -> bool {
        self.new_key
    }

    /// The chain actor.
    pub fn chain(&self) -> &ChainHandle<RedbStore> {
        &self.chain
    }

    /// The chain layer on the network (submit blocks and transactions,
    /// resolve, stats).
    pub fn chain_node(&self) -> &NodeChain {
        &self.node
    }

    /// The peer layer.
    pub fn p2p(&self) -> &NodeP2p {
        &self.p2p
    }

    /// The cookie file holding the token API writes need, when they need
    /// one (the API is reachable from other hosts).
    pub fn cookie_file(&self) -> Option<&std::path::Path> {
        self.cookie.as_deref()
    }

    /// The miner's hash rate in hashes per second (0 when not mining).
    pub fn hash_rate(&self) -> f64 {
        self.miner.as_ref().map_or(0.0, |m| m.hash_rate())
    }

    /// The tip, as last published.
    pub fn tip(&self) -> Tip {
        self.chain.tip()
    }

    /// Stops the node in the order that loses nothing (see the module
    /// docs) and returns the tip it stopped at.
    pub async fn shutdown(self) -> Tip {
        self.cancel.cancel();
        self.node.shutdown();
        if let Some(miner) = self.miner {
            // Joins the mining threads; the forwarder of found blocks ends
            // with their channel. The tip task holds the miner only for a
            // moment at a time (a weak handle), and has been cancelled.
            let joined = tokio::task::spawn_blocking(move || {
                let mut miner = miner;
                for _ in 0..100 {
                    match Arc::try_unwrap(miner) {
                        Ok(m) => return m.stop(),
                        Err(shared) => miner = shared,
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                // Still shared: dropping the last handle stops it as well.
                drop(miner);
            });
            let _ = joined.await;
        }
        self.p2p.shutdown().await;
        self.tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tasks.wait()).await.is_err() {
            tracing::warn!("tasks still running after {SHUTDOWN_GRACE:?}; stopping anyway");
        }
        // Last: the actor commits what it holds and closes the store; the
        // tip it publishes then is the one on disk.
        self.chain.shutdown().await;
        if let Some(cookie) = &self.cookie {
            let _ = std::fs::remove_file(cookie);
        }
        self.chain.tip()
    }
}

/// The peer layer and the chain on it: p2p, flood or relay gossip, the
/// chain's handlers and sync. What fails stops the peer layer again.
async fn wire(
    config: &NodeConfig,
    chain: &ChainHandle<RedbStore>,
    msg: Messaging<TcpTransport>,
    msg_events: toy_msg::Events,
    data_dir: &std::path::Path,
) -> Result<(NodeP2p, NodeChain), NodeError> {
    let mut p2p_config = toy_p2p::Config::builder()
        .max_peers(if config.relay.is_some() { 1 } else { config.max_peers })
        .book_path(data_dir.join("peers.json"))
        .bootstrap(config.peers.iter().cloned().chain(config.relay.iter().cloned()).collect());
    if let Some(a) = &config.advertise {
        p2p_config = p2p_config.advertise(a.clone());
    }
    if let Some(t) = &config.tracker {
        p2p_config = p2p_config.tracker(t.clone());
    }
    let p2p = P2p::start(msg, msg_events, p2p_config.build()?)?;
    let gossip: Result<Arc<dyn GossipNetwork>, NodeError> = match &config.relay {
        Some(r) => RelayGossip::new(p2p.clone(), PeerId(r.clone()), Default::default())
            .map(|g| Arc::new(g) as Arc<dyn GossipNetwork>)
            .map_err(NodeError::from),
        None => Ok(Arc::new(Gossip::new(
            p2p.clone(),
            toy_gossip::Config { loss: config.gossip_loss, ..Default::default() },
        ))),
    };
    match gossip.and_then(|g| ChainNode::install(chain.clone(), g).map_err(NodeError::from)) {
        Ok(node) => Ok((p2p, node)),
        Err(e) => {
            p2p.shutdown().await;
            Err(e)
        }
    }
}

/// The miner, fed by the chain actor; its blocks are imported and announced,
/// and it takes a new template whenever the tip moves.
fn start_miner(
    chain: &ChainHandle<RedbStore>,
    node: &NodeChain,
    wallet: &Keypair,
    threads: usize,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> Result<Arc<Miner>, NodeError> {
    // The local lane: peers filling the network's cannot starve the miner.
    let c = chain.local();
    let miner_addr = wallet.address();
    // Called on the miner's own thread, outside the runtime.
    let source = move || c.blocking_template(miner_addr).ok();
    let defaults = toy_miner::Config::default();
    let config = toy_miner::Config { threads: if threads == 0 { defaults.threads } else { threads }, ..defaults };
    let (miner, mut found) = Miner::start(config, Arc::new(source))?;
    let miner = Arc::new(miner);
    let n = node.clone();
    tasks.spawn(async move {
        while let Some(block) = found.recv().await {
            if let Err(e) = n.submit_block(block).await {
                tracing::warn!("mined block not imported: {e}");
            }
        }
    });
    // Weak: the node's handle is the miner's only owner, so shutdown can
    // take it back and join the threads.
    let m = Arc::downgrade(&miner);
    let mut tips = chain.subscribe();
    let cancel = cancel.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                changed = tips.changed() => if changed.is_err() { break },
            }
            match m.upgrade() {
                Some(m) => m.new_template(),
                None => break,
            }
        }
    });
    Ok(miner)
}

/// Binds the API's listener (the first free port from `http`'s) before
/// anything else starts, so a busy port stops a launch with nothing to
/// undo; `None` serves no API.
pub(crate) async fn bind_http(http: Option<&str>) -> Result<Option<(tokio::net::TcpListener, SocketAddr)>, NodeError> {
    let Some(http) = http else { return Ok(None) };
    let fail = |source| NodeError::Http { addr: http.to_owned(), source };
    let listener = toy_api::bind_free(http).await.map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    Ok(Some((listener, bound)))
}

/// The token API writes need, and the cookie file holding it: none on
/// loopback with no extra host names; otherwise (reachable from other
/// hosts, or named by a proxy) a fresh one in `<data_dir>/api.cookie`,
/// readable by this user only (bitcoind's `.cookie`).
pub(crate) fn api_token(
    data_dir: &std::path::Path,
    bound: SocketAddr,
    hosts: &[String],
) -> Result<(Option<String>, Option<PathBuf>), NodeError> {
    if bound.ip().is_loopback() && hosts.is_empty() {
        return Ok((None, None));
    }
    let token = write_cookie(data_dir)?;
    Ok((Some(token), Some(data_dir.join(COOKIE_FILE))))
}

/// The API's cookie file in a data directory: `api.cookie`, holding the
/// token that writes need when the API is reachable from other hosts.
pub const COOKIE_FILE: &str = "api.cookie";

/// Writes a fresh random token to `<data_dir>/api.cookie`, readable and
/// writable by this user only; the token.
fn write_cookie(data_dir: &std::path::Path) -> Result<String, NodeError> {
    use std::io::Write;
    let token = hex_token();
    let path = data_dir.join(COOKIE_FILE);
    let fail = |e: std::io::Error| NodeError::DataDir { path: path.clone(), reason: e.to_string() };
    // A fresh file, created 0600: an old one (whatever its mode) or a
    // symlink planted in its place is removed first, never written through.
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(fail)?;
    file.write_all(token.as_bytes()).map_err(fail)?;
    Ok(token)
}

/// 32 random bytes in hex.
fn hex_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Listens on the first free port from `addr`'s port upward (port 0: any).
/// Binding is the test, so two nodes started at once never pick the same
/// port (and so never the same default data directory).
pub(crate) async fn listen_free(msg: &impl Messenger, addr: &str, tries: u16) -> Result<String, NodeError> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| NodeError::Listen(format!("{addr:?} is not host:port")))?;
    let port: u16 = port.parse().map_err(|_| NodeError::Listen(format!("{addr:?}: bad port")))?;
    let last = if port == 0 { 0 } else { port.saturating_add(tries.max(1) - 1) };
    for p in port..=last {
        match msg.listen(&format!("{host}:{p}")).await {
            Ok(bound) => return Ok(bound),
            Err(toy_msg::Error::Transport(toy_net::Error::Io(e))) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => return Err(NodeError::Listen(format!("{host}:{p}: {e}"))),
        }
    }
    Err(NodeError::Listen(format!("no free port from {port} to {last} on {host}")))
}

/// Creates the data directory and checks that it is writable, said plainly
/// up front before the key or the database trip over it.
pub(crate) fn check_data_dir(dir: &std::path::Path) -> Result<(), NodeError> {
    let fail = |e: std::io::Error| NodeError::DataDir { path: dir.to_owned(), reason: e.to_string() };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"").map_err(fail)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// What to do when the chain database does not open.
fn store_hint(e: &StoreError) -> &'static str {
    match e {
        StoreError::InUse => "another node is using this data directory; give this one its own",
        StoreError::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            "the data directory is not writable by this user; fix its permissions or choose another"
        }
        StoreError::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => "the disk is full",
        _ => "the file is not a toy chain database, or is damaged",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_api_reachable_from_other_hosts_takes_writes_only_with_the_cookie_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = NodeConfig {
            listen: "127.0.0.1:0".into(),
            data_dir: Some(dir.path().to_owned()),
            params: ChainParams::test(),
            mine_threads: None,
            http: Some("0.0.0.0:0".into()),
            ..Default::default()
        };
        // A cookie left world-readable by someone: replaced, not reused.
        let cookie = dir.path().join(COOKIE_FILE);
        std::fs::write(&cookie, b"old").expect("old cookie");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        let node = NodeBuilder::new(config).launch().await.expect("launch");
        let port = node.http_addr().expect("http").port();
        assert_eq!(node.cookie_file(), Some(cookie.as_path()));
        let token = std::fs::read_to_string(&cookie).expect("the cookie file is written");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&cookie).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by its user only");
        }
        // A write over the network without the token is refused; with it,
        // it reaches the API (resolve answers with no peers).
        let post = |auth: Option<String>| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
            let auth = auth.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
            let req = format!(
                "POST /api/resolve HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{auth}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            );
            s.write_all(req.as_bytes()).await.expect("write");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer).await;
            answer
        };
        assert!(post(None).await.starts_with("HTTP/1.1 401"), "no token");
        assert!(post(Some("wrong".into())).await.starts_with("HTTP/1.1 401"), "a wrong token");
        assert!(post(Some(token)).await.starts_with("HTTP/1.1 200"), "the cookie's token");
        node.shutdown().await;
        assert!(!cookie.exists(), "removed on shutdown");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_launched_node_mines_serves_and_stops_at_a_durable_tip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = NodeConfig {
            listen: "127.0.0.1:0".into(),
            data_dir: Some(dir.path().to_owned()),
            params: ChainParams::test(),
            mine_threads: Some(1),
            http: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        let node = NodeBuilder::new(config.clone()).launch().await.expect("launch");
        assert!(node.http_addr().is_some());
        let mut tips = node.chain().subscribe();
        let _ = tokio::time::timeout(toy_testing::DEADLINE, tips.wait_for(|t| t.height >= 3)).await.expect("mines");
        let stopped = node.shutdown().await;
        // Relaunched on the same directory: the same tip, from disk.
        let again = NodeBuilder::new(NodeConfig { mine_threads: None, http: None, ..config }).launch().await;
        let again = again.expect("relaunch");
        assert_eq!(again.tip(), stopped, "everything answered before the stop is on disk");
        again.shutdown().await;
    }
}
