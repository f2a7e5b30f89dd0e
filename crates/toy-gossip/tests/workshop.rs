//! Searches laid out as the workshop's nodes lay them out:
//! `gossip:search:<kind>` = gossip id[16] | search id[16] | query, answered
//! by `search_response:<kind>` = search id[16] | answer and routed back by
//! the search id. The workshop's side is played by bare peers that speak
//! those bytes by hand.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use toy_gossip::{GossipNetwork, answerer_fn};
use toy_net::MemoryNetwork;
use toy_p2p::{PeerId, PeerNetwork, peer_handler_fn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workshop_search_crosses_a_toy_node_both_ways_routed_by_its_search_id() {
    let net = MemoryNetwork::new();
    // The toy node in the middle knows the kind but not the object.
    let toy = mem_node(&net, "toy:1", p2p_config(8, vec![], 1).build().expect("config")).await;
    toy.1.register_search_answerer("thing", answerer_fn(|_| async { None })).expect("answerer");
    // A workshop node that holds the object: answers with the search id.
    let holder = mem_node(&net, "holder:1", p2p_config(8, vec!["toy:1".into()], 2).build().expect("config")).await;
    let h = holder.0.clone();
    holder
        .0
        .register_handler(
            "gossip:search:thing",
            peer_handler_fn(move |from: PeerId, payload: Bytes| {
                let h = h.clone();
                async move {
                    if payload.len() >= 32 && &payload[32..] == b"wanted" {
                        let mut answer = payload[16..32].to_vec();
                        answer.extend_from_slice(b"found it");
                        let _ = h.send(&from, "search_response:thing", Bytes::from(answer));
                    }
                    None
                }
            }),
        )
        .expect("holder");
    // A workshop node that asks.
    let asker = mem_node(&net, "asker:1", p2p_config(8, vec!["toy:1".into()], 3).build().expect("config")).await;
    let got: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let g = got.clone();
    asker
        .0
        .register_handler(
            "search_response:thing",
            peer_handler_fn(move |_, payload| {
                g.lock().expect("got").push(payload);
                async { None }
            }),
        )
        .expect("asker");
    wait_until("both peer with the toy node", || toy.0.peers().len() == 2).await;
    let (gossip_id, search_id) = ([0x11u8; 16], [0x22u8; 16]);
    let mut query = gossip_id.to_vec();
    query.extend_from_slice(&search_id);
    query.extend_from_slice(b"wanted");
    asker.0.send(&PeerId("toy:1".into()), "gossip:search:thing", Bytes::from(query)).expect("ask");
    wait_until("the answer comes back", || !got.lock().expect("got").is_empty()).await;
    let answer = got.lock().expect("got")[0].clone();
    assert_eq!(&answer[..16], &search_id, "routed back under the search id, not the gossip id");
    assert_eq!(&answer[16..], b"found it");

    // The other way: a toy search answered by the workshop node.
    let mut answers = Vec::new();
    toy.1
        .search("thing", Bytes::from_static(b"wanted"), Duration::from_secs(20), &mut |a| {
            answers.extend(a);
            toy_gossip::Flow::Done
        })
        .await
        .expect("search");
    assert_eq!(answers, vec![Bytes::from_static(b"found it")], "the workshop node's answer reached the toy search");
    for n in [&toy, &holder, &asker] {
        n.0.shutdown().await;
    }
}
