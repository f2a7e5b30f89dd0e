//! Serving the router over TCP: a free port, the connection cap, header and
//! request timeouts, and eviction of idle connections at the cap.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::NodeApi;

/// Binds the first free port from `addr`'s port upward (up to 100 further),
/// as the node does for its p2p port.
///
/// # Errors
/// A malformed address, or no free port.
pub async fn bind_free(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr:?} is not host:port"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return tokio::net::TcpListener::bind(addr).await;
    }
    let mut last = None;
    for p in port..=port.saturating_add(100) {
        match tokio::net::TcpListener::bind((host, p)).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(bad))
}

/// Limits of the HTTP server, against clients that open connections and
/// never finish a request (slowloris).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections served at once; past it new ones are closed at once, so
    /// the API cannot take all of the process's file descriptors from the
    /// p2p side.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: std::time::Duration,
    /// How long one request may take from its headers to its answer, its
    /// body included: a client trickling a body (or never sending the one
    /// its `Content-Length` promised) gets 408 and its connection is freed.
    pub request_timeout: std::time::Duration,
}

/// Default request timeout: 30 s (the longest handler, `/api/network`,
/// takes about 7 s; `/api/mine` gives up well before this).
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Default connections served at once: 128 (a browser opens six; the page,
/// the wallet and a few scripts fit many times over, and 128 sockets leave
/// most of a 1 024 descriptor limit to the p2p side).
pub const DEFAULT_MAX_HTTP_CONNECTIONS: usize = 128;

/// Default header read timeout: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_HTTP_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Open connections not busy with a request, longest waiting first, each
/// with the token that ends it. Bounded by the connection cap (an entry
/// leaves when its connection ends).
#[derive(Default)]
struct Unserved {
    next: u64,
    /// Waiting since (a sequence number) → connection.
    idle: std::collections::BTreeMap<u64, u64>,
    /// Connection → its token and, while idle, its place in `idle`.
    conns: std::collections::HashMap<u64, (tokio_util::sync::CancellationToken, Option<u64>)>,
}

impl Unserved {
    fn add(&mut self) -> (u64, tokio_util::sync::CancellationToken) {
        self.next += 1;
        let (id, token) = (self.next, tokio_util::sync::CancellationToken::new());
        self.conns.insert(id, (token.clone(), None));
        self.set_busy(id, false);
        (id, token)
    }

    fn set_busy(&mut self, id: u64, busy: bool) {
        self.next += 1;
        let seq = self.next;
        let Some((_, place)) = self.conns.get_mut(&id) else { return };
        if let Some(old) = place.take() {
            self.idle.remove(&old);
        }
        if !busy {
            *place = Some(seq);
            self.idle.insert(seq, id);
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some((_, Some(seq))) = self.conns.remove(&id) {
            self.idle.remove(&seq);
        }
    }

    /// Ends the connection waiting longest without a request; `false` when
    /// every one is busy.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, id)) = self.idle.pop_first() else { return false };
        if let Some((token, _)) = self.conns.remove(&id) {
            token.cancel();
        }
        true
    }
}

/// Takes a connection out of [`Unserved`] when its task ends.
struct UnservedGuard(Arc<std::sync::Mutex<Unserved>>, u64);

impl Drop for UnservedGuard {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(self.1);
    }
}

/// How long connections still open at shutdown may take to finish.
const HTTP_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves [`crate::router`] on `listener` until `cancel` fires, with the default
/// [`HttpLimits`].
///
/// # Errors
/// Never at present (accept errors are logged and retried); kept for
/// callers that may see bind-time errors in future.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<dyn NodeApi>,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, api, cancel, HttpLimits::default()).await
}

/// Serves [`crate::router`] on `listener` until `cancel` fires: HTTP/1 through
/// hyper, one task per connection (tracked, stopped at shutdown), at most
/// `limits.max_connections` at once, each closed when its headers take
/// longer than `limits.header_read_timeout`.
///
/// At the cap, a new connection takes the place of the one that has waited
/// longest without a request being served on it (a slowloris client sends a
/// few bytes and waits; an honest client sends its request at once and is
/// busy only while it is answered), so slow clients cannot keep new ones out
/// for a header timeout after another. When every open connection is busy
/// with a request, the new one is closed.
///
/// # Errors
/// As [`serve`].
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    api: Arc<dyn NodeApi>,
    cancel: tokio_util::sync::CancellationToken,
    limits: HttpLimits,
) -> std::io::Result<()> {
    serve_guarded(listener, api, cancel, limits, crate::Access::default()).await
}

/// [`serve_with`] with its own [`crate::Access`]: more host names, or a
/// token for writes (a node reachable from other hosts).
///
/// # Errors
/// As [`serve`].
pub async fn serve_guarded(
    listener: tokio::net::TcpListener,
    api: Arc<dyn NodeApi>,
    cancel: tokio_util::sync::CancellationToken,
    limits: HttpLimits,
    access: crate::Access,
) -> std::io::Result<()> {
    let app = crate::router_with(api, access);
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let tasks = tokio_util::task::TaskTracker::new();
    let waiting = Arc::new(std::sync::Mutex::new(Unserved::default()));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("http accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Full: the oldest connection still without a whole request
                // gives way, if there is one.
                let evicted = waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).evict_oldest();
                let freed = match evicted {
                    true => tokio::time::timeout(std::time::Duration::from_secs(1), permits.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok),
                    false => None,
                };
                match freed {
                    Some(permit) => permit,
                    None => {
                        tracing::debug!(%peer, max = limits.max_connections, "http connection limit reached; closing");
                        drop(stream);
                        continue;
                    }
                }
            }
        };
        let (id, kill) = waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).add();
        let inner = hyper_util::service::TowerToHyperService::new(app.clone());
        let w = waiting.clone();
        let service = hyper::service::service_fn(move |req| {
            // A whole request arrived: busy, not a candidate for eviction
            // until it is answered.
            let lock = |w: &std::sync::Mutex<Unserved>| {
                w.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set_busy(id, true)
            };
            lock(&w);
            let answer = hyper::service::Service::call(&inner, req);
            let w = w.clone();
            async move {
                let r = match tokio::time::timeout(limits.request_timeout, answer).await {
                    Ok(r) => r,
                    Err(_) => Ok((StatusCode::REQUEST_TIMEOUT, "request took too long").into_response()),
                };
                w.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set_busy(id, false);
                r
            }
        });
        let cancel = cancel.clone();
        let waiting = waiting.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let _gone = UnservedGuard(waiting, id);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, "http connection ended: {e}");
                    }
                }
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(HTTP_SHUTDOWN_GRACE, conn).await;
                }
                _ = kill.cancelled() => {
                    tracing::debug!(%peer, "http connection without a request evicted for a new one");
                }
            }
        });
    }
    tasks.close();
    let _ = tokio::time::timeout(HTTP_SHUTDOWN_GRACE, tasks.wait()).await;
    Ok(())
}
