//! The pool of JS worker processes.
//!
//! Each slot holds one worker process (`consort js-worker`) and knows which state the worker's
//! copy of the KV state equals; the request's task on the async runtime sends it the job,
//! answers its request for the delta to the request's snapshot (when its copy is behind and the
//! script reads), takes the outcome and absorbs the transaction's effects into the request's
//! transaction. Governance calls, and requests on a state too large to copy, have each `ccf.kv`
//! operation answered from the request's transaction instead. A watchdog kills a worker that
//! runs past a hard deadline or grows past a hard memory cap, backstops for the worker's own
//! limits; a worker that dies (a script can crash Boa, for example through a built-in that
//! recurses without a stack check) is answered with a clear 500 and replaced, and the node goes
//! on serving.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use consort_kv::{State, Tx, TxEffects};
use tokio::io::BufReader;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

use crate::bundle::{Bundle, EndpointDef};
use crate::limits::{Limit, RuntimeOptions};
use crate::protocol::{read_frame_async, write_frame_async, FromWorker, Handler, JobKv, JsHost, ToWorker};
use crate::runtime::{JsRequest, JsResponse, KvAccess, ScriptError};

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
enum Work {
    /// An app endpoint's handler.
    Request { bundle: Arc<Bundle>, handler: Handler, request: JsRequest },
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
enum Finished {
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
}

/// One worker process and its pipes.
struct Process {
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    /// The app version and the runtime options the worker has been sent (it keeps both).
    bundle_id: Option<u64>,
    options: Option<Arc<RuntimeOptions>>,
    /// The state the worker's copy equals, once it has been sent one.
    copy: Option<Arc<State>>,
}

/// A place for one worker: its process (started on first use, replaced when it dies) and what
/// the watchdog sees of it.
struct Slot {
    process: Option<Process>,
    watched: Arc<Mutex<Watched>>,
}

/// The pool: idle slots, a semaphore with one permit per idle slot, and an admission count
/// that bounds the requests running or waiting.
///
/// The worker's pipes are driven by the request's own task on the async runtime: a request
/// crosses from the node to a worker and back without a thread of the node in between.
pub struct JsPool {
    inner: Arc<Inner>,
}

struct Inner {
    command: WorkerCommand,
    host: Arc<dyn JsHost>,
    idle: Mutex<Vec<Slot>>,
    free: Semaphore,
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

/// What `/node/js_metrics` reports about the pool, counted since the node started.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PoolMetrics {
    pub workers: usize,
    pub queue_depth: usize,
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
}

impl JsPool {
    /// Starts `workers` slots behind a queue of `queue_depth` waiting requests. Worker
    /// processes start on first use and are replaced when they die.
    /// `host` answers the scripts' `ccf.consensus` questions.
    pub fn new(command: WorkerCommand, workers: usize, queue_depth: usize, host: Arc<dyn JsHost>) -> JsPool {
        let workers = workers.max(1);
        let slots: Vec<Slot> = (0..workers).map(|_| Slot { process: None, watched: Arc::default() }).collect();
        let watched = Arc::new(slots.iter().map(|s| s.watched.clone()).collect::<Vec<_>>());
        let weak = Arc::downgrade(&watched);
        std::thread::Builder::new().name("consort-js-watchdog".into()).spawn(move || watchdog(weak)).expect("spawning the JS watchdog");
        let inner = Inner {
            command,
            host,
            idle: Mutex::new(slots),
            free: Semaphore::new(workers),
            admitted: AtomicUsize::new(0),
            workers,
            queue_depth,
            bundles: Mutex::new(None),
            copy_max_bytes: STATE_COPY_MAX_BYTES,
            metrics: Counters::default(),
            _watched: watched,
        };
        JsPool { inner: Arc::new(inner) }
    }

