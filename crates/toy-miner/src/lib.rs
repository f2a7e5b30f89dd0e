//! # toy-miner — proof of work on all cores
//!
//! Grinds the nonce of a toy-chain block template until the header hash meets
//! its target. The header's fixed-width encoding puts the nonce in the last
//! SHA-256 block, so the first two blocks are hashed once per template (the
//! *midstate*, see [`pow`]) and every nonce costs a single compression.
//!
//! ```text
//!   TemplateSource ──template()──► coordinator thread ──Job──► worker 0..N
//!        ▲  (the node's chain)          │ refresh every N s          │ grind nonce ranges
//!        │                              │ new_template(): drop stale  │ found → blocks channel
//!   MinerHandle::new_template() ────────┘ work at once                ▼
//!                                                            mpsc::Receiver<Block>
//! ```
//!
//! Workers are OS threads, off the async runtime. They check for new work
//! every [`CHECK_EVERY`] nonces, so a tip change stops stale work within a
//! fraction of a millisecond. When a worker's nonce range runs out it moves
//! the timestamp forward by a millisecond and starts the range again.
//!
//! ## Example
//!
//! ```
//! use toy_chain::ChainParams;
//!
//! // The blocking single-thread grinder, for tests and for reading.
//! let template = ChainParams::test().genesis();
//! let block = toy_miner::mine_blocking(template, u64::MAX).expect("easy target");
//! assert!(toy_chain::target::meets(&block.hash(), &block.header.target));
//! ```

pub mod avx512;
pub mod pow;
pub mod shani;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use toy_chain::Block;

use crate::pow::Midstate;

/// Nonces a worker tries between checks for new work: about 0.2 ms at the
/// release-build rate of this machine.
pub const CHECK_EVERY: u64 = 1024;

/// Capacity of the found-blocks channel: a node takes each block at once;
/// beyond 16 waiting, newer finds are dropped (they would be stale anyway).
pub const FOUND_CHANNEL: usize = 16;

/// Where the miner gets its work: the node builds templates from its chain
/// and mempool. Called from the miner's coordinator thread, never from the
/// async runtime.
pub trait TemplateSource: Send + Sync + 'static {
    /// A fresh block template on the current tip (nonce 0), or `None` when
    /// there is none to be had (the chain has stopped): the workers then
    /// idle until the next template.
    fn template(&self) -> Option<Block>;
}

impl<F: Fn() -> Option<Block> + Send + Sync + 'static> TemplateSource for F {
    fn template(&self) -> Option<Block> {
        self()
    }
}

/// Miner settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Worker threads (default: every core).
    pub threads: usize,
    /// How often a fresh template is taken even without a tip change, to
    /// include new transactions (default 5 s).
    pub refresh: Duration,
    /// Nonces each worker tries per template before moving the timestamp:
    /// `u64::MAX / threads` by default; smaller values are for tests of
    /// nonce-space exhaustion.
    pub nonces_per_worker: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            refresh: Duration::from_secs(5),
            nonces_per_worker: None,
        }
    }
}

