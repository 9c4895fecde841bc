//! AES-256-GCM sealing of private ledger writes under the ledger secret.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::CryptoError;

pub const AEAD_NONCE_BYTES: usize = 12;
pub const AEAD_TAG_BYTES: usize = 16;

/// The 256-bit key that private ledger writes are encrypted under.
#[derive(Clone)]
pub struct LedgerSecret {
    raw: [u8; 32],
}

impl std::fmt::Debug for LedgerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LedgerSecret(..)")
    }
}

impl LedgerSecret {
    pub fn generate() -> Self {
        LedgerSecret { raw: crate::random_bytes() }
    }

    pub fn from_bytes(raw: [u8; 32]) -> Self {
        LedgerSecret { raw }
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.raw
    }

    /// Returns `nonce ‖ ciphertext ‖ tag`, with `aad` authenticated but not encrypted.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new((&self.raw).into());
        let nonce_bytes: [u8; AEAD_NONCE_BYTES] = crate::random_bytes();
        let nonce = Nonce::from(nonce_bytes);
        let sealed = cipher.encrypt(&nonce, Payload { msg: plaintext, aad }).expect("AES-GCM encryption of an in-memory buffer");
        let mut out = Vec::with_capacity(AEAD_NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < AEAD_NONCE_BYTES + AEAD_TAG_BYTES {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, body) = sealed.split_at(AEAD_NONCE_BYTES);
        let nonce: [u8; AEAD_NONCE_BYTES] = nonce.try_into().map_err(|_| CryptoError::Decrypt)?;
        let cipher = Aes256Gcm::new((&self.raw).into());
        cipher.decrypt(&Nonce::from(nonce), Payload { msg: body, aad }).map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let s = LedgerSecret::generate();
        let sealed = s.seal(b"public", b"secret message");
        assert_eq!(s.open(b"public", &sealed).expect("opens"), b"secret message");
        assert!(s.open(b"publiC", &sealed).is_err());
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(s.open(b"public", &bad).is_err());
        assert!(LedgerSecret::generate().open(b"public", &sealed).is_err());
        assert!(s.open(b"", &[1, 2, 3]).is_err());
    }
}
