//! Addresses, transactions, headers and blocks, and their encodings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::DecodeError;

/// Serde for fixed-size byte arrays of any length as a tuple (no length
/// prefix in postcard); serde's own impls stop at 32.
mod fixed {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer, const N: usize>(bytes: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(N)?;
        for b in bytes {
            t.serialize_element(b)?;
        }
        t.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
        struct V<const N: usize>(PhantomData<[u8; N]>);
        impl<'de, const N: usize> Visitor<'de> for V<N> {
            type Value = [u8; N];
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{N} bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
                let mut out = [0u8; N];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_tuple(N, V::<N>(PhantomData))
    }
}

macro_rules! byte_newtype {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let h = self.to_hex();
                write!(f, "{}({}…)", stringify!($name), &h[..h.len().min(12)])
            }
        }

        impl FromStr for $name {
            type Err = DecodeError;
            fn from_str(s: &str) -> Result<Self, DecodeError> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s.trim(), &mut out).map_err(|_| DecodeError::BadHex { what: stringify!($name), len: $len })?;
                Ok(Self(out))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() { s.serialize_str(&self.to_hex()) } else { fixed::serialize(&self.0, s) }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    fixed::deserialize(d).map(Self)
                }
            }
        }
    };
}

byte_newtype!(
    /// A SHA-256 digest: block hashes, transaction ids, Merkle roots.
    Hash, 32
);
byte_newtype!(
    /// An account address: the compressed secp256k1 public key (33 bytes).
    Address, 33
);
byte_newtype!(
    /// An ECDSA signature over secp256k1, `r || s`, with low `s`.
    Signature, 64
);

impl Address {
    /// Whether these bytes are a compressed secp256k1 public key (a point
    /// on the curve). A transfer to anything else can never be spent: its
    /// coins are burnt. The mempool, the API and the wallet refuse such a
    /// recipient; blocks do not check it (a consensus rule would need a
    /// network upgrade).
    pub fn is_valid_key(&self) -> bool {
        matches!(self.0[0], 2 | 3) && k256::PublicKey::from_sec1_bytes(&self.0).is_ok()
    }
}

impl Hash {
    /// The all-zero hash (the genesis block's parent).
    pub const ZERO: Hash = Hash([0; 32]);

    /// SHA-256 of `data`.
    pub fn digest(data: &[u8]) -> Hash {
        Hash(Sha256::digest(data).into())
    }
}

impl Signature {
    /// The all-zero signature, used for unsigned transactions (always invalid).
    pub const EMPTY: Signature = Signature([0; 64]);
}

/// What a transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxKind {
    /// Moves `amount` from the sender to the recipient.
    Transfer,
    /// Creates `amount` for the recipient; valid only when the sender is the
    /// chain's mint authority.
    Mint,
}

/// A signed transaction.
///
/// Three hashes name it, as in Bitcoin (txid next to wtxid):
///
/// * [`Transaction::id`], the user-facing id: SHA-256 of the encoding without
///   the signature, so it is known before signing and a re-signed transfer
///   keeps its id;
/// * [`Transaction::sighash`], what the sender signs: the id bound to one
///   chain (its genesis hash), so a signature is valid on one network only
///   (the replay protection of Ethereum's EIP-155);
/// * [`Transaction::wtxid`], what a block commits to: SHA-256 of the whole
///   encoding, signature included, so no one can swap a signature under a
///   block's Merkle root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transaction {
    /// Transfer or mint.
    pub kind: TxKind,
    /// Who pays (and signs); for a mint, the mint authority.
    pub sender: Address,
    /// Who receives `amount`.
    pub recipient: Address,
    /// Units moved (or created by a mint).
    pub amount: u64,
    /// Units paid to the miner, from the sender's balance.
    pub fee: u64,
    /// The sender's account nonce this transaction uses; it steps by one.
    pub nonce: u64,
    /// The sender's signature over [`Transaction::sighash`].
    pub signature: Signature,
}

/// The signed part of a transaction (everything but the signature).
#[derive(Serialize)]
struct Unsigned<'a> {
    kind: TxKind,
    sender: &'a Address,
    recipient: &'a Address,
    amount: u64,
    fee: u64,
    nonce: u64,
}

