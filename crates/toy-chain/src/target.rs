//! Proof-of-work targets: checking, work, retargeting.
//!
//! A target is a 256-bit big-endian number stored as a [`Hash`](struct@crate::types::Hash); a block
//! meets it when its hash, read the same way, is not above it. All arithmetic
//! is integer and deterministic, so every node agrees on work and targets.

use crate::types::Hash;

/// The target with `bits` leading zero bits and all ones after:
/// `2^(256 - bits) - 1`. The workshop's "7 leading zero hex digits" is
/// `leading_zeros(28)`.
pub fn leading_zeros(bits: u32) -> Hash {
    let bits = bits.min(256) as usize;
    let mut t = [0xffu8; 32];
    for (i, byte) in t.iter_mut().enumerate() {
        let start = i * 8;
        if start + 8 <= bits {
            *byte = 0;
        } else if start < bits {
            *byte = 0xff >> (bits - start);
        }
    }
    Hash(t)
}

/// Whether `hash` meets `target` (hash ≤ target, both big-endian).
pub fn meets(hash: &Hash, target: &Hash) -> bool {
    hash.0 <= target.0
}

fn limbs(h: &Hash) -> [u64; 4] {
    let mut l = [0u64; 4];
    for (i, limb) in l.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.0[i * 8..i * 8 + 8]);
        *limb = u64::from_be_bytes(b);
    }
    l
}

fn from_limbs(l: [u64; 4]) -> Hash {
    let mut h = [0u8; 32];
    for (i, limb) in l.iter().enumerate() {
        h[i * 8..i * 8 + 8].copy_from_slice(&limb.to_be_bytes());
    }
    Hash(h)
}

fn leading_zero_bits(l: &[u64; 4]) -> u32 {
    let mut n = 0;
    for limb in l {
        if *limb == 0 {
            n += 64;
        } else {
            return n + limb.leading_zeros();
        }
    }
    n
}

/// The expected number of hashes to meet `target`, `2^256 / (target + 1)`,
/// computed from the target's leading 64 significant bits (relative error
/// below 2^-62) and saturating at `u128::MAX`.
pub fn work(target: &Hash) -> u128 {
    let l = limbs(target);
    let lz = leading_zero_bits(&l);
    if lz >= 127 {
        return u128::MAX;
    }
    // The 64 bits starting at the first one bit: m in [2^63, 2^64).
    let wide = ((l[0] as u128) << 64 | l[1] as u128, (l[2] as u128) << 64 | l[3] as u128);
    let shift = lz; // < 127
    let top = if shift == 0 { wide.0 } else { (wide.0 << shift) | (wide.1 >> (128 - shift)) };
    let m = (top >> 64) as u64;
    // target ≈ m · 2^(192 - lz), so work ≈ 2^(64 + lz) / m = (2^127 / m) · 2^(lz - 63).
    let q = (1u128 << 127) / (m as u128 + 1).max(1);
    if lz >= 63 {
        q.checked_shl(lz - 63).filter(|v| v >> (lz - 63) == q).unwrap_or(u128::MAX)
    } else {
        (q >> (63 - lz)).max(1)
    }
}

/// `target · num / den`, capped at `limit` (and at least 1). Used by
/// retargeting with `num` = the actual time span and `den` = the expected one.
pub fn scale(target: &Hash, num: u64, den: u64, limit: &Hash) -> Hash {
    let den = den.max(1);
    let l = limbs(target);
    // Multiply the 4 limbs by num into 5 limbs (most significant first).
    let mut prod = [0u64; 5];
    let mut carry: u128 = 0;
    for i in (0..4).rev() {
        let v = l[i] as u128 * num as u128 + carry;
        prod[i + 1] = v as u64;
        carry = v >> 64;
    }
    prod[0] = carry as u64;
    // Divide the 5 limbs by den.
    let mut rem: u128 = 0;
    let mut quot = [0u64; 5];
    for i in 0..5 {
        let cur = (rem << 64) | prod[i] as u128;
        quot[i] = (cur / den as u128) as u64;
        rem = cur % den as u128;
    }
    if quot[0] != 0 {
        return *limit;
    }
    let out = from_limbs([quot[1], quot[2], quot[3], quot[4]]);
    if out.0 > limit.0 {
        *limit
    } else if out == Hash::ZERO {
        from_limbs([0, 0, 0, 1])
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zero_targets() {
        assert_eq!(leading_zeros(0), Hash([0xff; 32]));
        let t = leading_zeros(28);
        assert_eq!(&t.0[..4], &[0, 0, 0, 0x0f]);
        assert!(t.0[4..].iter().all(|b| *b == 0xff));
        assert_eq!(leading_zeros(256), Hash::ZERO);
    }

    #[test]
    fn meets_compares_big_endian() {
        let t = leading_zeros(8);
        let mut h = [0u8; 32];
        h[1] = 0xff;
        assert!(meets(&Hash(h), &t));
        h[0] = 1;
        assert!(!meets(&Hash(h), &t));
    }

    #[test]
    fn work_doubles_per_bit() {
        for bits in [1u32, 8, 20, 28, 40, 62, 63, 64, 100] {
            let w = work(&leading_zeros(bits));
            let expected = 1u128 << bits;
            let err = w.abs_diff(expected);
            assert!(err <= expected >> 60 || err <= 2, "bits {bits}: work {w}, expected {expected}");
        }
        assert_eq!(work(&Hash::ZERO), u128::MAX);
        assert!(work(&leading_zeros(10)) < work(&leading_zeros(11)));
    }

    #[test]
    fn scale_moves_target_and_respects_limit() {
        let limit = leading_zeros(8);
        let t = leading_zeros(20);
        let doubled = scale(&t, 2, 1, &limit);
        assert!(doubled.0 > t.0);
        assert_eq!(scale(&doubled, 1, 2, &limit), leading_zeros(20), "halving undoes doubling (odd bit dropped)");
        assert_eq!(scale(&t, u64::MAX, 1, &limit), limit, "capped at the limit");
        assert_ne!(scale(&from_limbs([0, 0, 0, 1]), 1, u64::MAX, &limit), Hash::ZERO, "never zero");
    }
}
