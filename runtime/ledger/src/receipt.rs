//! Receipts (SPEC §7): everything needed to check, offline and with only the service
//! certificate, that a transaction is in the signed ledger.

use consort_crypto::CryptoError;
use consort_kv::TxId;
use serde::{Deserialize, Serialize};

use crate::entry::{leaf_of, AppRef};
use crate::evidence::{evidence_digest, evidence_txid};
use crate::merkle::{root_from_proof, ProofStep};
use crate::{Digest, SignatureRecord};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeafComponents {
    pub write_set_digest: String,
    pub commit_evidence: String,
    pub claims_digest: String,
}

/// One proof element: exactly one of `left` or `right`, a hex digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofElement {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub right: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The signing node's certificate (PEM), endorsed by the service identity.
    pub cert: String,
    pub node_id: String,
    /// Base64 DER ECDSA P-384/SHA-384 signature over the Merkle root.
    pub signature: String,
    pub proof: Vec<ProofElement>,
    pub leaf_components: LeafComponents,
    /// For a transaction the app ran: the app version, which `write_set_digest` binds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<ReceiptAppVersion>,
}

/// Which app version ran the transaction: `leaf_components.write_set_digest` is
/// `BLAKE3(entry_digest ‖ version:u64 LE ‖ bundle_digest)` ([`crate::AppRef::bind`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptAppVersion {
    pub version: u64,
    /// Hex BLAKE3 of the version's bundle (as `GET /gov/service/javascript-app/versions` lists it).
    pub bundle_digest: String,
    /// Hex digest of the rest of the ledger entry.
    pub entry_digest: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    #[error("malformed receipt: {0}")]
    Malformed(String),
    #[error("receipt does not verify: {0}")]
    Crypto(#[from] CryptoError),
}

fn digest_from_hex(what: &str, s: &str) -> Result<Digest, ReceiptError> {
    if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReceiptError::Malformed(format!("{what} must be 64 lowercase hex digits")));
    }
    hex::decode(s).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| ReceiptError::Malformed(format!("{what} is not hex")))
}

impl Receipt {
    pub fn new(
        sig: &SignatureRecord,
        proof: &[ProofStep],
        write_set_digest: &Digest,
        commit_evidence: String,
        claims_digest: &Digest,
        app: Option<(&AppRef, &Digest)>,
    ) -> Self {
        Receipt {
            cert: sig.cert.clone(),
            node_id: sig.node.clone(),
            signature: sig.sig.clone(),
            proof: proof
                .iter()
                .map(|p| match p {
                    ProofStep::Left(d) => ProofElement { left: Some(hex::encode(d)), right: None },
                    ProofStep::Right(d) => ProofElement { left: None, right: Some(hex::encode(d)) },
                })
                .collect(),
            leaf_components: LeafComponents {
                write_set_digest: hex::encode(write_set_digest),
                commit_evidence,
                claims_digest: hex::encode(claims_digest),
            },
            app_version: app.map(|(app, entry_digest)| ReceiptAppVersion {
                version: app.version,
                bundle_digest: hex::encode(app.bundle_digest),
                entry_digest: hex::encode(entry_digest),
            }),
        }
    }

    /// The transaction the receipt is for, from its commit evidence.
    pub fn txid(&self) -> Option<TxId> {
        evidence_txid(&self.leaf_components.commit_evidence)
    }

    /// Recomputes the root from the leaf and proof, and checks the node's signature over it and
    /// the service's endorsement of the node. Returns the transaction id on success.
    pub fn verify(&self, service_cert_der: &[u8]) -> Result<TxId, ReceiptError> {
        let lc = &self.leaf_components;
        let txid = self.txid().ok_or_else(|| ReceiptError::Malformed("commit_evidence is not ce:<view>.<seqno>:<64 hex>".into()))?;
        let write_set_digest = digest_from_hex("write_set_digest", &lc.write_set_digest)?;
        if let Some(app) = &self.app_version {
            let bound = AppRef { version: app.version, bundle_digest: digest_from_hex("app_version.bundle_digest", &app.bundle_digest)? }
                .bind(&digest_from_hex("app_version.entry_digest", &app.entry_digest)?);
            if bound != write_set_digest {
                return Err(ReceiptError::Malformed("app_version does not match write_set_digest".into()));
            }
        }
        let leaf = leaf_of(&write_set_digest, &evidence_digest(&lc.commit_evidence), &digest_from_hex("claims_digest", &lc.claims_digest)?);
        let steps = self
            .proof
            .iter()
            .map(|p| match (&p.left, &p.right) {
                (Some(l), None) => Ok(ProofStep::Left(digest_from_hex("proof element", l)?)),
                (None, Some(r)) => Ok(ProofStep::Right(digest_from_hex("proof element", r)?)),
                _ => Err(ReceiptError::Malformed("each proof element has exactly one of left/right".into())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let root = root_from_proof(&leaf, &steps);
        let record = SignatureRecord {
            sig: self.signature.clone(),
            node: self.node_id.clone(),
            view: 0,
            seqno: 0,
            root: hex::encode(root),
            cert: self.cert.clone(),
        };
        record.verify(service_cert_der)?;
        Ok(txid)
    }

    /// As [`Receipt::verify`], for a receipt a previous service issued: `endorsements` are the
    /// previous service identities as each recovery endorsed them (`/node/service/previous_identity`),
    /// newest first. Each must be signed by the identity trusted before it, starting from
    /// `service_cert_der`; the receipt verifies against one of them.
    pub fn verify_with_endorsements(&self, service_cert_der: &[u8], endorsements: &[Vec<u8>]) -> Result<TxId, ReceiptError> {
        let mut error = match self.verify(service_cert_der) {
            Ok(txid) => return Ok(txid),
            Err(e) => e,
        };
        let mut trusted = service_cert_der;
        for endorsement in endorsements {
            consort_crypto::verify_endorsement(endorsement, trusted)
                .map_err(|e| ReceiptError::Malformed(format!("a previous identity's endorsement does not verify: {e}")))?;
            match self.verify(endorsement) {
                Ok(txid) => return Ok(txid),
                Err(e) => error = e,
            }
            trusted = endorsement;
        }
        Err(error)
    }
}
