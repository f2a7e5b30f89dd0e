//! SHA-256 in AVX-512 registers: sixteen nonces at once, one per 32-bit
//! lane, in one thread.
//!
//! No SHA instructions here: each round is ordinary arithmetic on sixteen
//! lanes (rotations, three-input logic with `vpternlogd`, additions). Where
//! SHA-NI does one nonce's two rounds per `sha256rnds2` and waits on it,
//! this does sixteen nonces' one round in about seventeen instructions that
//! the core spreads over its vector ports.
//!
//! Only the work the nonce changes is done per batch: the nonce lies in
//! message words 7–9 of the last block, so rounds 0–6 (words 0–6) are run
//! once per template on scalars ([`Prepared`]), and only word A of the
//! result is produced — it is all the target's first word is checked
//! against; the rare nonce that passes is hashed in full by the caller.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m512i, _mm512_add_epi32, _mm512_cmple_epu32_mask, _mm512_loadu_si512, _mm512_ror_epi32, _mm512_set1_epi32,
    _mm512_srli_epi32, _mm512_ternarylogic_epi32,
};

/// Nonces per batch: sixteen 32-bit lanes.
pub const LANES: usize = 16;

/// SHA-256's round constants (FIPS 180-4, 4.2.2), shared with the SHA-NI
/// lanes.
pub(crate) const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
];

/// Rounds run once per template: those of words 0–6.
const FIXED_ROUNDS: usize = 7;

/// The AVX-512 extensions, known present ([`Avx512::detect`]).
#[derive(Debug, Clone, Copy)]
pub struct Avx512(());

impl Avx512 {
    /// `Some` when this CPU has AVX-512F (checked once).
    pub fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f")).then_some(Self(()))
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    }

    /// Prepares the midstate `state` and last block `tail` (big-endian
    /// words; words 7–9 are replaced per nonce).
    pub fn prepare(self, state: &[u32; 8], tail: &[u32; 16]) -> Prepared {
        let mut s = *state;
        for t in 0..FIXED_ROUNDS {
            round(&mut s, tail[t].wrapping_add(K[t]));
        }
        Prepared { start: *state, after_fixed: s, tail: *tail }
    }

    /// Word A of the final state for each lane's nonce words `(w7, w8, w9)`,
    /// and the mask of lanes whose A is at most `limit`.
    pub fn first_words(self, p: &Prepared, w7: &[u32; LANES], w8: &[u32; LANES], w9: &[u32; LANES], limit: u32) -> u16 {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `self` exists only where AVX-512F was detected.
            unsafe { first_words_avx512(p, w7, w8, w9, limit) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (p, w7, w8, w9, limit);
            unreachable!("no Avx512 off x86_64")
        }
    }
}

/// A template prepared for [`Avx512::first_words`].
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    start: [u32; 8],
    after_fixed: [u32; 8],
    tail: [u32; 16],
}

