//! Transactions and blocks as the workshop writes them: ASCII text, hashed
//! as sent.
//!
//! ```text
//! transaction  sender,recipient,nonce,amount,signature
//! block        number:nonce:parent_hash:coinbase:tx1:…:txN
//! ```
//!
//! What is decoded is kept as written, so the text this module writes for a
//! parsed value is always the text it read, and a block's hash is the same
//! whether taken from the bytes received or from the parsed block. How
//! lenient each field is follows what a workshop node (Python) takes:
//!
//! - numbers: decimal without sign or leading zeros (`str(int)`, the only
//!   form a workshop node writes and hashes: it hashes its own
//!   re-serialisation);
//! - the sender's key and the signature: hex in either case (Python's
//!   `bytes.fromhex`), the key in any encoding PyPI's `ecdsa` reads;
//! - the recipient and the coinbase: any text without `,` or `:` (a
//!   workshop node checks neither: refusing what it accepts would split
//!   the chain), at most [`MAX_FIELD`] bytes;
//! - the parent hash: 64 hex digits, lowercase (`hexdigest()`).

use std::fmt;

use sha2::{Digest, Sha256};

use crate::Error;

/// Longest transaction text accepted: 512 bytes (a workshop transaction is
/// about 250: two 50-digit keys, two numbers, a 96-digit signature).
pub const MAX_TX_LEN: usize = 512;
/// Longest block text accepted: 16 KiB (ten transactions and the header
/// take about 2.7 KiB).
pub const MAX_BLOCK_LEN: usize = 16 * 1024;
/// Longest field (key, signature, recipient, coinbase) accepted: 200 bytes.
pub const MAX_FIELD: usize = 200;

/// A SHA-256 hash: a block's hash or a transaction's id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Whether the hex form starts with `zeros` `0` digits.
    pub fn meets(&self, zeros: u8) -> bool {
        leading_zero_nibbles(&self.0) >= u32::from(zeros)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lowercase hex digits.
    ///
    /// # Errors
    /// [`Error::Malformed`] for anything else.
    pub fn from_hex(s: &str) -> Result<Self, Error> {
        let bytes = lower_hex(s, "hash")?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| Error::Malformed("a hash is 64 hex digits"))?;
        Ok(Self(arr))
    }
}

/// Leading zero hex digits of `bytes`.
pub(crate) fn leading_zero_nibbles(bytes: &[u8]) -> u32 {
    let mut n = 0;
    for b in bytes {
        if *b == 0 {
            n += 2;
        } else {
            return n + u32::from(*b < 0x10);
        }
    }
    n
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", &self.to_hex()[..12])
    }
}

/// A transfer, as the workshop writes it. Keys and the signature are kept
/// as the hex text they travel as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tx {
    /// The sender's P-192 public key, hex in either case, in any encoding
    /// PyPI's `ecdsa` reads (workshop nodes write it compressed, 25 bytes).
    pub sender: String,
    /// The recipient: a public key by convention, but free text in a block
    /// (no `,` or `:`), since the workshop's rules do not check it; a
    /// wallet sends to compressed keys only.
    pub recipient: String,
    /// The sender's account nonce this transaction uses.
    pub nonce: u64,
    /// Coins moved.
    pub amount: u64,
    /// Signature over `sender,recipient,nonce,amount`: raw `r‖s`, hex.
    pub signature: String,
}

impl Tx {
    /// The text that is signed: `sender,recipient,nonce,amount`.
    pub fn signing_text(&self) -> String {
        format!("{},{},{},{}", self.sender, self.recipient, self.nonce, self.amount)
    }

    /// The transaction as it travels.
    pub fn encode(&self) -> String {
        format!("{},{}", self.signing_text(), self.signature)
    }

    /// Its id: SHA-256 of [`Tx::encode`].
    pub fn id(&self) -> Hash {
        Hash::of(self.encode().as_bytes())
    }

    /// Parses a transaction's text (see the module's rules).
    ///
    /// # Errors
    /// [`Error::Malformed`] naming what is wrong.
    pub fn decode(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_TX_LEN {
            return Err(Error::Malformed("transaction too long"));
        }
        let fields: Vec<&str> = text.split(',').collect();
        let [sender, recipient, nonce, amount, signature] = fields[..] else {
            return Err(Error::Malformed("a transaction has five comma-separated fields"));
        };
        any_hex(sender, "sender")?;
        free_text(recipient, "recipient")?;
        any_hex(signature, "signature")?;
        Ok(Self {
            sender: sender.to_owned(),
            recipient: recipient.to_owned(),
            nonce: decimal(nonce, "nonce")?,
            amount: decimal(amount, "amount")?,
            signature: signature.to_owned(),
        })
    }
}

/// A block, as the workshop writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Height: the parent's plus one (genesis 0).
    pub number: u64,
    /// Proof-of-work nonce.
    pub nonce: u64,
    /// The parent's hash.
    pub parent: Hash,
    /// Who gets the reward: a public key by convention, free text in a
    /// block (no `:`), as the workshop does not check it (genesis: 66 `0`
    /// digits).
    pub coinbase: String,
    /// The transactions, applied in order.
    pub txs: Vec<Tx>,
}

impl Block {
    /// The block as it travels.
    pub fn encode(&self) -> String {
        let mut s = self.header_text(self.nonce);
        for tx in &self.txs {
            s.push(':');
            s.push_str(&tx.encode());
        }
        s
    }

