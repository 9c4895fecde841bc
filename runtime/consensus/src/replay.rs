//! Reading a service's ledger (from the newest snapshot before the point, if any) back to the
//! state just before one transaction, with that transaction's writes and recorded inputs
//! opened: what `consort replay` runs the transaction's handler again on (issue 23).
//!
//! The ledger is first checked offline as `consort ledger verify` checks it (every entry's
//! integrity, every signature under the service certificate), so a damaged chunk stops the
//! replay naming its file and seqno. Only committed transactions (covered by a signature)
//! are replayed. The files are only read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use consort_crypto::{LedgerSecret, NodeKey};
use consort_kv::{State, TxId, WriteSet};
use consort_ledger::files::{list_chunks, read_chunk};
use consort_ledger::{EntryKind, LedgerEntry};

use crate::secrets::LedgerSecrets;
use crate::snapshot;

/// The ledger secrets to open a ledger with: the service's first one and later ones known up
/// front (all of them, from recovery shares; those given at its join, from a node's
/// directory), and the node whose key opens the secrets of rekeys as the ledger is read.
pub struct Keys {
    pub first: LedgerSecret,
    pub later: Vec<(u64, LedgerSecret)>,
    pub node: Option<(String, NodeKey)>,
}

/// The state just before a transaction, and the transaction.
pub struct Before {
    /// Public and private maps as of the seqno before the transaction.
    pub state: State,
    /// The transaction's ledger entry.
    pub entry: LedgerEntry,
    /// Its writes, public and private, opened.
    pub writes: WriteSet,
    /// Its recorded inputs, opened; `None` when they were not recorded.
    pub inputs: Option<Vec<u8>>,
    /// Values of `public:ccf.internal.app_versions` written after the transaction (key →
    /// value): versions deployed later, which a replay may be asked to run.
    pub later_app_versions: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The snapshot the state was read from, and how many entries were applied after it.
    pub snapshot: Option<PathBuf>,
    pub replayed: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The ledger is missing, unreadable or damaged (the message names file and seqno).
    #[error("{0}")]
    Ledger(String),
    /// No transaction with this id is in the ledger.
    #[error("transaction {0} is not in this ledger: {1}")]
    UnknownTransaction(TxId, String),
    /// The transaction is in the ledger but no signature covers it yet.
    #[error("transaction {0} is not committed: the ledger's last signature covers seqno {1}")]
    NotCommitted(TxId, u64),
    /// The transaction was not run by the app (governance, a signature, a view change).
    #[error("transaction {0} was not run by the app ({1}): only app transactions can be replayed")]
    NotAnAppTransaction(TxId, &'static str),
    /// The ledger secrets given do not open the ledger.
    #[error("the ledger secrets do not open this ledger: {0}")]
    Secrets(String),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
}

/// Reads the ledger in `ledger_dir` (snapshots from `snapshot_dir`) up to the transaction
/// `txid`, after checking it under `service_cert_pem`.
pub fn read_before(
    ledger_dir: &Path,
    snapshot_dir: Option<&Path>,
    service_cert_pem: &str,
    keys: Keys,
    txid: TxId,
) -> Result<Before, ReplayError> {
    let ledger = Checked::read(ledger_dir, snapshot_dir, service_cert_pem)?;
    if txid.seqno < ledger.first {
        return Err(ReplayError::UnknownTransaction(txid, format!("this ledger starts at seqno {}", ledger.first)));
    }
    if txid.seqno >= ledger.report.entries {
        return Err(ReplayError::UnknownTransaction(
            txid,
            format!("this ledger ends at seqno {}", ledger.report.entries.saturating_sub(1)),
        ));
    }
    if ledger.last_signed().is_none_or(|s| s < txid.seqno) {
        return Err(ReplayError::NotCommitted(txid, ledger.last_signed().unwrap_or(0)));
    }
    let mut found = ledger.states_before(keys, &[txid], true)?;
    found.pop().ok_or_else(|| ReplayError::UnknownTransaction(txid, "no entry at that seqno was read".into()))
}

/// The last `count` committed app transactions of the ledger with recorded inputs, each with
/// the state just before it, oldest first: what a proposed app is tried on.
pub fn read_recorded(
    ledger_dir: &Path,
    snapshot_dir: Option<&Path>,
    service_cert_pem: &str,
    keys: Keys,
    count: usize,
) -> Result<Vec<Before>, ReplayError> {
    let ledger = Checked::read(ledger_dir, snapshot_dir, service_cert_pem)?;
    let Some(last_signed) = ledger.last_signed().filter(|_| count > 0) else { return Ok(Vec::new()) };
    let mut recorded = std::collections::VecDeque::new();
    for file in &ledger.files {
        let (records, _) = read_chunk(file).map_err(|e| ReplayError::Ledger(format!("{}: {e}", file.display())))?;
        for e in records.into_iter().map(|r| r.entry) {
            if e.txid.seqno <= last_signed && e.txid.seqno >= ledger.first && e.kind == EntryKind::Tx && !e.inputs.is_empty() {
                if recorded.len() == count {
                    recorded.pop_front();
                }
                recorded.push_back(e.txid);
            }
        }
    }
    if recorded.is_empty() {
        return Ok(Vec::new());
    }
    ledger.states_before(keys, recorded.make_contiguous(), false)
}

/// A ledger directory checked as `consort ledger verify` checks it.
struct Checked {
    /// Its chunk files, in order.
    files: Vec<PathBuf>,
    /// The seqno of its first entry.
    first: u64,
    snapshots: Vec<(u64, PathBuf)>,
    report: consort_ledger::verify::VerifyReport,
}

impl Checked {
    fn read(ledger_dir: &Path, snapshot_dir: Option<&Path>, service_cert_pem: &str) -> Result<Checked, ReplayError> {
        let ledger = ReplayError::Ledger;
        let chunks = list_chunks(ledger_dir).map_err(|e| ledger(format!("the ledger {}: {e}", ledger_dir.display())))?;
        let first =
            chunks.first().map(|c| c.first).ok_or_else(|| ledger(format!("{} holds no ledger chunk file", ledger_dir.display())))?;
        let snapshots = snapshot_dir.map(snapshot::list).unwrap_or_default();
        let continued = match first.checked_sub(1) {
            None => None,
            Some(s) => Some(snapshots.iter().find(|(at, _)| *at == s).map(|(_, p)| p.clone()).ok_or_else(|| {
                ledger(format!(
                    "the ledger {} starts at seqno {first}: the snapshot at seqno {s} it continues is needed",
                    ledger_dir.display()
                ))
            })?),
        };
        let verify_start = continued.as_deref().map(snapshot::verify_start).transpose()?;
        let report = consort_ledger::verify::verify_dir_from(ledger_dir, Some(service_cert_pem), verify_start).map_err(|f| {
            ledger(format!("the ledger {} does not verify: {} at seqno {}: {}", ledger_dir.display(), f.file, f.seqno, f.reason))
        })?;
        let files = chunks.iter().map(|c| ledger_dir.join(c.file_name())).collect();
        Ok(Checked { files, first, snapshots, report })
    }

