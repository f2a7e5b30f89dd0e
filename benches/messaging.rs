//! Messaging throughput over loopback TCP, next to raw framing in the same run.
//!
//! Three ways to move the same payloads between two sockets:
//!
//! * `raw_framing` — tokio-util's `LengthDelimitedCodec` on a `Framed` TCP
//!   stream: the baseline, no connection table, no message header, no handler.
//! * `toy_net` — frames through [`TcpTransport`] and its event stream.
//! * `toy_msg` — one-way messages / requests through [`Messaging`], with a
//!   handler task per message on the receiving side.
//!
//! One-way: each iteration sends a batch of [`BATCH`] messages and waits until
//! the receiver has them all. Round trips: one request at a time.
//! After the timings, the bench prints heap bytes allocated per message for
//! each path (counting allocator), the memory half of the picture.
//!
//! Run: `cargo bench --bench messaging`.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use toy::msg::{Config, Messaging, Messenger, handler_fn};
use toy::net::{ConnId, Event, TcpTransport, Transport};

/// Messages per measured iteration of the one-way benches.
const BATCH: u64 = 1000;
const SIZES: [(usize, &str); 2] = [(64, "64B"), (4096, "4KiB")];

/// Counts heap bytes allocated, to report bytes per message.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only adds a counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A receive counter the sender waits on.
#[derive(Default)]
struct Counter {
    n: AtomicUsize,
    notify: Notify,
}

impl Counter {
    fn add(&self) {
        self.n.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_one();
    }
    async fn wait_for(&self, target: usize) {
        loop {
            let notified = self.notify.notified();
            if self.n.load(Ordering::Acquire) >= target {
                return;
            }
            notified.await;
        }
    }
}

/// The sending side of one path.
#[async_trait::async_trait]
trait OneWay: Send + Sync {
    async fn send_batch(&mut self, payload: &Bytes, n: u64);
    fn counter(&self) -> &Counter;
}

struct Raw {
    sink: Framed<TcpStream, LengthDelimitedCodec>,
    counter: Arc<Counter>,
}

#[async_trait::async_trait]
impl OneWay for Raw {
    async fn send_batch(&mut self, payload: &Bytes, n: u64) {
        for _ in 0..n {
            self.sink.feed(payload.clone()).await.expect("feed");
        }
        SinkExt::<Bytes>::flush(&mut self.sink).await.expect("flush");
    }
    fn counter(&self) -> &Counter {
        &self.counter
    }
}

async fn raw_pair() -> Raw {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counter = Arc::new(Counter::default());
    let c = counter.clone();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut framed = Framed::new(s, LengthDelimitedCodec::new());
        while let Some(Ok(_frame)) = framed.next().await {
            c.add();
        }
    });
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    Raw { sink: Framed::new(s, LengthDelimitedCodec::new()), counter }
}

struct Net {
    t: TcpTransport,
    conn: ConnId,
    counter: Arc<Counter>,
}

#[async_trait::async_trait]
impl OneWay for Net {
    async fn send_batch(&mut self, payload: &Bytes, n: u64) {
        for _ in 0..n {
            self.t.send(self.conn, payload.clone()).expect("queue has room for a batch");
        }
    }
    fn counter(&self) -> &Counter {
        &self.counter
    }
}

async fn net_pair() -> Net {
    let (server, mut events) = TcpTransport::new(toy::net::Config::default());
    let addr = server.listen("127.0.0.1:0").await.expect("listen");
    let counter = Arc::new(Counter::default());
    let c = counter.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            match ev {
                Event::Frame { .. } => c.add(),
                // As toy-p2p does once a peer's hello is accepted: an
                // identified peer, not a stranger.
                Event::Connected { conn, .. } => server.promote(conn),
                _ => {}
            }
        }
    });
    let (t, client_events) = TcpTransport::new(toy::net::Config::default());
    std::mem::forget(client_events); // never drained: nothing arrives on it but Connected
    let conn = t.connect(&addr).await.expect("connect");
    Net { t, conn, counter }
}

struct Msg {
    m: Messaging<TcpTransport>,
    conn: ConnId,
    counter: Arc<Counter>,
}

#[async_trait::async_trait]
impl OneWay for Msg {
    async fn send_batch(&mut self, payload: &Bytes, n: u64) {
        for _ in 0..n {
            self.m.send(self.conn, "bench", payload.clone()).expect("queue has room for a batch");
        }
    }
    fn counter(&self) -> &Counter {
        &self.counter
    }
}

