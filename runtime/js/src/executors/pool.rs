//! The pool the node runs scripts through: a bounded queue and metrics in front of either the
//! node's JS threads (`threads.rs`, `js.isolation = "threads"`) or, by default and in the rest
//! of this file, JS worker processes.
//!
//! Each slot holds one worker process (`consort js-worker`) and knows which state the worker's
//! copy of the KV state equals; the request's task on the async runtime sends it the job,
//! answers its request for the delta to the request's snapshot (when its copy is behind and the
//! script reads), takes the outcome and absorbs the transaction's effects into the request's
//! transaction. A worker may hold two jobs: the one it runs and the next, sent while the first
//! runs so that the worker goes on to it at once (its caches still warm) instead of sleeping
//! until the node has answered the first. Jobs run in the order they were sent; each request
//! waits for its turn to read the worker's messages. A worker whose job runs past
//! [`crate::engine::limits::LONG_RUN`] gives back the job queued behind it, and the node runs
//! that one elsewhere: a slow or hostile script never holds another request. Governance calls,
//! and requests on a state too large to copy, have each `ccf.kv` operation answered from the request's transaction instead. A watchdog kills a worker that
//! runs past a hard deadline or grows past a hard memory cap, backstops for the worker's own
//! limits; a worker that dies (a script can crash Boa, for example through a built-in that
//! recurses without a stack check) is answered with a clear 500 and replaced, and the node goes
//! on serving.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use consort_kv::{State, Tx, TxEffects};
use tokio::io::BufReader;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Notify;

use crate::engine::bundle::{Bundle, EndpointDef};
use crate::engine::host::{Handler, JsHost};
use crate::engine::limits::{Limit, RuntimeOptions};
use crate::engine::runtime::{JsRequest, JsResponse, KvAccess, ScriptError};
use crate::engine::sources::{Drawn, SourceMode};
use crate::executors::protocol::{read_frame_async, write_frame_async, FromWorker, JobKv, ToWorker};

/// How far past `max_execution_time_ms` a worker may run before the watchdog kills it. The
/// worker stops scripts itself at the limit; this covers what it cannot interrupt.
const HARD_DEADLINE_GRACE: Duration = Duration::from_secs(2);
/// How often the watchdog looks at running workers.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(25);
/// Resident memory a worker may reach beyond four times `max_heap_bytes` (Boa itself, the
/// compiled app, allocator slack) before the watchdog kills it.
const RSS_SLACK_BYTES: u64 = 512 * 1024 * 1024;
/// The largest state (by [`State::size_estimate`]) a worker keeps a copy of. Requests on a
/// larger state run their `ccf.kv` operations on the node, one round trip each.
pub const STATE_COPY_MAX_BYTES: u64 = 128 * 1024 * 1024;
/// Jobs a worker holds at most: the one it runs and the next.
const JOBS_PER_WORKER: usize = 2;

/// How to start a worker process.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl WorkerCommand {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        WorkerCommand { program: program.into(), args: Vec::new() }
    }
}

/// The result of running a handler: its response (or error), and its transaction.
pub struct Execution {
    pub response: Result<JsResponse, ScriptError>,
    pub tx: Tx,
    /// `ccf.rpc.setApplyWrites`, if the handler called it.
    pub apply_writes: Option<bool>,
    pub claims_digest: Option<[u8; 32]>,
    /// The time and random values the handler drew (kept when recording or replaying).
    pub drawn: Drawn,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Every worker is busy and the queue is full: answer 503 and let the client retry.
    #[error("the JS worker queue is full ({0} requests waiting)")]
    Busy(usize),
    #[error("the JS workers have stopped")]
    Stopped,
}

/// What a worker is asked to do. Built once per job and moved, never copied: boxing the
/// large variant buys nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Work {
    /// An app endpoint's handler, its time and random values drawn as `sources` says.
    Request { bundle: Arc<Bundle>, handler: Handler, request: JsRequest, sources: SourceMode },
    /// A function of a one-module script, in a fresh interpreter (governance).
    Call { source: Arc<str>, function: String, args: Vec<serde_json::Value> },
}

struct Job {
    work: Work,
    tx: Tx,
    access: KvAccess,
    options: Arc<RuntimeOptions>,
}

/// How a job ended in the worker.
pub(crate) enum Finished {
    Request(Done),
    Call(Result<String, ScriptError>),
}

/// The result of a governance call: the function's result (JSON), and its transaction.
pub struct CallOutcome {
    pub result: Result<serde_json::Value, ScriptError>,
    pub tx: Tx,
}

/// What the watchdog sees of a slot.
#[derive(Default)]
struct Watched {
    child: Option<Child>,
    deadline: Option<Instant>,
    rss_cap: u64,
    killed_for: Option<Limit>,
    /// Set by the watchdog when a worker holds more than half its memory cap (kept
    /// interpreters and engine leaks grow across requests): the slot replaces it before its
    /// next job, so that it is not killed in the middle of some later request.
    retire: bool,
    /// The script stack the worker was started with (`RuntimeOptions::script_stack_bytes`).
    stack_bytes: u64,
}

