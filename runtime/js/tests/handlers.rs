//! JS endpoint behaviour, one `check` per case: module source in, response and writes out.

use std::sync::Arc;

use consort_js::{Bundle, JsPool, JsRequest, KvAccess};
use consort_kv::{Store, TxId};

mod common;
use common::pool;

const LIB: &str = r#"
export function key(s) { return ccf.strToBuf(s); }
"#;

const APP: &str = r#"
import { key } from "./lib/util.js";
const records = ccf.kv["records"];
export function put(request) {
  const body = request.body.json();
  records.set(key(body.id), ccf.jsonCompatibleToBuf(body));
  return { statusCode: 201, body: { stored: body.id } };
}
export function get(request) {
  const v = records.get(key(request.params.id));
  if (v === undefined) return { statusCode: 404, body: { error: { code: "ResourceNotFound", message: "no " + request.params.id } } };
  return { body: ccf.bufToJsonCompatible(v) };
}
export function count() { let n = 0; records.forEach(() => n++); return { body: String(n) + "/" + records.size }; }
export function bytes() { return { body: new Uint8Array([1, 2, 3]) }; }
export function echo(request) { return { headers: { "content-type": "text/x-echo" }, body: request.method + " " + request.query + " " + request.headers["x-test"] }; }
export function throws() { records.set(key("ghost"), key("x")); throw new Error("boom"); }
export function throwsString() { throw "plain"; }
export function notObject() { return 42; }
export function badStatus() { return { statusCode: "200" }; }
export function failsButApplies() { ccf.rpc.setApplyWrites(true); records.set(key("kept"), key("1")); return { statusCode: 400 }; }
export function failsQuietly() { records.set(key("dropped"), key("1")); return { statusCode: 409 }; }
export function writeGov() { ccf.kv["public:ccf.gov.users.certs"].set(key("a"), key("b")); return {}; }
export function readGov() { return { body: String(ccf.kv["public:ccf.gov.users.certs"].has(key("a"))) }; }
export function reserved() { ccf.kv["public:ccf.mine"].get(key("a")); return {}; }
export function badKey() { records.get("not a buffer"); return {}; }
export function version(request) { return { body: String(records.getVersionOfPreviousWrite(key(request.params.id))) }; }
export function crypto() { ccf.crypto.generateEcdsaKeyPair("secp521r1"); return {}; }
export function digest() { const d = new Uint8Array(ccf.crypto.digest("SHA-256", ccf.strToBuf("abc"))); return { body: Array.from(d).map((b) => b.toString(16).padStart(2, "0")).join("") }; }
export function consensus() { const c = ccf.consensus; return { body: [c.getLastCommittedTxId(), c.getStatusForTxId(3, 7), c.getStatusForTxId(4, 7), c.getViewForSeqno(7), c.getViewForSeqno(99)] }; }
export function pemToId(request) { return { body: ccf.pemToId(request.body.text()) }; }
"#;

fn bundle() -> Arc<Bundle> {
    let endpoints: serde_json::Map<String, serde_json::Value> = [
        ("/put", "post", "put", "readwrite"),
        ("/get/{id}", "get", "get", "readonly"),
        ("/count", "get", "count", "readonly"),
        ("/bytes", "get", "bytes", "readonly"),
        ("/echo", "get", "echo", "readonly"),
        ("/throws", "post", "throws", "readwrite"),
        ("/throws-string", "post", "throwsString", "readwrite"),
        ("/not-object", "get", "notObject", "readonly"),
        ("/bad-status", "get", "badStatus", "readonly"),
        ("/fails-applies", "post", "failsButApplies", "readwrite"),
        ("/fails-quietly", "post", "failsQuietly", "readwrite"),
        ("/write-gov", "post", "writeGov", "readwrite"),
        ("/read-gov", "get", "readGov", "readonly"),
        ("/reserved", "get", "reserved", "readonly"),
        ("/bad-key", "get", "badKey", "readonly"),
        ("/ro-write", "get", "put", "readonly"),
        ("/version/{id}", "get", "version", "readonly"),
        ("/crypto", "get", "crypto", "readonly"),
        ("/digest", "get", "digest", "readonly"),
        ("/consensus", "get", "consensus", "readonly"),
        ("/pem-to-id", "post", "pemToId", "readonly"),
    ]
    .iter()
    .map(|(path, method, f, mode)| {
        (path.to_string(), serde_json::json!({ *method: {"js_module": "app.js", "js_function": f, "authn_policies": [], "mode": mode} }))
    })
    .collect();
    let json = serde_json::json!({
        "metadata": {"endpoints": endpoints},
        "modules": [{"name": "app.js", "module": APP}, {"name": "lib/util.js", "module": LIB}]
    });
    let b = Bundle::from_json(json.to_string().as_bytes()).expect("bundle");
    consort_js::validate_bundle(&b).expect("valid");
    Arc::new(b)
}

