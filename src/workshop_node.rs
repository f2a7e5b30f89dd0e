//! A node on the workshop's own chain (`--preset workshop`): toy's TCP,
//! messaging, peering and flood gossip under the `toy-workshop` chain layer
//! instead of `toy-chain` — the layer swap the design promises, with the
//! layers below unchanged.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let node = toy::workshop_node::WorkshopConfig { mine_threads: Some(1), ..Default::default() }.launch().await?;
//! println!("{} mines to {}", node.addr(), node.key().public_hex());
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use toy_gossip::Gossip;
use toy_msg::Messaging;
use toy_net::TcpTransport;
use toy_p2p::P2p;
use toy_workshop::{Chain, Params, SecretKey, WorkshopNode};

use crate::node::NodeError;

/// The peer layer of a workshop node.
pub type WorkshopP2p = P2p<Messaging<TcpTransport>>;
/// The gossip layer of a workshop node.
pub type WorkshopGossip = Gossip<WorkshopP2p>;

/// Everything a workshop node is started with.
#[derive(Debug, Clone)]
pub struct WorkshopConfig {
    /// Address to listen on; the port is the first free one from here.
    pub listen: String,
    /// Address announced to peers (default: the listening address).
    pub advertise: Option<String>,
    /// Peers to connect to.
    pub peers: Vec<String>,
    /// Data directory (default `toy-data/workshop-<port>`): the chain
    /// database and the key.
    pub data_dir: Option<PathBuf>,
    /// Key file (default `<data-dir>/workshop.key`, created if absent): a
    /// P-192 secret exponent in hex.
    pub key: Option<PathBuf>,
    /// Leading zero hex digits a block needs (the workshop's: 7).
    pub difficulty: u8,
    /// Mining threads (`None`: no mining; `Some(0)`: every core).
    pub mine_threads: Option<usize>,
    /// Peers kept.
    pub max_peers: usize,
    /// HTTP API and web wallet address (the port is the first free one from
    /// here); `None` (the default) serves none.
    pub http: Option<String>,
    /// Host names the API answers to besides localhost and IP addresses
    /// (against DNS rebinding); with any, or off loopback, writes need the
    /// token in `<data-dir>/api.cookie`.
    pub http_hosts: Vec<String>,
}

impl Default for WorkshopConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:15151".into(),
            advertise: None,
            peers: Vec::new(),
            data_dir: None,
            key: None,
            difficulty: Params::WORKSHOP.difficulty,
            mine_threads: None,
            max_peers: toy_p2p::DEFAULT_MAX_PEERS,
            http: None,
            http_hosts: Vec::new(),
        }
    }
}