/// One worker process and its pipes, shared by the requests whose jobs it holds. Each writes
/// its job under `input`, then waits for its turn (`meta.serving`) to read the worker's
/// messages: the worker runs jobs in the order they were sent.
struct Process {
    input: tokio::sync::Mutex<ChildStdin>,
    output: tokio::sync::Mutex<BufReader<ChildStdout>>,
    meta: Mutex<Meta>,
    /// Signalled when the turn moves on, a job is given back, or the process is discarded.
    turn: Notify,
}

/// What a job carried that the worker keeps once it takes the job in.
#[derive(Clone, Copy, Default)]
struct Carried {
    bundle: bool,
    options: bool,
    whole_state: bool,
}

#[derive(Default)]
struct Meta {
    /// The app version and the runtime options the worker has been sent (it keeps both).
    bundle_id: Option<u64>,
    options: Option<Arc<RuntimeOptions>>,
    /// The state the worker's copy equals, once it has been sent one (as of the job whose turn
    /// it is: a job that asks for a delta moves it).
    copy: Option<Arc<State>>,
    /// The seq the next job gets, and the seq whose turn it is.
    next_seq: u64,
    serving: u64,
    /// Jobs sent and not finished, with the snapshot of those run on the copy.
    in_flight: BTreeMap<u64, Option<Arc<State>>>,
    /// Jobs the worker gave back (no longer in flight), until their request has seen it.
    handed_back: HashSet<u64>,
    /// The jobs that carried what the worker keeps (the app, the options, a whole copy of the
    /// state), while in flight: a worker drops what a job it gives back carried, so the node
    /// must send it again.
    carried: HashMap<u64, Carried>,
    /// The worker asked to be discarded after the job it is finishing (`FromWorker::Retire`).
    retire: bool,
    /// Gone or unusable: jobs still waiting for their turn go to another worker. `dead_in`:
    /// the seq whose turn it was then (that job may have been running: it is answered as
    /// crashed, not run again).
    dead: bool,
    dead_in: u64,
}

/// A place for one worker: its process (started on first use, replaced when it dies) and what
/// the watchdog sees of it.
struct Slot {
    process: Mutex<Option<Arc<Process>>>,
    watched: Arc<Mutex<Watched>>,
}

/// How busy a slot is; all slots' under one lock, so that picking one is one decision.
#[derive(Default, Clone, Copy)]
struct Load {
    jobs: usize,
    /// When the job it runs now began (its request took its turn).
    running_since: Option<Instant>,
    /// The worker gave back the job behind the one it runs: send it none until that ends.
    long: bool,
}

/// The pool: its slots, how busy each is, and an admission count that bounds the requests
/// running or waiting.
///
/// The worker's pipes are driven by the request's own task on the async runtime: a request
/// crosses from the node to a worker and back without a thread of the node in between.
pub struct JsPool {
    inner: Arc<Inner>,
}

struct Inner {
    /// How worker processes are started; `None` when scripts run on the node's own threads.
    command: Option<WorkerCommand>,
    /// The node's JS threads (`js.isolation = "threads"`), instead of worker processes.
    threads: Option<crate::executors::threads::Threads>,
    host: Arc<dyn JsHost>,
    slots: Vec<Slot>,
    loads: Mutex<Vec<Load>>,
    /// Signalled (one waiter at a time, in order) when a slot can take a job again.
    dispatch: Notify,
    /// Requests waiting for a slot: while there are some, new requests queue behind them.
    waiting: AtomicUsize,
    /// Requests running or waiting for a slot.
    admitted: AtomicUsize,
    workers: usize,
    queue_depth: usize,
    bundles: Mutex<Option<CachedBundle>>,
    /// See [`STATE_COPY_MAX_BYTES`].
    copy_max_bytes: u64,
    metrics: Counters,
    /// Held only to keep the watchdog going: it holds a weak reference and stops with the pool.
    _watched: Arc<Vec<Arc<Mutex<Watched>>>>,
}

/// The deployed bundle, its id and its JSON (what a worker is sent when it lacks the id).
type CachedBundle = (Arc<Bundle>, u64, Arc<str>);
/// A bundle's id and JSON.
type AppId = (u64, Arc<str>);

/// What `/node/js_metrics` reports about the pool, counted since the node started.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PoolMetrics {
    /// Where scripts run: `process` (worker processes) or `threads` (the node's own).
    pub isolation: &'static str,
    pub workers: usize,
    /// How many requests may wait for a worker (the queue's capacity).
    pub queue_depth: usize,
    /// Requests admitted and not yet answered: running on a worker or waiting for one.
    pub admitted: usize,
    pub executions: u64,
    pub interpreters_reused: u64,
    pub interpreters_created: u64,
    pub limit_stops: u64,
    pub worker_crashes: u64,
    pub workers_started: u64,
    /// Workers replaced between jobs because they held more than half their memory cap.
    pub workers_retired: u64,
    pub busy_rejections: u64,
    /// Whole copies of the state sent to workers (a new worker's first request); later
    /// requests send only what changed.
    pub state_copies_sent: u64,
    /// Requests whose `ccf.kv` operations ran on the node (the state was too large to copy).
    pub node_kv_requests: u64,
    /// Jobs sent to a worker while it still ran another.
    pub jobs_queued_on_worker: u64,
    /// Of those, jobs the worker gave back because the one ahead ran long (run elsewhere).
    pub jobs_handed_back: u64,
}

