//! Serving the chain's direct requests (`chain:status`, `chain:headers`,
//! `chain:hashes`, `chain:blocks`), each rationed per peer and none of them
//! blocking the messaging dispatcher.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;

use super::*;

/// Heights of our best chain after the first locator hash on it (genesis if
/// none is), at most `cap` of them and at most `req.max`.
pub(super) fn after_locator<S: Store>(c: &Chain<S>, req: &HashesRequest, cap: usize) -> std::ops::RangeInclusive<u64> {
    let start = req.locator.iter().find(|h| c.is_canonical(h)).and_then(|h| c.header(h)).map_or(1, |h| h.height + 1);
    let max = (req.max as usize).min(cap) as u64;
    start..=c.tip().height.min(start.saturating_add(max).saturating_sub(1))
}

impl<S: Store, G: GossipNetwork + ?Sized> ChainNode<S, G> {
    /// Installs the `chain:*` request handlers. They run on the messaging
    /// layer's dispatcher, which serves every peer, so none of them blocks
    /// there: the status comes from the published tip, and the answers that
    /// read the chain are queued for the chain actor and awaited.
    pub(super) fn install_request_handlers(&self) -> Result<(), NetworkError> {
        let (genesis, tips) = (self.chain.params().genesis_hash(), self.chain.subscribe());
        let stats = self.stats.clone();
        let budget = Arc::new(Mutex::new(PeerBuckets::new(STATUS_RATE)));
        self.gossip.peer_services().register_request_handler(
            sync::STATUS,
            peer_handler_fn(move |peer, _| {
                stats.bump("messages", sync::STATUS);
                let allowed = lock_plain(&budget).take(&peer, 1.0, Instant::now());
                if !allowed {
                    stats.bump("requests_refused", sync::STATUS);
                }
                let status = allowed.then(|| {
                    let tip = tips.borrow().clone();
                    Status { genesis, tip: tip.hash, height: tip.height, work: tip.work }
                });
                async move { status.map(|s| Bytes::from(s.encode())) }
            }),
        )?;
        self.serve_locator_request(sync::HASHES, HASHES_RATE, |c, req| {
            let hashes: Vec<Hash> = after_locator(c, req, sync::MAX_HASHES).map_while(|h| c.hash_at(h)).collect();
            sync::encode_hashes(&hashes)
        })?;
        self.serve_locator_request(sync::HEADERS, HEADERS_RATE, |c, req| {
            let headers: Vec<Header> = after_locator(c, req, sync::MAX_HEADERS)
                .map_while(|h| c.hash_at(h).and_then(|hash| c.header(&hash)).cloned())
                .collect();
            sync::encode_headers(&headers)
        })?;
        let c = self.chain.clone();
        let stats = self.stats.clone();
        let g = self.gossip.clone();
        let jobs = self.peer_jobs.clone();
        let budget = Arc::new(Mutex::new(PeerBuckets::new(BLOCKS_RATE)));
        let in_flight: Arc<Mutex<HashMap<PeerId, usize>>> = Arc::default();
        self.gossip.peer_services().register_request_handler(
            sync::BLOCKS,
            peer_handler_fn(move |peer, payload| {
                stats.bump("messages", sync::BLOCKS);
                let c = c.clone();
                let hashes = sync::decode_hashes(&payload, sync::BATCH);
                if hashes.is_none() {
                    stats.bump("requests_refused", "Malformed");
                    g.peer_services().report(&peer, Misbehaviour::ProtocolViolation);
                }
                // Charged by the bytes answered, after the answer is built;
                // a peer with 8 answers in the making gets no ninth.
                let hashes = hashes.filter(|_| within_budget(&*g, &stats, &budget, &peer, sync::BLOCKS, 0.0));
                let slot = hashes.as_ref().and_then(|_| InFlight::enter(&in_flight, &peer));
                if hashes.is_some() && slot.is_none() {
                    stats.bump("requests_refused", "BlocksInFlight");
                }
                let budget = budget.clone();
                let jobs = jobs.clone();
                async move {
                    let _slot = slot?;
                    let hashes = hashes?;
                    let _job = PeerJobs::enter(&jobs, &peer).await;
                    // Read only what the answer can carry: each hash once,
                    // and no block past the response limit (a request that
                    // names one large block 32 times costs one read).
                    let answer = c
                        .read(move |c| {
                            let mut seen = std::collections::HashSet::new();
                            let mut size = 0usize;
                            let blocks: Vec<Vec<u8>> = hashes
                                .iter()
                                .filter(|h| seen.insert(**h))
                                .map_while(|h| c.block(h).ok().flatten().map(|b| b.encode()))
                                .take_while(|b| {
                                    size += 4 + b.len();
                                    size <= sync::MAX_BLOCKS_RESPONSE || size == 4 + b.len()
                                })
                                .collect();
                            sync::encode_blocks(blocks)
                        })
                        .await
                        .ok()?;
                    *lock_plain(&budget).level(&peer, Instant::now()) -= answer.len() as f64;
                    Some(answer)
                }
            }),
        )?;
        Ok(())
    }

    /// Serves `kind`, a request carrying a [`HashesRequest`] (our best chain
    /// after the asker's locator): malformed requests cost the asker a
    /// `ProtocolViolation`, requests past `rate` go unanswered and cost it
    /// `Spam`, and `answer` runs on the chain actor, off the dispatcher.
    fn serve_locator_request(
        &self,
        kind: &'static str,
        rate: RequestRate,
        answer: fn(&Chain<S>, &HashesRequest) -> Bytes,
    ) -> Result<(), NetworkError> {
        let c = self.chain.clone();
        let stats = self.stats.clone();
        let g = self.gossip.clone();
        let budget = Arc::new(Mutex::new(PeerBuckets::new(rate)));
        let jobs = self.peer_jobs.clone();
        self.gossip.peer_services().register_request_handler(
            kind,
            peer_handler_fn(move |peer, payload| {
                stats.bump("messages", kind);
                let c = c.clone();
                let req = match HashesRequest::decode(&payload) {
                    Ok(req) => Some(req),
                    Err(_) => {
                        stats.bump("requests_refused", "Malformed");
                        g.peer_services().report(&peer, Misbehaviour::ProtocolViolation);
                        None
                    }
                };
                let req = req.filter(|_| within_budget(&*g, &stats, &budget, &peer, kind, 1.0));
                let jobs = jobs.clone();
                async move {
                    let req = req?;
                    let _job = PeerJobs::enter(&jobs, &peer).await;
                    c.read(move |c| answer(c, &req)).await.ok()
                }
            }),
        )?;
        Ok(())
    }
}
