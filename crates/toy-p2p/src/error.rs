//! The peering layer's error type.

/// What can go wrong in the peering layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No handshaked peer has this id.
    #[error("not a peer: {0}")]
    UnknownPeer(String),
    /// The address is not `host:port`.
    #[error("invalid address {0:?}")]
    BadAddress(String),
    /// Dialling ourselves, an existing peer or a banned address.
    #[error("refusing to dial {addr}: {reason}")]
    Refused {
        /// The address.
        addr: String,
        /// Why.
        reason: &'static str,
    },
    /// The peer answered `p2p:hello` with a rejection.
    #[error("{addr} rejected our hello")]
    Rejected {
        /// The address.
        addr: String,
    },
    /// The peer's `p2p:hello` answer was malformed.
    #[error("malformed hello response from {addr}")]
    BadHelloResponse {
        /// The address.
        addr: String,
    },
    /// The messaging layer failed.
    #[error(transparent)]
    Msg(#[from] toy_msg::Error),
    /// A configuration value broke an invariant.
    #[error("invalid config: {0}")]
    InvalidConfig(&'static str),
}
