//! The second verifier: libsecp256k1, the C library Bitcoin Core uses,
//! through the `secp256k1` crate (feature `secp256k1`).

use secp256k1::{Message, PublicKey, Secp256k1, VerifyOnly, ecdsa};

use super::{KeyCache, Verifier};
use crate::types::{Address, Hash, Signature};

/// Verification with libsecp256k1, keeping parsed public keys (at most
/// [`super::DEFAULT_KEY_CACHE`], oldest dropped first).
///
/// Gives the answers [`super::K256Verifier`] gives (the conformance suite
/// runs on both): only compressed keys (a 33-byte address cannot hold
/// another encoding), and only low-S signatures — libsecp256k1's
/// `secp256k1_ecdsa_verify` itself refuses a high S, as Bitcoin Core's
/// policy does since BIP 62/146.
pub struct Secp256k1Verifier {
    ctx: Secp256k1<VerifyOnly>,
    keys: KeyCache<PublicKey>,
}

impl std::fmt::Debug for Secp256k1Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secp256k1Verifier").finish_non_exhaustive()
    }
}

impl Default for Secp256k1Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Secp256k1Verifier {
    /// A verifier with its own verification context and an empty key cache.
    pub fn new() -> Self {
        Self { ctx: Secp256k1::verification_only(), keys: KeyCache::default() }
    }
}

impl Verifier for Secp256k1Verifier {
    fn verify(&self, hash: &Hash, sig: &Signature, signer: &Address) -> bool {
        let Some(key) = self.keys.get(signer, |a| PublicKey::from_byte_array_compressed(&a.0).ok()) else {
            return false;
        };
        // r or s not below the group order: refused here, as by k256.
        let Ok(sig) = ecdsa::Signature::from_compact(&sig.0) else {
            return false;
        };
        self.ctx.verify_ecdsa(&Message::from_digest(hash.0), &sig, &key).is_ok()
    }
}
