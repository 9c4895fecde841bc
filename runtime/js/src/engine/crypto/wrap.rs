//! `wrapKey` / `unwrapKey`: RSA-OAEP with SHA-256 (the wrapping key is a PEM RSA public key, the
//! unwrapping key a PEM RSA private key, both as bytes), AES-KWP (RFC 5649; the key is raw AES
//! bytes) and RSA-OAEP-AES-KWP (a fresh AES key of `aesKeySize` bits, RSA-OAEP-wrapped, followed
//! by the payload AES-KWP-wrapped under it: PKCS#11 `CKM_RSA_AES_KEY_WRAP`, as CCF does).

use super::keys::{self, Private, Public};
use super::CryptoFailure::{self, Error, Range};
use aes_kw::KeyInit;
use aws_lc_rs::rsa::{
    OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256,
};

#[derive(serde::Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct WrapAlgorithm {
    name: String,
    aes_key_size: Option<f64>,
}

fn algorithm_range(op: &str) -> CryptoFailure {
    Range(format!("unsupported key {op} algorithm, supported: RSA-OAEP, AES-KWP, RSA-OAEP-AES-KWP"))
}

pub fn wrap(algo: &WrapAlgorithm, key: &[u8], wrapping_key: &[u8], label: Option<&[u8]>) -> Result<Vec<u8>, CryptoFailure> {
    let fail = |e: String| Error(format!("Failed to wrap key: {e}"));
    match algo.name.as_str() {
        "RSA-OAEP" => rsa_oaep_wrap(wrapping_key, key, label).map_err(fail),
        "AES-KWP" => aes_kwp_wrap(wrapping_key, key).map_err(fail),
        "RSA-OAEP-AES-KWP" => {
            let bits = aes_key_size(algo)?;
            let all: [u8; 32] = consort_crypto::random_bytes();
            let aes = &all[..bits / 8];
            let mut out = rsa_oaep_wrap(wrapping_key, aes, label).map_err(fail)?;
            out.extend(aes_kwp_wrap(aes, key).map_err(fail)?);
            Ok(out)
        }
        _ => Err(algorithm_range("wrapping")),
    }
}

pub fn unwrap(algo: &WrapAlgorithm, wrapped: &[u8], unwrapping_key: &[u8], label: Option<&[u8]>) -> Result<Vec<u8>, CryptoFailure> {
    let fail = |e: String| Error(format!("Failed to unwrap key: {e}"));
    match algo.name.as_str() {
        "RSA-OAEP" => rsa_oaep_unwrap(unwrapping_key, wrapped, label).map_err(fail),
        "AES-KWP" => aes_kwp_unwrap(unwrapping_key, wrapped).map_err(fail),
        "RSA-OAEP-AES-KWP" => {
            aes_key_size(algo)?;
            let private = rsa_private(unwrapping_key).map_err(fail)?;
            let split = private.key_size_bytes();
            if wrapped.len() <= split {
                return Err(fail(format!("the wrapped key is {} bytes, shorter than the RSA part ({split})", wrapped.len())));
            }
            let aes = rsa_oaep_decrypt(private, &wrapped[..split], label).map_err(fail)?;
            aes_kwp_unwrap(&aes, &wrapped[split..]).map_err(fail)
        }
        _ => Err(algorithm_range("unwrapping")),
    }
}

fn aes_key_size(algo: &WrapAlgorithm) -> Result<usize, CryptoFailure> {
    match algo.aes_key_size {
        Some(128.0) => Ok(128),
        Some(192.0) => Ok(192),
        Some(256.0) => Ok(256),
        other => Err(Range(format!("aesKeySize must be 128, 192 or 256, got {other:?}"))),
    }
}

fn pem_text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| "the RSA key must be PEM text".to_string())
}

