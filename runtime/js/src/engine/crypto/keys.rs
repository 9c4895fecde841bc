//! Key material: PEM parsing into one enum per role, and key generation. Private keys come as
//! PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`); public keys as
//! SPKI (`PUBLIC KEY`), PKCS#1 (`RSA PUBLIC KEY`) or inside a `CERTIFICATE`. New keys are written
//! as OpenSSL (and so CCF) writes them: PKCS#8 and SPKI, LF line endings.

use super::unsupported;
use super::CryptoFailure::{self, Error, Range};
use aws_lc_rs::encoding::AsDer;
use der::{Decode, Encode};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use spki::ObjectIdentifier;

pub const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
pub const EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
pub const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
pub const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
pub const X25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");

/// A public key of a kind ccf.crypto knows.
pub enum Public {
    P256(p256::PublicKey),
    P384(p384::PublicKey),
    /// The PKCS#1 `RSAPublicKey` DER.
    Rsa(Vec<u8>),
    Ed25519([u8; 32]),
    X25519([u8; 32]),
}

/// A private key of a kind ccf.crypto knows.
pub enum Private {
    P256(p256::SecretKey),
    P384(p384::SecretKey),
    /// The PKCS#1 `RSAPrivateKey` DER.
    Rsa(Vec<u8>),
    /// The 32-byte seed.
    Ed25519([u8; 32]),
    X25519([u8; 32]),
}

/// Every PEM block of `text`, or why it is not PEM.
pub fn pem_blocks(text: &str) -> Result<Vec<pem::Pem>, String> {
    let blocks = pem::parse_many(text).map_err(|e| format!("not PEM: {e}"))?;
    if blocks.is_empty() {
        return Err("no PEM block found".into());
    }
    Ok(blocks)
}

fn first_block(text: &str) -> Result<pem::Pem, String> {
    pem_blocks(text)?.into_iter().next().ok_or_else(|| "no PEM block found".into())
}

pub fn to_pem(label: &str, der: Vec<u8>) -> String {
    pem::encode_config(&pem::Pem::new(label, der), pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))
}

/// A public key from a PEM public key or certificate.
pub fn public_from_pem(text: &str) -> Result<Public, String> {
    let block = first_block(text)?;
    match block.tag() {
        "PUBLIC KEY" => public_from_spki(block.contents()),
        "RSA PUBLIC KEY" => {
            pkcs1::RsaPublicKey::<der::asn1::UintRef>::try_from(block.contents()).map_err(|e| format!("bad PKCS#1 public key: {e}"))?;
            Ok(Public::Rsa(block.contents().to_vec()))
        }
        "CERTIFICATE" => {
            let (_, cert) = x509_parser::parse_x509_certificate(block.contents()).map_err(|e| format!("bad certificate: {e}"))?;
            public_from_spki(cert.public_key().raw)
        }
        other => Err(format!("expected a PEM public key or certificate, found {other:?}")),
    }
}

pub fn public_from_spki(der: &[u8]) -> Result<Public, String> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(der).map_err(|e| format!("bad public key: {e}"))?;
    let raw = spki.subject_public_key.as_bytes().ok_or("bad public key: unaligned bit string")?;
    let fixed = |raw: &[u8]| <[u8; 32]>::try_from(raw).map_err(|_| "bad public key: not 32 bytes".to_string());
    match spki.algorithm.oid {
        EC => match spki.algorithm.parameters_oid().map_err(|e| format!("bad EC parameters: {e}"))? {
            P256 => p256::PublicKey::from_sec1_bytes(raw).map(Public::P256).map_err(|e| format!("bad P-256 point: {e}")),
            P384 => p384::PublicKey::from_sec1_bytes(raw).map(Public::P384).map_err(|e| format!("bad P-384 point: {e}")),
            P521 => Err("secp521r1 keys are not supported by this version of Consort".into()),
            other => Err(format!("unsupported curve {other}")),
        },
        RSA => {
            pkcs1::RsaPublicKey::<der::asn1::UintRef>::try_from(raw).map_err(|e| format!("bad RSA public key: {e}"))?;
            Ok(Public::Rsa(raw.to_vec()))
        }
        ED25519 => Ok(Public::Ed25519(fixed(raw)?)),
        X25519 => Ok(Public::X25519(fixed(raw)?)),
        other => Err(format!("unsupported public key algorithm {other}")),
    }
}

