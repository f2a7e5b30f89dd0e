//! The proof-of-work inner loop: SHA-256 with a precomputed midstate.
//!
//! The header encoding is 165 bytes; with SHA-256 padding it spans three
//! 64-byte blocks, and the nonce (the last 8 bytes) lies in the third:
//!
//! ```text
//!  block 0: header[0..64)    ─┐ hashed once per template → midstate
//!  block 1: header[64..128)  ─┘
//!  block 2: header[128..165) | 0x80 | 0…0 | bit length (1320) — nonce at 29..37
//! ```
//!
//! Each nonce then costs one compression of block 2 from the midstate.
//! [`Midstate::grind`] takes the fastest path the CPU has
//! ([`GrindPath::best`]): AVX-512, sixteen nonces per register
//! ([`crate::avx512`]); else SHA-NI, [`crate::shani::LANES`] nonces side
//! by side ([`crate::shani`]); else, as [`Midstate::grind_portable`],
//! sha2's `compress256` one nonce at a time. All find the same nonces.

// sha2 0.10's `compress256` takes generic-array 0.14 blocks, which that crate
// now marks deprecated in favour of 1.x; sha2 0.10 offers no other type.
#![allow(deprecated)]

use sha2::compress256;
use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;
use toy_chain::types::{HEADER_BYTES, NONCE_OFFSET};
use toy_chain::{Hash, Header};

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// Where the nonce sits inside the last block.
const NONCE_IN_TAIL: usize = NONCE_OFFSET - 128;

/// How [`Midstate::grind`] compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrindPath {
    /// sha2's `compress256`, one nonce at a time: any CPU.
    Portable,
    /// SHA-NI, [`crate::shani::LANES`] nonces side by side.
    ShaNi,
    /// AVX-512, [`crate::avx512::LANES`] nonces in one register each word.
    Avx512,
}

