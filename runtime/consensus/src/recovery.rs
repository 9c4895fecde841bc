//! Reading a lost service's ledger (and snapshot) to start a new service from it (SPEC §9).
//!
//! [`read_previous`] checks the previous ledger offline against the previous service
//! certificate (every entry's integrity, every signature), then replays its public writes, from
//! the newest usable snapshot if there is one, up to its last signature entry: what follows the
//! last signature was never committed and is dropped. The files are only read. The recovery
//! node starts a new ledger after that signature ([`write_start_snapshot`] leaves the state
//! where the node and nodes joining it find it, as a snapshot of the new service), and once the
//! members' shares open the previous ledger secrets, [`Previous::private_state`] reads the
//! private maps back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use consort_crypto::LedgerSecret;
use consort_kv::{State, TxId, WriteSet};
use consort_ledger::files::{list_chunks, read_chunk};
use consort_ledger::verify::replay_tree;
use consort_ledger::{EntryKind, LedgerEntry, MerkleTree, SignatureRecord};
use serde_bytes::ByteBuf;

use crate::secrets::LedgerSecrets;
use crate::snapshot::{self, MapDump};

/// Where the previous service's committed state is: what the private recovery reads again
/// once the members' shares open its secrets (kept in the recovery node's directory).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PreviousFiles {
    pub ledger_dir: PathBuf,
    /// The snapshot the replay started from.
    pub snapshot: Option<PathBuf>,
    /// The last signature entry: the new service continues after it.
    pub last: TxId,
}

/// The previous service as its files left it, public maps replayed.
pub struct Previous {
    pub files: PreviousFiles,
    /// Public maps as of `last`.
    pub state: State,
    pub tree: MerkleTree,
    pub views: Vec<(u64, u64)>,
    /// The signature entry at `last` (its public bytes) and its record.
    pub signature_entry: Vec<u8>,
    pub signature: SignatureRecord,
    /// Ledger entries replayed (after the snapshot).
    pub replayed: u64,
    /// Uncommitted entries after `last` that were dropped.
    pub dropped: u64,
}

/// Why a lost service's files cannot be recovered from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The previous ledger directory holds no chunk file.
    #[error("the previous ledger {} holds no ledger chunk file", .0.display())]
    NoLedger(PathBuf),
    /// The previous ledger cannot be read, or does not verify under the service certificate
    /// given (another service's, or a damaged ledger).
    #[error("{0}")]
    Ledger(String),
    /// Nothing in the previous ledger was committed: it holds no signature.
    #[error("the previous ledger {} holds no signature: nothing in it was committed", .0.display())]
    NothingCommitted(PathBuf),
    /// The snapshot the ledger continues from is missing, or does not match the ledger.
    #[error("{0}")]
    SnapshotMismatch(String),
    /// A snapshot could not be read, opened or written.
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    /// The private maps do not open with the ledger secrets given.
    #[error("{0}")]
    Private(String),
}

fn verify_failure(dir: &Path, f: consort_ledger::verify::VerifyFailure) -> String {
    let hint = if f.reason.contains("does not verify") {
        " (is the previous service certificate the one this ledger was written under?)"
    } else {
        ""
    };
    format!("the previous ledger {} does not verify: {} at seqno {}: {}{hint}", dir.display(), f.file, f.seqno, f.reason)
}