impl Transaction {
    /// The encoding the id is computed from: the postcard encoding of every
    /// field but the signature.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let unsigned = Unsigned {
            kind: self.kind,
            sender: &self.sender,
            recipient: &self.recipient,
            amount: self.amount,
            fee: self.fee,
            nonce: self.nonce,
        };
        // Encoding fixed-size fields and integers into a Vec cannot fail.
        postcard::to_allocvec(&unsigned).unwrap_or_default()
    }

    /// The transaction id: SHA-256 of the encoding without the signature.
    pub fn id(&self) -> Hash {
        Hash::digest(&self.signing_bytes())
    }

    /// The hash the sender signs: `SHA-256("toy-tx" || chain_id || id)`,
    /// where `chain_id` is the genesis hash of the network the transaction is
    /// meant for. The same transfer signed for `dev` is invalid on `test` or
    /// on a network of its own.
    pub fn sighash(&self, chain_id: &Hash) -> Hash {
        Self::sighash_of(&self.id(), chain_id)
    }

    /// [`Transaction::sighash`] from an id already computed.
    pub fn sighash_of(id: &Hash, chain_id: &Hash) -> Hash {
        let mut h = Sha256::new();
        h.update(SIGHASH_TAG);
        h.update(chain_id.0);
        h.update(id.0);
        Hash(h.finalize().into())
    }

    /// The witness id, the Merkle leaf of a block: SHA-256 of the whole
    /// encoding, signature included.
    pub fn wtxid(&self) -> Hash {
        Hash::digest(&self.encode())
    }

    /// `amount + fee`, or `None` on overflow.
    pub fn total_cost(&self) -> Option<u64> {
        self.amount.checked_add(self.fee)
    }

    /// The postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Strict decoding: no trailing bytes, canonical encoding only.
    ///
    /// # Errors
    /// [`DecodeError`] when `bytes` is not exactly one canonical transaction.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(DecodeError::TooLarge { len: bytes.len(), max: MAX_TX_BYTES });
        }
        strict_decode(bytes)
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        postcard::experimental::serialized_size(self).unwrap_or(usize::MAX)
    }
}

/// Domain tag of [`Transaction::sighash`]: a signed message can never be
/// mistaken for another kind of hash.
const SIGHASH_TAG: &[u8] = b"toy-tx";

/// Largest encoded transaction accepted: the fields take at most 180 bytes.
pub const MAX_TX_BYTES: usize = 256;

/// Largest encoded block accepted: 4 MiB, well above 10 000 transactions.
pub const MAX_BLOCK_BYTES: usize = 4 * 1024 * 1024;

/// Bytes of the fixed-width header encoding that is hashed.
pub const HEADER_BYTES: usize = 4 + 8 + 32 + 32 + 8 + 32 + 33 + 8 + 8;

/// Offset of the nonce in the header encoding: the last 8 bytes.
pub const NONCE_OFFSET: usize = HEADER_BYTES - 8;

/// A block header. Hashed from a fixed-width big-endian encoding with the
/// nonce last, so a miner hashes all but the last chunk once per template.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Header {
    /// Format version, currently 1.
    pub version: u32,
    /// Distance from genesis (genesis = 0).
    pub height: u64,
    /// Hash of the parent block.
    pub parent: Hash,
    /// Merkle root of the transactions' [`Transaction::wtxid`]s (see
    /// [`merkle_root`]): commits to every byte of the body.
    pub merkle_root: Hash,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The block hash, as a big-endian number, must be ≤ this.
    pub target: Hash,
    /// Receives the reward and the fees.
    pub miner: Address,
    /// What the miner claims: at most the block subsidy plus the fees.
    pub reward: u64,
    /// Varied by the miner until the hash meets the target.
    pub nonce: u64,
}

impl Header {
    /// The fixed-width encoding that is hashed:
    ///
    /// ```text
    /// version u32 | height u64 | parent 32 | merkle 32 | time u64 | target 32 | miner 33 | reward u64 | nonce u64
    /// 0           4            12          44          76         84          116        149          157..165
    /// ```
    pub fn hashing_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&self.version.to_be_bytes());
        put(&self.height.to_be_bytes());
        put(&self.parent.0);
        put(&self.merkle_root.0);
        put(&self.timestamp_ms.to_be_bytes());
        put(&self.target.0);
        put(&self.miner.0);
        put(&self.reward.to_be_bytes());
        put(&self.nonce.to_be_bytes());
        out
    }

    /// The header whose [`Header::hashing_bytes`] are `bytes` (the wire form
    /// of `chain:headers`); `None` unless exactly [`HEADER_BYTES`] long. Any
    /// such bytes decode: the rules judge them.
    pub fn from_hashing_bytes(bytes: &[u8]) -> Option<Header> {
        let bytes: &[u8; HEADER_BYTES] = bytes.try_into().ok()?;
        let mut at = 0;
        let mut take = |n: usize| {
            let part = &bytes[at..at + n];
            at += n;
            part
        };
        let u32_at = |b: &[u8]| b.try_into().ok().map(u32::from_be_bytes);
        let u64_at = |b: &[u8]| b.try_into().ok().map(u64::from_be_bytes);
        Some(Header {
            version: u32_at(take(4))?,
            height: u64_at(take(8))?,
            parent: Hash(take(32).try_into().ok()?),
            merkle_root: Hash(take(32).try_into().ok()?),
            timestamp_ms: u64_at(take(8))?,
            target: Hash(take(32).try_into().ok()?),
            miner: Address(take(33).try_into().ok()?),
            reward: u64_at(take(8))?,
            nonce: u64_at(take(8))?,
        })
    }

    /// The block hash: SHA-256 of [`Header::hashing_bytes`].
    pub fn hash(&self) -> Hash {
        Hash::digest(&self.hashing_bytes())
    }
}

