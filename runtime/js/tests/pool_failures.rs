//! How the pool behaves when workers die or the queue is full. One test function, in its own
//! test binary, because it kills the worker processes this test process started (found as its
//! children running the worker binary; never another process).

use std::sync::Arc;

use consort_js::{Bundle, JsPool, JsRequest, KvAccess, PoolError, RuntimeOptions, ScriptError, WorkerCommand};
use consort_kv::Store;

mod common;
use common::FixedHost;

const WORKER: &str = env!("CARGO_BIN_EXE_consort-js-worker");

fn bundle() -> Arc<Bundle> {
    let json = serde_json::json!({
        "metadata": {"endpoints": {
            "/ok": {"post": {"js_module": "m.js", "js_function": "ok", "authn_policies": []}},
            "/endless": {"post": {"js_module": "m.js", "js_function": "endless", "authn_policies": []}},
        }},
        "modules": [{"name": "m.js", "module": "export function ok() { return { body: 'ok' }; } export function endless() { while (true) {} }"}]
    });
    Arc::new(Bundle::from_json(json.to_string().as_bytes()).expect("bundle"))
}

/// The worker processes this test process started: its children running the worker binary.
fn our_workers() -> Vec<u32> {
    let me = std::process::id();
    let worker = std::fs::canonicalize(WORKER).expect("the worker binary");
    let children = std::fs::read_dir("/proc").expect("/proc").filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok());
    children
        .filter(|pid| {
            // `/proc/<pid>/stat`: "pid (comm) state ppid ...", comm may hold spaces and parentheses.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            ppid == Some(me) && std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == worker)
        })
        .collect()
}

async fn call(pool: &JsPool, store: &Store, b: &Arc<Bundle>, name: &str) -> Result<Result<Vec<u8>, ScriptError>, PoolError> {
    let m = b.route("POST", &format!("/{name}")).expect("route");
    let request = JsRequest { method: "POST".into(), path: format!("/{name}"), ..Default::default() };
    let options = Arc::new(RuntimeOptions { max_execution_time_ms: 1000, ..Default::default() });
    let ex = pool.execute(b.clone(), m.endpoint, request, store.begin(), KvAccess::AppReadWrite, options).await?;
    Ok(ex.response.map(|r| r.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_worker_death_and_a_full_queue() {
    let store = Arc::new(Store::default());
    let b = bundle();

    // A worker killed while idle costs no request: the next job goes to a new worker.
    let pool = JsPool::new(WorkerCommand::new(WORKER), 1, 4, Arc::new(FixedHost));
    assert_eq!(call(&pool, &store, &b, "ok").await.expect("queued").expect("ran"), b"ok");
    let workers = our_workers();
    assert_eq!(workers.len(), 1, "the pool's one worker: {workers:?}");
    let killed = std::process::Command::new("kill").args(["-9", &workers[0].to_string()]).status().expect("kill");
    assert!(killed.success(), "the worker was running");
    // Dead with its pipes closed, so that writing the next job to it fails at once: a zombie
    // (until the pool reaps it) with no thread left but the exited main one. (The main thread
    // turns zombie first; the process's files close when its last thread exits, and a thread
    // leaves `task/` only after that.)
    let pid = workers[0];
    let dead = || {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return true };
        let zombie = stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        zombie && std::fs::read_dir(format!("/proc/{pid}/task")).map_or(true, |tasks| tasks.count() <= 1)
    };
    consort_tests::eventually("the killed worker to die", async || dead()).await;
    assert_eq!(call(&pool, &store, &b, "ok").await.expect("queued").expect("served by a new worker"), b"ok");
    let m = pool.metrics();
    assert_eq!((m.workers_started, m.worker_crashes), (2, 0), "{m:?}");
    drop(pool);

    // One worker busy, one request waiting: the next is refused at once, not queued forever.
    let pool = Arc::new(JsPool::new(WorkerCommand::new(WORKER), 1, 1, Arc::new(FixedHost)));
    let busy = {
        let (pool, store, b) = (pool.clone(), store.clone(), b.clone());
        tokio::spawn(async move { call(&pool, &store, &b, "endless").await })
    };
    consort_tests::eventually("the endless request to be admitted", async || pool.metrics().admitted == 1).await;
    let waiting = {
        let (pool, store, b) = (pool.clone(), store.clone(), b.clone());
        tokio::spawn(async move { call(&pool, &store, &b, "ok").await })
    };
    consort_tests::eventually("the second request to be admitted", async || pool.metrics().admitted == 2).await;
    assert!(matches!(call(&pool, &store, &b, "ok").await, Err(PoolError::Busy(1))));
    assert!(matches!(busy.await.expect("join"), Ok(Err(ScriptError::Limit(..)))));
    assert_eq!(waiting.await.expect("join").expect("queued").expect("ran"), b"ok");
    assert_eq!(pool.metrics().busy_rejections, 1);
}