    pub fn metrics(&self) -> PoolMetrics {
        let m = &self.inner.metrics;
        let executions = m.executions.load(Ordering::Relaxed);
        let reused = m.reused.load(Ordering::Relaxed);
        PoolMetrics {
            workers: self.inner.workers,
            queue_depth: self.inner.queue_depth,
            executions,
            interpreters_reused: reused,
            interpreters_created: executions - reused,
            limit_stops: m.limit_stops.load(Ordering::Relaxed),
            worker_crashes: m.crashes.load(Ordering::Relaxed),
            workers_started: m.started.load(Ordering::Relaxed),
            workers_retired: m.retired.load(Ordering::Relaxed),
            busy_rejections: m.busy.load(Ordering::Relaxed),
            state_copies_sent: m.state_copies.load(Ordering::Relaxed),
            node_kv_requests: m.node_kv.load(Ordering::Relaxed),
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

    /// Runs the handler on a free worker.
    pub async fn execute(
        &self,
        bundle: Arc<Bundle>,
        endpoint: &EndpointDef,
        request: JsRequest,
        tx: Tx,
        access: KvAccess,
        options: Arc<RuntimeOptions>,
    ) -> Result<Execution, PoolError> {
        let job = Job { work: Work::Request { bundle, handler: Handler::of(endpoint), request }, tx, access, options };
        let (finished, tx) = self.submit(job).await?;
        let (response, apply_writes, claims_digest) = match finished {
            Finished::Request((response, apply_writes, claims_digest, _)) => (response, apply_writes, claims_digest),
            Finished::Call(_) => (Err(ScriptError::Crashed("internal: a request was answered as a call".into())), None, None),
        };
        Ok(Execution { response, tx, apply_writes, claims_digest })
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
                .map_err(|e| ScriptError::Exception(format!("internal: the result of {function} is not JSON: {e}"))),
            Finished::Call(Err(e)) | Finished::Request((Err(e), ..)) => Err(e),
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

/// A slot taken from the idle list; given back when dropped. A slot given back before its
/// request finished (a panic, the runtime shutting down) loses its worker process, whose
/// protocol state is unknown.
struct Lease<'a> {
    inner: &'a Inner,
    slot: Option<Slot>,
    finished: bool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(mut slot) = self.slot.take() {
            if !self.finished {
                slot.process = None;
                if let Some(mut child) = lock(&slot.watched).child.take() {
                    let _ = child.start_kill();
                }
            }
            lock(&self.inner.idle).push(slot);
            self.inner.free.add_permits(1);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Done = (Result<JsResponse, ScriptError>, Option<bool>, Option<[u8; 32]>, bool);

impl Inner {
    async fn run(&self, job: Job) -> Result<(Finished, Tx), PoolError> {
        let permit = self.free.acquire().await.map_err(|_| PoolError::Stopped)?;
        permit.forget();
        let slot = lock(&self.idle).pop().expect("a free permit stands for an idle slot");
        let mut lease = Lease { inner: self, slot: Some(slot), finished: false };
        let slot = lease.slot.as_mut().expect("just taken");
        let Job { work, mut tx, access, options } = job;
        let finished = match self.run_job(slot, work, &mut tx, access, &options).await {
            Ok(f) => f,
            Err(e) => Finished::Request((Err(e), None, None, false)),
        };
        lease.finished = true;
        drop(lease);
        let m = &self.metrics;
        let (outcome, reused) = match &finished {
            Finished::Request((r, _, _, reused)) => (r.as_ref().err(), *reused),
            Finished::Call(r) => (r.as_ref().err(), false),
        };
        m.executions.fetch_add(1, Ordering::Relaxed);
        m.reused.fetch_add(u64::from(reused), Ordering::Relaxed);
        match outcome {
            Some(ScriptError::Limit(_)) => {
                m.limit_stops.fetch_add(1, Ordering::Relaxed);
            }
            Some(ScriptError::Crashed(_)) => {
                m.crashes.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        Ok((finished, tx))
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

    fn spawn(&self, watched: &Mutex<Watched>) -> Result<Process, ScriptError> {
        self.metrics.started.fetch_add(1, Ordering::Relaxed);
        let command = &self.command;
        let mut child = Command::new(&command.program)
            .args(&command.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ScriptError::Crashed(format!("cannot start a JS worker process ({}): {e}", command.program.display())))?;
        let input = child.stdin.take().expect("piped stdin");
        let output = BufReader::new(child.stdout.take().expect("piped stdout"));
        lock(watched).child = Some(child);
        Ok(Process { input, output, bundle_id: None, options: None, copy: None })
    }

    async fn run_job(
        &self,
        slot: &mut Slot,
        work: Work,
        tx: &mut Tx,
        access: KvAccess,
        options: &Arc<RuntimeOptions>,
    ) -> Result<Finished, ScriptError> {
        let watched = slot.watched.clone();
        if std::mem::take(&mut lock(&watched).retire) && slot.process.is_some() {
            self.metrics.retired.fetch_add(1, Ordering::Relaxed);
            slot.process = None;
            reap(&watched).await;
        }
        let fresh = slot.process.is_none();
        if fresh {
            slot.process = Some(self.spawn(&watched)?);
        }
        // A request runs on the worker's copy of the state, brought to its snapshot, unless the
        // state is too large to copy (or its transaction has already been used).
        let snapshot = tx.snapshot().clone();
        let is_request = matches!(work, Work::Request { .. });
        let size = snapshot.size_estimate();
        let on_copy = is_request && tx.is_untouched() && self.copy_max_bytes > 0 && size <= self.copy_max_bytes;
        let (bundle, mut msg) = match work {
            Work::Request { bundle, handler, request } => {
                let (id, json) = self.bundle_id(&bundle);
                let msg = ToWorker::Job {
                    bundle_id: id,
                    bundle: None,
                    handler,
                    request: serde_json::to_value(&request).map_err(|e| ScriptError::Exception(e.to_string()))?,
                    body: request.body,
                    access,
                    options: None,
                    historical: request.historical.as_deref().cloned(),
                    kv: JobKv::Node,
                };
                (Some((id, json)), msg)
            }
            Work::Call { source, function, args } => {
                (None, ToWorker::Call { source: source.to_string(), function, args, access, options: None })
            }
        };
        for attempt in 0..2 {
            let p = slot.process.as_mut().expect("spawned above");
            let sends_options = p.options.as_deref() != Some(&**options);
            match &mut msg {
                ToWorker::Job { bundle: b, options: o, kv, .. } => {
                    let (id, json) = bundle.as_ref().expect("a job has a bundle");
                    *b = (p.bundle_id != Some(*id)).then(|| json.to_string());
                    *o = sends_options.then(|| (**options).clone());
                    *kv = match (on_copy, &p.copy) {
                        (false, _) => JobKv::Node,
                        (true, None) => JobKv::Copy { snapshot: snapshot.txid(), whole: Some(self.sync(None, &snapshot)), current: true },
                        (true, Some(c)) => JobKv::Copy { snapshot: snapshot.txid(), whole: None, current: Arc::ptr_eq(c, &snapshot) },
                    };
                }
                ToWorker::Call { options: o, .. } => *o = sends_options.then(|| (**options).clone()),
                _ => {}
            }
            match write_frame_async(&mut p.input, &msg).await {
                Ok(()) => break,
                Err(e) if fresh || attempt == 1 => {
                    slot.process = None;
                    reap(&watched).await;
                    return Err(ScriptError::Crashed(format!("cannot send the job to a new JS worker process: {e}")));
                }
                // The worker died while idle (nothing of this request reached it): replace it
                // and try once more, so that the request does not pay for someone else's crash.
                Err(_) => {
                    reap(&watched).await;
                    slot.process = Some(self.spawn(&watched)?);
                }
            }
        }
        if is_request && !on_copy {
            self.metrics.node_kv.fetch_add(1, Ordering::Relaxed);
        }
        let p = slot.process.as_mut().expect("spawned above");
        if on_copy && p.copy.is_none() {
            p.copy = Some(snapshot.clone());
        }
        {
            // The worker's copy of the state (at the snapshot by the job's end, if it runs on it)
            // counts towards what it may hold: three times its estimate, for the persistent
            // maps' own nodes and the allocator's slack.
            let copy = if on_copy { size } else { p.copy.as_ref().map_or(0, |c| c.size_estimate()) };
            let copy = copy.saturating_mul(3);
            let mut w = lock(&watched);
            w.deadline = Some(Instant::now() + Duration::from_millis(options.max_execution_time_ms) + HARD_DEADLINE_GRACE);
            w.rss_cap = options.max_heap_bytes.saturating_mul(4).saturating_add(RSS_SLACK_BYTES).saturating_add(copy);
            w.killed_for = None;
        }
        let outcome = self.serve_worker(p, tx, on_copy.then_some(&snapshot)).await;
        let killed_for = {
            let mut w = lock(&watched);
            w.deadline = None;
            w.killed_for.take()
        };
        match outcome {
            Ok((done, effects)) => {
                if let Some((id, _)) = bundle {
                    p.bundle_id = Some(id);
                }
                p.options = Some(options.clone());
                match effects.map(|e| tx.absorb(&e)) {
                    Some(Err(e)) => {
                        // Never commit from a copy that differs from the node's state; start
                        // the worker afresh (with a whole copy) instead.
                        slot.process = None;
                        reap(&watched).await;
                        Err(ScriptError::Crashed(format!(
                            "internal: the JS worker's copy of the state is wrong ({e}); the node started a new worker"
                        )))
                    }
                    _ => Ok(done),
                }
            }
            Err(io) => {
                // The worker is gone or unusable: reap it and start afresh next time.
                slot.process = None;
                let status = reap(&watched).await;
                Err(match killed_for {
                    Some(limit) => ScriptError::Limit(limit.describe(options)),
                    None => ScriptError::Crashed(format!(
                        "the script crashed its JS worker process ({}; {io}), for example by nesting a structure so deep that a built-in overflowed the stack; the node started a new worker",
                        status.unwrap_or_else(|| "no status".into())
                    )),
                })
            }
        }
    }

    /// What brings a worker's copy of the state (`copy`: the state it equals, if any) to
    /// `snapshot`: the delta, or the whole state for a worker without a copy.
    fn sync(&self, copy: Option<&Arc<State>>, snapshot: &Arc<State>) -> consort_kv::StateDelta {
        match copy {
            Some(c) => snapshot.delta_from(c),
            None => {
                self.metrics.state_copies.fetch_add(1, Ordering::Relaxed);
                snapshot.delta_from(&State::default())
            }
        }
    }

    /// Serves the worker's `ccf.kv` operations, consensus questions and (for a job on its copy
    /// of the state at `snapshot`) its request for the delta, until it is done. A job run on
    /// the copy ends with its transaction's effects.
    async fn serve_worker(
        &self,
        p: &mut Process,
        tx: &mut Tx,
        snapshot: Option<&Arc<State>>,
    ) -> std::io::Result<(Finished, Option<TxEffects>)> {
        loop {
            match read_frame_async::<FromWorker>(&mut p.output).await? {
                FromWorker::Kv(op) => write_frame_async(&mut p.input, &ToWorker::Kv(op.apply(tx))).await?,
                FromWorker::Host(query) => write_frame_async(&mut p.input, &ToWorker::Host(query.answer(self.host.as_ref()))).await?,
                FromWorker::Sync => {
                    let snapshot =
                        snapshot.ok_or_else(|| std::io::Error::other("the worker asked for a state delta outside a copy job"))?;
                    let delta = self.sync(p.copy.as_ref(), snapshot);
                    p.copy = Some(snapshot.clone());
                    write_frame_async(&mut p.input, &ToWorker::Sync(delta)).await?
                }
                FromWorker::Done { response, apply_writes, claims_digest, reused, effects } => {
                    return Ok((Finished::Request((response, apply_writes, claims_digest, reused)), effects))
                }
                FromWorker::Returned(value) => return Ok((Finished::Call(value), None)),
            }
        }
    }
}

/// Kills and waits for the slot's worker process, if any; returns how it ended.
async fn reap(watched: &Mutex<Watched>) -> Option<String> {
    let mut child = lock(watched).child.take()?;
    let _ = child.start_kill();
    Some(child.wait().await.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()))
}

fn resident_bytes(pid: u32) -> Option<u64> {
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
