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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_flood_does_not_flush_the_route_of_an_honest_search() {
    // honest — victim — answerer, and attacker — victim. Before: the route
    // table was shared first come, first served, and queries cost nothing,
    // so a flood of searches for things nobody has pushed out the route of
    // an honest search and its answer was lost at the victim.
    use std::time::Duration;
    use toy_gossip::{Flow, Gossip, answerer_fn};
    use toy_msg::{Messaging, Messenger};
    let net = MemoryNetwork::new();
    let small = toy_gossip::Config { route_capacity: 16, ..Default::default() };
    let (t, ev) = net.endpoint(Default::default());
    let (msg, events) = Messaging::new(t, ev, Default::default());
    msg.listen("victim:1").await.expect("listen");
    let vp2p = toy_p2p::P2p::start(msg, events, p2p_config(8, vec![], 1).build().expect("config")).expect("p2p");
    let victim = (vp2p.clone(), Gossip::new(vp2p, small));
    victim.1.register_search_answerer("thing", answerer_fn(|_| async { None })).expect("answerer");
    let answerer =
        mem_node(&net, "answerer:1", p2p_config(8, vec!["victim:1".into()], 2).build().expect("config")).await;
    // The answer waits until the flood has hit the victim.
    let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let go = Arc::new(tokio::sync::Notify::new());
    let (a2, g2) = (asked.clone(), go.clone());
    answerer
        .1
        .register_search_answerer(
            "thing",
            answerer_fn(move |q| {
                let (asked, go) = (a2.clone(), g2.clone());
                async move {
                    if q.as_ref() != b"wanted" {
                        return None;
                    }
                    let released = go.notified();
                    asked.store(true, std::sync::atomic::Ordering::SeqCst);
                    released.await;
                    Some(Bytes::from_static(b"found"))
                }
            }),
        )
        .expect("answerer");
    let honest = mem_node(&net, "honest:1", p2p_config(8, vec!["victim:1".into()], 3).build().expect("config")).await;
    let attacker =
        mem_node(&net, "attacker:1", p2p_config(8, vec!["victim:1".into()], 4).build().expect("config")).await;
    wait_until("all three peer with the victim", || victim.0.peers().len() == 3).await;
    // The honest search goes out first, then the flood hits the victim
    // while the answer is on its way.
    let h = honest.1.clone();
    let search = tokio::spawn(async move {
        let mut answers = Vec::new();
        h.search("thing", Bytes::from_static(b"wanted"), Duration::from_secs(20), &mut |a| {
            answers.extend(a);
            Flow::Done
        })
        .await
        .expect("search");
        answers
    });
    wait_until("the answerer was asked", || asked.load(std::sync::atomic::Ordering::SeqCst)).await;
    for i in 0..400u32 {
        // gossip id | search id | query, both ids fresh each time.
        let mut payload = [0u8; 32].to_vec();
        payload[..4].copy_from_slice(&i.to_be_bytes());
        payload[16..20].copy_from_slice(&i.to_be_bytes());
        payload.extend_from_slice(b"nobody has this");
        attacker.0.broadcast("gossip:search:thing", Bytes::from(payload), &[]);
    }
    // Answered once every message before it on this connection was handled.
    attacker.0.request(&toy_p2p::PeerId("victim:1".into()), "p2p:get_peers", Bytes::new()).await.expect("answered");
    go.notify_waiters();
    let answers = search.await.expect("search task");
    assert_eq!(answers, vec![Bytes::from_static(b"found")], "the honest search was answered");
}
