//! Keys, signing and verification, and the signature cache.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use k256::ecdsa::{SigningKey, VerifyingKey};

use crate::error::KeyError;
use crate::types::{Address, Hash, Signature, Transaction};

#[cfg(any(test, feature = "test-utils"))]
pub mod conformance;
#[cfg(feature = "secp256k1")]
mod secp;
#[cfg(feature = "secp256k1")]
pub use secp::Secp256k1Verifier;

/// A secp256k1 key pair; its address is the compressed public key.
#[derive(Clone)]
pub struct Keypair {
    sk: SigningKey,
    address: Address,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keypair").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Keypair {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::random(&mut rand::rngs::OsRng))
    }

    /// A deterministic key from a seed (SHA-256 of the seed, re-hashed in the
    /// astronomically rare case it is not a valid scalar). For tests, the
    /// dev preset's genesis wallets and the oracle.
    pub fn from_seed(seed: &[u8]) -> Self {
        let mut h = Hash::digest(seed);
        loop {
            if let Ok(sk) = SigningKey::from_slice(&h.0) {
                return Self::from_signing_key(sk);
            }
            h = Hash::digest(&h.0);
        }
    }

    /// The key with this 32-byte secret.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when the bytes are zero or not below the curve order.
    pub fn from_secret(secret: &[u8; 32]) -> Result<Self, KeyError> {
        SigningKey::from_slice(secret).map(Self::from_signing_key).map_err(|_| KeyError::Invalid)
    }

    fn from_signing_key(sk: SigningKey) -> Self {
        let point = sk.verifying_key().to_encoded_point(true);
        let mut address = [0u8; 33];
        address.copy_from_slice(point.as_bytes());
        Self { sk, address: Address(address) }
    }

    /// The address (compressed public key).
    pub fn address(&self) -> Address {
        self.address
    }

    /// The secret as hex (for the key file).
    pub fn secret_hex(&self) -> String {
        hex::encode(self.sk.to_bytes())
    }

    /// Signs a 32-byte message hash: deterministic (RFC 6979) and low-S.
    pub fn sign_hash(&self, hash: &Hash) -> Signature {
        let sig: k256::ecdsa::Signature = match self.sk.sign_prehash(&hash.0) {
            Ok(sig) => sig,
            // A 32-byte prehash is always accepted by k256.
            Err(_) => return Signature::EMPTY,
        };
        let sig = sig.normalize_s().unwrap_or(sig);
        let mut out = [0u8; 64];
        out.copy_from_slice(&sig.to_bytes());
        Signature(out)
    }

    /// Sets `tx.signature` to this key's signature over
    /// [`Transaction::sighash`] for the chain named `chain_id` (its genesis
    /// hash, [`crate::ChainParams::chain_id`]).
    pub fn sign_tx(&self, tx: &mut Transaction, chain_id: &Hash) {
        tx.signature = self.sign_hash(&tx.sighash(chain_id));
    }

    /// Writes the secret as hex to `path`, readable by the owner only (0600).
    ///
    /// # Errors
    /// [`KeyError::Io`] when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path)?;
        writeln!(f, "{}", self.secret_hex())?;
        f.sync_all()?;
        Ok(())
    }

    /// Reads a key file written by [`Keypair::save`].
    ///
    /// # Errors
    /// [`KeyError::Io`] or [`KeyError::Invalid`].
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path)?;
        let mut secret = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut secret).map_err(|_| KeyError::Invalid)?;
        Self::from_secret(&secret)
    }

    /// Loads the key at `path`, creating it (0600) on first use. Returns the
    /// key and whether it was created.
    ///
    /// # Errors
    /// As [`Keypair::load`] and [`Keypair::save`].
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let key = Self::generate();
        key.save(path)?;
        Ok((key, true))
    }
}

/// Verifies signatures. [`K256Verifier`] is the default; with the
/// `secp256k1` feature, `Secp256k1Verifier` (libsecp256k1) is the second
/// backend, and any other can implement this trait and be passed to the
/// chain instead. Every implementation must give the answers the
/// `conformance` suite checks (low-S only, compressed keys only).
pub trait Verifier: Send + Sync + 'static {
    /// Whether `sig` is `signer`'s valid low-S signature over `hash`.
    fn verify(&self, hash: &Hash, sig: &Signature, signer: &Address) -> bool;
}

