//! A pool of JS worker threads. Each request runs on one worker in a fresh `Context`, so no
//! module state leaks between requests.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use consort_kv::Tx;

use crate::bundle::{Bundle, EndpointDef};
use crate::limits::RuntimeOptions;
use crate::runtime::{run, JsRequest, JsResponse, KvAccess, ScriptError};

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

pub struct JsPool {
    queue: SyncSender<Job>,
    queue_depth: usize,
}

impl JsPool {
    /// Starts `threads` workers behind a queue of `queue_depth` waiting requests.
    pub fn new(threads: usize, queue_depth: usize) -> JsPool {
        let (queue, rx) = sync_channel::<Job>(queue_depth);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("consort-js-{i}"))
                .stack_size(16 * 1024 * 1024)
                .spawn(move || worker(rx))
                .expect("spawning a JS worker thread");
        }
        JsPool { queue, queue_depth }
    }

    #[allow(clippy::too_many_arguments)]
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
            Err(TrySendError::Full(_)) => return Err(PoolError::Busy(self.queue_depth)),
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::Stopped),
        }
        rx.await.map_err(|_| PoolError::Stopped)
    }
}

fn worker(rx: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = {
            let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
            match guard.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let Job { bundle, endpoint, request, tx, access, options, reply } = job;
        let outcome = run(&bundle, &endpoint, &request, tx, access, &options);
        let _ = reply.send(Execution {
            response: outcome.response,
            tx: outcome.tx,
            apply_writes: outcome.apply_writes,
            claims_digest: outcome.claims_digest,
        });
    }
}
