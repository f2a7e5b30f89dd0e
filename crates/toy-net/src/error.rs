//! The error type of the transport layer.

use std::io;

/// Everything that can go wrong in the transport layer.
///
/// Errors caused by the remote side say so through [`Error::is_peer_fault`], so
/// the layers above can decide whether the peer deserves a penalty.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame's length prefix announced more bytes than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// The length the prefix announced (or the caller tried to send).
        len: u64,
        /// The configured maximum frame length.
        max: usize,
    },
    /// The connection's send queue was full: the peer is not reading fast enough.
    #[error("send queue full ({queued_frames} frames, {queued_bytes} bytes queued); peer too slow")]
    SendQueueFull {
        /// Frames waiting when the limit was hit.
        queued_frames: usize,
        /// Bytes waiting when the limit was hit.
        queued_bytes: usize,
    },
    /// No open connection has this id (it was closed or never existed).
    #[error("no open connection {0}")]
    UnknownConnection(crate::ConnId),
    /// Connecting did not finish within the configured timeout.
    #[error("connecting to {addr} timed out")]
    ConnectTimeout {
        /// The address dialled.
        addr: String,
    },
    /// The address could not be parsed or resolved, or nobody listens there.
    #[error("cannot reach {addr}: {reason}")]
    Unreachable {
        /// The address dialled.
        addr: String,
        /// Why it could not be reached.
        reason: String,
    },
    /// The transport is not listening, or already listens.
    #[error("listen error: {0}")]
    Listen(String),
    /// A configuration value broke an invariant.
    #[error("invalid config: {field} {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The transport has been shut down.
    #[error("transport shut down")]
    Shutdown,
    /// An I/O error from the operating system.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// Whether the error was caused by the remote peer's behaviour (and so may
    /// deserve a penalty), as opposed to a local or environmental failure.
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, Error::FrameTooLarge { .. } | Error::SendQueueFull { .. })
    }
}
