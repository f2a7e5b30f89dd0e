//! The central relay (toycoin seed): nodes subscribe to channels and publish;
//! the relay forwards every message to the channel's other subscribers.
//!
//! ```text
//! cargo run --example relay                  # listens on 127.0.0.1:15141
//! cargo run --example gossip_chat -- --relay 127.0.0.1:15141 --name ana
//! cargo run --example gossip_chat -- --relay 127.0.0.1:15141 --name bo
//! ```

use anyhow::Context;
use clap::Parser;
use toy::gossip::relay::RelayServer;
use toy::msg::{Messaging, Messenger};
use toy::net::TcpTransport;
use toy::p2p::{P2p, PeerEvent, PeerNetwork};

/// A central relay: clients gossip through it instead of flooding (the
/// same gossip trait, another implementation).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (15141: below the nodes' 15151 and up).
    #[arg(long, default_value = "127.0.0.1:15141")]
    listen: String,
    /// Most clients (the relay accepts up to twice this many).
    #[arg(long, default_value_t = 256)]
    max_clients: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let (t, ev) = TcpTransport::new(Default::default());
    let (msg, events) = Messaging::new(t, ev, Default::default());
    let addr = msg.listen(&args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let p2p = P2p::start(msg, events, toy::p2p::Config::builder().max_peers(args.max_clients).build()?)?;
    let _server = RelayServer::install(&p2p)?;
    println!("relay listening on {addr} (Ctrl-C to stop)");
    let mut peers = p2p.subscribe();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            ev = peers.recv() => match ev {
                Ok(PeerEvent::Added(p)) => println!("+ {p} ({} clients)", p2p.peers().len()),
                Ok(PeerEvent::Removed(p)) => println!("- {p} ({} clients)", p2p.peers().len()),
                Err(_) => {}
            },
        }
    }
    p2p.shutdown().await;
    Ok(())
}
