//! A generator of hostile programs (issue 20): structures nested as deep as the limits allow
//! and beyond, built every way the language has (arrays, objects, proxies, bound functions,
//! prototype chains, classes, getters, `toJSON`), consumed by every built-in that walks them,
//! and sources nested every way the grammar allows, given to `eval` and `Function`. Each
//! program runs in a real JS worker process under the default limits; none may crash it.
//!
//! `make test` runs a seeded slice. The campaign:
//! `FUZZ_EXECUTIONS=1000000 cargo test --release -p consort-js --test fuzz -- --ignored --nocapture`
//! (figures in docs/perf.md); `FUZZ_SEED` picks another sequence, `FUZZ_ISOLATION=threads` runs
//! on the node's threads instead of worker processes, and a crash in a worker prints the
//! program that caused it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use consort_js::{Bundle, JsRequest, KvAccess, RuntimeOptions, ScriptError};
use consort_kv::Store;

mod common;

// The node's allocator: the heap limit counts a JS thread's bytes through it.
#[global_allocator]
static ALLOC: consort_alloc::CountingAllocator = consort_alloc::CountingAllocator;

/// One program: a builder of a deep value and a use of it, or a deeply nested source.
fn program(rng: &mut fastrand::Rng, max_log_depth: u32) -> String {
    // Depths spread over orders of magnitude (the lesser of two draws: mostly shallow, so
    // that a campaign is quick), some far past every bound; and some as deep as the heap limit
    // lets a script build (2^15 to 2^19 levels: a native recursion of a few
    // hundred bytes a level overflows a 256 MiB stack there); those take a hundred times as
    // long to run, so one program in 250.
    let depth = |rng: &mut fastrand::Rng| {
        let log = if rng.u8(0..250) == 0 { rng.u32(15..=max_log_depth.max(15)) } else { rng.u32(0..=14).min(rng.u32(0..=14)) };
        1u64 << log | rng.u64(0..2)
    };
    if rng.u8(0..4) == 0 {
        let d = depth(rng);
        return source(rng, d);
    }
    let d = depth(rng);
    let build = builder(rng, d);
    // Sometimes wrap the value once more another way (a proxy of nested arrays, ...).
    let wrap = match rng.u8(0..6) {
        0 => "v = new Proxy(v, {});",
        1 => "v = { v, toJSON() { return [this.v]; } };",
        2 => "v = Object.create(v);",
        3 => "v = [v, v];",
        _ => "",
    };
    let uses: Vec<&str> = (0..rng.usize(1..=3)).map(|_| consumer(rng)).collect();
    format!("{build} {wrap} let r = []; {} r.length", uses.iter().map(|u| format!("r.push({u});")).collect::<String>())
}

/// Builds `v`, nested `d` deep.
fn builder(rng: &mut fastrand::Rng, d: u64) -> String {
    let loop_ = |init: &str, step: &str| format!("let v = {init}; for (let i = 0; i < {d}; i++) {{ {step} }}");
    match rng.u8(0..17) {
        0 => loop_("0", "v = [v];"),
        1 => loop_("0", "v = { v };"),
        2 => loop_("[]", "v = [v, i, 'x'];"),
        3 => loop_("{}", "v = { a: v, b: i };"),
        4 => loop_("{}", "v = new Proxy(v, {});"),
        5 => loop_("{}", "v = new Proxy(v, { get: (t, k) => t[k] });"),
        6 => loop_("{}", "v = new Proxy({}, v);"),
        7 => loop_("function () { return 1; }", "v = v.bind(null);"),
        8 => loop_("{ x: 1 }", "v = Object.create(v);"),
        // Each link walks the chain (the literal checks for a cycle): quadratic, so shorter.
        9 => format!("let v = {{ x: 1 }}; for (let i = 0; i < {}; i++) {{ v = {{ __proto__: v }}; }}", d.min(4096)),
        10 => loop_("class {}", "v = class extends v {};"),
        11 => loop_("{}", "const w = v; v = { get g() { return w; } };"),
        12 => loop_("0", "const w = v; v = { toJSON() { return w; } };"),
        13 => loop_("[]", "v = [[v]].flat();"),
        14 => loop_("{}", "v = Proxy.revocable(v, {}).proxy;"),
        15 => loop_("0", "const w = v; v = new Map([[1, w]]);"),
        _ => loop_("0", "v = [v]; if (i % 2) v = { v };"),
    }
}

