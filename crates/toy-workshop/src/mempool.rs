//! Transactions waiting for a block (the seed's mempool: collect, hand to
//! the block builder, evict the old).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::state::Accounts;
use crate::{Error, Hash, Tx};

/// Most transactions held: 4 096; when full, the newest transaction of the
/// sender with the most pending leaves first (so throwaway keys flooding
/// the pool push out each other, not a sender with one transfer waiting).
pub const MAX_TXS: usize = 4_096;
/// Most transactions of one sender: 16, at nonces below its account nonce
/// plus 16 (a sender cannot fill the pool, nor park far-future nonces).
pub const MAX_PER_SENDER: u64 = 16;
/// A transaction not mined within an hour is dropped (the seed: evict what
/// will likely never be included).
pub const MAX_AGE: Duration = Duration::from_secs(3_600);

/// The pool. Bounded by [`MAX_TXS`] and [`MAX_PER_SENDER`]; eviction: see
/// [`MAX_TXS`] when full; anything older than [`MAX_AGE`], anything whose
/// nonce the chain has used.
#[derive(Debug, Default)]
pub struct Mempool {
    txs: HashMap<Hash, (Tx, Instant)>,
    by_sender: HashMap<String, BTreeMap<u64, Hash>>,
    /// Bytes of the held transactions' text.
    bytes: usize,
}

impl Mempool {
    /// Transactions held.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Bytes of the held transactions, as they travel.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Whether `id` is held.
    pub fn contains(&self, id: &Hash) -> bool {
        self.txs.contains_key(id)
    }

    /// The transaction `id`, if held.
    pub fn get(&self, id: &Hash) -> Option<&Tx> {
        self.txs.get(id).map(|(tx, _)| tx)
    }

    /// Every transaction held, in no order.
    pub fn iter(&self) -> impl Iterator<Item = &Tx> + '_ {
        self.txs.values().map(|(tx, _)| tx)
    }

    /// Every transaction held, oldest first.
    pub fn all(&self) -> Vec<Tx> {
        let mut v: Vec<&(Tx, Instant)> = self.txs.values().collect();
        v.sort_by_key(|(_, at)| *at);
        v.into_iter().map(|(tx, _)| tx.clone()).collect()
    }

    /// The nonces `sender` has pending.
    pub fn nonces_of(&self, sender: &str) -> impl Iterator<Item = u64> + '_ {
        self.by_sender.get(sender).into_iter().flat_map(|m| m.keys().copied())
    }

    /// What [`Mempool::add`] would say, without the signature (checked
    /// after, and only when this passes: it is the costly part).
    /// `Ok(false)`: already held (or its sender and nonce are).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a used nonce, one too far ahead, or more than
    /// the sender's coins along its pending nonces.
    pub fn precheck(&self, tx: &Tx, accounts: &Accounts) -> Result<bool, Error> {
        if self.txs.contains_key(&tx.id()) {
            return Ok(false);
        }
        let account = accounts.get(&tx.sender);
        if tx.nonce < account.nonce {
            return Err(Error::Invalid("nonce already used"));
        }
        if tx.nonce - account.nonce >= MAX_PER_SENDER {
            return Err(Error::Invalid("nonce too far ahead of the sender's account"));
        }
        let pending = self.by_sender.get(&tx.sender);
        if pending.is_some_and(|m| m.contains_key(&tx.nonce)) {
            return Ok(false);
        }
        // The coins for it and for the sender's pending transactions before
        // it (coins it may receive meanwhile are not counted).
        let before: u128 = pending
            .map(|m| {
                m.range(account.nonce..tx.nonce)
                    .filter_map(|(_, id)| self.txs.get(id))
                    .map(|(t, _)| u128::from(t.amount))
                    .sum()
            })
            .unwrap_or(0);
        if before + u128::from(tx.amount) > u128::from(account.balance) {
            return Err(Error::Invalid("more than the sender's coins"));
        }
        Ok(true)
    }

    /// Adds a transaction whose signature the caller checked. `Ok(false)`
    /// when it (or another for the same sender and nonce: the first seen
    /// stays) is already held.
    ///
    /// # Errors
    /// As [`Mempool::precheck`].
    pub fn add(&mut self, tx: Tx, accounts: &Accounts) -> Result<bool, Error> {
        if !self.precheck(&tx, accounts)? {
            return Ok(false);
        }
        let id = tx.id();
        if self.txs.len() >= MAX_TXS
            && let Some(victim) = self.eviction_victim()
        {
            self.remove(&victim);
        }
        self.by_sender.entry(tx.sender.clone()).or_default().insert(tx.nonce, id);
        self.bytes += tx.encode().len();
        self.txs.insert(id, (tx, Instant::now()));
        Ok(true)
    }

    /// The newest transaction of the sender with the most pending.
    fn eviction_victim(&self) -> Option<Hash> {
        let (_, nonces) = self.by_sender.iter().max_by_key(|(_, m)| m.len())?;
        nonces.values().max_by_key(|id| self.txs.get(id).map(|(_, at)| *at)).copied()
    }

    fn remove(&mut self, id: &Hash) {
        let Some((tx, _)) = self.txs.remove(id) else { return };
        self.bytes = self.bytes.saturating_sub(tx.encode().len());
        if let Some(m) = self.by_sender.get_mut(&tx.sender) {
            m.remove(&tx.nonce);
            if m.is_empty() {
                self.by_sender.remove(&tx.sender);
            }
        }
    }

    /// Drops what `accounts` (a new tip's) made useless, and the too old.
    pub fn prune(&mut self, accounts: &Accounts) {
        let now = Instant::now();
        let gone: Vec<Hash> = self
            .txs
            .iter()
            .filter(|(_, (tx, at))| tx.nonce < accounts.get(&tx.sender).nonce || now.duration_since(*at) > MAX_AGE)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.remove(&id);
        }
    }

    /// Up to `max` transactions that apply in order on `accounts`: each
    /// sender's from its account nonce on, with the coins for each; senders
    /// taken in turn by the age of their next transaction.
    pub fn select(&self, accounts: &Accounts, max: usize) -> Vec<Tx> {
        // Per sender: the run of consecutive nonces it can pay for.
        let mut runs: Vec<std::collections::VecDeque<&(Tx, Instant)>> = Vec::new();
        for (sender, nonces) in &self.by_sender {
            let account = accounts.get(sender);
            let (mut nonce, mut balance) = (account.nonce, account.balance);
            let mut run = std::collections::VecDeque::new();
            while let Some(entry) = nonces.get(&nonce).and_then(|id| self.txs.get(id)) {
                if entry.0.amount > balance {
                    break;
                }
                balance -= entry.0.amount;
                nonce += 1;
                run.push_back(entry);
            }
            if !run.is_empty() {
                runs.push(run);
            }
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some(run) = runs.iter_mut().filter(|r| !r.is_empty()).min_by_key(|r| r.front().map(|(_, at)| *at))
            else {
                break;
            };
            if let Some((tx, _)) = run.pop_front() {
                out.push(tx.clone());
            }
        }
        out
    }
}
