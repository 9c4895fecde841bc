//! PEM ↔ JSON Web Key (RFC 7517/7518/8037) for the six pairs of `ccf.crypto` functions:
//! EC (`kty: "EC"`, P-256/P-384, coordinates padded to the field size), RSA (`kty: "RSA"`,
//! unsigned big-endian integers without leading zeros) and OKP (`Ed25519`, `X25519`). Values are
//! base64url without padding; `kid` appears only when given.

use super::keys::{self, Private, Public};
use base64::Engine;
use der::asn1::UintRef;
use der::Encode;
use serde_json::{json, Map, Value};

fn b64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn with_kid(mut v: Value, kid: Option<&str>) -> Value {
    if let (Some(kid), Some(map)) = (kid, v.as_object_mut()) {
        map.insert("kid".into(), Value::String(kid.to_owned()));
    }
    v
}

/// `pubPemToJwk`, `pemToJwk`, `pubRsaPemToJwk`, `rsaPemToJwk`, `pubEddsaPemToJwk`, `eddsaPemToJwk`.
pub fn from_pem(op: &str, pem: &str, kid: Option<&str>) -> Result<Value, String> {
    let jwk = match op {
        "pubPemToJwk" => match keys::public_from_pem(pem)? {
            Public::P256(k) => ec_public("P-256", &k.to_sec1_bytes()),
            Public::P384(k) => ec_public("P-384", &k.to_sec1_bytes()),
            _ => return Err("not an EC public key".into()),
        },
        "pemToJwk" => match keys::private_from_pem(pem)? {
            Private::P256(k) => ec_private("P-256", &k.public_key().to_sec1_bytes(), &k.to_bytes()),
            Private::P384(k) => ec_private("P-384", &k.public_key().to_sec1_bytes(), &k.to_bytes()),
            _ => return Err("not an EC private key".into()),
        },
        "pubRsaPemToJwk" => match keys::public_from_pem(pem)? {
            Public::Rsa(der) => {
                let k = pkcs1::RsaPublicKey::<UintRef>::try_from(der.as_slice()).map_err(|e| e.to_string())?;
                json!({ "kty": "RSA", "n": b64(k.modulus.as_bytes()), "e": b64(k.public_exponent.as_bytes()) })
            }
            _ => return Err("not an RSA public key".into()),
        },
        "rsaPemToJwk" => match keys::private_from_pem(pem)? {
            Private::Rsa(der) => {
                let k = pkcs1::RsaPrivateKey::<UintRef>::try_from(der.as_slice()).map_err(|e| e.to_string())?;
                json!({
                    "kty": "RSA",
                    "n": b64(k.modulus.as_bytes()),
                    "e": b64(k.public_exponent.as_bytes()),
                    "d": b64(k.private_exponent.as_bytes()),
                    "p": b64(k.prime1.as_bytes()),
                    "q": b64(k.prime2.as_bytes()),
                    "dp": b64(k.exponent1.as_bytes()),
                    "dq": b64(k.exponent2.as_bytes()),
                    "qi": b64(k.coefficient.as_bytes()),
                })
            }
            _ => return Err("not an RSA private key".into()),
        },
        "pubEddsaPemToJwk" => match keys::public_from_pem(pem)? {
            Public::Ed25519(x) => json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(&x) }),
            Public::X25519(x) => json!({ "kty": "OKP", "crv": "X25519", "x": b64(&x) }),
            _ => return Err("not an Ed25519 or X25519 public key".into()),
        },
        "eddsaPemToJwk" => match keys::private_from_pem(pem)? {
            Private::Ed25519(d) => json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(&keys::okp_public(keys::ED25519, &d)?), "d": b64(&d) }),
            Private::X25519(d) => json!({ "kty": "OKP", "crv": "X25519", "x": b64(&keys::okp_public(keys::X25519, &d)?), "d": b64(&d) }),
            _ => return Err("not an Ed25519 or X25519 private key".into()),
        },
        _ => return Err(format!("unknown conversion {op}")),
    };
    Ok(with_kid(jwk, kid))
}

