//! The JS worker process. It reads jobs from stdin, runs each in a fresh Boa context under the
//! runtime limits, and writes the outcome to stdout. A job's `ccf.kv` operations run on the
//! worker's copy of the node's state, brought to the job's snapshot (by a delta asked of the
//! node) when the script first reads, and the outcome carries the transaction's effects. On a
//! state too large to copy, and in governance calls, each operation is sent to the node (which
//! holds the transaction) and answered. The node starts it as `consort js-worker`; if a script
//! crashes it, only this process dies.
//!
//! The node may send the next job while one runs, so that the worker goes from one job to the
//! next without sleeping; jobs read while one runs wait in a queue. Once a job has run for
//! [`crate::engine::limits::LONG_RUN`], the worker gives the queued jobs back (`FromWorker::Handback`) so
//! that the node runs them on another worker instead of behind a slow or hostile script.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::rc::Rc;

use crate::engine::bundle::Bundle;
use crate::engine::host::{HostAnswer, HostQuery, KvOp, KvReply};
use crate::engine::runner::Runner;
use crate::engine::runtime::{KvBackend, ScriptError};
use crate::executors::protocol::{read_frame, write_frame, FromWorker, JobKv, ToWorker};

/// The environment variable by which the node gives a worker its script thread's stack
/// (`RuntimeOptions::script_stack_bytes` of the options it was started for).
pub const STACK_BYTES_ENV: &str = "CONSORT_JS_STACK_BYTES";

/// Native stack of the thread that runs scripts: what the node asked for, at least
/// [`crate::engine::limits::SCRIPT_STACK_MIN_BYTES`]. Sized so that the heap and stack limits trip
/// first; a shape that still overflows it (docs/decisions.md) kills only this process.
fn script_stack_bytes() -> usize {
    let asked = std::env::var(STACK_BYTES_ENV).ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    usize::try_from(asked.max(crate::engine::limits::SCRIPT_STACK_MIN_BYTES)).unwrap_or(usize::MAX)
}

/// The pipes to the node, as plain files: `Stdout` would add a line buffer and a lock to every
/// frame.
struct Pipe {
    input: BufReader<File>,
    output: BufWriter<File>,
    /// Jobs the node sent while another ran, in order: run next, or given back.
    queued: VecDeque<ToWorker>,
}

impl Pipe {
    fn from_stdio() -> std::io::Result<Pipe> {
        let input = File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
        let output = File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
        Ok(Pipe { input: BufReader::new(input), output: BufWriter::new(output), queued: VecDeque::new() })
    }

    /// The next job: a queued one, or the next from the node.
    fn next_job(&mut self) -> std::io::Result<ToWorker> {
        match self.queued.pop_front() {
            Some(job) => Ok(job),
            None => read_frame(&mut self.input),
        }
    }

    /// The node's answer to the running job's question; jobs read on the way are queued.
    fn answer(&mut self) -> std::io::Result<ToWorker> {
        loop {
            let msg = read_frame::<ToWorker>(&mut self.input)?;
            if msg.seq().is_none() {
                return Ok(msg);
            }
            self.queued.push_back(msg);
        }
    }

    /// Takes in the jobs already waiting in the pipe (without blocking for more) and gives
    /// every queued job back to the node. Only between the running job's questions.
    fn hand_back(&mut self) -> std::io::Result<()> {
        while !self.input.buffer().is_empty() || readable(self.input.get_ref())? {
            let msg = read_frame::<ToWorker>(&mut self.input)?;
            if msg.seq().is_none() {
                return Err(std::io::Error::other(format!("protocol error: expected a job, got {msg:?}")));
            }
            self.queued.push_back(msg);
        }
        if self.queued.is_empty() {
            return Ok(());
        }
        let seqs = self.queued.drain(..).filter_map(|m| m.seq()).collect();
        write_frame(&mut self.output, &FromWorker::Handback(seqs))
    }
}

/// Whether reading `f` would not block (data, or the other end closed).
fn readable(f: &File) -> std::io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(f, PollFlags::IN)];
    Ok(poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 }))? > 0)
}

/// `ccf.kv` over the pipe: one round trip per operation.
struct RemoteKv(Rc<RefCell<Pipe>>);

impl RemoteKv {
    fn round_trip(&self, msg: FromWorker) -> Result<ToWorker, String> {
        let mut pipe = self.0.borrow_mut();
        write_frame(&mut pipe.output, &msg).map_err(|e| format!("node unreachable: {e}"))?;
        pipe.answer().map_err(|e| format!("node unreachable: {e}"))
    }
}

