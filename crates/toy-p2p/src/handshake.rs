//! The handshake (`p2p:hello` both ways, contested claims, eviction of an
//! inbound peer for a newcomer), dialling, and the connection events.

use std::time::{Duration, Instant};

use bytes::Bytes;
use toy_msg::{ConnId, Messenger};

use crate::config::*;
use crate::node::{P2p, now_ms};
use crate::state::PeerInfo;
use crate::{Error, Misbehaviour, PeerEvent, PeerId, PeerNetwork, is_valid_addr, origin_of, parse_addrs};

impl<M: Messenger> P2p<M> {
    /// Decides an inbound `p2p:hello`.
    pub(crate) fn on_hello(&self, conn: ConnId, payload: &[u8]) -> Bytes {
        let me = &self.inner.me;
        let max = self.inner.config.max_peers;
        // A connection already gone has no address: it gets one of its own.
        let remote = self.inner.msg.remote_addr(conn).unwrap_or_else(|| format!("conn:{conn}"));
        let origin = origin_of(&remote);
        let mut st = self.state();
        let addr = std::str::from_utf8(payload).ok().filter(|a| is_valid_addr(a)).map(str::to_owned);
        let mut verify = None;
        let mut evict = None;
        // A refusal says why, and whether the connection may stay open as a
        // spare of the peer holding the address (see `MAX_SPARES_PER_PEER`):
        // only for a well-formed hello refused because that peer exists.
        let verdict: Result<(), (&str, bool)> = match &addr {
            None => Err(("malformed address", false)),
            Some(a) if a == me => Err(("that is us", false)),
            Some(_) if st.by_conn.contains_key(&conn) => Err(("already handshaked", false)),
            // Where the connection comes from is banned, whatever it claims.
            Some(_) if st.banned(&origin) => Err(("banned", false)),
            Some(a) if st.peers.get(&PeerId(a.clone())).is_some_and(|p| p.verified) => Err(("already peers", true)),
            Some(a) if st.peers.contains_key(&PeerId(a.clone())) => {
                // Two inbound peers claim one address; neither is verified,
                // so neither may keep the other out: dial it and keep
                // whoever answers there.
                // Bounded: no more verification dials than dials at once.
                if st.contested.len() < MAX_CONTESTED.min(MAX_PARALLEL_DIALS) && st.contested.insert(a.clone()) {
                    verify = Some(a.clone());
                }
                Err(("address claimed by another connection; verifying it by dialling", true))
            }
            // Both dial at once: the connection opened by the smaller address wins.
            Some(a) if st.dialing.contains(a) && me.as_str() < a.as_str() => {
                Err(("simultaneous dial; ours wins", false))
            }
            Some(_) if st.inbound_count() >= 2 * max => match st.eviction_candidate(Duration::ZERO) {
                // Full: a newcomer gets in by evicting the peer the eviction
                // rule picks, never one with a proven record while others
                // have none (see `evict`).
                Some(victim) => {
                    evict = st.peers.get(&victim).map(|p| (victim, p.conn));
                    Ok(())
                }
                None => Err(("full", false)),
            },
            Some(_) => Ok(()),
        };
        // A spare that says hello again and is refused is closed (a
        // workshop node never does; repeated hellos would each start a
        // verification dial).
        let was_spare = st.spares.contains_key(&conn);
        let spare = match (&verdict, &addr) {
            (Err((_, true)), Some(a)) if !was_spare => st.keep_spare(conn, &remote, &PeerId(a.clone())),
            _ => false,
        };
        let close_spare = was_spare && verdict.is_err();
        if close_spare {
            st.spares.remove(&conn);
            if let Some(a) = verify.take() {
                st.contested.remove(&a);
            }
        }
        // Peers and a sample of the tables: a newcomer dials from past our
        // neighbourhood (its first picks shape the graph most).
        let list = st.addr_sample(addr.as_deref());
        match (verdict, addr) {
            (Ok(()), Some(a)) => {
                st.pending_inbound.remove(&conn);
                st.spares.remove(&conn);
                let id = PeerId(a);
                st.by_conn.insert(conn, id.clone());
                // The evicted peer leaves the table now, not when its
                // connection's end is reported (a peer that does not read
                // could keep its place long after).
                if let Some((victim, victim_conn)) = &evict
                    && let Some(info) = st.peers.remove(victim)
                {
                    st.by_conn.remove(victim_conn);
                    st.gone.push_back((victim.clone(), info.origin));
                    while st.gone.len() > MAX_GONE {
                        st.gone.pop_front();
                    }
                }
                st.peers.insert(id.clone(), PeerInfo::new(conn, false, false, &remote));
                drop(st);
                if let Some((victim, victim_conn)) = evict {
                    tracing::debug!(me = %self.inner.me, peer = %victim, "inbound side full; evicted for a newcomer");
                    self.inner.msg.close(victim_conn);
                    let _ = self.inner.events.send(PeerEvent::Removed(victim));
                }
                // Said hello: it may now send blocks and sync answers.
                self.inner.msg.promote(conn);
                tracing::debug!(me = %self.inner.me, peer = %id, "inbound peer accepted");
                let _ = self.inner.events.send(PeerEvent::Added(id));
                let mut out = vec![1u8];
                out.extend_from_slice(list.as_bytes());
                Bytes::from(out)
            }
            (verdict, addr) => {
                drop(st);
                if close_spare {
                    tracing::debug!(me = %self.inner.me, %conn, "a spare said hello again and was refused; closed");
                    self.inner.msg.close(conn);
                }
                if let Some(a) = verify {
                    let this = self.clone();
                    self.inner.tasks.spawn(async move {
                        tokio::select! {
                            _ = this.inner.cancel.cancelled() => {}
                            r = this.connect(&a) => tracing::debug!(addr = %a, ok = r.is_ok(), "contested address dialled"),
                        }
                        this.state().contested.remove(&a);
                    });
                }
                let reason = verdict.err().map_or("", |(r, _)| r);
                tracing::debug!(me = %self.inner.me, ?addr, reason, spare, "hello rejected");
                let mut out = vec![0u8];
                out.extend_from_slice(list.as_bytes());
                Bytes::from(out)
            }
        }
    }