/// A private key from PEM.
pub fn private_from_pem(text: &str) -> Result<Private, String> {
    let block = first_block(text)?;
    let der = block.contents();
    match block.tag() {
        "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(der)
            .map(Private::P256)
            .or_else(|_| p384::SecretKey::from_sec1_der(der).map(Private::P384))
            .map_err(|_| "the EC private key is not on P-256 or P-384 (secp521r1 is not supported by this version of Consort)".into()),
        "RSA PRIVATE KEY" => {
            pkcs1::RsaPrivateKey::<der::asn1::UintRef>::try_from(der).map_err(|e| format!("bad PKCS#1 private key: {e}"))?;
            Ok(Private::Rsa(der.to_vec()))
        }
        "PRIVATE KEY" => {
            let info = pkcs8::PrivateKeyInfoRef::from_der(der).map_err(|e| format!("bad PKCS#8 private key: {e}"))?;
            let inner = info.private_key.as_bytes();
            let seed = || -> Result<[u8; 32], String> {
                let octets = <&der::asn1::OctetStringRef>::from_der(inner).map_err(|e| format!("bad private key: {e}"))?;
                <[u8; 32]>::try_from(octets.as_bytes()).map_err(|_| "bad private key: not 32 bytes".into())
            };
            match info.algorithm.oid {
                EC => match info.algorithm.parameters_oid().map_err(|e| format!("bad EC parameters: {e}"))? {
                    P256 => p256::SecretKey::from_pkcs8_der(der).map(Private::P256).map_err(|e| format!("bad P-256 key: {e}")),
                    P384 => p384::SecretKey::from_pkcs8_der(der).map(Private::P384).map_err(|e| format!("bad P-384 key: {e}")),
                    P521 => Err("secp521r1 keys are not supported by this version of Consort".into()),
                    other => Err(format!("unsupported curve {other}")),
                },
                RSA => {
                    pkcs1::RsaPrivateKey::<der::asn1::UintRef>::try_from(inner).map_err(|e| format!("bad RSA private key: {e}"))?;
                    Ok(Private::Rsa(inner.to_vec()))
                }
                ED25519 => Ok(Private::Ed25519(seed()?)),
                X25519 => Ok(Private::X25519(seed()?)),
                other => Err(format!("unsupported private key algorithm {other}")),
            }
        }
        other => Err(format!("expected a PEM private key, found {other:?}")),
    }
}

/// The SPKI DER of an RSA public key given as PKCS#1.
pub fn rsa_spki(pkcs1: &[u8]) -> Result<Vec<u8>, String> {
    let spki = spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifier { oid: RSA, parameters: Some(der::asn1::AnyRef::NULL) },
        subject_public_key: der::asn1::BitStringRef::from_bytes(pkcs1).map_err(|e| e.to_string())?,
    };
    spki.to_der().map_err(|e| e.to_string())
}

/// PKCS#8 DER of an RSA private key given as PKCS#1.
pub fn rsa_pkcs8(pkcs1: &[u8]) -> Result<Vec<u8>, String> {
    let octets = der::asn1::OctetStringRef::new(pkcs1).map_err(|e| e.to_string())?;
    let info = pkcs8::PrivateKeyInfoRef {
        algorithm: spki::AlgorithmIdentifier { oid: RSA, parameters: Some(der::asn1::AnyRef::NULL) },
        private_key: octets,
        public_key: None,
    };
    info.to_der().map_err(|e| e.to_string())
}

/// PKCS#8 (v1) DER of an Ed25519 or X25519 private key.
pub fn okp_pkcs8(oid: ObjectIdentifier, key: &[u8; 32]) -> Result<Vec<u8>, String> {
    let inner = der::asn1::OctetStringRef::new(key).map_err(|e| e.to_string())?.to_der().map_err(|e| e.to_string())?;
    let info = pkcs8::PrivateKeyInfoRef {
        algorithm: spki::AlgorithmIdentifier { oid, parameters: None },
        private_key: der::asn1::OctetStringRef::new(&inner).map_err(|e| e.to_string())?,
        public_key: None,
    };
    info.to_der().map_err(|e| e.to_string())
}

