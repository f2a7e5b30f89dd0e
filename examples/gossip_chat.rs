//! The workshop's chat over flood gossip: start three, type in one, read in
//! all.
//!
//! ```text
//! cargo run --example gossip_chat -- --listen 127.0.0.1:7001 --name ana
//! cargo run --example gossip_chat -- --listen 127.0.0.1:7002 --peer 127.0.0.1:7001 --name bo
//! cargo run --example gossip_chat -- --listen 127.0.0.1:7003 --peer 127.0.0.1:7002 --name cy
//! ```
//!
//! Messages are the workshop's (`chat`, payload `host:port` 0x00 `text`:
//! `toy_gossip::chat`), so workshop chat nodes written in Python take part;
//! a payload that is not a chat line is dropped (not passed on, nobody
//! penalised).
//! Type a line and press Enter to send it; `/peers` lists the peers. With
//! `--tracker ADDR` the nodes find each other through a tracker
//! (`cargo run --example tracker`) instead of `--peer`; with `--relay ADDR`
//! messages go through a relay (`cargo run --example relay`) instead of
//! flooding.

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use tokio::io::{AsyncBufReadExt, BufReader};
use toy::gossip::chat::{self, ChatMessage};
use toy::gossip::relay::RelayGossip;
use toy::gossip::{Gossip, GossipNetwork, Verdict, gossip_handler_fn};
use toy::msg::{Messaging, Messenger};
use toy::net::TcpTransport;
use toy::p2p::{P2p, PeerId, PeerNetwork};

/// Chat over toy's gossip layer (the workshop's `chat` kind), by flood,
/// tracker or relay.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// A peer to start from (repeatable).
    #[arg(long)]
    peer: Vec<String>,
    /// A tracker to discover peers through.
    #[arg(long)]
    tracker: Option<String>,
    /// Send through this relay instead of flooding.
    #[arg(long)]
    relay: Option<String>,
    /// A name to start your lines with (the workshop's message carries only
    /// the sender's address).
    #[arg(long)]
    name: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let args = Args::parse();
    let (t, ev) = TcpTransport::new(Default::default());
    let (msg, events) = Messaging::new(t, ev, Default::default());
    let addr = msg.listen(&args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let mut config = toy::p2p::Config::builder().max_peers(8);
    let mut boot = args.peer.clone();
    if let Some(relay) = &args.relay {
        boot.push(relay.clone());
        config = config.max_peers(1);
    }
    config = config.bootstrap(boot);
    if let Some(tracker) = &args.tracker {
        config = config.tracker(tracker.clone());
    }
    let p2p = P2p::start(msg, events, config.build()?)?;
    let gossip: Arc<dyn GossipNetwork> = match &args.relay {
        Some(relay) => Arc::new(RelayGossip::new(p2p.clone(), PeerId(relay.clone()), Default::default())?),
        None => Arc::new(Gossip::new(p2p.clone(), Default::default())),
    };
    gossip.register_handler(
        chat::KIND,
        gossip_handler_fn(|_, payload| async move {
            match ChatMessage::decode(&payload) {
                Some(m) => {
                    println!("[{}] {}", m.from, m.text);
                    Verdict::Accept
                }
                // Not a chat line: not passed on. Nobody is charged: a
                // workshop node relays any payload its own handler took, so
                // the sender may be an honest relay.
                None => Verdict::Ignore,
            }
        }),
    )?;
    println!("chat node on {addr}; type a line to send it, /peers to list peers, Ctrl-D to quit");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            line = lines.next_line() => match line? {
                None => break,
                Some(l) if l.trim() == "/peers" => println!("peers: {:?}", p2p.peers()),
                Some(l) if l.trim().is_empty() => {}
                Some(l) => {
                    let text = match &args.name {
                        Some(name) => format!("{name}: {}", l.trim()),
                        None => l.trim().to_owned(),
                    };
                    let m = ChatMessage { from: addr.clone(), text };
                    gossip.broadcast(chat::KIND, Bytes::from(m.encode()))?;
                }
            },
        }
    }
    p2p.shutdown().await;
    Ok(())
}