impl GrindPath {
    /// The fastest this CPU runs (measured in docs/PERFORMANCE.md: AVX-512,
    /// then SHA-NI, then portable), detected at run time.
    pub fn best() -> Self {
        if crate::avx512::Avx512::detect().is_some() {
            Self::Avx512
        } else if crate::shani::ShaNi::detect().is_some() {
            Self::ShaNi
        } else {
            Self::Portable
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Lanes {
    Portable,
    ShaNi(crate::shani::ShaNi, crate::shani::Prepared),
    Avx512(crate::avx512::Avx512, crate::avx512::Prepared),
}

/// A header prepared for grinding: the midstate of its first two blocks and
/// its padded last block.
#[derive(Debug, Clone)]
pub struct Midstate {
    state: [u32; 8],
    tail: [GenericArray<u8, U64>; 1],
    /// The last block as big-endian words (nonce zero), for the lanes.
    tail_words: [u32; 16],
    /// The path [`Midstate::grind`] takes, with the template prepared for it.
    lanes: Lanes,
    target: [u8; 32],
    /// The target's first word, for a one-comparison early exit.
    target_word0: u32,
}

// The layout above is what makes one compression per nonce possible; a header
// change that breaks it must fail to compile.
const _: () = assert!(HEADER_BYTES == 165 && NONCE_OFFSET == 157 && NONCE_IN_TAIL + 8 <= 64 - 9);

impl Midstate {
    /// Hashes the first 128 bytes of `header` once and pads the rest; grinds
    /// on [`GrindPath::best`].
    pub fn new(header: &Header) -> Self {
        Self::with_path(header, GrindPath::best()).unwrap_or_else(|| Self::portable(header))
    }

    /// [`Midstate::new`] on a chosen path; `None` when this CPU cannot run
    /// it.
    pub fn with_path(header: &Header, path: GrindPath) -> Option<Self> {
        let mut mid = Self::portable(header);
        mid.lanes = match path {
            GrindPath::Portable => Lanes::Portable,
            GrindPath::ShaNi => {
                let ni = crate::shani::ShaNi::detect()?;
                Lanes::ShaNi(ni, ni.prepare(&mid.state, &mid.tail_words))
            }
            GrindPath::Avx512 => {
                let avx = crate::avx512::Avx512::detect()?;
                Lanes::Avx512(avx, avx.prepare(&mid.state, &mid.tail_words))
            }
        };
        Some(mid)
    }

    /// The path [`Midstate::grind`] takes.
    pub fn path(&self) -> GrindPath {
        match self.lanes {
            Lanes::Portable => GrindPath::Portable,
            Lanes::ShaNi(..) => GrindPath::ShaNi,
            Lanes::Avx512(..) => GrindPath::Avx512,
        }
    }

    fn portable(header: &Header) -> Self {
        let bytes = header.hashing_bytes();
        let mut state = IV;
        compress256(&mut state, &[*GenericArray::from_slice(&bytes[..64]), *GenericArray::from_slice(&bytes[64..128])]);
        let mut tail = [GenericArray::default()];
        let rest = HEADER_BYTES - 128;
        tail[0][..rest].copy_from_slice(&bytes[128..]);
        tail[0][rest] = 0x80;
        tail[0][56..].copy_from_slice(&((HEADER_BYTES as u64) * 8).to_be_bytes());
        let target = header.target.0;
        tail[0][NONCE_IN_TAIL..NONCE_IN_TAIL + 8].fill(0);
        let tail_words = std::array::from_fn(|i| {
            u32::from_be_bytes([tail[0][i * 4], tail[0][i * 4 + 1], tail[0][i * 4 + 2], tail[0][i * 4 + 3]])
        });
        Self {
            state,
            tail,
            tail_words,
            lanes: Lanes::Portable,
            target,
            target_word0: u32::from_be_bytes([target[0], target[1], target[2], target[3]]),
        }
    }

    /// The last block's words for `nonce`: the nonce's eight bytes sit at
    /// bytes 29..37, across words 7, 8 and 9.
    #[inline(always)]
    fn words_for(&self, nonce: u64) -> [u32; 16] {
        const _: () = assert!(NONCE_IN_TAIL == 29);
        let mut w = self.tail_words;
        w[7] |= (nonce >> 40) as u32;
        w[8] = (nonce >> 8) as u32;
        w[9] |= (nonce as u32) << 24;
        w
    }

    /// The block hash for `nonce`.
    pub fn hash(&self, nonce: u64) -> Hash {
        let state = self.compress(&mut self.tail.clone(), nonce);
        let mut out = [0u8; 32];
        for (i, w) in state.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        Hash(out)
    }

    #[inline(always)]
    fn compress(&self, tail: &mut [GenericArray<u8, U64>; 1], nonce: u64) -> [u32; 8] {
        tail[0][NONCE_IN_TAIL..NONCE_IN_TAIL + 8].copy_from_slice(&nonce.to_be_bytes());
        let mut state = self.state;
        compress256(&mut state, tail);
        state
    }

    /// Tries nonces `start..start + count` (wrapping), returning the first
    /// that meets the target, on the path chosen at construction
    /// ([`Midstate::path`]).
    pub fn grind(&self, start: u64, count: u64) -> Option<u64> {
        let done = match &self.lanes {
            Lanes::Portable => 0,
            Lanes::ShaNi(ni, prepared) => match self.grind_shani(*ni, prepared, start, count) {
                Ok(found) => return found,
                Err(done) => done,
            },
            Lanes::Avx512(avx, prepared) => match self.grind_avx512(*avx, prepared, start, count) {
                Ok(found) => return found,
                Err(done) => done,
            },
        };
        // What is left over (fewer than a batch) one at a time.
        self.grind_portable(start.wrapping_add(done), count - done)
    }

    /// Whether `nonce` meets the target, hashed in full (for the rare nonce
    /// whose first word passes).
    fn confirms(&self, nonce: u64) -> bool {
        self.meets(&self.compress(&mut self.tail.clone(), nonce))
    }

    /// Whole batches of the SHA-NI lanes: `Ok` with the first find (or none
    /// in a range that was all whole batches), `Err(tried)` to go on.
    fn grind_shani(
        &self,
        ni: crate::shani::ShaNi,
        prepared: &crate::shani::Prepared,
        start: u64,
        count: u64,
    ) -> Result<Option<u64>, u64> {
        const L: usize = crate::shani::LANES;
        let mut i = 0;
        while count - i >= L as u64 {
            let nonces: [u64; L] = std::array::from_fn(|l| start.wrapping_add(i + l as u64));
            let words = nonces.map(|n| {
                let w = self.words_for(n);
                [w[7], w[8], w[9]]
            });
            let firsts = ni.first_words(prepared, &words);
            // Lanes in nonce order: the first that meets is the lowest.
            for (first, nonce) in firsts.into_iter().zip(nonces) {
                if first <= self.target_word0 && self.confirms(nonce) {
                    return Ok(Some(nonce));
                }
            }
            i += L as u64;
        }
        if i == count { Ok(None) } else { Err(i) }
    }

    /// Whole batches of the AVX-512 lanes, as [`Midstate::grind_shani`].
    fn grind_avx512(
        &self,
        avx: crate::avx512::Avx512,
        prepared: &crate::avx512::Prepared,
        start: u64,
        count: u64,
    ) -> Result<Option<u64>, u64> {
        const L: usize = crate::avx512::LANES;
        let mut i = 0;
        while count - i >= L as u64 {
            let base = start.wrapping_add(i);
            let nonce = |l: usize| base.wrapping_add(l as u64);
            let lane_words: [[u32; 16]; L] = std::array::from_fn(|l| self.words_for(nonce(l)));
            let words: [[u32; L]; 3] = std::array::from_fn(|k| std::array::from_fn(|l| lane_words[l][7 + k]));
            let mut mask = avx.first_words(prepared, &words[0], &words[1], &words[2], self.target_word0);
            // Lanes in nonce order: the lowest set bit first.
            while mask != 0 {
                let l = mask.trailing_zeros() as usize;
                if self.confirms(nonce(l)) {
                    return Ok(Some(nonce(l)));
                }
                mask &= mask - 1;
            }
            i += L as u64;
        }
        if i == count { Ok(None) } else { Err(i) }
    }

    /// [`Midstate::grind`] on sha2's `compress256`, one nonce at a time (the
    /// portable path, and the baseline the lanes are measured against).
    pub fn grind_portable(&self, start: u64, count: u64) -> Option<u64> {
        let mut tail = self.tail;
        for i in 0..count {
            let nonce = start.wrapping_add(i);
            let state = self.compress(&mut tail, nonce);
            if state[0] > self.target_word0 {
                continue;
            }
            if self.meets(&state) {
                return Some(nonce);
            }
        }
        None
    }

    fn meets(&self, state: &[u32; 8]) -> bool {
        for (i, w) in state.iter().enumerate() {
            let t = u32::from_be_bytes([
                self.target[i * 4],
                self.target[i * 4 + 1],
                self.target[i * 4 + 2],
                self.target[i * 4 + 3],
            ]);
            if *w != t {
                return *w < t;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toy_chain::ChainParams;

    #[test]
    fn midstate_hash_equals_the_plain_header_hash() {
        let mut header = ChainParams::test().genesis().header;
        header.miner = toy_chain::Address([7; 33]);
        header.reward = 123_456;
        let mid = Midstate::new(&header);
        for nonce in [0u64, 1, 255, 1 << 40, u64::MAX] {
            header.nonce = nonce;
            assert_eq!(mid.hash(nonce), header.hash(), "nonce {nonce}");
        }
    }

    #[test]
    fn every_path_finds_exactly_the_nonces_the_reference_hash_finds() {
        // An easy target (about one nonce in 256 meets it), many ranges,
        // odd lengths and starts near the wrap: the lanes, the portable
        // loop and the plain header hash agree on every first find.
        let mut header = ChainParams::test().genesis().header;
        for case in 0..40u64 {
            header.reward = case * 7919;
            header.miner = toy_chain::Address([case as u8; 33]);
            let mid = Midstate::new(&header);
            let start = if case % 4 == 0 { u64::MAX - 300 + case } else { rand::random::<u64>() };
            let count = 1 + rand::random::<u64>() % 3000;
            let reference = (0..count).map(|i| start.wrapping_add(i)).find(|&n| {
                let mut h = header.clone();
                h.nonce = n;
                toy_chain::target::meets(&h.hash(), &h.target)
            });
            for path in [GrindPath::Portable, GrindPath::ShaNi, GrindPath::Avx512] {
                // A path this CPU lacks is skipped (CI's machine has all).
                if let Some(mid) = Midstate::with_path(&header, path) {
                    assert_eq!(mid.grind(start, count), reference, "case {case}: {path:?}");
                }
            }
            assert_eq!(mid.grind_portable(start, count), reference, "case {case}: portable");
        }
    }

    #[test]
    fn grind_finds_a_nonce_that_meets_the_target() {
        let mut header = ChainParams::test().genesis().header;
        let mid = Midstate::new(&header);
        let nonce = mid.grind(0, 1 << 20).expect("8 zero bits: found within a million tries");
        header.nonce = nonce;
        assert!(toy_chain::target::meets(&header.hash(), &header.target));
        // And nothing before it did.
        for n in 0..nonce {
            header.nonce = n;
            assert!(!toy_chain::target::meets(&header.hash(), &header.target));
        }
    }
}
