//! [`PeerNetwork`] for [`P2p`]: what the layer above uses.

use std::sync::{Arc, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;
use toy_msg::{Messenger, handler_fn};

use crate::config::*;
use crate::node::{CloseOnDrop, P2p};
use crate::{
    Contribution, Error, Misbehaviour, PeerEvent, PeerHandler, PeerId, PeerNetwork, is_valid_addr, origin_of,
    parse_addrs,
};

#[async_trait]
impl<M: Messenger> PeerNetwork for P2p<M> {
    fn peers(&self) -> Vec<PeerId> {
        let mut v: Vec<PeerId> = self.state().peers.keys().cloned().collect();
        v.sort();
        v
    }

    fn send(&self, peer: &PeerId, kind: &str, payload: Bytes) -> Result<(), Error> {
        let conn = self.conn_of(peer)?;
        Ok(self.inner.msg.send(conn, kind, payload)?)
    }

    async fn request(&self, peer: &PeerId, kind: &str, payload: Bytes) -> Result<Bytes, Error> {
        let conn = self.conn_of(peer)?;
        let asked = Instant::now();
        let answer = self.inner.msg.request(conn, kind, payload).await?;
        // The fastest answer a peer gives is its round trip (plus the least
        // work an answer takes): one of the things eviction protects.
        let rtt = asked.elapsed();
        if let Some(p) = self.state().peers.get_mut(peer).filter(|p| p.conn == conn) {
            p.min_rtt = Some(p.min_rtt.map_or(rtt, |m| m.min(rtt)));
        }
        Ok(answer)
    }

    async fn connect(&self, addr: &str) -> Result<PeerId, Error> {
        P2p::connect(self, addr).await
    }

    async fn ask_peers(&self, addr: &str) -> Result<Vec<String>, Error> {
        if !is_valid_addr(addr) {
            return Err(Error::BadAddress(addr.to_owned()));
        }
        if addr == self.inner.me {
            return Ok(self.peers().into_iter().map(|p| p.0).collect());
        }
        let peer = PeerId(addr.to_owned());
        let list = if self.state().peers.contains_key(&peer) {
            self.request(&peer, "p2p:get_peers", Bytes::new()).await?
        } else {
            if self.state().banned(&origin_of(addr)) {
                return Err(Error::Refused { addr: addr.to_owned(), reason: "banned" });
            }
            let msg = &self.inner.msg;
            let conn = msg.connect(addr).await?;
            // Closed however this ends, a dropped future included: a node
            // that accepts and never answers must not keep the probe open.
            let _close = CloseOnDrop(msg, conn);
            msg.request(conn, "p2p:get_peers", Bytes::new()).await?
        };
        Ok(parse_addrs(&list, MAX_ADDRS_PER_LIST))
    }

    fn register_handler(&self, kind: &str, handler: Arc<dyn PeerHandler>) -> Result<(), Error> {
        let weak = self.weak();
        self.inner.msg.register_handler(
            kind,
            handler_fn(move |conn, payload| {
                // Only handshaked peers reach the layer above. What a spare
                // sends is dropped; one that keeps talking is closed.
                let peer = weak.upgrade().and_then(|inner| {
                    let mut st = inner.state.lock().unwrap_or_else(PoisonError::into_inner);
                    let peer = st.by_conn.get(&conn).cloned();
                    if peer.is_none() && st.spare_spoke(conn) {
                        drop(st);
                        tracing::debug!(%conn, "a spare connection kept sending; closed");
                        inner.msg.close(conn);
                    }
                    peer
                });
                let handler = handler.clone();
                async move { handler.handle(peer?, payload).await }
            }),
        )?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.inner.events.subscribe()
    }

    fn report(&self, peer: &PeerId, what: Misbehaviour) {
        let (conn, origin, newly) = {
            let mut st = self.state();
            // A report that may concern a claimant displaced from this name
            // moments ago (its messages judged after it left) is charged to
            // the claimant's origin alone: the verified peer now holding the
            // name sent none of them.
            let now = Instant::now();
            let claimant = st
                .displaced
                .iter()
                .rev()
                .find(|(p, _, at)| p == peer && now.saturating_duration_since(*at) < DISPLACED_GRACE)
                .map(|(_, origin, _)| origin.clone());
            if let Some(origin) = claimant {
                if what.penalty() >= BAN_THRESHOLD {
                    st.bans.insert(origin.clone(), now + self.inner.config.ban_period);
                    tracing::info!(%origin, claimed = %peer, "displaced claimant banned for misbehaviour");
                }
                return;
            }
            let Some(info) = st.peers.get_mut(peer) else {
                // Already gone: still ban where it came from when the offence
                // alone deserves it (never the address it announced).
                let origin = st.gone.iter().rev().find(|(p, _)| p == peer).map(|(_, o)| o.clone());
                if what.penalty() >= BAN_THRESHOLD
                    && let Some(origin) = origin
                {
                    let until = Instant::now() + self.inner.config.ban_period;
                    st.bans.insert(origin, until);
                }
                return;
            };
            if matches!(what, Misbehaviour::Spam) {
                info.spam = info.spam.saturating_add(what.penalty());
            } else {
                info.score = info.score.saturating_add(what.penalty());
            }
            let total = info.score.saturating_add(info.spam);
            tracing::debug!(%peer, ?what, score = total, "misbehaviour reported");
            if total < BAN_THRESHOLD {
                return;
            }
            let (conn, origin) = (info.conn, info.origin.clone());
            let now = Instant::now();
            let until = now + self.inner.config.ban_period;
            // Reports keep coming until the disconnect is processed (a flood
            // is judged message by message): only the first one bans.
            let newly = st.bans.insert(origin.clone(), until).is_none_or(|old| old <= now);
            if st.bans.len() > MAX_BANS
                && let Some(first) = st.bans.iter().min_by_key(|(_, u)| **u).map(|(a, _)| a.clone())
            {
                st.bans.remove(&first);
            }
            (conn, origin, newly)
        };
        if newly {
            tracing::info!(%origin, claimed = %peer, "peer banned for misbehaviour");
        }
        self.inner.msg.close(conn);
    }

    fn credit(&self, peer: &PeerId, what: Contribution) {
        if let Some(p) = self.state().peers.get_mut(peer) {
            let now = Some(Instant::now());
            match what {
                Contribution::Block => p.last_block = now,
                Contribution::Transaction => p.last_tx = now,
            }
        }
    }

    fn local_addr(&self) -> String {
        self.inner.me.clone()
    }
}
