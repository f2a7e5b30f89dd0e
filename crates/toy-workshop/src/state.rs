//! Accounts and the state transition (the seed's "Block Validation").

use std::collections::HashMap;

use crate::{Block, Error, Params, Tx, crypto};

/// One account: coins and the nonce its next transaction must use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Account {
    /// Coins.
    pub balance: u64,
    /// Transactions sent so far.
    pub nonce: u64,
}

/// What applying a block changed: each touched account's value before, to
/// put back on a reorg.
#[derive(Debug, Default, Clone)]
pub struct Undo(Vec<(String, Option<Account>)>);

/// Every account, by public key (hex).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Accounts(HashMap<String, Account>);

impl Accounts {
    /// The account of `key` (zero if it never appeared).
    pub fn get(&self, key: &str) -> Account {
        self.0.get(key).copied().unwrap_or_default()
    }

    /// Accounts that appeared so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no account appeared yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every account.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Account)> {
        self.0.iter()
    }

    fn set(&mut self, key: &str, account: Account, undo: &mut Undo) {
        let before = self.0.insert(key.to_owned(), account);
        undo.0.push((key.to_owned(), before));
    }

    /// Checks a transaction against these accounts, signature included.
    ///
    /// # Errors
    /// [`Error::BadSignature`]; [`Error::Invalid`] for a wrong nonce or too
    /// few coins.
    pub fn check_tx(&self, tx: &Tx) -> Result<(), Error> {
        check_signature(tx)?;
        self.check_funds(tx)
    }

    fn check_funds(&self, tx: &Tx) -> Result<(), Error> {
        let from = self.get(&tx.sender);
        if tx.nonce != from.nonce {
            return Err(Error::Invalid("transaction nonce is not the sender's account nonce"));
        }
        if tx.amount > from.balance {
            return Err(Error::Invalid("sender has too few coins"));
        }
        Ok(())
    }

    /// Applies `block` (its number and parent already checked by the
    /// caller; signatures too when `signatures_checked`): each transaction
    /// in order, then the reward. On error nothing is changed.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the broken rule.
    pub fn apply(&mut self, block: &Block, params: &Params, signatures_checked: bool) -> Result<Undo, Error> {
        let mut undo = Undo::default();
        let result = self.apply_inner(block, params, signatures_checked, &mut undo);
        match result {
            Ok(()) => Ok(undo),
            Err(e) => {
                self.undo(undo);
                Err(e)
            }
        }
    }

    fn apply_inner(&mut self, block: &Block, params: &Params, sigs: bool, undo: &mut Undo) -> Result<(), Error> {
        if block.txs.len() > params.max_txs {
            return Err(Error::Invalid("too many transactions"));
        }
        for tx in &block.txs {
            if !sigs {
                check_signature(tx)?;
            }
            self.check_funds(tx)?;
            let mut from = self.get(&tx.sender);
            from.balance -= tx.amount;
            from.nonce += 1;
            self.set(&tx.sender, from, undo);
            // The recipient is created at zero when new; read after the
            // sender's update (a transfer to oneself only bumps the nonce).
            let mut to = self.get(&tx.recipient);
            to.balance = to.balance.checked_add(tx.amount).ok_or(Error::Invalid("balance overflow"))?;
            self.set(&tx.recipient, to, undo);
        }
        let mut miner = self.get(&block.coinbase);
        miner.balance = miner.balance.checked_add(params.reward).ok_or(Error::Invalid("balance overflow"))?;
        self.set(&block.coinbase, miner, undo);
        Ok(())
    }

    /// Puts back what [`Accounts::apply`] changed.
    pub fn undo(&mut self, undo: Undo) {
        for (key, before) in undo.0.into_iter().rev() {
            match before {
                Some(a) => self.0.insert(key, a),
                None => self.0.remove(&key),
            };
        }
    }
}

/// Checks a transaction's signature over `sender,recipient,nonce,amount`.
///
/// # Errors
/// [`Error::Invalid`] when it does not verify.
pub fn check_signature(tx: &Tx) -> Result<(), Error> {
    if crypto::verify(&tx.sender, tx.signing_text().as_bytes(), &tx.signature) {
        Ok(())
    } else {
        Err(Error::BadSignature)
    }
}

/// A signed transfer of `amount` from `key` to `recipient` with `nonce`.
pub fn sign_tx(key: &crypto::SecretKey, recipient: &str, nonce: u64, amount: u64) -> Tx {
    let mut tx =
        Tx { sender: key.public_hex(), recipient: recipient.to_owned(), nonce, amount, signature: String::new() };
    tx.signature = key.sign(tx.signing_text().as_bytes());
    tx
}
