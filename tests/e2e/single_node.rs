//! Issue 2, end to end: the logging sample over mutual TLS, receipts, restarts, the ledger.

use std::path::{Path, PathBuf};

use consort_tests::{consort, repo_root, temp_workspace, Sandbox};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

fn logging_app() -> PathBuf {
    repo_root().join("samples/logging")
}

async fn post(c: &Client, url: &str, body: Value) -> (StatusCode, Option<String>, String) {
    let r = c.post(url).json(&body).send().await.expect("request");
    let txid = r.headers().get("x-ms-ccf-transaction-id").map(|v| v.to_str().expect("ascii").to_owned());
    (r.status(), txid, r.text().await.expect("body"))
}

async fn get(c: &Client, url: &str) -> (StatusCode, Value) {
    let r = c.get(url).send().await.expect("request");
    let status = r.status();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn seqno(txid: &str) -> u64 {
    txid.split_once('.').expect("view.seqno").1.parse().expect("seqno")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_sample_over_mutual_tls() {
    let ws = temp_workspace("logging");
    let s = Sandbox::start(&ws, Some(&logging_app()));
    let user = s.client(Some("user0"));
    let member = s.client(Some("member0"));
    let anonymous = s.client(None);
    let (ok, _) = consort(&["keygen", "--name", "stranger", "--dir", ws.to_str().expect("utf8")]);
    assert!(ok);
    let stranger = s.client(Some(ws.join("stranger").to_str().expect("utf8")));

    let (status, txid, body) = post(&user, &s.url("/app/log/private"), json!({"id": 1, "msg": "private hello"})).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "true"));
    assert!(txid.is_some(), "writes answer their transaction id");
    let (status, _, _) = post(&user, &s.url("/app/log/public"), json!({"id": "a", "msg": "public hello"})).await;
    assert_eq!(status, StatusCode::OK);

    assert_eq!(get(&user, &s.url("/app/log/private?id=1")).await, (StatusCode::OK, json!({"msg": "private hello"})));
    assert_eq!(get(&user, &s.url("/app/log/public?id=a")).await, (StatusCode::OK, json!({"msg": "public hello"})));
    assert_eq!(get(&user, &s.url("/app/log/private/count")).await, (StatusCode::OK, json!(1)));
    let (status, err) = get(&user, &s.url("/app/log/private?id=404")).await;
    assert_eq!((status, err["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("ResourceNotFound")));
    let r = user.delete(s.url("/app/log/private?id=1")).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(get(&user, &s.url("/app/log/private/count")).await, (StatusCode::OK, json!(0)));

    // Reads answer the id of the last write they could see.
    let r = user.get(s.url("/app/log/public?id=a")).send().await.expect("get");
    assert!(r.headers().contains_key("x-ms-ccf-transaction-id"));

    // Authentication: no certificate, an unknown one, and a member's, on a user_cert endpoint.
    for (who, client) in [("no certificate", &anonymous), ("unknown certificate", &stranger), ("member", &member)] {
        let (status, err) = get(client, &s.url("/app/log/public?id=a")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{who}: {err}");
        assert_eq!(err["error"]["code"], "InvalidAuthenticationInfo", "{who}");
        assert_eq!(err["error"]["message"], "Invalid authentication credentials.", "{who}");
    }
    // CCF's details: one entry per policy, saying why it refused.
    let (_, err) = get(&anonymous, &s.url("/app/log/public?id=a")).await;
    assert_eq!(
        err["error"]["details"],
        json!([{"auth_policy": "user_cert", "code": "InvalidAuthenticationInfo", "message": "No caller user certificate"}])
    );
    let (_, err) = get(&stranger, &s.url("/app/log/public?id=a")).await;
    assert_eq!(err["error"]["details"][0]["message"], "Could not find matching user certificate", "{err}");
    assert_eq!(get(&anonymous, &s.url("/app/log/public/anonymous?id=a")).await, (StatusCode::OK, json!({"msg": "public hello"})));
    let (_, who) = get(&user, &s.url("/app/whoami")).await;
    assert_eq!(who["policy"], "user_cert");
    assert_eq!(who["id"].as_str().map(str::len), Some(64));
    assert!(who["cert"].as_str().expect("cert").starts_with("-----BEGIN CERTIFICATE-----"));
    let (_, who) = get(&member, &s.url("/app/whoami")).await;
    assert_eq!(who["policy"], "member_cert");
    let (_, who) = get(&stranger, &s.url("/app/whoami")).await;
    assert_eq!(who, json!({"policy": "any_cert", "cert": who["cert"]}));

    // Bad input gets a clear error with a fitting status, and nothing is written.
    let r = user.post(s.url("/app/log/private")).header("content-type", "application/json").body("{not json").send().await.expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = user.post(s.url("/app/log/private")).body(vec![b'x'; 2 * 1024 * 1024]).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json::<Value>().await.expect("json")["error"]["code"], "RequestBodyTooLarge");
    assert_eq!(get(&user, &s.url("/app/nope")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(user.put(s.url("/app/log/private")).send().await.expect("put").status(), StatusCode::METHOD_NOT_ALLOWED);
    let (status, err) = get(&user, &s.url("/app/tx?transaction_id=banana")).await;
    assert_eq!((status, err["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidQueryParameterValue")));
    assert_eq!(get(&user, &s.url("/app/log/private/count")).await, (StatusCode::OK, json!(0)));

    // Node endpoints.
    let (status, net) = get(&anonymous, &s.url("/node/network")).await;
    assert_eq!((status, net["service_status"].as_str()), (StatusCode::OK, Some("Open")));
    assert_eq!(
        net["service_certificate"].as_str(),
        Some(std::fs::read_to_string(s.common().join("service_cert.pem")).expect("pem").as_str())
    );
    let (_, state) = get(&anonymous, &s.url("/node/state")).await;
    assert_eq!(state["state"], "PartOfNetwork");
    assert_eq!(state["node_id"], net["primary_id"]);
    let (_, version) = get(&anonymous, &s.url("/node/version")).await;
    assert!(version["ccf_version"].as_str().expect("version").starts_with("consort-"));
    assert_eq!(anonymous.get(s.url("/node/ready/app")).send().await.expect("ready").status(), StatusCode::NO_CONTENT);
    let (_, commit) = get(&anonymous, &s.url("/node/commit")).await;
    assert!(commit["transaction_id"].as_str().expect("txid").contains('.'));
    let (status, metrics) = get(&anonymous, &s.url("/node/js_metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics["executions"].as_u64() > Some(10), "{metrics}");
    assert!(metrics["interpreters_reused"].as_u64() > Some(0), "the sample sets interpreter_reuse: {metrics}");
    assert_eq!(metrics["max_execution_time"], 5000);
    assert_eq!(metrics["worker_crashes"], 0);
    // App requests ran on the workers' copies of the state: each worker got one whole copy.
    assert_eq!(metrics["node_kv_requests"], 0, "{metrics}");
    assert!(
        (1..=metrics["workers_started"].as_u64().expect("started")).contains(&metrics["state_copies_sent"].as_u64().expect("copies")),
        "{metrics}"
    );
    let (_, api) = get(&anonymous, &s.url("/app/api")).await;
    assert_eq!(api["openapi"], "3.0.0");
    assert_eq!(api["paths"]["/app/log/private"]["post"]["summary"], "Record a private message");
    assert!(api["paths"]["/app/log/public/count"]["get"].is_object());
    drop(s);
    let _ = std::fs::remove_dir_all(&ws);
}

/// With `js.isolation = "threads"` the node runs the app on its own threads: the sample serves
/// writes and reads, and the node starts no worker process (with `process` it does: checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_can_run_scripts_on_its_own_threads() {
    let ws = temp_workspace("threads");
    let s = Sandbox::start_with(&ws, Some(&logging_app()), Sandbox::free_port(), &["--js-isolation", "threads"]);
    let user = s.client(Some("user0"));
    for id in 0..20 {
        let (status, txid, _) = post(&user, &s.url("/app/log/private"), json!({"id": id, "msg": format!("m{id}")})).await;
        assert_eq!(status, StatusCode::OK);
        assert!(txid.is_some());
    }
    assert_eq!(get(&user, &s.url("/app/log/private?id=7")).await, (StatusCode::OK, json!({"msg": "m7"})));
    assert_eq!(get(&user, &s.url("/app/log/private/count")).await, (StatusCode::OK, json!(20)));
    let (status, metrics) = get(&s.client(None), &s.url("/node/js_metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(metrics["isolation"], "threads", "{metrics}");
    assert!(metrics["executions"].as_u64() >= Some(22), "{metrics}");
    assert_eq!(metrics["worker_crashes"], 0);
    // No `consort js-worker` among the node's children.
    let node = s.node_pids()[0];
    let workers = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == Some(node) && String::from_utf8_lossy(&cmdline).contains("js-worker")
        })
        .count();
    assert_eq!(workers, 0, "the node started JS worker processes");
    drop(s);
    let _ = std::fs::remove_dir_all(&ws);
}

/// Every hex digit of the receipt's digests, proof and node id is bound by the signature.
fn hex_positions(receipt: &Value) -> Vec<(Vec<String>, usize)> {
    let mut out = Vec::new();
    let mut add = |path: Vec<&str>, s: &str| {
        for (i, c) in s.char_indices() {
            if c.is_ascii_hexdigit() {
                out.push((path.iter().map(|p| p.to_string()).collect(), i));
            }
        }
    };
    let lc = &receipt["leaf_components"];
    for f in ["write_set_digest", "claims_digest", "commit_evidence"] {
        add(vec!["leaf_components", f], lc[f].as_str().expect("string"));
    }
    add(vec!["node_id"], receipt["node_id"].as_str().expect("node_id"));
    for (i, p) in receipt["proof"].as_array().expect("proof").iter().enumerate() {
        let side = if p.get("left").is_some() { "left" } else { "right" };
        let idx = i.to_string();
        add(vec!["proof", Box::leak(idx.into_boxed_str()), side], p[side].as_str().expect("hex"));
    }
    out
}

fn flip_hex(receipt: &Value, path: &[String], at: usize) -> Value {
    let mut r = receipt.clone();
    let mut v = &mut r;
    for p in path {
        v = match p.parse::<usize>() {
            Ok(i) => &mut v[i],
            Err(_) => &mut v[p.as_str()],
        };
    }
    let mut s = v.as_str().expect("string").to_owned();
    let c = s.as_bytes()[at] as char;
    let flipped = if c == '0' { '1' } else { '0' };
    s.replace_range(at..at + 1, &flipped.to_string());
    *v = Value::String(s);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_restarts_and_the_ledger() {
    let ws = temp_workspace("durability");
    // This network deploys the bundle.json the SDK's consort-build-bundle makes (as ccf-build-bundle).
    let bundle = ws.join("bundle.json");
    let out = std::process::Command::new("node")
        .arg(repo_root().join("js-sdk/bin/consort-build-bundle.js"))
        .arg(logging_app())
        .arg("--out")
        .arg(&bundle)
        .output()
        .expect("node is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut s = Sandbox::start(&ws, Some(&bundle));
    let user = s.client(Some("user0"));
    let private_text = "the-private-needle-5f1c";
    let public_text = "the-public-needle-93ab";
    let (status, txid, _) = post(&user, &s.url("/app/log/private"), json!({"id": 1, "msg": private_text})).await;
    assert_eq!(status, StatusCode::OK);
    let txid = txid.expect("txid");
    post(&user, &s.url("/app/log/public"), json!({"id": 1, "msg": public_text})).await;

    // A receipt, verified offline by the CLI, and refused after any hex digit changes.
    s.wait_committed(&user, &txid).await;
    let (status, receipt) = get(&user, &s.url(&format!("/app/receipt?transaction_id={txid}"))).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    let service_cert = s.common().join("service_cert.pem");
    let receipt_file = ws.join("receipt.json");
    std::fs::write(&receipt_file, receipt.to_string()).expect("write receipt");
    let (ok, out) =
        consort(&["receipt", "verify", "--service-cert", service_cert.to_str().expect("utf8"), receipt_file.to_str().expect("utf8")]);
    assert!(ok && out.contains(&format!("transaction {txid}")), "{out}");
    let service_der = consort_crypto::cert_der_from_pem(&std::fs::read_to_string(&service_cert).expect("pem")).expect("der");
    let positions = hex_positions(&receipt);
    assert!(positions.len() > 200, "{}", positions.len());
    for (path, at) in &positions {
        let tampered: consort_ledger::Receipt = serde_json::from_value(flip_hex(&receipt, path, *at)).expect("still a receipt");
        assert!(tampered.verify(&service_der).is_err(), "changing {path:?}[{at}] was not detected");
    }
    let (path, at) = &positions[positions.len() / 2];
    std::fs::write(&receipt_file, flip_hex(&receipt, path, *at).to_string()).expect("write");
    let (ok, out) =
        consort(&["receipt", "verify", "--service-cert", service_cert.to_str().expect("utf8"), receipt_file.to_str().expect("utf8")]);
    assert!(!ok && out.contains("REJECTED"), "{out}");
    // ccf.consensus sees what the node sees.
    let (status, c) = get(&user, &s.url(&format!("/app/consensus?transaction_id={txid}"))).await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "Committed");
    let (view, sq) = txid.split_once('.').expect("txid");
    assert_eq!(c["viewOfSeqno"].as_u64(), view.parse().ok());
    assert!(c["lastCommitted"]["seqno"].as_u64() >= sq.parse().ok(), "{c}");
    let (_, c) = get(&user, &s.url("/app/consensus?transaction_id=99.99999")).await;
    assert_eq!((&c["status"], &c["viewOfSeqno"]), (&json!("Unknown"), &Value::Null));
    let (status, err) = get(&user, &s.url("/app/receipt?transaction_id=1.999999")).await;
    assert_eq!((status, err["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("TransactionPendingOrUnknown")));

    // SIGTERM, restart: records are there and new writes go on with higher seqnos.
    s.stop();
    let port = s.port;
    let s2 = Sandbox::start_on(&ws, None, port);
    assert_eq!(get(&user, &s2.url("/app/log/private?id=1")).await, (StatusCode::OK, json!({"msg": private_text})));
    let (_, after, _) = post(&user, &s2.url("/app/log/private"), json!({"id": 2, "msg": "after restart"})).await;
    assert!(seqno(&after.expect("txid")) > seqno(&txid));

    // kill -9 while a client writes: every write that was acknowledged survives.
    let so_far = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (user, so_far) = (user.clone(), so_far.clone());
        let url = s2.url("/app/log/private");
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 100..400 {
                match user.post(&url).json(&json!({"id": i, "msg": format!("m{i}")})).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        acked.push(i);
                        so_far.store(acked.len(), std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            acked
        })
    };
    // Some writes acknowledged, and the writer still going when the node dies.
    consort_tests::eventually("acknowledged writes", async || so_far.load(std::sync::atomic::Ordering::Relaxed) >= 20).await;
    let mut s2 = s2;
    s2.kill9();
    let acked = writer.await.expect("writer");
    assert!(!acked.is_empty(), "some writes were acknowledged before the kill");
    let mut s3 = Sandbox::start_on(&ws, None, port);
    let user3 = s3.client(Some("user0"));
    for i in &acked {
        let (status, v) = get(&user3, &s3.url(&format!("/app/log/private?id={i}"))).await;
        assert_eq!((status, &v["msg"]), (StatusCode::OK, &json!(format!("m{i}"))), "acknowledged write {i} was lost");
    }
    let (_, last, _) = post(&user3, &s3.url("/app/log/private"), json!({"id": 3, "msg": "after kill"})).await;
    s3.wait_committed(&user3, &last.expect("txid")).await;
    s3.stop();

    // The ledger verifies offline; the private text is sealed, the public one is in the clear.
    let ledger = ws.join("node0/ledger");
    let (ok, out) = consort(&["ledger", "verify", ledger.to_str().expect("utf8")]);
    assert!(ok, "{out}");
    let (ok, out) = consort(&["ledger", "verify", ledger.to_str().expect("utf8"), "--service-cert", service_cert.to_str().expect("utf8")]);
    assert!(ok, "{out}");
    let files = ledger_files(&ledger);
    let all: Vec<u8> = files.iter().flat_map(|f| std::fs::read(f).expect("read")).collect();
    let has = |needle: &str| all.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has(public_text), "public writes are in the clear");
    assert!(!has(private_text) && !has("after restart"), "private writes are encrypted");

    // A node stopped cleanly leaves only records in its chunks: nothing after the last one.
    for f in &files {
        let (records, damage) = consort_ledger::files::read_chunk(f).expect("chunk");
        let end = records.last().map_or(0, |r| r.offset + r.frame_bytes);
        assert_eq!((std::fs::metadata(f).expect("meta").len(), damage), (end, None), "{}", f.display());
    }
    // A byte after the last record of the open chunk (past zeros a node had reserved) is found
    // and named with its offset.
    let open_chunk = files.last().expect("the open chunk");
    let clean = std::fs::read(open_chunk).expect("read");
    let mut damaged = clean.clone();
    damaged.extend([0u8; 100]);
    damaged.push(0x17);
    std::fs::write(open_chunk, &damaged).expect("write");
    let (ok, out) = consort(&["ledger", "verify", ledger.to_str().expect("utf8")]);
    assert!(!ok, "bytes after the last record must fail verification: {out}");
    let name = open_chunk.file_name().expect("name").to_str().expect("utf8");
    assert!(out.contains(name) && out.contains(&format!("byte {}", clean.len() + 100)), "{out}");
    std::fs::write(open_chunk, &clean).expect("write");

    // One flipped byte is found and named.
    let victim = &files[0];
    let mut bytes = std::fs::read(victim).expect("read");
    // In the middle of its records (an open chunk also holds zeros reserved after them).
    let (records, _) = consort_ledger::files::read_chunk(victim).expect("chunk");
    let at = records.last().map(|r| (r.offset + r.frame_bytes) / 2).expect("records") as usize;
    bytes[at] ^= 0x40;
    std::fs::write(victim, &bytes).expect("write");
    let (ok, out) = consort(&["ledger", "verify", ledger.to_str().expect("utf8")]);
    assert!(!ok, "a flipped byte must fail verification");
    assert!(out.contains("seqno") && out.contains(victim.file_name().expect("name").to_str().expect("utf8")), "{out}");
    let _ = std::fs::remove_dir_all(&ws);
}

fn ledger_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("ledger dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("ledger_")))
        .collect();
    files.sort();
    files
}

/// `logging.format = "json"`: the node's log (and its JS workers') is one JSON object per line,
/// with the level and the message, including what a script logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_configured_for_json_writes_json_log_lines() {
    let ws = consort_tests::temp_workspace("json-logs");
    let app = json!({"name": "set_js_app", "args": {"bundle": {
        "metadata": {"endpoints": {"/hello": {"get": {"js_module": "m.js", "js_function": "f", "authn_policies": [], "mode": "readonly"}}}},
        "modules": [{"name": "m.js", "module": "export function f() { console.log('hello from the script'); return { body: 'hi' }; }"}],
    }}});
    let (s, _) = consort_tests::open_node(&ws, json!({"logging": {"format": "json"}}), vec![app]).await;
    let r = s.client(None).get(s.url("/app/hello")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    let mut objects = Vec::new();
    consort_tests::eventually("the script's log line", async || {
        objects =
            s.log().lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str::<Value>(l).expect("a JSON log line")).collect();
        objects.iter().any(|o| o["fields"]["message"].as_str().is_some_and(|m| m.contains("hello from the script")))
    })
    .await;
    assert!(objects.iter().all(|o| o["level"].is_string() && o["timestamp"].is_string()), "{objects:?}");
    // Every log line of the node is JSON (the one line that is not is the serving banner).
    let log = s.log();
    let text: Vec<&str> = log.lines().filter(|l| !l.starts_with('{') && !l.trim().is_empty()).collect();
    assert!(text.iter().all(|l| l.starts_with("consort: node ")), "{text:?}");
    let _ = std::fs::remove_dir_all(&ws);
}

/// A node that keeps only two recent entries in memory answers receipts for every transaction
/// from its files (closed ledger chunks, the tree's level files, the signature index): they
/// verify offline, and the same receipts come back after a restart rebuilt those files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_for_old_transactions_come_from_files_and_survive_a_restart() {
    let ws = temp_workspace("old-receipts");
    let app = json!({"name": "set_js_app", "args": {"bundle": {
        "metadata": {"endpoints": {"/put": {"post": {"js_module": "m.js", "js_function": "put", "authn_policies": [], "mode": "readwrite"}}}},
        "modules": [{"name": "m.js", "module":
            "export function put(r) { const b = r.body.json(); ccf.kv['records'].set(ccf.strToBuf(String(b.id)), ccf.strToBuf(b.msg)); return { body: 'ok' }; }"}],
    }}});
    let settings = json!({"memory": {"recent_entries": 2}, "ledger": {"chunk_bytes": 16384}, "ledger_signatures": {"tx_count": 10}});
    let (mut s, port) = consort_tests::open_node(&ws, settings, vec![app]).await;
    let c = s.client(None);
    let mut txids = Vec::new();
    for i in 0..200 {
        let (status, txid, body) = post(&c, &s.url("/app/put"), json!({"id": i, "msg": format!("m{i}")})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        txids.push(txid.expect("txid"));
    }
    s.wait_committed(&c, txids.last().expect("writes")).await;
    let service_der =
        consort_crypto::cert_der_from_pem(&std::fs::read_to_string(ws.join("node/service_cert.pem")).expect("pem")).expect("der");
    let sample: Vec<&String> = txids.iter().step_by(37).chain(txids.last()).collect();
    let mut receipts = Vec::new();
    for txid in &sample {
        let (status, receipt) = get(&c, &s.url(&format!("/app/receipt?transaction_id={txid}"))).await;
        assert_eq!(status, StatusCode::OK, "{txid}: {receipt}");
        let parsed: consort_ledger::Receipt = serde_json::from_value(receipt.clone()).expect("a receipt");
        parsed.verify(&service_der).unwrap_or_else(|e| panic!("the receipt for {txid} does not verify: {e}"));
        receipts.push(receipt);
    }
    let closed = ledger_files(&ws.join("node/ledger")).len();
    assert!(closed > 3, "the writes span several chunks: {closed}");
    let level0 = ws.join("node/ledger-index/tree/level-0");
    assert!(std::fs::metadata(&level0).is_ok_and(|m| m.len() > 32 * 150), "old tree nodes are in {}", level0.display());

    s.stop();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(ws.join(format!("config-{port}.json"))).expect("config")).expect("json");
    let mut s = Sandbox::start_config(&ws, config);
    s.wait_committed(&c, txids.last().expect("writes")).await;
    for (txid, before) in sample.iter().zip(&receipts) {
        let (status, after) = get(&c, &s.url(&format!("/app/receipt?transaction_id={txid}"))).await;
        assert_eq!((status, &after), (StatusCode::OK, before), "the receipt for {txid} after the restart");
    }
    s.stop();
    let _ = std::fs::remove_dir_all(&ws);
}

/// A one-shot command whose reader has gone (`consort ... | head`) ends as a program killed by
/// SIGPIPE would, status 141, with no panic; what it was asked to do is done.
#[test]
fn a_command_whose_output_is_not_read_stops_quietly() {
    let ws = temp_workspace("closed-stdout");
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = std::process::Command::new(consort_tests::consort_bin())
        .args(["keygen", "--name", "piped", "--dir", ws.to_str().expect("utf8")])
        .stdout(writer)
        .output()
        .expect("consort runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(ws.join("piped_privk.pem").exists() && ws.join("piped_cert.pem").exists());
}
