//! The OpenAPI 3.1 document served at `/openapi.json` (and rendered by `/docs`).

use serde_json::{Value, json};

fn param(name: &str, place: &str, desc: &str, required: bool) -> Value {
    json!({ "name": name, "in": place, "required": required, "description": desc, "schema": { "type": if name == "from" || name == "limit" || name == "depth" { "integer" } else { "string" } } })
}

fn op(summary: &str, params: Vec<Value>, body: Option<&str>, ok: &str) -> Value {
    let mut o = json!({
        "summary": summary,
        "parameters": params,
        "responses": {
            "200": { "description": "OK", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{ok}") } } } },
            "4XX": { "description": "Bad input or refused", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
        }
    });
    if let Some(b) = body {
        o["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{b}") } } } });
    }
    o
}

fn obj(props: &[(&str, &str, &str)]) -> Value {
    let mut p = serde_json::Map::new();
    for (name, ty, desc) in props {
        p.insert((*name).into(), json!({ "type": ty, "description": desc }));
    }
    json!({ "type": "object", "properties": p })
}

/// The document.
pub(crate) fn document() -> Value {
    let id = || param("id", "path", "block height or 64-hex-digit hash", true);
    json!({
        "openapi": "3.1.0",
        "info": { "title": "toy node API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "JSON API of a toy proof-of-work node. Errors are 4xx with {\"error\": \"…\"}." },
        "paths": {
            "/api/status": { "get": op("Node status: height, tip, work, peers, mempool, hash rate, sync", vec![], None, "Status") },
            "/api/blocks": { "get": op("Canonical blocks, newest first", vec![
                param("from", "query", "highest height to list (default: the tip)", false),
                param("limit", "query", "1 to 100 (default 20)", false)], None, "BlockSummaryList") },
            "/api/blocks/{id}": { "get": op("One block with its transactions", vec![id()], None, "Block") },
            "/api/blocks/{id}/txs": { "get": op("A block's transactions", vec![id()], None, "TxList") },
            "/api/txs": { "post": op("Submit a signed transaction", vec![], Some("Tx"), "Submitted") },
            "/api/txs/{id}": { "get": op("A transaction: pending or confirmed", vec![param("id", "path", "transaction id (64 hex digits)", true)], None, "TxStatus") },
            "/api/accounts/{address}": { "get": op("Balance and nonce of an account", vec![param("address", "path", "66-hex-digit address", true)], None, "Account") },
            "/api/wallet": { "get": op("The node wallet", vec![], None, "Account") },
            "/api/wallet/send": { "post": op("Send from the node wallet, signed or not (unsigned comes back rejected)", vec![], Some("Send"), "Submitted") },
            "/api/mine": { "post": op("Mine one block now (dev and test presets)", vec![], None, "BlockSummary") },
            "/api/peers": {
                "get": op("The peers", vec![], None, "PeerList"),
                "post": op("Register (connect to) a peer", vec![], Some("RegisterPeer"), "Registered")
            },
            "/api/resolve": { "post": op("Ask every peer for its tip and sync to the best", vec![], None, "Resolve") },
            "/api/network": { "get": op("This node, its peers and their peers (p2p:get_peers)", vec![], None, "Network") },
            "/api/mempool": { "get": op("Pending transactions, highest fee first", vec![param("limit", "query", "1 to 100 (default 100)", false)], None, "TxList") },
            "/api/tree": { "get": op("Recent block tree with forks", vec![param("depth", "query", "1 to 200 heights (default 30)", false)], None, "Tree") }
        },
        "components": { "schemas": {
            "Error": obj(&[("error", "string", "what is wrong")]),
            "Status": obj(&[("height", "integer", "best height"), ("tip", "string", "best tip hash"), ("work", "string", "cumulative work, decimal"),
                ("peers", "integer", "peers"), ("mempool", "integer", "pending transactions"), ("mempool_bytes", "integer", "their bytes"),
                ("orphans", "integer", "blocks waiting for a parent"), ("hash_rate", "number", "hashes/s"), ("address", "string", "p2p address"),
                ("wallet", "string", "node wallet address"), ("can_mine", "boolean", "whether /api/mine works"), ("sync", "object", "sync progress")]),
            "BlockSummary": obj(&[("height", "integer", ""), ("hash", "string", ""), ("parent", "string", ""), ("time_ms", "integer", "ms since the epoch"),
                ("miner", "string", "miner address"), ("reward", "integer", "subsidy + fees"), ("tx_count", "integer", ""), ("nonce", "integer", ""),
                ("target", "string", ""), ("canonical", "boolean", "on the best chain"), ("confirmations", "integer", "")]),
            "BlockSummaryList": { "type": "array", "items": { "$ref": "#/components/schemas/BlockSummary" } },
            "Block": { "allOf": [ { "$ref": "#/components/schemas/BlockSummary" }, obj(&[("txs", "array", "the transactions")]) ] },
            "Tx": obj(&[("kind", "string", "transfer or mint"), ("sender", "string", "address"), ("recipient", "string", "address"),
                ("amount", "integer", ""), ("fee", "integer", ""), ("nonce", "integer", "the sender's next nonce"), ("signature", "string", "128 hex digits")]),
            "TxList": { "type": "array", "items": { "$ref": "#/components/schemas/Tx" } },
            "TxStatus": obj(&[("tx", "object", "the transaction"), ("status", "string", "pending or confirmed"), ("block_height", "integer", ""),
                ("block_hash", "string", ""), ("confirmations", "integer", "")]),
            "Submitted": obj(&[("id", "string", "transaction id")]),
            "Account": obj(&[("address", "string", ""), ("balance", "integer", ""), ("nonce", "integer", ""), ("next_nonce", "integer", "counting pending ones")]),
            "Send": obj(&[("to", "string", "recipient address"), ("amount", "integer", "above 0"), ("fee", "integer", "default 0"), ("sign", "boolean", "default true")]),
            "PeerList": { "type": "array", "items": { "type": "string" } },
            "RegisterPeer": obj(&[("addr", "string", "host:port")]),
            "Registered": obj(&[("peer", "string", "the peer's id")]),
            "Resolve": obj(&[("peers_asked", "integer", ""), ("best_peer", "string", ""), ("imported", "integer", "blocks"), ("height", "integer", ""), ("tip_changed", "boolean", "")]),
            "Network": obj(&[("nodes", "array", "addr, peers, reachable")]),
            "Tree": { "type": "array", "items": obj(&[("hash", "string", ""), ("parent", "string", ""), ("height", "integer", ""), ("canonical", "boolean", ""), ("miner", "string", ""), ("time_ms", "integer", "")]) }
        } }
    })
}
