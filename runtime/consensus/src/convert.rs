//! Raft entries ⇄ ledger entries. Every node derives the same ledger entry from the same Raft
//! entry (commit evidence comes from the shared ledger secret), so replicas' ledgers are equal.

use consort_kv::TxId;
use consort_ledger::{CommitSecret, EntryKind, LedgerEntry, ZERO_DIGEST};
use openraft::{CommittedLeaderId, EntryPayload};

use crate::types::{Entry, LogId, Proposal, ProposalKind};

pub fn txid_of(log_id: &LogId) -> TxId {
    TxId::new(log_id.leader_id.term, log_id.index)
}

/// The Raft log id of the entry at `txid` (a committed leader id carries the term only).
pub fn log_id_of(txid: TxId) -> LogId {
    LogId::new(CommittedLeaderId::new(txid.view, 0), txid.seqno)
}

pub fn to_ledger(entry: &Entry, commit: &CommitSecret) -> LedgerEntry {
    let txid = txid_of(&entry.log_id);
    let (kind, claims_digest, public, private, app, inputs) = match &entry.payload {
        EntryPayload::Blank => (EntryKind::Blank, ZERO_DIGEST, Vec::new(), Vec::new(), None, Vec::new()),
        EntryPayload::Normal(p) => {
            let kind = match p.kind {
                ProposalKind::Tx => EntryKind::Tx,
                ProposalKind::Signature => EntryKind::Signature,
            };
            (kind, p.claims_digest, p.public.clone(), p.private.clone(), p.app, p.inputs.clone())
        }
        EntryPayload::Membership(m) => {
            let json = serde_json::to_vec(m).expect("membership serialises");
            (EntryKind::Membership, ZERO_DIGEST, json, Vec::new(), None, Vec::new())
        }
    };
    LedgerEntry { txid, kind, commit_evidence_digest: commit.evidence_digest(txid), claims_digest, public, private, app, inputs }
}

pub fn from_ledger(e: LedgerEntry) -> Result<Entry, String> {
    let log_id = log_id_of(e.txid);
    let payload = match e.kind {
        EntryKind::Blank => EntryPayload::Blank,
        EntryKind::Tx | EntryKind::Signature => EntryPayload::Normal(Proposal {
            kind: if e.kind == EntryKind::Tx { ProposalKind::Tx } else { ProposalKind::Signature },
            claims_digest: e.claims_digest,
            public: e.public,
            private: e.private,
            app: e.app,
            inputs: e.inputs,
        }),
        EntryKind::Membership => {
            EntryPayload::Membership(serde_json::from_slice(&e.public).map_err(|err| format!("membership entry {}: {err}", e.txid))?)
        }
    };
    Ok(Entry { log_id, payload })
}
