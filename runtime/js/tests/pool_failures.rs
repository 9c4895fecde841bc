//! How the pool behaves when workers die or the queue is full. One test function, in its own
//! test binary, because it kills this crate's worker processes by their path.

use std::sync::Arc;
use std::time::Duration;

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
    let killed = std::process::Command::new("pkill").args(["-9", "-f", WORKER]).status().expect("pkill");
    assert!(killed.success(), "a worker process was running");
    tokio::time::sleep(Duration::from_millis(200)).await;
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = {
        let (pool, store, b) = (pool.clone(), store.clone(), b.clone());
        tokio::spawn(async move { call(&pool, &store, &b, "ok").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(call(&pool, &store, &b, "ok").await, Err(PoolError::Busy(1))));
    assert!(matches!(busy.await.expect("join"), Ok(Err(ScriptError::Limit(..)))));
    assert_eq!(waiting.await.expect("join").expect("queued").expect("ran"), b"ok");
    assert_eq!(pool.metrics().busy_rejections, 1);
}
