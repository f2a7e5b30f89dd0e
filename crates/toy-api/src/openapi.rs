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
            "4XX": { "description": "Refusals any route can give: 400 malformed input (a body over 64 KiB included), 401/403 by the access rules (host, origin, token), 405 another method; 408 (plain text) when a request takes too long", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
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
    // A compressed key: 02 or 03, then x.
    let address_pattern = format!("^0[23][0-9a-fA-F]{{{}}}$", profile.address_digits.saturating_sub(2));
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
            "/api/mine": { "post": op("Mine one block now (dev and test presets; one at a time, 429 while one is being mined; 409 when the tip moves meanwhile, which stops it; 503 if none is found within the node's nonce budget)", vec![], Some("Empty"), "BlockSummary") },
            "/api/peers": {
                "get": op("The peers", vec![], None, "PeerList"),
                "post": op("Register (connect to) a peer", vec![], Some("RegisterPeer"), "Registered")
            },
            "/api/resolve": { "post": op("Ask every peer for its tip and sync to the best", vec![], Some("Empty"), "Resolve") },
            "/api/network": { "get": op("Every node reachable from this one and its peers, crawled breadth first through p2p:get_peers (at most 64 nodes, about 7 s at most; one crawl at a time, 429 while one runs)", vec![], None, "Network") },
            "/api/mempool": { "get": op("Pending transactions, highest fee first", vec![param("limit", "query", "1 to 100 (default 100)", int_range(1, max_page))], None, "TxList") },
            "/api/tree": { "get": op("Recent block tree with forks", vec![param("depth", "query", "1 to 200 heights (default 30)", int_range(1, crate::MAX_TREE_DEPTH))], None, "Tree") },
            "/api/hashrate": { "get": op("The local miner's hash rate, one sample every 10 s for the last hour, oldest first", vec![], None, "RateHistory") }
        },
        "components": { "schemas": {
            "Error": obj(&[("error", "string", "what is wrong")]),
            "Status": obj(&[("chain", "object", "which chain (name) and what its records hold: address_digits, signature_digits, fees, timestamps, resolve"), ("height", "integer", "best height"), ("tip", "string", "best tip hash"), ("chain_id", "string", "genesis hash (toy chain: transaction signatures are bound to it)"), ("work", "string", "cumulative work, decimal (absent when the fork choice is by height)"),
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
            "TxList": { "type": "array", "items": { "$ref": "#/components/schemas/TxView" } },
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
            "RateHistory": { "type": "array", "items": obj(&[("time_ms", "integer", "ms since the epoch"), ("hash_rate", "number", "hashes/s (0 when not mining)")]) },
            "ChainProfile": obj(&[("name", "string", "toy or workshop"), ("address_digits", "integer", "hex digits of an address"), ("signature_digits", "integer", "hex digits of a signature"), ("fees", "boolean", "transactions carry a fee"), ("timestamps", "boolean", "blocks carry a time"), ("resolve", "boolean", "/api/resolve works")]),
            "SyncProgress": obj(&[("active", "boolean", "a sync round is running"), ("target_height", "integer", "the best peer's height when it began"), ("done", "integer", "blocks imported this round"), ("total", "integer", "blocks it expects"), ("blocks_per_s", "number", "import rate"), ("eta_s", "number", "seconds left, estimated"), ("rounds", "integer", "rounds since start")]),
            "NetworkNode": obj(&[("addr", "string", "host:port"), ("peers", "array", "its peers, when it answered"), ("reachable", "boolean", "whether it answered")]),
            "Tree": { "type": "array", "items": obj(&[("hash", "string", ""), ("parent", "string", ""), ("height", "integer", ""), ("canonical", "boolean", ""), ("miner", "string", ""), ("time_ms", "integer", "")]) }
        } }
    });
    nest(&mut doc);
    per_operation(&mut doc, profile);
    leave_out(&mut doc, profile);
    doc
}