#[derive(Default)]
struct Counters {
    executions: AtomicU64,
    reused: AtomicU64,
    limit_stops: AtomicU64,
    crashes: AtomicU64,
    started: AtomicU64,
    retired: AtomicU64,
    busy: AtomicU64,
    state_copies: AtomicU64,
    node_kv: AtomicU64,
    queued_on_worker: AtomicU64,
    handed_back: AtomicU64,
}

impl JsPool {
    /// Starts `workers` slots behind a queue of `queue_depth` waiting requests. Worker
    /// processes start on first use and are replaced when they die.
    /// `host` answers the scripts' `ccf.consensus` questions.
    pub fn new(command: WorkerCommand, workers: usize, queue_depth: usize, host: Arc<dyn JsHost>) -> JsPool {
        let workers = workers.max(1);
        let slots: Vec<Slot> = (0..workers).map(|_| Slot { process: Mutex::new(None), watched: Arc::default() }).collect();
        let watched = Arc::new(slots.iter().map(|s| s.watched.clone()).collect::<Vec<_>>());
        let weak = Arc::downgrade(&watched);
        std::thread::Builder::new().name("consort-js-watchdog".into()).spawn(move || watchdog(weak)).expect("spawning the JS watchdog");
        let mut inner = Inner::empty(workers, queue_depth, host);
        inner.command = Some(command);
        inner.loads = Mutex::new(vec![Load::default(); workers]);
        inner.slots = slots;
        inner.copy_max_bytes = STATE_COPY_MAX_BYTES;
        inner._watched = watched;
        JsPool { inner: Arc::new(inner) }
    }

    /// Runs scripts on `threads` threads of this process (`js.isolation = "threads"`), behind a
    /// queue of `queue_depth` waiting requests; see `threads.rs` for what that gives up.
    pub fn threads(threads: usize, queue_depth: usize, host: Arc<dyn JsHost>) -> JsPool {
        let workers = threads.max(1);
        let mut inner = Inner::empty(workers, queue_depth, host.clone());
        inner.threads = Some(crate::executors::threads::Threads::start(workers, host));
        JsPool { inner: Arc::new(inner) }
    }

    pub fn metrics(&self) -> PoolMetrics {
        let m = &self.inner.metrics;
        let executions = m.executions.load(Ordering::Relaxed);
        let reused = m.reused.load(Ordering::Relaxed);
        PoolMetrics {
            isolation: if self.inner.threads.is_some() { "threads" } else { "process" },
            workers: self.inner.workers,
            queue_depth: self.inner.queue_depth,
            admitted: self.inner.admitted.load(Ordering::Acquire),
            executions,
            interpreters_reused: reused,
            interpreters_created: executions - reused,
            limit_stops: m.limit_stops.load(Ordering::Relaxed),
            worker_crashes: m.crashes.load(Ordering::Relaxed),
            workers_started: m.started.load(Ordering::Relaxed) + self.inner.threads.as_ref().map_or(0, |t| t.started()),
            workers_retired: m.retired.load(Ordering::Relaxed),
            busy_rejections: m.busy.load(Ordering::Relaxed),
            state_copies_sent: m.state_copies.load(Ordering::Relaxed),
            node_kv_requests: m.node_kv.load(Ordering::Relaxed),
            jobs_queued_on_worker: m.queued_on_worker.load(Ordering::Relaxed),
            jobs_handed_back: m.handed_back.load(Ordering::Relaxed),
        }
    }

