//! The maintenance tick: rate penalties fading, handshake timeouts, bans
//! expiring, dialling towards the outbound target, discovery, the trim above
//! `max_peers`, the book, and the tracker.

use std::time::Instant;

use bytes::Bytes;
use rand::seq::SliceRandom;
use toy_msg::{ConnId, Messenger};

use crate::config::*;
use crate::node::{CloseOnDrop, P2p, now_ms};
use crate::{Error, PeerId, PeerNetwork, origin_of, parse_addrs};

impl<M: Messenger> P2p<M> {
    pub(crate) async fn maintenance(&self) {
        let mut interval = tokio::time::interval(self.inner.config.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                _ = interval.tick() => {}
            }
            self.tick().await;
        }
    }

    pub(crate) async fn tick(&self) {
        let max = self.inner.config.max_peers;
        let now = Instant::now();
        let (to_close, dials, ask, trim, tracker_due, feeler) = {
            let mut st = self.state();
            st.ticks += 1;
            // Rate penalties fade: an honest peer that now and then goes
            // over a rate is not banned by the sum of a day's slips; a flood
            // still is. Other misbehaviour is remembered as long as the peer.
            for p in st.peers.values_mut() {
                p.spam = p.spam.saturating_sub(SCORE_DECAY_PER_TICK);
            }
            // Handshake timeouts and expired bans.
            let expired: Vec<ConnId> = st
                .pending_inbound
                .iter()
                .filter(|(c, d)| **d <= now && !st.by_conn.contains_key(c))
                .map(|(c, _)| *c)
                .collect();
            for c in &expired {
                st.pending_inbound.remove(c);
            }
            // Spares whose peer went (left, evicted, banned) go with it.
            let orphaned: Vec<ConnId> =
                st.spares.iter().filter(|(_, s)| !st.peers.contains_key(&s.peer)).map(|(c, _)| *c).collect();
            for c in &orphaned {
                st.spares.remove(c);
            }
            let expired: Vec<ConnId> = expired.into_iter().chain(orphaned).collect();
            st.bans.retain(|_, until| *until > now);
            let n = st.peers.len();
            let low = max.div_ceil(2).max(1);
            let out = st.outbound_count();
            // Re-bootstrap when short of peers (or of outbound ones) with
            // nothing new to try (the book's addresses are picked anyway).
            if (n < max || out < low) && st.new.len() == 0 && st.dialing.is_empty() {
                for a in self.inner.config.bootstrap.clone() {
                    st.learn(a, "bootstrap", &self.inner.me);
                }
            }
            let mut dials = Vec::new();
            // Below max/2: dial until back in range at once. Between max/2 and
            // max: one dial every TOP_UP_EVERY ticks, slow enough not to churn,
            // steady enough that separate clusters of peers find each other.
            // The outbound target is counted on its own: inbound peers, however
            // many, never stop us from dialling out (an eclipse needs all our
            // peers; these it cannot choose).
            let room = if out < low {
                low - out
            } else if n < max && st.ticks.is_multiple_of(TOP_UP_EVERY) {
                1
            } else {
                0
            };
            if room > 0 {
                let room = room.min(MAX_PARALLEL_DIALS.saturating_sub(st.dialing.len()));
                // Random picks from the whole table mix the graph; the
                // first peers' neighbourhood alone makes it long and thin.
                for _ in 0..2 * room {
                    if dials.len() >= room {
                        break;
                    }
                    if let Some(a) = st.pick_dial().filter(|a| !dials.contains(a)) {
                        dials.push(a);
                    }
                }
            }
            let feeler = if st.ticks.is_multiple_of(FEELER_EVERY) {
                let mut rng = st.rng.clone();
                let pick = st.new.select(&mut rng, |a| {
                    st.peers.contains_key(&PeerId(a.to_owned())) || st.dialing.contains(a) || st.banned(&origin_of(a))
                });
                st.rng = rng;
                pick
            } else {
                None
            };
            // Top up candidates from a random peer's list now and then.
            let ask = if n > 0 && (n < max || out < low) && st.ticks.is_multiple_of(4) {
                let peers: Vec<PeerId> = st.peers.keys().cloned().collect();
                let mut rng = st.rng.clone();
                let pick = peers.choose(&mut rng).cloned();
                st.rng = rng;
                pick
            } else {
                None
            };
            // Trim above the maximum: inbound peers by the eviction rule
            // (proven peers stay), then outbound ones above the target.
            let mut trim = Vec::new();
            if n > max {
                let mut gone = Vec::new();
                // Never below the inbound share: max minus the outbound target.
                let inbound = st.inbound_count();
                let excess = (n - max).min(inbound.saturating_sub(max.saturating_sub(low)));
                while trim.len() < excess {
                    // Newcomers are not candidates until TRIM_GRACE: a
                    // trim would otherwise always take the youngest, and
                    // peers holding old slots would keep every newcomer out.
                    let Some(victim) = st.eviction_candidate(self.inner.config.trim_grace) else { break };
                    if let Some(info) = st.peers.remove(&victim) {
                        gone.push((victim.clone(), info));
                    }
                    trim.push(victim);
                }
                // Back in the table: the disconnect event removes them.
                for (id, info) in gone {
                    st.peers.insert(id, info);
                }
                let mut outbound: Vec<PeerId> =
                    st.peers.iter().filter(|(_, p)| p.outbound).map(|(id, _)| id.clone()).collect();
                let mut rng = st.rng.clone();
                outbound.shuffle(&mut rng);
                st.rng = rng;
                let spare = outbound.len().saturating_sub(low);
                let more = (n - max).saturating_sub(trim.len()).min(spare);
                trim.extend(outbound.into_iter().take(more));
            }
            if st.ticks.is_multiple_of(20) {
                st.book.age_out(now_ms());
                if let Err(e) = st.book.save() {
                    tracing::warn!("cannot save peers book: {e}");
                }
            }
            let tracker_due = self.inner.config.tracker.is_some()
                && (st.tracker_conn.is_none()
                    || st.last_tracker_ping.is_none_or(|t| t.elapsed() >= self.inner.config.tracker_ping));
            (expired, dials, ask, trim, tracker_due, feeler)
        };
        for c in to_close {
            tracing::debug!(conn = %c, "no hello in time, or a spare whose peer went; closing");
            self.inner.msg.close(c);
        }
        for p in trim {
            tracing::debug!(peer = %p, "above max peers; dropping");
            self.disconnect(&p);
        }
        for addr in dials {
            let this = self.clone();
            self.inner.tasks.spawn(async move {
                let result = this.connect(&addr).await;
                // A bootstrap address the user gave that cannot be reached
                // is said at warn, at the 1st, 2nd, 4th, 8th… failure in a
                // row (backoff for the log; the dials go on), and when it
                // answers at last.
                if this.inner.config.bootstrap.contains(&addr) {
                    let failures = {
                        let mut st = this.state();
                        match &result {
                            Ok(_) | Err(Error::Refused { .. }) => {
                                st.bootstrap_failures.remove(&addr).map(|n| (n, true))
                            }
                            Err(_) => {
                                let n = st.bootstrap_failures.entry(addr.clone()).or_insert(0);
                                *n += 1;
                                Some((*n, false))
                            }
                        }
                    };
                    match (failures, &result) {
                        (Some((n, false)), Err(e)) if n.is_power_of_two() => {
                            tracing::warn!(%addr, failures = n, "cannot reach bootstrap peer: {e}; still trying");
                        }
                        (Some((n, true)), Ok(_)) => tracing::info!(%addr, after = n, "reached bootstrap peer"),
                        _ => {}
                    }
                }
                if let Err(e) = result {
                    tracing::debug!(me = %this.inner.me, %addr, "dial failed: {e}");
                }
            });
        }
        if let Some(peer) = ask {
            let this = self.clone();
            self.inner.tasks.spawn(async move {
                // A sample of its tables, not only its peers: addresses
                // from past its neighbourhood.
                if let Ok(list) = this.request(&peer, "p2p:get_addrs", Bytes::new()).await {
                    let mut st = this.state();
                    // The source is where the peer's connection comes from,
                    // not the address it claimed: claims are free, so many
                    // claims from one host would be many sources.
                    let Some(source) = st.peers.get(&peer).map(|p| p.remote.clone()) else { return };
                    for a in parse_addrs(&list, MAX_ADDRS_PER_LIST) {
                        st.learn(a, &source, &this.inner.me);
                    }
                }
            });
        }
        if let Some(addr) = feeler {
            let this = self.clone();
            self.inner.tasks.spawn(async move { this.feel(&addr).await });
        }
        if tracker_due {
            self.tracker_round().await;
        }
    }

    /// A feeler: a short connection to `addr` (from the new table) that
    /// asks for its peers and closes, within the handshake timeout. An
    /// answer clears the address's failures and puts its list in the new
    /// table (heard from the connection's remote address); silence counts
    /// a failure.
    ///
    /// The address stays in the new table: an answer to `p2p:get_peers` is
    /// cheaper to give than a handshake, so only a dial that completes a
    /// hello earns a place in the tried table. While it runs the address
    /// counts as being dialled.
    async fn feel(&self, addr: &str) {
        if !self.state().dialing.insert(addr.to_owned()) {
            return;
        }
        let msg = &self.inner.msg;
        let probe = async {
            let conn = msg.connect(addr).await?;
            // Closed however this ends, the timeout's drop included.
            let _close = CloseOnDrop(msg, conn);
            let remote = msg.remote_addr(conn).unwrap_or_else(|| addr.to_owned());
            let list = msg.request(conn, "p2p:get_peers", Bytes::new()).await?;
            Ok::<_, Error>((remote, list))
        };
        let answer = tokio::time::timeout(self.inner.config.handshake_timeout, probe).await;
        let mut st = self.state();
        st.dialing.remove(addr);
        match answer {
            Ok(Ok((remote, list))) => {
                st.new.answered(addr);
                // Heard from where the answer came from, not the name.
                for a in parse_addrs(&list, MAX_ADDRS_PER_LIST) {
                    st.learn(a, &remote, &self.inner.me);
                }
            }
            _ => st.new.failed(addr),
        }
    }

    /// Joins the tracker (when not a member) or pings it.
    pub(crate) async fn tracker_round(&self) {
        let Some(tracker) = self.inner.config.tracker.clone() else { return };
        let me = Bytes::from(self.inner.me.clone());
        let existing = self.state().tracker_conn;
        let conn = match existing {
            Some(c) => c,
            None => match self.inner.msg.connect(&tracker).await {
                Ok(c) => {
                    self.state().tracker_conn = Some(c);
                    c
                }
                Err(e) => {
                    tracing::debug!(%tracker, "tracker unreachable: {e}");
                    self.state().last_tracker_ping = Some(Instant::now());
                    return;
                }
            },
        };
        let joined = existing.is_some()
            && matches!(self.inner.msg.request(conn, "tracker:ping", me.clone()).await.as_deref(), Ok([1]));
        if !joined {
            match self.inner.msg.request(conn, "tracker:join", me).await {
                Ok(list) => {
                    let mut st = self.state();
                    for a in parse_addrs(&list, MAX_ADDRS_PER_LIST) {
                        st.learn(a, &tracker, &self.inner.me);
                    }
                }
                Err(e) => tracing::debug!(%tracker, "tracker join failed: {e}"),
            }
        }
        self.state().last_tracker_ping = Some(Instant::now());
    }
}