    fn last_signed(&self) -> Option<u64> {
        self.report.last_signed_seqno
    }

    /// The state before each of `targets` (ascending), from the newest snapshot before the
    /// first; with `later_versions`, the app versions recorded after the last one too.
    fn states_before(&self, keys: Keys, targets: &[TxId], later_versions: bool) -> Result<Vec<Before>, ReplayError> {
        let ledger = ReplayError::Ledger;
        let (Some(first_target), Some(last_target)) = (targets.first(), targets.last()) else { return Ok(Vec::new()) };
        let secrets = LedgerSecrets::new(keys.first, keys.later);
        let node = keys.node.as_ref();
        let start = self.snapshots.iter().rev().find(|(at, _)| *at < first_target.seqno && *at + 1 >= self.first).map(|(_, p)| p.clone());
        let (mut state, after) = match &start {
            Some(path) => {
                let (state, at) = open_snapshot(path, &secrets, node)?;
                (state, Some(at))
            }
            None => (State::default(), None),
        };
        let mut replayed = 0;
        let mut out = Vec::new();
        let mut pending = targets.iter().peekable();
        let mut later_app_versions = BTreeMap::new();
        for file in &self.files {
            let (records, _) = read_chunk(file).map_err(|e| ledger(format!("{}: {e}", file.display())))?;
            for record in records {
                let e = record.entry;
                let seqno = e.txid.seqno;
                if after.is_some_and(|a| seqno <= a) {
                    continue;
                }
                if seqno > last_target.seqno {
                    if !later_versions {
                        break;
                    }
                    // Later entries only for the app versions they record.
                    if e.kind == EntryKind::Tx {
                        if let Some(m) = WriteSet::decode(&e.public).ok().and_then(|w| w.maps.get(consort_kv::names::APP_VERSIONS).cloned())
                        {
                            later_app_versions.extend(m.into_iter().filter_map(|(k, v)| Some((k, v?))));
                        }
                    }
                    continue;
                }
                let writes = match e.kind {
                    EntryKind::Tx => {
                        let writes = crate::state_machine::decode_writes(&e, &secrets).map_err(ReplayError::Secrets)?;
                        if let Some((id, key)) = node {
                            secrets.apply(seqno, &writes, id, key).map_err(ReplayError::Secrets)?;
                        }
                        writes
                    }
                    EntryKind::Signature => crate::state_machine::signature_writes(&e.public),
                    _ => WriteSet::default(),
                };
                if let Some(target) = pending.next_if(|t| t.seqno == seqno) {
                    let (entry, inputs) = the_transaction(e.clone(), *target, &secrets)?;
                    out.push(Before {
                        state: state.clone(),
                        entry,
                        writes: writes.clone(),
                        inputs,
                        later_app_versions: BTreeMap::new(),
                        snapshot: start.clone(),
                        replayed,
                    });
                }
                state.apply(e.txid, &writes);
                replayed += 1;
            }
        }
        if let Some(missing) = pending.next() {
            return Err(ReplayError::UnknownTransaction(*missing, "no entry at that seqno was read".into()));
        }
        if let Some(last) = out.last_mut() {
            last.later_app_versions = later_app_versions;
        }
        Ok(out)
    }
}

/// The entry at the transaction's seqno, checked to be that transaction and an app's, with its
/// inputs opened (none if they were not recorded).
fn the_transaction(e: LedgerEntry, txid: TxId, secrets: &LedgerSecrets) -> Result<(LedgerEntry, Option<Vec<u8>>), ReplayError> {
    if e.txid != txid {
        return Err(ReplayError::UnknownTransaction(txid, format!("the transaction at seqno {} is {}", txid.seqno, e.txid)));
    }
    match e.kind {
        EntryKind::Tx if e.app.is_some() => {}
        EntryKind::Tx => return Err(ReplayError::NotAnAppTransaction(txid, "a governance or internal transaction")),
        EntryKind::Signature => return Err(ReplayError::NotAnAppTransaction(txid, "a signature")),
        EntryKind::Blank => return Err(ReplayError::NotAnAppTransaction(txid, "the start of a view")),
        EntryKind::Membership => return Err(ReplayError::NotAnAppTransaction(txid, "a change of the nodes' configuration")),
    }
    let inputs = if e.inputs.is_empty() {
        None
    } else {
        let aad = LedgerEntry::inputs_aad(&e.claims_digest, &e.public);
        Some(secrets.open(e.txid.seqno, &aad, &e.inputs).map_err(|err| ReplayError::Secrets(format!("the inputs of {}: {err}", e.txid)))?)
    };
    Ok((e, inputs))
}

/// The whole state a snapshot holds (private maps opened), and its seqno.
fn open_snapshot(path: &Path, secrets: &LedgerSecrets, node: Option<&(String, NodeKey)>) -> Result<(State, u64), ReplayError> {
    if let Some((id, key)) = node {
        let loaded = snapshot::open(path, secrets, (id, key))?;
        return Ok((loaded.state, loaded.txid.seqno));
    }
    let public = snapshot::open_public(path)?;
    let mut state = public.state.clone();
    snapshot::restore(&mut state, &public.open_private(secrets)?);
    state.advance(public.txid);
    Ok((state, public.txid.seqno))
}
