//! Who may use the API: a web page the user happens to visit must not.
//!
//! * **DNS rebinding.** A page on `evil.example` can make its own name
//!   resolve to 127.0.0.1 and then talk to the node as same-origin; its
//!   requests still carry `Host: evil.example`. Requests are served only
//!   when `Host` names the node: `localhost`, an IP literal (a page whose
//!   origin is an IP literal *is* that address), or a name given in
//!   [`Access::hosts`].
//! * **Cross-site writes.** A plain form post can reach any URL, but it
//!   cannot send `Content-Type: application/json` (that needs a CORS
//!   preflight, which the API never grants). So every write (all are POST)
//!   must be JSON, and when the browser names its
//!   `Origin`, that origin must be the node itself (the same authority as
//!   `Host`).
//! * **Not on loopback.** When the API is reachable from other hosts, writes
//!   also need the token in [`Access::token`] (`Authorization: Bearer …`):
//!   the node writes it to a cookie file in its data directory, readable by
//!   its user only, as bitcoind does (`.cookie`); the terminal wallet and the
//!   oracle read it with `--cookie`.
//! * **Headers.** Every answer forbids framing (`X-Frame-Options`, CSP
//!   `frame-ancestors`), sniffing, and any script or style not served by the
//!   node itself (the page and `/docs` load theirs from files).
//!
//! Refusals are 403 (401 for a missing or wrong token), with the API's JSON
//! error body.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ErrorBody;

/// The content security policy of every answer: only the node's own
/// scripts, styles and API; no framing; no plugins; forms post only to the
/// node.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Who may use the API ([module docs](self)).
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Host names accepted besides `localhost` and IP literals (compared
    /// without the port, case-insensitively).
    pub hosts: Vec<String>,
    /// When set, writes need `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl Access {
    /// Whether a `Host` header value names this node.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host).to_ascii_lowercase();
        name == "localhost"
            || name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok()
            || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(&name))
    }

    fn token_ok(&self, req: &Request) -> bool {
        let Some(token) = &self.token else { return true };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        constant_time_eq(given.as_bytes(), token.as_bytes())
    }
}

/// `host` without its `:port` (an IPv6 literal keeps its brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Compares without an early exit, so the time taken does not tell how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(ErrorBody { error: why.to_owned() })).into_response()
}

/// Whether `origin` (`scheme://authority`) is this node, as named by `host`.
fn same_origin(origin: &str, host: &str) -> bool {
    let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| a.trim_end_matches('/').eq_ignore_ascii_case(host))
}

/// The outer middleware, on every request: refuses a `Host` that does not
/// name the node, and sets the security headers on every answer.
pub(crate) async fn guard(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let mut res = if access.host_allowed(host) {
        next.run(req).await
    } else {
        refuse(StatusCode::FORBIDDEN, "this node answers only to its own names (Host); see --http-host")
    };
    let h = res.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    res
}

/// The inner middleware, on requests a route takes (a method no route has
/// is answered 405 first): a write (every write of this API is a POST) must
/// be JSON, from the node's own origin when the browser names one, and
/// carry the token when one is set.
pub(crate) async fn guard_writes(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !json {
        refuse(StatusCode::FORBIDDEN, "writes must be JSON (Content-Type: application/json)")
    } else if origin.is_some_and(|o| !same_origin(o, host)) {
        refuse(StatusCode::FORBIDDEN, "a write from another origin")
    } else if !access.token_ok(&req) {
        refuse(StatusCode::UNAUTHORIZED, "writes need the node's token (Authorization: Bearer, from its cookie file)")
    } else {
        next.run(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_name_the_node_and_those_that_do_not() {
        let a = Access { hosts: vec!["node.lan".into()], token: None };
        for ok in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080", "192.168.1.5", "LOCALHOST", "node.lan:80"] {
            assert!(a.host_allowed(ok), "{ok}");
        }
        for bad in ["evil.example:8080", "evil.example", "", "localhost.evil.example", "127.0.0.1.nip.io:8080"] {
            assert!(!a.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn origins_must_be_the_node_itself() {
        assert!(same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:8080"));
        assert!(!same_origin("null", "127.0.0.1:8080"));
        assert!(!same_origin("http://127.0.0.1:8081", "127.0.0.1:8080"));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
