//! Chain sync by direct requests to peers: the wire messages and the
//! download loop used by [`crate::network::ChainNode`].
//!
//! | kind | request | response |
//! | --- | --- | --- |
//! | `chain:status` | empty | postcard [`Status`] (genesis, tip, height, cumulative work) |
//! | `chain:headers` | postcard [`HashesRequest`] (our locator, at most [`MAX_LOCATOR`] hashes) | the peer's canonical headers after the first locator hash it has on its best chain: `n ×` [`HEADER_BYTES`] bytes (each [`Header::hashing_bytes`]), `n ≤` [`MAX_HEADERS`] |
//! | `chain:hashes` | postcard [`HashesRequest`] | the same chain as hashes: `n × 32` bytes, `n ≤` [`MAX_HASHES`] (served for tools; sync uses headers) |
//! | `chain:blocks` | `n × 32` bytes of hashes, `n ≤` [`BATCH`] | for each block the peer has, in order: 4-byte big-endian length, postcard block; at most [`MAX_BLOCKS_RESPONSE`] bytes |
//!
//! A sync round asks every peer for its [`Status`], picks the one with the
//! most work above ours, asks it for the headers after our locator, checks
//! them as a chain ([`crate::headers`]: proof of work and every other header
//! rule) and that their work backs the peer's claim, and only then
//! downloads those blocks in batches of [`BATCH`] from every peer that claims
//! more work than us (round robin, [`IN_FLIGHT`] batches in flight), importing
//! them in order while the next batches are on their way. A batch a peer
//! cannot serve is asked again from the best peer. A peer whose block is
//! invalid, or whose hashes do not connect, is reported.

use std::time::Duration;
#[cfg(feature = "network")]
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::DecodeError;
use crate::types::{Block, HEADER_BYTES, Hash, Header, MAX_BLOCK_BYTES, strict_decode};

/// Kind of the status request.
pub const STATUS: &str = "chain:status";
/// Kind of the headers request.
pub const HEADERS: &str = "chain:headers";
/// Kind of the hashes request.
pub const HASHES: &str = "chain:hashes";
/// Kind of the blocks request.
pub const BLOCKS: &str = "chain:blocks";

/// Most hashes in one `chain:hashes` response.
pub const MAX_HASHES: usize = 2_000;
/// Most headers in one `chain:headers` response (330 000 bytes).
pub const MAX_HEADERS: usize = 2_000;
/// Most hashes in a locator we accept.
pub const MAX_LOCATOR: usize = 64;
/// Blocks asked for in one `chain:blocks` request.
pub const BATCH: usize = 32;
/// Most bytes a `chain:blocks` response carries (it always carries at least
/// one block the peer has).
pub const MAX_BLOCKS_RESPONSE: usize = 8 * 1024 * 1024;
/// Batches in flight at once during a sync.
pub const IN_FLIGHT: usize = 4;
/// How long a sync request may take before the peer is skipped.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A node's view of its chain, as exchanged on connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The genesis hash (peers on another chain are ignored).
    pub genesis: Hash,
    /// The best tip.
    pub tip: Hash,
    /// Its height.
    pub height: u64,
    /// Cumulative work of the best chain.
    pub work: u128,
}

impl Status {
    /// The postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Strict decoding.
    ///
    /// # Errors
    /// When `bytes` is not exactly one canonical status.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > 128 {
            return Err(DecodeError::TooLarge { len: bytes.len(), max: 128 });
        }
        strict_decode(bytes)
    }
}

/// The body of `chain:hashes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashesRequest {
    /// Hashes of the asker's best chain, newest first, thinning out
    /// exponentially, genesis last ([`crate::Chain::locator`]).
    pub locator: Vec<Hash>,
    /// Most hashes wanted (capped at [`MAX_HASHES`]).
    pub max: u32,
}

impl HashesRequest {
    /// The postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Strict decoding; a locator over [`MAX_LOCATOR`] hashes is refused.
    ///
    /// # Errors
    /// When `bytes` is not one canonical request within the limits.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let max = 8 + MAX_LOCATOR * 32 + 8;
        if bytes.len() > max {
            return Err(DecodeError::TooLarge { len: bytes.len(), max });
        }
        strict_decode(bytes)
    }
}

