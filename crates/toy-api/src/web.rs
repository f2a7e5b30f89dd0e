//! The web wallet and explorer, and the `/docs` page: static files embedded
//! in the binary (no CDN; the page works offline).

use std::sync::Arc;

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::NodeApi;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");
const DOCS: &str = include_str!("assets/docs.html");
const DOCS_JS: &str = include_str!("assets/docs.js");
const DOCS_CSS: &str = include_str!("assets/docs.css");

fn asset(body: &'static str, ty: &'static str) -> impl IntoResponse {
    ([(CONTENT_TYPE, ty), (CACHE_CONTROL, "no-cache")], body)
}

/// The tab's icon: three chained blocks.
const FAVICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect x="1" y="11" width="9" height="10" rx="2" fill="#2957d9"/><rect x="12" y="11" width="9" height="10" rx="2" fill="#2957d9"/><rect x="23" y="11" width="8" height="10" rx="2" fill="#1a7f37"/><path d="M10 16h2M21 16h2" stroke="#1d2330" stroke-width="2"/></svg>"##;

/// `/`, `/app.js`, `/style.css`, `/favicon.svg` and `/docs`.
pub(crate) fn routes() -> Router<Arc<dyn NodeApi>> {
    Router::new()
        .route("/", get(|| async { asset(INDEX, "text/html; charset=utf-8") }))
        .route("/app.js", get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }))
        .route("/style.css", get(|| async { asset(STYLE, "text/css; charset=utf-8") }))
        .route("/favicon.svg", get(|| async { asset(FAVICON, "image/svg+xml") }))
        .route("/docs", get(|| async { asset(DOCS, "text/html; charset=utf-8") }))
        // Their own files, not inline: the content security policy allows
        // only scripts and styles the node serves (`access.rs`).
        .route("/docs.js", get(|| async { asset(DOCS_JS, "text/javascript; charset=utf-8") }))
        .route("/docs.css", get(|| async { asset(DOCS_CSS, "text/css; charset=utf-8") }))
}
