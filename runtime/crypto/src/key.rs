//! The node's P-384 signing key: signs Merkle roots (ledger signature transactions).

use p384::ecdsa::signature::{Signer, Verifier};
use p384::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p384::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};

use crate::CryptoError;

/// An ECDSA P-384 private key held by a node (or the service identity).
#[derive(Clone)]
pub struct NodeKey {
    key: SigningKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKey(P-384, private)")
    }
}

impl NodeKey {
    pub fn generate() -> Self {
        use p384::elliptic_curve::Generate;
        NodeKey { key: SigningKey::generate() }
    }

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| CryptoError::Key(e.to_string()))?;
        Ok(NodeKey { key })
    }

    pub fn to_pem(&self) -> String {
        // Encoding a valid in-memory key cannot fail.
        self.key.to_pkcs8_pem(LineEnding::LF).expect("encode P-384 key").to_string()
    }

    /// SubjectPublicKeyInfo DER of the public key: hashed into the node id (SPEC §1).
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key.verifying_key().to_public_key_der().expect("encode P-384 public key").into_vec()
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// ECDSA P-384 / SHA-384 signature over `message`, DER encoded.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: Signature = self.key.sign(message);
        let der: DerSignature = sig.to_der();
        der.as_bytes().to_vec()
    }
}

/// Verifies a DER ECDSA P-384/SHA-384 signature with a SubjectPublicKeyInfo DER public key.
pub fn verify_p384_signature(spki_der: &[u8], message: &[u8], sig_der: &[u8]) -> Result<(), CryptoError> {
    let key = VerifyingKey::from_public_key_der(spki_der).map_err(|e| CryptoError::Key(format!("not a P-384 public key: {e}")))?;
    let sig = Signature::from_der(sig_der).map_err(|e| CryptoError::Signature(e.to_string()))?;
    key.verify(message, &sig).map_err(|_| CryptoError::Signature("does not verify".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_round_trip_and_pem() {
        let key = NodeKey::generate();
        let again = NodeKey::from_pem(&key.to_pem()).expect("pem");
        let sig = again.sign(b"root");
        verify_p384_signature(&key.public_key_der(), b"root", &sig).expect("verifies");
        assert!(verify_p384_signature(&key.public_key_der(), b"rooT", &sig).is_err());
    }
}
