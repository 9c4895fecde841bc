//! The pool of JS worker processes.
//!
//! Each slot is a thread of the node driving one worker process (`consort js-worker`): it
//! sends a job, answers the worker's `ccf.kv` operations from the request's transaction, and
//! takes the outcome. A watchdog kills a worker that runs past a hard deadline or grows past a
//! hard memory cap, backstops for the worker's own limits; a worker that dies (a script can
//! crash Boa, for example through a built-in that recurses without a stack check) is answered
//! with a clear 500 and replaced, and the node goes on serving.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consort_kv::Tx;

use crate::bundle::{Bundle, EndpointDef};
use crate::limits::{Limit, RuntimeOptions};
use crate::protocol::{read_frame, write_frame, FromWorker, JsHost, ToWorker};
use crate::runtime::{JsRequest, JsResponse, KvAccess, ScriptError};

/// How far past `max_execution_time_ms` a worker may run before the watchdog kills it. The
/// worker stops scripts itself at the limit; this covers what it cannot interrupt.
const HARD_DEADLINE_GRACE: Duration = Duration::from_secs(2);
/// How often the watchdog looks at running workers.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(25);
/// Resident memory a worker may reach beyond four times `max_heap_bytes` (Boa itself, the
/// compiled app, allocator slack) before the watchdog kills it.
const RSS_SLACK_BYTES: u64 = 512 * 1024 * 1024;

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

struct Job {
    bundle: Arc<Bundle>,
    endpoint: EndpointDef,
    request: JsRequest,
    tx: Tx,
    access: KvAccess,
    options: Arc<RuntimeOptions>,
    reply: tokio::sync::oneshot::Sender<Execution>,
}

/// What the watchdog sees of a slot.
#[derive(Default)]
struct Watched {
    child: Option<Child>,
    deadline: Option<Instant>,
    rss_cap: u64,
    killed_for: Option<Limit>,
}

struct Process {
    input: BufWriter<ChildStdin>,
    output: BufReader<ChildStdout>,
    bundle_id: Option<u64>,
}

pub struct JsPool {
    queue: SyncSender<Job>,
    queue_depth: usize,
    workers: usize,
    metrics: Arc<Counters>,
}

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
    pub busy_rejections: u64,
}

#[derive(Default)]
struct Counters {
    executions: AtomicU64,
    reused: AtomicU64,
    limit_stops: AtomicU64,
    crashes: AtomicU64,
    started: AtomicU64,
    busy: AtomicU64,
}

impl JsPool {
    /// Starts `workers` slots behind a queue of `queue_depth` waiting requests. Worker
    /// processes start on first use and are replaced when they die.
    /// `host` answers the scripts' `ccf.consensus` questions.
    pub fn new(command: WorkerCommand, workers: usize, queue_depth: usize, host: Arc<dyn JsHost>) -> JsPool {
        let (queue, rx) = sync_channel::<Job>(queue_depth);
        let rx = Arc::new(Mutex::new(rx));
        let bundle_ids = Arc::new(Mutex::new(None));
        let metrics = Arc::new(Counters::default());
        let mut watched = Vec::new();
        for i in 0..workers.max(1) {
            let slot = Arc::new(Mutex::new(Watched::default()));
            watched.push(slot.clone());
            let (rx, command, bundle_ids, metrics, host) = (rx.clone(), command.clone(), bundle_ids.clone(), metrics.clone(), host.clone());
            std::thread::Builder::new()
                .name(format!("consort-js-slot-{i}"))
                .spawn(move || slot_loop(rx, command, slot, bundle_ids, metrics, host))
                .expect("spawning a JS slot thread");
        }
        std::thread::Builder::new().name("consort-js-watchdog".into()).spawn(move || watchdog(watched)).expect("spawning the JS watchdog");
        JsPool { queue, queue_depth, workers: workers.max(1), metrics }
    }