/// A running workshop node.
pub struct RunningWorkshop {
    addr: String,
    data_dir: PathBuf,
    key: SecretKey,
    new_key: bool,
    p2p: WorkshopP2p,
    node: WorkshopNode<WorkshopGossip>,
    http_addr: Option<std::net::SocketAddr>,
    cookie: Option<PathBuf>,
    /// Stops the HTTP server.
    cancel: tokio_util::sync::CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl WorkshopConfig {
    /// Opens the chain and the key, listens, peers and (if asked) mines.
    ///
    /// # Errors
    /// A [`NodeError`] naming what failed: the port, the data directory, the
    /// key or the database.
    pub async fn launch(self) -> Result<RunningWorkshop, NodeError> {
        if self.difficulty == 0 || self.difficulty > 64 {
            return Err(NodeError::Setting(format!("difficulty {}: must be 1 to 64 hex digits", self.difficulty)));
        }
        let (transport, net_events) = TcpTransport::new(Default::default());
        let (msg, msg_events) = Messaging::new(transport, net_events, Default::default());
        let addr = crate::node::listen_free(&msg, &self.listen, 100).await?;
        let port = addr.rsplit_once(':').map(|(_, p)| p.to_owned()).unwrap_or_default();
        let data_dir = self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("toy-data/workshop-{port}")));
        crate::node::check_data_dir(&data_dir)?;
        let key_path = self.key.clone().unwrap_or_else(|| data_dir.join("workshop.key"));
        let (key, new_key) = load_or_create_key(&key_path)?;
        // The API's port before anything is started: a busy one stops the
        // launch with nothing to undo.
        let listener = crate::node::bind_http(self.http.as_deref()).await?;
        let db = data_dir.join("workshop.redb");
        let params = Params::with_difficulty(self.difficulty);
        let opening = db.clone();
        let chain = tokio::task::spawn_blocking(move || Chain::open(&opening, params))
            .await
            .unwrap_or_else(|e| Err(toy_workshop::Error::Store(format!("opening stopped: {e}"))))
            .map_err(|source| NodeError::WorkshopChain { path: db, source })?;
        let mut p2p_config = toy_p2p::Config::builder().max_peers(self.max_peers).bootstrap(self.peers.clone());
        if let Some(a) = &self.advertise {
            p2p_config = p2p_config.advertise(a);
        }
        let p2p = P2p::start(msg, msg_events, p2p_config.build()?)?;
        let gossip = Gossip::new(p2p.clone(), Default::default());
        // The workshop's chat (kind `chat`) crosses this node too: valid
        // lines are passed on and logged; anything else is dropped without
        // a penalty (a workshop node relays any payload).
        let chat = toy_gossip::gossip_handler_fn(|_, message| async move {
            match toy_gossip::chat::ChatMessage::decode(&message) {
                Some(line) => {
                    tracing::info!(from = %line.from, text = %line.text, "chat");
                    toy_gossip::Verdict::Accept
                }
                None => toy_gossip::Verdict::Ignore,
            }
        });
        if let Err(e) = toy_gossip::GossipNetwork::register_handler(&gossip, toy_gossip::chat::KIND, chat) {
            p2p.shutdown().await;
            return Err(e.into());
        }
        let node = match WorkshopNode::start(Arc::new(gossip), chain) {
            Ok(node) => node,
            Err(e) => {
                p2p.shutdown().await;
                return Err(e.into());
            }
        };
        if let Some(threads) = self.mine_threads {
            let threads =
                if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
            node.mine(&key.public_hex(), threads);
        }
        let cancel = tokio_util::sync::CancellationToken::new();
        let tasks = tokio_util::task::TaskTracker::new();
        let mut cookie = None;
        let http_addr = match listener {
            Some((listener, bound)) => {
                // As a toy node: writes need a token off loopback.
                let (token, written) = match crate::node::api_token(&data_dir, bound, &self.http_hosts) {
                    Ok(t) => t,
                    Err(e) => {
                        node.shutdown();
                        p2p.shutdown().await;
                        return Err(e);
                    }
                };
                cookie = written;
                let access = toy_api::Access { hosts: self.http_hosts.clone(), token };
                let api = Arc::new(crate::workshop_api::WorkshopApi::new(node.clone(), p2p.clone(), key.clone()));
                tasks.spawn(api.clone().sample_rates(cancel.clone()));
                let cancel = cancel.clone();
                tasks.spawn(async move {
                    if let Err(e) = toy_api::serve_guarded(listener, api, cancel, Default::default(), access).await {
                        tracing::error!("HTTP server stopped: {e}");
                    }
                });
                Some(bound)
            }
            None => None,
        };
        Ok(RunningWorkshop { addr, data_dir, key, new_key, p2p, node, http_addr, cookie, cancel, tasks })
    }
}

/// Reads the key at `path`, or creates one there (readable by this user
/// only). `true` when created.
fn load_or_create_key(path: &std::path::Path) -> Result<(SecretKey, bool), NodeError> {
    let fail = |reason: String| NodeError::DataDir { path: path.to_owned(), reason };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = SecretKey::from_hex(&text).map_err(|e| fail(format!("not a workshop key: {e}")))?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(|e| fail(e.to_string()))?;
            std::io::Write::write_all(&mut file, format!("{}\n", key.to_hex()).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| fail(e.to_string()))?;
            Ok((key, true))
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

impl RunningWorkshop {
    /// The address peers reach us at.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// This node's key (its public key is its account).
    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    /// Whether the key was created by this launch.
    pub fn new_key(&self) -> bool {
        self.new_key
    }

    /// The chain node (read the chain, send, watch the tip).
    pub fn node(&self) -> &WorkshopNode<WorkshopGossip> {
        &self.node
    }

    /// The peer layer.
    pub fn p2p(&self) -> &WorkshopP2p {
        &self.p2p
    }

    /// The HTTP API's address, when it serves one.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http_addr
    }

    /// The API's cookie file, when writes need its token.
    pub fn cookie(&self) -> Option<&std::path::Path> {
        self.cookie.as_deref()
    }

    /// Stops the HTTP server, mining, then peering.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.node.shutdown();
        self.p2p.shutdown().await;
    }
}
