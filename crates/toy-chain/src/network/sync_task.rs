//! Sync: asking peers for their status, headers first, then the blocks in
//! batches from every peer ahead; and the task that runs it.

use bytes::Bytes;
use futures::StreamExt;

use super::*;

impl<S: Store, G: GossipNetwork + ?Sized> ChainNode<S, G> {
    /// Asks a peer for its [`Status`].
    ///
    /// # Errors
    /// No answer in time, or an undecodable one.
    pub async fn peer_status(&self, peer: &PeerId) -> Result<Status, NetworkError> {
        let answer = tokio::time::timeout(
            sync::REQUEST_TIMEOUT,
            self.gossip.peer_services().request(peer, sync::STATUS, Bytes::new()),
        )
        .await
        .map_err(|_| peer_error(peer, "no status in time"))??;
        Status::decode(&answer).map_err(|e| peer_error(peer, format!("bad status: {e}")))
    }

    /// The toychain seed's "resolve": asks every peer for its tip and work
    /// and syncs to the best, repeating until no peer has more work.
    ///
    /// # Errors
    /// Storage failures; a misbehaving peer is reported and skipped instead.
    pub async fn resolve(&self) -> Result<ResolveReport, NetworkError> {
        let _running = self.sync.running.lock().await;
        let before = self.chain.tip();
        let mut report = ResolveReport::default();
        let mut log = ProgressLog::new();
        let mut done = 0u64;
        // Peers that failed us in this resolve (no answer in time, a wrong
        // or empty answer): the next peer ahead is tried instead, so a peer
        // that claims the most work and delivers nothing cannot stall it.
        let mut skipped: Vec<PeerId> = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let (asked, ahead) = self.peers_ahead().await;
            report.peers_asked = report.peers_asked.max(asked);
            let ahead: Vec<(PeerId, Status)> = ahead.into_iter().filter(|(p, _)| !skipped.contains(p)).collect();
            let mut progressed = false;
            for (i, (peer, status)) in ahead.iter().enumerate() {
                let others: Vec<PeerId> =
                    ahead.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, (p, _))| p.clone()).collect();
                report.best_peer = Some(peer.0.clone());
                let round = self.sync_round(peer, *status, &others, &mut log, &mut done).await;
                match round {
                    Ok(0) if self.chain.tip().work < status.work => {
                        // Everything it offered we already had, yet it claims
                        // more work than we have: no help; try the next.
                        tracing::info!(peer = %peer, "sync: claims more work but offered nothing new; trying the next peer");
                        skipped.push(peer.clone());
                    }
                    Ok(0) => break,
                    Ok(_) => {
                        progressed = true;
                        break;
                    }
                    Err(NetworkError::Peer { peer, what }) => {
                        tracing::info!(%peer, "sync: {what}; trying the next peer");
                        skipped.push(peer);
                    }
                    Err(e) => {
                        self.chain.finish_import().await?;
                        return Err(e);
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        // The branch the batches wrote is pruned like any other from now on.
        self.chain.finish_import().await?;
        let after = self.chain.tip();
        {
            let mut p = lock_plain(&self.sync.progress);
            p.active = false;
            p.rounds += 1;
        }
        if done > 0 {
            let secs = log.elapsed().as_secs_f64();
            tracing::info!(
                "sync finished: {done} blocks in {secs:.1} s ({:.0} blocks/s), height {}",
                done as f64 / secs.max(1e-3),
                after.height
            );
        }
        report.imported = done;
        report.height = after.height;
        report.tip_changed = after.hash != before.hash;
        Ok(report)
    }

    /// Asks every peer for its status: how many answered, and the peers with
    /// more work than ours (same genesis), most claimed work first.
    pub(super) async fn peers_ahead(&self) -> (usize, Vec<(PeerId, Status)>) {
        let (genesis, ours) = (self.chain.params().genesis_hash(), self.chain.tip().work);
        // Peers that let the last status request time out (a workshop node
        // does not know the kind) are not asked for a while.
        let now = Instant::now();
        let peers: Vec<PeerId> =
            self.gossip.peer_services().peers().into_iter().filter(|p| !self.silent.is_silent(p, now)).collect();
        let statuses = futures::future::join_all(peers.iter().map(|p| self.peer_status(p))).await;
        let mut answered = 0;
        let mut ahead: Vec<(PeerId, Status)> = Vec::new();
        for (peer, status) in peers.into_iter().zip(statuses) {
            match status {
                Ok(s) => {
                    answered += 1;
                    // A peer that speaks `chain:*` for the first time: its
                    // mempool is worth reconciling with (a workshop node's
                    // is not, it would only time out).
                    if self.silent.answered(&peer) {
                        self.spawn_reconcile(peer.clone());
                    }
                    if s.genesis == genesis && s.work > ours {
                        ahead.push((peer, s));
                    }
                }
                Err(e) => {
                    // No answer in time (ours or the messaging layer's
                    // timeout), or one we cannot use: a peer that never
                    // answered is not asked for a while.
                    self.silent.unanswered(&peer, Instant::now());
                    tracing::debug!("{e}");
                }
            }
        }
        ahead.sort_by_key(|a| std::cmp::Reverse(a.1.work));
        (answered, ahead)
    }

    /// One round against `best`: its hashes after our locator, then the
    /// blocks from `best` and `others`. Returns the blocks imported.
    pub(super) async fn sync_round(
        &self,
        best: &PeerId,
        status: Status,
        others: &[PeerId],
        log: &mut ProgressLog,
        done: &mut u64,
    ) -> Result<u64, NetworkError> {
        let (locator, our_height) = self.chain.read(|c| (c.locator(), c.tip().height)).await?;
        let locator: Vec<Hash> = if locator.len() > sync::MAX_LOCATOR {
            // Keep the newest entries and genesis.
            let mut l = locator[..sync::MAX_LOCATOR - 1].to_vec();
            l.extend(locator.last().copied());
            l
        } else {
            locator
        };
        // Headers first: the claim in `status` is checked against headers
        // the peer must deliver (proof of work and every header rule) before
        // any body is asked for.
        // A full answer of headers we all have is honest when the branch
        // forked between two far-apart locator hashes, or a paused sync
        // stored part of it: ask again from its last header, a bounded
        // number of times.
        let mut locator = locator;
        let mut hops = 0;
        let wanted: Vec<Hash> = loop {
            let sent: std::collections::HashSet<Hash> = locator.iter().copied().collect();
            let req = HashesRequest { locator: locator.clone(), max: sync::MAX_HEADERS as u32 };
            let answer = match tokio::time::timeout(
                sync::REQUEST_TIMEOUT,
                self.gossip.peer_services().request(best, sync::HEADERS, Bytes::from(req.encode())),
            )
            .await
            {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => return Err(peer_error(best, format!("no headers: {e}"))),
                Err(_) => {
                    // A claim it does not back in time costs it a little (the
                    // penalty fades, as a slow honest peer's would).
                    self.gossip.peer_services().report(best, Misbehaviour::Spam);
                    return Err(peer_error(best, "no headers in time"));
                }
            };
            let Some(headers) = sync::decode_headers(&answer, sync::MAX_HEADERS) else {
                self.gossip.peer_services().report(best, Misbehaviour::ProtocolViolation);
                return Err(peer_error(best, "malformed headers"));
            };
            let complete = headers.len() < sync::MAX_HEADERS;
            if headers.first().is_some_and(|h| !sent.contains(&h.parent)) {
                // The answer must start right after one of our locator hashes.
                self.gossip.peer_services().report(best, Misbehaviour::ProtocolViolation);
                return Err(peer_error(best, "headers that do not start at our locator"));
            }
            let checked = self.chain.check_headers(headers).await?;
            let checked = match checked {
                Ok(checked) => checked,
                Err(e @ HeadersError::Invalid { .. }) => {
                    // A header that breaks a rule is proof, like an invalid block.
                    self.gossip.peer_services().report(best, Misbehaviour::InvalidBlock);
                    return Err(peer_error(best, format!("sent an invalid header chain: {e}")));
                }
                Err(e) => {
                    self.gossip.peer_services().report(best, Misbehaviour::ProtocolViolation);
                    return Err(peer_error(best, format!("sent headers that are not a chain on ours: {e}")));
                }
            };
            let ours = self.chain.tip().work;
            if complete && !checked.ahead_of_clock && checked.work < status.work && ours < status.work {
                // All it has, and less work than it claimed. When the headers
                // end at the tip it claimed, that is a lie (a chain's work is
                // fixed by its headers); otherwise its tip may have moved since
                // its status (a store failure, a restart): a smaller charge that
                // fades. The headers it did send show what it really has.
                let lie = checked.hashes.last() == Some(&status.tip);
                self.gossip
                    .peer_services()
                    .report(best, if lie { Misbehaviour::ProtocolViolation } else { Misbehaviour::Spam });
                if checked.work <= ours {
                    return Err(peer_error(best, "claims more work than its headers carry"));
                }
            }
            let last = checked.hashes.last().copied();
            let wanted: Vec<Hash> =
                self.chain.read(move |c| checked.hashes.into_iter().skip_while(|h| c.contains(h)).collect()).await?;
            match (wanted.is_empty(), complete, last) {
                (true, false, Some(last)) if hops < MAX_HEADER_HOPS => {
                    locator = vec![last];
                    hops += 1;
                }
                (true, _, _) => return Ok(0),
                (false, _, _) => break wanted,
            }
        };
        {
            let mut p = lock_plain(&self.sync.progress);
            p.active = true;
            p.target_height = status.height;
        }
        // The peer chose `status.height`: saturate, never overflow.
        let total = done.saturating_add(status.height.saturating_sub(our_height).max(wanted.len() as u64));
        let sources: Vec<PeerId> = std::iter::once(best.clone()).chain(others.iter().cloned()).collect();
        let batches: Vec<Vec<Hash>> = wanted.chunks(sync::BATCH).map(<[Hash]>::to_vec).collect();
        let mut downloads = futures::stream::iter(batches.into_iter().enumerate())
            .map(|(i, batch)| {
                let source = sources[i % sources.len()].clone();
                async move { self.fetch_batch(&source, best, batch).await }
            })
            .buffered(sync::IN_FLIGHT);
        let mut imported = 0u64;
        while let Some(batch) = downloads.next().await {
            if self.sync.cancel.is_cancelled() {
                break;
            }
            let (source, blocks) = batch?;
            // The whole batch is one job of the chain actor: its writes
            // share one durable commit (with any other writes queued
            // meanwhile), and the answer comes once they are durable.
            let outcomes = self.chain.import_batch(blocks, source.0.clone()).await?;
            for outcome in outcomes {
                match outcome? {
                    InsertOutcome::Invalid { reason } | InsertOutcome::Malformed { reason } => {
                        self.stats.bump("blocks_rejected", &variant_name(&reason));
                        self.gossip.peer_services().report(&source, Misbehaviour::InvalidBlock);
                        return Err(peer_error(&source, format!("sent an invalid block: {reason}")));
                    }
                    InsertOutcome::TooEarly { reason } => {
                        return Err(peer_error(&source, format!("sent a block ahead of our clock: {reason}")));
                    }
                    InsertOutcome::ForkTooDeep { fork_height, tip_height } => {
                        return Err(peer_error(
                            best,
                            format!("its branch forks at {fork_height}, too deep below our tip {tip_height}"),
                        ));
                    }
                    InsertOutcome::Orphan { .. } => {
                        self.gossip.peer_services().report(best, Misbehaviour::ProtocolViolation);
                        return Err(peer_error(best, "its hashes do not connect to our chain"));
                    }
                    InsertOutcome::Stale { .. } => {
                        return Err(peer_error(best, "its branch forks below our pruning depth"));
                    }
                    _ => {
                        imported += 1;
                        *done += 1;
                        self.stats.bump("blocks_accepted", "Sync");
                    }
                }
            }
            self.gossip.peer_services().credit(&source, Contribution::Block);
            log.update(&mut lock_plain(&self.sync.progress), *done, total);
        }
        Ok(imported)
    }

    /// Downloads one batch from `source`, or from `best` when `source`
    /// cannot serve all of it. Returns who served it and the blocks.
    pub(super) async fn fetch_batch(
        &self,
        source: &PeerId,
        best: &PeerId,
        batch: Vec<Hash>,
    ) -> Result<(PeerId, Vec<Block>), NetworkError> {
        let mut tried_best = false;
        for peer in [source, best] {
            if tried_best {
                break;
            }
            tried_best = peer == best;
            let Ok(Ok(answer)) = tokio::time::timeout(
                sync::REQUEST_TIMEOUT,
                self.gossip.peer_services().request(peer, sync::BLOCKS, sync::encode_hashes(&batch)),
            )
            .await
            else {
                continue;
            };
            let blocks = match sync::decode_blocks(&answer, batch.len()) {
                Ok(b) => b,
                Err(e) => {
                    self.gossip.peer_services().report(peer, Misbehaviour::MalformedMessage);
                    return Err(peer_error(peer, format!("malformed blocks: {e}")));
                }
            };
            if blocks.iter().zip(&batch).any(|(b, h)| b.hash() != *h) {
                self.gossip.peer_services().report(peer, Misbehaviour::ProtocolViolation);
                return Err(peer_error(peer, "sent blocks we did not ask for"));
            }
            if blocks.len() == batch.len() {
                return Ok((peer.clone(), blocks));
            }
        }
        Err(peer_error(best, "could not serve the blocks it announced"))
    }

    pub(super) async fn sync_task(self) {
        let mut events = self.gossip.peer_services().subscribe();
        let mut interval = tokio::time::interval(SYNC_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.sync.cancel.cancelled() => return,
                () = self.sync.wake.notified() => {}
                _ = interval.tick() => {}
                ev = events.recv() => match ev {
                    Ok(PeerEvent::Added(_)) => {}
                    Ok(PeerEvent::Removed(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
            // Nothing can be written until the store recovers (the store
            // watch wakes this task then): no downloads to throw away.
            if self.chain.snapshot().store_failure.is_some() {
                continue;
            }
            if let Err(e) = self.resolve().await {
                tracing::warn!("sync failed: {e}");
            }
            let missing = lock_plain(&self.sync.missing).take();
            if let Some((hash, announcer)) = missing
                && !self.chain.read(move |c| c.contains(&hash)).await.unwrap_or(true)
            {
                self.fetch_ancestors(hash, announcer);
            }
        }
    }
}