impl KvBackend for RemoteKv {
    fn host(&self, query: HostQuery) -> Result<HostAnswer, String> {
        match self.round_trip(FromWorker::Host(query))? {
            ToWorker::Host(answer) => Ok(answer),
            other => Err(format!("protocol error: expected a host answer, got {other:?}")),
        }
    }

    fn call(&self, op: KvOp) -> Result<KvReply, String> {
        match self.round_trip(FromWorker::Kv(op))? {
            ToWorker::Kv(reply) => Ok(reply),
            other => Err(format!("protocol error: expected a kv reply, got {other:?}")),
        }
    }
}

/// The worker's copy of the node's state, and the running request's transaction on it.
#[derive(Default)]
struct Mirror {
    state: consort_kv::State,
    /// The request's snapshot, and whether `state` is at it.
    snapshot: consort_kv::TxId,
    current: bool,
    /// Opened at the script's first read (after bringing `state` to the snapshot).
    tx: Option<consort_kv::Tx>,
    /// What the script wrote before its first read.
    blind: consort_kv::WriteSet,
}

impl Mirror {
    /// Readies the copy for a request on `snapshot`.
    fn begin(&mut self, snapshot: consort_kv::TxId, current: bool) {
        (self.snapshot, self.current, self.tx, self.blind) = (snapshot, current, None, Default::default());
    }

    /// What the request's transaction read and wrote.
    fn effects(&self) -> consort_kv::TxEffects {
        match &self.tx {
            Some(tx) => tx.effects(),
            None => consort_kv::TxEffects::writes_only(self.snapshot, &self.blind),
        }
    }
}

/// `ccf.kv` on the worker's copy of the state (consensus questions still go to the node).
struct CopyKv {
    mirror: Rc<RefCell<Mirror>>,
    node: RemoteKv,
}

impl KvBackend for CopyKv {
    fn host(&self, query: HostQuery) -> Result<HostAnswer, String> {
        self.node.host(query)
    }

    fn call(&self, op: KvOp) -> Result<KvReply, String> {
        let mut m = self.mirror.borrow_mut();
        let m = &mut *m;
        if m.tx.is_none() {
            if let KvOp::Put { map, key, value } = op {
                m.blind.put(&map, key, value);
                return Ok(KvReply::Done);
            }
            if !m.current {
                let delta = match self.node.round_trip(FromWorker::Sync)? {
                    ToWorker::Sync(delta) => delta,
                    other => return Err(format!("protocol error: expected the state's delta, got {other:?}")),
                };
                // Bringing the copy up to date is not the script's allocation.
                if let Err(e) = consort_alloc::uncounted(|| m.state.apply_delta(&delta)) {
                    // The node's idea of this copy is wrong: stop, so that it starts a new worker.
                    tracing::error!("JS worker: protocol error: {e}");
                    std::process::exit(1);
                }
                m.current = true;
            }
            let mut tx = consort_kv::Tx::new(std::sync::Arc::new(m.state.clone()));
            for (map, writes) in std::mem::take(&mut m.blind).maps {
                for (key, value) in writes {
                    match value {
                        Some(value) => tx.put(&map, key, value),
                        None => drop(tx.remove(&map, key)),
                    }
                }
            }
            m.tx = Some(tx);
        }
        Ok(op.apply(m.tx.as_mut().expect("opened above")))
    }
}

