//! The npm SDK (`js-sdk/`, package `consort-sdk`) against the Rust side it stands in for:
//! receipts from a real node that `consort receipt verify` accepts, the JS verifier accepts, and
//! both refuse the same tampered copies; bundles a deploy refuses, the bundler refuses in the
//! same words. The SDK's own `npm test` (run by `make test` before this) covers the rest.

use std::path::Path;
use std::process::Command;

use consort_tests::{consort, repo_root, temp_workspace, Sandbox};
use serde_json::{json, Value};

/// Runs the SDK's cross-check script on `request`; its JSON answer.
fn sdk_cross_check(ws: &Path, request: &Value) -> Vec<Value> {
    let sdk = repo_root().join("js-sdk");
    assert!(sdk.join("node_modules").exists(), "install the SDK first: make sdk (make test does)");
    let file = ws.join("cross-check-request.json");
    std::fs::write(&file, request.to_string()).expect("write the request");
    let out = Command::new("node").arg(sdk.join("test/cross-check.js")).arg(&file).output().expect("node runs");
    assert!(out.status.success(), "the cross-check script: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("its JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_verify_alike_in_rust_and_in_the_js_sdk() {
    let ws = temp_workspace("sdk-receipts");
    let s = Sandbox::start(&ws, Some(&repo_root().join("samples/logging")));
    let user = s.client(Some("user0"));
    // Transactions at several seqnos (proofs of several lengths), public and private.
    let mut txids = Vec::new();
    for (i, kind) in ["public", "private", "public", "public", "private"].iter().enumerate() {
        let r = user
            .post(s.url(&format!("/app/log/{kind}")))
            .json(&json!({"id": i, "msg": format!("message {i}")}))
            .send()
            .await
            .expect("post");
        assert!(r.status().is_success(), "{}", r.status());
        txids.push(r.headers()["x-ms-ccf-transaction-id"].to_str().expect("txid").to_owned());
    }
    let mut receipts = Vec::new();
    for txid in &txids {
        s.wait_committed(&user, txid).await;
        let r = user.get(s.url(&format!("/app/receipt?transaction_id={txid}"))).send().await.expect("receipt");
        assert!(r.status().is_success(), "{txid}: {}", r.status());
        receipts.push(r.json::<Value>().await.expect("json"));
    }
    // The sandbox deployed the logging sample by proposal: app version 1 ran every transaction.
    assert!(receipts.iter().all(|r| r["app_version"]["version"] == 1), "{receipts:?}");
    let service_cert = s.common().join("service_cert.pem");
    let other_cert = std::fs::read_to_string(s.common().join("user0_cert.pem")).expect("a user's certificate");
    let request = json!({
        "receipts": receipts,
        "serviceCert": std::fs::read_to_string(&service_cert).expect("the service certificate"),
        "otherCert": other_cert,
    });
    let verdicts = sdk_cross_check(&ws, &request);
    assert!(verdicts.len() >= receipts.len() * 21, "{} cases", verdicts.len());
    let (mut accepted, mut refused) = (0, 0);
    let file = ws.join("receipt.json");
    for case in &verdicts {
        std::fs::write(&file, case["receipt"].to_string()).expect("write the receipt");
        let (rust_ok, out) =
            consort(&["receipt", "verify", "--service-cert", service_cert.to_str().expect("utf8"), file.to_str().expect("utf8")]);
        let js_ok = case["verdict"] == "ok";
        assert_eq!(js_ok, rust_ok, "{}: the JS verifier says {}, consort receipt verify says {out}", case["name"], case["verdict"]);
        if rust_ok {
            assert!(out.contains("run by app version 1 (bundle digest "), "{out}");
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert_eq!(accepted, receipts.len(), "every genuine receipt, and only those, verifies");
    assert!(refused >= receipts.len() * 20, "{refused} refused (the app_version cases among them)");
}

#[test]
fn the_bundler_refuses_what_a_deploy_refuses_in_the_same_words() {
    let ws = temp_workspace("sdk-bundles");
    let cases = sdk_cross_check(&ws, &json!({"bundles": true}));
    assert!(cases.len() >= 10, "{} cases", cases.len());
    for case in &cases {
        let node = consort_js::Bundle::from_json(case["bundle"].to_string().as_bytes())
            .and_then(|bundle| consort_js::validate_bundle(&bundle))
            .err()
            .map(|e| e.to_string());
        match (node.as_deref(), case["words"].as_str()) {
            (None, None) => {}
            // Past "does not compile: SyntaxError", each describes the syntax error its own way.
            (Some(n), Some(w)) if w.contains("does not compile: SyntaxError") => {
                let head = |s: &str| s[..s.find("SyntaxError").expect("SyntaxError") + "SyntaxError".len()].to_owned();
                assert_eq!(head(n), head(w), "{}", case["name"]);
            }
            (n, w) => assert_eq!(n, w, "{}: the node and the bundler disagree", case["name"]),
        }
    }
}

/// A member's requests signed by the SDK's `memberSigner` (WebCrypto) are the bytes `consort
/// gov`'s signer writes, up to the ECDSA signature (which is randomised), and verify as the
/// node verifies them, on both curves and for messages with and without a proposal id.
#[test]
fn member_requests_signed_in_js_are_the_bytes_consort_gov_signs() {
    use consort_crypto::cose::Sign1;
    use consort_crypto::{Curve, GovMessage, GovSigner};
    let ws = temp_workspace("sdk-gov-signing");
    let mut cases = Vec::new();
    for curve in [Curve::Secp256r1, Curve::Secp384r1] {
        let (key, cert) = consort_crypto::identity_cert("member", curve).expect("identity");
        for (msg_type, proposal_id) in [("proposal", None), ("ballot", Some("7f3e")), ("ack", None)] {
            let payload = format!("{{\"from\": \"{msg_type}\"}}");
            cases.push((key.clone(), cert.clone(), msg_type, proposal_id, payload));
        }
    }
    let request: Vec<Value> = cases
        .iter()
        .map(|(key, cert, msg_type, proposal_id, payload)| {
            json!({"key": key, "cert": cert, "msgType": msg_type, "proposalId": proposal_id, "createdAt": 1_764_000_000u64, "payload": payload})
        })
        .collect();
    let signed = sdk_cross_check(&ws, &json!({"sign": request}));
    assert_eq!(signed.len(), cases.len());
    for ((key, cert, msg_type, proposal_id, payload), js) in cases.iter().zip(&signed) {
        let js = hex::decode(js["cose"].as_str().expect("hex")).expect("hex");
        let rust = GovSigner::from_pem(key, cert)
            .expect("signer")
            .sign(&GovMessage { msg_type, proposal_id: *proposal_id, created_at: 1_764_000_000 }, payload.as_bytes())
            .expect("sign");
        // The signature is the last bytes: r ‖ s, 32 or 48 bytes each.
        let signature = if Sign1::parse(&rust).expect("parse").alg == consort_crypto::cose::ES384 { 96 } else { 64 };
        assert_eq!(js.len(), rust.len(), "{msg_type}");
        assert_eq!(js[..js.len() - signature], rust[..rust.len() - signature], "{msg_type}: all but the signature");
        let parsed = Sign1::parse(&js).expect("the node parses it");
        parsed.verify_with_cert(&consort_crypto::cert_der_from_pem(cert).expect("der")).expect("and it verifies");
        assert_eq!(parsed.payload, payload.as_bytes());
    }
}
