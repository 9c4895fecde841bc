//! JWT bearer tokens checked as CCF's `jwt` policy does: the token's `kid` selects the issuer
//! keys governance stored (`public:ccf.gov.jwt.public_signing_keys_metadata_v2`); the first key
//! whose signature verifies, whose time window holds and whose issuer constraint matches wins.
//! RS256, ES256 and ES384; `exp` and `iss` are required and `nbf` checked when present, with no
//! leeway; each failure is worded as CCF words it.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
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

/// Why a bearer token was refused, in CCF's words (the message of each is what CCF says).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    #[error("Missing authorization header")]
    MissingHeader,
    #[error("Authorization header only contains one field")]
    OneField,
    #[error("Authorization header does not have Bearer scheme")]
    NotBearer,
    /// Not three parts, not base64url JSON objects, or without `alg`, `kid`, `exp` or `iss`.
    #[error("{0}")]
    Malformed(String),
    #[error("JWT algorithm {0:?} is not accepted (RS256, ES256 or ES384)")]
    Algorithm(String),
    #[error("JWT signing key not found for kid {0}")]
    KeyNotFound(String),
    /// No stored key of the `kid` verifies the signature.
    #[error("Signature verification failed")]
    Signature,
    #[error("Current time {now} is before token's Not Before (nbf) claim {nbf}")]
    NotYetValid { now: i64, nbf: i64 },
    #[error("Current time {now} is after token's Expiration Time (exp) claim {exp}")]
    Expired { now: i64, exp: i64 },
    #[error("Kid {kid} failed issuer constraint validation {constraint}")]
    Issuer { kid: String, constraint: String },
}

/// A token that passed: the shape of `caller.jwt` (SPEC §4).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJwt {
    pub key_issuer: String,
    pub header: Value,
    pub payload: Value,
}

