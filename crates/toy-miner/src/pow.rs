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

/// A header prepared for grinding: the midstate of its first two blocks and
/// its padded last block.
#[derive(Debug, Clone)]
pub struct Midstate {
    state: [u32; 8],
    tail: [GenericArray<u8, U64>; 1],
    target: [u8; 32],
    /// The target's first word, for a one-comparison early exit.
    target_word0: u32,
}

// The layout above is what makes one compression per nonce possible; a header
// change that breaks it must fail to compile.
const _: () = assert!(HEADER_BYTES == 165 && NONCE_OFFSET == 157 && NONCE_IN_TAIL + 8 <= 64 - 9);

impl Midstate {
    /// Hashes the first 128 bytes of `header` once and pads the rest.
    pub fn new(header: &Header) -> Self {
        let bytes = header.hashing_bytes();
        let mut state = IV;
        compress256(&mut state, &[*GenericArray::from_slice(&bytes[..64]), *GenericArray::from_slice(&bytes[64..128])]);
        let mut tail = [GenericArray::default()];
        let rest = HEADER_BYTES - 128;
        tail[0][..rest].copy_from_slice(&bytes[128..]);
        tail[0][rest] = 0x80;
        tail[0][56..].copy_from_slice(&((HEADER_BYTES as u64) * 8).to_be_bytes());
        let target = header.target.0;
        Self { state, tail, target, target_word0: u32::from_be_bytes([target[0], target[1], target[2], target[3]]) }
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
    /// that meets the target.
    pub fn grind(&self, start: u64, count: u64) -> Option<u64> {
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
