//! `sign` and `verifySignature`.

use super::keys::{self, Private, Public};
use super::CryptoFailure::{self, Error, Range};
use super::{Algorithm, Hash};
use aws_lc_rs::signature::{RsaParameters, RsaPssSaltLength, RsaSignatureEncoding};
use hmac::{KeyInit, Mac};
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// `ccf.crypto.sign(algorithm, key, data)`.
pub fn sign(algorithm: &Algorithm, key: &str, data: &[u8]) -> Result<Vec<u8>, CryptoFailure> {
    if algorithm.name == "EdDSA" {
        let fail = |e: String| Error(format!("Failed to sign with EdDSA pair: {e}"));
        let Private::Ed25519(seed) = keys::private_from_pem(key).map_err(fail)? else {
            return Err(fail("the key is not an Ed25519 private key".into()));
        };
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| fail(e.to_string()))?;
        return Ok(pair.sign(data).as_ref().to_vec());
    }
    let hash = Hash::parse(algorithm.hash.as_deref())?;
    let fail = |e: String| Error(format!("Failed to sign: {e}"));
    match algorithm.name.as_str() {
        "ECDSA" => {
            let digest = hash.digest(data);
            match keys::private_from_pem(key).map_err(fail)? {
                Private::P256(k) => {
                    let sig: p256::ecdsa::Signature =
                        p256::ecdsa::SigningKey::from(k).sign_prehash(&digest).map_err(|e| fail(e.to_string()))?;
                    Ok(sig.to_bytes().to_vec())
                }
                Private::P384(k) => {
                    let sig: p384::ecdsa::Signature =
                        p384::ecdsa::SigningKey::from(k).sign_prehash(&digest).map_err(|e| fail(e.to_string()))?;
                    Ok(sig.to_bytes().to_vec())
                }
                _ => Err(fail("the key is not an EC private key".into())),
            }
        }
        "RSA-PSS" => {
            let Private::Rsa(pkcs1) = keys::private_from_pem(key).map_err(fail)? else {
                return Err(fail("the key is not an RSA private key".into()));
            };
            let pair = aws_lc_rs::rsa::KeyPair::from_der(&pkcs1).map_err(|e| fail(e.to_string()))?;
            let encoding = pss_signing(hash, salt_length(algorithm, pair.public_modulus_len())?);
            let mut sig = vec![0; pair.public_modulus_len()];
            pair.sign(encoding, &aws_lc_rs::rand::SystemRandom::new(), data, &mut sig).map_err(|e| fail(e.to_string()))?;
            Ok(sig)
        }
        "HMAC" => {
            let k = key.as_bytes();
            Ok(match hash {
                Hash::Sha256 => {
                    hmac::Hmac::<sha2::Sha256>::new_from_slice(k).map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                }
                Hash::Sha384 => {
                    hmac::Hmac::<sha2::Sha384>::new_from_slice(k).map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                }
                Hash::Sha512 => {
                    hmac::Hmac::<sha2::Sha512>::new_from_slice(k).map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                }
            }
            .map_err(|e| fail(e.to_string()))?)
        }
        _ => Err(Range("Unsupported signing algorithm, supported: RSA-PSS, ECDSA, EdDSA, HMAC".into())),
    }
}

/// `ccf.crypto.verifySignature(algorithm, key, signature, data)`: a wrong signature is `false`,
/// an unusable key or algorithm an error.
pub fn verify(algorithm: &Algorithm, key: &str, signature: &[u8], data: &[u8]) -> Result<bool, CryptoFailure> {
    if algorithm.name == "EdDSA" {
        let fail = |e: String| Range(format!("Failed to verify EdDSA signature: {e}"));
        let Public::Ed25519(public) = keys::public_from_pem(key).map_err(fail)? else {
            return Err(fail("the key is not an Ed25519 public key".into()));
        };
        let verifier = aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, public);
        return Ok(verifier.verify(data, signature).is_ok());
    }
    if algorithm.hash.as_deref() != Some("SHA-256") {
        return Err(Range("Unsupported hash algorithm, supported: SHA-256".into()));
    }
    let fail = |e: String| Error(format!("Failed to verify signature: {e}"));
    match algorithm.name.as_str() {
        "ECDSA" => {
            let digest = Hash::Sha256.digest(data);
            match keys::public_from_pem(key).map_err(fail)? {
                Public::P256(k) => {
                    let Ok(sig) = p256::ecdsa::Signature::from_slice(signature) else { return Ok(false) };
                    Ok(p256::ecdsa::VerifyingKey::from(k).verify_prehash(&digest, &sig).is_ok())
                }
                Public::P384(k) => {
                    let Ok(sig) = p384::ecdsa::Signature::from_slice(signature) else { return Ok(false) };
                    Ok(p384::ecdsa::VerifyingKey::from(k).verify_prehash(&digest, &sig).is_ok())
                }
                _ => Err(fail("the key is not a P-256 or P-384 public key".into())),
            }
        }
        "RSA-PSS" => {
            let Public::Rsa(pkcs1) = keys::public_from_pem(key).map_err(fail)? else {
                return Err(fail("the key is not an RSA public key".into()));
            };
            let modulus_len = aws_lc_rs::rsa::PublicKey::from_der(&pkcs1).map_err(|e| fail(e.to_string()))?.modulus_len();
            let params = pss_verifying(salt_length(algorithm, modulus_len)?);
            Ok(aws_lc_rs::signature::UnparsedPublicKey::new(params, pkcs1).verify(data, signature).is_ok())
        }
        _ => Err(Range("Unsupported signing algorithm, supported: RSA-PSS, ECDSA, EdDSA".into())),
    }
}

/// `saltLength` as CCF reads it (absent → 0), bounded by what the modulus allows.
fn salt_length(algorithm: &Algorithm, modulus_len: usize) -> Result<u16, CryptoFailure> {
    let salt = algorithm.salt_length.filter(|s| s.is_finite()).map(f64::trunc).unwrap_or(0.0);
    if salt < 0.0 || salt > modulus_len as f64 {
        return Err(Range(format!("saltLength {salt} is out of range for a {}-bit key", modulus_len * 8)));
    }
    Ok(salt as u16)
}

// aws-lc-rs takes PSS parameters by `'static` reference; one per (hash, salt length) in use is
// made once and kept. Salt lengths are bounded by the largest modulus (8192 bits = 1024 bytes), so
// these maps stay below 4k small entries.
fn pss_signing(hash: Hash, salt: u16) -> &'static RsaSignatureEncoding {
    static CACHE: OnceLock<Mutex<HashMap<(u8, u16), &'static RsaSignatureEncoding>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    cache.entry((hash as u8, salt)).or_insert_with(|| {
        let base = match hash {
            Hash::Sha256 => aws_lc_rs::signature::RSA_PSS_SHA256,
            Hash::Sha384 => aws_lc_rs::signature::RSA_PSS_SHA384,
            Hash::Sha512 => aws_lc_rs::signature::RSA_PSS_SHA512,
        };
        Box::leak(Box::new(base.with_pss_salt_length(RsaPssSaltLength::Custom(salt))))
    })
}

fn pss_verifying(salt: u16) -> &'static RsaParameters {
    static CACHE: OnceLock<Mutex<HashMap<u16, &'static RsaParameters>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    cache.entry(salt).or_insert_with(|| {
        Box::leak(Box::new(aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(RsaPssSaltLength::Custom(salt))))
    })
}