/// SPKI DER of an Ed25519 or X25519 public key.
pub fn okp_spki(oid: ObjectIdentifier, key: &[u8; 32]) -> Result<Vec<u8>, String> {
    let spki = spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifier { oid, parameters: None },
        subject_public_key: der::asn1::BitStringRef::from_bytes(key).map_err(|e| e.to_string())?,
    };
    spki.to_der().map_err(|e| e.to_string())
}

/// The public half of an Ed25519 seed or an X25519 private key.
pub fn okp_public(oid: ObjectIdentifier, key: &[u8; 32]) -> Result<[u8; 32], String> {
    let public: Vec<u8> = if oid == ED25519 {
        use aws_lc_rs::signature::KeyPair;
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(key).map_err(|e| format!("bad Ed25519 key: {e}"))?;
        pair.public_key().as_ref().to_vec()
    } else {
        let private = aws_lc_rs::agreement::PrivateKey::from_private_key(&aws_lc_rs::agreement::X25519, key)
            .map_err(|_| "bad X25519 key".to_string())?;
        private.compute_public_key().map_err(|_| "bad X25519 key".to_string())?.as_ref().to_vec()
    };
    <[u8; 32]>::try_from(public.as_slice()).map_err(|_| "unexpected public key size".into())
}

/// `generateAesKey(bits)`.
pub fn generate_aes(bits: i64) -> Result<Vec<u8>, CryptoFailure> {
    if !matches!(bits, 128 | 192 | 256) {
        return Err(Range("invalid key size (not one of 128, 192, 256)".into()));
    }
    let key: [u8; 32] = consort_crypto::random_bytes();
    Ok(key[..(bits / 8) as usize].to_vec())
}

/// `generateRsaKeyPair(size, exponent?)`: aws-lc generates 2048, 3072, 4096 and 8192-bit keys
/// with exponent 65537; other values are refused with an error naming them.
pub fn generate_rsa(bits: i64, exponent: Option<f64>) -> Result<(String, String), CryptoFailure> {
    use aws_lc_rs::rsa::KeySize;
    let fail = |e: &str| Error(format!("Failed to generate RSA key pair: {e}"));
    if let Some(e) = exponent {
        if e != 65537.0 {
            return Err(fail(&format!("public exponent {e} is not supported by this version of Consort (only 65537)")));
        }
    }
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        8192 => KeySize::Rsa8192,
        _ => return Err(fail(&format!("key size {bits} is not supported (2048, 3072, 4096 or 8192)"))),
    };
    let pair = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|e| fail(&e.to_string()))?;
    let private = pair.as_der().map_err(|e| fail(&e.to_string()))?;
    let public = aws_lc_rs::signature::KeyPair::public_key(&pair).as_der().map_err(|e| fail(&e.to_string()))?;
    Ok((to_pem("PRIVATE KEY", private.as_ref().to_vec()), to_pem("PUBLIC KEY", public.as_ref().to_vec())))
}

/// `generateEcdsaKeyPair(curve)`: PKCS#8 private and SPKI public PEM.
pub fn generate_ecdsa(curve: &str) -> Result<(String, String), CryptoFailure> {
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

/// `generateEddsaKeyPair(curve)`: `curve25519` (Ed25519) or `x25519`.
pub fn generate_eddsa(curve: &str) -> Result<(String, String), CryptoFailure> {
    let oid = match curve {
        "curve25519" => ED25519,
        "x25519" => X25519,
        _ => return Err(Range("Unsupported curve id, supported: curve25519, x25519".into())),
    };
    let fail = |e: String| Error(format!("Failed to generate EdDSA key pair: {e}"));
    let key: [u8; 32] = consort_crypto::random_bytes();
    let public = okp_public(oid, &key).map_err(fail)?;
    Ok((to_pem("PRIVATE KEY", okp_pkcs8(oid, &key).map_err(fail)?), to_pem("PUBLIC KEY", okp_spki(oid, &public).map_err(fail)?)))
}
