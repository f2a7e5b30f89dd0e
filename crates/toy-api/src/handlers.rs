//! The routes: each handler takes its input, asks the [`NodeApi`] and
//! answers JSON.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use toy_chain::Hash;
use toy_chain::network::ResolveReport;

use crate::*;

type Api = State<Arc<dyn NodeApi>>;

/// Query of `/api/blocks`.
#[derive(Debug, Deserialize)]
struct Page {
    from: Option<u64>,
    limit: Option<usize>,
}

/// Query of `/api/tree`.
#[derive(Debug, Deserialize)]
struct Depth {
    depth: Option<u64>,
}

/// A JSON body whose rejection is an [`ApiError`] (axum's own rejection
/// would answer in plain text).
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// A path or query whose rejection is an [`ApiError`].
struct Q<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Q(v)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

async fn status(State(api): Api) -> Result<Json<StatusView>, ApiError> {
    api.status().await.map(Json)
}

async fn blocks(State(api): Api, Q(page): Q<Page>) -> Result<Json<Vec<BlockSummary>>, ApiError> {
    let limit = page.limit.unwrap_or(20);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!("limit must be 1 to {MAX_PAGE}")));
    }
    api.blocks(page.from, limit).await.map(Json)
}

async fn block(State(api): Api, Path(id): Path<String>) -> Result<Json<BlockView>, ApiError> {
    api.block(id.parse()?).await.map(Json)
}

async fn block_txs(State(api): Api, Path(id): Path<String>) -> Result<Json<Vec<TxJson>>, ApiError> {
    api.block(id.parse()?).await.map(|b| Json(b.txs))
}

async fn tx(State(api): Api, Path(id): Path<String>) -> Result<Json<TxStatus>, ApiError> {
    let id = id.parse::<Hash>().map_err(|_| ApiError::BadRequest("a transaction id is 64 hex digits".into()))?;
    api.tx(id).await.map(Json)
}

#[derive(Serialize)]
struct Submitted {
    id: String,
}

async fn submit_tx(State(api): Api, Body(tx): Body<TxJson>) -> Result<Json<Submitted>, ApiError> {
    api.submit_tx(tx).await.map(|id| Json(Submitted { id }))
}

/// Checks that `s` has the shape of an address on `api`'s chain, naming
/// `field` in the error.
fn address_shape(api: &dyn NodeApi, field: &str, s: &str) -> Result<String, ApiError> {
    let profile = api.profile();
    let s = s.trim();
    if profile.looks_like_address(s) {
        Ok(s.to_owned())
    } else {
        Err(ApiError::BadRequest(format!(
            "{field} must be an address: a compressed public key, 02 or 03 then {} more hex digits",
            profile.address_digits.saturating_sub(2)
        )))
    }
}

async fn account(State(api): Api, Path(addr): Path<String>) -> Result<Json<AccountView>, ApiError> {
    let addr = address_shape(api.as_ref(), "address", &addr)?;
    api.account(addr).await.map(Json)
}

async fn wallet(State(api): Api) -> Result<Json<AccountView>, ApiError> {
    api.wallet().await.map(Json)
}

async fn send(State(api): Api, Body(mut req): Body<SendRequest>) -> Result<Json<Submitted>, ApiError> {
    req.to = address_shape(api.as_ref(), "to", &req.to)?;
    if req.amount == 0 {
        return Err(ApiError::BadRequest("amount must be above 0".into()));
    }
    api.send(req).await.map(|id| Json(Submitted { id }))
}

async fn mine(State(api): Api) -> Result<Json<BlockSummary>, ApiError> {
    api.mine().await.map(Json)
}

async fn peers(State(api): Api) -> Result<Json<Vec<String>>, ApiError> {
    api.peers().await.map(Json)
}

#[derive(Serialize)]
struct Registered {
    peer: String,
}

async fn register_peer(State(api): Api, Body(req): Body<RegisterPeer>) -> Result<Json<Registered>, ApiError> {
    let addr = req.addr.trim().to_owned();
    let valid = addr.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !valid {
        return Err(ApiError::BadRequest(format!("addr must be host:port, not {addr:?}")));
    }
    api.register_peer(addr).await.map(|peer| Json(Registered { peer }))
}

async fn resolve(State(api): Api) -> Result<Json<ResolveReport>, ApiError> {
    api.resolve().await.map(Json)
}

async fn network(State(api): Api) -> Result<Json<NetworkView>, ApiError> {
    api.network().await.map(Json)
}

async fn tree(State(api): Api, Q(d): Q<Depth>) -> Result<Json<Vec<TreeNode>>, ApiError> {
    let depth = d.depth.unwrap_or(30);
    if depth == 0 || depth > MAX_TREE_DEPTH {
        return Err(ApiError::BadRequest(format!("depth must be 1 to {MAX_TREE_DEPTH}")));
    }
    api.tree(depth).await.map(Json)
}

async fn mempool(State(api): Api, Q(page): Q<Page>) -> Result<Json<Vec<TxJson>>, ApiError> {
    let limit = page.limit.unwrap_or(MAX_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!("limit must be 1 to {MAX_PAGE}")));
    }
    api.mempool(limit).await.map(Json)
}

async fn hash_rates(State(api): Api) -> Result<Json<Vec<RateSample>>, ApiError> {
    api.hash_rates().await.map(Json)
}

async fn metrics_text(State(api): Api) -> Result<Response, ApiError> {
    let snapshot = api.metrics().await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], snapshot.render()).into_response())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see /docs".into())
}

/// 405 as JSON like every other error (axum still adds the `Allow` header).
async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("this endpoint does not take that method; see the Allow header and /docs".into())
}

/// The whole HTTP surface over `api`: the JSON API, the web page, the
/// OpenAPI document, `/docs` and `/metrics`.
pub fn router(api: Arc<dyn NodeApi>) -> Router {
    router_with(api, crate::Access::default())
}

/// [`router`] with its own [`crate::Access`] (more host names, a token).
pub fn router_with(api: Arc<dyn NodeApi>, access: crate::Access) -> Router {
    let access = Arc::new(access);
    let document = Arc::new(openapi::document(&api.profile()));
    // The write checks wrap each POST handler only, so a method a path does
    // not take is still answered 405 (not 403).
    let writes = axum::middleware::from_fn_with_state(access.clone(), crate::access::guard_writes);
    Router::new()
        .route("/api/status", get(status))
        .route("/api/blocks", get(blocks))
        .route("/api/blocks/{id}", get(block))
        .route("/api/blocks/{id}/txs", get(block_txs))
        .route("/api/txs", post(submit_tx).route_layer(writes.clone()))
        .route("/api/txs/{id}", get(tx))
        .route("/api/accounts/{address}", get(account))
        .route("/api/wallet", get(wallet))
        .route("/api/wallet/send", post(send).route_layer(writes.clone()))
        .route("/api/mine", post(mine).route_layer(writes.clone()))
        .route("/api/peers", get(peers).merge(post(register_peer).route_layer(writes.clone())))
        .route("/api/resolve", post(resolve).route_layer(writes))
        .route("/api/network", get(network))
        .route("/api/tree", get(tree))
        .route("/api/mempool", get(mempool))
        .route("/api/hashrate", get(hash_rates))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(move || async move { Json(document.as_ref().clone()) }))
        .merge(web::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(access, crate::access::guard))
        .with_state(api)
}
