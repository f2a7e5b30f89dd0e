//! The account state and the state transition: `apply_block` and its undo.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::crypto::{SigCache, Verifier};
use crate::error::{BlockError, TxError};
use crate::params::ChainParams;
use crate::target::meets;
use crate::types::{Address, Block, Hash, Header, MAX_BLOCK_BYTES, Transaction, TxKind};

/// One account: its balance and the nonce its next transaction must use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Account {
    /// Units held.
    pub balance: u64,
    /// Transactions sent so far; the next one must carry this nonce.
    pub nonce: u64,
}

/// The state: address → account. Absent accounts are zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    accounts: HashMap<Address, Account>,
}

/// What undoes one block: the previous value of every account it touched, in
/// the order touched (`None`: the account did not exist).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    /// Previous values, oldest change first.
    pub changes: Vec<(Address, Option<Account>)>,
}

/// What header validation needs to know about the chain at the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockContext {
    /// The parent's hash.
    pub parent_hash: Hash,
    /// The parent's height.
    pub parent_height: u64,
    /// The target the rules require for this block.
    pub expected_target: Hash,
    /// Median timestamp of the last `median_window` blocks up to the parent.
    pub median_time_past_ms: u64,
    /// The earliest timestamp allowed besides the median rule: for the first
    /// block of a retarget window, the parent's timestamp minus
    /// [`crate::Retarget::max_timewarp_ms`] (BIP 94); 0 for every other block.
    pub min_timestamp_ms: u64,
    /// The local clock, in milliseconds since the epoch.
    pub now_ms: u64,
}

impl State {
    /// The state at genesis: the allocations.
    pub fn genesis(params: &ChainParams) -> Self {
        let mut s = Self::default();
        for (addr, amount) in &params.allocations {
            let acc = s.accounts.entry(*addr).or_default();
            acc.balance = acc.balance.saturating_add(*amount);
        }
        s
    }

    /// A state holding exactly these accounts (e.g. loaded from a store).
    pub fn from_accounts(accounts: impl IntoIterator<Item = (Address, Account)>) -> Self {
        Self { accounts: accounts.into_iter().collect() }
    }

    /// The account at `addr` (zero if absent).
    pub fn account(&self, addr: &Address) -> Account {
        self.accounts.get(addr).copied().unwrap_or_default()
    }

    /// Whether `addr` has an account entry.
    pub fn contains(&self, addr: &Address) -> bool {
        self.accounts.contains_key(addr)
    }