    /// `number:nonce:parent:coinbase`.
    fn header_text(&self, nonce: u64) -> String {
        format!("{}:{}:{}:{}", self.number, nonce, self.parent.to_hex(), self.coinbase)
    }

    /// Its hash: SHA-256 of [`Block::encode`].
    pub fn hash(&self) -> Hash {
        Hash::of(self.encode().as_bytes())
    }

    /// Parses a block's text (see the module's rules).
    ///
    /// # Errors
    /// [`Error::Malformed`] naming what is wrong.
    pub fn decode(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_BLOCK_LEN {
            return Err(Error::Malformed("block too long"));
        }
        let mut fields = text.split(':');
        let mut next = |what| fields.next().ok_or(Error::Malformed(what));
        let number = decimal(next("a block starts number:nonce:parent:coinbase")?, "number")?;
        let nonce = decimal(next("a block starts number:nonce:parent:coinbase")?, "nonce")?;
        let parent = Hash::from_hex(next("a block starts number:nonce:parent:coinbase")?)?;
        let coinbase = next("a block starts number:nonce:parent:coinbase")?;
        free_text(coinbase, "coinbase")?;
        let coinbase = coinbase.to_owned();
        let txs = fields.map(Tx::decode).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { number, nonce, parent, coinbase, txs })
    }

    /// The workshop's genesis block: `0:0:` + 64 `0` + `:` + 66 `0`.
    pub fn genesis() -> Self {
        Self { number: 0, nonce: 0, parent: Hash::default(), coinbase: "0".repeat(66), txs: Vec::new() }
    }
}

/// Checks lowercase hex of even length, 2 to [`MAX_FIELD`] digits.
fn lower_hex(s: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(Error::Malformed(what));
    }
    any_hex(s, what)
}

/// Checks hex of even length in either case, 2 to [`MAX_FIELD`] digits.
fn any_hex(s: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    if s.is_empty() || s.len() > MAX_FIELD {
        return Err(Error::Malformed(what));
    }
    hex::decode(s).map_err(|_| Error::Malformed(what))
}

/// Checks a field a workshop node does not interpret: at most
/// [`MAX_FIELD`] bytes, no control character and neither separator. A
/// transaction travels alone (split on `,` only), so a `:` in its recipient
/// would decode here and then make every block holding it undecodable
/// (split on `:` first): refused up front.
fn free_text(s: &str, what: &'static str) -> Result<(), Error> {
    let printable = !s.chars().any(|c| c.is_control() || c == ':' || c == ',');
    if s.len() > MAX_FIELD || !printable {
        return Err(Error::Malformed(what));
    }
    Ok(())
}

/// Parses a decimal u64 without sign or leading zeros.
fn decimal(s: &str, what: &'static str) -> Result<u64, Error> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(Error::Malformed(what));
    }
    s.parse().map_err(|_| Error::Malformed(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_colon_in_a_recipient_is_refused_before_it_can_break_a_block() {
        // Decoded alone it would split into five fields; inside a block the
        // `:` would split the block text and no node could read the block.
        let text = format!("{},ab:cd,0,0,{}", "02".repeat(25), "5".repeat(96));
        assert!(matches!(Tx::decode(&text), Err(Error::Malformed("recipient"))));
        let text = format!("{},ab\tcd,0,0,{}", "02".repeat(25), "5".repeat(96));
        assert!(Tx::decode(&text).is_err(), "control characters too");
    }

    #[test]
    fn genesis_hash_is_the_workshops() {
        let g = Block::genesis();
        assert_eq!(g.encode(), format!("0:0:{}:{}", "0".repeat(64), "0".repeat(66)));
        assert_eq!(g.hash().to_hex(), "d4522760c17a1462ecce5171f8f170e18bb6fddc0295eb493f6b0fd15cac03e9");
        assert_eq!(Block::decode(&g.encode()).expect("decodes"), g);
    }

    #[test]
    fn leading_zeros_count_hex_digits() {
        let mut h = Hash([0xff; 32]);
        assert!(h.meets(0) && !h.meets(1));
        h.0[0] = 0x0f;
        assert!(h.meets(1) && !h.meets(2));
        h.0[0] = 0;
        h.0[1] = 0x01;
        assert!(h.meets(3) && !h.meets(4));
        assert!(Hash([0; 32]).meets(64));
    }

    #[test]
    fn non_canonical_text_is_refused() {
        let tx = "aa,bb,1,5,cc";
        assert!(Tx::decode(tx).is_ok());
        // What a workshop node takes, kept as written.
        for good in ["AA,bb,1,5,cc", "aa,bob,1,5,cc", "aa,,0,0,CC"] {
            assert_eq!(Tx::decode(good).expect(good).encode(), good);
        }
        for bad in ["aa,bb,01,5,cc", "aa,bb,1,-5,cc", "aa,bb,1,+5,cc", "aa,bb,1,5", "aa,bb,1,5,cc,", "a,bb,1,5,cc"] {
            assert!(Tx::decode(bad).is_err(), "{bad}");
        }
        let g = Block::genesis().encode();
        assert!(Block::decode(&format!("{g}:")).is_err(), "a trailing colon is an empty transaction");
        assert!(Block::decode(&g.replacen("0:0:", "00:0:", 1)).is_err());
        assert!(Block::decode("1:2:00").is_err());
    }
}
