//! Issue 23, item 1: every app a proposal deploys is a version with its bundle, digest,
//! proposal and seqno; `rollback_js_app` brings an earlier one back in one proposal; each
//! transaction's receipt names the version that ran it.

use consort_tests::{temp_workspace, Gov, Member};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// An app whose `GET /which` answers `name`, and `POST /put` writes a record.
fn app(name: &str) -> Value {
    json!({
        "metadata": {"endpoints": {
            "/which": {"get": {"js_module": "app.js", "js_function": "which", "authn_policies": [], "mode": "readonly"}},
            "/put": {"post": {"js_module": "app.js", "js_function": "put", "authn_policies": [], "mode": "readwrite"}},
        }},
        "modules": [{"name": "app.js", "module": format!(
            "export function which() {{ return {{ body: '{name}' }}; }}\n\
             export function put(r) {{ ccf.kv['records'].set(ccf.strToBuf('k'), ccf.strToBuf('{name}')); return {{ body: 'ok' }}; }}\n"
        )}],
    })
}

fn set_js_app(bundle: &Value) -> Value {
    json!([{"name": "set_js_app", "args": {"bundle": bundle}}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_listed_with_their_bundles_and_a_rollback_restores_one() {
    let ws = temp_workspace("app-versions");
    let (v1, v2) = (app("v1"), app("v2"));
    let (s, _) = consort_tests::open_node(&ws, json!({}), vec![set_js_app(&v1)[0].clone()]).await;
    let read = |name: &str| std::fs::read_to_string(ws.join(name)).expect("member0's identity");
    let m0 = Member::from_pem(&read("member0_privk.pem"), &read("member0_cert.pem"));
    let gov = Gov::new(&s);
    let c = s.client(None);
    let which = || {
        let (c, url) = (c.clone(), s.url("/app/which"));
        async move { c.get(url).send().await.expect("a reply").text().await.expect("text") }
    };
    let put = || {
        let (c, url) = (c.clone(), s.url("/app/put"));
        async move {
            let r = c.post(url).send().await.expect("put");
            assert_eq!(r.status(), StatusCode::OK);
            r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned()
        }
    };
    assert_eq!(which().await, "v1");
    let by_v1 = put().await;

    let deployed = gov.pass(&[&m0], set_js_app(&v2)).await;
    assert_eq!(which().await, "v2");
    let by_v2 = put().await;

    let list = gov.get("/service/javascript-app/versions").await["value"].as_array().cloned().expect("a list");
    assert_eq!(list.iter().map(|v| v["version"].as_u64().expect("number")).collect::<Vec<_>>(), [1, 2], "{list:?}");
    assert_eq!(list[1]["proposalId"], deployed["proposalId"]);
    let seqnos: Vec<u64> = list.iter().map(|v| v["seqno"].as_u64().expect("seqno")).collect();
    assert!(seqnos[0] > 0 && seqnos[1] > seqnos[0], "{list:?}");
    assert!(list.iter().all(|v| v["transactionId"].as_str().is_some_and(|t| t.ends_with(&format!(".{}", v["seqno"])))), "{list:?}");

    // Each version's bundle is the one deployed, and its digest is BLAKE3 of its canonical JSON.
    for (n, sent) in [(1, &v1), (2, &v2)] {
        let bundle = gov.get(&format!("/service/javascript-app/versions/{n}")).await;
        assert_eq!(&bundle, sent, "version {n}");
        let digest = hex::encode(blake3::hash(&serde_json::to_vec(&bundle).expect("json")).as_bytes());
        assert_eq!(list[n - 1]["bundleDigest"], json!(digest), "version {n}");
    }
    assert_ne!(list[0]["bundleDigest"], list[1]["bundleDigest"]);

    // Each write's receipt names the version that ran it, and verifies offline with that name.
    let cert = ws.join("node/service_cert.pem");
    for (txid, n) in [(&by_v1, 1), (&by_v2, 2)] {
        s.wait_committed(&c, txid).await;
        let receipt: Value =
            c.get(s.url(&format!("/app/receipt?transaction_id={txid}"))).send().await.expect("receipt").json().await.expect("json");
        assert_eq!(receipt["app_version"]["version"], n, "{receipt}");
        assert_eq!(receipt["app_version"]["bundle_digest"], list[n - 1]["bundleDigest"], "{receipt}");
        let file = ws.join(format!("receipt-{n}.json"));
        std::fs::write(&file, receipt.to_string()).expect("write");
        let (ok, out) =
            consort_tests::consort(&["receipt", "verify", "--service-cert", cert.to_str().expect("utf8"), file.to_str().expect("utf8")]);
        let digest = list[n - 1]["bundleDigest"].as_str().expect("digest");
        assert!(ok && out.contains(&format!("run by app version {n} (bundle digest {digest})")), "{out}");
        // Claiming the other version breaks the receipt.
        let mut forged = receipt.clone();
        forged["app_version"]["version"] = json!(3 - n);
        forged["app_version"]["bundle_digest"] = list[2 - n]["bundleDigest"].clone();
        std::fs::write(&file, forged.to_string()).expect("write");
        let (ok, out) =
            consort_tests::consort(&["receipt", "verify", "--service-cert", cert.to_str().expect("utf8"), file.to_str().expect("utf8")]);
        assert!(!ok && out.contains("app_version does not match write_set_digest"), "{out}");
    }
    // A governance transaction was not run by the app: its receipt names no version.
    let gov_txid = list[1]["transactionId"].as_str().expect("txid");
    let receipt: Value =
        c.get(s.url(&format!("/app/receipt?transaction_id={gov_txid}"))).send().await.expect("receipt").json().await.expect("json");
    assert!(receipt["leaf_components"].is_object() && receipt.get("app_version").is_none(), "{receipt}");

    // One proposal brings version 1 back; it is recorded as version 3, with version 1's digest.
    let rolled_back = gov.pass(&[&m0], json!([{"name": "rollback_js_app", "args": {"version": 1}}])).await;
    assert_eq!(which().await, "v1");
    let list = gov.get("/service/javascript-app/versions").await["value"].as_array().cloned().expect("a list");
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!((&list[2]["version"], &list[2]["bundleDigest"]), (&json!(3), &list[0]["bundleDigest"]));
    assert_eq!(list[2]["proposalId"], rolled_back["proposalId"]);

    // A version that does not exist: the proposal is refused, and there is nothing to read.
    let (status, body) = gov.propose(&m0, json!([{"name": "rollback_js_app", "args": {"version": 9}}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("there is no app version 9")), "{body}");
    let (status, body) = gov.propose(&m0, json!([{"name": "rollback_js_app", "args": {"version": "1"}}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for missing in ["9", "0", "one", "-1"] {
        let r = gov.client.get(gov.url(&format!("/service/javascript-app/versions/{missing}"))).send().await.expect("get");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "ResourceNotFound", "{body}");
    }
    assert_eq!(which().await, "v1");

    // The same from the command line: a rollback to version 2, then the list.
    let (url, member) = (s.url(""), ws.join("member0"));
    let gov_cli = |args: &[&str]| {
        let base = ["gov", "--url", &url, "--service-cert", cert.to_str().expect("utf8"), "--member", member.to_str().expect("utf8")];
        consort_tests::consort(&[&base[..], args].concat())
    };
    let (ok, out) = gov_cli(&["propose", "--rollback-js-app", "2", "--accept"]);
    assert!(ok && out.contains("\"Accepted\""), "{out}");
    assert_eq!(which().await, "v2");
    let (ok, out) = gov_cli(&["app-versions"]);
    assert!(ok, "{out}");
    // What it printed: the JSON answer (stdout), then the HTTP status (stderr).
    let printed = |out: &str| -> Value {
        let json = out.trim_start_matches(|c| c != '{');
        serde_json::Deserializer::from_str(json).into_iter::<Value>().next().expect("an answer").expect("JSON")
    };
    let listed = printed(&out);
    assert_eq!(listed["value"][3]["bundleDigest"], list[1]["bundleDigest"], "{listed}");
    let (ok, out) = gov_cli(&["app-versions", "2"]);
    assert!(ok, "{out}");
    assert_eq!(printed(&out), v2);
}