struct Case<'a> {
    method: &'a str,
    path: &'a str,
    body: &'a str,
    status: u16,
    content_type: Option<&'a str>,
    body_contains: &'a str,
    /// Whether the handler's writes would be applied.
    applies: bool,
}

async fn check(pool: &JsPool, store: &Store, bundle: &Arc<Bundle>, c: Case<'_>) {
    let m = bundle.route(c.method, c.path).unwrap_or_else(|_| panic!("route {} {}", c.method, c.path));
    let access = if m.endpoint.mode == consort_js::Mode::Readwrite { KvAccess::AppReadWrite } else { KvAccess::AppReadOnly };
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("x-test".to_string(), "hdr".to_string());
    let request = JsRequest {
        method: c.method.into(),
        path: c.path.into(),
        url: c.path.into(),
        route: m.route.into(),
        query: "a=1".into(),
        hostname: "localhost".into(),
        headers,
        params: m.params.clone(),
        caller: None,
        body: c.body.as_bytes().to_vec(),
        historical: None,
    };
    let ex = pool.execute(bundle.clone(), m.endpoint, request, store.begin(), access, Default::default()).await.expect("pool");
    let (status, ct, body) = match &ex.response {
        Ok(r) => (
            r.status,
            r.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.clone()).or(r.content_type.clone()),
            String::from_utf8_lossy(&r.body).into_owned(),
        ),
        Err(e) => (500, None, e.to_string()),
    };
    assert_eq!(status, c.status, "{} {}: {body}", c.method, c.path);
    assert_eq!(ct.as_deref(), c.content_type, "{} {}", c.method, c.path);
    assert!(body.contains(c.body_contains), "{} {}: {body:?} should contain {:?}", c.method, c.path, c.body_contains);
    let applies = ex.response.is_ok() && ex.apply_writes.unwrap_or((200..300).contains(&status));
    assert_eq!(applies, c.applies, "{} {}", c.method, c.path);
    if applies && !ex.tx.write_set().is_empty() {
        let r = store.reserve(&ex.tx).expect("no conflict");
        let seqno = store.snapshot().txid().seqno + 1;
        store.apply(TxId::new(1, seqno), ex.tx.write_set());
        drop(r);
    }
}

/// Every case, with `ccf.kv` on the workers' copies of the state and on the node, and on the
/// node's own threads (`js.isolation = "threads"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_cases() {
    run_cases(&pool(2)).await;
    let on_node = pool(2).with_state_copy_max_bytes(0);
    run_cases(&on_node).await;
    assert_eq!(on_node.metrics().state_copies_sent, 0);
    assert!(on_node.metrics().node_kv_requests > 20);
    let threads = common::threads(2);
    run_cases(&threads).await;
    assert_eq!(threads.metrics().workers_started, 2, "no thread was replaced");
}

