//! The error type of the messaging layer.

use std::time::Duration;

use toy_net::ConnId;

use crate::codec::{DecodeError, InvalidKind};

/// Everything that can go wrong in the messaging layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No response arrived within the timeout.
    #[error("no response from {conn} to {kind:?} within {after:?}")]
    Timeout {
        /// The connection asked.
        conn: ConnId,
        /// The request's kind.
        kind: String,
        /// The timeout that passed.
        after: Duration,
    },
    /// The connection ended before the response arrived (or was not open).
    #[error("connection {conn} closed before a response")]
    Disconnected {
        /// The connection.
        conn: ConnId,
    },
    /// Too many requests are already waiting for a response on this connection.
    #[error("{max} requests already pending on {conn}")]
    TooManyPending {
        /// The connection.
        conn: ConnId,
        /// The configured limit.
        max: usize,
    },
    /// A handler for this kind is already registered.
    #[error("a handler for kind {kind:?} is already registered")]
    DuplicateHandler {
        /// The kind.
        kind: String,
    },
    /// The kind cannot be encoded.
    #[error(transparent)]
    InvalidKind(#[from] InvalidKind),
    /// A frame from the peer is not a valid message.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] toy_net::Error),
    /// A configuration value broke an invariant.
    #[error("invalid config: {field} {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The messaging layer has shut down.
    #[error("messaging shut down")]
    Shutdown,
}

impl Error {
    /// Whether the peer caused this error and may deserve a penalty.
    pub fn is_peer_fault(&self) -> bool {
        match self {
            Error::Decode(_) => true,
            Error::Transport(e) => e.is_peer_fault(),
            _ => false,
        }
    }
}
