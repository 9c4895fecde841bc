//! Ledger secrets sealed to one node with HPKE (RFC 9180, base mode) in the suite
//! DHKEM(P-384, HKDF-SHA384), HKDF-SHA384, AES-256-GCM: rustls' implementation on aws-lc-rs,
//! checked there against the RFC's test vectors. A rekey writes the new secret so sealed for
//! each trusted node, so only those nodes can read it from the ledger.
//!
//! A wrapped secret is the KEM's encapsulated key (an uncompressed P-384 point, `Nenc` bytes)
//! followed by the AEAD ciphertext of the 32 secret bytes.

use p384::elliptic_curve::sec1::ToSec1Point;
use p384::pkcs8::DecodePublicKey;
use rustls::crypto::aws_lc_rs::hpke::DH_KEM_P384_HKDF_SHA384_AES_256 as SUITE;
use rustls::crypto::hpke::{EncapsulatedSecret, Hpke, HpkePrivateKey, HpkePublicKey};

use crate::{CryptoError, LedgerSecret, NodeKey};

/// `Nenc` of DHKEM(P-384): the encapsulated key is an uncompressed point, 0x04 ‖ x ‖ y.
const ENC_BYTES: usize = 97;
/// HPKE's `info`: what the key schedule binds the secret to.
const INFO: &[u8] = b"consort ledger secret wrap v2";

/// The recipient's public key as HPKE takes it, decoded from its SubjectPublicKeyInfo.
fn hpke_public_key(spki_der: &[u8]) -> Result<HpkePublicKey, CryptoError> {
    let key = p384::PublicKey::from_public_key_der(spki_der).map_err(|e| CryptoError::Key(format!("not a P-384 public key: {e}")))?;
    Ok(HpkePublicKey(key.to_sec1_point(false).as_bytes().to_vec()))
}

/// Seals `secret` to the holder of the P-384 key whose SubjectPublicKeyInfo is `spki_der`.
pub fn wrap_secret_for(spki_der: &[u8], secret: &LedgerSecret) -> Result<Vec<u8>, CryptoError> {
    let recipient = hpke_public_key(spki_der)?;
    let (enc, sealed) = SUITE.seal(INFO, &[], secret.as_bytes(), &recipient).map_err(|e| CryptoError::Key(format!("HPKE seal: {e}")))?;
    debug_assert_eq!(enc.0.len(), ENC_BYTES);
    let mut out = enc.0;
    out.extend(sealed);
    Ok(out)
}

/// Opens what [`wrap_secret_for`] sealed to `key`.
pub fn unwrap_secret(key: &NodeKey, wrapped: &[u8]) -> Result<LedgerSecret, CryptoError> {
    if wrapped.len() < ENC_BYTES {
        return Err(CryptoError::Decrypt);
    }
    let (enc, sealed) = wrapped.split_at(ENC_BYTES);
    let private = HpkePrivateKey::from(key.signing_key().to_bytes().to_vec());
    let opened = SUITE.open(&EncapsulatedSecret(enc.to_vec()), INFO, &[], sealed, &private).map_err(|_| CryptoError::Decrypt)?;
    let raw: [u8; 32] = opened.try_into().map_err(|_| CryptoError::Decrypt)?;
    Ok(LedgerSecret::from_bytes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recipient_opens_a_wrapped_secret() {
        let (node, other) = (NodeKey::generate(), NodeKey::generate());
        let secret = LedgerSecret::generate();
        let wrapped = wrap_secret_for(&node.public_key_der(), &secret).expect("wrap");
        assert_eq!(wrapped.len(), ENC_BYTES + 32 + 16, "enc, the secret, the GCM tag");
        assert_eq!(unwrap_secret(&node, &wrapped).expect("unwrap").as_bytes(), secret.as_bytes());
        assert!(unwrap_secret(&other, &wrapped).is_err(), "another node's key");
        for at in [0, 1, ENC_BYTES - 1, ENC_BYTES, ENC_BYTES + 20, wrapped.len() - 1] {
            let mut tampered = wrapped.clone();
            tampered[at] ^= 1;
            assert!(unwrap_secret(&node, &tampered).is_err(), "byte {at} tampered");
        }
        assert!(unwrap_secret(&node, &wrapped[..50]).is_err(), "truncated in the key");
        assert!(unwrap_secret(&node, &wrapped[..wrapped.len() - 1]).is_err(), "truncated in the ciphertext");
        assert!(wrap_secret_for(b"not a key", &secret).is_err());
        // Each wrap draws a fresh ephemeral key: the same secret never wraps to the same bytes.
        assert_ne!(wrap_secret_for(&node.public_key_der(), &secret).expect("wrap"), wrapped);
    }

    /// What we hand HPKE is what a standard implementation expects: a secret sealed with the
    /// suite directly (to the key pair HPKE generates) opens through the same calls we make.
    #[test]
    fn the_suite_round_trips_with_its_own_key_pair() {
        let (public, private) = SUITE.generate_key_pair().expect("key pair");
        assert_eq!((public.0.len(), private.secret_bytes().len()), (ENC_BYTES, 48), "an uncompressed point and a P-384 scalar");
        let (enc, sealed) = SUITE.seal(INFO, &[], b"thirty-two bytes of ledger secret", &public).expect("seal");
        assert_eq!(SUITE.open(&enc, INFO, &[], &sealed, &private).expect("open"), b"thirty-two bytes of ledger secret");
        assert!(SUITE.open(&enc, b"another purpose", &[], &sealed, &private).is_err(), "info binds the secret");
    }
}
