//! Known-answer vectors (RFC 8032, RFC 5649), round trips and refusals of `ccf.crypto`.
#![allow(clippy::unwrap_used)] // a panic is the failure report here

use super::*;
use base64::Engine;
use serde_json::json;

fn run(op: &str, params: Value, bufs: &[&[u8]]) -> Result<Out, CryptoFailure> {
    call(op, &params, &bufs.iter().map(|b| b.to_vec()).collect::<Vec<_>>())
}

fn bytes(op: &str, params: Value, bufs: &[&[u8]]) -> Vec<u8> {
    match run(op, params, bufs) {
        Ok(Out::Bytes(b)) => b,
        other => panic!("{op}: {other:?}"),
    }
}

fn boolean(op: &str, params: Value, bufs: &[&[u8]]) -> bool {
    match run(op, params, bufs) {
        Ok(Out::Bool(b)) => b,
        other => panic!("{op}: {other:?}"),
    }
}

fn text(op: &str, params: Value) -> String {
    match run(op, params, &[]) {
        Ok(Out::Text(t)) => t,
        other => panic!("{op}: {other:?}"),
    }
}

fn json_of(op: &str, params: Value) -> Value {
    match run(op, params, &[]) {
        Ok(Out::Json(v)) => v,
        other => panic!("{op}: {other:?}"),
    }
}

fn pair(op: &str, params: Value) -> (String, String) {
    let v = json_of(op, params);
    (v["privateKey"].as_str().unwrap().to_owned(), v["publicKey"].as_str().unwrap().to_owned())
}

fn error_text(r: Result<Out, CryptoFailure>) -> String {
    match r {
        Err(CryptoFailure::Range(m)) => format!("range: {m}"),
        Err(CryptoFailure::Error(m)) => format!("error: {m}"),
        Ok(o) => panic!("expected an error, got {o:?}"),
    }
}

fn sign_verify(algorithm: Value, private: &str, public: &str) {
    let data = b"the quick brown fox";
    let sig = bytes("sign", json!({ "algorithm": algorithm, "key": private }), &[data]);
    assert!(boolean("verifySignature", json!({ "algorithm": algorithm, "key": public }), &[&sig, data]), "{algorithm}");
    assert!(!boolean("verifySignature", json!({ "algorithm": algorithm, "key": public }), &[&sig, b"the quick brown cat"]));
    let mut bad = sig.clone();
    bad[3] ^= 1;
    assert!(!boolean("verifySignature", json!({ "algorithm": algorithm, "key": public }), &[&bad, data]));
}

#[test]
fn ecdsa_eddsa_and_rsa_pss_round_trip_and_reject_tampering() {
    for curve in ["secp256r1", "secp384r1"] {
        let (private, public) = pair("generateEcdsaKeyPair", json!({ "curve": curve }));
        sign_verify(json!({"name": "ECDSA", "hash": "SHA-256"}), &private, &public);
    }
    let (private, public) = pair("generateEddsaKeyPair", json!({ "curve": "curve25519" }));
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n") && public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    sign_verify(json!({"name": "EdDSA"}), &private, &public);
    let (private, public) = pair("generateRsaKeyPair", json!({ "size": 2048 }));
    for salt in [json!(null), json!(0), json!(32)] {
        sign_verify(json!({"name": "RSA-PSS", "hash": "SHA-256", "saltLength": salt}), &private, &public);
    }
    // A signature made with one salt length does not verify with another.
    let sig = bytes("sign", json!({ "algorithm": {"name": "RSA-PSS", "hash": "SHA-256", "saltLength": 32}, "key": private }), &[b"x"]);
    assert!(!boolean(
        "verifySignature",
        json!({ "algorithm": {"name": "RSA-PSS", "hash": "SHA-256", "saltLength": 0}, "key": public }),
        &[&sig, b"x"]
    ));
}

#[test]
fn ed25519_matches_rfc8032_test_1() {
    let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
    let jwk = json!({ "kty": "OKP", "crv": "Ed25519",
        "d": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&seed),
        "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").unwrap()) });
    let private = text("eddsaJwkToPem", json!({ "jwk": jwk }));
    let sig = bytes("sign", json!({ "algorithm": {"name": "EdDSA"}, "key": private }), &[b""]);
    assert_eq!(
        hex::encode(sig),
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    );
    use base64::Engine;
}