/// Miner errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A thread could not be started.
    #[error("cannot start miner thread: {0}")]
    Spawn(#[from] std::io::Error),
    /// The configuration is unusable.
    #[error("invalid config: {0}")]
    InvalidConfig(&'static str),
}

/// Grinds `block`'s nonce on the calling thread until its hash meets the
/// target; moves the timestamp by 1 ms each time `nonce_space` nonces are
/// exhausted. Returns `None` only if the timestamp would overflow.
pub fn mine_blocking(mut block: Block, nonce_space: u64) -> Option<Block> {
    loop {
        let mid = Midstate::new(&block.header);
        if let Some(nonce) = mid.grind(0, nonce_space) {
            block.header.nonce = nonce;
            return Some(block);
        }
        block.header.timestamp_ms = block.header.timestamp_ms.checked_add(1)?;
    }
}

/// Nonces [`mine_within`] grinds between two looks at its cancel flag:
/// 65 536, a few milliseconds.
pub const CANCEL_CHECK_EVERY: u64 = 1 << 16;

/// Grinds `block`'s nonce from 0 on the calling thread, at most `budget`
/// nonces, looking at `cancel` every [`CANCEL_CHECK_EVERY`]: the block with
/// the first nonce whose hash meets the target, or `None` when the budget
/// ran out or `cancel` was set (mining one block on demand, as `/api/mine`
/// does, without holding a core after its caller has gone).
pub fn mine_within(mut block: Block, budget: u64, cancel: &AtomicBool) -> Option<Block> {
    let mid = Midstate::new(&block.header);
    let mut start = 0u64;
    while start < budget {
        if cancel.load(Ordering::Relaxed) {
            return None;
        }
        let count = CANCEL_CHECK_EVERY.min(budget - start);
        if let Some(nonce) = mid.grind(start, count) {
            block.header.nonce = nonce;
            return Some(block);
        }
        start += count;
    }
    None
}

/// Work shared with the workers: a template and its generation number.
struct Job {
    generation: u64,
    block: Option<Block>,
}

struct Shared {
    job: Mutex<Job>,
    job_changed: Condvar,
    /// Mirrors `job.generation` for the hot loop's lock-free check.
    generation: AtomicU64,
    stop: AtomicBool,
    hashes: AtomicU64,
    rate_bits: AtomicU64,
    found: mpsc::Sender<Block>,
}

impl Shared {
    fn set_job(&self, block: Option<Block>) {
        let mut job = self.job.lock().unwrap_or_else(PoisonError::into_inner);
        job.generation += 1;
        job.block = block;
        self.generation.store(job.generation, Ordering::Release);
        self.job_changed.notify_all();
    }
}

/// Commands to the coordinator.
enum Command {
    NewTemplate,
    Stop,
}

/// Reads a [`Miner`]'s hash rate; cheap to clone.
#[derive(Clone)]
pub struct RateHandle(Arc<Shared>);

impl std::fmt::Debug for RateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RateHandle").field(&self.hash_rate()).finish()
    }
}

impl RateHandle {
    /// Hashes per second over the last second (0 once the miner stopped).
    pub fn hash_rate(&self) -> f64 {
        if self.0.stop.load(Ordering::Relaxed) { 0.0 } else { f64::from_bits(self.0.rate_bits.load(Ordering::Relaxed)) }
    }
}

/// A running miner. Dropping it stops the threads.
pub struct Miner {
    shared: Arc<Shared>,
    commands: std::sync::mpsc::SyncSender<Command>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Miner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Miner").field("threads", &self.threads.len()).field("hash_rate", &self.hash_rate()).finish()
    }
}