    /// Sets the largest state workers keep a copy of (see [`STATE_COPY_MAX_BYTES`]); 0 runs
    /// every request's `ccf.kv` operations on the node. Only before the pool is shared.
    pub fn with_state_copy_max_bytes(mut self, bytes: u64) -> JsPool {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.copy_max_bytes = bytes;
        }
        self
    }

    /// Runs the handler on a free worker, with live time and random values.
    pub async fn execute(
        &self,
        bundle: Arc<Bundle>,
        endpoint: &EndpointDef,
        request: JsRequest,
        tx: Tx,
        access: KvAccess,
        options: Arc<RuntimeOptions>,
    ) -> Result<Execution, PoolError> {
        self.execute_drawing(bundle, endpoint, request, tx, access, options, SourceMode::Live).await
    }

    /// [`JsPool::execute`] with the handler's time and random values drawn as `sources` says:
    /// recorded (they come back in [`Execution::drawn`]) or given back from a recording.
    #[allow(clippy::too_many_arguments)]
    pub async fn execute_drawing(
        &self,
        bundle: Arc<Bundle>,
        endpoint: &EndpointDef,
        request: JsRequest,
        tx: Tx,
        access: KvAccess,
        options: Arc<RuntimeOptions>,
        sources: SourceMode,
    ) -> Result<Execution, PoolError> {
        let job = Job { work: Work::Request { bundle, handler: Handler::of(endpoint), request, sources }, tx, access, options };
        let (finished, tx) = self.submit(job).await?;
        Ok(match finished {
            Finished::Request(Done { response, apply_writes, claims_digest, drawn, .. }) => {
                Execution { response, tx, apply_writes, claims_digest, drawn }
            }
            Finished::Call(_) => Execution {
                response: Err(ScriptError::Crashed("internal: a request was answered as a call".into())),
                tx,
                apply_writes: None,
                claims_digest: None,
                drawn: Drawn::default(),
            },
        })
    }

    /// Calls `function` exported by the one-module script `source` with `args`, in a fresh
    /// interpreter, with `ccf.kv` on `tx` under `access`: how governance runs the constitution
    /// and ballots.
    pub async fn call(
        &self,
        source: Arc<str>,
        function: &str,
        args: Vec<serde_json::Value>,
        tx: Tx,
        access: KvAccess,
        options: Arc<RuntimeOptions>,
    ) -> Result<CallOutcome, PoolError> {
        let job = Job { work: Work::Call { source, function: function.to_owned(), args }, tx, access, options };
        let (finished, tx) = self.submit(job).await?;
        let result = match finished {
            Finished::Call(Ok(json)) => serde_json::from_str(&json)
                .map_err(|e| ScriptError::exception(format!("internal: the result of {function} is not JSON: {e}"))),
            Finished::Call(Err(e)) | Finished::Request(Done { response: Err(e), .. }) => Err(e),
            Finished::Request(_) => Err(ScriptError::Crashed("internal: a call was answered as a request".into())),
        };
        Ok(CallOutcome { result, tx })
    }

    /// Admits a job (or refuses it when the queue is full) and runs it to its end in a task of
    /// its own, so a caller that goes away never leaves a worker mid-job.
    async fn submit(&self, job: Job) -> Result<(Finished, Tx), PoolError> {
        let inner = &self.inner;
        if inner.admitted.fetch_add(1, Ordering::AcqRel) >= inner.workers + inner.queue_depth {
            inner.admitted.fetch_sub(1, Ordering::AcqRel);
            inner.metrics.busy.fetch_add(1, Ordering::Relaxed);
            return Err(PoolError::Busy(inner.queue_depth));
        }
        let admission = Admission(inner.clone());
        let task = tokio::spawn(async move {
            let inner = admission.0.clone();
            let out = inner.run(job).await;
            drop(admission);
            out
        });
        task.await.map_err(|_| PoolError::Stopped)?
    }
}

/// One admitted request; leaving frees its place in the queue.
struct Admission(Arc<Inner>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a request's handler ended.
pub(crate) struct Done {
    pub response: Result<JsResponse, ScriptError>,
    pub apply_writes: Option<bool>,
    pub claims_digest: Option<[u8; 32]>,
    /// Whether it ran on an interpreter kept from an earlier request.
    pub reused: bool,
    pub drawn: Drawn,
}

impl Done {
    /// A job that did not run its handler.
    pub fn failed(e: ScriptError) -> Done {
        Done { response: Err(e), apply_writes: None, claims_digest: None, reused: false, drawn: Drawn::default() }
    }
}

/// How one attempt to run a job on a worker ended.
enum Attempt {
    Ran(Result<Finished, ScriptError>),
    /// The job never started there (given back, or the worker went away before its turn): run
    /// it on another.
    NotStarted,
}

/// A job's place on a slot, from picking the slot to the job's end; leaving frees it.
struct Placed<'a> {
    inner: &'a Inner,
    slot: usize,
}

impl Drop for Placed<'_> {
    fn drop(&mut self) {
        lock(&self.inner.loads)[self.slot].jobs -= 1;
        self.inner.dispatch.notify_one();
    }
}

/// The turn of a job on a worker; its end passes the turn on. A turn left before the job
/// finished (a panic, the runtime shutting down) discards the worker, whose protocol state is
/// unknown.
struct Turn<'a> {
    inner: &'a Inner,
    slot: usize,
    process: Arc<Process>,
    seq: u64,
    /// When it began (what the slot's load says while the job runs).
    since: Instant,
    finished: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.finished {
            if let Some(mut child) = self.inner.detach(self.slot, &self.process) {
                let _ = child.start_kill();
            }
        }
        {
            let mut m = lock(&self.process.meta);
            m.in_flight.remove(&self.seq);
            m.carried.remove(&self.seq);
            m.serving = m.in_flight.range(self.seq + 1..).next().map_or(m.next_seq, |(next, _)| *next);
        }
        self.process.turn.notify_waiters();
        // (Unless a new worker on the slot already runs a job of its own.)
        let load = &mut lock(&self.inner.loads)[self.slot];
        if load.running_since == Some(self.since) {
            (load.running_since, load.long) = (None, false);
        }
    }
}

