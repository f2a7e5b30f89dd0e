//! The chain actor: one thread owns the [`Chain`] and its store, and a
//! cloneable [`ChainHandle`] talks to it over a bounded channel.
//!
//! ```text
//!  gossip handlers ─┐                        ┌─► watch<Tip>            (tip, instantly)
//!  sync, fetch ─────┼─► ChainHandle ─ mpsc ─►│ chain thread: Chain<S> ─► watch<ChainSnapshot> (status)
//!  API, miner ──────┘   (bounded, 64)        └─ group commit: replies to writes once durable
//! ```
//!
//! Why an actor and not a mutex: the messaging layer runs every handler as
//! a future on one dispatcher per node. A handler that waits for a lock
//! held across signature checks and an fsync stalls every peer's messages.
//! Here nothing outside this module can hold the chain: callers queue a job
//! and `await` its answer (the dispatcher moves on), and what must be
//! instant (the tip, the status) is read from published snapshots. The
//! shape follows reth's engine tree task: one owner of the state, typed
//! messages in, published state out.
//!
//! **Durability is the actor's** (group commit, as databases do): a write
//! that finds the queue empty is committed durably at once. While other
//! jobs are waiting, writes are committed without an fsync and their
//! answers held back; when the queue drains, after [`ActorConfig::flush_after`]
//! or [`ActorConfig::flush_writes`] held answers, one durable commit covers
//! them all and the answers go out. So an answer to a write always means
//! the write is on disk, and a crash loses only writes nobody was told of.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{ChainError, StoreError};
use crate::headers::{CheckedHeaders, HeadersError};
use crate::mempool::MempoolError;
use crate::params::ChainParams;
use crate::store::Store;
use crate::tree::{Chain, InsertOutcome, Tip, now_ms};
use crate::types::{Address, Block, Hash, Header, Transaction};

/// Default capacity of the actor's queue: 64 jobs. Each job holds at most
/// one block, one transaction or one sync batch (≤ 8 MiB), and a sync keeps
/// one batch queued at a time, so a full queue is a few blocks' worth of
/// memory. Past it, callers wait (`send().await`). The chain's networking
/// lets one peer have at most `MAX_PEER_CHAIN_JOBS` (8) of these at once,
/// and the node's own work has a lane of its own ([`ChainHandle::local`]).
pub const DEFAULT_QUEUE: usize = 64;

/// Capacity of the local lane ([`ChainHandle::local`]): 16 jobs. Local work
/// is a miner and an API whose own handlers are bounded; it is served
/// first, so it never needs more.
pub const LOCAL_QUEUE: usize = 16;

/// Default longest time a write's answer is held for a group commit: 200 ms.
pub const DEFAULT_FLUSH_AFTER: Duration = Duration::from_millis(200);

/// Default most answers held for one group commit: 64.
pub const DEFAULT_FLUSH_WRITES: usize = 64;

/// How the chain actor runs.
#[derive(Debug, Clone)]
pub struct ActorConfig {
    /// Jobs the queue holds ([`DEFAULT_QUEUE`]).
    pub queue: usize,
    /// Group commit: relax durability while jobs are waiting and commit once
    /// for all of them (`true`, the default); `false` commits every write
    /// durably on its own (the baseline of the sync bench).
    pub group_commit: bool,
    /// Longest a write's answer waits for the group commit ([`DEFAULT_FLUSH_AFTER`]).
    pub flush_after: Duration,
    /// Most answers held for one group commit ([`DEFAULT_FLUSH_WRITES`]).
    pub flush_writes: usize,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            queue: DEFAULT_QUEUE,
            group_commit: true,
            flush_after: DEFAULT_FLUSH_AFTER,
            flush_writes: DEFAULT_FLUSH_WRITES,
        }
    }
}

/// What a node's status needs of the chain, published after every job that
/// changed it (read without queueing: [`ChainHandle::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSnapshot {
    /// The best chain's tip.
    pub tip: Tip,
    /// Pending transactions.
    pub mempool: usize,
    /// Their encoded bytes.
    pub mempool_bytes: usize,
    /// Orphan blocks waiting for a parent.
    pub orphans: usize,
    /// Their encoded bytes.
    pub orphan_bytes: usize,
    /// The last storage failure, until the store recovers.
    pub store_failure: Option<String>,
}

