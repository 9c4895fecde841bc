//! Issue 23, item 2: each app transaction's ledger entry carries its inputs, sealed; `consort
//! replay` runs the transaction again from a node's ledger on them and shows the console
//! output, the response and the write set next to the recorded one: identical for the app that
//! ran it (also when the handler used the time and random values), a diff for a modified app.

use consort_tests::{temp_workspace, Gov, Member};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// An app whose `POST /draw` reads a counter, draws time and random values and writes them,
/// in a private table, with a console line and (`/draw/{name}`, for users) who called.
/// `bump` is what the counter grows by.
fn app(bump: u32) -> Value {
    json!({
        "metadata": {"endpoints": {
            "/draw": {"post": {"js_module": "app.js", "js_function": "draw", "authn_policies": [], "mode": "readwrite"}},
            "/draw/{name}": {"post": {"js_module": "app.js", "js_function": "draw", "authn_policies": ["user_cert"], "mode": "readwrite"}},
        }},
        "modules": [{"name": "app.js", "module": format!(r#"
            const table = ccf.kv["draws"];
            const key = ccf.strToBuf("counter");
            export function draw(request) {{
                const before = table.has(key) ? Number(ccf.bufToStr(table.get(key))) : 0;
                const n = before + {bump};
                const drawn = {{
                    n, name: request.params.name ?? null, body: request.body.text(), caller: request.caller ?? null,
                    random: Math.random(), now: Date.now(), iso: new Date().toISOString(),
                    uuid: crypto.randomUUID(), bytes: Array.from(crypto.getRandomValues(new Uint8Array(8))),
                }};
                table.set(key, ccf.strToBuf(String(n)));
                ccf.kv["public:draws"].set(ccf.strToBuf("draw-" + n), ccf.jsonCompatibleToBuf(drawn));
                console.log("drew", n, drawn.uuid);
                return {{ body: drawn }};
            }}
        "#)}],
    })
}

fn set_js_app(bundle: &Value) -> Value {
    json!([{"name": "set_js_app", "args": {"bundle": bundle}}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_replays_identically_and_a_modified_app_shows_the_diff() {
    let ws = temp_workspace("replay");
    let user = Member::create(&ws, "user1");
    let actions = vec![set_js_app(&app(1))[0].clone(), json!({"name": "set_user", "args": {"cert": user.cert_pem}})];
    let (s, _) = consort_tests::open_node(&ws, json!({}), actions).await;
    let read = |name: &str| std::fs::read_to_string(ws.join(name)).expect("member0's identity");
    let m0 = Member::from_pem(&read("member0_privk.pem"), &read("member0_cert.pem"));
    let gov = Gov::new(&s);
    let c = s.client(None);
    let as_user = s.client(Some(ws.join("user1").to_str().expect("utf8")));
    let draw = |path: &'static str| {
        let (c, url) = (if path.contains("alice") { as_user.clone() } else { c.clone() }, s.url(path));
        async move {
            let r = c.post(url).body("hello").send().await.expect("draw");
            assert_eq!(r.status(), StatusCode::OK);
            let txid = r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned();
            (txid, r.json::<Value>().await.expect("json"))
        }
    };
    let (first, _) = draw("/app/draw").await;
    let (second, drawn) = draw("/app/draw/alice").await;
    assert_eq!((drawn["n"].as_u64(), drawn["name"].as_str(), drawn["body"].as_str()), (Some(2), Some("alice"), Some("hello")));
    // The caller, certificate included, is part of what the handler wrote: the replay must give
    // it back exactly (the record keeps the certificate by the caller's id).
    assert_eq!(
        (drawn["caller"]["id"].as_str(), drawn["caller"]["cert"].as_str().map(|c| c.contains("BEGIN CERTIFICATE"))),
        (Some(user.id.as_str()), Some(true))
    );
    s.wait_committed(&c, &second).await;
    let ledger = ws.join("node/ledger");
    let replay = |txid: &str, extra: &[&str]| {
        let base = ["replay", "--ledger", ledger.to_str().expect("utf8"), "--txid", txid];
        consort_tests::consort(&[&base[..], extra].concat())
    };

    // The app that ran it, on the recorded inputs: the same answer and the same writes, the
    // draws of time and randomness included, and the handler's console line.
    for (txid, n) in [(&first, 1), (&second, 2)] {
        let (ok, out) = replay(txid, &[]);
        assert!(ok, "{out}");
        assert!(out.contains(&format!("transaction {txid}: recorded as run by app version 1; replayed with app version 1")), "{out}");
        assert!(out.contains("response: 200 (the same as recorded"), "{out}");
        assert!(out.contains("write set: identical to the recorded one (2 keys)"), "{out}");
        assert!(out.contains(&format!("drew {n} ")), "the console line: {out}");
        assert!(!out.contains("beyond those recorded"), "{out}");
    }
    let (_, out) = replay(&second, &[]);
    assert!(out.contains(drawn["uuid"].as_str().expect("uuid")), "the recorded UUID comes back: {out}");

    // A modified app (from a file, as `--app DIR` takes a bundle.json too): another counter
    // value, so the write set and the response differ, key by key.
    let modified = ws.join("modified.json");
    std::fs::write(&modified, app(10).to_string()).expect("write bundle");
    let (ok, out) = replay(&second, &["--app", modified.to_str().expect("utf8")]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("replayed with the app in {}", modified.display())), "{out}");
    assert!(out.contains("response: 200 (differs from the recorded one"), "{out}");
    assert!(out.contains("write set: differs from the recorded one in 3 of its keys"), "{out}");
    assert!(out.contains("draws \"counter\"\n    recorded: 2\n    replayed: 11\n"), "{out}");
    assert!(out.contains("public:draws \"draw-11\"\n    recorded: (not written)"), "{out}");
    assert!(out.contains("public:draws \"draw-2\"\n    recorded: {") && out.contains("replayed: (not written)"), "{out}");

    // A later version, recorded after the transaction, by number.
    gov.pass(&[&m0], set_js_app(&app(100))).await;
    let (ok, out) = replay(&first, &["--app-version", "2"]);
    assert!(ok && out.contains("replayed with app version 2") && out.contains("replayed: 100\n"), "{out}");

    // Bad input: clear errors, and nothing else printed as a result.
    let (ok, out) = replay("1.99999", &[]);
    assert!(!ok && out.contains("transaction 1.99999 is not in this ledger: this ledger ends at seqno"), "{out}");
    let wrong_view = format!("7.{}", second.split('.').nth(1).expect("seqno"));
    let (ok, out) = replay(&wrong_view, &[]);
    assert!(!ok && out.contains(&format!("is not in this ledger: the transaction at seqno {} is {second}", &second[2..])), "{out}");
    let versions = gov.get("/service/javascript-app/versions").await;
    let deploy = versions["value"][1]["transactionId"].as_str().expect("the deploy's txid").to_owned();
    s.wait_committed(&c, &deploy).await;
    let (ok, out) = replay(&deploy, &[]);
    assert!(!ok && out.contains("was not run by the app (a governance or internal transaction)"), "{out}");
    let (ok, out) = replay(&first, &["--app-version", "9"]);
    assert!(!ok && out.contains("app version 9 is not recorded in this ledger"), "{out}");
    let (ok, out) = replay(&first, &["--node-dir", ws.to_str().expect("utf8")]);
    assert!(!ok && out.contains("node_privk.pem"), "without a node's secrets: {out}");
    let (ok, out) = replay("bad", &[]);
    assert!(!ok && out.contains("--txid"), "{out}");

    // Recording can be turned off by governance; a transaction then has nothing to replay.
    gov.pass(&[&m0], json!([{"name": "set_service_configuration", "args": {"record_inputs": false}}])).await;
    let (unrecorded, _) = draw("/app/draw").await;
    s.wait_committed(&c, &unrecorded).await;
    let (ok, out) = replay(&unrecorded, &[]);
    assert!(!ok && out.contains(&format!("transaction {unrecorded} has no recorded inputs")), "{out}");
    let (status, body) = gov.propose(&m0, json!([{"name": "set_service_configuration", "args": {"record_inputs": "no"}}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A damaged chunk: the replay stops naming the file.
    drop(s);
    let damaged = ws.join("damaged");
    std::fs::create_dir_all(&damaged).expect("mkdir");
    let mut chunks: Vec<_> = std::fs::read_dir(&ledger).expect("ledger").map(|e| e.expect("entry").path()).collect();
    chunks.sort();
    for chunk in &chunks {
        std::fs::copy(chunk, damaged.join(chunk.file_name().expect("name"))).expect("copy");
    }
    let victim = damaged.join(chunks[0].file_name().expect("name"));
    let mut bytes = std::fs::read(&victim).expect("chunk");
    // In the middle of its records (the open chunk ends in space reserved ahead, all zeros).
    let used = bytes.iter().rposition(|b| *b != 0).expect("records");
    bytes[used / 2] ^= 0x55;
    std::fs::write(&victim, bytes).expect("write");
    let node_dir = ws.join("node");
    let base = ["replay", "--ledger", damaged.to_str().expect("utf8"), "--node-dir", node_dir.to_str().expect("utf8"), "--txid", &first];
    let (ok, out) = consort_tests::consort(&base);
    assert!(
        !ok && out.contains("does not verify") && out.contains(&victim.file_name().expect("name").to_string_lossy().to_string()),
        "{out}"
    );
}

/// Without any node's directory: the members' recovery keys open the shares the ledger holds,
/// which give every ledger secret (what `--recovery-key` reads), so an auditor holding the
/// shares can replay a transaction from a copy of the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_keys_open_a_ledger_without_a_node_directory() {
    let ws = temp_workspace("replay-shares");
    let port = consort_tests::cluster::free_ports(2);
    let s = consort_tests::Sandbox::start_with(&ws, None, port, &[]);
    let c = s.client(Some("user0"));
    let r = c.post(s.url("/app/log/private")).json(&json!({"id": 7, "msg": "kept private"})).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    let txid = r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned();
    s.wait_committed(&c, &txid).await;
    // A copy of the ledger, away from the node's directory.
    let copy = ws.join("copy");
    std::fs::create_dir_all(&copy).expect("mkdir");
    for e in std::fs::read_dir(ws.join("node0/ledger")).expect("ledger") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, copy.join(p.file_name().expect("name"))).expect("copy");
    }
    let common = ws.join("sandbox_common");
    let path = |p: std::path::PathBuf| p.to_str().expect("utf8").to_owned();
    let (ledger, cert) = (path(copy.clone()), path(common.join("service_cert.pem")));
    let replay = |key: &str| {
        consort_tests::consort(&["replay", "--ledger", &ledger, "--txid", &txid, "--service-cert", &cert, "--recovery-key", key])
    };
    let (ok, out) = replay(&path(common.join("member0_enc_privk.pem")));
    assert!(ok, "{out}");
    assert!(
        out.contains("response: 200 (the same as recorded") && out.contains("write set: identical to the recorded one (1 keys)"),
        "{out}"
    );

    // A key that holds no share of this service, and none at all.
    let (ok, out) = consort_tests::consort(&["keygen", "--name", "stranger", "--gen-enc-key", "--dir", &path(ws.clone())]);
    assert!(ok, "{out}");
    let (ok, out) = replay(&path(ws.join("stranger_enc_privk.pem")));
    assert!(!ok && out.contains("recovery key 1 opens none of the shares this ledger holds"), "{out}");
    let (ok, out) = consort_tests::consort(&["replay", "--ledger", &ledger, "--txid", &txid]);
    assert!(!ok && out.contains("node_privk.pem"), "a copy of the ledger has no node directory beside it: {out}");
    drop(s);
}