impl Inner {
    /// A pool of `workers` with no executor yet: the constructors add worker slots or threads.
    fn empty(workers: usize, queue_depth: usize, host: Arc<dyn JsHost>) -> Inner {
        Inner {
            command: None,
            threads: None,
            host,
            slots: Vec::new(),
            loads: Mutex::new(Vec::new()),
            dispatch: Notify::new(),
            waiting: AtomicUsize::new(0),
            admitted: AtomicUsize::new(0),
            workers,
            queue_depth,
            bundles: Mutex::new(None),
            copy_max_bytes: 0,
            metrics: Counters::default(),
            _watched: Arc::new(Vec::new()),
        }
    }

    async fn run(&self, job: Job) -> Result<(Finished, Tx), PoolError> {
        let (finished, tx) = match &self.threads {
            Some(threads) => threads.run(job.work, job.tx, job.access, job.options, HARD_DEADLINE_GRACE).await,
            None => self.run_on_worker(job).await,
        };
        let m = &self.metrics;
        let (outcome, reused) = match &finished {
            Finished::Request(done) => (done.response.as_ref().err(), done.reused),
            Finished::Call(r) => (r.as_ref().err(), false),
        };
        m.executions.fetch_add(1, Ordering::Relaxed);
        m.reused.fetch_add(u64::from(reused), Ordering::Relaxed);
        match outcome {
            Some(ScriptError::Limit(..)) => {
                m.limit_stops.fetch_add(1, Ordering::Relaxed);
            }
            Some(ScriptError::Crashed(_)) => {
                m.crashes.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        Ok((finished, tx))
    }

    async fn run_on_worker(&self, job: Job) -> (Finished, Tx) {
        let Job { work, mut tx, access, options } = job;
        // A request runs on the worker's copy of the state, brought to its snapshot, unless the
        // state is too large to copy (or its transaction has already been used).
        let snapshot = tx.snapshot().clone();
        let size = snapshot.size_estimate();
        let on_copy = matches!(work, Work::Request { .. }) && tx.is_untouched() && self.copy_max_bytes > 0 && size <= self.copy_max_bytes;
        let finished = match self.message(work, access) {
            Err(e) => Err(e),
            Ok((bundle, mut msg)) => {
                let job = JobOn { bundle: bundle.as_ref(), tx: &mut tx, options: &options, copy: on_copy.then_some((&snapshot, size)) };
                self.place(&mut msg, job).await
            }
        }
        .unwrap_or_else(|e| Finished::Request(Done::failed(e)));
        (finished, tx)
    }

    /// The message for `work`, without what depends on the worker it goes to (see `send`).
    fn message(&self, work: Work, access: KvAccess) -> Result<(Option<AppId>, ToWorker), ScriptError> {
        Ok(match work {
            Work::Request { bundle, handler, mut request, sources } => {
                let (id, json) = self.bundle_id(&bundle);
                let (body, historical) = (std::mem::take(&mut request.body), request.historical.take());
                let msg = ToWorker::Job {
                    seq: 0,
                    bundle_id: id,
                    bundle: None,
                    handler,
                    request,
                    body,
                    access,
                    options: None,
                    historical: historical.as_deref().cloned(),
                    kv: JobKv::Node,
                    sources,
                };
                (Some((id, json)), msg)
            }
            Work::Call { source, function, args } => {
                (None, ToWorker::Call { seq: 0, source: source.to_string(), function, args, access, options: None })
            }
        })
    }

    /// Runs the job on a worker: an idle one if there is one, else behind the job of a worker
    /// whose job began recently; again elsewhere if it is given back.
    async fn place(&self, msg: &mut ToWorker, mut job: JobOn<'_>) -> Result<Finished, ScriptError> {
        if job.copy.is_none() && matches!(msg, ToWorker::Job { .. }) {
            self.metrics.node_kv.fetch_add(1, Ordering::Relaxed);
        }
        loop {
            let placed = self.acquire().await;
            if let Attempt::Ran(result) = self.attempt(placed.slot, msg, &mut job).await {
                return result;
            }
        }
    }

    /// Waits for a slot that can take a job, in the order requests came.
    async fn acquire(&self) -> Placed<'_> {
        let mut queued = false;
        loop {
            let notified = self.dispatch.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if queued || self.waiting.load(Ordering::Acquire) == 0 {
                if let Some(slot) = self.pick() {
                    if queued {
                        self.waiting.fetch_sub(1, Ordering::AcqRel);
                    }
                    return Placed { inner: self, slot };
                }
            }
            if !queued {
                queued = true;
                self.waiting.fetch_add(1, Ordering::AcqRel);
            }
            notified.await;
        }
    }

    /// An idle slot, else the slot whose job began longest ago but less than `LONG_RUN` ago
    /// (it should end soonest) and has no job queued; counts the job on it.
    fn pick(&self) -> Option<usize> {
        let now = Instant::now();
        let mut loads = lock(&self.loads);
        let slot = match loads.iter().position(|l| l.jobs == 0) {
            Some(idle) => idle,
            None => {
                loads
                    .iter()
                    .enumerate()
                    .filter(|(i, l)| l.jobs < JOBS_PER_WORKER && !l.long && !lock(&self.slots[*i].watched).retire)
                    .map(|(i, l)| (i, l.running_since.map_or(Duration::ZERO, |t| now.saturating_duration_since(t))))
                    .filter(|(_, age)| *age < crate::engine::limits::LONG_RUN)
                    .max_by_key(|(_, age)| *age)?
                    .0
            }
        };
        loads[slot].jobs += 1;
        Some(slot)
    }

    /// The slot's worker process, started (with a script stack of `stack_bytes`) if it has none.
    fn process(&self, slot: usize, stack_bytes: u64) -> Result<(Arc<Process>, bool), ScriptError> {
        let s = &self.slots[slot];
        let mut current = lock(&s.process);
        if let Some(p) = current.as_ref() {
            return Ok((p.clone(), false));
        }
        let p = Arc::new(self.spawn(&s.watched, stack_bytes)?);
        *current = Some(p.clone());
        Ok((p, true))
    }

    /// Takes `process` out of its slot (if it is still there) and marks it dead, so that jobs
    /// waiting for their turn on it go elsewhere; returns its child to kill.
    fn detach(&self, slot: usize, process: &Arc<Process>) -> Option<Child> {
        let s = &self.slots[slot];
        let child = {
            let mut current = lock(&s.process);
            match current.as_ref() {
                Some(p) if Arc::ptr_eq(p, process) => {
                    *current = None;
                    lock(&s.watched).child.take()
                }
                _ => None,
            }
        };
        {
            let mut m = lock(&process.meta);
            if !m.dead {
                (m.dead, m.dead_in) = (true, m.serving);
            }
        }
        process.turn.notify_waiters();
        child
    }

    /// Discards `process`: kills it and waits for it; returns how it ended.
    async fn discard(&self, slot: usize, process: &Arc<Process>) -> Option<String> {
        let mut child = self.detach(slot, process)?;
        let _ = child.start_kill();
        Some(child.wait().await.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()))
    }