#[test]
fn key_wrapping_round_trips_and_refuses_wrong_keys() {
    let (private, public) = pair("generateRsaKeyPair", json!({ "size": 2048 }));
    let secret = b"a 32-byte secret for the vault!!";
    let label = b"label".as_slice();
    for (name, extra) in [("RSA-OAEP", json!({})), ("RSA-OAEP-AES-KWP", json!({"aesKeySize": 256}))] {
        let mut algorithm = json!({ "name": name });
        if let Some(size) = extra.get("aesKeySize") {
            algorithm["aesKeySize"] = size.clone();
        }
        let wrapped = bytes("wrapKey", json!({ "algorithm": algorithm }), &[secret, public.as_bytes(), label]);
        assert_ne!(wrapped.as_slice(), secret.as_slice());
        assert_eq!(bytes("unwrapKey", json!({ "algorithm": algorithm }), &[&wrapped, private.as_bytes(), label]), secret, "{name}");
        let wrong_label = error_text(run("unwrapKey", json!({ "algorithm": algorithm }), &[&wrapped, private.as_bytes(), b"other"]));
        assert!(wrong_label.contains("Failed to unwrap key"), "{wrong_label}");
    }
    // RSA-OAEP-AES-KWP wraps more than one RSA block can hold.
    let big = vec![7u8; 1000];
    let algorithm = json!({ "name": "RSA-OAEP-AES-KWP", "aesKeySize": 128 });
    let wrapped = bytes("wrapKey", json!({ "algorithm": algorithm }), &[&big, public.as_bytes()]);
    assert_eq!(bytes("unwrapKey", json!({ "algorithm": algorithm }), &[&wrapped, private.as_bytes()]), big);
    let too_big = error_text(run("wrapKey", json!({ "algorithm": {"name": "RSA-OAEP"} }), &[&big, public.as_bytes()]));
    assert!(too_big.contains("wraps at most"), "{too_big}");
    assert!(error_text(run("wrapKey", json!({ "algorithm": {"name": "DES"} }), &[secret, public.as_bytes()])).starts_with("range:"));
}

#[test]
fn aes_kwp_matches_rfc5649() {
    let kek = hex::decode("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8").unwrap();
    let key = hex::decode("c37b7e6492584340bed12207808941155068f738").unwrap();
    let algorithm = json!({ "algorithm": {"name": "AES-KWP"} });
    let wrapped = bytes("wrapKey", algorithm.clone(), &[&key, &kek]);
    assert_eq!(hex::encode(&wrapped), "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a");
    assert_eq!(bytes("unwrapKey", algorithm.clone(), &[&wrapped, &kek]), key);
    let mut bad = wrapped.clone();
    bad[0] ^= 1;
    assert!(error_text(run("unwrapKey", algorithm.clone(), &[&bad, &kek])).contains("AES-KWP unwrapping failed"));
    assert!(error_text(run("wrapKey", algorithm, &[&key, b"short"])).contains("not 16, 24 or 32"));
}

