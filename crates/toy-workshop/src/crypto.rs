//! The workshop's signatures: ECDSA on NIST P-192 over SHA-1, keys as
//! 25-byte compressed SEC1 points, signatures as raw `r‖s` (48 bytes), all
//! in hex; deterministic nonces (RFC 6979) when signing; no low-S rule.
//!
//! That is what the workshop's nodes get from PyPI's `ecdsa` with its
//! defaults (`SigningKey.generate(curve=NIST192p)`, `sign_deterministic`,
//! `to_string("compressed")`). P-192 is too small for real money (about 96
//! bits of security); it is here to speak the workshop's chain, not to
//! secure it. RustCrypto's `p192` deliberately offers no signing key, so
//! signing is built from `ecdsa`'s `sign_prehashed` primitive and the
//! `rfc6979` nonce, the same steps its signing keys take for other curves.

use ecdsa::hazmat::{bits2field, sign_prehashed};
use ecdsa::signature::hazmat::PrehashVerifier;
use p192::elliptic_curve::Field;
use p192::elliptic_curve::ff::PrimeField;
use p192::elliptic_curve::sec1::ToEncodedPoint;
use p192::{NistP192, ProjectivePoint, Scalar};
use sha1::{Digest, Sha1};

use crate::Error;

/// A compressed P-192 public key is 25 bytes.
pub const PUBLIC_KEY_LEN: usize = 25;
/// A raw `r‖s` signature is 48 bytes.
pub const SIGNATURE_LEN: usize = 48;

/// A signing key.
#[derive(Clone)]
pub struct SecretKey(Scalar);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.public_hex())
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        loop {
            let s = Scalar::random(&mut rand::rngs::OsRng);
            if !bool::from(s.is_zero()) {
                return Self(s);
            }
        }
    }

    /// The key with this secret exponent (24 bytes big-endian, as hex).
    ///
    /// # Errors
    /// [`Error::BadKey`] unless it is 48 hex digits of a non-zero scalar
    /// below the group order.
    pub fn from_hex(s: &str) -> Result<Self, Error> {
        let bytes = hex::decode(s.trim()).map_err(|_| Error::BadKey)?;
        let repr: [u8; 24] = bytes.try_into().map_err(|_| Error::BadKey)?;
        let scalar = Option::<Scalar>::from(Scalar::from_repr(repr.into())).ok_or(Error::BadKey)?;
        if bool::from(scalar.is_zero()) {
            return Err(Error::BadKey);
        }
        Ok(Self(scalar))
    }

    /// The secret exponent, 48 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_repr())
    }

    /// The public key as the workshop writes it: compressed, hex.
    pub fn public_hex(&self) -> String {
        let point = (ProjectivePoint::GENERATOR * self.0).to_affine();
        hex::encode(point.to_encoded_point(true).as_bytes())
    }

    /// Signs `message` (SHA-1, RFC 6979 nonce); raw `r‖s` as hex.
    pub fn sign(&self, message: &[u8]) -> String {
        let digest = Sha1::digest(message);
        // A 20-byte digest always fits P-192's 24-byte field.
        let Ok(z) = bits2field::<NistP192>(&digest) else { unreachable!("20 bytes fit a 24-byte field") };
        // RFC 6979 §3.2 with HMAC-SHA-1: the `rfc6979` crate's
        // `generate_k` wants a digest as wide as the field, SHA-1 is not
        // (20 bytes against 24), so its HMAC_DRBG is driven here: draw 24
        // bytes until they make a scalar in [1, n - 1]. `z` is the digest
        // left-padded to 24 bytes, which is bits2octets(H) for a digest
        // shorter than the order.
        let mut drbg = rfc6979::HmacDrbg::<Sha1>::new(&self.0.to_repr(), &z, &[]);
        let k = loop {
            let mut bytes = p192::FieldBytes::default();
            drbg.fill_bytes(&mut bytes);
            if let Some(k) = Option::<Scalar>::from(Scalar::from_repr(bytes))
                && !bool::from(k.is_zero())
            {
                break k;
            }
        };
        match sign_prehashed::<NistP192, Scalar>(&self.0, k, &z) {
            Ok((sig, _)) => hex::encode(sig.to_bytes()),
            Err(_) => unreachable!("RFC 6979 never gives a zero nonce for a valid key"),
        }
    }
}

/// Whether `signature_hex` is `public_hex`'s signature of `message`. False
/// for any malformed key or signature.
///
/// The key may be in any encoding PyPI's `ecdsa` reads
/// (`VerifyingKey.from_string`): compressed, uncompressed, hybrid (`06`/`07`
/// with the matching parity) or raw `x‖y`; hex in either case. Taking less
/// than the workshop's nodes take would refuse blocks they accept and split
/// the chain.
pub fn verify(public_hex: &str, message: &[u8], signature_hex: &str) -> bool {
    let Some(key) = any_public_key(public_hex) else { return false };
    let Ok(sig_bytes) = hex::decode(signature_hex) else { return false };
    let Ok(sig) = p192::ecdsa::Signature::from_slice(&sig_bytes) else { return false };
    key.verify_prehash(&Sha1::digest(message), &sig).is_ok()
}