/// One use of `v`, as an expression (its exceptions are the program's).
fn consumer(rng: &mut fastrand::Rng) -> &'static str {
    const USES: &[&str] = &[
        "JSON.stringify(v)",
        "JSON.stringify(v, null, 2)",
        "JSON.stringify(v, (k, x) => x)",
        "JSON.stringify(v, ['v', 'a'])",
        "JSON.parse(JSON.stringify(v) ?? 'null', (k, x) => x)",
        "String(v)",
        "`${v}`",
        "v + ''",
        "[v].join()",
        "[v].toLocaleString()",
        "[v].flat(Infinity)",
        "[v].flatMap((x) => x)",
        "[].concat(v)",
        "Array.isArray(v)",
        "Object.prototype.toString.call(v)",
        "v.x",
        "v.missing",
        "'x' in v",
        "(v.y = 1)",
        "delete v.x",
        "Object.keys(v)",
        "Reflect.ownKeys(v)",
        "Object.getPrototypeOf(v)",
        "v instanceof Object",
        "typeof v === 'function' ? v() : 0",
        "typeof v === 'function' ? new v() : 0",
        "({}) instanceof (typeof v === 'function' ? v : Object)",
        "Object.assign({}, v)",
        "({ ...v })",
        "Object.entries(v)",
        "v == 1",
        "structuredClone === undefined",
        "JSON.stringify(Object.getOwnPropertyDescriptors(v))",
        "new Set([v]).has(v)",
        "Array.from({ length: 3 }, () => v).flat(Infinity)",
        "String(Array.prototype.concat.call(v, v))",
    ];
    USES[rng.usize(0..USES.len())]
}

/// A source nested `d` deep, compiled at run time.
fn source(rng: &mut fastrand::Rng, d: u64) -> String {
    let (open, mid, close) = match rng.u8(0..18) {
        0 => ("[", "0", "]"),
        1 => ("(", "0", ")"),
        2 => ("{a:", "0", "}"),
        3 => ("!", "0", ""),
        4 => ("-", "1", ""),
        5 => ("typeof ", "0", ""),
        6 => ("x=>", "0", ""),
        7 => ("1?", "0", ":0"),
        8 => ("1+", "1", ""),
        9 => ("2**", "1", ""),
        10 => ("`${", "0", "}`"),
        11 => ("new ", "Object", ""),
        12 => ("function(){return ", "0", "}"),
        13 => ("{", "", "}"),
        14 => ("if(1)", "0", ""),
        15 => ("if(0){}else ", "0", ""),
        16 => ("try{", "", "}finally{}"),
        _ => ("[[", "0", "]]"),
    };
    let text = format!("'{open}'.repeat({d}) + '{mid}' + '{close}'.repeat({d})");
    match rng.u8(0..5) {
        0 => format!("eval({text})"),
        1 => format!("(0, eval)({text})"),
        2 => format!("new Function({text})"),
        3 => format!("Function('a', 'return ' + {text})"),
        _ => format!("JSON.parse('['.repeat({d}) + ']'.repeat({d}))"),
    }
}

const HANDLER: &str = "export function run(request) { \
    try { const r = (0, eval)('{' + request.body.text() + '\\n}'); return { body: 'value ' + typeof r }; } \
    catch (e) { return { body: 'threw ' + (e && e.name) }; } }";

fn bundle() -> Arc<Bundle> {
    let json = serde_json::json!({
        "metadata": {"endpoints": {"/run": {"post": {"js_module": "m.js", "js_function": "run", "authn_policies": [],
            // One interpreter kept across programs, as apps keep theirs: each program runs in
            // a block of its own, and one a limit stopped takes its interpreter with it.
            "interpreter_reuse": {"key": "fuzz"}}}}},
        "modules": [{"name": "m.js", "module": HANDLER}],
    });
    Arc::new(Bundle::from_json(json.to_string().as_bytes()).expect("bundle"))
}

/// How the executions ended.
#[derive(Default)]
struct Tally {
    values: AtomicU64,
    thrown: AtomicU64,
    limits: AtomicU64,
    crashes: Mutex<Vec<(String, String)>>,
}

