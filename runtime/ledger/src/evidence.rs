//! Commit evidence: a per-transaction secret revealed only in receipts of committed
//! transactions, `ce:<view>.<seqno>:<hex>` (as CCF). Its digest is in the Merkle leaf.

use consort_kv::TxId;

use crate::Digest;

/// Derives commit evidence from the ledger secret; every node holding the secret derives the
/// same evidence for the same transaction id, so replicas write identical ledger entries.
#[derive(Clone)]
pub struct CommitSecret {
    key: [u8; 32],
}

impl CommitSecret {
    pub fn from_ledger_secret(secret: &[u8; 32]) -> Self {
        CommitSecret { key: blake3::derive_key("consort 2026 commit evidence v1", secret) }
    }

    pub fn evidence(&self, txid: TxId) -> String {
        let nonce = blake3::keyed_hash(&self.key, txid.to_string().as_bytes());
        format!("ce:{txid}:{}", nonce.to_hex())
    }

    pub fn evidence_digest(&self, txid: TxId) -> Digest {
        evidence_digest(&self.evidence(txid))
    }
}

pub fn evidence_digest(evidence: &str) -> Digest {
    *blake3::hash(evidence.as_bytes()).as_bytes()
}

/// The transaction id that commit evidence names, if it is well formed.
pub fn evidence_txid(evidence: &str) -> Option<TxId> {
    let rest = evidence.strip_prefix("ce:")?;
    let (txid, nonce) = rest.split_once(':')?;
    if nonce.len() != 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    txid.parse().ok()
}