    pub(crate) async fn event_loop(&self, mut events: toy_msg::Events) {
        loop {
            let ev = tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                ev = events.next() => match ev { Some(ev) => ev, None => return },
            };
            match ev {
                toy_msg::Event::Connected { conn, incoming: true, .. } => {
                    // The hello may already have been handled: the messaging
                    // layer dispatches it on its own task, so it can overtake
                    // this event. Such a connection is a peer, not pending
                    // (this race closed accepted peers after the handshake
                    // timeout).
                    let deadline = Instant::now() + self.inner.config.handshake_timeout;
                    let mut st = self.state();
                    if !st.by_conn.contains_key(&conn) && !st.spares.contains_key(&conn) {
                        st.pending_inbound.insert(conn, deadline);
                    }
                }
                toy_msg::Event::Disconnected { conn, reason } => {
                    let removed = {
                        let mut st = self.state();
                        st.pending_inbound.remove(&conn);
                        st.spares.remove(&conn);
                        st.get_peers_budget.remove(&conn);
                        if st.tracker_conn == Some(conn) {
                            st.tracker_conn = None;
                        }
                        // Only a handshaked peer on this very connection is
                        // removed (a provisional dial or a replaced
                        // connection is not).
                        match st.by_conn.remove(&conn) {
                            Some(id) if st.peers.get(&id).is_some_and(|p| p.conn == conn) => {
                                if let Some(info) = st.peers.remove(&id) {
                                    st.gone.push_back((id.clone(), info.origin));
                                    while st.gone.len() > MAX_GONE {
                                        st.gone.pop_front();
                                    }
                                }
                                Some(id)
                            }
                            _ => None,
                        }
                    };
                    if let Some(id) = removed {
                        if reason.is_peer_fault() {
                            self.report(&id, Misbehaviour::OversizeFrame);
                        }
                        tracing::debug!(me = %self.inner.me, peer = %id, %reason, "peer removed");
                        let _ = self.inner.events.send(PeerEvent::Removed(id));
                    }
                }
                toy_msg::Event::Unhandled { conn, kind } => {
                    // Kinds nobody here speaks, past their rate: a slip costs
                    // little and fades; a stream of them gets the sender banned.
                    // A spare doing so is not idle: closed.
                    if self.close_if_spare(conn) {
                        continue;
                    }
                    let id = self.state().by_conn.get(&conn).cloned();
                    if let Some(id) = id {
                        tracing::debug!(peer = %id, %kind, "messages of unhandled kinds past their rate");
                        self.report(&id, Misbehaviour::Spam);
                    }
                }
                toy_msg::Event::Misbehaved { conn, error } => {
                    if self.close_if_spare(conn) {
                        continue;
                    }
                    let id = self.state().by_conn.get(&conn).cloned();
                    if let Some(id) = id {
                        tracing::info!(peer = %id, %error, "peer sent a malformed message");
                        self.report(&id, Misbehaviour::MalformedMessage);
                    }
                }
                _ => {}
            }
        }
    }

    /// Closes `conn` if it is a spare; says whether it was.
    pub(crate) fn close_if_spare(&self, conn: ConnId) -> bool {
        let spare = self.state().spares.remove(&conn).is_some();
        if spare {
            tracing::debug!(me = %self.inner.me, %conn, "a spare connection misbehaved; closed");
            self.inner.msg.close(conn);
        }
        spare
    }

    /// Dials `addr` and performs the handshake.
    ///
    /// # Errors
    /// [`Error::Refused`] for ourselves, an existing peer or a banned address,
    /// [`Error::Rejected`] when the peer said no, and transport errors.
    pub async fn connect(&self, addr: &str) -> Result<PeerId, Error> {
        if !is_valid_addr(addr) {
            return Err(Error::BadAddress(addr.to_owned()));
        }
        {
            let mut st = self.state();
            let refuse = |reason| Err(Error::Refused { addr: addr.to_owned(), reason });
            if addr == self.inner.me {
                return refuse("that is us");
            }
            let contested = st.contested.contains(addr);
            if st.peers.get(&PeerId(addr.to_owned())).is_some_and(|p| p.verified || !contested) {
                return refuse("already a peer");
            }
            if st.banned(&origin_of(addr)) {
                return refuse("banned");
            }
            if !st.dialing.insert(addr.to_owned()) {
                return refuse("already dialling");
            }
        }
        let result = self.dial(addr).await;
        let mut st = self.state();
        st.dialing.remove(addr);
        match &result {
            // A completed handshake: tried, no longer new.
            Ok(_) => {
                st.book.seen(addr, now_ms());
                st.new.remove(addr);
            }
            // It answered but refused (full, say): alive, still new. A
            // refusal costs nothing to send, so it earns no tried place.
            Err(Error::Rejected { .. }) => st.new.answered(addr),
            // Refused here, before any dial (already a peer, banned): says
            // nothing about the address.
            Err(Error::Refused { .. }) => {}
            Err(_) => {
                st.book.failed(addr);
                st.new.failed(addr);
            }
        }
        result
    }

    pub(crate) async fn dial(&self, addr: &str) -> Result<PeerId, Error> {
        let msg = &self.inner.msg;
        let conn = msg.connect(addr).await?;
        let remote = msg.remote_addr(conn).unwrap_or_else(|| addr.to_owned());
        let id = PeerId(addr.to_owned());
        // Provisionally map the connection to the peer: if it accepts, it may
        // send us gossip before its answer to our hello is processed here.
        self.state().by_conn.insert(conn, id.clone());
        let fail = |e: Error| {
            self.state().by_conn.remove(&conn);
            msg.close(conn);
            Err(e)
        };
        let response = match msg.request(conn, "p2p:hello", Bytes::from(self.inner.me.clone())).await {
            Ok(r) => r,
            Err(e) => return fail(e.into()),
        };
        let Some((&flag, list)) = response.split_first() else {
            return fail(Error::BadHelloResponse { addr: addr.to_owned() });
        };
        let learned = parse_addrs(list, MAX_ADDRS_PER_LIST);
        let mut st = self.state();
        // Heard from the host we reached (a name may stand for any host).
        for a in learned {
            st.learn(a, &remote, &self.inner.me);
        }
        // The address answered: an inbound peer merely claiming it while it
        // was contested gives way to the verified connection.
        let mut displaced = None;
        if flag == 1
            && st.contested.contains(addr)
            && let Some(old) = st.peers.get(&id).filter(|p| !p.verified).map(|p| p.conn)
        {
            if let Some(info) = st.peers.remove(&id) {
                // Its messages still being judged are its own: reports under
                // this name for a while go to where it came from, not to the
                // verified peer that now holds the name.
                st.displaced.push_back((id.clone(), info.origin, Instant::now()));
                while st.displaced.len() > MAX_CONTESTED {
                    st.displaced.pop_front();
                }
            }
            st.by_conn.remove(&old);
            displaced = Some(old);
        }
        if flag != 1 || st.peers.contains_key(&id) {
            st.by_conn.remove(&conn);
        }
        match flag {
            1 if !st.peers.contains_key(&id) => {
                st.by_conn.insert(conn, id.clone());
                // A dial that settled a contested claim takes the claimant's
                // inbound slot; it does not add an outbound one (so claims
                // cannot fill our outbound slots with dials we were made to do).
                let outbound = displaced.is_none();
                st.peers.insert(id.clone(), PeerInfo::new(conn, outbound, true, &remote));
                // A claimant from the host that answered our dial is most
                // likely the same node on another of its connections (a
                // workshop node forgets us if any of them closes): it stays
                // open as a spare of the verified peer, heard by nobody and
                // demoted to small frames. A claimant from elsewhere is
                // closed.
                let kept =
                    displaced.is_some_and(|old| msg.remote_addr(old).is_some_and(|r| st.keep_spare(old, &r, &id)));
                drop(st);
                if let Some(old) = displaced {
                    if kept {
                        msg.demote(old);
                        tracing::debug!(me = %self.inner.me, peer = %id, "an unverified connection of this address's host gave way to the verified one; kept as a spare");
                    } else {
                        tracing::info!(me = %self.inner.me, peer = %id, "a connection claiming this address was not it; closed");
                        msg.close(old);
                    }
                    let _ = self.inner.events.send(PeerEvent::Removed(id.clone()));
                }
                tracing::debug!(me = %self.inner.me, peer = %id, "outbound peer added");
                let _ = self.inner.events.send(PeerEvent::Added(id.clone()));
                Ok(id)
            }
            1 => {
                // They dialled us meanwhile and that connection won.
                drop(st);
                msg.close(conn);
                Err(Error::Refused { addr: addr.to_owned(), reason: "already a peer" })
            }
            0 => {
                drop(st);
                msg.close(conn);
                Err(Error::Rejected { addr: addr.to_owned() })
            }
            _ => {
                drop(st);
                msg.close(conn);
                Err(Error::BadHelloResponse { addr: addr.to_owned() })
            }
        }
    }
}
