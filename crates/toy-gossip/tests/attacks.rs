//! Attacks on the gossip layer by a peer who has read the source.

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use toy_gossip::{GossipNetwork, Verdict, gossip_handler_fn};
use toy_net::MemoryNetwork;
use toy_p2p::PeerNetwork;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copied_gossip_id_on_other_content_does_not_shadow_the_real_message() {
    // victim ← attacker, victim ← honest. The attacker learns (here: knows)
    // the id of the honest message and sends other content under it first.
    let net = MemoryNetwork::new();
    let victim = mem_node(&net, "victim:1", p2p_config(4, vec![], 1).build().expect("config")).await;
    let attacker =
        mem_node(&net, "attacker:1", p2p_config(4, vec!["victim:1".into()], 2).build().expect("config")).await;
    let honest = mem_node(&net, "honest:1", p2p_config(4, vec!["victim:1".into()], 3).build().expect("config")).await;
    let got: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let g = got.clone();
    victim
        .1
        .register_handler(
            "note",
            gossip_handler_fn(move |_, body| {
                g.lock().expect("lock").push(body);
                async { Verdict::Ignore }
            }),
        )
        .expect("register");
    wait_until("both peers connected", || victim.0.peers().len() == 2).await;
    let id = [0x42u8; 16];
    let with_id = |body: &[u8]| {
        let mut b = id.to_vec();
        b.extend_from_slice(body);
        Bytes::from(b)
    };
    attacker.0.broadcast("gossip:note", with_id(b"forged"), &[]);
    wait_until("the forgery arrives", || got.lock().expect("lock").len() == 1).await;
    honest.0.broadcast("gossip:note", with_id(b"the real message"), &[]);
    wait_until("the real message is handled too", || got.lock().expect("lock").len() == 2).await;
    assert_eq!(got.lock().expect("lock")[1], Bytes::from_static(b"the real message"));
    // A plain copy of the real message is still a duplicate: after it, a
    // new message on the same connection is the only one handled.
    honest.0.broadcast("gossip:note", with_id(b"the real message"), &[]);
    let mut marker = [0x43u8; 16].to_vec();
    marker.extend_from_slice(b"marker");
    honest.0.broadcast("gossip:note", Bytes::from(marker), &[]);
    wait_until("the marker is handled", || got.lock().expect("lock").iter().any(|b| b.as_ref() == b"marker")).await;
    assert_eq!(got.lock().expect("lock").len(), 3, "the identical copy was dropped");
}
