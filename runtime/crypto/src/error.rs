use thiserror::Error;

/// Why a cryptographic operation on outside input failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The PEM text holds no certificate or no key of the expected kind.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// The certificate's DER does not parse as X.509.
    #[error("invalid certificate: {0}")]
    Certificate(String),
    /// The private key does not parse, or is not on a supported curve.
    #[error("invalid key: {0}")]
    Key(String),
    /// A signature did not verify, or was malformed.
    #[error("bad signature: {0}")]
    Signature(String),
    /// Authenticated decryption failed: wrong key, or the data or its associated data changed.
    #[error("decryption failed: the ciphertext or its associated data was altered, or the key is wrong")]
    Decrypt,
    /// rcgen could not build a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(String),
}