/// Parsed public keys a verifier keeps: 4 096.
///
/// Parsing a compressed key costs a square root in the field, about a sixth
/// of a verification; accounts sign again and again, so their parsed keys are
/// kept.
pub const DEFAULT_KEY_CACHE: usize = 4096;

/// Parsed public keys a verifier keeps, by address.
///
/// Bounded: at most [`DEFAULT_KEY_CACHE`] keys; when full, the oldest is
/// dropped first (FIFO). Shared by both verifiers.
#[derive(Debug)]
pub(crate) struct KeyCache<K> {
    inner: Mutex<(HashMap<Address, K>, VecDeque<Address>)>,
}

impl<K> Default for KeyCache<K> {
    fn default() -> Self {
        Self { inner: Mutex::new((HashMap::new(), VecDeque::new())) }
    }
}

impl<K: Copy> KeyCache<K> {
    /// The parsed key of `signer`, parsing it with `parse` (outside the
    /// lock) when it is not kept; `None` when it is no key.
    pub(crate) fn get(&self, signer: &Address, parse: impl FnOnce(&Address) -> Option<K>) -> Option<K> {
        if let Some(k) = self.inner.lock().unwrap_or_else(PoisonError::into_inner).0.get(signer) {
            return Some(*k);
        }
        let key = parse(signer)?;
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (map, order) = &mut *guard;
        if map.insert(*signer, key).is_none() {
            order.push_back(*signer);
            while order.len() > DEFAULT_KEY_CACHE {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
        Some(key)
    }
}

/// Verification with the pure-Rust `k256` crate, keeping parsed public keys
/// (at most [`DEFAULT_KEY_CACHE`], oldest dropped first).
#[derive(Debug, Default)]
pub struct K256Verifier {
    keys: KeyCache<VerifyingKey>,
}

impl K256Verifier {
    /// A verifier with an empty key cache.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Verifier for K256Verifier {
    fn verify(&self, hash: &Hash, sig: &Signature, signer: &Address) -> bool {
        // Compressed keys only: k256's SEC1 parser would also take the
        // 33-byte "compact" encoding (prefix 05), which libsecp256k1 refuses;
        // two verifiers must never disagree on a block.
        let compressed =
            |a: &Address| matches!(a.0[0], 2 | 3).then(|| VerifyingKey::from_sec1_bytes(&a.0).ok()).flatten();
        let Some(key) = self.keys.get(signer, compressed) else {
            return false;
        };
        let Ok(sig) = k256::ecdsa::Signature::from_slice(&sig.0) else {
            return false;
        };
        // High-S signatures are malleable copies; refuse them.
        if sig.normalize_s().is_some() {
            return false;
        }
        key.verify_prehash(&hash.0, &sig).is_ok()
    }
}

/// Default capacity of the signature cache: 65 536 entries (~6 MiB), about
/// the transactions of a full mempool plus the blocks of a long reorg.
pub const DEFAULT_SIG_CACHE: usize = 65_536;

/// Remembers (sighash, signature) pairs that verified, so a
/// transaction checked when it entered the mempool is not checked again when
/// its block is imported.
///
/// Bounded: at most `capacity` entries; when full, the oldest entry is
/// evicted first (FIFO).
#[derive(Debug)]
pub struct SigCache {
    inner: Mutex<CacheInner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct CacheInner {
    set: HashSet<(Hash, Signature)>,
    order: VecDeque<(Hash, Signature)>,
}

impl SigCache {
    /// A cache holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self { inner: Mutex::new(CacheInner::default()), capacity: capacity.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this exact signature over this [`Transaction::sighash`]
    /// verified before.
    pub fn contains(&self, id: &Hash, sig: &Signature) -> bool {
        self.lock().set.contains(&(*id, *sig))
    }

    /// Records a verified signature.
    pub fn insert(&self, id: Hash, sig: Signature) {
        let mut inner = self.lock();
        if !inner.set.insert((id, sig)) {
            return;
        }
        inner.order.push_back((id, sig));
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.set.remove(&old);
            }
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Verifies a transaction's signature over `sighash` (its
    /// [`Transaction::sighash`]) through the cache.
    pub fn verify_tx(&self, verifier: &dyn Verifier, tx: &Transaction, sighash: &Hash) -> bool {
        let id = sighash;
        if self.contains(id, &tx.signature) {
            return true;
        }
        let ok = verifier.verify(id, &tx.signature, &tx.sender);
        if ok {
            self.insert(*id, tx.signature);
        }
        ok
    }
}

impl Default for SigCache {
    fn default() -> Self {
        Self::new(DEFAULT_SIG_CACHE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TxKind;

    const CHAIN: Hash = Hash([7; 32]);

    fn tx(from: &Keypair, to: Address) -> Transaction {
        let mut t = Transaction {
            kind: TxKind::Transfer,
            sender: from.address(),
            recipient: to,
            amount: 5,
            fee: 1,
            nonce: 0,
            signature: Signature::EMPTY,
        };
        from.sign_tx(&mut t, &CHAIN);
        t
    }

    #[test]
    fn signatures_are_deterministic_low_s_and_verify() {
        let k = Keypair::from_seed(b"alice");
        let t = tx(&k, Keypair::from_seed(b"bob").address());
        assert_eq!(k.sign_hash(&t.sighash(&CHAIN)), t.signature, "deterministic");
        assert!(K256Verifier::new().verify(&t.sighash(&CHAIN), &t.signature, &k.address()));
        let sig = k256::ecdsa::Signature::from_slice(&t.signature.0).expect("valid");
        assert!(sig.normalize_s().is_none(), "low S");
    }

    #[test]
    fn rejects_wrong_signer_tampered_tx_high_s_and_empty() {
        let k = Keypair::from_seed(b"alice");
        let other = Keypair::from_seed(b"mallory");
        let t = tx(&k, other.address());
        assert!(!K256Verifier::new().verify(&t.sighash(&CHAIN), &t.signature, &other.address()));
        assert!(!K256Verifier::new().verify(&t.sighash(&Hash([8; 32])), &t.signature, &k.address()), "another chain");
        let mut changed = t.clone();
        changed.amount += 1;
        assert!(!K256Verifier::new().verify(&changed.sighash(&CHAIN), &changed.signature, &k.address()));
        assert!(!K256Verifier::new().verify(&t.sighash(&CHAIN), &Signature::EMPTY, &k.address()));
        // The high-S twin of a valid signature: s' = n - s.
        let sig = k256::ecdsa::Signature::from_slice(&t.signature.0).expect("valid");
        let (r, s) = sig.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*s).expect("valid scalars");
        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(&high.to_bytes());
        assert!(!K256Verifier::new().verify(&t.sighash(&CHAIN), &Signature(bytes), &k.address()), "high S refused");
        assert!(!K256Verifier::new().verify(&t.sighash(&CHAIN), &t.signature, &Address([0; 33])), "invalid key");
    }

    #[test]
    fn k256_passes_the_verifier_conformance_suite() {
        conformance::run_all(&K256Verifier::new());
    }

    #[cfg(feature = "secp256k1")]
    #[test]
    fn libsecp256k1_passes_the_verifier_conformance_suite() {
        conformance::run_all(&Secp256k1Verifier::new());
    }

    #[test]
    fn cache_is_bounded_fifo_and_keyed_by_signature() {
        let cache = SigCache::new(2);
        let k = Keypair::from_seed(b"a");
        let t = tx(&k, k.address());
        let id = t.sighash(&CHAIN);
        assert!(cache.verify_tx(&K256Verifier::new(), &t, &id));
        assert!(cache.contains(&id, &t.signature));
        assert!(!cache.contains(&id, &Signature::EMPTY), "another signature is not cached");
        cache.insert(Hash([1; 32]), Signature::EMPTY);
        cache.insert(Hash([2; 32]), Signature::EMPTY);
        assert_eq!(cache.len(), 2);
        assert!(!cache.contains(&id, &t.signature), "oldest evicted first");
    }

    #[test]
    fn key_file_round_trips_with_owner_only_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/wallet.key");
        let (k, created) = Keypair::load_or_create(&path).expect("create");
        assert!(created);
        let (again, created) = Keypair::load_or_create(&path).expect("load");
        assert!(!created);
        assert_eq!(k.address(), again.address());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex").expect("write");
        assert!(matches!(Keypair::load(&path), Err(KeyError::Invalid)));
    }
}
