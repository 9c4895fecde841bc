//! Hostile scripts, run in real worker processes: each is stopped by the limit it hits, with a
//! message naming it, or crashes only its worker, while other requests keep being served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use consort_js::{Bundle, JsPool, JsRequest, KvAccess, RuntimeOptions, ScriptError};
use consort_kv::Store;

mod common;
use common::pool;

const TIME_MS: u64 = 300;

/// Heap cases get a long time limit so that the heap limit is the one they hit.
fn options(for_heap: bool) -> Arc<RuntimeOptions> {
    let time = if for_heap { 20_000 } else { TIME_MS };
    Arc::new(RuntimeOptions { max_execution_time_ms: time, max_heap_bytes: 32 * 1024 * 1024, ..Default::default() })
}

fn bundle(cases: &[(&str, &str)]) -> Arc<Bundle> {
    let module: String = cases.iter().map(|(name, body)| format!("export function {name}(request) {{ {body} }}\n")).collect();
    let endpoints: serde_json::Map<String, serde_json::Value> = cases
        .iter()
        .map(|(name, _)| {
            (format!("/{name}"), serde_json::json!({"post": {"js_module": "m.js", "js_function": name, "authn_policies": []}}))
        })
        .collect();
    let json = serde_json::json!({"metadata": {"endpoints": endpoints}, "modules": [{"name": "m.js", "module": module}]});
    Arc::new(Bundle::from_json(json.to_string().as_bytes()).expect("bundle"))
}

async fn call(pool: &JsPool, store: &Store, b: &Arc<Bundle>, name: &str) -> (Result<consort_js::JsResponse, ScriptError>, Duration) {
    call_with(pool, store, b, name, options(false)).await
}

async fn call_with(
    pool: &JsPool,
    store: &Store,
    b: &Arc<Bundle>,
    name: &str,
    options: Arc<RuntimeOptions>,
) -> (Result<consort_js::JsResponse, ScriptError>, Duration) {
    let m = b.route("POST", &format!("/{name}")).expect("route");
    let request = JsRequest { method: "POST".into(), path: format!("/{name}"), ..Default::default() };
    let started = Instant::now();
    let ex = pool.execute(b.clone(), m.endpoint, request, store.begin(), KvAccess::AppReadWrite, options).await.expect("pool");
    (ex.response, started.elapsed())
}

