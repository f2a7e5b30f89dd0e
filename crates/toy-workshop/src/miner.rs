//! Proof of work on the workshop's block text.
//!
//! The nonce is the second field, written in decimal, so each try hashes
//! the whole block text anew: the number and nonce sit in the first SHA-256
//! block, leaving no midstate to reuse (toy's binary header puts the nonce
//! in its last 64-byte block and hashes one compression per try). What that
//! costs is measured in docs/PERFORMANCE.md.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::types::leading_zero_nibbles;
use crate::{Block, Hash};

/// Tries nonces `start..start + count` on `template`; the block with the
/// first nonce whose hash has `difficulty` leading zero hex digits.
pub fn grind(template: &Block, difficulty: u8, start: u64, count: u64) -> Option<Block> {
    let head = format!("{}:", template.number);
    let mut tail = template.encode();
    // Everything after the nonce: ":parent:coinbase[:txs]".
    let skip = head.len() + digits(template.nonce);
    tail.drain(..skip);
    let mut text = String::with_capacity(head.len() + 20 + tail.len());
    for nonce in start..start.saturating_add(count) {
        text.clear();
        text.push_str(&head);
        let _ = write!(text, "{nonce}");
        text.push_str(&tail);
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if leading_zero_nibbles(&digest) >= u32::from(difficulty) {
            let block = Block { nonce, ..template.clone() };
            debug_assert_eq!(block.hash(), Hash(digest));
            return Some(block);
        }
    }
    None
}

fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_found_nonce_is_the_first_that_meets_the_difficulty() {
        let template = Block { nonce: 12345, ..Block::genesis() };
        let template = Block { number: 1, parent: Block::genesis().hash(), ..template };
        let found = grind(&template, 2, 0, 1 << 20).expect("found");
        assert!(found.hash().meets(2));
        for n in 0..found.nonce {
            assert!(!Block { nonce: n, ..template.clone() }.hash().meets(2));
        }
        assert_eq!(Block { nonce: found.nonce, ..template }, found);
    }
}
