//! The verifier conformance suite: the same answers from every
//! [`Verifier`] (feature `test-utils`).
//!
//! ```
//! toy_chain::crypto::conformance::run_all(&toy_chain::K256Verifier::new());
//! ```

use super::{K256Verifier, Keypair, Verifier};
use crate::types::{Address, Hash, Signature};

/// The order of secp256k1's group, big-endian.
const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xba, 0xae, 0xdc,
    0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

/// Every check below.
pub fn run_all(v: &dyn Verifier) {
    valid_signatures_verify(v);
    wrong_key_hash_or_bytes_fail(v);
    high_s_is_refused(v);
    bad_keys_are_refused(v);
    out_of_range_scalars_are_refused(v);
    same_answers_as_k256(v, 200);
}

/// n − s, big-endian: the high-S twin of a signature's S.
fn negate(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(ORDER[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

/// Signatures made by [`Keypair`] verify, for many keys and messages.
pub fn valid_signatures_verify(v: &dyn Verifier) {
    for i in 0..20u8 {
        let k = Keypair::from_seed(&[b'v', i]);
        let h = Hash::digest(&[i; 7]);
        assert!(v.verify(&h, &k.sign_hash(&h), &k.address()), "a valid signature (key {i})");
        // Twice: the second answer comes through the key cache.
        assert!(v.verify(&h, &k.sign_hash(&h), &k.address()), "a valid signature again (key {i})");
    }
}

/// Another signer, another hash, one flipped bit or an empty signature: no.
pub fn wrong_key_hash_or_bytes_fail(v: &dyn Verifier) {
    let k = Keypair::from_seed(b"alice");
    let other = Keypair::from_seed(b"mallory");
    let h = Hash::digest(b"pay bob 5");
    let sig = k.sign_hash(&h);
    assert!(!v.verify(&h, &sig, &other.address()), "another signer");
    assert!(!v.verify(&Hash::digest(b"pay bob 6"), &sig, &k.address()), "another hash");
    for bit in [0usize, 100, 255, 256, 300, 511] {
        let mut bytes = sig.0;
        bytes[bit / 8] ^= 1 << (bit % 8);
        assert!(!v.verify(&h, &Signature(bytes), &k.address()), "bit {bit} flipped");
    }
    assert!(!v.verify(&h, &Signature::EMPTY, &k.address()), "empty signature");
}

/// The high-S twin of a valid signature (same r, s' = n − s) is refused:
/// it would let anyone change a transaction's signature, and so its id.
pub fn high_s_is_refused(v: &dyn Verifier) {
    let k = Keypair::from_seed(b"alice");
    let h = Hash::digest(b"malleable");
    let sig = k.sign_hash(&h);
    let mut high = sig.0;
    high[32..].copy_from_slice(&negate(&sig.0[32..]));
    assert_ne!(high, sig.0);
    assert!(v.verify(&h, &sig, &k.address()), "the low-S original verifies");
    assert!(!v.verify(&h, &Signature(high), &k.address()), "high S refused");
}

/// Addresses that are no compressed key: refused.
pub fn bad_keys_are_refused(v: &dyn Verifier) {
    let k = Keypair::from_seed(b"alice");
    let h = Hash::digest(b"to a bad key");
    let sig = k.sign_hash(&h);
    let mut not_on_curve = k.address();
    // x = 5 is not the x of a point on secp256k1 (x³ + 7 is no square).
    not_on_curve.0[1..].fill(0);
    not_on_curve.0[32] = 5;
    let mut wrong_prefix = k.address();
    wrong_prefix.0[0] = 0x04;
    let mut x_too_big = k.address();
    x_too_big.0[1..].fill(0xff);
    for (what, a) in [
        ("zeros", Address([0; 33])),
        ("not on the curve", not_on_curve),
        ("prefix 04", wrong_prefix),
        ("x ≥ p", x_too_big),
    ] {
        assert!(!v.verify(&h, &sig, &a), "{what}");
    }
    // The signer's own x under every prefix but its own: SEC1's 33-byte
    // "compact" form (05) names a point too, and k256 reads it; an address
    // is a compressed key, so it must be refused (the twin compressed
    // prefix is another point, refused by the maths).
    let own = k.address().0[0];
    for prefix in (0..=255u8).filter(|p| *p != own) {
        let mut a = k.address();
        a.0[0] = prefix;
        assert!(!v.verify(&h, &sig, &a), "the signer's x under prefix {prefix:#04x}");
    }
}

/// r or s of zero, or not below the group order: refused.
pub fn out_of_range_scalars_are_refused(v: &dyn Verifier) {
    let k = Keypair::from_seed(b"alice");
    let h = Hash::digest(b"scalars");
    let sig = k.sign_hash(&h).0;
    let mut cases = Vec::new();
    for (half, value) in [(0, [0u8; 32]), (1, [0u8; 32]), (0, ORDER), (1, ORDER), (0, [0xff; 32]), (1, [0xff; 32])] {
        let mut b = sig;
        b[half * 32..half * 32 + 32].copy_from_slice(&value);
        cases.push(b);
    }
    for (i, b) in cases.into_iter().enumerate() {
        assert!(!v.verify(&h, &Signature(b), &k.address()), "scalar case {i}");
    }
}

/// On random keys, hashes and signatures — valid ones, ones made with
/// another key, and random bytes — `v` answers as [`K256Verifier`] does.
pub fn same_answers_as_k256(v: &dyn Verifier, rounds: usize) {
    let reference = K256Verifier::new();
    for round in 0..rounds {
        let signer = Keypair::generate();
        let h = Hash(rand::random());
        let valid = signer.sign_hash(&h);
        let random_sig = Signature(std::array::from_fn(|_| rand::random()));
        let mut random_key = Address([0; 33]);
        random_key.0[0] = 2 + (rand::random::<u8>() & 1);
        random_key.0[1..].copy_from_slice(&rand::random::<[u8; 32]>());
        // The signer's x under any prefix at all.
        let mut any_prefix = signer.address();
        any_prefix.0[0] = rand::random();
        // The valid signature's high-S twin.
        let mut high = valid.0;
        high[32..].copy_from_slice(&negate(&valid.0[32..]));
        for (what, sig, key) in [
            ("valid", valid, signer.address()),
            ("random signature", random_sig, signer.address()),
            ("valid signature, random key", valid, random_key),
            ("valid signature, the signer's x under a random prefix", valid, any_prefix),
            ("high-S twin", Signature(high), signer.address()),
            ("another hash", valid, signer.address()),
        ] {
            let hash = if what == "another hash" { Hash(rand::random()) } else { h };
            assert_eq!(
                v.verify(&hash, &sig, &key),
                reference.verify(&hash, &sig, &key),
                "round {round}: {what} answered differently from k256"
            );
        }
    }
}
