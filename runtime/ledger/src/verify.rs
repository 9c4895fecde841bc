//! Offline verification of a ledger directory (`consort ledger verify DIR`).
//!
//! Checks every record's frame digest and encoding, seqno continuity across chunk files, that
//! every signature entry's root equals the root recomputed from the entries before it, and that
//! every signature verifies under a node certificate endorsed by the service identity. The
//! first problem is reported with its file, seqno and reason.

use std::path::Path;

use consort_kv::{WriteSet, SINGLETON_KEY};

use crate::files::{list_chunks, read_chunk};
use crate::{EntryKind, Keep, MerkleTree, SignatureRecord};

/// How many of the newest leaves a replay of the ledger keeps the tree of: a signature signs the
/// root of a prefix that ends at most this far before it (only the entries appended while the
/// primary signed lie between them), and memory stays bounded however long the ledger is.
pub const REPLAY_TREE_LEAVES: usize = 1 << 18;

/// The tree a replay of the ledger extends: from the frontier of a snapshot's first `n` leaves,
/// or empty; it keeps the nodes over its newest [`REPLAY_TREE_LEAVES`] leaves only.
pub fn replay_tree(start: Option<(u64, &[crate::Digest])>) -> Result<MerkleTree, crate::TreeError> {
    let keep = Keep::Recent { leaves: REPLAY_TREE_LEAVES, dir: None };
    match start {
        Some((n, frontier)) => MerkleTree::from_frontier(n, frontier, keep),
        None => MerkleTree::new(keep),
    }
}

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub chunks: usize,
    /// One past the last intact entry: the number of entries, for a ledger that starts at 0.
    pub entries: u64,
    pub signatures: u64,
    /// The last seqno covered by a verified signature.
    pub last_signed_seqno: Option<u64>,
    /// Entries after `last_signed_seqno`: intact, but not yet covered by a signature.
    pub unsigned_entries: u64,
    /// A torn, unacknowledged write at the end of the open chunk (a node cuts it on restart).
    pub torn_tail: Option<String>,
}

/// The first bad entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: seqno {seqno}: {reason}")]
pub struct VerifyFailure {
    pub file: String,
    pub seqno: u64,
    pub reason: String,
}

fn service_cert_in(public: &[u8]) -> Option<Vec<u8>> {
    let ws = WriteSet::decode(public).ok()?;
    service_cert_of_info(ws.maps.get(consort_kv::names::SERVICE_INFO)?.get(&SINGLETON_KEY[..])?.as_ref()?)
}

/// The service certificate (DER) that a value of [`consort_kv::names::SERVICE_INFO`] names.
pub fn service_cert_of_info(value: &[u8]) -> Option<Vec<u8>> {
    let info: serde_json::Value = serde_json::from_slice(value).ok()?;
    consort_crypto::cert_der_from_pem(info.get("cert")?.as_str()?).ok()
}

/// Where a ledger that does not start at seqno 0 starts: what the snapshot before its first
/// entry says about the entries it does not have.
#[derive(Debug, Clone)]
pub struct VerifyStart {
    /// The seqno of the snapshot's signature entry; the ledger starts one after it.
    pub snapshot_seqno: u64,
    pub view: u64,
    /// The Merkle tree of entries `0..=snapshot_seqno`, as its frontier
    /// ([`MerkleTree::frontier`]).
    pub frontier: Vec<crate::Digest>,
    /// The service certificate as the snapshot's state names it (DER).
    pub service_cert_der: Option<Vec<u8>>,
}

pub fn verify_dir(dir: &Path, pinned_service_cert_pem: Option<&str>) -> Result<VerifyReport, VerifyFailure> {
    verify_dir_from(dir, pinned_service_cert_pem, None)
}

