//! The store conformance suite: the same checks for every [`Store`].

use super::{AccountWrite, Store};
use crate::params::ChainParams;
use crate::state::{Account, Undo};
use crate::types::{Address, Hash};

fn block_at(height: u64) -> crate::types::Block {
    let mut b = ChainParams::test().genesis();
    b.header.height = height;
    b.header.nonce = height;
    b
}

/// Blocks round-trip, are idempotent to store and can be deleted.
pub fn blocks_round_trip<S: Store>(mut store: S) {
    let b = block_at(1);
    let h = b.hash();
    assert_eq!(store.block(&h).expect("read"), None);
    store.put_block(&h, &b).expect("put");
    store.put_block(&h, &b).expect("put twice");
    assert_eq!(store.block(&h).expect("read"), Some(b.clone()));
    assert_eq!(store.headers().expect("headers"), vec![b.header.clone()]);
    store.delete_block(&h).expect("delete");
    assert_eq!(store.block(&h).expect("read"), None);
    assert!(store.headers().expect("headers").is_empty());
}

/// Connect and disconnect move the tip, the canonical index, the
/// transaction index, the undo data and the accounts together.
pub fn connect_and_disconnect_move_everything<S: Store>(mut store: S) {
    let (g, b1) = (block_at(0), block_at(1));
    let (hg, h1) = (g.hash(), b1.hash());
    let alice = Address([2; 33]);
    let bob = Address([3; 33]);
    assert_eq!(store.tip().expect("tip"), None);
    store.put_block(&hg, &g).expect("put");
    store.connect(&hg, 0, &Undo::default(), &[(alice, Some(Account { balance: 10, nonce: 0 }))], &[]).expect("genesis");
    store.put_block(&h1, &b1).expect("put");
    let undo = Undo { changes: vec![(alice, Some(Account { balance: 10, nonce: 0 })), (bob, None)] };
    let writes: Vec<AccountWrite> =
        vec![(alice, Some(Account { balance: 4, nonce: 1 })), (bob, Some(Account { balance: 6, nonce: 0 }))];
    let (t1, t2) = (Hash([0x71; 32]), Hash([0x72; 32]));
    assert_eq!(store.tx_height(&t1).expect("index"), None);
    store.connect(&h1, 1, &undo, &writes, &[t1, t2]).expect("connect");
    assert_eq!(store.tip().expect("tip"), Some(h1));
    assert_eq!(store.tx_height(&t1).expect("index"), Some(1));
    assert_eq!(store.tx_height(&t2).expect("index"), Some(1));
    assert_eq!(store.canonical(1).expect("canonical"), Some(h1));
    assert_eq!(store.undo(&h1).expect("undo"), Some(undo));
    let mut accounts = store.accounts().expect("accounts");
    accounts.sort_by_key(|(a, _)| *a);
    assert_eq!(accounts, vec![(alice, Account { balance: 4, nonce: 1 }), (bob, Account { balance: 6, nonce: 0 })]);
    store
        .disconnect(&h1, 1, &hg, &[(alice, Some(Account { balance: 10, nonce: 0 })), (bob, None)], &[t1, t2])
        .expect("disconnect");
    assert_eq!(store.tx_height(&t1).expect("index"), None, "a disconnected block's transactions leave the index");
    assert_eq!(store.tx_height(&t2).expect("index"), None);
    assert_eq!(store.tip().expect("tip"), Some(hg));
    assert_eq!(store.canonical(1).expect("canonical"), None);
    assert_eq!(store.canonical(0).expect("canonical"), Some(hg));
    assert_eq!(store.undo(&h1).expect("undo"), None);
    assert_eq!(store.accounts().expect("accounts"), vec![(alice, Account { balance: 10, nonce: 0 })]);
    assert!(store.block(&h1).expect("read").is_some(), "the block itself stays stored");
}

/// Instantiates the store conformance suite in module `$name` with stores
/// made by `$make`.
#[macro_export]
macro_rules! store_conformance_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn blocks_round_trip() {
                $crate::store::conformance::blocks_round_trip($make);
            }
            #[test]
            fn connect_and_disconnect_move_everything() {
                $crate::store::conformance::connect_and_disconnect_move_everything($make);
            }
        }
    };
}
