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

/// One node with one JS worker, member0 of `ws` its only member.
fn start_node(ws: &std::path::Path) -> Sandbox {
    let port = Sandbox::free_port();
    Sandbox::start_config(
        ws,
        json!({
            "rpc_address": format!("127.0.0.1:{port}"),
            "node_address": format!("127.0.0.1:{}", Sandbox::free_port()),
            "directory": ws.join("node"),
            "js": {"workers": 1},
            "command": {"type": "start", "members": [{"certificate": ws.join("member0_cert.pem")}]},
        }),
    )
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
    let s = start_node(&ws);
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

    // Refusals in CCF's shape and words: details[0] says why the jwt policy refused.
    let refusals = [
        (None, "Missing authorization header"),
        (Some(token(&signer, "key-1", json!({"iss": issuer, "exp": t - 60}))), "is after token's Expiration Time (exp) claim"),
        (Some(token(&signer, "key-1", json!({"iss": issuer, "exp": t + 300, "nbf": t + 300}))), "is before token's Not Before (nbf) claim"),
        (Some(token(&stranger, "key-1", json!({"iss": issuer, "exp": t + 300}))), "Signature verification failed"),
        (Some(token(&signer, "key-2", json!({"iss": issuer, "exp": t + 300}))), "JWT signing key not found for kid key-2"),
        (Some(token(&signer, "key-1", json!({"iss": "https://other.example", "exp": t + 300}))), "failed issuer constraint validation"),
        (Some(token(&signer, "key-1", json!({"exp": t + 300}))), "JWT payload is missing required field: iss"),
        (Some("garbage".to_owned()), "Malformed JWT: must contain exactly 3 parts"),
    ];
    for (tok, why) in refusals {
        let mut req = anonymous.get(s.url("/app/jwt"));
        if let Some(tok) = tok {
            req = req.bearer_auth(tok);
        }
        let r = req.send().await.expect("jwt");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{why}");
        assert!(r.headers().get("www-authenticate").is_some_and(|h| h.to_str().is_ok_and(|h| h.starts_with("Bearer "))), "{why}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(
            (&body["error"]["code"], &body["error"]["message"]),
            (&json!("InvalidAuthenticationInfo"), &json!("Invalid authentication credentials."))
        );
        let detail = &body["error"]["details"][0];
        assert_eq!(detail["auth_policy"], "jwt", "{body}");
        assert!(detail["message"].as_str().expect("message").contains(why), "{why}: {body}");
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
        (body.clone(), "application/json", "Content type is not set to application/cose"),
        (tampered, "application/cose", "Failed to validate COSE Sign1"),
        (cose(&member_key, &member_id, b"x"), "application/cose", "Signer is not a known user"),
        (cose(&member_key, &user_id, b"x"), "application/cose", "Failed to validate COSE Sign1"),
        (b"not cbor".to_vec(), "application/cose", "not a COSE_Sign1"),
    ];
    for (bytes, content_type, why) in cose_refusals {
        let r = anonymous.post(s.url("/app/cose")).header("content-type", content_type).body(bytes).send().await.expect("cose");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{why}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["details"][0]["auth_policy"], "user_cose_sign1", "{body}");
        assert!(body["error"]["details"][0]["message"].as_str().expect("message").contains(why), "{why}: {body}");
    }

    // remove_jwt_issuer: the issuer's keys are gone, and so is the token's acceptance.
    gov.pass(&[&member0], json!([{"name": "remove_jwt_issuer", "args": {"issuer": issuer}}])).await;
    let r = anonymous.get(s.url("/app/jwt")).bearer_auth(&good).send().await.expect("jwt");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.expect("json");
    assert!(body["error"]["details"][0]["message"].as_str().expect("message").contains("not found for kid key-1"), "{body}");
    drop(s);
    let _ = std::fs::remove_dir_all(&ws);
}

/// A P-256 identity valid from `from` to `to` (years), written as `<name>_cert.pem` and
/// `<name>_privk.pem`.
fn identity_valid(dir: &std::path::Path, name: &str, from: i32, to: i32) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(to, 1, 1);
    let cert = params.self_signed(&key).expect("cert").pem();
    std::fs::write(dir.join(format!("{name}_privk.pem")), key.serialize_pem()).expect("key");
    std::fs::write(dir.join(format!("{name}_cert.pem")), &cert).expect("cert");
    cert
}

