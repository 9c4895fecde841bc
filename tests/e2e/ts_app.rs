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
    for _ in 0..1200 {
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
    for _ in 0..1200 {
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

/// POST `body` (JSON) to `/app/<path>` as `client`; status and body bytes.
async fn post_raw(client: &reqwest::Client, s: &Sandbox, path: &str, body: Value) -> (StatusCode, Vec<u8>) {
    let r = client.post(s.url(&format!("/app/{path}"))).json(&body).send().await.expect("post");
    (r.status(), r.bytes().await.expect("body").to_vec())
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| panic!("JSON, got {}", String::from_utf8_lossy(bytes)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_npm_app_bundling_jsrsasign_calls_every_ccf_crypto_function() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let dist = repo_root().join("tests/apps/npm-crypto/dist");
    assert!(dist.join("bundle.json").exists(), "build the app first: make ts-sample (make test does)");
    let ws = temp_workspace("npm-crypto");
    let s = Sandbox::start(&ws, Some(&dist));
    let user = s.client(Some("user0"));

    // jsrsasign loads (it needs Annex B's String.prototype.substr) and works.
    let r = user.get(s.url("/app/crypto")).send().await.expect("crypto");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["available"], true, "{body}");
    assert_eq!(body["version"], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "jsrsasign's SHA-256 of abc");

    // Key generation, as CCF's npm test checks it.
    let (status, key) = post_raw(&user, &s, "generateAesKey", json!({"size": 256})).await;
    assert_eq!((status, key.len()), (StatusCode::OK, 32));
    assert_ne!(key, vec![0u8; 32]);
    for (path, args) in [
        ("generateRsaKeyPair", json!({"size": 2048})),
        ("generateEcdsaKeyPair", json!({"curve": "secp256r1"})),
        ("generateEcdsaKeyPair", json!({"curve": "secp384r1"})),
        ("generateEddsaKeyPair", json!({"curve": "curve25519"})),
        ("generateEddsaKeyPair", json!({"curve": "x25519"})),
    ] {
        let (status, pair) = post_raw(&user, &s, path, args.clone()).await;
        assert_eq!(status, StatusCode::OK, "{path} {args}");
        let pair = json_of(&pair);
        assert!(pair["privateKey"].as_str().is_some_and(|k| k.starts_with("-----BEGIN PRIVATE KEY-----")), "{path}: {pair}");
        assert!(pair["publicKey"].as_str().is_some_and(|k| k.starts_with("-----BEGIN PUBLIC KEY-----")), "{path}: {pair}");
    }

    // Wrapping: RSA-OAEP, AES-KWP and RSA-OAEP-AES-KWP round trips with keys the app made.
    let (_, rsa) = post_raw(&user, &s, "generateRsaKeyPair", json!({"size": 2048})).await;
    let rsa = json_of(&rsa);
    let (private, public) = (rsa["privateKey"].as_str().expect("private"), rsa["publicKey"].as_str().expect("public"));
    let (_, aes) = post_raw(&user, &s, "generateAesKey", json!({"size": 256})).await;
    let secret = b"thirty-two bytes of key material";
    let label = b64(b"label42");
    for (wrapping, unwrapping, algo) in [
        (b64(public.as_bytes()), b64(private.as_bytes()), json!({"name": "RSA-OAEP", "label": label})),
        (b64(&aes), b64(&aes), json!({"name": "AES-KWP"})),
        (b64(public.as_bytes()), b64(private.as_bytes()), json!({"name": "RSA-OAEP-AES-KWP", "aesKeySize": 256, "label": label})),
    ] {
        let (status, wrapped) =
            post_raw(&user, &s, "wrapKey", json!({"key": b64(secret), "wrappingKey": wrapping, "wrapAlgo": algo})).await;
        assert_eq!(status, StatusCode::OK, "{algo}");
        let (status, unwrapped) =
            post_raw(&user, &s, "unwrapKey", json!({"key": b64(&wrapped), "unwrappingKey": unwrapping, "wrapAlgo": algo})).await;
        assert_eq!((status, unwrapped.as_slice()), (StatusCode::OK, secret.as_slice()), "{algo}");
    }

    // Signing and verification: RSA-PSS, ECDSA (P1363), EdDSA and HMAC, each verified by the app.
    let data = b"data to sign";
    let (_, ec) = post_raw(&user, &s, "generateEcdsaKeyPair", json!({"curve": "secp256r1"})).await;
    let (_, ed) = post_raw(&user, &s, "generateEddsaKeyPair", json!({"curve": "curve25519"})).await;
    let (ec, ed) = (json_of(&ec), json_of(&ed));
    for (algorithm, private, public) in [
        (json!({"name": "RSA-PSS", "hash": "SHA-256", "saltLength": 32}), rsa["privateKey"].clone(), rsa["publicKey"].clone()),
        (json!({"name": "ECDSA", "hash": "SHA-256"}), ec["privateKey"].clone(), ec["publicKey"].clone()),
        (json!({"name": "EdDSA"}), ed["privateKey"].clone(), ed["publicKey"].clone()),
    ] {
        let (status, signature) = post_raw(&user, &s, "sign", json!({"algorithm": algorithm, "key": private, "data": b64(data)})).await;
        assert_eq!(status, StatusCode::OK, "{algorithm}");
        let verify = |d: &[u8]| json!({"algorithm": algorithm, "key": public, "signature": b64(&signature), "data": b64(d)});
        assert_eq!(json_of(&post_raw(&user, &s, "verifySignature", verify(data)).await.1), json!(true), "{algorithm}");
        assert_eq!(json_of(&post_raw(&user, &s, "verifySignature", verify(b"other data")).await.1), json!(false), "{algorithm}");
    }
    // ECDSA signatures are P1363 (r || s), checked here outside the JS host.
    let (_, signature) =
        post_raw(&user, &s, "sign", json!({"algorithm": {"name": "ECDSA", "hash": "SHA-256"}, "key": ec["privateKey"], "data": b64(data)}))
            .await;
    {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
        let key = p256::ecdsa::VerifyingKey::from_public_key_pem(ec["publicKey"].as_str().expect("pem")).expect("key");
        key.verify(data, &p256::ecdsa::Signature::from_slice(&signature).expect("64 bytes")).expect("verifies");
    }
    let (status, mac) = post_raw(&user, &s, "sign", json!({"algorithm": {"name": "HMAC", "hash": "SHA-256"}, "key": "key", "data": b64(b"The quick brown fox jumps over the lazy dog")})).await;
    assert_eq!((status, hex::encode(mac)), (StatusCode::OK, "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8".to_owned()));
    let (_, sha) = post_raw(&user, &s, "digest", json!({"algorithm": "SHA-256", "data": b64(b"abc")})).await;
    // A string body is text, as SPEC's body rules say.
    assert_eq!(String::from_utf8_lossy(&sha), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    // Certificates: bundles and chains (a trusted certificate that is not a CA anchors nothing).
    let service_cert = std::fs::read_to_string(s.common().join("service_cert.pem")).expect("service cert");
    let user_cert = std::fs::read_to_string(s.common().join("user0_cert.pem")).expect("user cert");
    let r = user.post(s.url("/app/isValidX509CertBundle")).body(service_cert.clone()).send().await.expect("bundle");
    assert_eq!(r.json::<Value>().await.expect("json"), json!(true));
    let r = user.post(s.url("/app/isValidX509CertBundle")).body("garbage").send().await.expect("bundle");
    assert_eq!(r.json::<Value>().await.expect("json"), json!(false));
    let chain = |c: &str, t: &str| json!({"chain": c, "trusted": t});
    assert_eq!(json_of(&post_raw(&user, &s, "isValidX509CertChain", chain(&service_cert, &service_cert)).await.1), json!(true));
    assert_eq!(json_of(&post_raw(&user, &s, "isValidX509CertChain", chain(&user_cert, &user_cert)).await.1), json!(false));

    // The twelve PEM/JWK converters, both ways, for each key type; a bad PEM is an error.
    for (pair, to_pub, to_priv, from_pub, from_priv) in [
        (&ec, "pubPemToJwk", "pemToJwk", "pubJwkToPem", "jwkToPem"),
        (&rsa, "pubRsaPemToJwk", "rsaPemToJwk", "pubRsaJwkToPem", "rsaJwkToPem"),
        (&ed, "pubEddsaPemToJwk", "eddsaPemToJwk", "pubEddsaJwkToPem", "eddsaJwkToPem"),
    ] {
        let (status, jwk) = post_raw(&user, &s, &format!("convert/{to_pub}"), json!({"pem": pair["publicKey"], "kid": "k1"})).await;
        let jwk = json_of(&jwk);
        assert_eq!((status, &jwk["kid"]), (StatusCode::OK, &json!("k1")), "{to_pub}: {jwk}");
        let (_, pem) = post_raw(&user, &s, &format!("convert/{from_pub}"), json!({"jwk": jwk})).await;
        assert_eq!(json!(String::from_utf8_lossy(&pem)), pair["publicKey"], "{from_pub}");
        let (_, jwk) = post_raw(&user, &s, &format!("convert/{to_priv}"), json!({"pem": pair["privateKey"]})).await;
        let (_, pem) = post_raw(&user, &s, &format!("convert/{from_priv}"), json!({"jwk": json_of(&jwk)})).await;
        assert_eq!(json!(String::from_utf8_lossy(&pem)), pair["privateKey"], "{from_priv}");
    }
    let (status, _) = post_raw(&user, &s, "convert/pubPemToJwk", json!({"pem": "invalid_pem"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // jsrsasign and ccf.crypto agree: jsrsasign verifies what ccf.crypto signed, both compute
    // the same HMAC, and jsrsasign reads keys and certificates ccf.crypto and the service made.
    let (status, cross) = post_raw(&user, &s, "crossCheck", json!({"certificate": service_cert})).await;
    let cross = json_of(&cross);
    assert_eq!(status, StatusCode::OK, "{cross}");
    assert_eq!(
        (&cross["jsrsasignVerifies"], &cross["sameHmac"], &cross["curve"]),
        (&json!(true), &json!(true), &json!("secp256r1")),
        "{cross}"
    );
    assert!(cross["subject"].as_str().is_some_and(|s| s.contains("CN=")), "{cross}");
}

/// npm libraries that need the Web APIs (`nanoid` and `uuid` call `crypto.getRandomValues` and
/// `crypto.randomUUID`, `@noble/hashes` `TextEncoder`), bundled as published, work on a node:
/// the deterministic answers are those Node.js gives for the same bundle, the random ones are
/// well formed and differ between calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_libraries_that_need_the_web_apis_work_on_a_node() {
    let dist = repo_root().join("tests/apps/web-apis/dist");
    assert!(dist.join("bundle.json").exists(), "build the app first: make ts-sample (make test does)");
    let ws = temp_workspace("web-apis");
    let s = Sandbox::start(&ws, Some(&dist));
    let user = s.client(Some("user0"));
    let mut answers = Vec::new();
    for _ in 0..2 {
        let r = user.get(s.url("/app/ids?text=h%C3%A9llo+w%C3%B6rld")).send().await.expect("ids");
        assert_eq!(r.status(), StatusCode::OK);
        answers.push(r.json::<Value>().await.expect("json"));
    }
    let a = &answers[0];
    // What Node.js 20 answers for the same bundle and text.
    assert_eq!(a["uuid5"], "4ab80968-3866-5d37-b918-24f91c0e3485", "{a}");
    assert_eq!(a["sha256"], "a1003f7d04a4115711d0b48a2eaf1359ce565d2d2a6fd65098dfcffadeeef59f", "{a}");
    assert_eq!(a["blake3"], blake3::hash("héllo wörld".as_bytes()).to_hex().as_str(), "{a}");
    assert_eq!(a["roundTrip"], "héllo wörld");
    assert_eq!(a["base64"], "aMOpbGxvIHfDtnJsZA==");
    assert_eq!(a["cloned"], "1970-01-01T00:00:00.000Z");
    let shaped = |v: &Value, len: usize, ok: fn(char) -> bool| v.as_str().is_some_and(|s| s.len() == len && s.chars().all(ok));
    let uuid = |v: &Value, version: char| {
        let s = v.as_str().unwrap_or_default();
        let groups: Vec<&str> = s.split('-').collect();
        groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
            && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
            && groups[2].starts_with(version)
    };
    for answer in &answers {
        assert!(shaped(&answer["nanoid"], 21, |c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{answer}");
        assert!(shaped(&answer["digits"], 12, |c| c.is_ascii_digit()), "{answer}");
        assert!(shaped(&answer["random"], 32, |c| c.is_ascii_hexdigit()), "{answer}");
        assert!(uuid(&answer["uuid4"], '4') && uuid(&answer["uuid7"], '7'), "{answer}");
    }
    for random in ["nanoid", "uuid4", "random"] {
        assert_ne!(answers[0][random], answers[1][random], "{random} repeats between calls");
    }
}