/// Runs the worker until the node closes its stdin.
/// Logs to standard error, filtered by `CONSORT_LOG` (else `default_filter`): lines for people,
/// or one JSON object per line. The `consort` binary and its JS workers log this way.
pub fn init_logging(default_filter: &str, json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("CONSORT_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// A JS worker process's main: `json` selects the log format (the node's `logging.format`).
pub fn worker_main(json: bool) -> ExitCode {
    init_logging("info", json);
    let thread = std::thread::Builder::new().name("consort-js".into()).stack_size(script_stack_bytes()).spawn(serve);
    match thread.map(|t| t.join()) {
        Ok(Ok(code)) => code,
        _ => ExitCode::FAILURE,
    }
}

/// Asks the node to retire this worker if a bundle check left a thread running (see
/// `runtime::check_bundle`); false if the node cannot be told.
fn ask_retirement_if_stuck(pipe: &Rc<RefCell<Pipe>>) -> bool {
    !crate::engine::runtime::bundle_check_abandoned() || write_frame(&mut pipe.borrow_mut().output, &FromWorker::Retire).is_ok()
}

/// The outcome of a job that did not run its handler.
fn failed(e: ScriptError) -> FromWorker {
    FromWorker::Done { response: Err(e), apply_writes: None, claims_digest: None, reused: false, effects: None, drawn: Default::default() }
}

fn serve() -> ExitCode {
    let pipe = match Pipe::from_stdio() {
        Ok(p) => Rc::new(RefCell::new(p)),
        Err(e) => {
            tracing::error!("JS worker: opening its pipes: {e}");
            return ExitCode::FAILURE;
        }
    };
    let hand_back = pipe.clone();
    crate::engine::limits::on_long_run(move || {
        if let Err(e) = hand_back.borrow_mut().hand_back() {
            // The node is gone or the protocol is broken: this worker cannot go on.
            tracing::error!("JS worker: giving back queued jobs: {e}");
            std::process::exit(1);
        }
    });
    let mut current: Option<(u64, Bundle)> = None;
    let mut runner = Runner::default();
    // The copy of the node's state that jobs with `JobKv::Copy` run on.
    let mirror = Rc::new(RefCell::new(Mirror::default()));
    let mut options = crate::RuntimeOptions::default();
    loop {
        let msg = pipe.borrow_mut().next_job();
        let (bundle_id, bundle_json, handler, request, body, access, historical, kv, sources) = match msg {
            Ok(ToWorker::Job {
                seq: _,
                bundle_id,
                bundle,
                handler,
                request,
                body,
                access,
                options: new_options,
                historical,
                kv,
                sources,
            }) => {
                if let Some(o) = new_options {
                    options = o;
                }
                (bundle_id, bundle, handler, request, body, access, historical, kv, sources)
            }
            Ok(ToWorker::Call { seq: _, source, function, args, access, options: new_options }) => {
                if let Some(o) = new_options {
                    options = o;
                }
                let value = crate::engine::runner::call(&source, &function, &args, access, &options, Box::new(RemoteKv(pipe.clone())));
                if !ask_retirement_if_stuck(&pipe) || write_frame(&mut pipe.borrow_mut().output, &FromWorker::Returned(value)).is_err() {
                    return ExitCode::FAILURE;
                }
                continue;
            }
            Ok(other) => {
                tracing::error!("JS worker: protocol error, expected a job, got {other:?}");
                return ExitCode::FAILURE;
            }
            // The node closed the pipe: it is stopping or replacing this worker.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("JS worker: reading a job: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Whether the job runs on the copy. A whole state sent with the job is taken first,
        // whatever happens next: the node counts on it.
        let on_copy = match kv {
            JobKv::Node => false,
            JobKv::Copy { snapshot, whole, current } => {
                let mut m = mirror.borrow_mut();
                if let Some(whole) = whole {
                    m.state = consort_kv::State::default();
                    if let Err(e) = m.state.apply_delta(&whole) {
                        tracing::error!("JS worker: protocol error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
                m.begin(snapshot, current);
                true
            }
        };
        if let Some(json) = bundle_json {
            runner.clear();
            match Bundle::from_json(json.as_bytes()) {
                Ok(b) => current = Some((bundle_id, b)),
                Err(e) => {
                    let done = failed(ScriptError::Load(e.to_string()));
                    if write_frame(&mut pipe.borrow_mut().output, &done).is_err() {
                        return ExitCode::FAILURE;
                    }
                    continue;
                }
            }
        }
        let backend: Box<dyn KvBackend> = match on_copy {
            false => Box::new(RemoteKv(pipe.clone())),
            true => Box::new(CopyKv { mirror: mirror.clone(), node: RemoteKv(pipe.clone()) }),
        };
        let done = match &current {
            Some((id, bundle)) if *id == bundle_id => {
                match runner.request(bundle, &handler, &request, &body, historical.as_ref(), access, backend, &options, sources) {
                    Ok((outcome, reused)) => FromWorker::Done {
                        response: outcome.response,
                        apply_writes: outcome.apply_writes,
                        claims_digest: outcome.claims_digest,
                        reused,
                        effects: on_copy.then(|| mirror.borrow().effects()),
                        drawn: outcome.drawn,
                    },
                    Err(e) => failed(e),
                }
            }
            _ => failed(ScriptError::Load("the worker was not sent this app".into())),
        };
        if !ask_retirement_if_stuck(&pipe) || write_frame(&mut pipe.borrow_mut().output, &done).is_err() {
            return ExitCode::FAILURE;
        }
    }
}