/// Runs `executions` generated programs from `seed` on `workers` workers; returns the tally.
async fn campaign(seed: u64, executions: u64, threads: bool, workers: usize, max_log_depth: u32) -> Arc<Tally> {
    let pool = Arc::new(if threads { common::threads(workers) } else { common::pool(workers) });
    let store = Arc::new(Store::default());
    let b = bundle();
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    // The default limits, but a quarter of a second of time: a program is short or stopped.
    let options = Arc::new(RuntimeOptions { max_execution_time_ms: 250, ..Default::default() });
    let clients: Vec<_> = (0..workers * 2)
        .map(|_| {
            let (pool, store, b, tally, next, options) =
                (pool.clone(), store.clone(), b.clone(), tally.clone(), next.clone(), options.clone());
            tokio::spawn(async move {
                let endpoint = b.route("POST", "/run").expect("route").endpoint.clone();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= executions {
                        return;
                    }
                    if i > 0 && i % 100_000 == 0 {
                        eprintln!("{i} executions, {} crashes", tally.crashes.lock().expect("tally").len());
                    }
                    let mut rng = fastrand::Rng::with_seed(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let code = program(&mut rng, max_log_depth);
                    let request =
                        JsRequest { method: "POST".into(), path: "/run".into(), body: code.clone().into_bytes(), ..Default::default() };
                    let ex = pool
                        .execute(b.clone(), &endpoint, request, store.begin(), KvAccess::AppReadWrite, options.clone())
                        .await
                        .expect("pool");
                    match ex.response {
                        Ok(r) if r.body.starts_with(b"value") => tally.values.fetch_add(1, Ordering::Relaxed),
                        Ok(_) => tally.thrown.fetch_add(1, Ordering::Relaxed),
                        Err(ScriptError::Limit(limit, _)) => {
                            if std::env::var("FUZZ_SHOW_LIMITS").is_ok() {
                                eprintln!("{limit:?}: {code}");
                            }
                            tally.limits.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => {
                            tally.crashes.lock().expect("tally").push((code, e.to_string()));
                            0
                        }
                    };
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    assert_eq!(pool.metrics().worker_crashes, tally.crashes.lock().expect("tally").len() as u64);
    tally
}

fn check(tally: &Tally, executions: u64) {
    let crashes = tally.crashes.lock().expect("tally");
    for (code, error) in crashes.iter().take(5) {
        eprintln!("CRASH: {error}\n  program: {code}");
    }
    assert!(crashes.is_empty(), "{} of {executions} programs crashed their worker", crashes.len());
    let (v, t, l) = (tally.values.load(Ordering::Relaxed), tally.thrown.load(Ordering::Relaxed), tally.limits.load(Ordering::Relaxed));
    assert_eq!(v + t + l, executions);
}

/// A seeded slice of the campaign, with depths up to 2^15 (a debug build is slow): every
/// program ends with a value, an exception or a limit, none with a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_hostile_programs_never_crash_a_worker() {
    let executions = 600;
    for threads in [false, true] {
        let tally = campaign(20_261_130, executions, threads, 2, 15).await;
        check(&tally, executions);
        // The generator reaches every ending, so a change that made all of them throw would show.
        assert!(tally.values.load(Ordering::Relaxed) > 0 && tally.thrown.load(Ordering::Relaxed) > 0);
    }
}

/// The campaign (see the module's documentation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a campaign of a million executions: run by hand, figures in docs/perf.md"]
async fn campaign_of_generated_hostile_programs() {
    let var = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (executions, seed) = (var("FUZZ_EXECUTIONS", 1_000_000), var("FUZZ_SEED", 20_261_130));
    // FUZZ_ISOLATION=threads runs the programs on threads of this process (a crash then ends
    // the campaign itself).
    let threads = std::env::var("FUZZ_ISOLATION").is_ok_and(|v| v == "threads");
    let started = Instant::now();
    let tally = campaign(seed, executions, threads, 2, 19).await;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{executions} executions (seed {seed}) in {secs:.0} s ({:.0}/s): {} values, {} exceptions, {} limits, {} crashes",
        executions as f64 / secs,
        tally.values.load(Ordering::Relaxed),
        tally.thrown.load(Ordering::Relaxed),
        tally.limits.load(Ordering::Relaxed),
        tally.crashes.lock().expect("tally").len()
    );
    check(&tally, executions);
}