fn ec_public(crv: &str, sec1: &[u8]) -> Value {
    let half = (sec1.len() - 1) / 2;
    json!({ "kty": "EC", "crv": crv, "x": b64(&sec1[1..1 + half]), "y": b64(&sec1[1 + half..]) })
}

fn ec_private(crv: &str, sec1: &[u8], d: &[u8]) -> Value {
    let mut v = ec_public(crv, sec1);
    if let Some(m) = v.as_object_mut() {
        m.insert("d".into(), b64(d));
    }
    v
}

/// `pubJwkToPem`, `jwkToPem`, `pubRsaJwkToPem`, `rsaJwkToPem`, `pubEddsaJwkToPem`, `eddsaJwkToPem`.
pub fn to_pem(op: &str, jwk: &Value) -> Result<String, String> {
    let jwk = jwk.as_object().ok_or("the JWK must be an object")?;
    let kty = field_str(jwk, "kty")?;
    let expect = |want: &str| if kty == want { Ok(()) } else { Err(format!("kty is {kty:?}, expected {want:?}")) };
    match op {
        "pubJwkToPem" => {
            expect("EC")?;
            Ok(keys::to_pem("PUBLIC KEY", ec_public_der(jwk)?))
        }
        "jwkToPem" => {
            expect("EC")?;
            let (size, point) = ec_point(jwk)?;
            use p256::pkcs8::EncodePrivateKey;
            let d = field_bytes(jwk, "d")?;
            let (der, derived) = match size {
                32 => {
                    let k = p256::SecretKey::from_slice(&d).map_err(|e| format!("bad d: {e}"))?;
                    (k.to_pkcs8_der().map_err(|e| e.to_string())?, k.public_key().to_sec1_bytes().to_vec())
                }
                _ => {
                    let k = p384::SecretKey::from_slice(&d).map_err(|e| format!("bad d: {e}"))?;
                    (k.to_pkcs8_der().map_err(|e| e.to_string())?, k.public_key().to_sec1_bytes().to_vec())
                }
            };
            if derived != point {
                return Err("d does not match x and y".into());
            }
            Ok(keys::to_pem("PRIVATE KEY", der.as_bytes().to_vec()))
        }
        "pubRsaJwkToPem" => {
            expect("RSA")?;
            Ok(keys::to_pem("PUBLIC KEY", rsa_public_der(jwk)?))
        }
        "rsaJwkToPem" => {
            expect("RSA")?;
            let names = ["n", "e", "d", "p", "q", "dp", "dq", "qi"];
            let mut values = Vec::with_capacity(names.len());
            for name in names {
                values.push(field_bytes(jwk, name)?);
            }
            let u = |i: usize| uint(&values[i], names[i]);
            let private = pkcs1::RsaPrivateKey {
                modulus: u(0)?,
                public_exponent: u(1)?,
                private_exponent: u(2)?,
                prime1: u(3)?,
                prime2: u(4)?,
                exponent1: u(5)?,
                exponent2: u(6)?,
                coefficient: u(7)?,
                other_prime_infos: None,
            };
            let pkcs8 = keys::rsa_pkcs8(&private.to_der().map_err(|e| e.to_string())?)?;
            aws_lc_rs::rsa::KeyPair::from_pkcs8(&pkcs8).map_err(|e| format!("the components do not form an RSA key: {e}"))?;
            Ok(keys::to_pem("PRIVATE KEY", pkcs8))
        }
        "pubEddsaJwkToPem" | "eddsaJwkToPem" => {
            expect("OKP")?;
            let oid = match field_str(jwk, "crv")? {
                "Ed25519" => keys::ED25519,
                "X25519" => keys::X25519,
                other => return Err(format!("unsupported crv {other:?} (Ed25519 or X25519)")),
            };
            let fixed = |name: &str| -> Result<[u8; 32], String> {
                <[u8; 32]>::try_from(field_bytes(jwk, name)?.as_slice()).map_err(|_| format!("{name} must be 32 bytes"))
            };
            let x = fixed("x")?;
            if op == "pubEddsaJwkToPem" {
                return Ok(keys::to_pem("PUBLIC KEY", keys::okp_spki(oid, &x)?));
            }
            let d = fixed("d")?;
            if keys::okp_public(oid, &d)? != x {
                return Err("d does not match x".into());
            }
            Ok(keys::to_pem("PRIVATE KEY", keys::okp_pkcs8(oid, &d)?))
        }
        _ => Err(format!("unknown conversion {op}")),
    }
}

