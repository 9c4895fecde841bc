//! Keys, certificates, identities and authenticated encryption for Consort.
//!
//! No IO and no async: every function takes bytes or PEM text and returns bytes or PEM text.
//! Signing of ledger roots uses ECDSA P-384 with SHA-384 (`p384`); certificates are made with
//! `rcgen` and read with `x509-parser`; private ledger writes are sealed with AES-256-GCM.

mod aead;
mod cert;
pub mod cose;
mod error;
pub mod jwt;
mod key;
pub mod recovery;
mod signer;
pub mod snp;
mod wrap;

pub use aead::{LedgerSecret, AEAD_NONCE_BYTES, AEAD_TAG_BYTES};
pub use cert::{
    cert_der_from_pem, cert_pem_from_der, csr_public_key, endorse_csr, endorse_node_cert, endorse_previous_identity, id_of_cert_der,
    identity_cert, node_csr, node_id_of_public_key, public_key_pem, renew_service_cert, self_signed_service_cert, validity_period,
    verify_endorsement, Curve, ParsedCert,
};
pub use error::CryptoError;
pub use key::{verify_p384_signature, NodeKey};
pub use signer::{GovMessage, GovSigner};
pub use wrap::{unwrap_secret, wrap_secret_for};

/// Lowercase hex SHA-256 of arbitrary bytes: the id scheme of SPEC §1.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Fills a buffer from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The OS RNG failing is not recoverable: nothing secret may be made without it.
    getrandom::fill(&mut out).expect("operating system random source failed");
    out
}