impl Miner {
    /// Starts the coordinator and `config.threads` workers. Found blocks come
    /// out of the returned channel.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for zero threads, [`Error::Spawn`] when the OS
    /// refuses a thread.
    pub fn start(config: Config, source: Arc<dyn TemplateSource>) -> Result<(Self, mpsc::Receiver<Block>), Error> {
        if config.threads == 0 {
            return Err(Error::InvalidConfig("threads must be at least 1"));
        }
        let (found, rx) = mpsc::channel(FOUND_CHANNEL);
        let shared = Arc::new(Shared {
            job: Mutex::new(Job { generation: 0, block: None }),
            job_changed: Condvar::new(),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            hashes: AtomicU64::new(0),
            rate_bits: AtomicU64::new(0),
            found,
        });
        let (commands, command_rx) = std::sync::mpsc::sync_channel(8);
        let mut threads = Vec::new();
        let span = config.nonces_per_worker.unwrap_or(u64::MAX / config.threads as u64).max(1);
        for i in 0..config.threads {
            let shared = shared.clone();
            let start = (i as u64).wrapping_mul(u64::MAX / config.threads as u64);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("toy-miner-{i}"))
                    .spawn(move || worker(&shared, start, span))?,
            );
        }
        let coord_shared = shared.clone();
        let refresh = config.refresh;
        threads.push(
            std::thread::Builder::new()
                .name("toy-miner-coordinator".into())
                .spawn(move || coordinator(&coord_shared, source.as_ref(), &command_rx, refresh))?,
        );
        let _ = commands.try_send(Command::NewTemplate);
        Ok((Self { shared, commands, threads }, rx))
    }

    /// The tip changed (or new transactions arrived): stale work stops at
    /// once and a fresh template is taken.
    pub fn new_template(&self) {
        // Stop grinding the stale template now, before the new one is built.
        self.shared.set_job(None);
        let _ = self.commands.try_send(Command::NewTemplate);
    }

    /// A handle that reads the hash rate from anywhere (an API, say),
    /// independent of the miner's lifetime.
    pub fn rate_handle(&self) -> RateHandle {
        RateHandle(self.shared.clone())
    }

    /// Hashes per second over the last second.
    pub fn hash_rate(&self) -> f64 {
        f64::from_bits(self.shared.rate_bits.load(Ordering::Relaxed))
    }

    /// Hashes computed since start.
    pub fn total_hashes(&self) -> u64 {
        self.shared.hashes.load(Ordering::Relaxed)
    }

    /// Stops every thread and waits for them.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.set_job(None);
        let _ = self.commands.try_send(Command::Stop);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn coordinator(
    shared: &Shared,
    source: &dyn TemplateSource,
    commands: &std::sync::mpsc::Receiver<Command>,
    refresh: Duration,
) {
    let tick = Duration::from_secs(1).min(refresh);
    let mut last_template = Instant::now();
    let mut last_rate = (Instant::now(), 0u64);
    loop {
        let wait = tick.saturating_sub(last_rate.0.elapsed());
        let fetch = match commands.recv_timeout(wait) {
            Ok(Command::Stop) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            Ok(Command::NewTemplate) => true,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => last_template.elapsed() >= refresh,
        };
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        if fetch {
            let block = source.template();
            match &block {
                Some(b) => tracing::debug!(height = b.header.height, txs = b.txs.len(), "new mining template"),
                None => tracing::debug!("no mining template; idle"),
            }
            shared.set_job(block);
            last_template = Instant::now();
        }
        let elapsed = last_rate.0.elapsed();
        if elapsed >= tick {
            let total = shared.hashes.load(Ordering::Relaxed);
            let rate = (total - last_rate.1) as f64 / elapsed.as_secs_f64();
            shared.rate_bits.store(rate.to_bits(), Ordering::Relaxed);
            last_rate = (Instant::now(), total);
        }
    }
}

fn worker(shared: &Shared, start: u64, span: u64) {
    loop {
        // Wait for a job.
        let (generation, mut block) = {
            let mut job = shared.job.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if shared.stop.load(Ordering::Acquire) {
                    return;
                }
                if let Some(b) = &job.block {
                    break (job.generation, b.clone());
                }
                job = shared.job_changed.wait(job).unwrap_or_else(PoisonError::into_inner);
            }
        };
        'template: loop {
            let mid = Midstate::new(&block.header);
            let mut done = 0u64;
            while done < span {
                if shared.generation.load(Ordering::Acquire) != generation {
                    break 'template;
                }
                let batch = CHECK_EVERY.min(span - done);
                let found = mid.grind(start.wrapping_add(done), batch);
                shared.hashes.fetch_add(batch, Ordering::Relaxed);
                if let Some(nonce) = found {
                    block.header.nonce = nonce;
                    tracing::debug!(height = block.header.height, nonce, "block found");
                    // Stop every worker on this template (it is solved) and
                    // wait for the next one.
                    let mut job = shared.job.lock().unwrap_or_else(PoisonError::into_inner);
                    if job.generation == generation {
                        job.generation += 1;
                        job.block = None;
                        shared.generation.store(job.generation, Ordering::Release);
                        drop(job);
                        if shared.found.try_send(block).is_err() {
                            tracing::warn!("found block dropped: nobody is taking blocks");
                        }
                    }
                    break 'template;
                }
                done += batch;
            }
            // This worker's nonce range is exhausted: move the timestamp.
            block.header.timestamp_ms = block.header.timestamp_ms.saturating_add(1);
        }
    }
}
