//! `ccf.crypto` in the worker, with CCF's semantics (its `src/js/extensions/ccf/crypto.cpp`):
//! ECDSA signatures are IEEE P1363 (`r ‖ s`), verification takes SHA-256 and a PEM public key
//! or certificate, HMAC keys are the key string's bytes. What Consort does not implement yet
//! throws an error naming it; nothing answers wrongly.

use hmac::{KeyInit, Mac};
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::Digest;

/// Why a crypto call failed; the caller turns it into a JS `RangeError` or `Error`.
pub enum CryptoFailure {
    /// An argument CCF would refuse with a `RangeError` (unknown algorithm, size, curve).
    Range(String),
    /// Bad key material or an internal failure.
    Error(String),
}

use CryptoFailure::{Error, Range};

#[derive(serde::Deserialize)]
pub struct Algorithm {
    name: String,
    hash: Option<String>,
}

fn hash(name: Option<&str>, data: &[u8]) -> Result<Vec<u8>, CryptoFailure> {
    Ok(match name {
        Some("SHA-256") => sha2::Sha256::digest(data).to_vec(),
        Some("SHA-384") => sha2::Sha384::digest(data).to_vec(),
        Some("SHA-512") => sha2::Sha512::digest(data).to_vec(),
        _ => return Err(Range("Unsupported hash algorithm, supported: SHA-256, SHA-384, SHA-512".into())),
    })
}

fn unsupported(what: &str) -> CryptoFailure {
    Error(format!("{what} is not supported by this version of Consort"))
}

/// `ccf.crypto.sign(algorithm, key, data)`.
pub fn sign(algorithm: &Algorithm, key: &str, data: &[u8]) -> Result<Vec<u8>, CryptoFailure> {
    match algorithm.name.as_str() {
        "ECDSA" => {
            let digest = hash(algorithm.hash.as_deref(), data)?;
            if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(key).or_else(|_| p256::SecretKey::from_sec1_pem(key).map(Into::into)) {
                let sig: p256::ecdsa::Signature = k.sign_prehash(&digest).map_err(|e| Error(format!("Failed to sign: {e}")))?;
                return Ok(sig.to_bytes().to_vec());
            }
            if let Ok(k) = p384::ecdsa::SigningKey::from_pkcs8_pem(key).or_else(|_| p384::SecretKey::from_sec1_pem(key).map(Into::into)) {
                let sig: p384::ecdsa::Signature = k.sign_prehash(&digest).map_err(|e| Error(format!("Failed to sign: {e}")))?;
                return Ok(sig.to_bytes().to_vec());
            }
            Err(Error(
                "Failed to sign: the key is not a PEM P-256 or P-384 private key (secp521r1 is not supported by this version of Consort)"
                    .into(),
            ))
        }
        "HMAC" => {
            hash(algorithm.hash.as_deref(), &[])?;
            let bytes = key.as_bytes();
            Ok(match algorithm.hash.as_deref() {
                Some("SHA-256") => {
                    hmac::Hmac::<sha2::Sha256>::new_from_slice(bytes).map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                }
                Some("SHA-384") => {
                    hmac::Hmac::<sha2::Sha384>::new_from_slice(bytes).map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                }
                _ => hmac::Hmac::<sha2::Sha512>::new_from_slice(bytes).map(|m| m.chain_update(data).finalize().into_bytes().to_vec()),
            }
            .map_err(|e| Error(format!("Failed to sign: {e}")))?)
        }
        "EdDSA" => Err(unsupported("ccf.crypto.sign with EdDSA")),
        "RSA-PSS" => Err(unsupported("ccf.crypto.sign with RSA-PSS")),
        _ => Err(Range("Unsupported signing algorithm, supported: RSA-PSS, ECDSA, EdDSA, HMAC".into())),
    }
}

