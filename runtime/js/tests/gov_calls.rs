//! Governance calls (`JsPool::call`): a function of a one-module script in a fresh interpreter,
//! with the KV permission matrix of SPEC §3 for ballots, `validate`/`resolve` and `apply`.

use std::sync::Arc;

use consort_js::{KvAccess, RuntimeOptions, ScriptError};
use consort_kv::{Store, TxId};
use serde_json::json;

mod common;
use common::pool;

const SCRIPT: &str = r#"
const enc = (s) => ccf.strToBuf(s);
export function validate(input) {
  const p = JSON.parse(input);
  return { valid: p.actions.length > 0, description: `${p.actions.length} actions` };
}
export function vote(proposal, proposerId) { return proposerId === "m0"; }
export function nothing() {}
export function touch(map, op) {
  const m = ccf.kv[map];
  if (op === "read") return m.get(enc("k")) === undefined ? "absent" : ccf.bufToStr(m.get(enc("k")));
  m.set(enc("k"), enc("written"));
  return "ok";
}
export function spin() { while (true) {} }
export function rekey() { ccf.node.triggerLedgerRekey(); return "asked"; }
"#;

fn seeded() -> Store {
    let store = Store::default();
    let mut tx = store.begin();
    tx.put("public:ccf.gov.members.info", b"k".to_vec(), b"member".to_vec());
    tx.put("public:ccf.internal.signatures", b"k".to_vec(), b"sig".to_vec());
    tx.put("public:records", b"k".to_vec(), b"public".to_vec());
    tx.put("records", b"k".to_vec(), b"private".to_vec());
    let r = store.reserve(&tx).expect("reserve");
    store.apply(TxId::new(1, 1), tx.write_set());
    drop(r);
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_calls_follow_the_permission_matrix() {
    for (mode, pool) in common::pools(1) {
        eprintln!("isolation: {mode}");
        governance_calls_follow_the_permission_matrix_on(pool).await;
    }
}

async fn governance_calls_follow_the_permission_matrix_on(pool: consort_js::JsPool) {
    let store = seeded();
    let source: Arc<str> = SCRIPT.into();
    let options = Arc::new(RuntimeOptions { max_execution_time_ms: 300, ..Default::default() });
    let call = |function: &'static str, args: Vec<serde_json::Value>, access: KvAccess| {
        let (pool, source, options, tx) = (&pool, source.clone(), options.clone(), store.begin());
        async move { pool.call(source, function, args, tx, access, options).await.expect("pool") }
    };

    let out = call("validate", vec![json!(r#"{"actions": [{"name": "x"}]}"#)], KvAccess::GovReadOnly).await;
    assert_eq!(out.result.expect("validate"), json!({"valid": true, "description": "1 actions"}));
    assert_eq!(call("vote", vec![json!("{}"), json!("m0")], KvAccess::GovReadOnly).await.result.expect("vote"), json!(true));
    assert_eq!(call("nothing", vec![], KvAccess::GovApply).await.result.expect("undefined"), json!(null));

    // (map, operation, access) → Ok(result) or the words the refusal must contain.
    let cases: [(&str, &str, KvAccess, Result<&str, &str>); 12] = [
        ("public:ccf.gov.members.info", "read", KvAccess::GovReadOnly, Ok("member")),
        ("public:ccf.internal.signatures", "read", KvAccess::GovReadOnly, Ok("sig")),
        (
            "public:ccf.gov.members.info",
            "write",
            KvAccess::GovReadOnly,
            Err("belongs to governance: ballots, validate and resolve may read it"),
        ),
        ("public:records", "read", KvAccess::GovReadOnly, Err("may not touch application maps")),
        ("records", "read", KvAccess::GovReadOnly, Err("may not touch application maps")),
        ("public:ccf.gov.members.info", "write", KvAccess::GovApply, Ok("ok")),
        ("public:ccf.internal.signatures", "read", KvAccess::GovApply, Ok("sig")),
        (
            "public:ccf.internal.signatures",
            "write",
            KvAccess::GovApply,
            Err("belongs to the framework: the constitution's apply may read it"),
        ),
        ("public:records", "write", KvAccess::GovApply, Ok("ok")),
        ("public:records", "read", KvAccess::GovApply, Err("may write public application maps, not read them")),
        ("records", "write", KvAccess::GovApply, Err("is a private application map")),
        ("public:ccf.gov.members.info", "write", KvAccess::AppReadWrite, Err("belongs to governance: app endpoints may read it")),
    ];
    for (map, op, access, expected) in cases {
        let mut out = call("touch", vec![json!(map), json!(op)], access).await;
        match (expected, out.result) {
            (Ok(want), Ok(got)) => {
                assert_eq!(got, json!(want), "{map} {op} {access:?}");
                if op == "write" {
                    assert_eq!(out.tx.get(map, b"k").as_deref(), Some(&b"written"[..]), "{map}: the write is in the returned tx");
                }
            }
            (Err(words), Err(ScriptError::Exception { message, .. })) => {
                assert!(message.contains(words) && message.contains(map), "{map} {op} {access:?}: {message}");
                assert!(out.tx.write_set().is_empty(), "a refused write leaves nothing");
            }
            (want, got) => panic!("{map} {op} {access:?}: expected {want:?}, got {got:?}"),
        }
    }

    // Only apply may ask for a ledger rekey; the request is a write the node acts on.
    let asked = call("rekey", vec![], KvAccess::GovApply).await;
    assert_eq!(asked.result.expect("apply may rekey"), json!("asked"));
    assert!(asked.tx.write_set().maps.contains_key(consort_kv::LEDGER_REKEY_REQUESTS));
    for access in [KvAccess::GovReadOnly, KvAccess::AppReadWrite] {
        let refused = call("rekey", vec![], access).await;
        assert!(
            matches!(&refused.result, Err(ScriptError::Exception { message: m, .. }) if m.contains("only be called by the constitution's apply"))
        );
        assert!(refused.tx.write_set().is_empty());
    }

    // A missing function, and one that never ends, are answered without harm to the worker.
    let missing = call("resolve", vec![], KvAccess::GovReadOnly).await.result.expect_err("no such export");
    assert!(matches!(&missing, ScriptError::Load(m) if m.contains("resolve")), "{missing:?}");
    let spun = call("spin", vec![], KvAccess::GovReadOnly).await.result.expect_err("limit");
    assert!(matches!(&spun, ScriptError::Limit(_, m) if m.contains("max_execution_time_ms")), "{spun:?}");
    assert_eq!(call("vote", vec![json!("{}"), json!("m1")], KvAccess::GovReadOnly).await.result.expect("vote"), json!(false));
}

/// A bundle check whose modules never finish loading at their top level (looping, or
/// allocating without end) is refused within the validation's own limits, well inside the
/// call's; the worker that still runs the abandoned check is retired, and the next call is
/// served by a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_check_that_never_finishes_is_refused_and_its_worker_retired() {
    let pool = pool(1);
    let store = Store::default();
    let source: Arc<str> = r#"
export function check(module) {
  const bundle = { metadata: { endpoints: { "/x": { get: { js_module: "m.js", js_function: "f" } } } },
                   modules: [{ name: "m.js", module: module + "\nexport function f() {}" }] };
  try { ccf.consort.validateJsApp(bundle); return "loaded"; } catch (e) { return String(e.message); }
}
"#
    .into();
    // The call's own limit is far above the validation's: only the check's watch can answer in time.
    let options = Arc::new(RuntimeOptions { max_execution_time_ms: 60_000, ..Default::default() });
    let check = |module: &'static str| {
        let (pool, source, options, tx) = (&pool, source.clone(), options.clone(), store.begin());
        async move { pool.call(source, "check", vec![json!(module)], tx, KvAccess::GovReadOnly, options).await.expect("pool") }
    };
    assert_eq!(check("const x = 1;").await.result.expect("call"), json!("loaded"));
    assert_eq!(pool.metrics().workers_retired, 0);
    for (k, module) in ["while (true) {}", "const kept = []; while (true) kept.push(new Array(4096).fill(7));"].into_iter().enumerate() {
        let refusal = check(module).await.result.expect("call");
        let refusal = refusal.as_str().expect("the refusal");
        assert!(refusal.contains("bundle: its modules"), "{module}: {refusal}");
        assert_eq!(pool.metrics().workers_retired, k as u64 + 1, "{module}: the worker is retired");
        assert_eq!(check("const y = 2;").await.result.expect("call"), json!("loaded"), "a new worker serves the next call");
    }
}
