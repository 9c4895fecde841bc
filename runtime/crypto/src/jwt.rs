//! JWT bearer tokens checked as CCF's `jwt` policy does: the token's `kid` selects the issuer
//! keys governance stored (`public:ccf.gov.jwt.public_signing_keys_metadata_v2`); the first key
//! whose signature verifies, whose time window holds and whose issuer constraint matches wins.
//! RS256, ES256 and ES384; `exp` is required and `nbf` checked when present, with no leeway.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// One stored key of a `kid` (CCF's `OpenIDJWKMetadata`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct JwtKeyMetadata {
    /// The key's SubjectPublicKeyInfo DER, base64 in JSON.
    #[serde(with = "b64")]
    pub public_key: Vec<u8>,
    /// The issuer that published the key.
    pub issuer: String,
    /// If set, the token's `iss` must match it (`{tenantid}` stands for the token's `tid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
}

mod b64 {
    use base64::Engine;
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// A token that passed: the shape of `caller.jwt` (SPEC §4).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJwt {
    pub key_issuer: String,
    pub header: Value,
    pub payload: Value,
}

/// Checks `token`; `keys(kid)` answers the stored keys of a `kid`. Errors say what failed.
pub fn verify_jwt(token: &str, keys: impl Fn(&str) -> Vec<JwtKeyMetadata>) -> Result<VerifiedJwt, String> {
    let header_json = token.split('.').next().unwrap_or_default();
    let header: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header_json.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or("malformed JWT: the header is not base64url JSON")?;
    let parsed = jsonwebtoken::decode_header(token).map_err(|e| format!("malformed JWT: {e}"))?;
    let alg = parsed.alg;
    if !matches!(alg, Algorithm::RS256 | Algorithm::ES256 | Algorithm::ES384) {
        return Err(format!("JWT algorithm {alg:?} is not accepted (RS256, ES256 or ES384)"));
    }
    let kid = parsed.kid.ok_or("the JWT header has no kid")?;
    let candidates = keys(&kid);
    if candidates.is_empty() {
        return Err(format!("JWT signing key not found for kid {kid}"));
    }
    let mut validation = Validation::new(alg);
    validation.leeway = 0;
    validation.validate_aud = false;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp"]);
    let mut last = String::new();
    for key in candidates {
        let decoding = match decoding_key(&key.public_key, alg) {
            Ok(k) => k,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let payload = match jsonwebtoken::decode::<Value>(token, &decoding, &validation) {
            Ok(data) => data.claims,
            Err(e) => {
                last = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the JWT has expired (exp)".into(),
                    jsonwebtoken::errors::ErrorKind::ImmatureSignature => "the JWT is not valid yet (nbf)".into(),
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => "JWT signature verification failed".into(),
                    jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(c) => format!("the JWT has no {c} claim"),
                    _ => format!("JWT rejected: {e}"),
                };
                continue;
            }
        };
        let iss = payload.get("iss").and_then(Value::as_str);
        let tid = payload.get("tid").and_then(Value::as_str);
        let issuer_ok = match (&key.constraint, iss) {
            (Some(constraint), Some(iss)) => issuer_matches(constraint, iss, tid),
            (Some(_), None) => false,
            (None, Some(iss)) => iss == key.issuer,
            (None, None) => true,
        };
        if !issuer_ok {
            last = format!("the JWT issuer {iss:?} does not match the key's issuer constraint for kid {kid}");
            continue;
        }
        return Ok(VerifiedJwt { key_issuer: key.issuer, header, payload });
    }
    Err(last)
}

/// `{tenantid}` in a constraint matches the token's own `tid` (Microsoft Entra multi-tenant keys).
fn issuer_matches(constraint: &str, iss: &str, tid: Option<&str>) -> bool {
    match (constraint.contains("{tenantid}"), tid) {
        (true, Some(tid)) => constraint.replace("{tenantid}", tid) == iss,
        (true, None) => false,
        (false, _) => constraint == iss,
    }
}

