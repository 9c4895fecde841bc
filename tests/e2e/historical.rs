//! Historical queries against a real node: `mode: "historical"` endpoints of the logging
//! sample (202 + retry-after while loading, then the record as that transaction wrote it, with a
//! receipt that verifies offline), `ccf.historical.getStateRange`, and the refusals; and the
//! ledger explorer's `/node/ledger/entries` (what each caller may see of the ledger).

use std::time::Duration;

use consort_tests::{repo_root, temp_workspace, Sandbox};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Retries a request while it answers 202, checking the retry-after header each time.
async fn until_loaded(req: impl Fn() -> reqwest::RequestBuilder) -> (StatusCode, Value, usize) {
    // (A minute of attempts: a bound on a hang, not on how fast the state loads.)
    for attempt in 0..1200 {
        let r = req().send().await.expect("request");
        if r.status() != StatusCode::ACCEPTED {
            let status = r.status();
            let body = r.json().await.unwrap_or(Value::Null);
            return (status, body, attempt);
        }
        assert_eq!(r.headers().get("retry-after").map(|v| v.to_str().expect("ascii")), Some("1"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("still loading after a minute of attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn historical_endpoints_and_ranges_read_committed_writes() {
    let ws = temp_workspace("historical");
    let s = Sandbox::start(&ws, Some(&repo_root().join("samples/logging")));
    let user = s.client(Some("user0"));
    let write = |map: &'static str, msg: &'static str| {
        let (user, url) = (user.clone(), s.url(&format!("/app/log/{map}")));
        async move {
            let r = user.post(url).json(&json!({"id": 77, "msg": msg})).send().await.expect("post");
            assert_eq!(r.status(), StatusCode::OK);
            r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned()
        }
    };
    let first = write("private", "first words").await;
    let second = write("private", "second thoughts").await;
    let public_a = write("public", "public one").await;
    let public_b = write("public", "public two").await;
    s.wait_committed(&user, &public_b).await;

    let at = |txid: &str, path: &str| {
        let (user, url, txid) = (user.clone(), s.url(path), txid.to_owned());
        move || user.get(&url).header("x-ms-ccf-transaction-id", &txid)
    };
    // The first request for a transaction starts loading it and answers 202.
    let (status, body, attempts) = until_loaded(at(&first, "/app/log/private/historical?id=77")).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"msg": "first words"})));
    assert!(attempts >= 1, "the first request answers 202 while the state loads");
    let (_, body, _) = until_loaded(at(&second, "/app/log/private/historical?id=77")).await;
    assert_eq!(body, json!({"msg": "second thoughts"}));
    // That transaction did not write record 78.
    let (status, _, _) = until_loaded(at(&second, "/app/log/private/historical?id=78")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The receipt of the historical state verifies offline against the service certificate.
    let (status, body, _) = until_loaded(at(&first, "/app/log/private/historical_receipt?id=77")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["transactionId"], first.as_str());
    let receipt: consort_ledger::Receipt = serde_json::from_value(body["receipt"].clone()).expect("a receipt");
    let service = std::fs::read_to_string(s.common().join("service_cert.pem")).expect("service cert");
    let verified = receipt.verify(&consort_crypto::cert_der_from_pem(&service).expect("der")).expect("receipt verifies");
    assert_eq!(verified.to_string(), first);

    // Refusals: no header, a malformed one, a transaction that is not committed.
    let r = user.get(s.url("/app/log/private/historical?id=77")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.expect("json")["error"]["code"], "MissingRequiredHeader");
    let r = at("banana", "/app/log/private/historical?id=77")().send().await.expect("get");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = at("2.999999", "/app/log/private/historical?id=77")().send().await.expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.expect("json")["error"]["code"], "TransactionPendingOrUnknown");

    // getStateRange: every write of public record 77 in the range, 202 until loaded.
    let seqno = |t: &str| t.split('.').nth(1).and_then(|s| s.parse::<u64>().ok()).expect("seqno");
    let url = s.url(&format!("/app/log/public/historical/range?id=77&from_seqno={}&to_seqno={}", seqno(&first), seqno(&public_b)));
    let (status, body, attempts) = until_loaded(|| user.get(&url)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(attempts >= 1);
    assert_eq!(
        body["entries"],
        json!([{"seqno": seqno(&public_a), "msg": "public one"}, {"seqno": seqno(&public_b), "msg": "public two"}])
    );
    let r = user.get(s.url("/app/log/public/historical/range?id=77&from_seqno=5&to_seqno=99999999")).send().await.expect("range");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "an uncommitted range is refused");
    drop(s);
    let _ = std::fs::remove_dir_all(&ws);
}