/// `n × 32` bytes.
pub fn encode_hashes(hashes: &[Hash]) -> Bytes {
    let mut b = BytesMut::with_capacity(hashes.len() * 32);
    for h in hashes {
        b.put_slice(&h.0);
    }
    b.freeze()
}

/// Splits `n × 32` bytes into hashes; `None` when the length is not a
/// multiple of 32 or there are more than `max`.
pub fn decode_hashes(bytes: &[u8], max: usize) -> Option<Vec<Hash>> {
    if !bytes.len().is_multiple_of(32) || bytes.len() / 32 > max {
        return None;
    }
    Some(bytes.chunks_exact(32).filter_map(|c| c.try_into().ok().map(Hash)).collect())
}

/// `n ×` [`HEADER_BYTES`] bytes.
pub fn encode_headers(headers: &[Header]) -> Bytes {
    let mut b = BytesMut::with_capacity(headers.len() * HEADER_BYTES);
    for h in headers {
        b.put_slice(&h.hashing_bytes());
    }
    b.freeze()
}

/// Splits `n ×` [`HEADER_BYTES`] bytes into headers; `None` when the length
/// is not a multiple of it or there are more than `max`.
pub fn decode_headers(bytes: &[u8], max: usize) -> Option<Vec<Header>> {
    if !bytes.len().is_multiple_of(HEADER_BYTES) || bytes.len() / HEADER_BYTES > max {
        return None;
    }
    bytes.chunks_exact(HEADER_BYTES).map(Header::from_hashing_bytes).collect()
}

/// Length-prefixed blocks, stopping before [`MAX_BLOCKS_RESPONSE`] (but
/// always taking the first).
pub fn encode_blocks(blocks: impl IntoIterator<Item = Vec<u8>>) -> Bytes {
    let mut b = BytesMut::new();
    for encoded in blocks {
        if !b.is_empty() && b.len() + 4 + encoded.len() > MAX_BLOCKS_RESPONSE {
            break;
        }
        b.put_u32(u32::try_from(encoded.len()).unwrap_or(u32::MAX));
        b.put_slice(&encoded);
    }
    b.freeze()
}

/// Decodes a `chain:blocks` response; at most `max` blocks.
///
/// # Errors
/// A truncated entry, an oversize one, too many, or a block that does not
/// decode strictly.
pub fn decode_blocks(bytes: &[u8], max: usize) -> Result<Vec<Block>, DecodeError> {
    decode_framed(bytes, max, MAX_BLOCK_BYTES, Block::decode)
}

/// Decodes `[len u32 BE][item]…` (the framing of `chain:blocks` and
/// `chain:txs`): at most `max` items of at most `max_len` bytes each, each
/// decoded by `decode`.
///
/// # Errors
/// A truncated entry, an oversize one, too many, or `decode`'s error.
pub fn decode_framed<T>(
    mut bytes: &[u8],
    max: usize,
    max_len: usize,
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if out.len() == max {
            return Err(DecodeError::TooLarge { len: out.len() + 1, max });
        }
        let (len, rest) = bytes.split_at_checked(4).ok_or(DecodeError::TrailingBytes { count: bytes.len() })?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| DecodeError::NonCanonical)?) as usize;
        if len > max_len {
            return Err(DecodeError::TooLarge { len, max: max_len });
        }
        let (item, rest) = rest.split_at_checked(len).ok_or(DecodeError::TrailingBytes { count: rest.len() })?;
        out.push(decode(item)?);
        bytes = rest;
    }
    Ok(out)
}

/// How a sync is going, for logs, the API and the web page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncProgress {
    /// A sync round is running.
    pub active: bool,
    /// Height of the best peer's tip when the round began.
    pub target_height: u64,
    /// Blocks imported in this round.
    pub done: u64,
    /// Blocks this round expects to import.
    pub total: u64,
    /// Import rate in blocks per second.
    pub blocks_per_s: f64,
    /// Estimated seconds left.
    pub eta_s: f64,
    /// Rounds completed since start.
    pub rounds: u64,
}

/// Logs progress at most every few seconds.
#[cfg(feature = "network")]
pub(crate) struct ProgressLog {
    started: Instant,
    last: Instant,
}

