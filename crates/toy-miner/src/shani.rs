//! SHA-256 compression on the CPU's SHA extensions (SHA-NI), several
//! messages at once in one thread.
//!
//! One compression is a chain of 32 dependent `sha256rnds2` (two rounds
//! each): each waits for the one before, so a single stream leaves the
//! unit idle for most of every instruction's latency. Compressing
//! [`LANES`] blocks side by side — the same midstate, different nonces —
//! gives the core independent chains to overlap, which is how cpuminer-style
//! miners go past one stream's rate. The code is written once over the
//! lanes (`for l in 0..N`); the compiler unrolls and interleaves them.
//!
//! Register budget: each lane keeps its two state registers and four
//! message registers live and SHA-NI instructions take only
//! `xmm0`–`xmm15`, so past two lanes some spill; four still measured
//! fastest here (docs/PERFORMANCE.md), which is why [`LANES`] is 4.
//!
//! Used only after [`available`] says the CPU has the extensions
//! (detected at run time); the portable path is sha2's `compress256`.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_extract_epi32, _mm_set_epi32, _mm_sha256msg1_epu32,
    _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi32,
};

/// Blocks compressed side by side.
pub const LANES: usize = 4;

#[cfg(target_arch = "x86_64")]
use crate::avx512::K;

/// Whether this CPU has the SHA extensions (and the SSE levels the code
/// uses), checked once.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            std::arch::is_x86_feature_detected!("sha")
                && std::arch::is_x86_feature_detected!("sse4.1")
                && std::arch::is_x86_feature_detected!("ssse3")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Four message words, `w[0]` in the lowest element.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,ssse3,sse4.1")]
fn words(w: &[u32]) -> __m128i {
    _mm_set_epi32(w[3] as i32, w[2] as i32, w[1] as i32, w[0] as i32)
}

/// A template prepared for the lanes: the registers that are the same for
/// every nonce, and the state after the rounds that do not depend on it.
///
/// The nonce sits in message words 7, 8 and 9, so words 0–6 are fixed:
/// rounds 0–5 (three `sha256rnds2`) and the first half of rounds 6–7's
/// pair are computed here once per template, as cpuminer-style miners do,
/// not once per nonce.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    abef0: __m128i,
    /// A B E F after rounds 0–3.
    abef4: __m128i,
    /// C D G H after rounds 0–5.
    cdgh6: __m128i,
    w: [__m128i; 4],
}

/// Off x86_64 there is nothing to prepare ([`available`] is false).
#[cfg(not(target_arch = "x86_64"))]
#[derive(Debug, Clone, Copy)]
pub struct Prepared(());

/// The SHA extensions, known present: the proof [`ShaNi::detect`] gives,
/// so the lanes never run on a CPU without them.
#[derive(Debug, Clone, Copy)]
pub struct ShaNi(());

impl ShaNi {
    /// `Some` when this CPU has the extensions ([`available`]).
    pub fn detect() -> Option<Self> {
        available().then_some(Self(()))
    }

    /// Prepares `state` and the last block `tail` (as big-endian words,
    /// nonce words as they are) for [`ShaNi::first_words`].
    pub fn prepare(self, state: &[u32; 8], tail: &[u32; 16]) -> Prepared {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `self` exists only where `available()` held.
            unsafe { prepare_ni(state, tail) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (state, tail);
            Prepared(())
        }
    }