    /// One attempt at running the job on the slot's worker: send it, wait for its turn, serve
    /// the worker until it is done.
    async fn attempt(&self, slot: usize, msg: &mut ToWorker, job: &mut JobOn<'_>) -> Attempt {
        let watched = self.slots[slot].watched.clone();
        let alone = lock(&self.loads)[slot].jobs == 1;
        // Options that need a larger script stack than the worker was started with (a heap or
        // stack limit raised by governance) retire it: its next lone job starts a new one.
        let stack_bytes = job.options.script_stack_bytes();
        {
            let mut w = lock(&watched);
            if w.child.is_some() && w.stack_bytes < stack_bytes {
                w.retire = true;
            }
        }
        if alone && std::mem::take(&mut lock(&watched).retire) {
            let current = lock(&self.slots[slot].process).clone();
            if let Some(p) = current {
                self.metrics.retired.fetch_add(1, Ordering::Relaxed);
                self.discard(slot, &p).await;
            }
        }
        let (p, fresh) = match self.process(slot, stack_bytes) {
            Ok(p) => p,
            Err(e) => return Attempt::Ran(Err(e)),
        };
        let seq = match self.send(&p, msg, job).await {
            Ok(seq) => seq,
            Err(e) => {
                self.discard(slot, &p).await;
                // A worker that died while idle costs the request nothing: it goes to a new one.
                return match fresh {
                    true => Attempt::Ran(Err(ScriptError::Crashed(format!("cannot send the job to a new JS worker process: {e}")))),
                    false => Attempt::NotStarted,
                };
            }
        };
        // Wait for the jobs ahead of this one to end.
        loop {
            let notified = p.turn.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut m = lock(&p.meta);
                if m.handed_back.remove(&seq) || (m.dead && m.dead_in != seq) {
                    m.in_flight.remove(&seq);
                    m.carried.remove(&seq);
                    return Attempt::NotStarted;
                }
                // (A worker that died in this job's turn is read to its end: the job's error.)
                if m.serving == seq {
                    break;
                }
            }
            notified.await;
        }
        let mut turn = Turn { inner: self, slot, process: p.clone(), seq, since: Instant::now(), finished: false };
        lock(&self.loads)[slot].running_since = Some(turn.since);
        let options = job.options;
        {
            // The worker's copy of the state (at the snapshot by the job's end, if it runs on it)
            // counts towards what it may hold: three times its estimate, for the persistent
            // maps' own nodes and the allocator's slack.
            let copy = match job.copy {
                Some((_, size)) => size,
                None => lock(&p.meta).copy.as_ref().map_or(0, |c| c.size_estimate()),
            };
            let mut w = lock(&watched);
            w.deadline = Some(Instant::now() + Duration::from_millis(options.max_execution_time_ms) + HARD_DEADLINE_GRACE);
            w.rss_cap = options.max_heap_bytes.saturating_mul(4).saturating_add(RSS_SLACK_BYTES).saturating_add(copy.saturating_mul(3));
            w.killed_for = None;
        }
        let outcome = self.serve_worker(slot, &p, job).await;
        let killed_for = {
            let mut w = lock(&watched);
            w.deadline = None;
            w.killed_for.take()
        };
        let result = match outcome {
            Ok((done, effects)) => match effects.map(|e| job.tx.absorb(&e)) {
                Some(Err(e)) => {
                    // Never commit from a copy that differs from the node's state; start the
                    // worker afresh (with a whole copy) instead.
                    self.discard(slot, &p).await;
                    Err(ScriptError::Crashed(format!(
                        "internal: the JS worker's copy of the state is wrong ({e}); the node started a new worker"
                    )))
                }
                _ => {
                    if lock(&p.meta).retire {
                        // Its answer stands; the worker holds work it could not stop.
                        self.metrics.retired.fetch_add(1, Ordering::Relaxed);
                        self.discard(slot, &p).await;
                    }
                    Ok(done)
                }
            },
            Err(io) => {
                // The worker is gone or unusable: discard it (jobs behind this one go elsewhere).
                let status = self.discard(slot, &p).await;
                Err(match killed_for {
                    Some(limit) => ScriptError::Limit(limit, limit.describe(options)),
                    None => ScriptError::Crashed(format!(
                        "the script crashed its JS worker process ({}; {io}), for example by nesting a structure so deep that a built-in overflowed the stack; the node started a new worker",
                        status.unwrap_or_else(|| "no status".into())
                    )),
                })
            }
        };
        turn.finished = true;
        drop(turn);
        Attempt::Ran(result)
    }

    /// Sends the job to the worker with what it lacks (the app, the options, the state); returns
    /// its seq.
    async fn send(&self, p: &Process, msg: &mut ToWorker, job: &JobOn<'_>) -> std::io::Result<u64> {
        let mut input = p.input.lock().await;
        // A worker without a copy is sent the whole state, built below, unlocked.
        let mut whole_of = None;
        let seq = {
            let mut m = lock(&p.meta);
            if m.dead {
                return Err(std::io::Error::other("the worker was discarded"));
            }
            let seq = m.next_seq;
            m.next_seq += 1;
            if !m.in_flight.is_empty() {
                self.metrics.queued_on_worker.fetch_add(1, Ordering::Relaxed);
            }
            let sends_options = m.options.as_deref() != Some(&**job.options);
            if sends_options {
                m.options = Some(job.options.clone());
            }
            match msg {
                ToWorker::Job { seq: s, bundle: b, options: o, kv, .. } => {
                    *s = seq;
                    let (id, json) = job.bundle.expect("a job has a bundle");
                    *b = (m.bundle_id != Some(*id)).then(|| json.to_string());
                    m.bundle_id = Some(*id);
                    *o = sends_options.then(|| (**job.options).clone());
                    *kv = match job.copy {
                        None => JobKv::Node,
                        Some((snapshot, _)) => match &m.copy {
                            None => {
                                m.copy = Some(snapshot.clone());
                                whole_of = Some(snapshot.clone());
                                JobKv::Copy { snapshot: snapshot.txid(), whole: None, current: true }
                            }
                            // At the snapshot already, and no job ahead moves it elsewhere.
                            Some(c) => {
                                let current =
                                    Arc::ptr_eq(c, snapshot) && m.in_flight.values().flatten().all(|ahead| Arc::ptr_eq(ahead, snapshot));
                                JobKv::Copy { snapshot: snapshot.txid(), whole: None, current }
                            }
                        },
                    };
                }
                ToWorker::Call { seq: s, options: o, .. } => {
                    *s = seq;
                    *o = sends_options.then(|| (**job.options).clone());
                }
                _ => {}
            }
            let carried = Carried {
                bundle: matches!(msg, ToWorker::Job { bundle: Some(_), .. }),
                options: sends_options,
                whole_state: whole_of.is_some(),
            };
            if carried.bundle || carried.options || carried.whole_state {
                m.carried.insert(seq, carried);
            }
            m.in_flight.insert(seq, job.copy.map(|(snapshot, _)| snapshot.clone()));
            seq
        };
        if let Some(snapshot) = whole_of {
            // Up to `STATE_COPY_MAX_BYTES`: built off the async runtime.
            self.metrics.state_copies.fetch_add(1, Ordering::Relaxed);
            let delta = tokio::task::spawn_blocking(move || snapshot.delta_from(&State::default()));
            let delta = delta.await.map_err(|e| std::io::Error::other(format!("building the state's copy: {e}")))?;
            if let ToWorker::Job { kv: JobKv::Copy { whole, .. }, .. } = msg {
                *whole = Some(delta);
            }
        }
        write_frame_async(&mut *input, &*msg).await?;
        Ok(seq)
    }

    /// A bundle's id: a hash of its JSON, computed once per deployed version (the `Arc` is
    /// held so that its address cannot be reused by another bundle while it is cached).
    fn bundle_id(&self, bundle: &Arc<Bundle>) -> (u64, Arc<str>) {
        let mut cache = lock(&self.bundles);
        if let Some((b, id, json)) = cache.as_ref() {
            if Arc::ptr_eq(b, bundle) {
                return (*id, json.clone());
            }
        }
        let json: Arc<str> = bundle.to_json().to_string().into();
        let mut h = DefaultHasher::new();
        json.hash(&mut h);
        let id = h.finish();
        *cache = Some((bundle.clone(), id, json.clone()));
        (id, json)
    }

    fn spawn(&self, watched: &Mutex<Watched>, stack_bytes: u64) -> Result<Process, ScriptError> {
        self.metrics.started.fetch_add(1, Ordering::Relaxed);
        let command = self.command.as_ref().ok_or_else(|| ScriptError::Crashed("internal: no worker processes in this pool".into()))?;
        let mut child = Command::new(&command.program)
            .args(&command.args)
            .env(crate::executors::worker::STACK_BYTES_ENV, stack_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ScriptError::Crashed(format!("cannot start a JS worker process ({}): {e}", command.program.display())))?;
        let input = child.stdin.take().expect("piped stdin");
        let output = BufReader::new(child.stdout.take().expect("piped stdout"));
        {
            let mut w = lock(watched);
            w.child = Some(child);
            w.stack_bytes = stack_bytes;
        }
        Ok(Process {
            input: tokio::sync::Mutex::new(input),
            output: tokio::sync::Mutex::new(output),
            meta: Mutex::new(Meta::default()),
            turn: Notify::new(),
        })
    }

    /// Serves the worker's `ccf.kv` operations, consensus questions and (for a job on its copy
    /// of the state) its request for the delta, until it is done; takes note of jobs it gives
    /// back. A job run on the copy ends with its transaction's effects. Only in the job's turn.
    async fn serve_worker(&self, slot: usize, p: &Process, job: &mut JobOn<'_>) -> std::io::Result<(Finished, Option<TxEffects>)> {
        let mut output = p.output.lock().await;
        loop {
            let answer = match read_frame_async::<FromWorker>(&mut *output).await? {
                FromWorker::Kv(op) => ToWorker::Kv(op.apply(job.tx)),
                FromWorker::Host(query) => ToWorker::Host(query.answer(self.host.as_ref())),
                FromWorker::Sync => {
                    let (snapshot, _) =
                        job.copy.ok_or_else(|| std::io::Error::other("the worker asked for a state delta outside a copy job"))?;
                    // (A worker never sent a copy holds the empty state.)
                    let copy = lock(&p.meta).copy.clone().unwrap_or_default();
                    let delta = snapshot.delta_from(&copy);
                    lock(&p.meta).copy = Some(snapshot.clone());
                    ToWorker::Sync(delta)
                }
                FromWorker::Handback(seqs) => {
                    self.metrics.handed_back.fetch_add(seqs.len() as u64, Ordering::Relaxed);
                    {
                        let mut m = lock(&p.meta);
                        for seq in seqs {
                            m.in_flight.remove(&seq);
                            m.handed_back.insert(seq);
                            // The worker never took in what the job carried: send it again.
                            let carried = m.carried.remove(&seq).unwrap_or_default();
                            if carried.bundle {
                                m.bundle_id = None;
                            }
                            if carried.options {
                                m.options = None;
                            }
                            if carried.whole_state {
                                m.copy = None;
                            }
                        }
                    }
                    lock(&self.loads)[slot].long = true;
                    p.turn.notify_waiters();
                    continue;
                }
                FromWorker::Retire => {
                    lock(&p.meta).retire = true;
                    continue;
                }
                FromWorker::Done { response, apply_writes, claims_digest, reused, effects, drawn } => {
                    return Ok((Finished::Request(Done { response, apply_writes, claims_digest, reused, drawn }), effects))
                }
                FromWorker::Returned(value) => return Ok((Finished::Call(value), None)),
            };
            write_frame_async(&mut *p.input.lock().await, &answer).await?;
        }
    }
}