    /// Every account.
    pub fn iter(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter()
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Sum of all balances.
    pub fn total_supply(&self) -> u128 {
        self.accounts.values().map(|a| a.balance as u128).sum()
    }

    /// Sets an account, recording its previous value in `undo`.
    fn set(&mut self, addr: Address, acc: Account, undo: &mut Undo) {
        let prev = self.accounts.insert(addr, acc);
        undo.changes.push((addr, prev));
    }

    /// Applies one transaction whose signature was already checked; returns
    /// its fee. On error nothing changed.
    ///
    /// # Errors
    /// The [`TxError`] of the first rule the transaction breaks.
    pub fn apply_tx(&mut self, tx: &Transaction, params: &ChainParams, undo: &mut Undo) -> Result<u64, TxError> {
        if tx.kind == TxKind::Mint && params.mint_authority != Some(tx.sender) {
            return Err(TxError::UnauthorisedMint);
        }
        let sender = self.account(&tx.sender);
        if tx.nonce != sender.nonce {
            return Err(TxError::WrongNonce { expected: sender.nonce, got: tx.nonce });
        }
        // A mint creates its amount; the authority pays only the fee.
        let cost = match tx.kind {
            TxKind::Transfer => tx.total_cost().ok_or(TxError::Overflow)?,
            TxKind::Mint => tx.fee,
        };
        if sender.balance < cost {
            return Err(TxError::InsufficientBalance { balance: sender.balance, needed: cost });
        }
        let next_nonce = sender.nonce.checked_add(1).ok_or(TxError::Overflow)?;
        let after_send = Account { balance: sender.balance - cost, nonce: next_nonce };
        // The recipient as it will be after the sender's debit (they may be
        // the same account).
        let recipient = if tx.recipient == tx.sender { after_send } else { self.account(&tx.recipient) };
        let credited = recipient.balance.checked_add(tx.amount).ok_or(TxError::Overflow)?;
        self.set(tx.sender, after_send, undo);
        self.set(tx.recipient, Account { balance: credited, ..recipient }, undo);
        Ok(tx.fee)
    }

    /// Undoes a block applied by [`apply_block`], restoring this state exactly.
    pub fn undo(&mut self, undo: &Undo) {
        for (addr, prev) in undo.changes.iter().rev() {
            match prev {
                Some(acc) => {
                    self.accounts.insert(*addr, *acc);
                }
                None => {
                    self.accounts.remove(addr);
                }
            }
        }
    }
}

/// The checks of a block that need neither its parent nor any state, cheapest
/// first: version, proof of work against the header's own target, that target
/// no easier than [`ChainParams::pow_limit`], the transaction count, the
/// encoded size, the Merkle commitment and repeated transactions.
///
/// A block that fails here is *malformed*: either junk or a genuine header
/// carrying a body someone changed. Its hash must not be remembered as
/// invalid, since the genuine body may still arrive (Bitcoin Core's
/// `BLOCK_MUTATED`). Runs before a block is kept anywhere, orphans included.
///
/// # Errors
/// The [`BlockError`] of the first rule broken.
pub fn check_standalone(block: &Block, params: &ChainParams) -> Result<Hash, BlockError> {
    let h = &block.header;
    if h.version != 1 {
        return Err(BlockError::BadVersion(h.version));
    }
    let hash = h.hash();
    if !meets(&hash, &h.target) {
        return Err(BlockError::BadProofOfWork { hash });
    }
    if h.target.0 > params.pow_limit.0 {
        return Err(BlockError::TargetTooEasy { target: h.target, limit: params.pow_limit });
    }
    check_body(block, params)?;
    Ok(hash)
}

/// Checks the header rules that depend on the parent and the clock: parent,
/// height, required target, proof of work, median time past, the timewarp
/// floor and the future drift.
///
/// Every failure but [`BlockError::TimestampTooFarAhead`] follows from the
/// header and its ancestry, so it holds for good; that one depends on the
/// clock and may pass later.
///
/// # Errors
/// The [`BlockError`] of the first rule broken.
pub fn check_header(block: &Block, ctx: &BlockContext, params: &ChainParams) -> Result<Hash, BlockError> {
    check_header_alone(&block.header, ctx, params)
}

/// [`check_header`] for a header without its body (headers-first sync):
/// the same rules, since none of them reads the body.
///
/// # Errors
/// The [`BlockError`] of the first rule broken.
pub fn check_header_alone(h: &Header, ctx: &BlockContext, params: &ChainParams) -> Result<Hash, BlockError> {
    if h.version != 1 {
        return Err(BlockError::BadVersion(h.version));
    }
    if h.parent != ctx.parent_hash {
        return Err(BlockError::UnknownParent(h.parent));
    }
    let expected = ctx.parent_height + 1;
    if h.height != expected {
        return Err(BlockError::WrongHeight { expected, got: h.height });
    }
    if h.target != ctx.expected_target {
        return Err(BlockError::WrongTarget { expected: ctx.expected_target, got: h.target });
    }
    let hash = h.hash();
    if !meets(&hash, &h.target) {
        return Err(BlockError::BadProofOfWork { hash });
    }
    if h.timestamp_ms <= ctx.median_time_past_ms {
        return Err(BlockError::TimestampTooOld { timestamp_ms: h.timestamp_ms, median_ms: ctx.median_time_past_ms });
    }
    if h.timestamp_ms < ctx.min_timestamp_ms {
        return Err(BlockError::TimeWarp { timestamp_ms: h.timestamp_ms, min_ms: ctx.min_timestamp_ms });
    }
    let max_ms = ctx.now_ms.saturating_add(params.max_future_drift_ms);
    if h.timestamp_ms > max_ms {
        return Err(BlockError::TimestampTooFarAhead { timestamp_ms: h.timestamp_ms, max_ms });
    }
    Ok(hash)
}

/// Below this many uncached signatures a block is checked on one thread.
const PARALLEL_MIN_SIGS: usize = 16;

/// Verifies every transaction signature of `txs` (their sighashes given),
/// through the cache, on all cores for large blocks. Returns the index of the
/// first bad one, if any.
pub fn verify_signatures(
    txs: &[Transaction],
    sighashes: &[Hash],
    verifier: &dyn Verifier,
    cache: &SigCache,
) -> Option<usize> {
    let todo: Vec<usize> = (0..txs.len()).filter(|&i| !cache.contains(&sighashes[i], &txs[i].signature)).collect();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let check = |i: usize| verifier.verify(&sighashes[i], &txs[i].signature, &txs[i].sender);
    let bad = if todo.len() < PARALLEL_MIN_SIGS || threads == 1 {
        todo.iter().copied().find(|&i| !check(i))
    } else {
        let chunk = todo.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> =
                todo.chunks(chunk).map(|part| s.spawn(move || part.iter().copied().find(|&i| !check(i)))).collect();
            handles.into_iter().filter_map(|h| h.join().ok().flatten()).min()
        })
    };
    if bad.is_none() {
        for &i in &todo {
            cache.insert(sighashes[i], txs[i].signature);
        }
    }
    bad
}