fn decoding_key(spki_der: &[u8], alg: Algorithm) -> Result<DecodingKey, String> {
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| format!("bad stored key: {e}"))?;
    use crate::cert::KeyKind;
    let raw = &spki.subject_public_key.data;
    match (alg, crate::cert::key_kind(&spki)) {
        (Algorithm::RS256, KeyKind::Rsa) => Ok(DecodingKey::from_rsa_der(raw)),
        (Algorithm::ES256, KeyKind::P256) | (Algorithm::ES384, KeyKind::P384) => Ok(DecodingKey::from_ec_der(raw)),
        _ => Err(format!("the stored key for this kid does not fit algorithm {alg:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    fn es256() -> (EncodingKey, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        (EncodingKey::from_ec_der(&key.serialize_der()), rcgen::PublicKeyData::subject_public_key_info(&key))
    }

    fn token(key: &EncodingKey, kid: &str, claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        encode(&header, &claims, key).expect("encode")
    }

    #[test]
    fn valid_tokens_pass_and_each_failure_is_named() {
        let (signer, spki) = es256();
        let (other_signer, _) = es256();
        let meta = JwtKeyMetadata { public_key: spki, issuer: "https://issuer.example".into(), constraint: None };
        let lookup = |kid: &str| if kid == "k1" { vec![meta.clone()] } else { vec![] };
        let t = now();
        let good = token(&signer, "k1", serde_json::json!({"iss": "https://issuer.example", "sub": "alice", "exp": t + 60, "nbf": t - 1}));
        let ok = verify_jwt(&good, lookup).expect("valid");
        assert_eq!(ok.key_issuer, "https://issuer.example");
        assert_eq!(ok.payload["sub"], "alice");
        assert_eq!(ok.header["kid"], "k1");

        let cases = [
            (token(&signer, "k1", serde_json::json!({"iss": "https://issuer.example", "exp": t - 10})), "expired"),
            (token(&signer, "k1", serde_json::json!({"iss": "https://issuer.example", "exp": t + 60, "nbf": t + 60})), "not valid yet"),
            (token(&signer, "k1", serde_json::json!({"iss": "https://issuer.example"})), "no exp claim"),
            (
                token(&other_signer, "k1", serde_json::json!({"iss": "https://issuer.example", "exp": t + 60})),
                "signature verification failed",
            ),
            (token(&signer, "k2", serde_json::json!({"exp": t + 60})), "signing key not found for kid k2"),
            (token(&signer, "k1", serde_json::json!({"iss": "https://evil.example", "exp": t + 60})), "does not match"),
            ("not.a.jwt".to_owned(), "malformed JWT"),
        ];
        for (tok, why) in cases {
            let err = verify_jwt(&tok, lookup).expect_err(why);
            assert!(err.contains(why), "{why}: {err}");
        }
        let hs = encode(&Header::new(Algorithm::HS256), &serde_json::json!({"exp": t + 60}), &EncodingKey::from_secret(b"s")).expect("hs");
        assert!(verify_jwt(&hs, lookup).expect_err("hs256").contains("not accepted"));
    }

    #[test]
    fn rs256_and_es384_tokens_verify_with_their_keys_only() {
        use aws_lc_rs::encoding::AsDer;
        use der::Decode;
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
        let pkcs8 = rsa.as_der().expect("pkcs8");
        let pkcs1 = pkcs8::PrivateKeyInfoRef::from_der(pkcs8.as_ref()).expect("info").private_key.as_bytes().to_vec();
        let rsa_spki = aws_lc_rs::signature::KeyPair::public_key(&rsa).as_der().expect("spki").as_ref().to_vec();
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("p384");
        let p384_spki = rcgen::PublicKeyData::subject_public_key_info(&p384);
        let keys = |kid: &str| match kid {
            "rsa" => vec![JwtKeyMetadata { public_key: rsa_spki.clone(), issuer: "i".into(), constraint: None }],
            "ec" => vec![JwtKeyMetadata { public_key: p384_spki.clone(), issuer: "i".into(), constraint: None }],
            _ => vec![],
        };
        let claims = serde_json::json!({"iss": "i", "exp": now() + 60});
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa".into());
        let rs = encode(&header, &claims, &EncodingKey::from_rsa_der(&pkcs1)).expect("rs256");
        assert_eq!(verify_jwt(&rs, keys).expect("rs256 verifies").key_issuer, "i");
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some("ec".into());
        let es = encode(&header, &claims, &EncodingKey::from_ec_der(&p384.serialize_der())).expect("es384");
        verify_jwt(&es, keys).expect("es384 verifies");
        // A token naming the other key's kid fails: the stored key does not fit its algorithm.
        header.kid = Some("rsa".into());
        let crossed = encode(&header, &claims, &EncodingKey::from_ec_der(&p384.serialize_der())).expect("es384");
        assert!(verify_jwt(&crossed, keys).expect_err("crossed").contains("does not fit"));
    }

    #[test]
    fn constraints_allow_tenant_issuers() {
        assert!(issuer_matches("https://login.example/{tenantid}/v2.0", "https://login.example/t1/v2.0", Some("t1")));
        assert!(!issuer_matches("https://login.example/{tenantid}/v2.0", "https://login.example/t1/v2.0", Some("t2")));
        assert!(!issuer_matches("https://login.example/{tenantid}/v2.0", "https://login.example/t1/v2.0", None));
        let meta = JwtKeyMetadata { public_key: vec![1, 2], issuer: "i".into(), constraint: Some("c".into()) };
        let json = serde_json::to_value(&meta).expect("json");
        assert_eq!(json, serde_json::json!({"public_key": "AQI=", "issuer": "i", "constraint": "c"}));
        assert_eq!(serde_json::from_value::<JwtKeyMetadata>(json).expect("back"), meta);
    }
}