    /// The first word (A) of the state after compressing `prepared`'s block
    /// with each lane's nonce words `(w7, w8, w9)` — what the target's
    /// first word is checked against; the few that pass are hashed in full.
    pub fn first_words<const N: usize>(self, prepared: &Prepared, nonce_words: &[[u32; 3]; N]) -> [u32; N] {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: as in `prepare`.
            unsafe { first_words_ni(prepared, nonce_words) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (prepared, nonce_words);
            unreachable!("no ShaNi off x86_64")
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,ssse3,sse4.1")]
fn prepare_ni(state: &[u32; 8], tail: &[u32; 16]) -> Prepared {
    let [a, b, c, d, e, f, g, h] = state.map(|x| x as i32);
    let abef0 = _mm_set_epi32(a, b, e, f);
    let cdgh0 = _mm_set_epi32(c, d, g, h);
    let w = [words(&tail[0..4]), words(&tail[4..8]), words(&tail[8..12]), words(&tail[12..16])];
    let wk0 = _mm_add_epi32(w[0], words(&K[0..4]));
    let cdgh = _mm_sha256rnds2_epu32(cdgh0, abef0, wk0);
    let abef4 = _mm_sha256rnds2_epu32(abef0, cdgh, _mm_shuffle_epi32::<0x0E>(wk0));
    // Rounds 4–5 use words 4 and 5 only (the low half of the register).
    let wk1 = _mm_add_epi32(w[1], words(&K[4..8]));
    let cdgh6 = _mm_sha256rnds2_epu32(cdgh, abef4, wk1);
    Prepared { abef0, abef4, cdgh6, w }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,ssse3,sse4.1")]
fn first_words_ni<const N: usize>(p: &Prepared, nonce_words: &[[u32; 3]; N]) -> [u32; N] {
    use std::arch::x86_64::_mm_insert_epi32;
    let mut abef = [p.abef4; N];
    let mut cdgh = [p.cdgh6; N];
    let mut w: [[__m128i; 4]; N] = [p.w; N];
    for l in 0..N {
        let [w7, w8, w9] = nonce_words[l];
        w[l][1] = _mm_insert_epi32::<3>(p.w[1], w7 as i32);
        w[l][2] = _mm_insert_epi32::<1>(_mm_insert_epi32::<0>(p.w[2], w8 as i32), w9 as i32);
        // The second half of rounds 6–7: words 6 and 7.
        let wk1 = _mm_add_epi32(w[l][1], words(&K[4..8]));
        abef[l] = _mm_sha256rnds2_epu32(p.abef4, p.cdgh6, _mm_shuffle_epi32::<0x0E>(wk1));
    }
    for r in 2..16 {
        let k = words(&K[r * 4..r * 4 + 4]);
        for l in 0..N {
            if r >= 4 {
                let [w0, w1, w2, w3] = [w[l][r % 4], w[l][(r + 1) % 4], w[l][(r + 2) % 4], w[l][(r + 3) % 4]];
                let x = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8::<4>(w3, w2));
                w[l][r % 4] = _mm_sha256msg2_epu32(x, w3);
            }
            let wk = _mm_add_epi32(w[l][r % 4], k);
            cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], wk);
            abef[l] = _mm_sha256rnds2_epu32(abef[l], cdgh[l], _mm_shuffle_epi32::<0x0E>(wk));
        }
    }
    std::array::from_fn(|l| _mm_extract_epi32::<3>(_mm_add_epi32(abef[l], p.abef0)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avx512::tests::reference;

    #[test]
    fn the_prepared_lanes_give_the_first_word_sha2_gives() {
        let Some(ni) = ShaNi::detect() else {
            println!("SKIP the_prepared_lanes_give_the_first_word_sha2_gives: no SHA extensions");
            return;
        };
        for round in 0..500u32 {
            let state: [u32; 8] = std::array::from_fn(|_| rand::random());
            let tail: [u32; 16] = std::array::from_fn(|_| rand::random());
            let prepared = ni.prepare(&state, &tail);
            let nonces: [[u32; 3]; 4] = std::array::from_fn(|_| std::array::from_fn(|_| rand::random()));
            let got = ni.first_words(&prepared, &nonces);
            for l in 0..4 {
                let mut block = tail;
                block[7..10].copy_from_slice(&nonces[l]);
                assert_eq!(got[l], reference(&state, &block)[0], "round {round}, lane {l}");
            }
        }
    }
}