/// Reads the previous service from `ledger_dir` (and the newest usable snapshot in
/// `snapshot_dir`), checking it against `service_cert_pem`. `progress` is set to the seqno of
/// each signature entry as the replay reaches it.
pub fn read_previous(
    ledger_dir: &Path,
    snapshot_dir: Option<&Path>,
    service_cert_pem: &str,
    progress: &AtomicU64,
) -> Result<Previous, RecoveryError> {
    let ledger = RecoveryError::Ledger;
    let chunks = list_chunks(ledger_dir).map_err(|e| ledger(format!("the previous ledger {}: {e}", ledger_dir.display())))?;
    let first = chunks.first().map(|c| c.first).ok_or_else(|| RecoveryError::NoLedger(ledger_dir.to_owned()))?;
    let snapshots = snapshot_dir.map(snapshot::list).unwrap_or_default();
    // A ledger that starts after a snapshot (its node joined from one) is checked from it.
    let verify_start = match first.checked_sub(1) {
        None => None,
        Some(s) => {
            let (_, path) = snapshots.iter().find(|(at, _)| *at == s).ok_or_else(|| {
                RecoveryError::SnapshotMismatch(format!(
                    "the previous ledger {} starts at seqno {first}: the snapshot at seqno {s} it continues is needed ({})",
                    ledger_dir.display(),
                    snapshot_dir.map_or("no previous snapshot directory was given".into(), |d| format!("not in {}", d.display()))
                ))
            })?;
            Some(snapshot::verify_start(path)?)
        }
    };
    let report = consort_ledger::verify::verify_dir_from(ledger_dir, Some(service_cert_pem), verify_start)
        .map_err(|f| ledger(verify_failure(ledger_dir, f)))?;
    if report.last_signed_seqno.is_none() {
        return Err(RecoveryError::NothingCommitted(ledger_dir.to_owned()));
    }
    // The newest snapshot whose seqno the ledger holds (or continues from).
    let start = snapshots.iter().rev().find(|(at, _)| *at + 1 >= first && *at < report.entries).map(|(_, p)| p.clone());
    let mut replay = match &start {
        Some(path) => {
            let s = snapshot::open_public(path)?;
            Replay {
                state: s.state,
                tree: replay_tree(Some((s.txid.seqno + 1, &s.frontier))).map_err(|e| ledger(format!("{}: {e}", path.display())))?,
                views: s.views,
                last: Some((s.txid, s.signature_entry)),
                pending: Vec::new(),
                replayed: 0,
            }
        }
        None => {
            let tree = replay_tree(None).map_err(|e| ledger(e.to_string()))?;
            Replay { state: State::default(), tree, views: Vec::new(), last: None, pending: Vec::new(), replayed: 0 }
        }
    };
    let after = replay.last.clone();
    if let Some((t, _)) = &after {
        progress.store(t.seqno, Ordering::Relaxed);
    }
    for chunk in chunks {
        let file = ledger_dir.join(chunk.file_name());
        let (records, _) = read_chunk(&file).map_err(|e| ledger(format!("{}: {e}", file.display())))?;
        for record in records {
            if let Some((snapshot_txid, snapshot_signature)) = &after {
                let e = &record.entry;
                if e.txid == *snapshot_txid && (e.kind != EntryKind::Signature || e.public != *snapshot_signature) {
                    return Err(RecoveryError::SnapshotMismatch(format!(
                        "the snapshot {} does not match the previous ledger: its signature differs from the entry at {}",
                        start.as_deref().map_or("(none)".into(), |p| p.display().to_string()),
                        e.txid
                    )));
                }
                if e.txid.seqno <= snapshot_txid.seqno {
                    continue;
                }
            }
            replay.push(record.entry).map_err(|e| ledger(format!("{}: {e}", file.display())))?;
            if let Some((t, _)) = &replay.last {
                progress.store(t.seqno, Ordering::Relaxed);
            }
        }
    }
    let dropped = replay.pending.len() as u64;
    let (last, signature_entry) = replay.last.ok_or_else(|| RecoveryError::NothingCommitted(ledger_dir.to_owned()))?;
    let signature: SignatureRecord =
        serde_json::from_slice(&signature_entry).map_err(|e| ledger(format!("the signature record at {last}: {e}")))?;
    // A signature after the snapshot signs a root over the snapshot's tree and the entries
    // replayed after it (the snapshot's own signature is checked against the ledger above).
    let signed_after_snapshot = after.as_ref().is_none_or(|(t, _)| last.seqno > t.seqno);
    if signed_after_snapshot && replay.tree.root_at(signature.seqno + 1).map(hex::encode).ok().as_deref() != Some(signature.root.as_str()) {
        return Err(RecoveryError::SnapshotMismatch(format!(
            "the snapshot {} does not match the previous ledger: the signature at {last} signs another Merkle root",
            start.as_deref().map_or("(none)".into(), |p| p.display().to_string())
        )));
    }
    Ok(Previous {
        files: PreviousFiles { ledger_dir: ledger_dir.to_owned(), snapshot: start, last },
        state: replay.state,
        tree: replay.tree,
        views: replay.views,
        signature_entry,
        signature,
        replayed: replay.replayed,
        dropped,
    })
}

/// Public replay state: entries wait in `pending` until a signature entry covers them.
struct Replay {
    state: State,
    tree: MerkleTree,
    views: Vec<(u64, u64)>,
    /// The last signature entry applied, and its public bytes.
    last: Option<(TxId, Vec<u8>)>,
    pending: Vec<LedgerEntry>,
    replayed: u64,
}