/// As [`verify_dir`], for a ledger that starts after the snapshot `start` describes (a node
/// that joined from a snapshot). Its first signature checks the snapshot's tree too: the root
/// it signs covers every entry before it.
pub fn verify_dir_from(
    dir: &Path,
    pinned_service_cert_pem: Option<&str>,
    start: Option<VerifyStart>,
) -> Result<VerifyReport, VerifyFailure> {
    let fail = |file: &str, seqno: u64, reason: String| VerifyFailure { file: file.to_owned(), seqno, reason };
    let mut service_cert = match pinned_service_cert_pem {
        Some(pem) => Some(consort_crypto::cert_der_from_pem(pem).map_err(|e| fail("--service-cert", 0, e.to_string()))?),
        None => None,
    };
    let chunks = list_chunks(dir).map_err(|e| fail(&dir.display().to_string(), 0, e.to_string()))?;
    if chunks.is_empty() {
        return Err(fail(&dir.display().to_string(), 0, "no ledger chunk files (ledger_*) in this directory".into()));
    }
    let (tree, first, mut last_view, mut last_signed) = match start {
        Some(s) => {
            service_cert = service_cert.or(s.service_cert_der);
            (replay_tree(Some((s.snapshot_seqno + 1, &s.frontier))), s.snapshot_seqno + 1, s.view, Some(s.snapshot_seqno))
        }
        None => (replay_tree(None), 0, 0, None),
    };
    let mut tree = tree.map_err(|e| fail("the snapshot", first, e.to_string()))?;
    let mut report =
        VerifyReport { chunks: chunks.len(), entries: first, signatures: 0, last_signed_seqno: None, unsigned_entries: 0, torn_tail: None };
    let mut last_non_signature: Option<u64> = None;
    for (i, chunk) in chunks.iter().enumerate() {
        let file = chunk.file_name();
        if chunk.first != report.entries {
            return Err(fail(
                &file,
                report.entries,
                format!("chunk starts at seqno {} but seqno {} was expected (missing or overlapping file)", chunk.first, report.entries),
            ));
        }
        let (records, damage) = read_chunk(&dir.join(&file)).map_err(|e| fail(&file, report.entries, e.to_string()))?;
        for record in records {
            let e = record.entry;
            let seqno = report.entries;
            if e.txid.seqno != seqno {
                return Err(fail(&file, seqno, format!("entry at byte {} claims seqno {}", record.offset, e.txid.seqno)));
            }
            if e.txid.view < last_view {
                return Err(fail(&file, seqno, format!("view went back from {last_view} to {}", e.txid.view)));
            }
            last_view = e.txid.view;
            match e.kind {
                EntryKind::Tx => {
                    // Unpinned, the ledger names its service identity: at genesis, and anew
                    // when a recovery starts a new service after a snapshot of the previous one.
                    if pinned_service_cert_pem.is_none() {
                        service_cert = service_cert_in(&e.public).or(service_cert);
                    }
                    last_non_signature = Some(seqno);
                }
                EntryKind::Signature => {
                    let sig: SignatureRecord = serde_json::from_slice(&e.public)
                        .map_err(|err| fail(&file, seqno, format!("signature record does not parse: {err}")))?;
                    if sig.seqno >= seqno {
                        return Err(fail(&file, seqno, format!("signature claims to cover seqno {} at or after itself", sig.seqno)));
                    }
                    let expected = tree.root_at(sig.seqno + 1).map(hex::encode).map_err(|e| fail(&file, seqno, e.to_string()))?;
                    if expected != sig.root {
                        return Err(fail(
                            &file,
                            seqno,
                            format!("signed root does not match the entries 0..={}: an earlier entry was changed", sig.seqno),
                        ));
                    }
                    let cert = service_cert.as_deref().ok_or_else(|| {
                        fail(&file, seqno, "no service certificate: none pinned and none written before this signature".into())
                    })?;
                    sig.verify(cert).map_err(|err| fail(&file, seqno, format!("signature does not verify: {err}")))?;
                    report.signatures += 1;
                    report.last_signed_seqno = report.last_signed_seqno.max(Some(sig.seqno));
                    last_signed = last_signed.max(Some(sig.seqno));
                }
                EntryKind::Blank | EntryKind::Membership => last_non_signature = Some(seqno),
            }
            tree.append(e.leaf()).map_err(|err| fail(&file, seqno, err.to_string()))?;
            report.entries = seqno + 1;
        }
        if let Some((offset, reason)) = damage {
            let is_open_tail = i + 1 == chunks.len() && chunk.last.is_none();
            if is_open_tail && reason.starts_with(crate::files::TORN_WRITE) {
                report.torn_tail = Some(format!("{file} at byte {offset}: {reason}"));
            } else {
                return Err(fail(&file, report.entries, format!("at byte {offset}: {reason}")));
            }
        }
        if let Some(last) = chunk.last {
            if last + 1 != report.entries {
                return Err(fail(
                    &file,
                    report.entries,
                    format!("file name says it ends at seqno {last} but it holds entries up to {}", report.entries as i128 - 1),
                ));
            }
        }
    }
    report.unsigned_entries = unsigned(last_non_signature, last_signed);
    Ok(report)
}

/// How many entries after the last signed seqno are not themselves signatures (approximately:
/// signatures in between are counted too).
pub fn unsigned(last_non_signature: Option<u64>, last_signed: Option<u64>) -> u64 {
    match (last_non_signature, last_signed) {
        (Some(n), Some(s)) => n.saturating_sub(s),
        (Some(n), None) => n + 1,
        (None, _) => 0,
    }
}