/// One scalar round on `s` with `wk` = W[t] + K[t].
fn round(s: &mut [u32; 8], wk: u32) {
    let [a, b, c, d, e, f, g, h] = *s;
    let t1 = h
        .wrapping_add(e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25))
        .wrapping_add((e & f) ^ (!e & g))
        .wrapping_add(wk);
    let t2 = (a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22)).wrapping_add((a & b) ^ (a & c) ^ (b & c));
    *s = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn load(v: &[u32; LANES]) -> __m512i {
    // SAFETY: `v` is 64 readable bytes; the load is unaligned.
    unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn first_words_avx512(p: &Prepared, w7: &[u32; LANES], w8: &[u32; LANES], w9: &[u32; LANES], limit: u32) -> u16 {
    let splat = |x: u32| _mm512_set1_epi32(x as i32);
    // XOR of three (0x96), choose (0xCA), majority (0xE8).
    let xor3 = |x, y, z| _mm512_ternarylogic_epi32::<0x96>(x, y, z);
    let mut w: [__m512i; 16] = std::array::from_fn(|i| splat(p.tail[i]));
    w[7] = load(w7);
    w[8] = load(w8);
    w[9] = load(w9);
    let mut s: [__m512i; 8] = p.after_fixed.map(splat);
    for t in FIXED_ROUNDS..64 {
        let wt = if t < 16 {
            w[t]
        } else {
            let (w2, w7_, w15, w16) = (w[(t - 2) % 16], w[(t - 7) % 16], w[(t - 15) % 16], w[(t - 16) % 16]);
            let s0 = xor3(_mm512_ror_epi32::<7>(w15), _mm512_ror_epi32::<18>(w15), _mm512_srli_epi32::<3>(w15));
            let s1 = xor3(_mm512_ror_epi32::<17>(w2), _mm512_ror_epi32::<19>(w2), _mm512_srli_epi32::<10>(w2));
            let x = _mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(w7_, w16));
            w[t % 16] = x;
            x
        };
        let [a, b, c, d, e, f, g, h] = s;
        let sig1 = xor3(_mm512_ror_epi32::<6>(e), _mm512_ror_epi32::<11>(e), _mm512_ror_epi32::<25>(e));
        let ch = _mm512_ternarylogic_epi32::<0xCA>(e, f, g);
        let t1 = _mm512_add_epi32(_mm512_add_epi32(h, sig1), _mm512_add_epi32(ch, _mm512_add_epi32(wt, splat(K[t]))));
        let sig0 = xor3(_mm512_ror_epi32::<2>(a), _mm512_ror_epi32::<13>(a), _mm512_ror_epi32::<22>(a));
        let maj = _mm512_ternarylogic_epi32::<0xE8>(a, b, c);
        s = [_mm512_add_epi32(t1, _mm512_add_epi32(sig0, maj)), a, b, c, _mm512_add_epi32(d, t1), e, f, g];
    }
    let first = _mm512_add_epi32(s[0], splat(p.start[0]));
    _mm512_cmple_epu32_mask(first, splat(limit))
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(deprecated)] // sha2 0.10 takes generic-array 0.14 blocks

    use super::*;

    /// sha2's compression of one block of big-endian words: what every lane
    /// is checked against.
    pub(crate) fn reference(state: &[u32; 8], block: &[u32; 16]) -> [u32; 8] {
        let mut bytes = [0u8; 64];
        for (i, w) in block.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        let mut s = *state;
        sha2::compress256(&mut s, &[*sha2::digest::generic_array::GenericArray::from_slice(&bytes)]);
        s
    }

    #[test]
    fn every_lane_flags_exactly_the_first_words_at_or_below_the_limit() {
        let Some(avx) = Avx512::detect() else {
            println!("SKIP every_lane_flags_exactly_the_first_words_at_or_below_the_limit: no AVX-512");
            return;
        };
        for round in 0..300u32 {
            let state: [u32; 8] = std::array::from_fn(|_| rand::random());
            let tail: [u32; 16] = std::array::from_fn(|_| rand::random());
            let p = avx.prepare(&state, &tail);
            let w7: [u32; LANES] = std::array::from_fn(|_| rand::random());
            let w8: [u32; LANES] = std::array::from_fn(|_| rand::random());
            let w9: [u32; LANES] = std::array::from_fn(|_| rand::random());
            let firsts: [u32; LANES] = std::array::from_fn(|l| {
                let mut b = tail;
                b[7] = w7[l];
                b[8] = w8[l];
                b[9] = w9[l];
                reference(&state, &b)[0]
            });
            // A limit between the lanes' words: some pass, some do not.
            let limit = firsts[round as usize % LANES];
            let mask = avx.first_words(&p, &w7, &w8, &w9, limit);
            for (l, first) in firsts.iter().enumerate() {
                assert_eq!(mask >> l & 1 == 1, *first <= limit, "round {round}, lane {l}");
            }
        }
    }
}