const HOSTILE: &[(&str, &str, &str)] = &[
    ("endless", "while (true) {}", "max_execution_time_ms"),
    (
        "spread_across_calls",
        "function inner(n) { let s = 0; for (let i = 0; i < n; i++) s += i; return s; } while (true) inner(1000);",
        "max_execution_time_ms",
    ),
    (
        "in_builtin_callbacks",
        "const big = Array.from({length: 20000}, (_, i) => i); while (true) big.reduce((a, b) => a + b, 0);",
        "max_execution_time_ms",
    ),
    ("inside_one_callback", "[1].reduce(() => { while (true) {} }, 0);", "max_execution_time_ms"),
    ("catch_does_not_help", "while (true) { try { while (true) {} } catch (e) {} }", "max_execution_time_ms"),
    ("recursion", "function f(n) { return f(n + 1) + 1; } return f(0);", "max_stack_bytes"),
    ("recursion_through_getters", "const o = { get x() { return this.x; } }; return o.x;", "max_stack_bytes"),
    ("array_bomb", "const a = []; while (true) a.push(new Array(1000).fill(1));", "max_heap_bytes"),
    ("string_bomb", "let s = 'x'; while (true) s += s;", "max_heap_bytes"),
    ("object_bomb", "const o = {}; let i = 0; while (true) o['k' + i] = { i: i++ };", "max_heap_bytes"),
    ("huge_response", "return { body: 'x'.repeat(64 * 1024 * 1024) };", "max_heap_bytes"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hostile_script_is_stopped_by_its_limit() {
    let pool = pool(2);
    let store = Store::default();
    let cases: Vec<(&str, &str)> = HOSTILE.iter().map(|(n, b, _)| (*n, *b)).collect();
    let b = bundle(&cases);
    for (name, _, limit) in HOSTILE {
        let for_heap = *limit == "max_heap_bytes";
        let (response, took) = call_with(&pool, &store, &b, name, options(for_heap)).await;
        match response {
            Err(ScriptError::Limit(message)) => assert!(message.contains(limit), "{name}: {message} should name {limit}"),
            other => panic!("{name}: expected the {limit} limit, got {other:?}"),
        }
        // Not a timing test: only that it stops at all, well within an order of magnitude.
        assert!(for_heap || took < Duration::from_millis(TIME_MS * 20), "{name} took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thrown_values_of_any_kind_are_500s_with_their_text() {
    let pool = pool(1);
    let store = Store::default();
    let cases = [
        ("obj", "throw { code: 7 };"),
        ("num", "throw 42;"),
        ("nul", "throw null;"),
        ("str", "throw 'plain';"),
        ("err", "throw new RangeError('r');"),
    ];
    let b = bundle(&cases);
    for (name, expect) in [("obj", "code"), ("num", "42"), ("nul", "null"), ("str", "plain"), ("err", "RangeError: r")] {
        match call(&pool, &store, &b, name).await.0 {
            Err(ScriptError::Exception(m)) => assert!(m.contains(expect), "{name}: {m}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_requests_are_served_while_hostile_ones_run() {
    let pool = Arc::new(pool(2));
    let store = Arc::new(Store::default());
    let b = bundle(&[("endless", "while (true) {}"), ("bomb", "let s = 'x'; while (true) s += s;"), ("ok", "return { body: 'fine' };")]);
    let mut hostile = Vec::new();
    for name in ["endless", "bomb", "endless"] {
        let (pool, store, b) = (pool.clone(), store.clone(), b.clone());
        hostile.push(tokio::spawn(async move { call(&pool, &store, &b, name).await.0 }));
    }
    let mut served = 0;
    let until = Instant::now() + Duration::from_millis(TIME_MS * 3);
    while Instant::now() < until {
        let (response, _) = call(&pool, &store, &b, "ok").await;
        assert_eq!(response.expect("served").body, b"fine");
        served += 1;
    }
    for h in hostile {
        assert!(matches!(h.await.expect("join"), Err(ScriptError::Limit(_))));
    }
    assert!(served > 1);
}

/// Built-ins that Boa runs recursively without a stack check: the script crashes its worker
/// process, the request gets a clear error, and the next request is served by a new worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_the_worker_costs_only_that_request() {
    let pool = pool(1);
    let store = Store::default();
    let cases = [
        ("deep_json", "let o = {}; for (let i = 0; i < 300000; i++) o = { o }; return { body: JSON.stringify(o).length };"),
        ("deep_join", "let a = []; for (let i = 0; i < 300000; i++) a = [a]; return { body: String(a) };"),
        ("deep_eval", "return { body: String(eval('('.repeat(200000) + '1' + ')'.repeat(200000))) };"),
        ("ok", "return { body: 'still here' };"),
    ];
    let b = bundle(&cases);
    for (name, _) in &cases[..3] {
        let options = Arc::new(RuntimeOptions { max_execution_time_ms: 20_000, max_heap_bytes: 512 * 1024 * 1024, ..Default::default() });
        match call_with(&pool, &store, &b, name, options).await.0 {
            Err(ScriptError::Crashed(m)) => assert!(m.contains("crashed its JS worker"), "{name}: {m}"),
            Err(ScriptError::Limit(m)) => assert!(m.contains("max_"), "{name}: {m}"),
            other => panic!("{name}: expected a crash or a limit, got {other:?}"),
        }
        assert_eq!(call(&pool, &store, &b, "ok").await.0.expect("served after a crash").body, b"still here");
    }
}

/// A kept interpreter whose module state grows with every request (each request well within
/// its own heap limit) would eventually take its worker past the memory cap, and the
/// watchdog would kill it in the middle of some request. The pool replaces it between
/// requests instead, once it holds half the cap: every request succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_keeps_growing_is_replaced_between_requests() {
    let pool = pool(1);
    let store = Store::default();
    let json = serde_json::json!({
        "metadata": {"endpoints": {"/grow": {"post": {"js_module": "m.js", "js_function": "grow", "authn_policies": [],
                                                      "interpreter_reuse": {"key": "k"}}}}},
        "modules": [{"name": "m.js", "module":
            "const kept = []; export function grow() { kept.push('x'.repeat(16 * 1024 * 1024)); return { body: String(kept.length) }; }"}],
    });
    let b = Arc::new(Bundle::from_json(json.to_string().as_bytes()).expect("bundle"));
    // 48 MiB allowed per request: the cap is 4 x 48 MiB + 512 MiB = 704 MiB, which the kept
    // strings reach around request 18 (where this fails without the replacement).
    let options = Arc::new(RuntimeOptions { max_heap_bytes: 48 * 1024 * 1024, max_execution_time_ms: 10_000, ..Default::default() });
    for i in 0..30 {
        let (r, _) = call_with(&pool, &store, &b, "grow", options.clone()).await;
        assert!(r.is_ok(), "request {i}: {r:?}");
        // Give the watchdog a look at the worker between requests, as real traffic does.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let m = pool.metrics();
    assert!(m.workers_retired >= 1, "{m:?}");
    assert_eq!((m.limit_stops, m.worker_crashes), (0, 0), "{m:?}");
}
