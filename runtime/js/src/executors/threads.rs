//! The executor that runs scripts on threads of the node itself (`js.isolation = "threads"`):
//! no process to cross into, and a script's `ccf.kv` calls go straight to its transaction.
//! The engine, its limits and the way jobs run (`runner.rs`) are the worker processes' own;
//! only the transport differs.
//!
//! What a thread cannot have that a process has: nothing can stop it from outside. A script
//! the engine cannot interrupt (a long native operation) is abandoned at the hard deadline:
//! the request is answered with the time limit, the job's transaction is never handed back
//! (so never committed), and a new thread takes the abandoned one's place; the old one ends
//! when its script does. A script that overflows the native stack aborts the node: the shapes
//! that still can are in docs/decisions.md, and are why `process` stays the default.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use consort_kv::Tx;
use tokio::sync::oneshot;

use crate::engine::bundle::Bundle;
use crate::engine::host::{HostAnswer, HostQuery, JsHost, KvOp, KvReply};
use crate::engine::limits::{Limit, RuntimeOptions};
use crate::engine::runner::Runner;
use crate::engine::runtime::{KvAccess, KvBackend, ScriptError};
use crate::executors::pool::{Done, Finished, Work};

/// A job for a thread, and where its end goes.
struct ThreadJob {
    work: Work,
    tx: Tx,
    access: KvAccess,
    options: Arc<RuntimeOptions>,
    done: oneshot::Sender<(Finished, Tx)>,
    /// When a thread took it.
    taken: Arc<Mutex<Option<Instant>>>,
    /// Set when the pool stopped waiting for it: the thread that ran it then ends.
    abandoned: Arc<AtomicBool>,
}

struct Shared {
    queue: Mutex<VecDeque<ThreadJob>>,
    ready: Condvar,
    host: Arc<dyn JsHost>,
    /// Threads started, replacements included.
    started: AtomicU64,
    /// Set when the pool goes: idle threads end.
    stopping: AtomicBool,
}

/// The node's JS threads, taking jobs from one queue.
pub(crate) struct Threads {
    shared: Arc<Shared>,
}

impl Threads {
    /// Starts `count` threads with the least script stack (they are replaced by larger ones when
    /// a job's limits need more).
    pub fn start(count: usize, host: Arc<dyn JsHost>) -> Threads {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            host,
            started: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        for _ in 0..count.max(1) {
            spawn(&shared, crate::engine::limits::SCRIPT_STACK_MIN_BYTES);
        }
        Threads { shared }
    }

    pub fn started(&self) -> u64 {
        self.shared.started.load(Ordering::Relaxed)
    }

    /// Runs the job on the next free thread. Past the time limit and the grace the watchdog
    /// gives a worker process, the job is abandoned and answered with the time limit, on an
    /// empty transaction of the same snapshot.
    pub async fn run(&self, work: Work, tx: Tx, access: KvAccess, options: Arc<RuntimeOptions>, grace: Duration) -> (Finished, Tx) {
        let snapshot = tx.snapshot().clone();
        let limit = Duration::from_millis(options.max_execution_time_ms).saturating_add(grace);
        let (done, mut result) = oneshot::channel();
        let taken = Arc::new(Mutex::new(None));
        let is_call = matches!(work, Work::Call { .. });
        let job = ThreadJob {
            work,
            tx,
            access,
            options: options.clone(),
            done,
            taken: taken.clone(),
            abandoned: Arc::new(AtomicBool::new(false)),
        };
        let abandoned = job.abandoned.clone();
        lock(&self.shared.queue).push_back(job);
        self.shared.ready.notify_one();
        // The deadline counts from when a thread took the job, not while it waited its turn.
        let mut deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, &mut result).await {
                Ok(Ok(out)) => return out,
                Ok(Err(_)) => {
                    // The thread is gone (a panic in the engine): another takes its place.
                    spawn(&self.shared, options.script_stack_bytes());
                    let e = ScriptError::Crashed("internal: a JS thread ended without answering; a new one took its place".into());
                    return (failed(is_call, e), Tx::new(snapshot));
                }
                Err(_) => match *lock(&taken) {
                    None => deadline = tokio::time::Instant::now() + limit,
                    Some(at) if tokio::time::Instant::from_std(at) + limit > tokio::time::Instant::now() => {
                        deadline = tokio::time::Instant::from_std(at) + limit;
                    }
                    Some(_) => {
                        abandoned.store(true, Ordering::Release);
                        tracing::warn!("a script ran past its time limit and could not be stopped: its JS thread is replaced");
                        spawn(&self.shared, options.script_stack_bytes());
                        let e = ScriptError::Limit(Limit::Time, Limit::Time.describe(&options));
                        return (failed(is_call, e), Tx::new(snapshot));
                    }
                },
            }
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.ready.notify_all();
    }
}

