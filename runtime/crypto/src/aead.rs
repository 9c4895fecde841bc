//! AES-256-GCM sealing under a 256-bit secret (the ledger secret for private writes and
//! snapshots; single-use keys for wrapped secrets).
//!
//! **No (key, nonce) pair repeats.** Each seal draws a fresh 192-bit salt and derives its own
//! AES key and nonce from the secret and the salt (BLAKE3 in key-derivation mode): every key
//! encrypts one message, so GCM's per-key bounds (2^32 messages under random nonces) are never
//! approached, however many writes a secret seals. A pair could repeat only if two seals under
//! one secret drew the same salt, or two derivations collided: for 2^48 seals, both below
//! 2^-96. The primary seals a write before Raft gives it a transaction id, so the nonce cannot be
//! derived from view and seqno as CCF does; the salt needs no state, survives restarts and
//! needs no coordination between nodes that use the same secret in turn.
//!
//! Layout: `salt (24) ‖ ciphertext ‖ tag (16)`. What the first version sealed (`nonce (12) ‖
//! ciphertext ‖ tag`, the secret as the key, a random nonce) still opens: a ledger written by it
//! stays readable. Nothing is sealed that way any more.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::CryptoError;

/// The nonce of the first version's layout (read only).
pub const AEAD_NONCE_BYTES: usize = 12;
pub const AEAD_TAG_BYTES: usize = 16;
/// The random salt each seal draws.
pub const SEAL_SALT_BYTES: usize = 24;
/// The BLAKE3 key-derivation context of a seal's key and nonce.
const SEAL_CONTEXT: &str = "consort 2026-11-30 ledger seal: AES-256-GCM key and nonce from a secret and a salt";

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

    /// The AES key and nonce one seal uses: derived from the secret and the seal's salt.
    fn key_and_nonce(&self, salt: &[u8; SEAL_SALT_BYTES]) -> ([u8; 32], [u8; AEAD_NONCE_BYTES]) {
        let mut derive = blake3::Hasher::new_derive_key(SEAL_CONTEXT);
        derive.update(&self.raw);
        derive.update(salt);
        let mut out = [0u8; 32 + AEAD_NONCE_BYTES];
        derive.finalize_xof().fill(&mut out);
        let (key, nonce) = out.split_at(32);
        (key.try_into().expect("32 bytes"), nonce.try_into().expect("12 bytes"))
    }

    /// Returns `salt ‖ ciphertext ‖ tag`, with `aad` authenticated but not encrypted.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let salt: [u8; SEAL_SALT_BYTES] = crate::random_bytes();
        let (key, nonce) = self.key_and_nonce(&salt);
        let cipher = Aes256Gcm::new((&key).into());
        let sealed =
            cipher.encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad }).expect("AES-GCM encryption of an in-memory buffer");
        let mut out = Vec::with_capacity(SEAL_SALT_BYTES + sealed.len());
        out.extend_from_slice(&salt);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if let Some((salt, body)) = sealed.split_first_chunk::<SEAL_SALT_BYTES>().filter(|(_, body)| body.len() >= AEAD_TAG_BYTES) {
            let (key, nonce) = self.key_and_nonce(salt);
            if let Ok(plain) = Aes256Gcm::new((&key).into()).decrypt(&Nonce::from(nonce), Payload { msg: body, aad }) {
                return Ok(plain);
            }
        }
        // The first version's layout.
        let (nonce, body) = sealed.split_first_chunk::<AEAD_NONCE_BYTES>().ok_or(CryptoError::Decrypt)?;
        if body.len() < AEAD_TAG_BYTES {
            return Err(CryptoError::Decrypt);
        }
        let cipher = Aes256Gcm::new((&self.raw).into());
        cipher.decrypt(&Nonce::from(*nonce), Payload { msg: body, aad }).map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the first version sealed: the secret as the key, a random nonce in front.
    fn sealed_by_the_first_version(s: &LedgerSecret, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; AEAD_NONCE_BYTES] = crate::random_bytes();
        let mut out = nonce.to_vec();
        out.extend(Aes256Gcm::new((&s.raw).into()).encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad }).expect("seal"));
        out
    }

    #[test]
    fn no_key_and_nonce_pair_repeats_and_the_first_layout_still_opens() {
        let s = LedgerSecret::generate();
        // Every seal has its own key and nonce: 100,000 seals, no pair twice (a fixed or short
        // salt, or a derivation that ignored it, would repeat).
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            let sealed = s.seal(b"aad", b"x");
            let salt: [u8; SEAL_SALT_BYTES] = sealed[..SEAL_SALT_BYTES].try_into().expect("salt");
            assert!(seen.insert(s.key_and_nonce(&salt)), "a key and nonce pair repeated");
        }
        // The derivation depends on the secret as well as the salt.
        let salt = [7u8; SEAL_SALT_BYTES];
        assert_ne!(s.key_and_nonce(&salt), LedgerSecret::generate().key_and_nonce(&salt));
        assert_ne!(s.key_and_nonce(&salt).0, *s.as_bytes(), "the secret itself never keys GCM");
        // The same message sealed twice differs; one seal opens only under its secret and aad.
        assert_ne!(s.seal(b"aad", b"same"), s.seal(b"aad", b"same"));
        let old = sealed_by_the_first_version(&s, b"aad", b"written before");
        assert_eq!(s.open(b"aad", &old).expect("the first layout opens"), b"written before");
        assert!(s.open(b"other", &old).is_err());
    }

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
