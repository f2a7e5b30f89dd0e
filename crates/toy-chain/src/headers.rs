//! Headers first: judging a peer's chain by its headers before any body is
//! fetched, as Bitcoin Core has done since 0.10.
//!
//! A peer's `chain:status` only *claims* an amount of work. Checking that
//! claim costs us one SHA-256 and a little arithmetic per header (165 bytes
//! each), while faking it costs the peer the proof of work itself. So sync
//! asks for headers, checks every rule that reads only headers (linkage,
//! height, the retarget target, proof of work, median time past, BIP 94's
//! timewarp floor, the clock), adds up their work, and fetches bodies only
//! for a header chain that is valid and backs the claim.
//!
//! The rules here are the same functions block import uses
//! ([`crate::state::check_header_alone`] and the context below), so a header
//! chain that passes is one whose blocks can fail only on their bodies.

use std::collections::HashMap;

use crate::error::BlockError;
use crate::params::ChainParams;
use crate::state::{BlockContext, check_header_alone};
use crate::target::{scale, work};
use crate::types::{Hash, Header};

/// A header chain that passed every header rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedHeaders {
    /// The headers' hashes, in order (only the valid prefix).
    pub hashes: Vec<Hash>,
    /// Cumulative work at the last of them (that of the parent of the first
    /// when there are none).
    pub work: u128,
    /// Height of the last of them.
    pub height: u64,
    /// The chain stopped at a header stamped too far ahead of our clock:
    /// not the sender's fault, and the rest may pass later.
    pub ahead_of_clock: bool,
}

/// Why a header chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadersError {
    /// The first header's parent is not a block we know.
    #[error("the first header's parent {parent} is unknown")]
    Unconnected {
        /// The unknown parent.
        parent: Hash,
    },
    /// Header `index` does not build on the one before it.
    #[error("header {index} does not build on the one before it")]
    NotAChain {
        /// Its position in the answer.
        index: usize,
    },
    /// Header `index` breaks a rule, or is a block known to be invalid:
    /// proof that the sender sends invalid chains.
    #[error("header {index} is invalid: {reason}")]
    Invalid {
        /// Its position in the answer.
        index: usize,
        /// The rule.
        reason: BlockError,
    },
}

/// The target a child of `parent` must carry; `lookup` finds ancestors.
/// At the first block of a window the target is scaled by the span of the
/// window that just ended, measured from the last block of the window
/// before it (or genesis), so it covers exactly the intervals it is
/// compared with.
pub(crate) fn expected_target<'a>(
    params: &ChainParams,
    parent: &'a Header,
    lookup: &impl Fn(&Hash) -> Option<&'a Header>,
) -> Hash {
    let Some(rt) = &params.retarget else { return params.initial_target };
    let height = parent.height + 1;
    if rt.interval == 0 || !height.is_multiple_of(rt.interval) || height < rt.interval {
        return parent.target;
    }
    let back = rt.interval.min(parent.height);
    let mut first = parent;
    for _ in 0..back {
        match lookup(&first.parent) {
            Some(h) => first = h,
            None => return parent.target,
        }
    }
    let expected = back.saturating_mul(rt.target_block_ms).max(1);
    let span = parent.timestamp_ms.saturating_sub(first.timestamp_ms).clamp(expected / 4, expected.saturating_mul(4));
    scale(&parent.target, span, expected, &params.pow_limit)
}

/// BIP 94: the first block of a retarget window may not be stamped more
/// than `max_timewarp_ms` before its parent; 0 (no floor) elsewhere.
pub(crate) fn timewarp_floor(params: &ChainParams, parent: &Header) -> u64 {
    match &params.retarget {
        Some(rt) if rt.interval > 0 && (parent.height + 1).is_multiple_of(rt.interval) => {
            parent.timestamp_ms.saturating_sub(rt.max_timewarp_ms)
        }
        _ => 0,
    }
}

/// The median timestamp of `parent` and its ancestors, over the params'
/// window.
pub(crate) fn median_time_past<'a>(
    params: &ChainParams,
    parent: &Hash,
    lookup: &impl Fn(&Hash) -> Option<&'a Header>,
) -> u64 {
    let mut times = Vec::with_capacity(params.median_window);
    let mut cursor = lookup(parent);
    while let Some(h) = cursor {
        times.push(h.timestamp_ms);
        if times.len() >= params.median_window.max(1) || h.height == 0 {
            break;
        }
        cursor = lookup(&h.parent);
    }
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or(0)
}

/// The context a child of `parent` (whose hash is `parent_hash`) is judged in.
pub(crate) fn context<'a>(
    params: &ChainParams,
    parent_hash: Hash,
    parent: &'a Header,
    lookup: &impl Fn(&Hash) -> Option<&'a Header>,
    now_ms: u64,
) -> BlockContext {
    BlockContext {
        parent_hash,
        parent_height: parent.height,
        expected_target: expected_target(params, parent, lookup),
        median_time_past_ms: median_time_past(params, &parent_hash, lookup),
        min_timestamp_ms: timewarp_floor(params, parent),
        now_ms,
    }
}

/// Checks `headers` as a chain on top of known blocks: `known` finds a
/// known header and its cumulative work; `invalid` tells a hash known to be
/// invalid.
pub(crate) fn check<'a>(
    params: &ChainParams,
    headers: &'a [Header],
    known: impl Fn(&Hash) -> Option<(&'a Header, u128)>,
    invalid: impl Fn(&Hash) -> bool,
    now_ms: u64,
) -> Result<CheckedHeaders, HeadersError> {
    let Some(first) = headers.first() else {
        return Ok(CheckedHeaders { hashes: vec![], work: 0, height: 0, ahead_of_clock: false });
    };
    let (mut parent, mut total) = known(&first.parent).ok_or(HeadersError::Unconnected { parent: first.parent })?;
    let mut parent_hash = first.parent;
    let mut pending: HashMap<Hash, &'a Header> = HashMap::with_capacity(headers.len());
    let mut out = CheckedHeaders {
        hashes: Vec::with_capacity(headers.len()),
        work: total,
        height: parent.height,
        ahead_of_clock: false,
    };
    for (index, header) in headers.iter().enumerate() {
        if header.parent != parent_hash {
            return Err(HeadersError::NotAChain { index });
        }
        let lookup = |h: &Hash| pending.get(h).copied().or_else(|| known(h).map(|(header, _)| header));
        let ctx = context(params, parent_hash, parent, &lookup, now_ms);
        let hash = match check_header_alone(header, &ctx, params) {
            Ok(hash) => hash,
            Err(BlockError::TimestampTooFarAhead { .. }) => {
                out.ahead_of_clock = true;
                break;
            }
            Err(reason) => return Err(HeadersError::Invalid { index, reason }),
        };
        if invalid(&hash) {
            return Err(HeadersError::Invalid { index, reason: BlockError::InvalidAncestor(hash) });
        }
        total = total.saturating_add(work(&header.target));
        pending.insert(hash, header);
        out.hashes.push(hash);
        out.work = total;
        out.height = header.height;
        parent = header;
        parent_hash = hash;
    }
    Ok(out)
}