/// What a job needs besides its message: the app's id and JSON, its transaction, its options,
/// and (for a job on the worker's copy of the state) its snapshot and the state's size.
struct JobOn<'a> {
    bundle: Option<&'a AppId>,
    tx: &'a mut Tx,
    options: &'a Arc<RuntimeOptions>,
    copy: Option<(&'a Arc<State>, u64)>,
}

/// Process `pid`'s resident memory, from `/proc` (`None` where it cannot say).
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn watchdog(slots: Weak<Vec<Arc<Mutex<Watched>>>>) {
    loop {
        std::thread::sleep(WATCHDOG_PERIOD);
        let Some(slots) = slots.upgrade() else { return };
        for slot in slots.iter() {
            let mut w = lock(slot);
            let rss = w.child.as_ref().and_then(Child::id).and_then(resident_bytes).unwrap_or(0);
            if w.rss_cap > 0 && rss > w.rss_cap / 2 {
                w.retire = true;
            }
            let Some(deadline) = w.deadline else { continue };
            let over_time = Instant::now() >= deadline;
            let over_memory = rss > w.rss_cap;
            if over_time || over_memory {
                w.killed_for = Some(if over_time { Limit::Time } else { Limit::Heap });
                w.deadline = None;
                if let Some(child) = w.child.as_mut() {
                    let _ = child.start_kill();
                }
            }
        }
    }
}