/// A block: a header and its transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// The transactions, applied in order.
    pub txs: Vec<Transaction>,
}

impl Block {
    /// The block hash (the header's).
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// The postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Strict decoding: bounded size, no trailing bytes, canonical encoding.
    ///
    /// # Errors
    /// [`DecodeError`] when `bytes` is not exactly one canonical block.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_BLOCK_BYTES {
            return Err(DecodeError::TooLarge { len: bytes.len(), max: MAX_BLOCK_BYTES });
        }
        strict_decode(bytes)
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        postcard::experimental::serialized_size(self).unwrap_or(usize::MAX)
    }

    /// The Merkle root of this block's transactions (over their
    /// [`Transaction::wtxid`]s).
    pub fn compute_merkle_root(&self) -> Hash {
        merkle_root(self.txs.iter().map(Transaction::wtxid))
    }
}

/// Decodes exactly one canonical value: trailing bytes and encodings that do
/// not re-encode to the same bytes (non-minimal varints) are errors.
pub(crate) fn strict_decode<T: Serialize + for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, rest): (T, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len() });
    }
    let again = postcard::to_allocvec(&value).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if again != bytes {
        return Err(DecodeError::NonCanonical);
    }
    Ok(value)
}

/// Merkle root of a list of leaf hashes (a block's wtxids), with domain
/// separation as in Certificate Transparency (RFC 6962):
///
/// ```text
/// leaf node  = SHA-256(0x00 || leaf)
/// inner node = SHA-256(0x01 || left || right)
/// an odd last node at a level is carried up unchanged (never paired with itself)
/// ```
///
/// Bitcoin pairs an odd last node with itself, so `[a, b, c]` and
/// `[a, b, c, c]` share a root (CVE-2012-2459) and a mutated body could hide
/// under a genuine header. Carrying the odd node up gives those two lists
/// different roots, and the prefixes keep a leaf from ever being read as an
/// inner node. A block with a repeated leaf is refused anyway (a transaction
/// cannot be applied twice). The root of no leaves is [`Hash::ZERO`].
pub fn merkle_root(leaves: impl IntoIterator<Item = Hash>) -> Hash {
    let mut level: Vec<Hash> = leaves
        .into_iter()
        .map(|leaf| {
            let mut h = Sha256::new();
            h.update([MERKLE_LEAF]);
            h.update(leaf.0);
            Hash(h.finalize().into())
        })
        .collect();
    if level.is_empty() {
        return Hash::ZERO;
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => {
                    let mut h = Sha256::new();
                    h.update([MERKLE_INNER]);
                    h.update(left.0);
                    h.update(right.0);
                    Hash(h.finalize().into())
                }
                [odd] => *odd,
                _ => Hash::ZERO,
            })
            .collect();
    }
    level[0]
}