fn failed(is_call: bool, e: ScriptError) -> Finished {
    match is_call {
        true => Finished::Call(Err(e)),
        false => Finished::Request(Done::failed(e)),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn spawn(shared: &Arc<Shared>, stack_bytes: u64) {
    let shared = shared.clone();
    shared.started.fetch_add(1, Ordering::Relaxed);
    let stack = usize::try_from(stack_bytes).unwrap_or(usize::MAX);
    let spawned = std::thread::Builder::new().name("consort-js".into()).stack_size(stack).spawn(move || serve(shared, stack_bytes));
    if let Err(e) = spawned {
        tracing::error!("starting a JS thread with {stack_bytes} bytes of stack: {e}");
    }
}

/// A thread's loop: takes jobs until one needs a larger stack (then hands it to a larger
/// thread and ends) or it was abandoned.
fn serve(shared: Arc<Shared>, stack_bytes: u64) {
    let mut runner = Runner::default();
    let mut app: Option<Arc<Bundle>> = None;
    loop {
        let job = {
            let mut queue = lock(&shared.queue);
            loop {
                if let Some(job) = queue.pop_front() {
                    break job;
                }
                if shared.stopping.load(Ordering::Acquire) {
                    return;
                }
                queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
        };
        let needs = job.options.script_stack_bytes();
        if needs > stack_bytes {
            lock(&shared.queue).push_front(job);
            spawn(&shared, needs);
            return;
        }
        let ThreadJob { work, tx, access, options, done, taken, abandoned } = job;
        *lock(&taken) = Some(Instant::now());
        let tx = Rc::new(RefCell::new(tx));
        let kv = Box::new(InPlace { tx: tx.clone(), host: shared.host.clone() });
        let finished = match work {
            Work::Request { bundle, handler, request, sources } => {
                if !app.as_ref().is_some_and(|a| Arc::ptr_eq(a, &bundle)) {
                    runner.clear();
                    app = Some(bundle.clone());
                }
                let historical = request.historical.as_deref();
                let outcome = runner.request(&bundle, &handler, &request, &request.body, historical, access, kv, &options, sources);
                Finished::Request(match outcome {
                    Ok((o, reused)) => {
                        Done { response: o.response, apply_writes: o.apply_writes, claims_digest: o.claims_digest, reused, drawn: o.drawn }
                    }
                    Err(e) => Done::failed(e),
                })
            }
            Work::Call { source, function, args } => {
                Finished::Call(crate::engine::runner::call(&source, &function, &args, access, &options, kv))
            }
        };
        let tx = match Rc::try_unwrap(tx) {
            Ok(tx) => tx.into_inner(),
            Err(_) => {
                // Ends the thread without an answer: the waiting request says so and starts
                // another thread.
                tracing::error!("internal: a script kept its transaction past its end");
                return;
            }
        };
        let _ = done.send((finished, tx));
        if abandoned.load(Ordering::Acquire) {
            return;
        }
    }
}

/// `ccf.kv` on the job's own transaction, and consensus questions answered by the node: in
/// place, on this thread.
struct InPlace {
    tx: Rc<RefCell<Tx>>,
    host: Arc<dyn JsHost>,
}

impl KvBackend for InPlace {
    fn call(&self, op: KvOp) -> Result<KvReply, String> {
        Ok(op.apply(&mut self.tx.borrow_mut()))
    }

    fn host(&self, query: HostQuery) -> Result<HostAnswer, String> {
        Ok(query.answer(self.host.as_ref()))
    }
}