impl ChainSnapshot {
    fn of<S: Store>(c: &Chain<S>) -> Self {
        Self {
            tip: c.tip(),
            mempool: c.mempool().len(),
            mempool_bytes: c.mempool().bytes(),
            orphans: c.orphan_count(),
            orphan_bytes: c.orphan_bytes(),
            store_failure: c.store_failure().map(str::to_owned),
        }
    }
}

/// A job's answer, sent after the snapshot is published (a caller that
/// reads the snapshot after its answer sees its own change) and, for a
/// write held by a group commit, after the commit; told whether the commit
/// failed.
type Deferred = Box<dyn FnOnce(Option<&str>) + Send>;
/// A read job; returns its answer.
type ReadJob<S> = Box<dyn FnOnce(&Chain<S>) -> Deferred + Send>;
/// A job that changes the chain; returns its answer.
type WriteJob<S> = Box<dyn FnOnce(&mut Chain<S>) -> Deferred + Send>;

enum Job<S: Store> {
    /// Reads: answered at once.
    Read(ReadJob<S>),
    /// Changes memory only (the mempool, a template): answered at once.
    Mutate(WriteJob<S>),
    /// May write the store: answered once durable.
    Write(WriteJob<S>),
    /// Commit what is held and stop.
    Stop(oneshot::Sender<()>),
}

/// Wraps a result as an answer that ignores the commit (reads, memory).
fn answer_now<R: Send + 'static>(tx: oneshot::Sender<R>, r: R) -> Deferred {
    Box::new(move |_| {
        let _ = tx.send(r);
    })
}

/// A cloneable handle to the chain actor. Every method queues a job for the
/// thread that owns the chain, except [`ChainHandle::tip`],
/// [`ChainHandle::snapshot`] and [`ChainHandle::params`], which read what
/// the actor published.
pub struct ChainHandle<S: Store> {
    /// The lane this handle queues on: the network's, or the local one
    /// ([`ChainHandle::local`]).
    jobs: mpsc::Sender<Job<S>>,
    /// The local lane, served first.
    local: mpsc::Sender<Job<S>>,
    tip: watch::Receiver<Tip>,
    snapshot: watch::Receiver<ChainSnapshot>,
    params: Arc<ChainParams>,
}

impl<S: Store> Clone for ChainHandle<S> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
            local: self.local.clone(),
            tip: self.tip.clone(),
            snapshot: self.snapshot.clone(),
            params: self.params.clone(),
        }
    }
}

impl<S: Store> std::fmt::Debug for ChainHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainHandle").field("tip", &*self.tip.borrow()).finish_non_exhaustive()
    }
}

impl<S: Store> ChainHandle<S> {
    /// Moves `chain` onto a thread of its own (named `chain`) with the
    /// default [`ActorConfig`].
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn spawn(chain: Chain<S>) -> Result<Self, ChainError> {
        Self::spawn_with(chain, ActorConfig::default())
    }

