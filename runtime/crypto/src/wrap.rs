//! Ledger secrets sealed to one node: ECIES over the node's P-384 key (ephemeral ECDH P-384,
//! an ANSI X9.63 SHA-256 KDF bound to both public keys, AES-256-GCM). A rekey writes the new
//! secret so wrapped for each trusted node, so only those nodes can read it from the ledger.

use aws_lc_rs::agreement::{agree, agree_ephemeral, EphemeralPrivateKey, PrivateKey, UnparsedPublicKey, ECDH_P384};
use aws_lc_rs::rand::SystemRandom;
use p384::pkcs8::{DecodePublicKey, EncodePrivateKey};
use sha2::{Digest, Sha256};

use crate::{CryptoError, LedgerSecret, NodeKey};

/// An uncompressed P-384 point: 0x04 ‖ x ‖ y.
const POINT_BYTES: usize = 97;
const LABEL: &[u8] = b"consort ledger secret wrap v1";

fn kdf(shared: &[u8], ephemeral: &[u8], recipient: &[u8]) -> LedgerSecret {
    let mut h = Sha256::new();
    h.update(shared);
    h.update(1u32.to_be_bytes());
    h.update(LABEL);
    h.update(ephemeral);
    h.update(recipient);
    LedgerSecret::from_bytes(h.finalize().into())
}

/// The uncompressed point of a P-384 SubjectPublicKeyInfo (its BIT STRING ends the DER).
fn point_of_spki(spki_der: &[u8]) -> Result<Vec<u8>, CryptoError> {
    p384::PublicKey::from_public_key_der(spki_der).map_err(|e| CryptoError::Key(format!("not a P-384 public key: {e}")))?;
    match spki_der.len().checked_sub(POINT_BYTES).map(|at| &spki_der[at..]) {
        Some(point) if point[0] == 0x04 => Ok(point.to_vec()),
        _ => Err(CryptoError::Key("not an uncompressed P-384 public key".into())),
    }
}

/// Seals `secret` to the holder of the P-384 key whose SubjectPublicKeyInfo is `spki_der`.
pub fn wrap_secret_for(spki_der: &[u8], secret: &LedgerSecret) -> Result<Vec<u8>, CryptoError> {
    let recipient = point_of_spki(spki_der)?;
    let ephemeral =
        EphemeralPrivateKey::generate(&ECDH_P384, &SystemRandom::new()).map_err(|_| CryptoError::Key("ECDH key generation".into()))?;
    let ephemeral_pub = ephemeral.compute_public_key().map_err(|_| CryptoError::Key("ECDH public key".into()))?.as_ref().to_vec();
    let wrapping = agree_ephemeral(ephemeral, UnparsedPublicKey::new(&ECDH_P384, &recipient), CryptoError::Key("ECDH".into()), |shared| {
        Ok(kdf(shared, &ephemeral_pub, &recipient))
    })?;
    let mut out = ephemeral_pub.clone();
    out.extend(wrapping.seal(LABEL, secret.as_bytes()));
    Ok(out)
}

/// Opens what [`wrap_secret_for`] sealed to `key`.
pub fn unwrap_secret(key: &NodeKey, wrapped: &[u8]) -> Result<LedgerSecret, CryptoError> {
    if wrapped.len() < POINT_BYTES {
        return Err(CryptoError::Decrypt);
    }
    let (ephemeral_pub, sealed) = wrapped.split_at(POINT_BYTES);
    let der = key.signing_key().to_pkcs8_der().map_err(|e| CryptoError::Key(e.to_string()))?;
    let private = PrivateKey::from_private_key_der(&ECDH_P384, der.as_bytes()).map_err(|e| CryptoError::Key(e.to_string()))?;
    let recipient = point_of_spki(&key.public_key_der())?;
    let wrapping = agree(&private, UnparsedPublicKey::new(&ECDH_P384, ephemeral_pub), CryptoError::Decrypt, |shared| {
        Ok(kdf(shared, ephemeral_pub, &recipient))
    })?;
    let raw: [u8; 32] = wrapping.open(LABEL, sealed)?.try_into().map_err(|_| CryptoError::Decrypt)?;
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
        assert_eq!(unwrap_secret(&node, &wrapped).expect("unwrap").as_bytes(), secret.as_bytes());
        assert!(unwrap_secret(&other, &wrapped).is_err(), "another node's key");
        let mut tampered = wrapped.clone();
        tampered[POINT_BYTES + 20] ^= 1;
        assert!(unwrap_secret(&node, &tampered).is_err(), "tampered");
        assert!(unwrap_secret(&node, &wrapped[..50]).is_err(), "truncated");
        assert!(wrap_secret_for(b"not a key", &secret).is_err());
    }
}