/// The historical cache holds at most `memory.historical_cache_bytes` of loaded states: a state
/// beyond it is refused with 503 naming the setting, and `/node/metrics` shows what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_historical_cache_stays_within_its_configured_bytes() {
    let ws = temp_workspace("historical-bytes");
    let app = json!({"name": "set_js_app", "args": {"bundle": {
        "metadata": {"endpoints": {
            "/put": {"post": {"js_module": "m.js", "js_function": "put", "authn_policies": [], "mode": "readwrite"}},
            "/at": {"get": {"js_module": "m.js", "js_function": "at", "authn_policies": [], "mode": "historical"}},
        }},
        "modules": [{"name": "m.js", "module": "
            export function put(r) { ccf.kv['records'].set(ccf.strToBuf('k'), ccf.strToBuf(r.body.text())); return { body: 'ok' }; }
            export function at(r) { return { body: ccf.bufToStr(ccf.historicalState.kv['records'].get(ccf.strToBuf('k'))) }; }"}],
    }}});
    // Room for about one state: a receipt alone (with the node's certificate) is over 1 KB.
    let (s, _) = consort_tests::open_node(&ws, json!({"memory": {"historical_cache_bytes": 3000}}), vec![app]).await;
    let c = s.client(None);
    let mut txids = Vec::new();
    for text in ["first", "second"] {
        let r = c.post(s.url("/app/put")).body(text).send().await.expect("post");
        assert_eq!(r.status(), StatusCode::OK);
        txids.push(r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned());
    }
    s.wait_committed(&c, &txids[1]).await;
    let at = |txid: &str| {
        let (c, url, txid) = (c.clone(), s.url("/app/at"), txid.to_owned());
        move || c.get(&url).header("x-ms-ccf-transaction-id", &txid)
    };
    let (status, _, _) = until_loaded(at(&txids[0])).await;
    assert_eq!(status, StatusCode::OK);
    let metric = |text: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix("consort_historical_cache_bytes ")).and_then(|v| v.parse().ok()).expect("the gauge")
    };
    let scrape = c.get(s.url("/node/metrics")).send().await.expect("metrics").text().await.expect("text");
    let held = metric(&scrape);
    assert!(held > 1000 && held <= 3000, "{held} bytes held");
    // The second state does not fit while the first is held (endpoint states are kept 60 s).
    let (status, body, _) = until_loaded(at(&txids[1])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("memory.historical_cache_bytes"), "{body}");
    let scrape = c.get(s.url("/node/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert_eq!(metric(&scrape), held, "the refused state was not kept");
    let _ = std::fs::remove_dir_all(&ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_entries_show_public_app_writes_to_members_only_and_private_writes_to_no_one() {
    let ws = temp_workspace("ledger-entries");
    let s = Sandbox::start(&ws, Some(&repo_root().join("samples/logging")));
    let user = s.client(Some("user0"));
    let mut written = Vec::new();
    for (map, id, msg) in [("public", 5, "visible to members"), ("private", 6, "secret words")] {
        let r = user.post(s.url(&format!("/app/log/{map}"))).json(&json!({"id": id, "msg": msg})).send().await.expect("post");
        assert_eq!(r.status(), StatusCode::OK);
        written.push(r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned());
    }
    s.wait_committed(&user, &written[1]).await;
    let seqno = |t: &str| t.split('.').nth(1).and_then(|s| s.parse::<u64>().ok()).expect("seqno");
    let query = format!("/node/ledger/entries?from={}&to={}", seqno(&written[0]), seqno(&written[1]));
    let read = |client: reqwest::Client, path: String| {
        let url = s.url(&path);
        async move {
            let r = client.get(url).send().await.expect("get");
            (r.status(), r.json::<Value>().await.expect("json"))
        }
    };
    let entry = |answer: &Value, txid: &str| {
        answer["entries"].as_array().expect("entries").iter().find(|e| e["transactionId"] == txid).cloned().expect("the entry")
    };

    // Anyone (no certificate, or a user's): the entries, the app's public table withheld.
    for client in [s.client(None), user.clone()] {
        let (status, answer) = read(client, query.clone()).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["reader"], "anyone");
        let public = entry(&answer, &written[0]);
        assert_eq!(public["kind"], "transaction");
        assert_eq!(public["status"], "Committed");
        assert_eq!(public["appVersion"], 1);
        assert_eq!(public["inputsRecorded"], true);
        assert_eq!(public["privateWrites"], false);
        assert_eq!(public["tables"], json!([]));
        assert_eq!(public["withheld"], json!({"tables": 1, "writes": 1}));
        assert!(!answer.to_string().contains("visible to members"), "{answer}");
    }
    // A member: every public write; the private one still sealed.
    let (status, answer) = read(s.client(Some("member0")), query.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["reader"]["member"].is_string(), "{answer}");
    let public = entry(&answer, &written[0]);
    assert_eq!(public["tables"], json!([{"name": "public:records", "writes": [{"key": "5", "value": "visible to members"}], "more": 0}]));
    assert!(public.get("withheld").is_none());
    let private = entry(&answer, &written[1]);
    assert_eq!(private["privateWrites"], true);
    assert_eq!(private["tables"], json!([]));
    assert!(!answer.to_string().contains("secret words"), "{answer}");

    // The receipt's leaf carries the digest the explorer shows for the entry.
    let receipt: Value =
        user.get(s.url(&format!("/app/receipt?transaction_id={}", written[0]))).send().await.expect("get").json().await.expect("json");
    assert_eq!(receipt["leaf_components"]["write_set_digest"], public["writeSetDigest"]);

    // By default the newest entries, signatures among them; what the node holds is said.
    let (_, newest) = read(s.client(None), "/node/ledger/entries".into()).await;
    let entries = newest["entries"].as_array().expect("entries");
    assert!(!entries.is_empty() && entries.len() <= 20, "{newest}");
    assert_eq!(entries.last().expect("one")["seqno"], newest["last"]);
    assert_eq!(newest["first"], 0);
    let signature = entries.iter().find(|e| e["kind"] == "signature").expect("a signature among the newest");
    assert!(signature["signature"]["coversTo"].as_u64().expect("covers") < signature["seqno"].as_u64().expect("seqno"));
    let seqnos: Vec<u64> = entries.iter().map(|e| e["seqno"].as_u64().expect("seqno")).collect();
    assert!(seqnos.windows(2).all(|w| w[1] == w[0] + 1), "consecutive, ascending: {seqnos:?}");

    // Refusals, each a prompt 400 or 406 that says why.
    for (path, code, says) in [
        ("/node/ledger/entries?from=x", "InvalidQueryParameterValue", "from must be a seqno"),
        ("/node/ledger/entries?from=1&to=500", "InvalidQueryParameterValue", "at most 100"),
        ("/node/ledger/entries?from=9&to=3", "InvalidQueryParameterValue", "after"),
    ] {
        let (status, body) = read(s.client(None), path.into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], code);
        assert!(body["error"]["message"].as_str().expect("message").contains(says), "{body}");
    }
    let r = s.client(None).get(s.url("/node/ledger/entries")).header("accept", "text/plain").send().await.expect("get");
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
    let r = s.client(None).post(s.url("/node/ledger/entries")).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Past the end: an empty list, not an error.
    let (status, past) = read(s.client(None), "/node/ledger/entries?from=1000000".into()).await;
    assert_eq!((status, past["entries"].clone()), (StatusCode::OK, json!([])));
}