/// Points the properties that hold another schema at it, so the document
/// (and `/docs`, which expands them) shows what is inside.
fn nest(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    let r = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    schemas["Status"]["properties"]["chain"] = r("ChainProfile");
    schemas["Status"]["properties"]["sync"] = r("SyncProgress");
    // What the node answers is looser than what it takes: a block from a
    // peer may pay a recipient that is no key (the workshop's are free
    // text), so answers use TxView, plain strings.
    let mut view = schemas["Tx"].clone();
    if let Some(props) = view["properties"].as_object_mut() {
        for field in ["id", "sender", "recipient", "signature"] {
            props.insert(field.into(), json!({ "type": "string" }));
        }
    }
    view.as_object_mut().map(|v| v.remove("required"));
    view["description"] = json!("a transaction as the node answers it (the fields of Tx, any text in its strings)");
    schemas["TxView"] = view;
    schemas["TxStatus"]["properties"]["tx"] = r("TxView");
    schemas["Block"]["allOf"][1]["properties"]["txs"] = json!({ "type": "array", "items": r("TxView") });
    schemas["Network"]["properties"]["nodes"] = json!({ "type": "array", "items": r("NetworkNode") });
    schemas["NetworkNode"]["properties"]["peers"] = json!({ "type": "array", "items": { "type": "string" } });
}

/// One operation's notes: path, method, each code besides 200 with when it
/// happens, an example request and an example response.
type OperationNotes = (&'static str, &'static str, Vec<(&'static str, &'static str)>, Option<Value>, Value);