/// `(coordinate size, 04 ‖ x ‖ y)` of an EC JWK on P-256 or P-384.
fn ec_point(jwk: &Map<String, Value>) -> Result<(usize, Vec<u8>), String> {
    let crv = field_str(jwk, "crv")?;
    let size = match crv {
        "P-256" => 32,
        "P-384" => 48,
        "P-521" => return Err("P-521 keys are not supported by this version of Consort".into()),
        other => return Err(format!("unsupported crv {other:?}")),
    };
    let mut point = vec![4u8];
    for name in ["x", "y"] {
        let c = field_bytes(jwk, name)?;
        if c.len() != size {
            return Err(format!("{name} is {} bytes, expected {size} for {crv}", c.len()));
        }
        point.extend(c);
    }
    Ok((size, point))
}

/// SPKI DER of an EC public JWK.
fn ec_public_der(jwk: &Map<String, Value>) -> Result<Vec<u8>, String> {
    use p256::pkcs8::EncodePublicKey;
    let (size, point) = ec_point(jwk)?;
    let der = match size {
        32 => p256::PublicKey::from_sec1_bytes(&point).map_err(|e| e.to_string())?.to_public_key_der(),
        _ => p384::PublicKey::from_sec1_bytes(&point).map_err(|e| e.to_string())?.to_public_key_der(),
    }
    .map_err(|e| e.to_string())?;
    Ok(der.as_bytes().to_vec())
}

/// SPKI DER of an RSA public JWK, checked usable by aws-lc.
fn rsa_public_der(jwk: &Map<String, Value>) -> Result<Vec<u8>, String> {
    let (n, e) = (field_bytes(jwk, "n")?, field_bytes(jwk, "e")?);
    let public = pkcs1::RsaPublicKey { modulus: uint(&n, "n")?, public_exponent: uint(&e, "e")? };
    let pkcs1 = public.to_der().map_err(|e| e.to_string())?;
    aws_lc_rs::rsa::PublicKey::from_der(&pkcs1).map_err(|e| format!("not a usable RSA public key: {e}"))?;
    keys::rsa_spki(&pkcs1)
}

fn field_str<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    jwk.get(name).and_then(Value::as_str).ok_or_else(|| format!("the JWK has no string field {name:?}"))
}

/// A JWK's binary field: base64url as RFC 7517 says, or standard base64 (with or without
/// padding), which CCF's decoder accepts too and some issuers publish.
fn field_bytes(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = field_str(jwk, name)?;
    let url_safe: String = text
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(url_safe).map_err(|e| format!("{name} is not base64url: {e}"))
}

fn uint<'a>(bytes: &'a [u8], name: &str) -> Result<UintRef<'a>, String> {
    UintRef::new(bytes).map_err(|e| format!("{name}: {e}"))
}

/// The SubjectPublicKeyInfo DER of a public JWK: from its first `x5c` certificate if it has
/// one, else from its RSA (`n`, `e`) or EC (`crv`, `x`, `y`) members.
pub fn public_key_der(jwk: &Value) -> Result<Vec<u8>, String> {
    if let Some(first) = jwk.get("x5c").and_then(Value::as_array).and_then(|c| c.first()) {
        let der = base64::engine::general_purpose::STANDARD
            .decode(first.as_str().ok_or("x5c holds base64 strings")?)
            .map_err(|e| format!("x5c: {e}"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| format!("x5c: {e}"))?;
        return Ok(cert.public_key().raw.to_vec());
    }
    let map = jwk.as_object().ok_or("the JWK must be an object")?;
    match map.get("kty").and_then(Value::as_str) {
        Some("RSA") => rsa_public_der(map),
        Some("EC") => ec_public_der(map),
        other => Err(format!("unsupported JWK kty {other:?} (RSA or EC)")),
    }
}
