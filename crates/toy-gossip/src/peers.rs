//! The peer services the gossip layer passes through to the layer above.
//!
//! The design card has each layer talk only to the one beneath, so the chain
//! reaches the peer layer (asking one peer for blocks, reporting a liar)
//! through gossip. That pass-through is one mechanism: the [`PeerServices`]
//! trait, implemented once for every [`PeerNetwork`] (as it is), and handed
//! out by [`crate::GossipNetwork::peer_services`]. A gossip network that must
//! hide something gives its own view instead: the relay gossip hides the
//! relay ([`crate::relay::RelayGossip`]).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use toy_p2p::{Contribution, Misbehaviour, PeerEvent, PeerHandler, PeerId, PeerNetwork};

use crate::Error;

/// What the layer above gossip may ask of the peer layer.
#[async_trait]
pub trait PeerServices: Send + Sync + 'static {
    /// Peers that can be asked directly ([`PeerServices::request`]).
    fn peers(&self) -> Vec<PeerId>;

    /// Sends a request of `kind` to one peer and waits for its response.
    async fn request(&self, peer: &PeerId, kind: &str, payload: Bytes) -> Result<Bytes, Error>;

    /// Registers the handler of direct requests (and one-way messages) of
    /// `kind` from peers.
    fn register_request_handler(&self, kind: &str, handler: Arc<dyn PeerHandler>) -> Result<(), Error>;

    /// Peers arriving and leaving (only those in [`PeerServices::peers`]).
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<PeerEvent>;

    /// Reports a peer that sent bad data outside gossip (a bad block in a
    /// direct response, say).
    fn report(&self, peer: &PeerId, what: Misbehaviour);

    /// Credits a peer with a new valid block or transaction it delivered:
    /// such peers are protected from eviction ([`PeerNetwork::credit`]).
    fn credit(&self, peer: &PeerId, what: Contribution);
}

/// Every peer network offers its services as they are.
#[async_trait]
impl<P: PeerNetwork> PeerServices for P {
    fn peers(&self) -> Vec<PeerId> {
        PeerNetwork::peers(self)
    }

    async fn request(&self, peer: &PeerId, kind: &str, payload: Bytes) -> Result<Bytes, Error> {
        Ok(PeerNetwork::request(self, peer, kind, payload).await?)
    }

    fn register_request_handler(&self, kind: &str, handler: Arc<dyn PeerHandler>) -> Result<(), Error> {
        Ok(PeerNetwork::register_handler(self, kind, handler)?)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<PeerEvent> {
        PeerNetwork::subscribe(self)
    }

    fn report(&self, peer: &PeerId, what: Misbehaviour) {
        PeerNetwork::report(self, peer, what);
    }

    fn credit(&self, peer: &PeerId, what: Contribution) {
        PeerNetwork::credit(self, peer, what);
    }
}