#[cfg(feature = "network")]
impl ProgressLog {
    pub(crate) fn new() -> Self {
        Self { started: Instant::now(), last: Instant::now() }
    }

    /// Time since the sync started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Updates `p` with `done` of `total` and logs when due.
    pub(crate) fn update(&mut self, p: &mut SyncProgress, done: u64, total: u64) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        p.done = done;
        p.total = total;
        p.blocks_per_s = done as f64 / secs;
        p.eta_s = if p.blocks_per_s > 0.0 { total.saturating_sub(done) as f64 / p.blocks_per_s } else { 0.0 };
        if self.last.elapsed() >= Duration::from_secs(3) {
            self.last = Instant::now();
            tracing::info!(
                "syncing: {done}/{total} blocks, {:.0} blocks/s, about {:.0} s left",
                p.blocks_per_s,
                p.eta_s
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChainParams;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a peer sends, decoding returns a value or an error.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_blocks(&bytes, BATCH);
            let _ = decode_hashes(&bytes, MAX_HASHES);
            let _ = decode_headers(&bytes, MAX_HEADERS);
            let _ = Status::decode(&bytes);
            let _ = HashesRequest::decode(&bytes);
        }

        #[test]
        fn hashes_and_requests_round_trip(
            raw in proptest::collection::vec(any::<[u8; 32]>(), 0..MAX_LOCATOR),
            max in any::<u32>(),
        ) {
            let hashes: Vec<Hash> = raw.into_iter().map(Hash).collect();
            prop_assert_eq!(decode_hashes(&encode_hashes(&hashes), MAX_LOCATOR), Some(hashes.clone()));
            let req = HashesRequest { locator: hashes, max };
            prop_assert_eq!(HashesRequest::decode(&req.encode()).ok(), Some(req));
        }
    }

    #[test]
    fn status_and_request_round_trip_strictly() {
        let s = Status { genesis: Hash([1; 32]), tip: Hash([2; 32]), height: 7, work: u128::MAX };
        assert_eq!(Status::decode(&s.encode()).ok(), Some(s));
        let mut long = s.encode();
        long.push(0);
        assert!(Status::decode(&long).is_err());
        let r = HashesRequest { locator: vec![Hash([3; 32]); MAX_LOCATOR], max: 9 };
        assert_eq!(HashesRequest::decode(&r.encode()).ok(), Some(r));
        let too_long = HashesRequest { locator: vec![Hash([3; 32]); MAX_LOCATOR + 1], max: 9 };
        assert!(HashesRequest::decode(&too_long.encode()).is_err());
    }

    #[test]
    fn headers_round_trip_and_need_whole_entries() {
        let g = ChainParams::test().genesis().header;
        let mut other = g.clone();
        other.nonce = 99;
        let hs = vec![g, other];
        let bytes = encode_headers(&hs);
        assert_eq!(decode_headers(&bytes, 2), Some(hs.clone()));
        assert_eq!(decode_headers(&bytes, 1), None);
        assert_eq!(decode_headers(&bytes[1..], 2), None);
        assert_eq!(decode_headers(&[], 2), Some(vec![]));
    }

    #[test]
    fn hashes_need_whole_entries_within_the_limit() {
        let hs = vec![Hash([5; 32]), Hash([6; 32])];
        assert_eq!(decode_hashes(&encode_hashes(&hs), 2), Some(hs.clone()));
        assert_eq!(decode_hashes(&encode_hashes(&hs), 1), None);
        assert_eq!(decode_hashes(&[0; 33], 10), None);
    }

    #[test]
    fn blocks_round_trip_and_garbage_is_an_error() {
        let g = ChainParams::test().genesis();
        let bytes = encode_blocks([g.encode(), g.encode()]);
        assert_eq!(decode_blocks(&bytes, 2).ok(), Some(vec![g.clone(), g.clone()]));
        assert!(decode_blocks(&bytes, 1).is_err());
        assert!(decode_blocks(&bytes[..bytes.len() - 1], 2).is_err());
        assert!(decode_blocks(&[0, 0, 0, 9, 1], 2).is_err());
        assert!(decode_blocks(&[0xff, 0xff, 0xff, 0xff], 2).is_err());
        assert_eq!(decode_blocks(&[], 2).ok(), Some(vec![]));
    }
}