/// Checks every signature of `block` against the chain `params` names.
///
/// # Errors
/// [`BlockError::Tx`] with [`TxError::BadSignature`] for the first bad one.
pub fn check_signatures(
    block: &Block,
    params: &ChainParams,
    verifier: &dyn Verifier,
    cache: &SigCache,
) -> Result<(), BlockError> {
    let chain_id = params.chain_id();
    let ids: Vec<Hash> = block.txs.iter().map(Transaction::id).collect();
    let sighashes: Vec<Hash> = ids.iter().map(|id| Transaction::sighash_of(id, &chain_id)).collect();
    match verify_signatures(&block.txs, &sighashes, verifier, cache) {
        Some(i) => Err(BlockError::Tx { index: i, id: ids[i], error: TxError::BadSignature }),
        None => Ok(()),
    }
}

/// Validates `block` against `state` and the chain context and applies it.
/// Returns the undo data. An invalid block leaves `state` unchanged.
///
/// # Errors
/// The [`BlockError`] of the first rule broken, in this order: the
/// standalone rules ([`check_standalone`]), the header rules
/// ([`check_header`]), signatures, each transaction in order, the miner's
/// reward.
pub fn apply_block(
    state: &mut State,
    block: &Block,
    ctx: &BlockContext,
    params: &ChainParams,
    verifier: &dyn Verifier,
    cache: &SigCache,
) -> Result<Undo, BlockError> {
    check_standalone(block, params)?;
    check_header(block, ctx, params)?;
    check_signatures(block, params, verifier, cache)?;
    apply_txs(state, block, params)
}

/// The body rules of [`apply_block`], for callers that checked the header:
/// transaction count, size, Merkle root, duplicates, signatures, then the
/// state transition.
///
/// # Errors
/// As [`apply_block`], without the header rules.
pub fn apply_body(
    state: &mut State,
    block: &Block,
    params: &ChainParams,
    verifier: &dyn Verifier,
    cache: &SigCache,
) -> Result<Undo, BlockError> {
    check_body(block, params)?;
    check_signatures(block, params, verifier, cache)?;
    apply_txs(state, block, params)
}

