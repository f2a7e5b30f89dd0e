//! The OpenAPI 3.1 document served at `/openapi.json` (and rendered by `/docs`).

use serde_json::{Value, json};

fn param(name: &str, place: &str, desc: &str, schema: Value) -> Value {
    json!({ "name": name, "in": place, "required": place == "path", "description": desc, "schema": schema })
}

/// A 64-hex-digit hash (block hash, transaction id).
const HASH_PATTERN: &str = "^[0-9a-fA-F]{64}$";

fn int_range(min: u64, max: u64) -> Value {
    json!({ "type": "integer", "minimum": min, "maximum": max })
}

fn u64_schema(desc: &str) -> Value {
    json!({ "type": "integer", "minimum": 0, "maximum": u64::MAX, "description": desc })
}

fn pattern(p: &str, desc: &str) -> Value {
    json!({ "type": "string", "pattern": p, "description": desc })
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
        // `Empty` marks a write with nothing to say: any JSON, or none, as
        // long as it is sent as JSON (`access.rs`).
        let required = b != "Empty";
        o["requestBody"] = json!({ "required": required, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{b}") } } } });
    }
    o
}

fn obj(props: &[(&str, &str, &str)]) -> Value {
    let mut p = serde_json::Map::new();
    for (name, ty, desc) in props {
        // "integer|null": a value that may be absent (JSON null).
        let ty: Value = match ty.split_once('|') {
            Some((a, b)) => json!([a, b]),
            None => json!(ty),
        };
        p.insert((*name).into(), json!({ "type": ty, "description": desc }));
    }
    json!({ "type": "object", "properties": p })
}

/// The document for a chain of `profile`'s shape: its address and
/// signature patterns, and no fee or timestamp where it has none.
pub(crate) fn document(profile: &crate::ChainProfile) -> Value {
    let address_pattern = format!("^[0-9a-fA-F]{{{}}}$", profile.address_digits);
    let address_desc = format!("{}-hex-digit address", profile.address_digits);
    let signature_pattern = format!("^[0-9a-fA-F]{{{}}}$", profile.signature_digits);
    let signature_desc = format!("{} hex digits", profile.signature_digits);
    let address = |desc: &str| pattern(&address_pattern, desc);
    let id = || {
        param(
            "id",
            "path",
            "block height or 64-hex-digit hash",
            json!({ "type": "string", "pattern": "^([0-9]{1,19}|[0-9a-fA-F]{64})$" }),
        )
    };
    let max_page = crate::MAX_PAGE as u64;
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": { "title": "toy node API", "version": env!("CARGO_PKG_VERSION"),
                  "description": format!("JSON API of a toy proof-of-work node on the {} chain. Errors are 4xx with {{\"error\": \"…\"}}.", profile.name) },
        "paths": {
            "/api/status": { "get": op("Node status: height, tip, work, peers, mempool, hash rate, sync", vec![], None, "Status") },
            "/api/blocks": { "get": op("Canonical blocks, newest first", vec![
                param("from", "query", "highest height to list (default: the tip)", u64_schema("")),
                param("limit", "query", "1 to 100 (default 20)", int_range(1, max_page))], None, "BlockSummaryList") },
            "/api/blocks/{id}": { "get": op("One block with its transactions", vec![id()], None, "Block") },
            "/api/blocks/{id}/txs": { "get": op("A block's transactions", vec![id()], None, "TxList") },
            "/api/txs": { "post": op("Submit a signed transaction", vec![], Some("Tx"), "Submitted") },
            "/api/txs/{id}": { "get": op("A transaction: pending or confirmed", vec![param("id", "path", "transaction id (64 hex digits)", pattern(HASH_PATTERN, ""))], None, "TxStatus") },
            "/api/accounts/{address}": { "get": op("Balance and nonce of an account", vec![param("address", "path", &address_desc, address(""))], None, "Account") },
            "/api/wallet": { "get": op("The node wallet", vec![], None, "Account") },
            "/api/wallet/send": { "post": op("Send from the node wallet, signed or not (unsigned comes back rejected)", vec![], Some("Send"), "Submitted") },
            "/api/mine": { "post": op("Mine one block now (dev and test presets; one at a time, 429 while one is being mined; 409 when the tip moves meanwhile, which stops it; 503 if none is found within 2^29 hashes)", vec![], Some("Empty"), "BlockSummary") },
            "/api/peers": {
                "get": op("The peers", vec![], None, "PeerList"),
                "post": op("Register (connect to) a peer", vec![], Some("RegisterPeer"), "Registered")
            },
            "/api/resolve": { "post": op("Ask every peer for its tip and sync to the best", vec![], Some("Empty"), "Resolve") },
            "/api/network": { "get": op("Every node reachable from this one and its peers, crawled breadth first through p2p:get_peers (at most 64 nodes, about 7 s at most; one crawl at a time, 429 while one runs)", vec![], None, "Network") },
            "/api/mempool": { "get": op("Pending transactions, highest fee first", vec![param("limit", "query", "1 to 100 (default 100)", int_range(1, max_page))], None, "TxList") },
            "/api/tree": { "get": op("Recent block tree with forks", vec![param("depth", "query", "1 to 200 heights (default 30)", int_range(1, crate::MAX_TREE_DEPTH))], None, "Tree") }
        },
        "components": { "schemas": {
            "Error": obj(&[("error", "string", "what is wrong")]),
            "Status": obj(&[("chain", "object", "which chain (name) and what its records hold: address_digits, signature_digits, fees, timestamps, resolve"), ("height", "integer", "best height"), ("tip", "string", "best tip hash"), ("chain_id", "string", "genesis hash that transaction signatures are bound to"), ("work", "string", "cumulative work, decimal (absent when the fork choice is by height)"),
                ("peers", "integer", "peers"), ("mempool", "integer", "pending transactions"), ("mempool_bytes", "integer", "their bytes"),
                ("orphans", "integer", "blocks waiting for a parent"), ("orphan_bytes", "integer", "their bytes"), ("store_ok", "boolean", "false after a storage failure until the store recovers"), ("store_error", "string", "that failure, empty when none"), ("hash_rate", "number", "hashes/s"), ("address", "string", "p2p address"),
                ("wallet", "string", "node wallet address"), ("can_mine", "boolean", "whether /api/mine works"), ("sync", "object", "sync progress (absent on a chain without batch sync)")]),
            "BlockSummary": obj(&[("height", "integer", ""), ("hash", "string", ""), ("parent", "string", ""), ("time_ms", "integer", "ms since the epoch (absent without timestamps)"),
                ("miner", "string", "miner address"), ("reward", "integer", "subsidy + fees"), ("tx_count", "integer", ""), ("nonce", "integer", ""),
                ("target", "string", ""), ("canonical", "boolean", "on the best chain"), ("confirmations", "integer", "")]),
            "BlockSummaryList": { "type": "array", "items": { "$ref": "#/components/schemas/BlockSummary" } },
            "Block": { "allOf": [ { "$ref": "#/components/schemas/BlockSummary" }, obj(&[("txs", "array", "the transactions")]) ] },
            "Tx": {
                "type": "object",
                "required": ["kind", "sender", "recipient", "amount", "nonce", "signature"],
                "properties": {
                    "id": pattern(HASH_PATTERN, "transaction id (ignored on submit: it is computed)"),
                    "kind": { "type": "string", "enum": ["transfer", "mint"] },
                    "sender": address("address"),
                    "recipient": address("address"),
                    "amount": u64_schema(""),
                    "fee": u64_schema("default 0; absent on a chain without fees"),
                    "nonce": u64_schema("the sender's next nonce"),
                    "signature": pattern(&signature_pattern, &signature_desc)
                }
            },
            "TxList": { "type": "array", "items": { "$ref": "#/components/schemas/Tx" } },
            "TxStatus": obj(&[("tx", "object", "the transaction"), ("status", "string", "pending or confirmed"), ("block_height", "integer|null", "null while pending"),
                ("block_hash", "string|null", "null while pending"), ("confirmations", "integer", "")]),
            "Submitted": obj(&[("id", "string", "transaction id")]),
            "Account": obj(&[("address", "string", ""), ("balance", "integer", ""), ("nonce", "integer", ""), ("next_nonce", "integer", "counting pending ones")]),
            "Send": {
                "type": "object",
                "required": ["to", "amount"],
                "properties": {
                    "to": address("recipient address"),
                    "amount": { "type": "integer", "minimum": 1, "maximum": u64::MAX, "description": "above 0" },
                    "fee": u64_schema("default 0"),
                    "sign": { "type": "boolean", "description": "default true" }
                }
            },
            "PeerList": { "type": "array", "items": { "type": "string" } },
            "RegisterPeer": { "type": "object", "required": ["addr"], "properties": { "addr": { "type": "string", "description": "host:port" } } },
            "Registered": obj(&[("peer", "string", "the peer's id")]),
            "Resolve": obj(&[("peers_asked", "integer", ""), ("best_peer", "string|null", "none when no peer had more work"), ("imported", "integer", "blocks"), ("height", "integer", ""), ("tip_changed", "boolean", "")]),
            "Network": obj(&[("nodes", "array", "addr, peers, reachable")]),
            "Empty": { "description": "Any JSON, ignored (`{}` will do): writes are sent as JSON, so that a page on another site cannot send them with a plain form" },
            "Tree": { "type": "array", "items": obj(&[("hash", "string", ""), ("parent", "string", ""), ("height", "integer", ""), ("canonical", "boolean", ""), ("miner", "string", ""), ("time_ms", "integer", "")]) }
        } }
    });
    leave_out(&mut doc, profile);
    doc
}