/// COSE_Sign1 as a member's governance tooling signs it (`ccf.gov.msg.*` headers), or without
/// those headers when `gov` is false.
fn member_cose(key_pem: &str, kid: &str, payload: &[u8], gov: bool) -> Vec<u8> {
    let der = rcgen::KeyPair::from_pem(key_pem).expect("key").serialize_der();
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der).expect("pkcs8");
    let gov_params = [("ccf.gov.msg.type", Param::Text("proposal".into())), ("ccf.gov.msg.created_at", Param::Int(now() as i128))];
    let params: &[(&str, Param)] = if gov { &gov_params } else { &[] };
    sign1(ES256, kid, params, payload, |tbs| pair.sign(&aws_lc_rs::rand::SystemRandom::new(), tbs).expect("sign").as_ref().to_vec())
        .expect("cose")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_validity_entra_tenants_standard_base64_jwks_and_member_cose() {
    let ws = temp_workspace("auth-validity");
    let (user_key, user_cert) = write_identity(&ws, "user0");
    let (member_key, member_cert) = write_identity(&ws, "member0");
    let (user_id, member_id) = (
        consort_crypto::ParsedCert::from_pem(&user_cert).expect("cert").id(),
        consort_crypto::ParsedCert::from_pem(&member_cert).expect("cert").id(),
    );
    let expired = identity_valid(&ws, "expired", 2020, 2021);
    let future = identity_valid(&ws, "future", 2090, 2099);
    // An Entra multi-tenant key (its JWK names the issuer pattern), and a key published with
    // standard base64 coordinates.
    let entra = "https://login.microsoftonline.com/{tenantid}/v2.0";
    let (entra_signer, mut entra_jwk) = issuer_key("entra-1");
    entra_jwk["issuer"] = json!(entra);
    let (std_signer, mut std_jwk) = issuer_key("std-1");
    for field in ["x", "y"] {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(std_jwk[field].as_str().expect("coordinate")).expect("b64url");
        std_jwk[field] = json!(base64::engine::general_purpose::STANDARD.encode(raw));
    }
    let s = start_node(&ws);
    let service_cert = std::fs::read_to_string(ws.join("node/service_cert.pem")).expect("service cert");
    let actions = vec![
        set_js_app(&repo_root().join("tests/apps/auth")),
        json!({"name": "set_user", "args": {"cert": user_cert}}),
        json!({"name": "set_user", "args": {"cert": expired}}),
        json!({"name": "set_user", "args": {"cert": future}}),
        json!({"name": "set_jwt_issuer", "args": {"issuer": "https://login.microsoftonline.com/common/v2.0", "jwks": {"keys": [entra_jwk]}}}),
        json!({"name": "set_jwt_issuer", "args": {"issuer": "https://std.example", "jwks": {"keys": [std_jwk]}}}),
    ];
    let (gov, member0) = (Gov::new(&s), Member::from_pem(&member_key, &member_cert));
    gov.open_service(&member0, &service_cert, actions).await;

    // Certificates outside their validity period are refused, naming the bound.
    let user = s.client(Some(ws.join("user0").to_str().expect("path")));
    assert_eq!(user.get(s.url("/app/user")).send().await.expect("user").status(), StatusCode::OK);
    for (name, why) in
        [("expired", "is after certificate's Not After validity period"), ("future", "is before certificate's Not Before validity period")]
    {
        let client = s.client(Some(ws.join(name).to_str().expect("path")));
        let r = client.get(s.url("/app/user")).send().await.expect("user");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}");
        let body: Value = r.json().await.expect("json");
        assert!(body["error"]["details"][0]["message"].as_str().is_some_and(|m| m.contains(why)), "{name}: {body}");
    }

    // Entra: the tenant in iss must be the token's tid.
    let anonymous = s.client(None);
    let t = now();
    let jwt_status = async |tok: String| anonymous.get(s.url("/app/jwt")).bearer_auth(tok).send().await.expect("jwt").status();
    let tenant_token = |tid: &str| {
        token(&entra_signer, "entra-1", json!({"iss": "https://login.microsoftonline.com/t1/v2.0", "tid": tid, "exp": t + 300}))
    };
    assert_eq!(jwt_status(tenant_token("t1")).await, StatusCode::OK);
    assert_eq!(jwt_status(tenant_token("t2")).await, StatusCode::UNAUTHORIZED);
    let no_tid = token(&entra_signer, "entra-1", json!({"iss": "https://login.microsoftonline.com/t1/v2.0", "exp": t + 300}));
    assert_eq!(jwt_status(no_tid).await, StatusCode::UNAUTHORIZED);
    // A key stored from standard-base64 coordinates verifies its tokens.
    assert_eq!(jwt_status(token(&std_signer, "std-1", json!({"iss": "https://std.example", "exp": t + 300}))).await, StatusCode::OK);

    // member_cose_sign1: a member's governance-style signature; users and bare signatures refused.
    let post = async |body: Vec<u8>| {
        let r = anonymous.post(s.url("/app/member-cose")).header("content-type", "application/cose").body(body).send().await.expect("cose");
        (r.status(), r.json::<Value>().await.expect("json"))
    };
    let (status, out) = post(member_cose(&member_key, &member_id, b"member says", true)).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        (&out["caller"]["policy"], &out["caller"]["id"], &out["content"]),
        (&json!("member_cose_sign1"), &json!(member_id), &json!("member says"))
    );
    for (body, why) in [
        (member_cose(&user_key, &user_id, b"x", true), "Signer is not a known member"),
        (member_cose(&member_key, &member_id, b"x", false), "Missing ccf.gov.msg.type"),
    ] {
        let (status, out) = post(body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}");
        assert!(out["error"]["details"][0]["message"].as_str().is_some_and(|m| m.contains(why)), "{why}: {out}");
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&ws);
}