fn rsa_oaep_wrap(public_pem: &[u8], key: &[u8], label: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let Public::Rsa(pkcs1) = keys::public_from_pem(pem_text(public_pem)?)? else {
        return Err("the wrapping key is not an RSA public key".into());
    };
    let public = PublicEncryptingKey::from_der(&keys::rsa_spki(&pkcs1)?).map_err(|e| format!("bad RSA public key: {e}"))?;
    let oaep = OaepPublicEncryptingKey::new(public).map_err(|e| e.to_string())?;
    let max = oaep.max_plaintext_size(&OAEP_SHA256_MGF1SHA256);
    if key.len() > max {
        return Err(format!("the key is {} bytes; RSA-OAEP with this {}-bit key wraps at most {max}", key.len(), oaep.key_size_bits()));
    }
    let mut out = vec![0; oaep.ciphertext_size()];
    let n = oaep.encrypt(&OAEP_SHA256_MGF1SHA256, key, &mut out, label).map_err(|e| e.to_string())?.len();
    out.truncate(n);
    Ok(out)
}

fn rsa_private(private_pem: &[u8]) -> Result<PrivateDecryptingKey, String> {
    let Private::Rsa(pkcs1) = keys::private_from_pem(pem_text(private_pem)?)? else {
        return Err("the unwrapping key is not an RSA private key".into());
    };
    PrivateDecryptingKey::from_pkcs8(&keys::rsa_pkcs8(&pkcs1)?).map_err(|e| format!("bad RSA private key: {e}"))
}

fn rsa_oaep_unwrap(private_pem: &[u8], wrapped: &[u8], label: Option<&[u8]>) -> Result<Vec<u8>, String> {
    rsa_oaep_decrypt(rsa_private(private_pem)?, wrapped, label)
}

fn rsa_oaep_decrypt(private: PrivateDecryptingKey, wrapped: &[u8], label: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let oaep = OaepPrivateDecryptingKey::new(private).map_err(|e| e.to_string())?;
    let mut out = vec![0; oaep.min_output_size()];
    let n = oaep
        .decrypt(&OAEP_SHA256_MGF1SHA256, wrapped, &mut out, label)
        .map_err(|_| "RSA-OAEP decryption failed (wrong key, label or data)".to_string())?
        .len();
    out.truncate(n);
    Ok(out)
}

fn aes_kwp_wrap(aes: &[u8], key: &[u8]) -> Result<Vec<u8>, String> {
    if key.is_empty() {
        return Err("the key to wrap is empty".into());
    }
    let mut out = vec![0; key.len().div_ceil(8) * 8 + 8];
    let wrapped = match aes.len() {
        16 => aes_kw::KwpAes128::new_from_slice(aes).map_err(|e| e.to_string())?.wrap_key(key, &mut out).map(<[u8]>::len),
        24 => aes_kw::KwpAes192::new_from_slice(aes).map_err(|e| e.to_string())?.wrap_key(key, &mut out).map(<[u8]>::len),
        32 => aes_kw::KwpAes256::new_from_slice(aes).map_err(|e| e.to_string())?.wrap_key(key, &mut out).map(<[u8]>::len),
        n => return Err(format!("the AES key is {n} bytes, not 16, 24 or 32")),
    };
    out.truncate(wrapped.map_err(|e| e.to_string())?);
    Ok(out)
}

fn aes_kwp_unwrap(aes: &[u8], wrapped: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = vec![0; wrapped.len()];
    let n = match aes.len() {
        16 => aes_kw::KwpAes128::new_from_slice(aes).map_err(|e| e.to_string())?.unwrap_key(wrapped, &mut out).map(<[u8]>::len),
        24 => aes_kw::KwpAes192::new_from_slice(aes).map_err(|e| e.to_string())?.unwrap_key(wrapped, &mut out).map(<[u8]>::len),
        32 => aes_kw::KwpAes256::new_from_slice(aes).map_err(|e| e.to_string())?.unwrap_key(wrapped, &mut out).map(<[u8]>::len),
        n => return Err(format!("the AES key is {n} bytes, not 16, 24 or 32")),
    }
    .map_err(|_| "AES-KWP unwrapping failed (wrong key or data)".to_string())?;
    out.truncate(n);
    Ok(out)
}