/// Takes out of `doc` what a chain of `profile`'s shape has no field or
/// route for.
fn leave_out(doc: &mut Value, profile: &crate::ChainProfile) {
    let mut drop = |path: &[&str], key: &str| {
        let mut at = &mut *doc;
        for step in path {
            at = &mut at[*step];
        }
        if let Some(map) = at.as_object_mut() {
            map.remove(key);
        }
    };
    if !profile.fees {
        drop(&["components", "schemas", "Tx", "properties"], "fee");
        drop(&["components", "schemas", "Send", "properties"], "fee");
    }
    if !profile.timestamps {
        drop(&["components", "schemas", "BlockSummary", "properties"], "time_ms");
        drop(&["components", "schemas", "Tree", "items", "properties"], "time_ms");
    }
    if !profile.resolve {
        drop(&["paths"], "/api/resolve");
        drop(&["components", "schemas"], "Resolve");
    }
    if profile.name != "toy" {
        // Only the toy chain has mint transactions (its coinbase).
        doc["components"]["schemas"]["Tx"]["properties"]["kind"]["enum"] = json!(["transfer"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_without_fees_timestamps_or_resolve_is_documented_without_them() {
        let profile = crate::ChainProfile {
            name: "workshop".into(),
            address_digits: 50,
            signature_digits: 96,
            fees: false,
            timestamps: false,
            resolve: false,
        };
        let doc = document(&profile);
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["Tx"]["properties"]["fee"].is_null());
        assert!(schemas["Send"]["properties"]["fee"].is_null());
        assert!(schemas["BlockSummary"]["properties"]["time_ms"].is_null());
        assert!(doc["paths"]["/api/resolve"].is_null());
        assert_eq!(schemas["Tx"]["properties"]["sender"]["pattern"], "^[0-9a-fA-F]{50}$");
        assert_eq!(schemas["Tx"]["properties"]["signature"]["pattern"], "^[0-9a-fA-F]{96}$");
        // The toy chain's keeps them all.
        let toy = document(&crate::ChainProfile::toy());
        assert!(toy["components"]["schemas"]["Tx"]["properties"]["fee"].is_object());
        assert!(toy["paths"]["/api/resolve"].is_object());
        assert_eq!(toy["components"]["schemas"]["Tx"]["properties"]["sender"]["pattern"], "^[0-9a-fA-F]{66}$");
    }
}