    /// Moves `chain` onto a thread of its own with `config`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn spawn_with(chain: Chain<S>, config: ActorConfig) -> Result<Self, ChainError> {
        let (jobs, rx) = mpsc::channel(config.queue.max(1));
        let (local, local_rx) = mpsc::channel(LOCAL_QUEUE);
        let tip = chain.subscribe();
        let (snap_tx, snapshot) = watch::channel(ChainSnapshot::of(&chain));
        let params = Arc::new(chain.params().clone());
        // The actor's own single-threaded runtime only waits on its two
        // lanes; the jobs run on this thread, synchronously.
        let rt =
            tokio::runtime::Builder::new_current_thread().build().map_err(|e| ChainError::Store(StoreError::Io(e)))?;
        std::thread::Builder::new()
            .name("chain".into())
            .spawn(move || run(chain, Lanes { rt, local: local_rx, network: rx }, snap_tx, &config))
            .map_err(|e| ChainError::Store(StoreError::Io(e)))?;
        Ok(Self { jobs, local, tip, snapshot, params })
    }

    /// A handle on the local lane, served before the network's: for the
    /// node's own work (its miner, its API, its wallet), so peers filling
    /// the network lane cannot make it wait behind them. The lane holds
    /// [`LOCAL_QUEUE`] jobs.
    pub fn local(&self) -> Self {
        Self { jobs: self.local.clone(), ..self.clone() }
    }

    /// The best chain's tip, as last published (no queueing).
    pub fn tip(&self) -> Tip {
        self.tip.borrow().clone()
    }

    /// Tip changes, as a watch channel (latest value only).
    pub fn subscribe(&self) -> watch::Receiver<Tip> {
        self.tip.clone()
    }

    /// The chain's counts and health, as last published (no queueing).
    pub fn snapshot(&self) -> ChainSnapshot {
        self.snapshot.borrow().clone()
    }

    /// The chain's parameters (fixed for its life).
    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    /// Runs `f` on the chain, read-only, in queue order.
    ///
    /// # Errors
    /// [`ChainError::Stopped`] when the actor has stopped (or `f` panicked).
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Chain<S>) -> R + Send + 'static,
    ) -> Result<R, ChainError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Read(Box::new(move |c| answer_now(tx, f(c))))).await?;
        rx.await.map_err(|_| ChainError::Stopped)
    }

    /// [`ChainHandle::read`] for a thread outside the async runtime (the
    /// miner's).
    ///
    /// # Errors
    /// [`ChainError::Stopped`] when the actor has stopped.
    ///
    /// # Panics
    /// When called from within an async runtime (tokio's rule for blocking
    /// sends).
    pub fn blocking_read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Chain<S>) -> R + Send + 'static,
    ) -> Result<R, ChainError> {
        let (tx, rx) = oneshot::channel();
        self.jobs.blocking_send(Job::Read(Box::new(move |c| answer_now(tx, f(c))))).map_err(|_| ChainError::Stopped)?;
        rx.blocking_recv().map_err(|_| ChainError::Stopped)
    }

    /// A block template on the tip for `miner`.
    ///
    /// # Errors
    /// [`ChainError::Stopped`].
    pub async fn template(&self, miner: Address) -> Result<Block, ChainError> {
        self.mutate(move |c| c.template(miner, now_ms())).await
    }

    /// [`ChainHandle::template`] for a thread outside the async runtime.
    ///
    /// # Errors
    /// [`ChainError::Stopped`].
    ///
    /// # Panics
    /// When called from within an async runtime.
    pub fn blocking_template(&self, miner: Address) -> Result<Block, ChainError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .blocking_send(Job::Mutate(Box::new(move |c| answer_now(tx, c.template(miner, now_ms())))))
            .map_err(|_| ChainError::Stopped)?;
        rx.blocking_recv().map_err(|_| ChainError::Stopped)
    }

    /// Offers a transaction to the mempool ([`Chain::add_tx`]). The outer
    /// error is the actor's, the inner the mempool's verdict.
    ///
    /// # Errors
    /// [`ChainError::Stopped`].
    pub async fn add_tx(&self, tx: Transaction) -> Result<Result<Hash, MempoolError>, ChainError> {
        self.mutate(move |c| c.add_tx(tx, now_ms())).await
    }

    /// Checks a header chain against ours ([`Chain::check_headers`]).
    ///
    /// # Errors
    /// [`ChainError::Stopped`].
    pub async fn check_headers(
        &self,
        headers: Vec<Header>,
    ) -> Result<Result<CheckedHeaders, HeadersError>, ChainError> {
        self.read(move |c| c.check_headers(&headers, now_ms())).await
    }

    /// Inserts a block ([`Chain::insert_from`]); `source` is charged for it
    /// if it waits as an orphan. Answered once durable.
    ///
    /// # Errors
    /// Storage failures, or [`ChainError::Stopped`].
    pub async fn insert(&self, block: Block, source: Option<String>) -> Result<InsertOutcome, ChainError> {
        self.write(move |c| c.insert_from(block, source.as_deref(), now_ms())).await?
    }

    /// Inserts a block we asked for ([`Chain::insert_requested`]). Answered
    /// once durable.
    ///
    /// # Errors
    /// Storage failures, or [`ChainError::Stopped`].
    pub async fn insert_requested(&self, block: Block, source: Option<String>) -> Result<InsertOutcome, ChainError> {
        self.write(move |c| c.insert_requested(block, source.as_deref(), now_ms())).await?
    }

    /// Imports a downloaded batch ([`Chain::import_batch`]): one result per
    /// block tried. Answered once durable.
    ///
    /// # Errors
    /// When the durable commit fails, or [`ChainError::Stopped`].
    pub async fn import_batch(
        &self,
        blocks: Vec<Block>,
        source: String,
    ) -> Result<Vec<Result<InsertOutcome, ChainError>>, ChainError> {
        self.write(move |c| c.import_batch(blocks, Some(&source), now_ms())).await
    }

    /// Ends a sync ([`Chain::finish_import`]).
    ///
    /// # Errors
    /// [`ChainError::Stopped`].
    pub async fn finish_import(&self) -> Result<(), ChainError> {
        self.mutate(Chain::finish_import).await
    }

    /// Reopens a failed store ([`Chain::recover_store`]).
    ///
    /// # Errors
    /// The store's, or [`ChainError::Stopped`].
    pub async fn recover_store(&self) -> Result<bool, ChainError> {
        self.write(Chain::recover_store).await?
    }

    /// Commits what is held, stops the actor and waits for it. Jobs queued
    /// after this get [`ChainError::Stopped`]; the store closes when the
    /// thread ends.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn send(&self, job: Job<S>) -> Result<(), ChainError> {
        self.jobs.send(job).await.map_err(|_| ChainError::Stopped)
    }

    /// Runs `f` on the chain, changing memory only; answered at once.
    async fn mutate<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Chain<S>) -> R + Send + 'static,
    ) -> Result<R, ChainError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Mutate(Box::new(move |c| answer_now(tx, f(c))))).await?;
        rx.await.map_err(|_| ChainError::Stopped)
    }

    /// Runs `f` on the chain, in queue order, for changes the named methods
    /// do not cover (a test building a chain, a tool). It is a job like any
    /// other, not a lock: it holds up only the jobs queued behind it, never
    /// a caller's thread. Answered once its writes are durable, or with the
    /// failure of the commit that should have made them so.
    ///
    /// # Errors
    /// A failed durable commit, or [`ChainError::Stopped`].
    pub async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Chain<S>) -> R + Send + 'static,
    ) -> Result<R, ChainError> {
        let (tx, rx) = oneshot::channel::<Result<R, ChainError>>();
        self.send(Job::Write(Box::new(move |c| {
            let r = f(c);
            Box::new(move |failed: Option<&str>| {
                let _ = tx.send(match failed {
                    None => Ok(r),
                    Some(e) => Err(ChainError::Store(StoreError::Db(format!("not made durable: {e}")))),
                });
            })
        })))
        .await?;
        rx.await.map_err(|_| ChainError::Stopped)?
    }
}