/// Checks the `Authorization` header's bearer token at time `now` (Unix seconds) as CCF's
/// `jwt` policy does, in CCF's order and with CCF's words for each failure; `keys(kid)`
/// answers the stored keys of a `kid`.
pub fn verify_jwt(authorization: Option<&str>, keys: impl Fn(&str) -> Vec<JwtKeyMetadata>, now: i64) -> Result<VerifiedJwt, JwtError> {
    let malformed = |why: &str| JwtError::Malformed(why.to_owned());
    let header_value = authorization.ok_or(JwtError::MissingHeader)?;
    let (scheme, token) = header_value.split_once(' ').ok_or(JwtError::OneField)?;
    if scheme != "Bearer" {
        return Err(JwtError::NotBearer);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts.as_slice() else {
        return Err(malformed("Malformed JWT: must contain exactly 3 parts"));
    };
    let json = |part: &str| -> Result<Value, JwtError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|e| JwtError::Malformed(format!("JWT header or payload is not valid base64url: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| JwtError::Malformed(format!("JWT header or payload is not valid JSON: {e}")))
    };
    let (header, payload) = (json(header_b64)?, json(payload_b64)?);
    if !header.is_object() || !payload.is_object() {
        return Err(malformed("JWT header or payload is not an object"));
    }
    let text = |v: &Value, field: &str| v.get(field).and_then(Value::as_str).map(str::to_owned);
    let number = |field: &str| payload.get(field).and_then(Value::as_i64);
    let (Some(alg), Some(kid)) = (text(&header, "alg"), text(&header, "kid")) else {
        return Err(malformed("JWT header does not follow schema: alg and kid are required strings"));
    };
    let Some(exp) = number("exp") else { return Err(malformed("JWT payload is missing required field: exp")) };
    let Some(iss) = text(&payload, "iss") else { return Err(malformed("JWT payload is missing required field: iss")) };
    let tid = text(&payload, "tid");
    let alg = match alg.as_str() {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        other => return Err(JwtError::Algorithm(other.to_owned())),
    };
    let candidates = keys(&kid);
    if candidates.is_empty() {
        return Err(JwtError::KeyNotFound(kid));
    }
    let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
    let mut last = JwtError::Signature;
    for key in candidates {
        let verified = decoding_key(&key.public_key, alg)
            .and_then(|k| jsonwebtoken::crypto::verify(signature_b64, signed.as_bytes(), &k, alg).map_err(|e| e.to_string()));
        if verified != Ok(true) {
            last = JwtError::Signature;
            continue;
        }
        if let Some(nbf) = number("nbf").filter(|nbf| now < *nbf) {
            last = JwtError::NotYetValid { now, nbf };
            continue;
        }
        if now > exp {
            last = JwtError::Expired { now, exp };
            continue;
        }
        // CCF checks a key's constraint; a key stored without one is Consort's stricter case:
        // the token's issuer must be the key's issuer.
        let constraint = key.constraint.as_deref().unwrap_or(&key.issuer);
        let issuer_ok = match &key.constraint {
            Some(c) => issuer_matches(c, &iss, tid.as_deref()),
            None => iss == key.issuer,
        };
        if !issuer_ok {
            last = JwtError::Issuer { kid: kid.clone(), constraint: constraint.to_owned() };
            continue;
        }
        return Ok(VerifiedJwt { key_issuer: key.issuer, header, payload });
    }
    Err(last)
}

/// The host whose tokens carry a tenant (`tid`) that the issuer's path must name.
const ENTRA_HOST: &str = "login.microsoftonline.com";

/// CCF's issuer check against a key's constraint. For Microsoft Entra (`login.microsoftonline.com`)
/// `{tenantid}` in the constraint stands for the token's `tid`, and the tenant the token's `iss`
/// names (its first path segment) must be that `tid`; any other issuer must equal the
/// constraint, and its tokens must carry no `tid` (an Entra-only claim).
fn issuer_matches(constraint: &str, iss: &str, tid: Option<&str>) -> bool {
    let host = |url: &str| url.split_once("://").map_or(url, |(_, rest)| rest).split(['/', ':', '?']).next().unwrap_or("").to_owned();
    if host(constraint) != ENTRA_HOST {
        return iss == constraint && tid.is_none();
    }
    let constraint = match tid {
        Some(tid) => constraint.replace("{tenantid}", tid),
        None => constraint.to_owned(),
    };
    if iss != constraint {
        return false;
    }
    let path = iss.split_once("://").map_or(iss, |(_, rest)| rest).split_once('/').map_or("", |(_, path)| path);
    let tenant = path.split('/').find(|s| !s.is_empty());
    matches!((tenant, tid), (Some(tenant), Some(tid)) if tenant == tid)
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

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[test]
    fn valid_tokens_pass_and_each_failure_is_named_as_ccf_names_it() {
        let (signer, spki) = es256();
        let (other_signer, _) = es256();
        let meta = JwtKeyMetadata { public_key: spki, issuer: "https://issuer.example".into(), constraint: None };
        let lookup = |kid: &str| if kid == "k1" { vec![meta.clone()] } else { vec![] };
        let t = now();
        let good = token(&signer, "k1", serde_json::json!({"iss": "https://issuer.example", "sub": "alice", "exp": t + 60, "nbf": t - 1}));
        let ok = verify_jwt(Some(&bearer(&good)), lookup, t as i64).expect("valid");
        assert_eq!(ok.key_issuer, "https://issuer.example");
        assert_eq!(ok.payload["sub"], "alice");
        assert_eq!(ok.header["kid"], "k1");

        let iss = "https://issuer.example";
        let cases = [
            (bearer(&token(&signer, "k1", serde_json::json!({"iss": iss, "exp": t - 10}))), "is after token's Expiration Time (exp) claim"),
            (
                bearer(&token(&signer, "k1", serde_json::json!({"iss": iss, "exp": t + 60, "nbf": t + 60}))),
                "is before token's Not Before (nbf) claim",
            ),
            (bearer(&token(&signer, "k1", serde_json::json!({"iss": iss}))), "JWT payload is missing required field: exp"),
            (bearer(&token(&signer, "k1", serde_json::json!({"exp": t + 60}))), "JWT payload is missing required field: iss"),
            (bearer(&token(&other_signer, "k1", serde_json::json!({"iss": iss, "exp": t + 60}))), "Signature verification failed"),
            (bearer(&token(&signer, "k2", serde_json::json!({"iss": iss, "exp": t + 60}))), "JWT signing key not found for kid k2"),
            (
                bearer(&token(&signer, "k1", serde_json::json!({"iss": "https://evil.example", "exp": t + 60}))),
                "Kid k1 failed issuer constraint validation https://issuer.example",
            ),
            (bearer("not.a.jwt"), "not valid"),
            (bearer("two.parts"), "Malformed JWT: must contain exactly 3 parts"),
            (bearer("e30.W10.c2ln"), "JWT header or payload is not an object"),
            ("Bearer".to_owned(), "Authorization header only contains one field"),
            (format!("Basic {good}"), "Authorization header does not have Bearer scheme"),
        ];
        for (header, why) in cases {
            let err = verify_jwt(Some(&header), lookup, t as i64).expect_err(why).to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
        assert_eq!(verify_jwt(None, lookup, t as i64).expect_err("none"), JwtError::MissingHeader);
        let hs = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"exp": t + 60, "iss": iss, "kid": "k1"}),
            &EncodingKey::from_secret(b"s"),
        )
        .expect("hs");
        assert!(verify_jwt(Some(&bearer(&hs)), lookup, t as i64).is_err());
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
        let t = now() as i64;
        assert_eq!(verify_jwt(Some(&bearer(&rs)), keys, t).expect("rs256 verifies").key_issuer, "i");
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some("ec".into());
        let es = encode(&header, &claims, &EncodingKey::from_ec_der(&p384.serialize_der())).expect("es384");
        verify_jwt(Some(&bearer(&es)), keys, t).expect("es384 verifies");
        // A token naming the other key's kid fails: the stored key does not fit its algorithm.
        header.kid = Some("rsa".into());
        let crossed = encode(&header, &claims, &EncodingKey::from_ec_der(&p384.serialize_der())).expect("es384");
        assert_eq!(verify_jwt(Some(&bearer(&crossed)), keys, t).expect_err("crossed"), JwtError::Signature);
    }

    #[test]
    fn constraints_as_ccf_checks_them() {
        let entra = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let single = "https://login.microsoftonline.com/t1/v2.0";
        let cases = [
            // Multi-tenant Entra keys: the tid fills the constraint and must be the issuer's tenant.
            (entra, "https://login.microsoftonline.com/t1/v2.0", Some("t1"), true),
            (entra, "https://login.microsoftonline.com/t1/v2.0", Some("t2"), false),
            (entra, "https://login.microsoftonline.com/t1/v2.0", None, false),
            // Single-tenant Entra keys: the tid must be the tenant in iss.
            (single, single, Some("t1"), true),
            (single, single, Some("t2"), false),
            (single, single, None, false),
            // Other issuers: iss equals the constraint, and no tid.
            ("https://issuer.example", "https://issuer.example", None, true),
            ("https://issuer.example", "https://issuer.example", Some("t1"), false),
            ("https://issuer.example", "https://other.example", None, false),
        ];
        for (constraint, iss, tid, want) in cases {
            assert_eq!(issuer_matches(constraint, iss, tid), want, "{constraint} {iss} {tid:?}");
        }
        let meta = JwtKeyMetadata { public_key: vec![1, 2], issuer: "i".into(), constraint: Some("c".into()) };
        let json = serde_json::to_value(&meta).expect("json");
        assert_eq!(json, serde_json::json!({"public_key": "AQI=", "issuer": "i", "constraint": "c"}));
        assert_eq!(serde_json::from_value::<JwtKeyMetadata>(json).expect("back"), meta);
    }
}
