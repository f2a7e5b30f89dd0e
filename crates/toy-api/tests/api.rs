//! Every endpoint with good and bad input, against a real chain node (over
//! the in-memory network, two nodes) and against a double.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use toy_api::{ApiError, LiveConfig, LiveNode, NodeApi};
use toy_chain::network::ChainNode;
use toy_chain::target::leading_zeros;
use toy_chain::{ChainParams, Keypair, MemoryStore, Signature, Transaction, TxKind};
use toy_gossip::Gossip;
use toy_msg::{Messaging, Messenger};
use toy_net::{MemoryNetwork, MemoryTransport};
use toy_p2p::{P2p, PeerNetwork};

type Node = ChainNode<MemoryStore, Gossip<P2p<Messaging<MemoryTransport>>>>;

struct Fixture {
    base: String,
    http: reqwest::Client,
    node: Node,
    wallet: Keypair,
    _other: (P2p<Messaging<MemoryTransport>>, Node),
    /// The in-memory network, for tests that add nodes.
    net: MemoryNetwork,
}

async fn chain_node(net: &MemoryNetwork, name: &str, boot: Vec<String>) -> (P2p<Messaging<MemoryTransport>>, Node) {
    let (t, ev) = net.endpoint(Default::default());
    let (msg, events) = Messaging::new(t, ev, Default::default());
    msg.listen(name).await.expect("listen");
    let config = toy_p2p::Config::builder().bootstrap(boot).tick(Duration::from_millis(50)).build().expect("config");
    let p2p = P2p::start(msg, events, config).expect("p2p");
    let gossip = Arc::new(Gossip::new(p2p.clone(), Default::default()));
    let node = toy_testing::chain::chain_node(toy_testing::chain::test_chain(), gossip);
    (p2p, node)
}