/// The actor's two lanes and the runtime that waits on them.
struct Lanes<S: Store> {
    rt: tokio::runtime::Runtime,
    local: mpsc::Receiver<Job<S>>,
    network: mpsc::Receiver<Job<S>>,
}

impl<S: Store> Lanes<S> {
    /// The next job, local first, without waiting; `Err(true)` when both
    /// lanes are closed.
    fn try_next(&mut self) -> Result<Job<S>, bool> {
        let local = match self.local.try_recv() {
            Ok(job) => return Ok(job),
            Err(e) => e == mpsc::error::TryRecvError::Disconnected,
        };
        match self.network.try_recv() {
            Ok(job) => Ok(job),
            Err(e) => Err(local && e == mpsc::error::TryRecvError::Disconnected),
        }
    }

    /// The next job, local first, waiting for one; `None` when both lanes
    /// are closed.
    fn next(&mut self) -> Option<Job<S>> {
        let Self { rt, local, network } = self;
        rt.block_on(async {
            tokio::select! {
                biased;
                Some(job) = local.recv() => Some(job),
                Some(job) = network.recv() => Some(job),
                else => None,
            }
        })
    }

    fn is_empty(&self) -> bool {
        self.local.is_empty() && self.network.is_empty()
    }
}

/// The actor's loop: jobs in order (the local lane first), group commits,
/// published snapshots.
fn run<S: Store>(
    mut chain: Chain<S>,
    mut lanes: Lanes<S>,
    snapshot: watch::Sender<ChainSnapshot>,
    config: &ActorConfig,
) {
    let mut held: Vec<Deferred> = Vec::new();
    let mut held_since = Instant::now();
    let mut stopped = None;
    loop {
        let job = if held.is_empty() {
            lanes.next()
        } else {
            match lanes.try_next() {
                Ok(job) => Some(job),
                Err(false) => {
                    // Drained: one durable commit answers every held write.
                    flush(&mut chain, &mut held, &snapshot);
                    continue;
                }
                Err(true) => None,
            }
        };
        let Some(job) = job else { break };
        if matches!(job, Job::Write(_)) && !held.is_empty() && chain.store_failure().is_some() {
            // The store failed during this group: what it holds may not
            // survive a reopen, so it is settled (as failed) before any
            // other write, a reopen of the store included.
            flush(&mut chain, &mut held, &snapshot);
        }
        // A panic in a job (a caller's closure, or a bug) costs that job's
        // answer, not the chain: the caller sees `Stopped`.
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| match job {
            Job::Read(f) => Ok(Some(f(&chain))),
            Job::Mutate(f) => Ok(Some(f(&mut chain))),
            Job::Write(f) => {
                // Others waiting: write without an fsync and hold the answer
                // (never while the store is failing: nothing would group).
                let others = !lanes.is_empty();
                if config.group_commit && others && !chain.is_relaxed() && chain.store_failure().is_none() {
                    if let Err(e) = chain.relax_durability() {
                        tracing::warn!("could not relax durability: {e}");
                    } else {
                        held_since = Instant::now();
                    }
                }
                let answer = f(&mut chain);
                if chain.is_relaxed() {
                    held.push(answer);
                    Ok(None)
                } else {
                    Ok(Some(answer))
                }
            }
            Job::Stop(done) => Err(done),
        }));
        match ran {
            Ok(Ok(answer)) => {
                publish(&chain, &snapshot);
                if let Some(answer) = answer {
                    answer(None);
                }
            }
            Ok(Err(done)) => {
                stopped = Some(done);
                break;
            }
            Err(_) => {
                tracing::error!("a chain job panicked; what it wrote is committed and the chain goes on");
                flush(&mut chain, &mut held, &snapshot);
            }
        }
        if !held.is_empty() && (held.len() >= config.flush_writes || held_since.elapsed() >= config.flush_after) {
            flush(&mut chain, &mut held, &snapshot);
        }
    }
    flush(&mut chain, &mut held, &snapshot);
    // The store closes with the chain, before the stop is confirmed: a node
    // opened on the same directory right after finds it free.
    drop(chain);
    if let Some(done) = stopped {
        let _ = done.send(());
    }
}

