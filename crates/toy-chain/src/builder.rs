//! The block builder: a template from the state and the mempool.

use std::collections::{BinaryHeap, HashMap};

use crate::mempool::Mempool;
use crate::params::ChainParams;
use crate::state::{BlockContext, State, Undo};
use crate::types::{Address, Block, Header, Transaction, merkle_root};

/// Builds a block template on top of `ctx`'s parent: the highest-fee
/// transactions first, each sender's nonces in order, up to
/// `max_txs_per_block`, paying reward + fees to `miner`. The nonce is 0; a
/// miner grinds it. `state` is left as it was.
pub fn build_template(
    state: &mut State,
    mempool: &Mempool,
    params: &ChainParams,
    ctx: &BlockContext,
    miner: Address,
) -> Block {
    // Each sender's queue in nonce order; the heap holds each sender's next.
    let mut queues: HashMap<Address, std::vec::IntoIter<&Transaction>> =
        mempool.by_sender().map(|(a, txs)| (*a, txs.into_iter())).collect();
    let mut heap: BinaryHeap<(u64, std::cmp::Reverse<Address>)> = BinaryHeap::new();
    let mut heads: HashMap<Address, &Transaction> = HashMap::new();
    for (addr, q) in queues.iter_mut() {
        if let Some(tx) = q.next() {
            heap.push((tx.fee, std::cmp::Reverse(*addr)));
            heads.insert(*addr, tx);
        }
    }
    let mut undo = Undo::default();
    let mut chosen = Vec::new();
    let mut fees: u64 = 0;
    while chosen.len() < params.max_txs_per_block {
        let Some((_, std::cmp::Reverse(addr))) = heap.pop() else { break };
        let Some(tx) = heads.remove(&addr) else { continue };
        match state.apply_tx(tx, params, &mut undo) {
            Ok(fee) => {
                let Some(f) = fees.checked_add(fee) else { break };
                fees = f;
                chosen.push(tx.clone());
                if let Some(next) = queues.get_mut(&addr).and_then(Iterator::next) {
                    heap.push((next.fee, std::cmp::Reverse(addr)));
                    heads.insert(addr, next);
                }
            }
            // A gap or a cost the sender cannot pay yet: skip this sender.
            Err(_) => continue,
        }
    }
    state.undo(&undo);
    let timestamp_ms = ctx.now_ms.max(ctx.median_time_past_ms + 1).max(ctx.min_timestamp_ms);
    Block {
        header: Header {
            version: 1,
            height: ctx.parent_height + 1,
            parent: ctx.parent_hash,
            merkle_root: merkle_root(chosen.iter().map(Transaction::wtxid)),
            timestamp_ms,
            target: ctx.expected_target,
            miner,
            reward: params.block_reward.saturating_add(fees),
            nonce: 0,
        },
        txs: chosen,
    }
}

/// Grinds the nonce on one thread until the header meets its target; `None`
/// if the nonce space runs out. For tests and small targets; the real miner
/// is toy-miner.
pub fn mine_simple(mut block: Block) -> Option<Block> {
    for nonce in 0..=u64::MAX {
        block.header.nonce = nonce;
        if crate::target::meets(&block.hash(), &block.header.target) {
            return Some(block);
        }
    }
    None
}