/// What each operation really answers besides 200 (each code, when it
/// happens), and an example request and response.
fn per_operation(doc: &mut Value, profile: &crate::ChainProfile) {
    let addr = |first: &str| format!("{first}{}", "a".repeat(profile.address_digits.saturating_sub(2)));
    let (alice, bob) = (addr("02"), addr("03"));
    let hash = |c: char| c.to_string().repeat(64);
    let signature = "5".repeat(profile.signature_digits);
    let summary = json!({ "height": 42, "hash": format!("0000{}", "b".repeat(60)), "parent": format!("0000{}", "c".repeat(60)),
        "time_ms": 1_764_000_000_000_u64, "miner": alice, "reward": 50, "tx_count": 1, "nonce": 18_446_744, "target": format!("0000{}", "f".repeat(60)),
        "canonical": true, "confirmations": 1 });
    let tx = json!({ "id": hash('d'), "kind": "transfer", "sender": alice, "recipient": bob, "amount": 100, "fee": 1, "nonce": 0, "signature": signature });
    let mut block = summary.clone();
    block["txs"] = json!([tx]);
    let account = json!({ "address": alice, "balance": 4_900, "nonce": 1, "next_nonce": 2 });
    let submitted = json!({ "id": hash('d') });
    let table: Vec<OperationNotes> = vec![
        (
            "/api/status",
            "get",
            vec![("503", "workshop chain: the node is shutting down")],
            None,
            json!({ "chain": { "name": profile.name, "address_digits": profile.address_digits, "signature_digits": profile.signature_digits,
            "fees": profile.fees, "timestamps": profile.timestamps, "resolve": profile.resolve },
            "height": 42, "tip": summary["hash"], "chain_id": hash('e'), "work": "1234567", "peers": 3, "mempool": 1, "mempool_bytes": 180,
            "orphans": 0, "store_ok": true, "store_error": "", "orphan_bytes": 0, "hash_rate": 2.1e7, "address": "127.0.0.1:15151", "wallet": alice,
            "can_mine": true, "sync": { "active": false, "target_height": 0, "done": 0, "total": 0, "blocks_per_s": 0.0, "eta_s": 0.0, "rounds": 1 } }),
        ),
        (
            "/api/blocks",
            "get",
            vec![("400", "limit outside 1 to 100"), ("503", "the store cannot be read, or the node is shutting down")],
            None,
            json!([summary]),
        ),
        (
            "/api/blocks/{id}",
            "get",
            vec![
                ("400", "neither a height nor a 64-hex-digit hash"),
                ("404", "no such block"),
                ("503", "the store cannot be read"),
            ],
            None,
            block.clone(),
        ),
        (
            "/api/blocks/{id}/txs",
            "get",
            vec![("400", "neither a height nor a hash"), ("404", "no such block"), ("503", "the store cannot be read")],
            None,
            json!([tx]),
        ),
        (
            "/api/txs",
            "post",
            vec![
                ("400", "a field is malformed"),
                ("409", "workshop chain: another transaction holds its sender's nonce"),
                ("422", "the mempool refuses it (bad signature, nonce, balance…), saying why"),
                ("503", "the node is shutting down"),
            ],
            Some(tx.clone()),
            submitted.clone(),
        ),
        (
            "/api/txs/{id}",
            "get",
            vec![
                ("400", "not 64 hex digits"),
                ("404", "neither pending nor on the best chain"),
                ("503", "the store cannot be read"),
            ],
            None,
            json!({ "tx": tx, "status": "confirmed", "block_height": 42, "block_hash": summary["hash"], "confirmations": 1 }),
        ),
        (
            "/api/accounts/{address}",
            "get",
            vec![
                ("400", "not an address of this chain's shape"),
                ("404", "the right shape but no point on the curve: no account can exist there"),
                ("503", "the node is shutting down"),
            ],
            None,
            account.clone(),
        ),
        ("/api/wallet", "get", vec![("503", "the node is shutting down")], None, account),
        (
            "/api/wallet/send",
            "post",
            vec![
                ("400", "a recipient that is no key, an amount of 0, a fee on a chain without fees"),
                ("409", "workshop chain: the nonce was taken meanwhile"),
                ("422", "refused: the balance, an unsigned transfer"),
                ("503", "the node is shutting down"),
            ],
            // Unsigned: trying it out shows the refusal and moves no coins.
            Some(json!({ "to": bob, "amount": 100, "fee": 1, "sign": false })),
            submitted,
        ),
        (
            "/api/mine",
            "post",
            vec![
                ("403", "this chain is too hard to mine on demand"),
                ("409", "the tip moved while mining (mining stopped)"),
                ("429", "a block is already being mined on demand"),
                ("503", "no block within the nonce budget"),
            ],
            Some(json!({})),
            summary.clone(),
        ),
        ("/api/peers", "get", vec![], None, json!(["127.0.0.1:15152", "10.0.0.7:15151"])),
        (
            "/api/peers",
            "post",
            vec![("400", "not host:port"), ("422", "the dial or handshake failed, saying why")],
            Some(json!({ "addr": "127.0.0.1:15152" })),
            json!({ "peer": "127.0.0.1:15152" }),
        ),
        (
            "/api/resolve",
            "post",
            vec![("503", "the node is shutting down")],
            Some(json!({})),
            json!({ "peers_asked": 3, "best_peer": "127.0.0.1:15152", "imported": 5, "height": 47, "tip_changed": true }),
        ),
        (
            "/api/network",
            "get",
            vec![("429", "a crawl is already running")],
            None,
            json!({ "nodes": [{ "addr": "127.0.0.1:15151", "peers": ["127.0.0.1:15152"], "reachable": true }, { "addr": "127.0.0.1:15152", "peers": ["127.0.0.1:15151"], "reachable": true }] }),
        ),
        (
            "/api/mempool",
            "get",
            vec![("400", "limit outside 1 to 100"), ("503", "the node is shutting down")],
            None,
            json!([tx]),
        ),
        (
            "/api/tree",
            "get",
            vec![("400", "depth outside 1 to 200"), ("503", "the node is shutting down")],
            None,
            json!([{ "hash": summary["hash"], "parent": summary["parent"], "height": 42, "canonical": true, "miner": alice, "time_ms": 1_764_000_000_000_u64 }]),
        ),
        (
            "/api/hashrate",
            "get",
            vec![],
            None,
            json!([{ "time_ms": 1_764_000_000_000_u64, "hash_rate": 2.1e7 }, { "time_ms": 1_764_000_010_000_u64, "hash_rate": 2.2e7 }]),
        ),
    ];
    for (path, method, codes, request, response) in table {
        // Looked up, not indexed (indexing would add a missing path): a
        // typo here is caught by the tests below, never served.
        let Some(op) = doc.pointer_mut(&format!("/paths/{}/{method}", path.replace('/', "~1"))) else {
            debug_assert!(false, "{method} {path} is not in the document");
            continue;
        };
        for (code, when) in codes {
            op["responses"][code] = json!({ "description": when, "content": { "application/json": {
                "schema": { "$ref": "#/components/schemas/Error" }, "example": { "error": when } } } });
        }
        op["responses"]["200"]["content"]["application/json"]["example"] = response;
        if let Some(r) = request
            && op["requestBody"].is_object()
        {
            op["requestBody"]["content"]["application/json"]["example"] = r;
        }
    }
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
        drop(&["components", "schemas", "TxView", "properties"], "fee");
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
    if !profile.fees || !profile.timestamps {
        // In the examples only: a schema's fields are dropped one by one
        // above (the hash-rate history keeps its `time_ms`).
        for ops in doc["paths"].as_object_mut().into_iter().flat_map(|p| p.values_mut()) {
            for op in ops.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
                let rate_history = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
                    == "#/components/schemas/RateHistory";
                if !rate_history {
                    strip_examples(&mut op["responses"]["200"]["content"]["application/json"]["example"], profile);
                }
                if op["requestBody"].is_object() {
                    strip_examples(&mut op["requestBody"]["content"]["application/json"]["example"], profile);
                }
            }
        }
    }
    if profile.name != "toy" {
        // Only the toy chain has mint transactions (its coinbase),
        // cumulative work and batch sync.
        doc["components"]["schemas"]["Tx"]["properties"]["kind"]["enum"] = json!(["transfer"]);
        if let Some(status) =
            doc["paths"]["/api/status"]["get"]["responses"]["200"]["content"]["application/json"]["example"]
                .as_object_mut()
        {
            status.remove("work");
            status.remove("sync");
        }
    }
}