#[test]
fn pem_and_jwk_convert_both_ways_for_every_key_type() {
    let cases = [
        ("generateEcdsaKeyPair", json!({"curve": "secp256r1"}), "pubPemToJwk", "pemToJwk", "pubJwkToPem", "jwkToPem"),
        ("generateEcdsaKeyPair", json!({"curve": "secp384r1"}), "pubPemToJwk", "pemToJwk", "pubJwkToPem", "jwkToPem"),
        ("generateRsaKeyPair", json!({"size": 2048}), "pubRsaPemToJwk", "rsaPemToJwk", "pubRsaJwkToPem", "rsaJwkToPem"),
        ("generateEddsaKeyPair", json!({"curve": "curve25519"}), "pubEddsaPemToJwk", "eddsaPemToJwk", "pubEddsaJwkToPem", "eddsaJwkToPem"),
        ("generateEddsaKeyPair", json!({"curve": "x25519"}), "pubEddsaPemToJwk", "eddsaPemToJwk", "pubEddsaJwkToPem", "eddsaJwkToPem"),
    ];
    for (generate, params, pub_to_jwk, to_jwk, pub_to_pem, to_pem) in cases {
        let (private, public) = pair(generate, params.clone());
        let public_jwk = json_of(pub_to_jwk, json!({ "pem": public, "kid": "k1" }));
        assert_eq!(public_jwk["kid"], "k1");
        assert!(public_jwk.get("d").is_none(), "{public_jwk}");
        assert_eq!(text(pub_to_pem, json!({ "jwk": public_jwk })), public, "{generate} {params}");
        let private_jwk = json_of(to_jwk, json!({ "pem": private }));
        assert!(private_jwk.get("kid").is_none() && private_jwk.get("d").is_some());
        // The private JWK's public part is the public JWK.
        for (k, v) in public_jwk.as_object().unwrap().iter().filter(|(k, _)| *k != "kid") {
            assert_eq!(&private_jwk[k], v, "{generate} {k}");
        }
        let again = text(to_pem, json!({ "jwk": private_jwk }));
        assert_eq!(json_of(to_jwk, json!({ "pem": again })), private_jwk);
    }
    // Standard base64 (padded, with + and /) in n, e, x, y reads as the base64url it stands for.
    for (generate, params, pub_to_jwk, pub_to_pem) in [
        ("generateRsaKeyPair", json!({"size": 2048}), "pubRsaPemToJwk", "pubRsaJwkToPem"),
        ("generateEcdsaKeyPair", json!({"curve": "secp384r1"}), "pubPemToJwk", "pubJwkToPem"),
    ] {
        let (_, public) = pair(generate, params);
        let mut jwk = json_of(pub_to_jwk, json!({ "pem": public }));
        for field in ["n", "e", "x", "y"] {
            if let Some(v) = jwk[field].as_str() {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(v).expect("base64url");
                jwk[field] = json!(base64::engine::general_purpose::STANDARD.encode(raw));
            }
        }
        assert_eq!(text(pub_to_pem, json!({ "jwk": jwk })), public, "{generate}");
    }
    // An EC JWK whose d does not belong to x, y is refused; so is a wrong kty.
    let (a, _) = pair("generateEcdsaKeyPair", json!({"curve": "secp256r1"}));
    let (_, b) = pair("generateEcdsaKeyPair", json!({"curve": "secp256r1"}));
    let mut mixed = json_of("pemToJwk", json!({ "pem": a }));
    let other = json_of("pubPemToJwk", json!({ "pem": b }));
    mixed["x"] = other["x"].clone();
    mixed["y"] = other["y"].clone();
    assert!(error_text(run("jwkToPem", json!({ "jwk": mixed }), &[])).contains("d does not match"));
    assert!(error_text(run("pubRsaJwkToPem", json!({ "jwk": other }), &[])).contains("expected \"RSA\""));
    assert!(error_text(run("pubPemToJwk", json!({ "pem": "not pem" }), &[])).contains("Failed to convert pem to jwk"));
}

fn ca(
    name: &str,
    issuer: Option<(&rcgen::Certificate, &rcgen::KeyPair)>,
    is_ca: bool,
    expired: bool,
) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    if is_ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let cert = match issuer {
        Some((c, k)) => params.signed_by(&key, &rcgen::Issuer::from_ca_cert_der(c.der(), k).unwrap()).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    (cert, key)
}