    pub fn metrics(&self) -> PoolMetrics {
        let m = &self.metrics;
        let executions = m.executions.load(Ordering::Relaxed);
        let reused = m.reused.load(Ordering::Relaxed);
        PoolMetrics {
            workers: self.workers,
            queue_depth: self.queue_depth,
            executions,
            interpreters_reused: reused,
            interpreters_created: executions - reused,
            limit_stops: m.limit_stops.load(Ordering::Relaxed),
            worker_crashes: m.crashes.load(Ordering::Relaxed),
            workers_started: m.started.load(Ordering::Relaxed),
            busy_rejections: m.busy.load(Ordering::Relaxed),
        }
    }

    pub async fn execute(
        &self,
        bundle: Arc<Bundle>,
        endpoint: EndpointDef,
        request: JsRequest,
        tx: Tx,
        access: KvAccess,
        options: Arc<RuntimeOptions>,
    ) -> Result<Execution, PoolError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = Job { bundle, endpoint, request, tx, access, options, reply };
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.busy.fetch_add(1, Ordering::Relaxed);
                return Err(PoolError::Busy(self.queue_depth));
            }
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::Stopped),
        }
        rx.await.map_err(|_| PoolError::Stopped)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A bundle's id: a hash of its JSON, computed once per deployed version (the `Arc` is held
/// so that its address cannot be reused by another bundle while it is cached).
fn bundle_id(cache: &Mutex<Option<(Arc<Bundle>, u64, String)>>, bundle: &Arc<Bundle>) -> (u64, String) {
    let mut cache = lock(cache);
    if let Some((b, id, json)) = cache.as_ref() {
        if Arc::ptr_eq(b, bundle) {
            return (*id, json.clone());
        }
    }
    let json = bundle.to_json().to_string();
    let mut h = DefaultHasher::new();
    json.hash(&mut h);
    let id = h.finish();
    *cache = Some((bundle.clone(), id, json.clone()));
    (id, json)
}

type BundleCache = Arc<Mutex<Option<(Arc<Bundle>, u64, String)>>>;

