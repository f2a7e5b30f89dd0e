//! The tracker (course seed): nodes join, learn the members, ping to stay
//! listed; silent members are dropped.
//!
//! ```text
//! cargo run --example tracker                 # listens on 127.0.0.1:15140
//! cargo run --example gossip_chat -- --tracker 127.0.0.1:15140
//! ```

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use toy::msg::{Messaging, Messenger};
use toy::net::TcpTransport;
use toy::p2p::tracker::{Tracker, TrackerConfig};

/// The tracker of the course: nodes join, learn the members and ping to
/// stay listed; silent members are dropped.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (15140: below the nodes' 15151 and up, so a
    /// second node on 15152 never finds its port taken).
    #[arg(long, default_value = "127.0.0.1:15140")]
    listen: String,
    /// Seconds of silence after which a member is dropped.
    #[arg(long, default_value_t = 30)]
    member_timeout: u64,
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
    let (msg, mut events) = Messaging::new(t, ev, Default::default());
    let config = TrackerConfig { member_timeout: Duration::from_secs(args.member_timeout), ..Default::default() };
    let tracker = Tracker::install(&msg, config)?;
    let addr = msg.listen(&args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    println!("tracker listening on {addr} (Ctrl-C to stop)");
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    let mut last = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = events.next() => {}
            _ = sweep.tick() => {
                let dropped = tracker.sweep();
                let members = tracker.members();
                if members.len() != last || dropped > 0 {
                    println!("{} members ({dropped} dropped as silent): {}", members.len(), members.join(", "));
                    last = members.len();
                }
            }
        }
    }
    msg.shutdown().await;
    Ok(())
}
