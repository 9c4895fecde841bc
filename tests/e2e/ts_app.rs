//! The TypeScript sample (samples/ts-app), built by `make test` from @microsoft/ccf-app 6.0.1
//! with esbuild, deployed and called as a CCF app would be.

use std::time::Duration;

use consort_tests::{repo_root, temp_workspace, Sandbox};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_app_built_with_ccf_app_runs_unchanged() {
    let dist = repo_root().join("samples/ts-app/dist");
    assert!(dist.join("bundle.json").exists(), "build the sample first: make ts-sample (make test does)");
    let ws = temp_workspace("ts-app");
    let s = Sandbox::start(&ws, Some(&dist));
    let user = s.client(Some("user0"));

    let put = |id: &str, name: &str| user.post(s.url("/app/items")).json(&json!({"id": id, "name": name, "tags": ["a", "b"]})).send();
    let r = put("x1", "first").await.expect("post");
    assert_eq!(r.status(), StatusCode::CREATED);
    let first_txid = r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned();
    assert_eq!(r.json::<Value>().await.expect("json"), json!({"id": "x1", "writes": 1}), "uint32 converter on a public map");
    let r = put("x1", "again").await.expect("post");
    assert_eq!(r.json::<Value>().await.expect("json")["writes"], 2);
    put("x2", "second").await.expect("post");

    let r = user.get(s.url("/app/items/x1")).send().await.expect("get");
    assert_eq!(r.json::<Value>().await.expect("json"), json!({"name": "again", "tags": ["a", "b"]}), "json converter");
    let r = user.get(s.url("/app/items/nope")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let list: Value = user.get(s.url("/app/items")).send().await.expect("list").json().await.expect("json");
    assert_eq!(list["count"], 2, "typedKv size and forEach: {list}");
    assert_eq!(list["items"]["x2"]["name"], "second");

    // crypto.digest over the json converter's bytes, checked against the same bytes here.
    let hash: Value = user.get(s.url("/app/items/x2/sha256")).send().await.expect("hash").json().await.expect("json");
    let bytes = serde_json::to_vec(&json!({"name": "second", "tags": ["a", "b"]})).expect("json");
    let expected: String = consort_crypto::sha256_hex(&bytes);
    assert_eq!(hash["sha256"], expected.as_str());

    // ccf.crypto from TypeScript: an ECDSA signature over the item's bytes, checked here with an
    // independent implementation, and the key as a JWK.
    let signed: Value = user.post(s.url("/app/items/x2/signature")).send().await.expect("sign").json().await.expect("json");
    assert_eq!(signed["verified"], true, "{signed}");
    assert_eq!((&signed["jwk"]["kty"], &signed["jwk"]["crv"], &signed["jwk"]["kid"]), (&json!("EC"), &json!("P-256"), &json!("item-key")));
    {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
        let key = p256::ecdsa::VerifyingKey::from_public_key_pem(signed["publicKey"].as_str().expect("pem")).expect("spki");
        let sig = hex::decode(signed["signature"].as_str().expect("hex")).expect("hex");
        let sig = p256::ecdsa::Signature::from_slice(&sig).expect("r||s");
        key.verify(&bytes, &sig).expect("the signature verifies outside Consort");
    }

    let r = user.post(s.url("/app/items")).body("{ not json").send().await.expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Consensus queries, once a signature has committed the writes.
    let mut committed = Value::Null;
    for _ in 0..100 {
        committed = user.get(s.url("/app/committed")).send().await.expect("committed").json().await.expect("json");
        let first_seqno = first_txid.split('.').nth(1).and_then(|n| n.parse::<u64>().ok());
        if committed["seqno"].as_u64() > first_seqno {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(committed["status"], "Committed", "{committed}");

    // Historical query from TypeScript: x1 as its first write left it, 202 while loading.
    let mut historical = Value::Null;
    for _ in 0..100 {
        let r =
            user.get(s.url("/app/items/x1/historical")).header("x-ms-ccf-transaction-id", &first_txid).send().await.expect("historical");
        if r.status() != StatusCode::ACCEPTED {
            assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
            historical = r.json().await.expect("json");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(historical["item"], json!({"name": "first", "tags": ["a", "b"]}), "{historical}");
    assert_eq!(historical["transactionId"], first_txid.as_str());
    assert!(historical["receipt"]["signature"].is_string(), "{historical}");
    drop(s);
    let _ = std::fs::remove_dir_all(&ws);
}
