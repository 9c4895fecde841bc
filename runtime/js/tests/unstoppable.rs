//! A script the engine cannot interrupt: one native call that never returns (here `indexOf`
//! over an array-like of 2^53 - 1 elements, no bytecode to count). In a worker process the
//! watchdog kills the worker at the hard deadline; on the node's threads the job is abandoned
//! there, answered with the time limit, and a new thread takes its place (the old one spins
//! on, which is why threads are only for apps the operator trusts: docs/decisions.md). In both,
//! the next request is served. (Its own test binary: the abandoned thread spins until the
//! process ends.)

use std::sync::Arc;

use consort_js::{Bundle, JsRequest, KvAccess, Limit, RuntimeOptions, ScriptError};
use consort_kv::Store;

mod common;

#[global_allocator]
static ALLOC: consort_alloc::CountingAllocator = consort_alloc::CountingAllocator;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_the_engine_cannot_stop_is_answered_at_the_hard_deadline() {
    let json = serde_json::json!({
        "metadata": {"endpoints": {
            "/spin": {"post": {"js_module": "m.js", "js_function": "spin", "authn_policies": []}},
            "/ok": {"post": {"js_module": "m.js", "js_function": "ok", "authn_policies": []}},
        }},
        "modules": [{"name": "m.js", "module": "export function spin() { return { body: String(Array.prototype.indexOf.call({ length: 2 ** 53 - 1 }, 1)) }; }\nexport function ok() { return { body: 'ok' }; }"}],
    });
    let b = Arc::new(Bundle::from_json(json.to_string().as_bytes()).expect("bundle"));
    let options = Arc::new(RuntimeOptions { max_execution_time_ms: 200, ..Default::default() });
    for (mode, pool) in common::pools(1) {
        eprintln!("isolation: {mode}");
        let store = Store::default();
        let run = |name: &str| {
            let m = b.route("POST", &format!("/{name}")).expect("route");
            let request = JsRequest { method: "POST".into(), path: format!("/{name}"), ..Default::default() };
            pool.execute(b.clone(), m.endpoint, request, store.begin(), KvAccess::AppReadWrite, options.clone())
        };
        let started = pool.metrics().workers_started;
        let spun = run("spin").await.expect("pool");
        assert!(matches!(spun.response, Err(ScriptError::Limit(Limit::Time, _))), "{mode}: {:?}", spun.response.map(|r| r.body));
        assert!(spun.tx.write_set().is_empty());
        let ok = run("ok").await.expect("pool").response.expect("served after");
        assert_eq!(ok.body, b"ok");
        assert!(pool.metrics().workers_started > started, "{mode}: a new worker or thread took the stuck one's place");
    }
}
