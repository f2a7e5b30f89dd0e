//! The chain layer's errors: one enum per operation.

use crate::types::Hash;

/// Bytes that are not a valid encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// More bytes than any valid value of this type.
    #[error("{len} bytes exceed the maximum of {max}")]
    TooLarge {
        /// Input length.
        len: usize,
        /// Maximum.
        max: usize,
    },
    /// Bytes left after the value.
    #[error("{count} trailing bytes after the value")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The value decodes but its canonical encoding differs (e.g. a padded varint).
    #[error("non-canonical encoding")]
    NonCanonical,
    /// Not a valid postcard encoding of the type.
    #[error("malformed encoding: {0}")]
    Malformed(String),
    /// Not hex of the right length.
    #[error("{what} must be {len} bytes of hex")]
    BadHex {
        /// The type parsed.
        what: &'static str,
        /// Expected byte length.
        len: usize,
    },
}

/// Why a transaction is invalid against a state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The signature does not verify against the sender (or is missing).
    #[error("bad signature")]
    BadSignature,
    /// The nonce is not the sender's next nonce (lower: a replay).
    #[error("wrong nonce: expected {expected}, got {got}")]
    WrongNonce {
        /// The sender's account nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The sender cannot pay amount + fee.
    #[error("insufficient balance: have {balance}, need {needed}")]
    InsufficientBalance {
        /// The sender's balance.
        balance: u64,
        /// amount + fee.
        needed: u64,
    },
    /// amount + fee, or a resulting balance, does not fit in a u64.
    #[error("arithmetic overflow")]
    Overflow,
    /// A mint not signed by the chain's mint authority.
    #[error("mint not signed by the mint authority")]
    UnauthorisedMint,
}

/// Why a block is invalid. An invalid block changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The header's version is not supported.
    #[error("unsupported version {0}")]
    BadVersion(u32),
    /// The parent is not known.
    #[error("unknown parent {0}")]
    UnknownParent(Hash),
    /// The parent (or an ancestor) is invalid.
    #[error("descends from invalid block {0}")]
    InvalidAncestor(Hash),
    /// Height is not parent height + 1.
    #[error("wrong height: expected {expected}, got {got}")]
    WrongHeight {
        /// Parent height + 1.
        expected: u64,
        /// The header's height.
        got: u64,
    },
    /// The target is not the one the rules require at this height.
    #[error("wrong target: expected {expected}, got {got}")]
    WrongTarget {
        /// Required target.
        expected: Hash,
        /// The header's target.
        got: Hash,
    },
    /// The hash does not meet the target.
    #[error("hash {hash} does not meet the target")]
    BadProofOfWork {
        /// The block hash.
        hash: Hash,
    },
    /// The Merkle root does not match the transactions.
    #[error("merkle root mismatch")]
    BadMerkleRoot,
    /// Timestamp not after the median of recent blocks.
    #[error("timestamp {timestamp_ms} not after the median time past {median_ms}")]
    TimestampTooOld {
        /// The header's timestamp.
        timestamp_ms: u64,
        /// Median of the recent blocks' timestamps.
        median_ms: u64,
    },
    /// The first block of a retarget window is stamped earlier than its
    /// parent minus the allowed grace (BIP 94's timewarp rule).
    #[error("timestamp {timestamp_ms} before {min_ms}, the earliest a retarget window may start")]
    TimeWarp {
        /// The header's timestamp.
        timestamp_ms: u64,
        /// The parent's timestamp minus the grace.
        min_ms: u64,
    },
    /// The header's target is easier than the chain's easiest
    /// ([`crate::ChainParams::pow_limit`]).
    #[error("target {target} is easier than the limit {limit}")]
    TargetTooEasy {
        /// The header's target.
        target: Hash,
        /// The easiest allowed.
        limit: Hash,
    },
    /// Timestamp too far in the future.
    #[error("timestamp {timestamp_ms} beyond the allowed {max_ms}")]
    TimestampTooFarAhead {
        /// The header's timestamp.
        timestamp_ms: u64,
        /// Now plus the allowed drift.
        max_ms: u64,
    },
    /// More transactions than allowed.
    #[error("{count} transactions, at most {max} allowed")]
    TooManyTxs {
        /// Count in the block.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// The same transaction (or the same Merkle leaf) appears twice.
    #[error("transaction {0} appears twice")]
    DuplicateTx(Hash),
    /// A transaction is invalid.
    #[error("transaction {index} ({id}): {error}")]
    Tx {
        /// Position in the block.
        index: usize,
        /// Its id.
        id: Hash,
        /// What is wrong.
        error: TxError,
    },
    /// The miner claims more than subsidy + fees.
    #[error("reward {claimed} exceeds subsidy + fees = {max}")]
    RewardTooLarge {
        /// The header's reward.
        claimed: u64,
        /// Subsidy + fees.
        max: u64,
    },
    /// The encoding is over the size limit.
    #[error("block of {len} bytes exceeds {max}")]
    TooLarge {
        /// Encoded size.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error.
    #[error("database: {0}")]
    Db(String),
    /// Stored bytes failed to decode: the store is corrupt.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// An I/O error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The database is open elsewhere (another node on the same data
    /// directory).
    #[error("the database is in use by another process")]
    InUse,
}

/// Errors of the block tree's operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The block is invalid.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// Storage failed; the in-memory view was left as of the last commit.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store does not match these chain parameters (another genesis).
    #[error("store holds genesis {stored}, parameters say {expected}")]
    GenesisMismatch {
        /// Genesis in the store.
        stored: Hash,
        /// Genesis of the parameters.
        expected: Hash,
    },
    /// The chain actor has stopped (or the job panicked), so the operation
    /// got no answer.
    #[error("the chain has stopped")]
    Stopped,
}

/// Key file and key handling errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not 32 bytes of hex, or not a valid secret scalar.
    #[error("invalid secret key")]
    Invalid,
    /// Reading or writing the key file failed.
    #[error("key file: {0}")]
    Io(#[from] std::io::Error),
}