fn slot_loop(
    rx: Arc<Mutex<Receiver<Job>>>,
    command: WorkerCommand,
    watched: Arc<Mutex<Watched>>,
    bundles: BundleCache,
    metrics: Arc<Counters>,
    host: Arc<dyn JsHost>,
) {
    let mut process: Option<Process> = None;
    loop {
        let job = match lock(&rx).recv() {
            Ok(job) => job,
            Err(_) => break,
        };
        let Job { bundle, endpoint, request, mut tx, access, options, reply } = job;
        let (id, json) = bundle_id(&bundles, &bundle);
        let (response, apply_writes, claims_digest, reused) = match run_job(
            &mut process,
            (&command, &watched, &metrics),
            (id, &json),
            endpoint,
            &request,
            (&mut tx, host.as_ref()),
            access,
            &options,
        ) {
            Ok(done) => done,
            Err(e) => (Err(e), None, None, false),
        };
        metrics.executions.fetch_add(1, Ordering::Relaxed);
        metrics.reused.fetch_add(u64::from(reused), Ordering::Relaxed);
        match &response {
            Err(ScriptError::Limit(_)) => {
                metrics.limit_stops.fetch_add(1, Ordering::Relaxed);
            }
            Err(ScriptError::Crashed(_)) => {
                metrics.crashes.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        let _ = reply.send(Execution { response, tx, apply_writes, claims_digest });
    }
    if let Some(mut child) = lock(&watched).child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn spawn(command: &WorkerCommand, watched: &Mutex<Watched>, metrics: &Counters) -> Result<Process, ScriptError> {
    metrics.started.fetch_add(1, Ordering::Relaxed);
    let mut child = Command::new(&command.program)
        .args(&command.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| ScriptError::Crashed(format!("cannot start a JS worker process ({}): {e}", command.program.display())))?;
    let input = BufWriter::new(child.stdin.take().expect("piped stdin"));
    let output = BufReader::new(child.stdout.take().expect("piped stdout"));
    lock(watched).child = Some(child);
    Ok(Process { input, output, bundle_id: None })
}

type Done = (Result<JsResponse, ScriptError>, Option<bool>, Option<[u8; 32]>, bool);

#[allow(clippy::too_many_arguments)]
fn run_job(
    process: &mut Option<Process>,
    (command, watched, metrics): (&WorkerCommand, &Mutex<Watched>, &Counters),
    (bundle_id, bundle_json): (u64, &str),
    endpoint: EndpointDef,
    request: &JsRequest,
    (tx, host): (&mut Tx, &dyn JsHost),
    access: KvAccess,
    options: &RuntimeOptions,
) -> Result<Done, ScriptError> {
    let fresh = process.is_none();
    if fresh {
        *process = Some(spawn(command, watched, metrics)?);
    }
    let mut p = process.as_mut().expect("spawned above");
    let mut job = ToWorker::Job {
        bundle_id,
        bundle: (p.bundle_id != Some(bundle_id)).then(|| bundle_json.to_owned()),
        endpoint,
        request: serde_json::to_value(request).map_err(|e| ScriptError::Exception(e.to_string()))?,
        body: request.body.clone(),
        access,
        options: options.clone(),
        historical: request.historical.as_deref().cloned(),
    };
    if let Err(e) = write_frame(&mut p.input, &job) {
        // The worker died while idle (nothing of this request reached it): replace it and try
        // once more, so that the request does not pay for someone else's crash.
        if fresh {
            return Err(ScriptError::Crashed(format!("a new JS worker process refused its first job: {e}")));
        }
        reap(watched);
        *process = Some(spawn(command, watched, metrics)?);
        p = process.as_mut().expect("spawned above");
        if let ToWorker::Job { bundle, .. } = &mut job {
            *bundle = Some(bundle_json.to_owned());
        }
        if let Err(e) = write_frame(&mut p.input, &job) {
            *process = None;
            reap(watched);
            return Err(ScriptError::Crashed(format!("cannot send the job to a new JS worker process: {e}")));
        }
    }
    {
        let mut w = lock(watched);
        w.deadline = Some(Instant::now() + Duration::from_millis(options.max_execution_time_ms) + HARD_DEADLINE_GRACE);
        w.rss_cap = options.max_heap_bytes.saturating_mul(4).saturating_add(RSS_SLACK_BYTES);
        w.killed_for = None;
    }
    let outcome = serve_worker(p, tx, host);
    let killed_for = {
        let mut w = lock(watched);
        w.deadline = None;
        w.killed_for.take()
    };
    match outcome {
        Ok(done) => {
            p.bundle_id = Some(bundle_id);
            Ok(done)
        }
        Err(io) => {
            // The worker is gone or unusable: reap it and start afresh next time.
            *process = None;
            let status = reap(watched);
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

/// Kills and waits for the slot's worker process, if any; returns how it ended.
fn reap(watched: &Mutex<Watched>) -> Option<String> {
    lock(watched).child.take().map(|mut c| {
        let _ = c.kill();
        c.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())
    })
}

/// Serves the worker's `ccf.kv` operations and consensus questions until it is done.
fn serve_worker(p: &mut Process, tx: &mut Tx, host: &dyn JsHost) -> std::io::Result<Done> {
    loop {
        match read_frame::<FromWorker>(&mut p.output)? {
            FromWorker::Kv(op) => write_frame(&mut p.input, &ToWorker::Kv(op.apply(tx)))?,
            FromWorker::Host(query) => write_frame(&mut p.input, &ToWorker::Host(query.answer(host)))?,
            FromWorker::Done { response, apply_writes, claims_digest, reused } => {
                return Ok((response, apply_writes, claims_digest, reused))
            }
        }
    }
}

fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn watchdog(slots: Vec<Arc<Mutex<Watched>>>) {
    loop {
        std::thread::sleep(WATCHDOG_PERIOD);
        for slot in &slots {
            let mut w = lock(slot);
            let Some(deadline) = w.deadline else { continue };
            let pid = w.child.as_ref().map(Child::id);
            let over_time = Instant::now() >= deadline;
            let over_memory = pid.and_then(resident_bytes).is_some_and(|rss| rss > w.rss_cap);
            if over_time || over_memory {
                w.killed_for = Some(if over_time { Limit::Time } else { Limit::Heap });
                w.deadline = None;
                if let Some(child) = w.child.as_mut() {
                    let _ = child.kill();
                }
            }
        }
    }
}