/// The body's shape: count, size, Merkle commitment and repeated
/// transactions (the part of [`check_standalone`] that reads the
/// transactions). One id twice is refused here rather than by the nonce
/// rule, so a body that repeats a leaf is malformed whatever the state.
fn check_body(block: &Block, params: &ChainParams) -> Result<(), BlockError> {
    if block.txs.len() > params.max_txs_per_block {
        return Err(BlockError::TooManyTxs { count: block.txs.len(), max: params.max_txs_per_block });
    }
    let len = block.encoded_len();
    if len > MAX_BLOCK_BYTES {
        return Err(BlockError::TooLarge { len, max: MAX_BLOCK_BYTES });
    }
    if block.compute_merkle_root() != block.header.merkle_root {
        return Err(BlockError::BadMerkleRoot);
    }
    let mut seen = HashSet::with_capacity(block.txs.len());
    for tx in &block.txs {
        let id = tx.id();
        if !seen.insert(id) {
            return Err(BlockError::DuplicateTx(id));
        }
    }
    Ok(())
}

/// The state transition of a block whose shape and signatures were checked:
/// every transaction in order (nonce, balance, overflow), then the miner's
/// reward. Returns the undo data; on error `state` is unchanged.
///
/// # Errors
/// [`BlockError::Tx`] for the first transaction that breaks a rule,
/// [`BlockError::RewardTooLarge`] for a greedy miner.
pub fn apply_txs(state: &mut State, block: &Block, params: &ChainParams) -> Result<Undo, BlockError> {
    let mut undo = Undo::default();
    let mut fees: u64 = 0;
    let fail = |state: &mut State, undo: &Undo, e: BlockError| {
        state.undo(undo);
        Err(e)
    };
    for (i, tx) in block.txs.iter().enumerate() {
        match state.apply_tx(tx, params, &mut undo) {
            Ok(fee) => match fees.checked_add(fee) {
                Some(f) => fees = f,
                None => return fail(state, &undo, BlockError::Tx { index: i, id: tx.id(), error: TxError::Overflow }),
            },
            Err(error) => return fail(state, &undo, BlockError::Tx { index: i, id: tx.id(), error }),
        }
    }
    let max = params.block_reward.saturating_add(fees);
    let claimed = block.header.reward;
    if claimed > max {
        return fail(state, &undo, BlockError::RewardTooLarge { claimed, max });
    }
    let miner = block.header.miner;
    let acc = state.account(&miner);
    let Some(balance) = acc.balance.checked_add(claimed) else {
        return fail(state, &undo, BlockError::RewardTooLarge { claimed, max: u64::MAX - acc.balance });
    };
    state.set(miner, Account { balance, ..acc }, &mut undo);
    Ok(undo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::types::Signature;

    fn transfer(from: &Keypair, to: Address, amount: u64, fee: u64, nonce: u64) -> Transaction {
        let mut tx = Transaction {
            kind: TxKind::Transfer,
            sender: from.address(),
            recipient: to,
            amount,
            fee,
            nonce,
            signature: Signature::EMPTY,
        };
        from.sign_tx(&mut tx, &ChainParams::test().chain_id());
        tx
    }

    #[test]
    fn apply_tx_moves_funds_and_steps_nonce() {
        let params = ChainParams::test();
        let mut s = State::genesis(&params);
        let a = ChainParams::dev_wallet(0);
        let b = Keypair::from_seed(b"new");
        let mut undo = Undo::default();
        let fee = s.apply_tx(&transfer(&a, b.address(), 100, 3, 0), &params, &mut undo).expect("valid");
        assert_eq!(fee, 3);
        assert_eq!(s.account(&a.address()), Account { balance: crate::params::DEV_WALLET_BALANCE - 103, nonce: 1 });
        assert_eq!(s.account(&b.address()), Account { balance: 100, nonce: 0 });
        s.undo(&undo);
        assert_eq!(s, State::genesis(&params));
    }

    #[test]
    fn self_transfer_only_costs_the_fee() {
        let params = ChainParams::test();
        let mut s = State::genesis(&params);
        let a = ChainParams::dev_wallet(0);
        let mut undo = Undo::default();
        s.apply_tx(&transfer(&a, a.address(), 100, 3, 0), &params, &mut undo).expect("valid");
        assert_eq!(s.account(&a.address()).balance, crate::params::DEV_WALLET_BALANCE - 3);
        s.undo(&undo);
        assert_eq!(s, State::genesis(&params));
    }
}