/// A request on a worker's copy of the state reads exactly the request's snapshot, its reads
/// still make a transaction conflict with a later write, and a worker is sent the whole state
/// once and afterwards only what changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_a_workers_copy_read_their_snapshot_and_conflict() {
    let (pool, store, b) = (pool(1), Store::default(), bundle());
    let run = |path: &'static str, body: &'static str, tx: consort_kv::Tx| {
        let m = b.route(if body.is_empty() { "GET" } else { "POST" }, path).expect("route");
        let access = if body.is_empty() { KvAccess::AppReadOnly } else { KvAccess::AppReadWrite };
        let request = JsRequest { path: path.into(), params: m.params.clone(), body: body.as_bytes().to_vec(), ..Default::default() };
        pool.execute(b.clone(), m.endpoint, request, tx, access, Default::default())
    };
    let body = |ex: &consort_js::Execution| String::from_utf8_lossy(&ex.response.as_ref().expect("ok").body).into_owned();
    for i in 1..=3u64 {
        let ex = run("/put", [r#"{"id": "a", "v": 1}"#, r#"{"id": "b", "v": 2}"#, r#"{"id": "a", "v": 3}"#][i as usize - 1], store.begin())
            .await
            .expect("pool");
        let r = store.reserve(&ex.tx).expect("no conflict");
        store.apply(TxId::new(1, i), ex.tx.write_set());
        drop(r);
    }
    let old = store.begin();
    let ex = run("/get/a", "", store.begin()).await.expect("pool");
    assert!(body(&ex).contains(r#""v":3"#), "{}", body(&ex));
    // A change after the request's snapshot: its read of "a" conflicts, and it was not seen.
    let mut w = store.begin();
    w.put("records", b"a".to_vec(), b"{}".to_vec());
    store.apply(TxId::new(1, 4), w.write_set());
    assert!(store.reserve(&ex.tx).is_err(), "the read on the copy is in the transaction's read set");
    // An older snapshot than the copy's is reached too (the delta goes backwards).
    let ex = run("/count", "", old).await.expect("pool");
    assert_eq!(body(&ex), "2/2");
    let ex = run("/get/a", "", store.begin()).await.expect("pool");
    assert_eq!(body(&ex), "{}");
    // A write-only request asks for no delta; a large delta brought in by a read does not count
    // against the script's heap limit.
    let mut w = store.begin();
    w.put("records", b"big".to_vec(), vec![b'x'; 3 << 20]);
    store.apply(TxId::new(1, 5), w.write_set());
    let ex = run("/put", r#"{"id": "c", "v": 4}"#, store.begin()).await.expect("pool");
    assert_eq!(ex.tx.write_set().maps["records"].len(), 1);
    let small_heap = Arc::new(consort_js::RuntimeOptions { max_heap_bytes: 1 << 20, ..Default::default() });
    let m = b.route("GET", "/get/a").expect("route");
    let request = JsRequest { path: "/get/a".into(), params: m.params.clone(), ..Default::default() };
    let ex = pool.execute(b.clone(), m.endpoint, request, store.begin(), KvAccess::AppReadOnly, small_heap).await.expect("pool");
    assert_eq!(body(&ex), "{}");
    let m = pool.metrics();
    assert_eq!((m.state_copies_sent, m.node_kv_requests, m.executions), (1, 0, 8));
}

/// Requests queued on one worker behind each other, on different snapshots: each reads its own
/// (a job ahead that brings the worker's copy to its snapshot must not leave the next one on
/// the wrong state, which the node would refuse to absorb). The handler keeps its interpreter,
/// so that a job is short enough (even in a debug build) for the next to be queued behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_on_one_worker_each_read_their_own_snapshot() {
    let module = "export function get() { return { body: ccf.bufToStr(ccf.kv.records.get(ccf.strToBuf('a'))) }; }";
    let json = serde_json::json!({
        "metadata": {"endpoints": {"/a": {"get": {"js_module": "m.js", "js_function": "get", "authn_policies": [],
            "mode": "readonly", "interpreter_reuse": {"key": "k"}}}}},
        "modules": [{"name": "m.js", "module": module}],
    });
    let b = Arc::new(Bundle::from_json(json.to_string().as_bytes()).expect("bundle"));
    let (pool, store) = (Arc::new(pool(1)), Store::default());
    let mut snapshots = Vec::new();
    for v in 1..=4u64 {
        let mut w = store.begin();
        w.put("records", b"a".to_vec(), format!("v{v}").into_bytes());
        store.apply(TxId::new(1, v), w.write_set());
        snapshots.push(store.begin());
    }
    let endpoint = b.route("GET", "/a").expect("route").endpoint.clone();
    for _ in 0..10 {
        let runs: Vec<_> = [3usize, 0, 3, 1, 3, 0, 2, 3, 1, 0, 3, 2]
            .into_iter()
            .map(|i| {
                let (pool, b, endpoint, tx) = (pool.clone(), b.clone(), endpoint.clone(), snapshots[i].clone());
                let request = JsRequest { path: "/a".into(), ..Default::default() };
                tokio::spawn(async move {
                    let ex = pool.execute(b, &endpoint, request, tx, KvAccess::AppReadOnly, Default::default()).await.expect("pool");
                    (i, String::from_utf8_lossy(&ex.response.expect("read on its snapshot").body).into_owned())
                })
            })
            .collect();
        for run in runs {
            let (i, body) = run.await.expect("join");
            assert_eq!(body, format!("v{}", i + 1));
        }
    }
    let m = pool.metrics();
    assert!(m.jobs_queued_on_worker > 0 && m.worker_crashes == 0, "{m:?}");
}

async fn run_cases(pool: &JsPool) {
    let store = Store::default();
    let b = bundle();
    let case = |method, path, body, status, content_type, body_contains, applies| Case {
        method,
        path,
        body,
        status,
        content_type,
        body_contains,
        applies,
    };
    let cases = [
        case("POST", "/put", r#"{"id": "a", "msg": "hello"}"#, 201, Some("application/json"), r#"{"stored":"a"}"#, true),
        case("POST", "/put", r#"{"id": "b", "msg": "bye"}"#, 201, Some("application/json"), "", true),
        case("GET", "/get/a", "", 200, Some("application/json"), r#""msg":"hello""#, true),
        case("GET", "/get/zz", "", 404, Some("application/json"), "ResourceNotFound", false),
        case("GET", "/count", "", 200, Some("text/plain"), "2/2", true),
        case("GET", "/bytes", "", 200, Some("application/octet-stream"), "\u{1}\u{2}\u{3}", true),
        case("GET", "/echo", "", 200, Some("text/x-echo"), "GET a=1 hdr", true),
        case("POST", "/throws", "", 500, None, "Error: boom", false),
        case("POST", "/throws-string", "", 500, None, "plain", false),
        case("GET", "/not-object", "", 500, None, "handler must return an object", false),
        case("GET", "/bad-status", "", 500, None, "statusCode must be an integer", false),
        case("POST", "/fails-applies", "", 400, None, "", true),
        case("POST", "/fails-quietly", "", 409, None, "", false),
        case("POST", "/write-gov", "", 500, None, "belongs to governance", false),
        case("GET", "/read-gov", "", 200, Some("text/plain"), "false", true),
        case("GET", "/reserved", "", 500, None, "reserved for the framework", false),
        case("GET", "/bad-key", "", 500, None, "key must be an ArrayBuffer", false),
        case("GET", "/ro-write", r#"{"id": "c"}"#, 500, None, "readonly and may not write", false),
        case("GET", "/version/a", "", 200, Some("text/plain"), "1", true),
        case("GET", "/version/none", "", 200, Some("text/plain"), "undefined", true),
        case("GET", "/crypto", "", 500, None, "ccf.crypto.generateEcdsaKeyPair with secp521r1 is not supported", false),
        case("GET", "/digest", "", 200, Some("text/plain"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", true),
        case("GET", "/consensus", "", 200, Some("application/json"), r#"[{"view":3,"seqno":42},"Committed","Unknown",3,null]"#, true),
    ];
    for c in cases {
        check(pool, &store, &b, c).await;
    }
    let mut tx = store.begin();
    assert!(tx.get("records", b"kept").is_some(), "setApplyWrites(true) kept the write of a 400");
    assert!(tx.get("records", b"dropped").is_none() && tx.get("records", b"ghost").is_none());
}

#[test]
fn deploy_refuses_missing_functions_and_bad_modules() {
    let mk = |module: &str, f: &str| {
        let json = serde_json::json!({"metadata": {"endpoints": {"/x": {"get": {"js_module": "m.js", "js_function": f}}}}, "modules": [{"name": "m.js", "module": module}]});
        Bundle::from_json(json.to_string().as_bytes()).expect("parses")
    };
    let err = consort_js::validate_bundle(&mk("export function g() {}", "f")).expect_err("missing function").to_string();
    assert!(err.contains("does not export a function \"f\""), "{err}");
    let err = consort_js::validate_bundle(&mk("export function f( {", "f")).expect_err("syntax").to_string();
    assert!(err.contains("does not compile"), "{err}");
    let err = consort_js::validate_bundle(&mk("import x from 'lodash'; export function f() {}", "f")).expect_err("bare import").to_string();
    assert!(err.contains("bundle your dependencies"), "{err}");
    consort_js::validate_bundle(&mk("export function f() {}", "f")).expect("ok");
    // A module that loops at its top level is refused by the validation's own limits (which sit
    // inside the governance call's), naming the limit.
    let err = consort_js::validate_bundle(&mk("while (true) {} export function f() {}", "f")).expect_err("endless").to_string();
    assert!(err.contains("max_execution_time_ms"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_state_persists_only_under_interpreter_reuse() {
    let module = "let calls = 0; export function count() { calls += 1; return { body: String(calls) }; }";
    let ep = |reuse: Option<&str>| {
        let mut e = serde_json::json!({"js_module": "m.js", "js_function": "count", "authn_policies": []});
        if let Some(k) = reuse {
            e["interpreter_reuse"] = serde_json::json!({"key": k});
        }
        e
    };
    let json = serde_json::json!({
        "metadata": {"endpoints": {"/fresh": {"get": ep(None)}, "/reused": {"get": ep(Some("a"))}, "/other": {"get": ep(Some("b"))}}},
        "modules": [{"name": "m.js", "module": module}]
    });
    let b = Arc::new(Bundle::from_json(json.to_string().as_bytes()).expect("bundle"));
    let pool = pool(1);
    let store = Store::default();
    let get = async |path: &str| {
        let m = b.route("GET", path).expect("route");
        let request = JsRequest { method: "GET".into(), path: path.into(), ..Default::default() };
        let ex =
            pool.execute(b.clone(), m.endpoint, request, store.begin(), KvAccess::AppReadOnly, Default::default()).await.expect("pool");
        String::from_utf8(ex.response.expect("ok").body).expect("utf8")
    };
    assert_eq!([get("/fresh").await, get("/fresh").await], ["1", "1"], "no reuse: fresh module state every time");
    assert_eq!([get("/reused").await, get("/reused").await, get("/reused").await], ["1", "2", "3"], "same key: state persists");
    assert_eq!(get("/other").await, "1", "another key: another interpreter");
    assert_eq!(get("/reused").await, "4");
    assert_eq!(get("/fresh").await, "1");
}

/// A reused interpreter never shows a request another request's body: a body object a handler
/// kept in `globalThis` reads the request in progress, as in CCF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_body_reads_the_current_request() {
    let module = "export function keep(request) { globalThis.kept ??= request.body; \
                  return { body: globalThis.kept.text() + '|' + request.body.text() + '|' + request.body.json().n }; }";
    let json = serde_json::json!({
        "metadata": {"endpoints": {"/keep": {"post": {"js_module": "m.js", "js_function": "keep", "authn_policies": [], "interpreter_reuse": {"key": "k"}}}}},
        "modules": [{"name": "m.js", "module": module}]
    });
    let b = Arc::new(Bundle::from_json(json.to_string().as_bytes()).expect("bundle"));
    let (pool, store) = (pool(1), Store::default());
    let m = b.route("POST", "/keep").expect("route");
    let mut answers = Vec::new();
    for body in [r#"{"n": 1}"#, r#"{"n": 2}"#, r#"{"n": 3}"#] {
        let request = JsRequest { method: "POST".into(), path: "/keep".into(), body: body.as_bytes().to_vec(), ..Default::default() };
        let ex =
            pool.execute(b.clone(), m.endpoint, request, store.begin(), KvAccess::AppReadWrite, Default::default()).await.expect("pool");
        answers.push(String::from_utf8(ex.response.expect("ok").body).expect("utf8"));
    }
    assert_eq!(answers, [r#"{"n": 1}|{"n": 1}|1"#, r#"{"n": 2}|{"n": 2}|2"#, r#"{"n": 3}|{"n": 3}|3"#]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pem_to_id_is_the_sha256_of_the_certificate() {
    let (_, cert) = consort_crypto::identity_cert("user1", consort_crypto::Curve::Secp256r1).expect("cert");
    let expected = consort_crypto::ParsedCert::from_pem(&cert).expect("parse").id();
    let pool = pool(1);
    let store = Store::default();
    let b = bundle();
    let m = b.route("POST", "/pem-to-id").expect("route");
    for (body, want) in [(cert.as_str(), Ok(expected.as_str())), ("not a pem", Err("ccf.pemToId"))] {
        let request = JsRequest { method: "POST".into(), path: "/pem-to-id".into(), body: body.as_bytes().to_vec(), ..Default::default() };
        let ex =
            pool.execute(b.clone(), m.endpoint, request, store.begin(), KvAccess::AppReadOnly, Default::default()).await.expect("pool");
        match (ex.response, want) {
            (Ok(r), Ok(id)) => assert_eq!(String::from_utf8(r.body).expect("utf8"), id),
            (Err(e), Err(needle)) => assert!(e.to_string().contains(needle), "{e}"),
            (other, _) => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crypto_sign_verify_hmac_and_keys_as_ccf_defines_them() {
    let (user_key, user_cert) = consort_crypto::identity_cert("signer", consort_crypto::Curve::Secp256r1).expect("identity");
    let module = r#"
const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
export function run(request) {
  const { userKey, userCert } = request.body.json();
  const data = ccf.strToBuf("signed text");
  const out = {};
  for (const curve of ["secp256r1", "secp384r1"]) {
    const pair = ccf.crypto.generateEcdsaKeyPair(curve);
    const sig = ccf.crypto.sign({ name: "ECDSA", hash: "SHA-256" }, pair.privateKey, data);
    out[curve] = {
      publicKey: pair.publicKey, sig: hex(sig),
      ok: ccf.crypto.verifySignature({ name: "ECDSA", hash: "SHA-256" }, pair.publicKey, sig, data),
      tampered: ccf.crypto.verifySignature({ name: "ECDSA", hash: "SHA-256" }, pair.publicKey, sig, ccf.strToBuf("other text")),
    };
  }
  const byCert = ccf.crypto.sign({ name: "ECDSA", hash: "SHA-256" }, userKey, data);
  out.verifiedByCertificate = ccf.crypto.verifySignature({ name: "ECDSA", hash: "SHA-256" }, userCert, byCert, data);
  out.hmac = hex(ccf.crypto.sign({ name: "HMAC", hash: "SHA-256" }, "Jefe", ccf.strToBuf("what do ya want for nothing?")));
  out.aes = ccf.crypto.generateAesKey(256).byteLength;
  const err = (f) => { try { f(); return "no error"; } catch (e) { return String(e); } };
  out.badAes = err(() => ccf.crypto.generateAesKey(100));
  out.eddsa = err(() => ccf.crypto.sign({ name: "EdDSA" }, userKey, data));
  out.verify384 = err(() => ccf.crypto.verifySignature({ name: "ECDSA", hash: "SHA-384" }, userCert, byCert, data));
  // Every other function once, through the prelude's argument shaping.
  const ed = ccf.crypto.generateEddsaKeyPair("curve25519");
  out.eddsaOk = ccf.crypto.verifySignature({ name: "EdDSA" }, ed.publicKey, ccf.crypto.sign({ name: "EdDSA" }, ed.privateKey, data), data);
  const rsa = ccf.crypto.generateRsaKeyPair(2048);
  const pss = { name: "RSA-PSS", hash: "SHA-256", saltLength: 32 };
  out.pssOk = ccf.crypto.verifySignature(pss, rsa.publicKey, ccf.crypto.sign(pss, rsa.privateKey, data), data);
  const aes = ccf.crypto.generateAesKey(128);
  const label = ccf.strToBuf("label");
  const wrapped = ccf.crypto.wrapKey(aes, ccf.strToBuf(rsa.publicKey), { name: "RSA-OAEP-AES-KWP", aesKeySize: 256, label });
  out.unwrapped = hex(ccf.crypto.unwrapKey(wrapped, ccf.strToBuf(rsa.privateKey), { name: "RSA-OAEP-AES-KWP", aesKeySize: 256, label })) === hex(aes);
  out.wrongLabel = err(() => ccf.crypto.unwrapKey(wrapped, ccf.strToBuf(rsa.privateKey), { name: "RSA-OAEP-AES-KWP", aesKeySize: 256 }));
  out.kwp = hex(ccf.crypto.unwrapKey(ccf.crypto.wrapKey(data, aes, { name: "AES-KWP" }), aes, { name: "AES-KWP" })) === hex(data);
  const jwk = ccf.crypto.pubRsaPemToJwk(rsa.publicKey, "my-kid");
  out.jwk = { kty: jwk.kty, kid: jwk.kid, e: jwk.e, back: ccf.crypto.pubRsaJwkToPem(jwk) === rsa.publicKey };
  out.ecJwk = ccf.crypto.pemToJwk(ccf.crypto.jwkToPem(ccf.crypto.pemToJwk(userKey))).crv;
  out.bundle = [ccf.crypto.isValidX509CertBundle(userCert), ccf.isValidX509CertBundle("nonsense")];
  out.chain = ccf.crypto.isValidX509CertChain(userCert, userCert);
  out.deprecatedAlias = ccf.generateAesKey(192).byteLength;
  return { body: out };
}"#;
    let json = serde_json::json!({
        "metadata": {"endpoints": {"/run": {"post": {"js_module": "m.js", "js_function": "run", "authn_policies": []}}}},
        "modules": [{"name": "m.js", "module": module}]
    });
    let b = Arc::new(Bundle::from_json(json.to_string().as_bytes()).expect("bundle"));
    let pool = pool(1);
    let body = serde_json::json!({"userKey": user_key, "userCert": user_cert}).to_string();
    let request = JsRequest { method: "POST".into(), path: "/run".into(), body: body.into_bytes(), ..Default::default() };
    let m = b.route("POST", "/run").expect("route");
    let ex = pool
        .execute(b.clone(), m.endpoint, request, Store::default().begin(), KvAccess::AppReadOnly, Default::default())
        .await
        .expect("pool");
    let out: serde_json::Value = serde_json::from_slice(&ex.response.expect("ran").body).expect("json");
    for curve in ["secp256r1", "secp384r1"] {
        assert_eq!((&out[curve]["ok"], &out[curve]["tampered"]), (&serde_json::json!(true), &serde_json::json!(false)), "{curve}: {out}");
    }
    // The P1363 signature made in JS verifies with an independent implementation.
    use p256::ecdsa::signature::Verifier;
    use p256::pkcs8::DecodePublicKey;
    let key = p256::ecdsa::VerifyingKey::from_public_key_pem(out["secp256r1"]["publicKey"].as_str().expect("pem")).expect("spki");
    let sig_bytes: Vec<u8> =
        (0..64).map(|i| u8::from_str_radix(&out["secp256r1"]["sig"].as_str().expect("hex")[2 * i..2 * i + 2], 16).expect("hex")).collect();
    let sig = p256::ecdsa::Signature::from_slice(&sig_bytes).expect("64-byte r||s");
    key.verify(b"signed text", &sig).expect("verifies outside the JS host");
    assert_eq!(out["verifiedByCertificate"], true);
    assert_eq!(out["hmac"], "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "RFC 4231 case 2");
    assert_eq!(out["aes"], 32);
    assert!(out["badAes"].as_str().expect("s").starts_with("RangeError"), "{out}");
    assert!(out["eddsa"].as_str().expect("s").contains("not an Ed25519 private key"), "{out}");
    for ok in ["eddsaOk", "pssOk", "unwrapped", "kwp"] {
        assert_eq!(out[ok], true, "{ok}: {out}");
    }
    assert_eq!(out["chain"], false, "a trusted certificate that is not a CA anchors nothing, as in CCF: {out}");
    assert!(out["wrongLabel"].as_str().expect("s").contains("Failed to unwrap key"), "{out}");
    assert_eq!(out["jwk"], serde_json::json!({"kty": "RSA", "kid": "my-kid", "e": "AQAB", "back": true}));
    assert_eq!(out["ecJwk"], "P-256");
    assert_eq!(out["bundle"], serde_json::json!([true, false]));
    assert_eq!(out["deprecatedAlias"], 24);
    assert!(out["verify384"].as_str().expect("s").contains("supported: SHA-256"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn historical_state_and_ranges_are_read_only_views_of_committed_writes() {
    let module = r#"
const err = (f) => { try { f(); return "no error"; } catch (e) { return String(e); } };
const view = (s) => ({
  txid: s.transactionId,
  one: s.kv["records"].get(ccf.strToBuf("1")) === undefined ? null : ccf.bufToStr(s.kv["records"].get(ccf.strToBuf("1"))),
  removed: s.kv["records"].has(ccf.strToBuf("2")),
  version: s.kv["records"].getVersionOfPreviousWrite(ccf.strToBuf("1")),
  size: s.kv["records"].size,
  otherMapSize: s.kv["elsewhere"].size,
  claims: s.receipt.leaf_components.claims_digest,
});
export function at(request) {
  const s = ccf.historicalState;
  return { body: {
    state: view(s),
    setRefused: err(() => s.kv["records"].set(ccf.strToBuf("x"), ccf.strToBuf("y"))),
    header: request.headers["x-ms-ccf-transaction-id"],
  } };
}
export function range() {
  return { body: {
    loading: ccf.historical.getStateRange(0, 1, 2, 60),
    states: ccf.historical.getStateRange(7, 40, 42, 60).map(view),
    uncommitted: err(() => ccf.historical.getStateRange(7, 40, 50, 60)),
    dropped: [ccf.historical.dropCachedStates(7), ccf.historical.dropCachedStates(8)],
    noState: ccf.historicalState === undefined,
  } };
}"#;
    let json = serde_json::json!({
        "metadata": {"endpoints": {
            "/at": {"get": {"js_module": "m.js", "js_function": "at", "authn_policies": [], "mode": "historical"}},
            "/range": {"get": {"js_module": "m.js", "js_function": "range", "authn_policies": [], "mode": "readonly", "interpreter_reuse": {"key": "k"}}}
        }},
        "modules": [{"name": "m.js", "module": module}]
    });
    let b = Arc::new(Bundle::from_json(json.to_string().as_bytes()).expect("historical endpoints deploy"));
    let pool = pool(1);
    let run = |path: &'static str, historical: Option<u64>| {
        let (b, pool) = (b.clone(), &pool);
        async move {
            let mut request = JsRequest { method: "GET".into(), path: path.into(), ..Default::default() };
            request.historical = historical.map(|s| Arc::new(common::state(s)));
            request.headers.insert("x-ms-ccf-transaction-id".into(), "3.41".into());
            let m = b.route("GET", path).expect("route");
            let ex = pool
                .execute(b.clone(), m.endpoint, request, Store::default().begin(), KvAccess::AppReadOnly, Default::default())
                .await
                .expect("pool");
            serde_json::from_slice::<serde_json::Value>(&ex.response.expect("ran").body).expect("json")
        }
    };
    let at = run("/at", Some(41)).await;
    assert_eq!(
        at["state"],
        serde_json::json!({"txid": "3.41", "one": "v41", "removed": false, "version": 41, "size": 1, "otherMapSize": 0, "claims": "41"})
    );
    assert!(at["setRefused"].as_str().expect("s").contains("read-only"), "{at}");
    // A later request on the same (reused) interpreter sees no leftover historical state.
    run("/range", None).await;
    let range = run("/range", None).await;
    assert_eq!(range["loading"], serde_json::Value::Null);
    let seqnos: Vec<&serde_json::Value> = range["states"].as_array().expect("states").iter().map(|s| &s["txid"]).collect();
    assert_eq!(seqnos, ["3.40", "3.41", "3.42"]);
    assert!(range["uncommitted"].as_str().expect("s").contains("not committed"), "{range}");
    assert_eq!(range["dropped"], serde_json::json!([true, false]));
    assert_eq!(range["noState"], true);
}

/// The web-compatibility built-ins of ECMAScript's Annex B, which npm libraries (jsrsasign
/// among them) call: each case's value as a handler computes it, against what the standard
/// says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annex_b_built_ins_are_there() {
    const CASES: &str = r#"
export function cases() {
  const getter = {};
  getter.__defineGetter__("g", () => 7);
  const setter = {};
  let set = 0;
  setter.__defineSetter__("s", (v) => { set = v; });
  setter.s = 5;
  const re = /a/g;
  re.compile("b", "i");
  const d = new Date(Date.UTC(2020, 0, 1));
  return { body: {
    substr: "abcdef".substr(1, 3),
    substrNegative: "abcdef".substr(-2),
    escape: escape("a b+\u00e4@*_-./"),
    unescape: unescape("%u0107%20x%41"),
    anchor: "x".anchor("n"),
    big: "x".big(),
    bold: "x".bold(),
    fontcolor: "x".fontcolor("red"),
    link: "x".link("u"),
    sub: "x".sub(),
    getYear: d.getYear(),
    toGMTString: d.toGMTString() === d.toUTCString(),
    defineGetter: getter.g,
    defineSetter: set,
    lookupGetter: typeof getter.__lookupGetter__("g"),
    protoLiteral: Object.getPrototypeOf({ __proto__: Array.prototype }) === Array.prototype,
    protoAccessor: ({}).__proto__ === Object.prototype,
    regexpCompile: re.source + "/" + re.flags,
  } };
}
"#;
    let json = serde_json::json!({
        "metadata": {"endpoints": {"/cases": {"get": {"js_module": "b.js", "js_function": "cases", "authn_policies": [], "mode": "readonly"}}}},
        "modules": [{"name": "b.js", "module": CASES}]
    });
    let b = Arc::new(Bundle::from_json(json.to_string().as_bytes()).expect("bundle"));
    consort_js::validate_bundle(&b).expect("a bundle using Annex B loads");
    let (pool, store) = (pool(1), Store::default());
    let m = b.route("GET", "/cases").expect("route");
    let request = JsRequest { path: "/cases".into(), ..Default::default() };
    let ex = pool.execute(b.clone(), m.endpoint, request, store.begin(), KvAccess::AppReadOnly, Default::default()).await.expect("pool");
    let body = String::from_utf8_lossy(&ex.response.as_ref().expect("the cases run").body).into_owned();
    let got: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {:?}", ex.response));
    let expected = serde_json::json!({
        "substr": "bcd",
        "substrNegative": "ef",
        "escape": "a%20b+%E4@*_-./",
        "unescape": "\u{107} xA",
        "anchor": "<a name=\"n\">x</a>",
        "big": "<big>x</big>",
        "bold": "<b>x</b>",
        "fontcolor": "<font color=\"red\">x</font>",
        "link": "<a href=\"u\">x</a>",
        "sub": "<sub>x</sub>",
        "getYear": 120,
        "toGMTString": true,
        "defineGetter": 7,
        "defineSetter": 5,
        "lookupGetter": "function",
        "protoLiteral": true,
        "protoAccessor": true,
        "regexpCompile": "b/i",
    });
    for (name, want) in expected.as_object().expect("object") {
        assert_eq!(&got[name], want, "Annex B case {name}: {body}");
    }
}
