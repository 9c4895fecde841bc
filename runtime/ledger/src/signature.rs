//! The signature transaction's record (SPEC §7): the primary signs the Merkle root of the
//! ledger up to `seqno` with its node key.
//!
//! `seqno`/`view` name the last entry the root covers. Consort computes roots when entries are
//! applied, so a signature entry covers every entry applied when it was proposed: usually all
//! entries before it, possibly fewer under load. Receipts use the first signature that covers
//! their transaction.

use consort_crypto::{verify_endorsement, verify_p384_signature, CryptoError, ParsedCert};
use serde::{Deserialize, Serialize};

use crate::Digest;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRecord {
    /// Base64 DER ECDSA P-384/SHA-384 signature over the 32 root bytes.
    pub sig: String,
    /// The signing node's id.
    pub node: String,
    pub view: u64,
    pub seqno: u64,
    /// Hex Merkle root of entries `0..=seqno`.
    pub root: String,
    /// PEM certificate of the signing node, endorsed by the service identity.
    pub cert: String,
}

impl SignatureRecord {
    pub fn root_bytes(&self) -> Option<Digest> {
        hex::decode(&self.root).ok()?.try_into().ok()
    }

    /// Checks the signature over `root`, that `node` is the certificate's key, and that the
    /// certificate is endorsed by `service_cert_der`.
    pub fn verify(&self, service_cert_der: &[u8]) -> Result<(), CryptoError> {
        use base64::Engine;
        let cert = ParsedCert::from_pem(&self.cert)?;
        if consort_crypto::node_id_of_public_key(&cert.public_key_der) != self.node {
            return Err(CryptoError::Signature("node id does not match the certificate's key".into()));
        }
        verify_endorsement(&cert.der, service_cert_der)?;
        let root = self.root_bytes().ok_or_else(|| CryptoError::Signature("root is not 32 hex bytes".into()))?;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(&self.sig)
            .map_err(|e| CryptoError::Signature(format!("signature is not base64: {e}")))?;
        verify_p384_signature(&cert.public_key_der, &root, &sig)
    }
}