#[test]
fn certificate_chains_are_checked_to_a_trusted_root() {
    let (root, root_key) = ca("root", None, true, false);
    let (mid, mid_key) = ca("intermediate", Some((&root, &root_key)), true, false);
    let (leaf, _) = ca("leaf", Some((&mid, &mid_key)), false, false);
    let (other_root, _) = ca("other", None, true, false);
    let (expired, _) = ca("expired leaf", Some((&mid, &mid_key)), false, true);
    let (not_ca, not_ca_key) = ca("not a CA", Some((&root, &root_key)), false, false);
    let (under_not_ca, _) = ca("under a non-CA", Some((&not_ca, &not_ca_key)), false, false);
    let valid = |chain: &[&rcgen::Certificate], trusted: &[&rcgen::Certificate]| {
        let join = |cs: &[&rcgen::Certificate]| cs.iter().map(|c| c.pem()).collect::<String>();
        boolean("isValidX509CertChain", json!({ "chain": join(chain), "trusted": join(trusted) }), &[])
    };
    assert!(valid(&[&leaf, &mid], &[&root]));
    assert!(valid(&[&mid], &[&root]));
    assert!(valid(&[&root], &[&root]), "a trusted CA certificate is valid by itself");
    assert!(valid(&[&mid], &[&mid]), "so is a trusted intermediate CA");
    assert!(!valid(&[&leaf], &[&leaf]), "a trusted certificate that is not a CA is no anchor (CCF's npm test)");
    assert!(valid(&[&leaf], &[&mid]), "an intermediate may be trusted directly");
    assert!(!valid(&[&leaf], &[&root]), "intermediate missing");
    assert!(!valid(&[&leaf, &mid], &[&other_root]));
    assert!(!valid(&[&expired, &mid], &[&root]));
    assert!(!valid(&[&under_not_ca, &not_ca], &[&root]), "a non-CA cannot issue");
    assert!(!valid(&[], &[&root]));
    assert!(boolean("isValidX509CertBundle", json!({ "pem": format!("{}{}", leaf.pem(), root.pem()) }), &[]));
    assert!(!boolean("isValidX509CertBundle", json!({ "pem": "garbage" }), &[]));
    let (_, public) = pair("generateEcdsaKeyPair", json!({"curve": "secp256r1"}));
    assert!(!boolean("isValidX509CertBundle", json!({ "pem": public }), &[]), "a public key is not a certificate");
    // A certificate verifies signatures made by its key.
    let (signer, signer_key) = ca("signer", None, false, false);
    let sig = bytes("sign", json!({ "algorithm": {"name": "ECDSA", "hash": "SHA-256"}, "key": signer_key.serialize_pem() }), &[b"m"]);
    assert!(boolean("verifySignature", json!({ "algorithm": {"name": "ECDSA", "hash": "SHA-256"}, "key": signer.pem() }), &[&sig, b"m"]));
}

#[test]
fn refusals_name_what_is_wrong() {
    let unsupported_curve = error_text(run("generateEcdsaKeyPair", json!({"curve": "secp521r1"}), &[]));
    assert!(unsupported_curve.contains("secp521r1 is not supported by this version of Consort"));
    assert!(error_text(run("generateEcdsaKeyPair", json!({"curve": "p999"}), &[])).starts_with("range: Unsupported curve id"));
    assert!(error_text(run("generateEddsaKeyPair", json!({"curve": "ed448"}), &[])).starts_with("range:"));
    assert!(error_text(run("generateRsaKeyPair", json!({"size": 1000}), &[])).contains("key size 1000 is not supported"));
    assert!(error_text(run("generateRsaKeyPair", json!({"size": 2048, "exponent": 3}), &[])).contains("exponent 3"));
    assert!(error_text(run("generateAesKey", json!({"size": 100}), &[])).starts_with("range: invalid key size"));
    assert!(error_text(run("sign", json!({"algorithm": {"name": "DSA", "hash": "SHA-256"}, "key": ""}), &[b""])).starts_with("range:"));
    assert!(error_text(run("sign", json!({"algorithm": {"name": "ECDSA", "hash": "MD5"}, "key": ""}), &[b""])).starts_with("range:"));
    let (_, public) = pair("generateEddsaKeyPair", json!({ "curve": "curve25519" }));
    let wrong_key =
        error_text(run("verifySignature", json!({"algorithm": {"name": "ECDSA", "hash": "SHA-256"}, "key": public}), &[b"", b""]));
    assert!(wrong_key.contains("not a P-256 or P-384 public key"), "{wrong_key}");
    assert!(error_text(run("verifySignature", json!({"algorithm": {"name": "ECDSA", "hash": "SHA-384"}, "key": public}), &[b"", b""]))
        .contains("supported: SHA-256"));
    assert!(error_text(run("digest", json!({"algorithm": "MD5"}), &[b""])).starts_with("range: unsupported digest algorithm"));
    assert!(error_text(run("noSuchThing", json!({}), &[])).contains("ccf.crypto.noSuchThing is not supported"));
}
