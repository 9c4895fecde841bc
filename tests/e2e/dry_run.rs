//! Issue 23, item 3: `POST /gov/members/proposals:dry-run` answers the writes a proposal would
//! make, from the same signed body as `:create`, and stores and commits nothing.

use std::path::Path;

use consort_tests::{app_bundle, consort, repo_root, temp_workspace, Gov, Member};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Ledger entries other than signatures, as `consort ledger verify` counts them.
fn non_signature_entries(ledger: &Path) -> u64 {
    let (ok, out) = consort(&["ledger", "verify", ledger.to_str().expect("utf8")]);
    assert!(ok, "{out}");
    let number_before = |word: &str| -> u64 {
        let at = out.find(word).unwrap_or_else(|| panic!("{word} in {out}"));
        out[..at].trim_end().rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("a number before {word} in {out}"))
    };
    number_before(" entries (") - number_before(" signatures")
}

/// The writes of a dry-run answer to `table`, each `(key, old, new)`.
fn writes_to(answer: &Value, table: &str) -> Vec<(String, Value, Value)> {
    let writes = answer["writes"].as_array().unwrap_or_else(|| panic!("writes in {answer}"));
    writes
        .iter()
        .filter(|w| w["table"] == table)
        .map(|w| (w["key"].as_str().expect("key").to_owned(), w["old"].clone(), w["new"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_show_the_writes_and_change_nothing() {
    let ws = temp_workspace("dry-run");
    let logging = repo_root().join("samples/logging");
    let (s, _) = consort_tests::open_node(&ws, json!({}), vec![consort_tests::set_js_app(&logging)]).await;
    let read = |name: &str| std::fs::read_to_string(ws.join(name)).expect("an identity");
    let m0 = Member::from_pem(&read("member0_privk.pem"), &read("member0_cert.pem"));
    let m1 = Member::create(&ws, "member1");
    let user = Member::create(&ws, "user1");
    let gov = Gov::new(&s);
    gov.pass(&[&m0], json!([{"name": "set_member", "args": {"cert": m1.cert_pem}}])).await;
    let dry_run = |actions: Value| {
        let body = serde_json::to_vec(&json!({"actions": actions})).expect("json");
        let signed = m0.sign("proposal", None, &body);
        let gov = &gov;
        async move { gov.post("/members/proposals:dry-run", signed).await }
    };
    // Three app transactions, their inputs recorded: what a proposed app is tried on.
    let writer = Member::create(&ws, "user2");
    gov.pass(&[&m0], json!([{"name": "set_user", "args": {"cert": writer.cert_pem}}])).await;
    let app = s.client(Some(ws.join("user2").to_str().expect("utf8")));
    let mut last = String::new();
    for (path, id, msg) in [("/app/log/public", 1, "a"), ("/app/log/public", 2, "b"), ("/app/log/private", 3, "c")] {
        let r = app.post(s.url(path)).json(&json!({"id": id, "msg": msg})).send().await.expect("post");
        assert_eq!(r.status(), StatusCode::OK);
        last = r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned();
    }
    s.wait_committed(&app, &last).await;
    let ledger = ws.join("node/ledger");
    let entries_before = non_signature_entries(&ledger);
    let proposals_before = gov.get("/members/proposals").await;

    // set_user: the user's certificate and info would be written; they are not.
    let (status, answer, _) = dry_run(json!([{"name": "set_user", "args": {"cert": user.cert_pem, "user_data": {"team": "a"}}}])).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!((&answer["valid"], &answer["applied"]), (&json!(true), &json!(true)), "{answer}");
    assert_eq!(writes_to(&answer, "public:ccf.gov.users.certs"), [(user.id.clone(), Value::Null, json!(user.cert_pem))]);
    assert_eq!(writes_to(&answer, "public:ccf.gov.users.info"), [(user.id.clone(), Value::Null, json!({"user_data": {"team": "a"}}))]);
    let r = gov.client.get(gov.url(&format!("/service/users/{}", user.id))).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "the user was not added");

    // remove_member: member1's certificate and info would go.
    let (status, answer, _) = dry_run(json!([{"name": "remove_member", "args": {"member_id": m1.id}}])).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(writes_to(&answer, "public:ccf.gov.members.certs"), [(m1.id.clone(), json!(m1.cert_pem), Value::Null)]);
    let info = writes_to(&answer, "public:ccf.gov.members.info");
    assert!(info.len() == 1 && info[0].1["status"] == "Accepted" && info[0].2.is_null(), "{info:?}");
    assert_eq!(gov.get(&format!("/service/members/{}", m1.id)).await["status"], "Accepted", "member1 is still there");

    // set_js_app changing one endpoint's function: the endpoint's definition, and the app version
    // it would record.
    let mut bundle = app_bundle(&logging);
    let endpoint = &mut bundle["metadata"]["endpoints"]["/log/public/count"]["get"];
    assert!(endpoint.is_object(), "{bundle}");
    endpoint["js_function"] = json!("getPublic");
    let (status, answer, _) = dry_run(json!([{"name": "set_js_app", "args": {"bundle": bundle}}])).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let changed: Vec<_> = writes_to(&answer, "public:ccf.gov.endpoints").into_iter().filter(|(_, old, new)| old != new).collect();
    assert_eq!(changed.len(), 1, "one endpoint changes: {changed:?}");
    assert_eq!((changed[0].0.as_str(), &changed[0].2["js_function"]), ("GET /log/public/count", &json!("getPublic")));
    let versions = writes_to(&answer, "public:ccf.internal.app_versions");
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!((versions[0].0.as_str(), &versions[0].1, &versions[0].2["version"]), ("2", &Value::Null, &json!(2)));
    let listed = gov.get("/service/javascript-app/versions").await;
    assert_eq!(listed["value"].as_array().map(Vec::len), Some(1), "{listed}");
    // The recorded transactions, run by the proposed app: none of them would differ.
    assert_eq!(answer["appReplay"], json!({"window": 100, "replayed": 3, "differing": []}), "{answer}");

    // An app that would record messages in capitals: each recorded transaction differs, the
    // public ones value by value, the private one by key only.
    let mut bundle = app_bundle(&logging);
    let module = bundle["modules"].as_array_mut().expect("modules").iter_mut().find(|m| m["name"] == "logging.js").expect("logging.js");
    let source = module["module"].as_str().expect("source").to_owned();
    let changed = source.replace("ccf.strToBuf(body.msg)", "ccf.strToBuf(body.msg.toUpperCase())");
    assert_ne!(changed, source);
    module["module"] = json!(changed);
    let (status, answer, _) = dry_run(json!([{"name": "set_js_app", "args": {"bundle": bundle}}])).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let replay = &answer["appReplay"];
    assert_eq!((&replay["replayed"], replay["differing"].as_array().map(Vec::len)), (&json!(3), Some(3)), "{answer}");
    for (i, (table, key, recorded, proposed)) in [
        ("public:records", "1", json!({"value": "a"}), json!({"value": "A"})),
        ("public:records", "2", json!({"value": "b"}), json!({"value": "B"})),
    ]
    .into_iter()
    .enumerate()
    {
        let d = &replay["differing"][i];
        assert_eq!(d["response"], json!({"recorded": {"status": 200}, "proposed": {"status": 200, "sameBody": true}}), "{d}");
        assert_eq!(d["ranBy"], json!(1));
        assert_eq!(d["writes"], json!([{"table": table, "key": key, "recorded": recorded, "proposed": proposed}]), "{d}");
    }
    assert_eq!(replay["differing"][2]["writes"], json!([{"table": "records", "key": "3", "private": true}]), "{answer}");
    assert_eq!(replay["differing"][2]["transactionId"], json!(last));

    // A proposal whose apply throws (its first action would write, its second fails): the
    // answer says why, with no writes.
    let nobody = "0".repeat(64);
    let (status, answer, _) = dry_run(json!([
        {"name": "set_user", "args": {"cert": user.cert_pem}},
        {"name": "set_member_data", "args": {"member_id": nobody, "member_data": {}}},
    ]))
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["applied"], json!(false), "{answer}");
    let reason = answer["failure"]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("Failed to apply(): ") && reason.contains(&format!("member {nobody} does not exist")), "{answer}");
    assert_eq!(answer["writes"], json!([]));

    // Bad input: an invalid proposal, a body that is not COSE, a signer that is not a member.
    let (status, answer, _) = dry_run(json!([{"name": "set_user", "args": {"cert": "not a certificate"}}])).await;
    assert_eq!((status, &answer["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("ProposalFailedToValidate")), "{answer}");
    let r = gov
        .client
        .post(gov.url("/members/proposals:dry-run"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body = serde_json::to_vec(&json!({"actions": []})).expect("json");
    let (status, answer, _) = gov.post("/members/proposals:dry-run", user.sign("proposal", None, &body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    // member1 is Accepted, not Active: it may not propose, nor dry-run.
    let (status, answer, _) = gov.post("/members/proposals:dry-run", m1.sign("proposal", None, &body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");

    // Nothing was stored or committed: no proposal, no ledger entry but signatures.
    assert_eq!(gov.get("/members/proposals").await, proposals_before);
    assert_eq!(non_signature_entries(&ledger), entries_before);
    // The same from the command line: it prints the writes and proposes nothing.
    let cert = user.cert_pem.clone();
    std::fs::write(ws.join("user1_cert_copy.pem"), &cert).expect("write");
    let (ok, out) = consort(&[
        "gov",
        "--url",
        &s.url(""),
        "--service-cert",
        ws.join("node/service_cert.pem").to_str().expect("utf8"),
        "--member",
        ws.join("member0").to_str().expect("utf8"),
        "propose",
        "--set-user",
        ws.join("user1_cert_copy.pem").to_str().expect("utf8"),
        "--dry-run",
    ]);
    assert!(ok && out.contains("public:ccf.gov.users.certs") && out.contains("\"applied\": true"), "{out}");
    assert_eq!(gov.get("/members/proposals").await, proposals_before);
    assert_eq!(non_signature_entries(&ledger), entries_before);
}