/// `ccf.crypto.verifySignature(algorithm, key, signature, data)`.
pub fn verify(algorithm: &Algorithm, key: &str, signature: &[u8], data: &[u8]) -> Result<bool, CryptoFailure> {
    match algorithm.name.as_str() {
        "EdDSA" => return Err(unsupported("ccf.crypto.verifySignature with EdDSA")),
        "RSA-PSS" => {
            if algorithm.hash.as_deref() != Some("SHA-256") {
                return Err(Range("Unsupported hash algorithm, supported: SHA-256".into()));
            }
            return Err(unsupported("ccf.crypto.verifySignature with RSA-PSS"));
        }
        "ECDSA" => {}
        _ => return Err(Range("Unsupported signing algorithm, supported: RSA-PSS, ECDSA, EdDSA".into())),
    }
    if algorithm.hash.as_deref() != Some("SHA-256") {
        return Err(Range("Unsupported hash algorithm, supported: SHA-256".into()));
    }
    let spki = if key.starts_with("-----BEGIN CERTIFICATE") {
        consort_crypto::ParsedCert::from_pem(key).map_err(|e| Error(format!("Failed to verify signature: {e}")))?.public_key_der
    } else {
        let (_, der) = pem_block(key).ok_or_else(|| Error("Failed to verify signature: the key is not PEM".into()))?;
        der
    };
    let digest = sha2::Sha256::digest(data);
    if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(&spki) {
        let Ok(sig) = p256::ecdsa::Signature::from_slice(signature) else { return Ok(false) };
        return Ok(k.verify_prehash(&digest, &sig).is_ok());
    }
    if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_der(&spki) {
        let Ok(sig) = p384::ecdsa::Signature::from_slice(signature) else { return Ok(false) };
        return Ok(k.verify_prehash(&digest, &sig).is_ok());
    }
    Err(Error("Failed to verify signature: the key is not a P-256 or P-384 public key".into()))
}

/// The label and DER of the first PEM block.
fn pem_block(pem: &str) -> Option<(String, Vec<u8>)> {
    use base64::Engine;
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let end = rest.find(&format!("-----END {label}-----"))?;
    let b64: String = rest[label_end + 5..end].chars().filter(|c| !c.is_whitespace()).collect();
    Some((label, base64::engine::general_purpose::STANDARD.decode(b64).ok()?))
}

/// `ccf.crypto.generateAesKey(bits)`.
pub fn generate_aes_key(bits: i64) -> Result<Vec<u8>, CryptoFailure> {
    if !matches!(bits, 128 | 192 | 256) {
        return Err(Range("invalid key size (not one of 128, 192, 256)".into()));
    }
    let key: [u8; 32] = consort_crypto::random_bytes();
    Ok(key[..(bits / 8) as usize].to_vec())
}

/// `ccf.crypto.generateEcdsaKeyPair(curve)`: PKCS#8 private and SPKI public PEM.
pub fn generate_ecdsa_key_pair(curve: &str) -> Result<(String, String), CryptoFailure> {
    use p256::elliptic_curve::Generate;
    let fail = |e: String| Error(format!("Failed to generate ECDSA key pair: {e}"));
    match curve {
        "secp256r1" => {
            let k = p256::ecdsa::SigningKey::generate();
            let private = k.to_pkcs8_pem(LineEnding::LF).map_err(|e| fail(e.to_string()))?.to_string();
            let public = k.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| fail(e.to_string()))?;
            Ok((private, public))
        }
        "secp384r1" => {
            let k = p384::ecdsa::SigningKey::generate();
            let private = k.to_pkcs8_pem(LineEnding::LF).map_err(|e| fail(e.to_string()))?.to_string();
            let public = k.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| fail(e.to_string()))?;
            Ok((private, public))
        }
        "secp521r1" => Err(unsupported("ccf.crypto.generateEcdsaKeyPair with secp521r1")),
        _ => Err(Range("Unsupported curve id, supported: secp256r1, secp384r1, secp521r1".into())),
    }
}