async fn msg_pair() -> (Msg, Messaging<TcpTransport>) {
    let (t, ev) = TcpTransport::new(toy::net::Config::default());
    let (server, server_events) = Messaging::new(t, ev, Config::default());
    let promoter = server.clone();
    tokio::spawn(async move {
        let mut server_events = server_events;
        // As toy-p2p does once a peer's hello is accepted.
        while let Some(ev) = server_events.next().await {
            if let toy::msg::Event::Connected { conn, .. } = ev {
                promoter.promote(conn);
            }
        }
    });
    let counter = Arc::new(Counter::default());
    let c = counter.clone();
    server
        .register_handler(
            "bench",
            handler_fn(move |_, _| {
                c.add();
                async { None }
            }),
        )
        .expect("register");
    server.register_handler("echo", handler_fn(|_, p| async move { Some(p) })).expect("register");
    let addr = server.listen("127.0.0.1:0").await.expect("listen");
    let (t, ev) = TcpTransport::new(toy::net::Config::default());
    let (m, client_events) = Messaging::new(t, ev, Config::default());
    std::mem::forget(client_events);
    let conn = m.connect(&addr).await.expect("connect");
    (Msg { m, conn, counter }, server)
}

async fn run_batches(path: &mut dyn OneWay, payload: &Bytes, iters: u64) -> Duration {
    let start = Instant::now();
    let base = path.counter().n.load(Ordering::Acquire);
    for i in 1..=iters {
        path.send_batch(payload, BATCH).await;
        path.counter().wait_for(base + (i * BATCH) as usize).await;
    }
    start.elapsed()
}

fn one_way(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("one_way");
    for (size, label) in SIZES {
        let payload = Bytes::from(vec![0xab; size]);
        group.throughput(Throughput::Elements(BATCH));
        let mut raw = rt.block_on(raw_pair());
        group.bench_with_input(BenchmarkId::new("raw_framing", label), &payload, |b, p| {
            b.iter_custom(|iters| rt.block_on(run_batches(&mut raw, p, iters)))
        });
        let mut net = rt.block_on(net_pair());
        group.bench_with_input(BenchmarkId::new("toy_net", label), &payload, |b, p| {
            b.iter_custom(|iters| rt.block_on(run_batches(&mut net, p, iters)))
        });
        let (mut msg, _server) = rt.block_on(msg_pair());
        group.bench_with_input(BenchmarkId::new("toy_msg", label), &payload, |b, p| {
            b.iter_custom(|iters| rt.block_on(run_batches(&mut msg, p, iters)))
        });
        // Memory: heap bytes allocated per message, over 200 batches (enough
        // that a buffer allocated once in a while is averaged, not sampled).
        for (name, path) in [("raw_framing", &mut raw as &mut dyn OneWay), ("toy_net", &mut net), ("toy_msg", &mut msg)]
        {
            let before = ALLOCATED.load(Ordering::Relaxed);
            rt.block_on(run_batches(path, &payload, 200));
            let per = (ALLOCATED.load(Ordering::Relaxed) - before) as f64 / (200 * BATCH) as f64;
            println!("one_way/{name}/{label}: {per:.0} heap bytes allocated per message");
        }
    }
    group.finish();
}

fn round_trip(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Elements(1));
    for (size, label) in SIZES {
        let payload = Bytes::from(vec![0xcd; size]);
        // Raw: an echo server on a Framed stream.
        let mut client = rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                let (s, _) = listener.accept().await.expect("accept");
                s.set_nodelay(true).expect("nodelay");
                let mut framed = Framed::new(s, LengthDelimitedCodec::new());
                while let Some(Ok(frame)) = framed.next().await {
                    if framed.send(frame.freeze()).await.is_err() {
                        break;
                    }
                }
            });
            let s = TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            Framed::new(s, LengthDelimitedCodec::new())
        });
        group.bench_with_input(BenchmarkId::new("raw_framing", label), &payload, |b, p| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        client.send(p.clone()).await.expect("send");
                        client.next().await.expect("open").expect("frame");
                    }
                    start.elapsed()
                })
            })
        });
        let (msg, _server) = rt.block_on(msg_pair());
        group.bench_with_input(BenchmarkId::new("toy_msg", label), &payload, |b, p| {
            b.to_async(&rt).iter(|| async { msg.m.request(msg.conn, "echo", p.clone()).await.expect("echo") })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = one_way, round_trip
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