async fn fixture() -> Fixture {
    let net = MemoryNetwork::new();
    let other = chain_node(&net, "other:1", vec![]).await;
    let (p2p, node) = chain_node(&net, "api:1", vec![]).await;
    // The node wallet is a funded genesis wallet.
    let wallet = ChainParams::dev_wallet(0);
    let live = LiveNode::new(
        node.clone(),
        LiveConfig {
            wallet: wallet.clone(),
            can_mine: true,
            hash_rate: Some(Arc::new(|| 1234.0)),
            mine_max_nonces: toy_api::MINE_MAX_NONCES,
            peering: Arc::new(p2p),
            history: {
                let h = Arc::new(toy_api::RateHistory::new());
                h.record(1234.0);
                h
            },
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let api: Arc<dyn NodeApi> = Arc::new(live);
    tokio::spawn(async move { axum::serve(listener, toy_api::router(api)).await });
    Fixture { base, http: reqwest::Client::new(), node, wallet, _other: other, net }
}

impl Fixture {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.expect("get");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self.http.post(format!("{}{path}", self.base)).json(&body).send().await.expect("post");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post_raw(&self, path: &str, body: &'static str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// A 4xx with an `error` text.
fn assert_error(got: (StatusCode, Value), status: StatusCode, contains: &str) {
    assert_eq!(got.0, status, "{:?}", got.1);
    let text = got.1["error"].as_str().unwrap_or_default();
    assert!(text.contains(contains), "error {text:?} should mention {contains:?}");
}

fn signed(from: &Keypair, to: &Keypair, amount: u64, nonce: u64) -> Transaction {
    let mut tx = Transaction {
        kind: TxKind::Transfer,
        sender: from.address(),
        recipient: to.address(),
        amount,
        fee: 1,
        nonce,
        signature: Signature::EMPTY,
    };
    from.sign_tx(&mut tx, &ChainParams::test().chain_id());
    tx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_wallet_mine_blocks_and_txs() {
    let f = fixture().await;
    let (s, status) = f.get("/api/status").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(status["height"], 0);
    assert_eq!(status["hash_rate"], 1234.0);
    assert_eq!(status["wallet"], f.wallet.address().to_hex());
    assert_eq!(status["chain"]["name"], "toy");
    // The history the node keeps, so the page's chart is not empty on load.
    let (s, rates) = f.get("/api/hashrate").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rates[0]["hash_rate"], 1234.0);
    assert!(rates[0]["time_ms"].as_u64().is_some_and(|t| t > 0));

    let (s, w) = f.get("/api/wallet").await;
    assert_eq!(s, StatusCode::OK);
    let start = w["balance"].as_u64().expect("balance");
    assert!(start > 0);

    // Send signed from the node wallet: pending, then confirmed by /api/mine.
    let bob = Keypair::from_seed(b"bob");
    let (s, sent) = f.post("/api/wallet/send", json!({"to": bob.address().to_hex(), "amount": 500, "fee": 2})).await;
    assert_eq!(s, StatusCode::OK, "{sent:?}");
    let id = sent["id"].as_str().expect("id").to_owned();
    let (_, t) = f.get(&format!("/api/txs/{id}")).await;
    assert_eq!(t["status"], "pending");
    let (s, mined) = f.post("/api/mine", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{mined:?}");
    assert_eq!(mined["height"], 1);
    assert_eq!(mined["tx_count"], 1);
    let (_, t) = f.get(&format!("/api/txs/{id}")).await;
    assert_eq!(
        (t["status"].as_str(), t["block_height"].as_u64(), t["confirmations"].as_u64()),
        (Some("confirmed"), Some(1), Some(1))
    );
    let (_, acct) = f.get(&format!("/api/accounts/{}", bob.address().to_hex())).await;
    assert_eq!((acct["balance"].as_u64(), acct["nonce"].as_u64()), (Some(500), Some(0)));
    let (_, w) = f.get("/api/wallet").await;
    let reward = ChainParams::test().block_reward;
    assert_eq!(w["balance"].as_u64(), Some(start - 500 + reward), "the node wallet mined: reward and its fee back");
    assert_eq!(w["nonce"], 1);

    // Blocks: list, by height, by hash, its transactions.
    let (s, list) = f.get("/api/blocks?limit=5").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "block 1 and genesis");
    assert_eq!(list[0]["height"], 1);
    let hash = list[0]["hash"].as_str().expect("hash").to_owned();
    let (_, by_height) = f.get("/api/blocks/1").await;
    let (_, by_hash) = f.get(&format!("/api/blocks/{hash}")).await;
    assert_eq!(by_height, by_hash);
    assert_eq!(by_hash["txs"][0]["id"], id.as_str());
    let (_, txs) = f.get(&format!("/api/blocks/{hash}/txs")).await;
    assert_eq!(txs.as_array().map(Vec::len), Some(1));
    let (_, page) = f.get("/api/blocks?from=0&limit=1").await;
    assert_eq!(page[0]["height"], 0);
    let (s, tree) = f.get("/api/tree?depth=5").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(tree.as_array().map(Vec::len), Some(2));

    // Submit a transaction signed elsewhere.
    let carol = ChainParams::dev_wallet(1);
    let tx = signed(&carol, &bob, 70, 0);
    let body = serde_json::to_value(toy_api::TxJson::from(&tx)).expect("json");
    let (s, r) = f.post("/api/txs", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    assert_eq!(r["id"], tx.id().to_hex());
    // The same again: a duplicate is refused with the mempool's reason.
    assert_error(f.post("/api/txs", body).await, StatusCode::UNPROCESSABLE_ENTITY, "already");
    let (_, acct) = f.get(&format!("/api/accounts/{}", carol.address().to_hex())).await;
    assert_eq!(acct["next_nonce"], 1, "counts the pending one");
    let (s, pool) = f.get("/api/mempool?limit=10").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(pool[0]["id"], tx.id().to_hex());
    assert_error(f.get("/api/mempool?limit=0").await, StatusCode::BAD_REQUEST, "limit");

    let s = f.http.get(format!("{}/metrics", f.base)).send().await.expect("metrics");
    assert_eq!(s.status(), StatusCode::OK);
    let text = s.text().await.expect("text");
    assert!(text.contains("toy_height 1\n"), "{text}");
    assert!(text.contains("toy_hash_rate 1234\n"));
    // Counted: the block mined here, the local transfers, the duplicate refused.
    assert!(text.contains("toy_blocks_accepted_total{outcome=\"Mined\"} 1\n"), "{text}");
    assert!(text.contains("toy_txs_accepted_total{source=\"local\"} 2\n"), "{text}");
    assert!(text.contains("toy_txs_rejected_total{reason=\"AlreadyKnown\"} 1\n"), "{text}");
    assert_eq!(f.node.chain().tip().height, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx() {
    let f = fixture().await;
    let bob = Keypair::from_seed(b"bob").address().to_hex();
    // Unsigned send: the rejection comes back.
    assert_error(
        f.post("/api/wallet/send", json!({"to": bob, "amount": 5, "sign": false})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad signature",
    );
    assert_error(
        f.post("/api/wallet/send", json!({"to": "nope", "amount": 5})).await,
        StatusCode::BAD_REQUEST,
        "to must be",
    );
    // 66 hex digits that are no point on the curve: the coins would be
    // burnt (before: accepted, and mined).
    let wrong_prefix = format!("05{}", "aa".repeat(32));
    assert_error(
        f.post("/api/wallet/send", json!({"to": wrong_prefix, "amount": 5})).await,
        StatusCode::BAD_REQUEST,
        "compressed public key",
    );
    let not_a_point = format!("02{}", "5a".repeat(32));
    assert_error(
        f.post("/api/wallet/send", json!({"to": not_a_point, "amount": 5})).await,
        StatusCode::BAD_REQUEST,
        "compressed secp256k1",
    );
    let mut burn = signed(&ChainParams::dev_wallet(2), &Keypair::from_seed(b"x"), 1, 0);
    burn.recipient = toy_chain::Address([3; 33]);
    let burn = toy_api::TxJson::from(&burn);
    assert_error(
        f.post("/api/txs", serde_json::to_value(&burn).expect("json")).await,
        StatusCode::BAD_REQUEST,
        "recipient must be an address",
    );
    assert_error(f.post("/api/wallet/send", json!({"to": bob, "amount": 0})).await, StatusCode::BAD_REQUEST, "amount");
    assert_error(f.post("/api/wallet/send", json!({"to": bob})).await, StatusCode::BAD_REQUEST, "amount");
    assert_error(
        f.post("/api/wallet/send", json!({"to": bob, "amount": u64::MAX})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "insufficient",
    );
    assert_error(
        f.post("/api/wallet/send", json!({"to": bob, "amount": u64::MAX, "fee": 1})).await,
        StatusCode::BAD_REQUEST,
        "overflows",
    );
    assert_error(f.post_raw("/api/wallet/send", "{not json").await, StatusCode::BAD_REQUEST, "");
    assert_error(f.post_raw("/api/txs", "[]").await, StatusCode::BAD_REQUEST, "");
    let good = toy_api::TxJson::from(&signed(&ChainParams::dev_wallet(2), &Keypair::from_seed(b"x"), 1, 0));
    let mut bad_kind = serde_json::to_value(&good).expect("json");
    bad_kind["kind"] = json!("steal");
    assert_error(f.post("/api/txs", bad_kind).await, StatusCode::BAD_REQUEST, "kind");
    let mut bad_sig = serde_json::to_value(&good).expect("json");
    bad_sig["signature"] = json!("00");
    assert_error(f.post("/api/txs", bad_sig).await, StatusCode::BAD_REQUEST, "signature");
    let mut forged = serde_json::to_value(&good).expect("json");
    forged["amount"] = json!(2);
    assert_error(f.post("/api/txs", forged).await, StatusCode::UNPROCESSABLE_ENTITY, "bad signature");
    let mut replay = serde_json::to_value(&good).expect("json");
    replay["nonce"] = json!(1_000_000);
    assert_error(f.post("/api/txs", replay).await, StatusCode::UNPROCESSABLE_ENTITY, "");
    let poor = Keypair::from_seed(b"poor");
    let broke = toy_api::TxJson::from(&signed(&poor, &Keypair::from_seed(b"x"), 10, 0));
    assert_error(
        f.post("/api/txs", serde_json::to_value(&broke).expect("json")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "insufficient",
    );
    let mut huge = String::from("{\"to\":\"");
    huge.push_str(&"a".repeat(toy_api::MAX_BODY + 10));
    huge.push_str("\",\"amount\":1}");
    let r = f.http.post(format!("{}/api/wallet/send", f.base)).header("content-type", "application/json").body(huge);
    let r = r.send().await.expect("post");
    assert!(r.status().is_client_error(), "{}", r.status());

    assert_error(f.get("/api/blocks/zz").await, StatusCode::BAD_REQUEST, "neither a height");
    assert_error(f.get("/api/blocks/99").await, StatusCode::NOT_FOUND, "no such block");
    assert_error(f.get(&format!("/api/blocks/{}", "ab".repeat(32))).await, StatusCode::NOT_FOUND, "no such block");
    assert_error(f.get("/api/blocks/99/txs").await, StatusCode::NOT_FOUND, "");
    assert_error(f.get("/api/blocks?limit=0").await, StatusCode::BAD_REQUEST, "limit");
    assert_error(f.get("/api/blocks?limit=1000").await, StatusCode::BAD_REQUEST, "limit");
    assert_error(f.get("/api/blocks?from=-1").await, StatusCode::BAD_REQUEST, "");
    assert_error(f.get("/api/txs/12").await, StatusCode::BAD_REQUEST, "64 hex");
    assert_error(f.get(&format!("/api/txs/{}", "cd".repeat(32))).await, StatusCode::NOT_FOUND, "neither pending");
    assert_error(f.get("/api/accounts/xyz").await, StatusCode::BAD_REQUEST, "address");
    // The right shape, but no point: no account can exist there.
    assert_error(
        f.get(&format!("/api/accounts/02{}", "5a".repeat(32))).await,
        StatusCode::NOT_FOUND,
        "not a public key",
    );
    assert_error(f.get("/api/tree?depth=0").await, StatusCode::BAD_REQUEST, "depth");
    assert_error(f.get("/api/tree?depth=abc").await, StatusCode::BAD_REQUEST, "");
    assert_error(f.post("/api/peers", json!({"addr": "no-port"})).await, StatusCode::BAD_REQUEST, "host:port");
    assert_error(f.post("/api/peers", json!({"addr": "nowhere:9"})).await, StatusCode::UNPROCESSABLE_ENTITY, "");
    assert_error(f.post("/api/peers", json!({})).await, StatusCode::BAD_REQUEST, "");
    assert_error(f.get("/api/nothing").await, StatusCode::NOT_FOUND, "no such endpoint");
    // A method a path does not take: 405 as JSON, with the Allow header.
    let r = f.http.delete(format!("{}/api/status", f.base)).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.headers().get("allow").is_some_and(|a| a.to_str().unwrap_or("").contains("GET")), "{:?}", r.headers());
    let body: Value = r.json().await.expect("a JSON body");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("method")), "{body}");
    // An unknown account is simply empty.
    let (s, a) = f.get(&format!("/api/accounts/{bob}")).await;
    assert_eq!((s, a["balance"].as_u64()), (StatusCode::OK, Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_register_resolve_and_network() {
    let f = fixture().await;
    let (s, peers) = f.get("/api/peers").await;
    assert_eq!((s, peers), (StatusCode::OK, json!([])));
    // The other node mines three blocks; registering it lets us sync.
    {
        let other = &f._other.1;
        for _ in 0..3 {
            let t = other.chain().template(Keypair::from_seed(b"o").address()).await.expect("template");
            other.submit_block(toy_chain::mine_simple(t).expect("mine")).await.expect("submit");
        }
    }
    let (s, r) = f.post("/api/peers", json!({"addr": "other:1"})).await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    assert_eq!(r["peer"], "other:1");
    let (s, report) = f.post("/api/resolve", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(report["height"], 3, "{report:?}");
    let (_, net) = f.get("/api/network").await;
    assert_eq!(net["nodes"][0]["addr"], "api:1");
    assert_eq!(net["nodes"][1]["addr"], "other:1");
    assert_eq!(net["nodes"][1]["reachable"], true);
    assert!(net["nodes"][1]["peers"].is_array(), "its list (without the asker)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_picture_reaches_every_connected_node() {
    let f = fixture().await;
    // A line: api — other — third — fourth.
    let net = f.net.clone();
    let third = chain_node(&net, "third:1", vec!["other:1".into()]).await;
    let fourth = chain_node(&net, "fourth:1", vec!["third:1".into()]).await;
    let (s, _) = f.post("/api/peers", json!({"addr": "other:1"})).await;
    assert_eq!(s, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fourth.0.peers().is_empty() || third.0.peers().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the line did not form");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, view) = f.get("/api/network").await;
    assert_eq!(s, StatusCode::OK);
    let nodes = view["nodes"].as_array().expect("nodes");
    assert_eq!(nodes[0]["addr"], "api:1", "this node first");
    for addr in ["other:1", "third:1", "fourth:1"] {
        let n = nodes.iter().find(|n| n["addr"] == addr).unwrap_or_else(|| panic!("{addr} missing: {view}"));
        assert_eq!(n["reachable"], true, "{addr}");
    }
    let fourth_view = nodes.iter().find(|n| n["addr"] == "fourth:1").expect("fourth");
    assert!(fourth_view["peers"].as_array().is_some_and(|p| p.iter().any(|x| x == "third:1")), "{fourth_view}");
    assert_eq!(nodes.len(), 4, "each node once: {view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mining_on_demand_is_one_at_a_time_and_gives_up() {
    // A chain no nonce in the budget can satisfy (60 leading zero bits), and
    // a budget of 2^25 hashes: a request grinds for a second or two.
    let net = MemoryNetwork::new();
    let params = ChainParams {
        initial_target: leading_zeros(60),
        pow_limit: leading_zeros(60),
        retarget: None,
        ..ChainParams::test()
    };
    let chain = toy_testing::chain::open(params, MemoryStore::new());
    let (t, ev) = net.endpoint(Default::default());
    let (msg, events) = Messaging::new(t, ev, Default::default());
    msg.listen("hard:1").await.expect("listen");
    let p2p = P2p::start(msg, events, toy_p2p::Config::default()).expect("p2p");
    let gossip = Arc::new(Gossip::new(p2p.clone(), Default::default()));
    let node = toy_testing::chain::chain_node(chain, gossip);
    let live = LiveNode::new(
        node,
        LiveConfig {
            wallet: ChainParams::dev_wallet(0),
            can_mine: true,
            hash_rate: None,
            mine_max_nonces: 1 << 25,
            peering: Arc::new(p2p.clone()),
            history: Default::default(),
        },
    );
    let api: Arc<dyn NodeApi> = Arc::new(live);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/api/mine", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, toy_api::router(api)).await });
    let http = reqwest::Client::new();
    let mine = || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http.post(url).json(&json!({})).send().await.expect("post");
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Two at once: one grinds its whole budget and gives up, the other is
    // turned away at once while it does.
    let (a, b) = tokio::join!(mine(), mine());
    let (busy, gave_up) = if a.0 == StatusCode::TOO_MANY_REQUESTS { (a, b) } else { (b, a) };
    assert_eq!(busy.0, StatusCode::TOO_MANY_REQUESTS, "{busy:?} / {gave_up:?}");
    assert!(busy.1["error"].as_str().is_some_and(|e| e.contains("already being mined")), "{busy:?}");
    assert_eq!(gave_up.0, StatusCode::SERVICE_UNAVAILABLE, "{gave_up:?}");
    assert!(gave_up.1["error"].as_str().is_some_and(|e| e.contains("no block found")), "{gave_up:?}");
    // The lock is free again: the next one grinds (and gives up) too.
    let (s, _) = mine().await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    p2p.shutdown().await;
}

#[tokio::test]
async fn openapi_docs_and_the_page_are_served() {
    let f = fixture().await;
    let (s, doc) = f.get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/api/status", "/api/blocks/{id}", "/api/wallet/send", "/api/peers", "/api/tree"] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    for (path, needle) in [
        ("/", "send-form"),
        ("/app.js", "refreshWallet"),
        ("/style.css", "block-card"),
        ("/docs", "openapi.json"),
        ("/favicon.svg", "<svg"),
    ] {
        let r = f.http.get(format!("{}{path}", f.base)).send().await.expect("get");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let body = r.text().await.expect("body");
        assert!(body.contains(needle), "{path} contains {needle}");
        assert!(!body.contains("https://"), "{path}: no CDN, works offline");
    }
}

/// A double that refuses everything: the router maps each error to its
/// status and never answers 500.
struct Refuses;

#[async_trait::async_trait]
impl toy_api::ChainApi for Refuses {
    async fn status(&self) -> Result<toy_api::StatusView, ApiError> {
        Err(ApiError::Unavailable("double".into()))
    }
    async fn blocks(&self, _: Option<u64>, _: usize) -> Result<Vec<toy_api::BlockSummary>, ApiError> {
        Err(ApiError::Unavailable("double".into()))
    }
    async fn block(&self, _: toy_api::BlockId) -> Result<toy_api::BlockView, ApiError> {
        Err(ApiError::NotFound("double".into()))
    }
    async fn tx(&self, _: toy_chain::Hash) -> Result<toy_api::TxStatus, ApiError> {
        Err(ApiError::NotFound("double".into()))
    }
    async fn account(&self, _: String) -> Result<toy_api::AccountView, ApiError> {
        Err(ApiError::Unavailable("double".into()))
    }
    async fn submit_tx(&self, _: toy_api::TxJson) -> Result<String, ApiError> {
        Err(ApiError::Rejected("double".into()))
    }
    async fn tree(&self, _: u64) -> Result<Vec<toy_api::TreeNode>, ApiError> {
        Ok(vec![])
    }
    async fn metrics(&self) -> Result<toy_api::MetricsSnapshot, ApiError> {
        Ok(Default::default())
    }
    async fn mempool(&self, _: usize) -> Result<Vec<toy_api::TxJson>, ApiError> {
        Err(ApiError::Unavailable("double".into()))
    }
}

#[async_trait::async_trait]
impl toy_api::WalletApi for Refuses {
    async fn wallet(&self) -> Result<toy_api::AccountView, ApiError> {
        Err(ApiError::Unavailable("double".into()))
    }
    async fn send(&self, _: toy_api::SendRequest) -> Result<String, ApiError> {
        Err(ApiError::Rejected("double".into()))
    }
}

#[async_trait::async_trait]
impl toy_api::MinerApi for Refuses {
    async fn mine(&self) -> Result<toy_api::BlockSummary, ApiError> {
        Err(ApiError::Forbidden("double".into()))
    }
}

#[async_trait::async_trait]
impl toy_api::NetworkApi for Refuses {
    async fn peers(&self) -> Result<Vec<String>, ApiError> {
        Ok(vec!["a:1".into()])
    }
    async fn register_peer(&self, _: String) -> Result<String, ApiError> {
        Err(ApiError::Rejected("double".into()))
    }
    async fn resolve(&self) -> Result<toy_chain::network::ResolveReport, ApiError> {
        Err(ApiError::Unavailable("double".into()))
    }
    async fn network(&self) -> Result<toy_api::NetworkView, ApiError> {
        Ok(toy_api::NetworkView { nodes: vec![] })
    }
}

#[tokio::test]
async fn a_double_behind_the_router() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, toy_api::router(Arc::new(Refuses))).await });
    let http = reqwest::Client::new();
    let addr = Keypair::from_seed(b"a").address().to_hex();
    let cases = [
        ("GET", "/api/status", StatusCode::SERVICE_UNAVAILABLE),
        ("GET", "/api/blocks", StatusCode::SERVICE_UNAVAILABLE),
        ("GET", "/api/blocks/3", StatusCode::NOT_FOUND),
        ("POST", "/api/mine", StatusCode::FORBIDDEN),
        ("GET", "/api/peers", StatusCode::OK),
        ("POST", "/api/resolve", StatusCode::SERVICE_UNAVAILABLE),
        ("GET", "/api/network", StatusCode::OK),
        ("GET", "/metrics", StatusCode::OK),
    ];
    for (method, path, want) in cases {
        let req = if method == "GET" {
            http.get(format!("{base}{path}"))
        } else {
            http.post(format!("{base}{path}")).json(&json!({}))
        };
        let r = req.send().await.expect("send");
        assert_eq!(r.status(), want, "{method} {path}");
    }
    let r = http.get(format!("{base}/api/accounts/{addr}")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn slow_clients_cannot_hold_the_api() {
    // Before: no header timeout and no connection cap; slowloris took the
    // API (and the process's file descriptors) down.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cancel = tokio_util::sync::CancellationToken::new();
    let limits = toy_api::HttpLimits {
        max_connections: 4,
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let server = tokio::spawn(toy_api::serve_with(listener, Arc::new(Refuses), cancel.clone(), limits));
    // Four clients that start a request and never finish its headers.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /api/peers HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.expect("partial");
        slow.push(s);
    }
    // Each is closed once its headers are late.
    for s in &mut slow {
        let mut buf = [0u8; 256];
        let end = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(end.is_ok(), "a client slower than the header timeout was not closed");
    }
    // Their slots are free again: an honest request is served.
    let r = reqwest::get(format!("http://{addr}/api/peers")).await.expect("served");
    assert_eq!(r.status(), StatusCode::OK);
    cancel.cancel();
    server.await.expect("task").expect("serve");
}

#[tokio::test]
async fn at_the_cap_the_longest_idle_connection_gives_way_to_a_new_one() {
    // Before: past the cap a new connection was closed at once, so slow
    // clients holding the cap kept every new client out for a header timeout
    // after another (slowloris with a few hundred sockets).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cancel = tokio_util::sync::CancellationToken::new();
    let limits =
        toy_api::HttpLimits { max_connections: 2, header_read_timeout: Duration::from_secs(60), ..Default::default() };
    let server = tokio::spawn(toy_api::serve_with(listener, Arc::new(Refuses), cancel.clone(), limits));
    // Two slow clients hold the cap, each with half a request.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /api/status HTTP/1.1\r\n").await.expect("write");
        slow.push(s);
    }
    // A new client is served; the slow client waiting longest is closed.
    let mut fresh = tokio::net::TcpStream::connect(addr).await.expect("connect");
    fresh.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), fresh.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    assert!(answer.starts_with(b"HTTP/1.1 "), "{}", String::from_utf8_lossy(&answer));
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(30), slow[0].read(&mut buf)).await.expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "the oldest slow connection is closed: {n:?}");
    cancel.cancel();
    server.await.expect("task").expect("serve");
}

#[tokio::test]
async fn a_body_that_never_comes_gets_408_and_frees_the_connection() {
    // Before: a request whose headers were in counted as busy forever while
    // its body trickled (or never came), so 128 of them held the API.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cancel = tokio_util::sync::CancellationToken::new();
    let limits = toy_api::HttpLimits { request_timeout: Duration::from_millis(300), ..Default::default() };
    let server = tokio::spawn(toy_api::serve_with(listener, Arc::new(Refuses), cancel.clone(), limits));
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head =
        "POST /api/txs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    s.write_all(head.as_bytes()).await.expect("write");
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    assert!(answer[..n].starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer[..n]));
    cancel.cancel();
    server.await.expect("task").expect("serve");
}

/// A request to the fixture's node with chosen headers.
async fn raw(f: &Fixture, method: reqwest::Method, path: &str, headers: &[(&str, &str)], body: &str) -> StatusCode {
    let mut r = f.http.request(method, format!("{}{path}", f.base)).body(body.to_owned());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.expect("request").status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_on_another_site_cannot_use_the_wallet() {
    let f = fixture().await;
    let to = Keypair::from_seed(b"rebinding").address().to_hex();
    let send = json!({"to": to, "amount": 1, "fee": 1}).to_string();
    let json = ("content-type", "application/json");
    // DNS rebinding: evil.example now resolves to the node; the browser
    // still says whose page it is.
    let rebound =
        raw(&f, reqwest::Method::POST, "/api/wallet/send", &[json, ("host", "evil.example:8080")], &send).await;
    assert_eq!(rebound, StatusCode::FORBIDDEN, "a write under another host name");
    let read = raw(&f, reqwest::Method::GET, "/api/wallet", &[("host", "evil.example:8080")], "").await;
    assert_eq!(read, StatusCode::FORBIDDEN, "a read under another host name (the address and balance)");
    // A cross-site form post: no JSON content type.
    for path in ["/api/mine", "/api/resolve", "/api/wallet/send"] {
        let form =
            raw(&f, reqwest::Method::POST, path, &[("content-type", "application/x-www-form-urlencoded")], "a=1").await;
        assert_eq!(form, StatusCode::FORBIDDEN, "{path} from a form");
    }
    // JSON from a page on another origin (a CORS request the node never
    // allows, sent anyway).
    let cross =
        raw(&f, reqwest::Method::POST, "/api/wallet/send", &[json, ("origin", "http://evil.example")], &send).await;
    assert_eq!(cross, StatusCode::FORBIDDEN, "a write from another origin");
    let null = raw(&f, reqwest::Method::POST, "/api/wallet/send", &[json, ("origin", "null")], &send).await;
    assert_eq!(null, StatusCode::FORBIDDEN, "a write from an opaque origin");
    assert_eq!(f.get("/api/mempool").await.1.as_array().map(Vec::len), Some(0), "nothing was sent");
    // The node's own page: same origin, JSON. Works.
    let host = f.base.trim_start_matches("http://").to_owned();
    let own =
        raw(&f, reqwest::Method::POST, "/api/wallet/send", &[json, ("origin", &f.base), ("host", &host)], &send).await;
    assert_eq!(own, StatusCode::OK, "the page on the node itself");
    // Every answer forbids framing and sniffing and sets the policy.
    let r = f.http.get(format!("{}/", f.base)).send().await.expect("page");
    assert_eq!(r.headers().get("x-frame-options").and_then(|v| v.to_str().ok()), Some("DENY"));
    assert_eq!(r.headers().get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"));
    assert!(r.headers().get("content-security-policy").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_writes_need_the_token() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let access = toy_api::Access { hosts: vec![], token: Some("s3cret".into()) };
    tokio::spawn(async move { axum::serve(listener, toy_api::router_with(Arc::new(Refuses), access)).await });
    let http = reqwest::Client::new();
    let post = |auth: Option<&'static str>| {
        let mut r = http.post(format!("{base}/api/resolve")).json(&json!({}));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    assert_eq!(post(None).await.expect("post").status(), StatusCode::UNAUTHORIZED);
    assert_eq!(post(Some("Bearer wrong")).await.expect("post").status(), StatusCode::UNAUTHORIZED);
    // With the token the request reaches the API (which refuses it: a double).
    assert_ne!(post(Some("Bearer s3cret")).await.expect("post").status(), StatusCode::UNAUTHORIZED);
    // Reads need no token.
    let read = http.get(format!("{base}/api/peers")).send().await.expect("get");
    assert_ne!(read.status(), StatusCode::UNAUTHORIZED);
}
