//! The mempool: transactions waiting for a block.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::crypto::{SigCache, Verifier};
use crate::params::ChainParams;
use crate::state::State;
use crate::types::{Address, Hash, Transaction, TxKind};

/// Limits of the mempool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Most transactions held (default 10 000: ten full dev blocks).
    pub max_count: usize,
    /// Most encoded bytes held (default 4 MiB).
    pub max_bytes: usize,
    /// Most transactions of one sender (default 64), so one account cannot
    /// fill the pool; also the furthest nonce ahead of the account accepted.
    pub max_per_sender: usize,
    /// Age after which a transaction is dropped, in ms (default 1 h).
    pub expiry_ms: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self { max_count: 10_000, max_bytes: 4 * 1024 * 1024, max_per_sender: 64, expiry_ms: 60 * 60 * 1000 }
    }
}

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MempoolError {
    /// Already in the pool.
    #[error("already in the mempool")]
    AlreadyKnown,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// A mint not signed by the mint authority.
    #[error("mint not signed by the mint authority")]
    UnauthorisedMint,
    /// The nonce was already used (a replay or a stale transaction).
    #[error("nonce {got} already used; account nonce is {expected}")]
    NonceTooLow {
        /// The account's nonce.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// The nonce is too far ahead of the account's.
    #[error("nonce {got} too far ahead of account nonce {expected}")]
    NonceTooHigh {
        /// The account's nonce.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// The sender cannot pay this and their other pending transactions.
    #[error("insufficient balance: have {balance}, pending total would be {needed}")]
    InsufficientBalance {
        /// The sender's balance.
        balance: u64,
        /// Pending costs including this transaction.
        needed: u128,
    },
    /// amount + fee overflows.
    #[error("amount + fee overflows")]
    Overflow,
    /// The sender already has the maximum of pending transactions.
    #[error("sender already has {max} pending transactions")]
    SenderFull {
        /// The per-sender limit.
        max: usize,
    },
    /// The pool is full of transactions paying at least as much.
    #[error("mempool full; fee {fee} too low to evict anything")]
    PoolFull {
        /// The rejected transaction's fee.
        fee: u64,
    },
    /// The recipient is not a compressed secp256k1 public key (its coins
    /// could never be spent).
    #[error("the recipient is not a compressed secp256k1 public key")]
    BadRecipient,
    /// A replacement for the same nonce must pay a higher fee.
    #[error("replacement fee {new_fee} not above the pending {old_fee}")]
    ReplacementUnderpriced {
        /// The pending transaction's fee.
        old_fee: u64,
        /// The replacement's fee.
        new_fee: u64,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    tx: Transaction,
    size: usize,
    added_ms: u64,
    seq: u64,
}

/// Transactions waiting for a block, checked on entry.
///
/// Bounded by [`MempoolConfig`]: at most `max_count` transactions and
/// `max_bytes` bytes (the lowest fee is evicted first, with the sender's
/// later nonces, which could no longer be mined), at most `max_per_sender`
/// per sender, and none older than `expiry_ms`.
#[derive(Debug, Default)]
pub struct Mempool {
    config: MempoolConfig,
    by_id: HashMap<Hash, Entry>,
    by_sender: HashMap<Address, BTreeMap<u64, Hash>>,
    /// (fee, -seq as newest-first tiebreak, id): the first is evicted first.
    by_fee: BTreeSet<(u64, u64, Hash)>,
    bytes: usize,
    seq: u64,
}

impl Mempool {
    /// An empty pool with these limits.
    pub fn new(config: MempoolConfig) -> Self {
        Self { config, ..Self::default() }
    }

    /// Transactions held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Encoded bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether `id` is pending.
    pub fn contains(&self, id: &Hash) -> bool {
        self.by_id.contains_key(id)
    }

    /// A pending transaction.
    pub fn get(&self, id: &Hash) -> Option<&Transaction> {
        self.by_id.get(id).map(|e| &e.tx)
    }

    /// Every pending transaction (no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (&Hash, &Transaction)> {
        self.by_id.iter().map(|(id, e)| (id, &e.tx))
    }

    /// Up to `max` ids, the highest fee first (the oldest first within a
    /// fee), without sorting anything.
    pub fn ids_by_fee(&self, max: usize) -> Vec<Hash> {
        self.by_fee.iter().rev().take(max).map(|(_, _, id)| *id).collect()
    }

    /// Whether a transaction of `sender` with `nonce` is pending.
    pub fn has_nonce(&self, sender: &Address, nonce: u64) -> bool {
        self.by_sender.get(sender).is_some_and(|m| m.contains_key(&nonce))
    }

    /// Each sender's pending transactions, in nonce order.
    pub fn by_sender(&self) -> impl Iterator<Item = (&Address, Vec<&Transaction>)> {
        self.by_sender.iter().map(|(a, m)| (a, m.values().filter_map(|id| self.by_id.get(id).map(|e| &e.tx)).collect()))
    }

    /// Checks `tx` against `state` and admits it.
    ///
    /// # Errors
    /// The [`MempoolError`] saying why it was refused; the pool is unchanged.
    pub fn add(
        &mut self,
        tx: Transaction,
        state: &State,
        params: &ChainParams,
        verifier: &dyn Verifier,
        cache: &SigCache,
        now_ms: u64,
    ) -> Result<Hash, MempoolError> {
        let id = tx.id();
        if self.by_id.contains_key(&id) {
            return Err(MempoolError::AlreadyKnown);
        }
        if tx.kind == TxKind::Mint && params.mint_authority != Some(tx.sender) {
            return Err(MempoolError::UnauthorisedMint);
        }
        if !tx.recipient.is_valid_key() {
            return Err(MempoolError::BadRecipient);
        }
        let cost = match tx.kind {
            TxKind::Transfer => tx.total_cost().ok_or(MempoolError::Overflow)?,
            TxKind::Mint => tx.fee,
        };
        if tx.kind == TxKind::Mint && tx.total_cost().is_none() {
            return Err(MempoolError::Overflow);
        }
        let account = state.account(&tx.sender);
        if tx.nonce < account.nonce {
            return Err(MempoolError::NonceTooLow { expected: account.nonce, got: tx.nonce });
        }
        if tx.nonce - account.nonce >= self.config.max_per_sender as u64 {
            return Err(MempoolError::NonceTooHigh { expected: account.nonce, got: tx.nonce });
        }
        let pending = self.by_sender.get(&tx.sender);
        let replaced = pending.and_then(|m| m.get(&tx.nonce)).copied();
        if let Some(old) = replaced.and_then(|old| self.by_id.get(&old)) {
            if tx.fee <= old.tx.fee {
                return Err(MempoolError::ReplacementUnderpriced { old_fee: old.tx.fee, new_fee: tx.fee });
            }
        } else if pending.is_some_and(|m| m.len() >= self.config.max_per_sender) {
            return Err(MempoolError::SenderFull { max: self.config.max_per_sender });
        }
        let pending_cost: u128 = pending
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|pid| Some(**pid) != replaced)
            .filter_map(|pid| self.by_id.get(pid))
            .map(|e| entry_cost(&e.tx) as u128)
            .sum();
        let needed = pending_cost + cost as u128;
        if needed > account.balance as u128 {
            return Err(MempoolError::InsufficientBalance { balance: account.balance, needed });
        }
        // The signature last: it is the expensive check.
        if !cache.verify_tx(verifier, &tx, &Transaction::sighash_of(&id, &params.chain_id())) {
            return Err(MempoolError::BadSignature);
        }
        let size = tx.encoded_len();
        // Make room by evicting cheaper transactions.
        let replaced_size = replaced.and_then(|r| self.by_id.get(&r)).map_or(0, |e| e.size);
        let replaced_count = usize::from(replaced.is_some());
        while self.by_id.len() - replaced_count >= self.config.max_count
            || self.bytes - replaced_size + size > self.config.max_bytes
        {
            let Some(&(fee, _, victim)) = self.by_fee.iter().find(|(_, _, v)| Some(*v) != replaced) else {
                return Err(MempoolError::PoolFull { fee: tx.fee });
            };
            if fee >= tx.fee {
                return Err(MempoolError::PoolFull { fee: tx.fee });
            }
            if self.by_id.get(&victim).is_some_and(|e| e.tx.sender == tx.sender && e.tx.nonce < tx.nonce) {
                // Evicting our own earlier nonce would strand this one.
                return Err(MempoolError::PoolFull { fee: tx.fee });
            }
            self.remove_with_successors(&victim);
        }
        if let Some(old) = replaced {
            self.remove_one(&old);
        }
        self.seq += 1;
        self.by_fee.insert((tx.fee, u64::MAX - self.seq, id));
        self.by_sender.entry(tx.sender).or_default().insert(tx.nonce, id);
        self.bytes += size;
        self.by_id.insert(id, Entry { tx, size, added_ms: now_ms, seq: self.seq });
        Ok(id)
    }

    fn remove_one(&mut self, id: &Hash) -> Option<Transaction> {
        let e = self.by_id.remove(id)?;
        self.by_fee.remove(&(e.tx.fee, u64::MAX - e.seq, *id));
        if let Some(m) = self.by_sender.get_mut(&e.tx.sender) {
            m.remove(&e.tx.nonce);
            if m.is_empty() {
                self.by_sender.remove(&e.tx.sender);
            }
        }
        self.bytes -= e.size;
        Some(e.tx)
    }

    /// Removes `id` and the same sender's later nonces (they could no longer
    /// be mined).
    fn remove_with_successors(&mut self, id: &Hash) {
        let Some(e) = self.by_id.get(id) else { return };
        let (sender, nonce) = (e.tx.sender, e.tx.nonce);
        let later: Vec<Hash> =
            self.by_sender.get(&sender).map(|m| m.range(nonce..).map(|(_, h)| *h).collect()).unwrap_or_default();
        for h in later {
            self.remove_one(&h);
        }
    }

    /// After a block connected: drops its transactions and every pending
    /// transaction of its senders whose nonce is now used.
    pub fn remove_included(&mut self, txs: &[Transaction], state: &State) {
        for tx in txs {
            self.remove_one(&tx.id());
        }
        let senders: Vec<Address> = txs.iter().map(|t| t.sender).collect();
        for sender in senders {
            let next = state.account(&sender).nonce;
            let stale: Vec<Hash> =
                self.by_sender.get(&sender).map(|m| m.range(..next).map(|(_, h)| *h).collect()).unwrap_or_default();
            for h in stale {
                self.remove_one(&h);
            }
        }
    }

    /// After a reorg: offers the transactions of disconnected blocks again.
    /// Those no longer valid against `state` are dropped; returns how many
    /// were taken back.
    pub fn readmit(
        &mut self,
        txs: impl IntoIterator<Item = Transaction>,
        state: &State,
        params: &ChainParams,
        verifier: &dyn Verifier,
        cache: &SigCache,
        now_ms: u64,
    ) -> usize {
        let mut txs: Vec<Transaction> = txs.into_iter().collect();
        txs.sort_by_key(|t| (t.sender, t.nonce));
        txs.into_iter().filter(|tx| self.add(tx.clone(), state, params, verifier, cache, now_ms).is_ok()).count()
    }

    /// Drops transactions older than the expiry (with their later nonces);
    /// returns how many were dropped.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.by_id.len();
        let old: Vec<Hash> = self
            .by_id
            .iter()
            .filter(|(_, e)| now_ms.saturating_sub(e.added_ms) > self.config.expiry_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            self.remove_with_successors(&id);
        }
        before - self.by_id.len()
    }

    /// Drops what no longer fits `state` (used nonces, senders who can no
    /// longer pay), e.g. after a reorg.
    pub fn revalidate(&mut self, state: &State) {
        let senders: Vec<Address> = self.by_sender.keys().copied().collect();
        for sender in senders {
            let acc = state.account(&sender);
            let ids: Vec<Hash> = self.by_sender.get(&sender).map(|m| m.values().copied().collect()).unwrap_or_default();
            let mut budget = acc.balance as u128;
            for id in ids {
                let Some(tx) = self.by_id.get(&id).map(|e| e.tx.clone()) else { continue };
                let cost = entry_cost(&tx) as u128;
                if tx.nonce < acc.nonce {
                    self.remove_one(&id);
                } else if cost > budget {
                    self.remove_with_successors(&id);
                    break;
                } else {
                    budget -= cost;
                }
            }
        }
    }
}

/// What a pending transaction takes from its sender's balance.
fn entry_cost(tx: &Transaction) -> u64 {
    match tx.kind {
        TxKind::Transfer => tx.amount.saturating_add(tx.fee),
        TxKind::Mint => tx.fee,
    }
}