/// Prefix of a Merkle leaf node.
const MERKLE_LEAF: u8 = 0x00;
/// Prefix of a Merkle inner node.
const MERKLE_INNER: u8 = 0x01;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_tx(n: u64) -> Transaction {
        Transaction {
            kind: TxKind::Transfer,
            sender: Address([2; 33]),
            recipient: Address([3; 33]),
            amount: n,
            fee: 1,
            nonce: n,
            signature: Signature([7; 64]),
        }
    }

    #[test]
    fn header_encoding_is_fixed_width_with_nonce_last() {
        let mut h = Header {
            version: 1,
            height: 5,
            parent: Hash([1; 32]),
            merkle_root: Hash([2; 32]),
            timestamp_ms: 9,
            target: Hash([0xff; 32]),
            miner: Address([3; 33]),
            reward: 10_000,
            nonce: 0x0102_0304_0506_0708,
        };
        let bytes = h.hashing_bytes();
        assert_eq!(bytes.len(), 165);
        assert_eq!(&bytes[NONCE_OFFSET..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let before = h.hash();
        h.nonce += 1;
        assert_ne!(h.hash(), before);
        assert_eq!(bytes[..NONCE_OFFSET], h.hashing_bytes()[..NONCE_OFFSET]);
    }

    #[test]
    fn tx_id_ignores_the_signature() {
        let a = sample_tx(1);
        let mut b = a.clone();
        b.signature = Signature([9; 64]);
        assert_eq!(a.id(), b.id());
        b.amount += 1;
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn strict_decoding_rejects_trailing_and_non_canonical_bytes() {
        let tx = sample_tx(300);
        let mut bytes = tx.encode();
        assert_eq!(Transaction::decode(&bytes).expect("round trip"), tx);
        bytes.push(0);
        assert!(matches!(Transaction::decode(&bytes), Err(DecodeError::TrailingBytes { count: 1 })));
        // The amount 300 is the varint [0xac, 0x02] right after the two
        // addresses and the kind; pad it to a non-minimal 3-byte varint.
        let good = tx.encode();
        let at = 1 + 33 + 33;
        assert_eq!(&good[at..at + 2], &[0xac, 0x02]);
        let mut padded = good[..at].to_vec();
        padded.extend_from_slice(&[0xac, 0x82, 0x00]);
        padded.extend_from_slice(&good[at + 2..]);
        assert!(Transaction::decode(&padded).is_err(), "non-minimal varint must be refused");
    }

    fn node(prefix: u8, parts: &[&Hash]) -> Hash {
        let mut bytes = vec![prefix];
        for p in parts {
            bytes.extend_from_slice(&p.0);
        }
        Hash::digest(&bytes)
    }

    #[test]
    fn merkle_root_of_known_leaves() {
        assert_eq!(merkle_root([]), Hash::ZERO);
        let (a, b, c) = (Hash::digest(b"a"), Hash::digest(b"b"), Hash::digest(b"c"));
        let (la, lb, lc) = (node(0, &[&a]), node(0, &[&b]), node(0, &[&c]));
        assert_eq!(merkle_root([a]), la);
        let ab = node(1, &[&la, &lb]);
        assert_eq!(merkle_root([a, b]), ab);
        // Odd count: the last node is carried up, not paired with itself.
        assert_eq!(merkle_root([a, b, c]), node(1, &[&ab, &lc]));
    }

    #[test]
    fn repeating_the_odd_leaf_changes_the_root() {
        // CVE-2012-2459: with self-pairing these two lists share a root.
        let leaves: Vec<Hash> = (0u8..3).map(|i| Hash::digest(&[i])).collect();
        let mut mutated = leaves.clone();
        mutated.push(leaves[2]);
        assert_ne!(merkle_root(leaves.iter().copied()), merkle_root(mutated.iter().copied()));
        for n in 1u8..12 {
            let leaves: Vec<Hash> = (0..n).map(|i| Hash::digest(&[i])).collect();
            let mut longer = leaves.clone();
            longer.extend_from_slice(&leaves[leaves.len().saturating_sub(2)..]);
            assert_ne!(merkle_root(leaves.iter().copied()), merkle_root(longer.iter().copied()), "{n} leaves");
        }
    }

    #[test]
    fn wtxid_commits_to_the_signature_and_id_does_not() {
        let a = sample_tx(1);
        let mut b = a.clone();
        b.signature = Signature([9; 64]);
        assert_eq!(a.id(), b.id());
        assert_ne!(a.wtxid(), b.wtxid());
        assert_ne!(a.sighash(&Hash([1; 32])), a.sighash(&Hash([2; 32])), "the chain id is signed");
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let a = Address([0xab; 33]);
        assert_eq!(a.to_hex().parse::<Address>().expect("hex"), a);
        assert!("zz".parse::<Address>().is_err());
        assert!("abcd".parse::<Hash>().is_err());
    }

    proptest! {
        #[test]
        fn block_round_trips(n in 0usize..20, seed in any::<u64>()) {
            let txs: Vec<Transaction> = (0..n as u64).map(|i| sample_tx(i.wrapping_mul(seed))).collect();
            let block = Block {
                header: Header { version: 1, height: seed, parent: Hash([1; 32]), merkle_root: Hash::ZERO, timestamp_ms: seed, target: Hash([0xff; 32]), miner: Address([4; 33]), reward: seed, nonce: seed },
                txs,
            };
            prop_assert_eq!(Block::decode(&block.encode()).expect("round trip"), block);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = Block::decode(&bytes);
            let _ = Transaction::decode(&bytes);
        }
    }
}
