//! The workshop's messaging demo: one process listens and echoes every
//! request; another connects, sends requests and prints what comes back.
//!
//! ```text
//! cargo run --example echo -- server                      # terminal 1
//! cargo run --example echo -- client hello world          # terminal 2
//! cargo run --example echo -- client --count 1000 ping    # a quick load
//! ```

use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use toy::msg::{Config, Event, Messaging, Messenger, handler_fn};
use toy::net::TcpTransport;

/// Echo over toy-msg on real TCP.
#[derive(Parser)]
#[command(
    version,
    about,
    long_about = "Echo over toy-msg on real TCP.\n\n\
Run `echo server` in one terminal: it listens and answers every `echo` request with its own payload.\n\
Run `echo client WORDS...` in another: it connects, sends each word as a request and prints the answer with its round-trip time."
)]
struct Args {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Listen and echo every request.
    Server {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:15150")]
        listen: String,
    },
    /// Connect, send requests and print the echoes.
    Client {
        /// The server's address.
        #[arg(long, default_value = "127.0.0.1:15150")]
        to: String,
        /// Send every word this many times (only timings are printed above 1).
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// The payloads to send.
        #[arg(default_value = "hello")]
        words: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Args::parse().role {
        Role::Server { listen } => server(&listen).await,
        Role::Client { to, count, words } => client(&to, count, &words).await,
    }
}

async fn server(listen: &str) -> anyhow::Result<()> {
    let (transport, net_events) = TcpTransport::new(toy::net::Config::default());
    let (msg, mut events) = Messaging::new(transport, net_events, Config::default());
    msg.register_handler("echo", handler_fn(|_conn, payload| async move { Some(payload) }))?;
    let addr = msg.listen(listen).await.with_context(|| format!("listening on {listen}"))?;
    println!("echo server listening on {addr} (Ctrl-C to stop)");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            ev = events.next() => match ev {
                Some(Event::Connected { remote, .. }) => println!("+ {remote}"),
                Some(Event::Disconnected { conn, reason }) => println!("- {conn} ({reason})"),
                Some(Event::Misbehaved { conn, error }) => println!("! {conn} sent a malformed message: {error}"),
                Some(_) => {}
                None => break,
            },
        }
    }
    msg.shutdown().await;
    Ok(())
}

async fn client(to: &str, count: usize, words: &[String]) -> anyhow::Result<()> {
    let (transport, net_events) = TcpTransport::new(toy::net::Config::default());
    let (msg, _events) = Messaging::new(transport, net_events, Config::default());
    let conn = msg.connect(to).await.with_context(|| format!("connecting to {to}; is `echo server` running?"))?;
    for word in words {
        let start = Instant::now();
        let mut answer = Bytes::new();
        for _ in 0..count.max(1) {
            answer = msg.request(conn, "echo", Bytes::from(word.clone())).await?;
        }
        let per = start.elapsed() / count.max(1) as u32;
        println!("{} -> {:?} ({per:?} per round trip)", word, String::from_utf8_lossy(&answer));
    }
    msg.shutdown().await;
    Ok(())
}