/// Publishes the chain's snapshot if it changed.
fn publish<S: Store>(chain: &Chain<S>, snapshot: &watch::Sender<ChainSnapshot>) {
    snapshot.send_if_modified(|s| {
        let now = ChainSnapshot::of(chain);
        let changed = *s != now;
        *s = now;
        changed
    });
}

/// One durable commit for everything written since durability was relaxed;
/// then the snapshot, then the held answers, told if the group failed: the
/// commit itself, or a store failure during the group (what was written
/// without an fsync may be lost when the store is reopened).
fn flush<S: Store>(chain: &mut Chain<S>, held: &mut Vec<Deferred>, snapshot: &watch::Sender<ChainSnapshot>) {
    let during = chain.store_failure().map(str::to_owned);
    let done = chain.make_durable();
    publish(chain, snapshot);
    let failed = done.err().map(|e| e.to_string()).or(during);
    for answer in held.drain(..) {
        answer(failed.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{K256Verifier, MemoryStore, SigCache, mine_simple};

    fn handle() -> ChainHandle<MemoryStore> {
        let chain = Chain::open(
            ChainParams::test(),
            MemoryStore::new(),
            Arc::new(K256Verifier::new()),
            Arc::new(SigCache::default()),
            Default::default(),
        )
        .expect("open");
        ChainHandle::spawn(chain).expect("spawn")
    }

    #[tokio::test]
    async fn a_write_is_answered_and_published() {
        let h = handle();
        let miner = crate::Keypair::from_seed(b"m").address();
        let block = mine_simple(h.template(miner).await.expect("template")).expect("mined");
        let out = h.insert(block.clone(), None).await.expect("insert");
        assert!(matches!(out, InsertOutcome::Connected { height: 1, .. }));
        assert_eq!(h.tip().hash, block.hash(), "the tip watch moved before the answer");
        assert_eq!(h.snapshot().tip.height, 1);
        assert_eq!(h.read(|c| c.tip().height).await.expect("read"), 1);
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_stop_the_chain() {
        let h = handle();
        let boom = h.read(|_| -> u8 { panic!("a caller's bug") }).await;
        assert!(matches!(boom, Err(ChainError::Stopped)));
        assert_eq!(h.read(|c| c.tip().height).await.expect("still running"), 0);
    }

    #[tokio::test]
    async fn after_shutdown_jobs_are_refused() {
        let h = handle();
        h.shutdown().await;
        assert!(matches!(h.read(|c| c.tip().height).await, Err(ChainError::Stopped)));
    }
}