/// Takes `fee` and `time_ms` out of every example when the chain has no
/// such field.
fn strip_examples(v: &mut Value, profile: &crate::ChainProfile) {
    match v {
        Value::Object(map) => {
            if !profile.fees {
                map.remove("fee");
            }
            if !profile.timestamps {
                map.remove("time_ms");
            }
            map.values_mut().for_each(|x| strip_examples(x, profile));
        }
        Value::Array(items) => items.iter_mut().for_each(|x| strip_examples(x, profile)),
        _ => {}
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
        // The hash-rate history keeps its time, schema and example alike.
        assert!(schemas["RateHistory"]["items"]["properties"]["time_ms"].is_object());
        let rates = &doc["paths"]["/api/hashrate"]["get"]["responses"]["200"]["content"]["application/json"]["example"];
        assert!(rates[0]["time_ms"].is_u64(), "{rates}");
        assert_eq!(schemas["Tx"]["properties"]["sender"]["pattern"], "^0[23][0-9a-fA-F]{48}$");
        assert_eq!(schemas["Tx"]["properties"]["signature"]["pattern"], "^[0-9a-fA-F]{96}$");
        // The toy chain's keeps them all.
        let toy = document(&crate::ChainProfile::toy());
        assert!(toy["components"]["schemas"]["Tx"]["properties"]["fee"].is_object());
        assert!(toy["paths"]["/api/resolve"].is_object());
        // Examples follow the chain too.
        let example = &doc["paths"]["/api/txs"]["post"]["requestBody"]["content"]["application/json"]["example"];
        assert!(example.get("fee").is_none() && example["sender"].as_str().is_some_and(|a| a.len() == 50));
        assert_eq!(toy["components"]["schemas"]["Tx"]["properties"]["sender"]["pattern"], "^0[23][0-9a-fA-F]{64}$");
    }

    #[test]
    fn every_operation_names_its_own_codes_and_has_an_example() {
        let doc = document(&crate::ChainProfile::toy());
        let mine = &doc["paths"]["/api/mine"]["post"]["responses"];
        for code in ["200", "403", "409", "429", "503"] {
            assert!(mine[code].is_object(), "/api/mine documents {code}");
        }
        for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in ops.as_object().into_iter().flatten() {
                let ok = &op["responses"]["200"]["content"]["application/json"]["example"];
                assert!(!ok.is_null(), "{method} {path} has an example response");
                if op["requestBody"].is_object() {
                    let req = &op["requestBody"]["content"]["application/json"]["example"];
                    assert!(!req.is_null(), "{method} {path} has an example request");
                }
            }
        }
        // Nested schemas point at their parts.
        assert_eq!(doc["components"]["schemas"]["TxStatus"]["properties"]["tx"]["$ref"], "#/components/schemas/TxView");
    }
}