impl Replay {
    fn push(&mut self, e: LedgerEntry) -> Result<(), String> {
        let is_signature = e.kind == EntryKind::Signature;
        self.pending.push(e);
        if !is_signature {
            return Ok(());
        }
        for e in std::mem::take(&mut self.pending) {
            match e.kind {
                EntryKind::Tx => {
                    let writes = WriteSet::decode(&e.public).map_err(|err| format!("public writes of {}: {err}", e.txid))?;
                    self.state.apply(e.txid, &writes);
                }
                EntryKind::Signature => self.state.apply(e.txid, &crate::state_machine::signature_writes(&e.public)),
                _ => self.state.advance(e.txid),
            }
            self.tree.append(e.leaf()).map_err(|err| format!("the Merkle tree at {}: {err}", e.txid))?;
            if self.views.last().is_none_or(|(_, v)| *v != e.txid.view) {
                self.views.push((e.txid.seqno, e.txid.view));
            }
            self.replayed += 1;
            if e.kind == EntryKind::Signature {
                self.last = Some((e.txid, e.public));
            }
        }
        Ok(())
    }
}

/// Private map → live key → value.
pub type PrivateState = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

impl PreviousFiles {
    /// The previous service's private maps as of [`PreviousFiles::last`], opened with its ledger
    /// secrets (`(first seqno, secret)`, ascending, the first from 0): the snapshot's private
    /// part, then every private write of the ledger after it. Blocking (reads the files).
    pub fn private_state(&self, secrets: &[(u64, LedgerSecret)]) -> Result<PrivateState, RecoveryError> {
        let (first, later) = secrets.split_first().ok_or_else(|| RecoveryError::Private("no ledger secret".into()))?;
        let secrets = LedgerSecrets::new(first.1.clone(), later.to_vec());
        let mut out = PrivateState::new();
        let mut after = None;
        if let Some(path) = &self.snapshot {
            let s = snapshot::open_public(path)?;
            after = Some(s.txid.seqno);
            for MapDump { name, entries } in s.open_private(&secrets)? {
                out.entry(name).or_default().extend(entries.into_iter().map(|(k, v, _)| (k.into_vec(), v.into_vec())));
            }
        }
        for chunk in list_chunks(&self.ledger_dir).map_err(|e| RecoveryError::Ledger(e.to_string()))? {
            let file = self.ledger_dir.join(chunk.file_name());
            let (records, _) = read_chunk(&file).map_err(|e| RecoveryError::Ledger(format!("{}: {e}", file.display())))?;
            for record in records {
                let e = record.entry;
                if after.is_some_and(|a| e.txid.seqno <= a) || e.kind != EntryKind::Tx || e.private.is_empty() {
                    continue;
                }
                if e.txid.seqno > self.last.seqno {
                    break;
                }
                // Opened as the state machine opens an entry; only the private maps are kept.
                let writes = crate::state_machine::decode_writes(&e, &secrets)
                    .map_err(|err| RecoveryError::Private(format!("{}: {err}", file.display())))?;
                for (map, keys) in writes.maps.into_iter().filter(|(map, _)| !consort_kv::is_public(map)) {
                    let m = out.entry(map).or_default();
                    for (k, v) in keys {
                        match v {
                            Some(v) => m.insert(k, v),
                            None => m.remove(&k),
                        };
                    }
                }
            }
        }
        out.retain(|_, keys| !keys.is_empty());
        Ok(out)
    }
}

/// Writes the previous service's public state at its last signature as a snapshot of the new
/// service into `dir`: the recovery node starts from it (its ledger starts after it, as a node
/// that joined from a snapshot), and so does a node that joins it. Raft's membership is the
/// recovery node alone. Sealed (with no private map) under the new service's first secret.
pub fn write_start_snapshot(dir: &Path, previous: &Previous, node: (u64, &str), secret: &LedgerSecret) -> Result<PathBuf, RecoveryError> {
    use std::collections::{BTreeMap as Map, BTreeSet};
    let voters = BTreeSet::from([node.0]);
    let membership = openraft::Membership::new(vec![voters], Map::from([(node.0, openraft::BasicNode::new(node.1))]));
    let last = previous.files.last;
    let stored = openraft::StoredMembership::new(Some(crate::convert::log_id_of(last)), membership);
    let continuation = snapshot::Continuation {
        tree: previous.tree.frontier().iter().map(|d| ByteBuf::from(d.to_vec())).collect(),
        signature: ByteBuf::from(previous.signature_entry.clone()),
        views: previous.views.clone(),
        membership: ByteBuf::from(serde_json::to_vec(&stored).expect("membership serialises")),
    };
    let bytes = snapshot::encode(&previous.state, last.seqno, last.view, continuation, (0, secret));
    Ok(snapshot::store_fetched(dir, &bytes)?)
}
