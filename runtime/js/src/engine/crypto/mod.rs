//! `ccf.crypto` with CCF 6's semantics (its `src/js/extensions/ccf/crypto.cpp`), as a core
//! without Boa: every operation takes JSON parameters and byte buffers and answers bytes, text,
//! a boolean or JSON. The prelude (`prelude.js`) shapes JS arguments into that form.
//!
//! - `sign`/`verifySignature`: ECDSA (P-256, P-384; signatures IEEE P1363 `r ‖ s`), EdDSA
//!   (Ed25519), RSA-PSS (salt length from `saltLength`, 0 when absent, as CCF) and HMAC (key =
//!   the key string's bytes). Verification takes SHA-256 and a PEM public key or certificate.
//! - key generation: AES, RSA, ECDSA, EdDSA (Ed25519 and X25519), as PKCS#8 / SPKI PEM.
//! - `wrapKey`/`unwrapKey`: RSA-OAEP (SHA-256), AES-KWP (RFC 5649), RSA-OAEP-AES-KWP (PKCS#11
//!   `CKM_RSA_AES_KEY_WRAP`).
//! - X.509 bundle and chain checks, PEM ↔ JWK for EC, RSA and OKP keys.
//!
//! secp521r1 keys are refused with an error naming them; nothing answers wrongly.

mod jwk;
mod keys;
mod sign;
mod wrap;
mod x509;

use serde_json::Value;

pub use jwk::public_key_der as jwk_public_key_der;

/// Why a crypto call failed; the caller turns it into a JS `RangeError` or `Error`.
#[derive(Debug)]
pub enum CryptoFailure {
    /// An argument CCF would refuse with a `RangeError` (unknown algorithm, size, curve).
    Range(String),
    /// Bad key material or an internal failure.
    Error(String),
}

/// What an operation answers.
#[derive(Debug)]
pub enum Out {
    Bytes(Vec<u8>),
    Text(String),
    Bool(bool),
    Json(Value),
}

use CryptoFailure::{Error, Range};

/// Runs `ccf.crypto.<op>`. `params` holds the non-buffer arguments by name; `bufs` the
/// ArrayBuffer arguments in order.
pub fn call(op: &str, params: &Value, bufs: &[Vec<u8>]) -> Result<Out, CryptoFailure> {
    let buffer = |i: usize| bufs.get(i).map(Vec::as_slice).ok_or_else(|| Error(format!("ccf.crypto.{op}: missing argument {i}")));
    match op {
        "digest" => Ok(Out::Bytes(digest(str_param(params, "algorithm")?, buffer(0)?)?)),
        "sign" => Ok(Out::Bytes(sign::sign(&algorithm(params)?, str_param(params, "key")?, buffer(0)?)?)),
        "verifySignature" => Ok(Out::Bool(sign::verify(&algorithm(params)?, str_param(params, "key")?, buffer(0)?, buffer(1)?)?)),
        "generateAesKey" => Ok(Out::Bytes(keys::generate_aes(num_param(params, "size"))?)),
        "generateRsaKeyPair" => key_pair(keys::generate_rsa(num_param(params, "size"), params.get("exponent").and_then(Value::as_f64))?),
        "generateEcdsaKeyPair" => key_pair(keys::generate_ecdsa(str_param(params, "curve")?)?),
        "generateEddsaKeyPair" => key_pair(keys::generate_eddsa(str_param(params, "curve")?)?),
        "wrapKey" | "unwrapKey" => {
            let algo: wrap::WrapAlgorithm = serde_json::from_value(params.get("algorithm").cloned().unwrap_or(Value::Null))
                .map_err(|e| Error(format!("ccf.crypto.{op}: the algorithm must be {{name, aesKeySize?, label?}}: {e}")))?;
            let label = bufs.get(2).map(Vec::as_slice).filter(|l| !l.is_empty());
            let out = if op == "wrapKey" {
                wrap::wrap(&algo, buffer(0)?, buffer(1)?, label)
            } else {
                wrap::unwrap(&algo, buffer(0)?, buffer(1)?, label)
            };
            Ok(Out::Bytes(out?))
        }
        "isValidX509CertBundle" => Ok(Out::Bool(x509::is_valid_bundle(str_param(params, "pem")?))),
        "isValidX509CertChain" => Ok(Out::Bool(x509::is_valid_chain(str_param(params, "chain")?, str_param(params, "trusted")?))),
        "pubPemToJwk" | "pemToJwk" | "pubRsaPemToJwk" | "rsaPemToJwk" | "pubEddsaPemToJwk" | "eddsaPemToJwk" => {
            let kid = params.get("kid").and_then(Value::as_str);
            jwk::from_pem(op, str_param(params, "pem")?, kid)
                .map(Out::Json)
                .map_err(|e| Error(format!("Failed to convert pem to jwk: {e}")))
        }
        "pubJwkToPem" | "jwkToPem" | "pubRsaJwkToPem" | "rsaJwkToPem" | "pubEddsaJwkToPem" | "eddsaJwkToPem" => {
            jwk::to_pem(op, params.get("jwk").unwrap_or(&Value::Null))
                .map(Out::Text)
                .map_err(|e| Error(format!("Failed to convert jwk to pem: {e}")))
        }
        _ => Err(Error(format!("ccf.crypto.{op} is not supported by this version of Consort"))),
    }
}

/// The signing algorithm argument of `sign` and `verifySignature`.
#[derive(serde::Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Algorithm {
    name: String,
    hash: Option<String>,
    salt_length: Option<f64>,
}

fn algorithm(params: &Value) -> Result<Algorithm, CryptoFailure> {
    serde_json::from_value(params.get("algorithm").cloned().unwrap_or(Value::Null))
        .map_err(|e| Error(format!("the algorithm must be {{name, hash?, saltLength?}}: {e}")))
}

fn str_param<'a>(params: &'a Value, name: &str) -> Result<&'a str, CryptoFailure> {
    params.get(name).and_then(Value::as_str).ok_or_else(|| Error(format!("{name} must be a string")))
}

/// A number argument converted as JS `ToInt32` would for the values apps pass (NaN → 0).
fn num_param(params: &Value, name: &str) -> i64 {
    params.get(name).and_then(Value::as_f64).filter(|f| f.is_finite()).map(|f| f.trunc() as i64).unwrap_or(0)
}

fn key_pair((private, public): (String, String)) -> Result<Out, CryptoFailure> {
    Ok(Out::Json(serde_json::json!({ "privateKey": private, "publicKey": public })))
}

/// The digests CCF's hash names stand for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn parse(name: Option<&str>) -> Result<Hash, CryptoFailure> {
        match name {
            Some("SHA-256") => Ok(Hash::Sha256),
            Some("SHA-384") => Ok(Hash::Sha384),
            Some("SHA-512") => Ok(Hash::Sha512),
            _ => Err(Range("Unsupported hash algorithm, supported: SHA-256, SHA-384, SHA-512".into())),
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// `ccf.crypto.digest`: CCF offers SHA-256; Consort also answers SHA-384 and SHA-512.
fn digest(algorithm: &str, data: &[u8]) -> Result<Vec<u8>, CryptoFailure> {
    Hash::parse(Some(algorithm))
        .map(|h| h.digest(data))
        .map_err(|_| Range(format!("unsupported digest algorithm {algorithm:?}, supported: SHA-256, SHA-384, SHA-512")))
}

fn unsupported(what: &str) -> CryptoFailure {
    Error(format!("{what} is not supported by this version of Consort"))
}

#[cfg(test)]
mod tests;
