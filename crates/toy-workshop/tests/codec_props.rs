//! Property tests of the workshop text codecs: what is decoded encodes back
//! to the same text, so a block's hash is the hash of the bytes received.

use proptest::prelude::*;
use toy_workshop::{Block, Hash, Tx};

fn field() -> impl Strategy<Value = String> {
    // Anything a workshop node might put in a free field: no separators,
    // no control characters.
    "[^,:\\p{Cc}]{0,40}"
}

fn hex_field() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 1..60).prop_map(hex::encode)
}

fn tx() -> impl Strategy<Value = Tx> {
    (hex_field(), field(), any::<u64>(), any::<u64>(), hex_field())
        .prop_map(|(sender, recipient, nonce, amount, signature)| Tx { sender, recipient, nonce, amount, signature })
}

proptest! {
    #[test]
    fn a_transaction_round_trips_through_its_text(tx in tx()) {
        let text = tx.encode();
        let back = Tx::decode(&text).expect("decodes");
        prop_assert_eq!(back.encode(), text);
        prop_assert_eq!(back, tx);
    }

    #[test]
    fn a_block_round_trips_and_hashes_its_text(
        number in any::<u64>(), nonce in any::<u64>(), parent in any::<[u8; 32]>(),
        coinbase in field(), txs in proptest::collection::vec(tx(), 0..4),
    ) {
        let block = Block { number, nonce, parent: Hash(parent), coinbase, txs };
        let text = block.encode();
        let back = Block::decode(&text).expect("decodes");
        prop_assert_eq!(back.hash(), Hash::of(text.as_bytes()));
        prop_assert_eq!(back, block);
    }

    #[test]
    fn arbitrary_text_never_panics_and_what_decodes_re_encodes_to_itself(text in ".{0,300}") {
        if let Ok(tx) = Tx::decode(&text) {
            prop_assert_eq!(tx.encode(), text.clone());
        }
        if let Ok(block) = Block::decode(&text) {
            prop_assert_eq!(block.encode(), text);
        }
    }
}