/// Whether `hex` is a valid compressed P-192 public key, lowercase: what a
/// wallet sends to (the form the workshop's nodes print).
pub fn is_public_key(hex: &str) -> bool {
    !hex.bytes().any(|b| b.is_ascii_uppercase())
        && hex::decode(hex).is_ok_and(|b| b.len() == PUBLIC_KEY_LEN)
        && any_public_key(hex).is_some()
}

/// A key in any encoding `ecdsa`'s `from_string` reads (see [`verify`]).
fn any_public_key(public_hex: &str) -> Option<p192::ecdsa::VerifyingKey> {
    let bytes = hex::decode(public_hex).ok()?;
    let sec1: Vec<u8> = match (bytes.len(), bytes.first()) {
        (PUBLIC_KEY_LEN, Some(2 | 3)) | (49, Some(4)) => bytes,
        // Hybrid: uncompressed with the parity of y in the prefix.
        (49, Some(&prefix @ (6 | 7))) => {
            let odd = bytes.last().is_some_and(|b| b & 1 == 1);
            if odd != (prefix == 7) {
                return None;
            }
            let mut b = bytes;
            b[0] = 4;
            b
        }
        // Raw x‖y.
        (48, _) => std::iter::once(4).chain(bytes).collect(),
        _ => return None,
    };
    p192::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with PyPI's `ecdsa` 0.19.1:
    /// `SigningKey.from_secret_exponent(12345, curve=NIST192p, hashfunc=sha1)`,
    /// `to_string("compressed")` and `sign_deterministic(b"abc", hashfunc=sha1)`.
    #[test]
    fn same_key_and_signature_as_the_workshops_python() {
        let key = SecretKey::from_hex(&format!("{:048x}", 12345)).expect("key");
        assert_eq!(key.public_hex(), "0210c2be1db25cd39384bebba7405d7d5329d318be55cbfa6b");
        let sig = key.sign(b"abc");
        assert_eq!(
            sig,
            "db1ed4fa1160f250fd4d9a38f63abc4499b44b123a8d372677c4342b2387bfe055d080be30bc67fd652b5c6317b1d707"
        );
        assert!(verify(&key.public_hex(), b"abc", &sig));
        assert!(!verify(&key.public_hex(), b"abd", &sig));
    }

    /// The same key as above in the other encodings PyPI's `ecdsa` reads
    /// (`to_string("uncompressed")`, `"hybrid"`, `"raw"`), and in capitals.
    #[test]
    fn every_key_encoding_the_workshops_python_reads_verifies() {
        let key = SecretKey::from_hex(&format!("{:048x}", 12345)).expect("key");
        let sig = key.sign(b"abc");
        let point = {
            use p192::elliptic_curve::sec1::ToEncodedPoint;
            let p = (ProjectivePoint::GENERATOR * Scalar::from(12345u64)).to_affine();
            hex::encode(p.to_encoded_point(false).as_bytes())
        };
        let y_odd = u8::from_str_radix(&point[point.len() - 2..], 16).expect("hex") & 1 == 1;
        let hybrid = format!("{}{}", if y_odd { "07" } else { "06" }, &point[2..]);
        let wrong_hybrid = format!("{}{}", if y_odd { "06" } else { "07" }, &point[2..]);
        for encoding in [point.clone(), hybrid, point[2..].to_owned(), key.public_hex().to_uppercase()] {
            assert!(verify(&encoding, b"abc", &sig), "{encoding}");
        }
        assert!(!verify(&wrong_hybrid, b"abc", &sig), "a hybrid prefix must match y's parity");
        assert!(verify(&key.public_hex(), b"abc", &sig.to_uppercase()));
        assert!(!is_public_key(&point), "a wallet sends to compressed keys only");
    }

    #[test]
    fn malformed_keys_and_signatures_do_not_verify() {
        let key = SecretKey::generate();
        let sig = key.sign(b"m");
        assert!(verify(&key.public_hex(), b"m", &sig));
        assert!(!verify("05aaaa", b"m", &sig));
        assert!(!verify(&key.public_hex(), b"m", &sig[..90]));
        assert!(!verify(&key.public_hex(), b"m", &"0".repeat(96)));
        assert!(!is_public_key(&"0".repeat(66)), "genesis's coinbase is no key");
        assert!(SecretKey::from_hex(&"0".repeat(48)).is_err());
        assert!(SecretKey::from_hex(&"f".repeat(48)).is_err(), "above the order");
        let back = SecretKey::from_hex(&key.to_hex()).expect("round trip");
        assert_eq!(back.public_hex(), key.public_hex());
    }
}
