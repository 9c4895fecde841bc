//! The `jwt` and `user_cose_sign1` policies (and their mixes with `user_cert`) against a real
//! node: each accepts what it should, and a refusal is a 401 naming what was missing or wrong.

use base64::Engine;
use consort_crypto::cose::{sign1, Param, ES256};
use consort_tests::{repo_root, set_js_app, temp_workspace, Gov, Member, Sandbox};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A P-256 issuer key as (signing key, public JWK).
fn issuer_key(kid: &str) -> (EncodingKey, Value) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let point = &spki[spki.len() - 64..];
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    (
        EncodingKey::from_ec_der(&key.serialize_der()),
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&point[..32]), "y": b64(&point[32..])}),
    )
}

fn token(key: &EncodingKey, kid: &str, claims: Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    encode(&header, &claims, key).expect("token")
}

fn write_identity(dir: &std::path::Path, name: &str) -> (String, String) {
    let (key, cert) = consort_crypto::identity_cert(name, consort_crypto::Curve::Secp256r1).expect("identity");
    std::fs::write(dir.join(format!("{name}_privk.pem")), &key).expect("key");
    std::fs::write(dir.join(format!("{name}_cert.pem")), &cert).expect("cert");
    (key, cert)
}

/// COSE_Sign1 over `payload` by the holder of `key_pem`, naming `kid`.
fn cose(key_pem: &str, kid: &str, payload: &[u8]) -> Vec<u8> {
    let der = rcgen::KeyPair::from_pem(key_pem).expect("key").serialize_der();
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der).expect("pkcs8");
    let params = [("ccf.msg.created_at", Param::Int(now() as i128))];
    sign1(ES256, kid, &params, payload, |tbs| pair.sign(&aws_lc_rs::rand::SystemRandom::new(), tbs).expect("sign").as_ref().to_vec())
        .expect("cose")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_and_cose_policies_accept_and_refuse_with_reasons() {
    let ws = temp_workspace("auth-policies");
    let (user_key, user_cert) = write_identity(&ws, "user0");
    let (member_key, member_cert) = write_identity(&ws, "member0");
    let user_id = consort_crypto::ParsedCert::from_pem(&user_cert).expect("cert").id();
    let member_id = consort_crypto::ParsedCert::from_pem(&member_cert).expect("cert").id();
    let (signer, jwk) = issuer_key("key-1");
    let (stranger, _) = issuer_key("key-1");
    let issuer = "https://issuer.example";
    let port = Sandbox::free_port();
    let s = Sandbox::start_config(
        &ws,
        json!({
            "rpc_address": format!("127.0.0.1:{port}"),
            "node_address": format!("127.0.0.1:{}", Sandbox::free_port()),
            "directory": ws.join("node"),
            "js": {"workers": 1},
            "command": {"type": "start", "members": [{"certificate": ws.join("member0_cert.pem")}]},
        }),
    );
    // The app, the user and the JWT issuer come by governance (member0 signs with ES256: P-256).
    let service_cert = std::fs::read_to_string(ws.join("node/service_cert.pem")).expect("service cert");
    let actions = vec![
        set_js_app(&repo_root().join("tests/apps/auth")),
        json!({"name": "set_user", "args": {"cert": user_cert, "user_data": {"role": "reader"}}}),
        json!({"name": "set_jwt_issuer", "args": {"issuer": issuer, "jwks": {"keys": [jwk]}}}),
    ];
    let (gov, member0) = (Gov::new(&s), Member::from_pem(&member_key, &member_cert));
    gov.open_service(&member0, &service_cert, actions).await;
    // What governance set, as CCF's /gov/service views show it.
    let users = gov.get("/service/users").await;
    assert_eq!(users["value"][0]["userId"], json!(user_id), "{users}");
    let one = gov.get(&format!("/service/users/{user_id}")).await;
    assert_eq!((&one["certificate"], &one["userData"]), (&json!(user_cert), &json!({"user_data": {"role": "reader"}})), "{one}");
    let missing = gov.client.get(gov.url(&format!("/service/users/{}", "0".repeat(64)))).send().await.expect("get");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let jwk = gov.get("/service/jwk").await;
    assert_eq!(jwk["issuers"][issuer]["autoRefresh"], json!(false), "{jwk}");
    let key = &jwk["keys"]["key-1"][0];
    assert_eq!(key["issuer"], json!(issuer), "{jwk}");
    assert!(key["publicKey"].as_str().is_some_and(|p| p.starts_with("-----BEGIN PUBLIC KEY-----")), "{jwk}");
    let modules = gov.get("/service/javascript-modules").await;
    let name = modules["value"][0]["moduleName"].as_str().expect("a module").to_owned();
    let source =
        gov.client.get(gov.url(&format!("/service/javascript-modules/{}", name.trim_start_matches('/')))).send().await.expect("get");
    assert_eq!(source.status(), StatusCode::OK);
    assert_eq!(gov.get("/service/js-modules").await, modules, "the older name answers the same");
    let js_app = gov.get("/service/javascript-app").await;
    assert_eq!(js_app["endpoints"]["/jwt"]["GET"]["jsFunction"], "whoami", "CCF's view: upper-case verbs, camelCase: {js_app}");
    let get = async |query: &str| {
        let r = gov.client.get(format!("{}&{query}", gov.url("/service/javascript-app"))).send().await.expect("get");
        (r.status(), r.json::<Value>().await.expect("json"))
    };
    let (status, original) = get("case=original").await;
    assert_eq!((status, &original["endpoints"]["/jwt"]["GET"]["js_function"]), (StatusCode::OK, &json!("whoami")), "{original}");
    let (status, refused) = get("case=camel").await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("InvalidQueryParameterValue")));

    let anonymous = s.client(None);
    let user = s.client(Some(ws.join("user0").to_str().expect("path")));
    let t = now();
    let good = token(&signer, "key-1", json!({"iss": issuer, "sub": "alice", "exp": t + 300, "nbf": t - 5}));

    // jwt: the caller carries the key's issuer, the token's header and payload.
    let r = anonymous.get(s.url("/app/jwt")).bearer_auth(&good).send().await.expect("jwt");
    assert_eq!(r.status(), StatusCode::OK);
    let caller: Value = r.json().await.expect("json");
    assert_eq!(caller["policy"], "jwt");
    assert_eq!(caller["jwt"]["keyIssuer"], issuer);
    assert_eq!((&caller["jwt"]["header"]["kid"], &caller["jwt"]["payload"]["sub"]), (&json!("key-1"), &json!("alice")));

    let refusals = [
        (None, "no \"Authorization: Bearer <token>\" header"),
        (Some(token(&signer, "key-1", json!({"iss": issuer, "exp": t - 60}))), "expired"),
        (Some(token(&signer, "key-1", json!({"iss": issuer, "exp": t + 300, "nbf": t + 300}))), "not valid yet"),
        (Some(token(&stranger, "key-1", json!({"iss": issuer, "exp": t + 300}))), "signature verification failed"),
        (Some(token(&signer, "key-2", json!({"iss": issuer, "exp": t + 300}))), "not found for kid key-2"),
        (Some(token(&signer, "key-1", json!({"iss": "https://other.example", "exp": t + 300}))), "issuer"),
        (Some("garbage".to_owned()), "malformed JWT"),
    ];
    for (tok, why) in refusals {
        let mut req = anonymous.get(s.url("/app/jwt"));
        if let Some(tok) = tok {
            req = req.bearer_auth(tok);
        }
        let r = req.send().await.expect("jwt");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{why}");
        let body: Value = r.json().await.expect("json");
        assert!(body["error"]["message"].as_str().expect("message").contains(why), "{why}: {body}");
    }

    // First success wins; all_of needs both.
    let either: Value = user.get(s.url("/app/either")).send().await.expect("either").json().await.expect("json");
    assert_eq!((&either["policy"], &either["id"], &either["data"]), (&json!("user_cert"), &json!(user_id), &json!({"role": "reader"})));
    let either: Value = anonymous.get(s.url("/app/either")).bearer_auth(&good).send().await.expect("either").json().await.expect("json");
    assert_eq!(either["policy"], "jwt");
    let r = user.get(s.url("/app/both")).send().await.expect("both");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "all_of without a token");
    let both: Value = user.get(s.url("/app/both")).bearer_auth(&good).send().await.expect("both").json().await.expect("json");
    assert_eq!(both["policy"], json!(["user_cert", "jwt"]));
    assert_eq!((&both["user_cert"]["id"], &both["jwt"]["jwt"]["payload"]["sub"]), (&json!(user_id), &json!("alice")));

    // user_cose_sign1: the signed content reaches the handler as an ArrayBuffer.
    let body = cose(&user_key, &user_id, b"signed hello");
    let r = anonymous.post(s.url("/app/cose")).header("content-type", "application/cose").body(body.clone()).send().await.expect("cose");
    assert_eq!(r.status(), StatusCode::OK);
    let out: Value = r.json().await.expect("json");
    assert_eq!(out["caller"]["policy"], "user_cose_sign1");
    assert_eq!((&out["caller"]["id"], &out["caller"]["data"]), (&json!(user_id), &json!({"role": "reader"})));
    assert_eq!((&out["contentIsArrayBuffer"], &out["content"]), (&json!(true), &json!("signed hello")));
    assert_eq!(out["bodyBytes"], body.len());

    let mut tampered = body.clone();
    let at = tampered.windows(12).position(|w| w == b"signed hello").expect("payload");
    tampered[at] = b'S';
    let cose_refusals = [
        (body.clone(), "application/json", "not application/cose"),
        (tampered, "application/cose", "does not verify"),
        (cose(&member_key, &member_id, b"x"), "application/cose", "is not a registered user"),
        (cose(&member_key, &user_id, b"x"), "application/cose", "does not verify"),
        (b"not cbor".to_vec(), "application/cose", "not a COSE_Sign1"),
    ];
    for (bytes, content_type, why) in cose_refusals {
        let r = anonymous.post(s.url("/app/cose")).header("content-type", content_type).body(bytes).send().await.expect("cose");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{why}");
        let body: Value = r.json().await.expect("json");
        assert!(body["error"]["message"].as_str().expect("message").contains(why), "{why}: {body}");
    }

    // remove_jwt_issuer: the issuer's keys are gone, and so is the token's acceptance.
    gov.pass(&[&member0], json!([{"name": "remove_jwt_issuer", "args": {"issuer": issuer}}])).await;
    let r = anonymous.get(s.url("/app/jwt")).bearer_auth(&good).send().await.expect("jwt");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.expect("json");
    assert!(body["error"]["message"].as_str().expect("message").contains("not found for kid key-1"), "{body}");
    drop(s);
    let _ = std::fs::remove_dir_all(&ws);
}
