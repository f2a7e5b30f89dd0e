//! The API's error: its variant decides the HTTP status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// An API error: its variant decides the HTTP status, its text is the
/// `error` field of the JSON body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such thing.
    #[error("{0}")]
    NotFound(String),
    /// 403: not allowed on this node (mining on a hard preset, say).
    #[error("{0}")]
    Forbidden(String),
    /// 422: well-formed but refused (a transaction the mempool rejects).
    #[error("{0}")]
    Rejected(String),
    /// 409: the state moved under the request (the tip changed while a
    /// block was mined on it); try again.
    #[error("{0}")]
    Conflict(String),
    /// 405: the endpoint does not take this method (the `Allow` header
    /// says which it takes).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 503: the node cannot serve this now.
    #[error("{0}")]
    Unavailable(String),
    /// 429: the same kind of work is already running (a block being mined
    /// on demand); try again later.
    #[error("{0}")]
    Busy(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// The JSON body of every error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What is wrong.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(ErrorBody { error: self.to_string() })).into_response()
    }
}
