//! The applied ledger as the node sees it: the Merkle tree, the views, the signatures, and the
//! receipt facts of recent entries. What it keeps in memory is bounded by configuration, not by
//! the ledger's length: the newest entries' facts and tree nodes, the newest signature records,
//! and the tree's frontier; older tree nodes and signature seqnos go to files it derives again
//! at every start, and older facts and records are read back from the ledger when a receipt
//! needs them.

use std::collections::VecDeque;
use std::path::PathBuf;

use consort_kv::TxId;
use consort_ledger::spill::{SpillError, SpillVec};
use consort_ledger::{AppRef, Digest, EntryKind, Keep, LedgerEntry, MerkleTree, SignatureRecord, TreeError};

/// The facts of an entry a receipt needs besides the tree: the digests its leaf is made of,
/// and the app version that ran it.
#[derive(Debug, Clone, Copy)]
pub struct EntryMeta {
    pub entry_digest: [u8; 32],
    pub claims_digest: [u8; 32],
    pub app: Option<AppRef>,
}

impl EntryMeta {
    pub fn of(le: &LedgerEntry) -> EntryMeta {
        EntryMeta { entry_digest: le.entry_digest(), claims_digest: le.claims_digest, app: le.app }
    }

    /// The leaf's first component ([`LedgerEntry::write_set_digest`]).
    pub fn write_set_digest(&self) -> [u8; 32] {
        self.app.map_or(self.entry_digest, |app| app.bind(&self.entry_digest))
    }
}

/// How many recent entries' facts and tree nodes a node keeps in memory unless configured
/// otherwise; older ones are read back from files when a receipt needs them.
pub const RECENT_ENTRIES: usize = 20_000;

/// How many recent signature records stay in memory (older ones are read from their entries).
const SIGNATURE_RECORDS_KEPT: usize = 64;

/// What the applied ledger keeps in memory, and where the rest goes.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// The facts and tree nodes of this many recent entries stay in memory.
    pub recent_entries: usize,
    /// Where older tree nodes and signature seqnos are written (emptied at start). `None`: all
    /// of them stay in memory (tests, tools).
    pub dir: Option<PathBuf>,
}

impl Retention {
    fn keep(&self) -> Keep {
        match &self.dir {
            Some(dir) => Keep::Recent { leaves: self.recent_entries, dir: Some(dir.join("tree")) },
            None => Keep::All,
        }
    }
}

/// Where the record of the signature covering an entry is.
#[derive(Debug, Clone)]
pub enum Covering {
    /// In memory.
    Record(SignatureRecord),
    /// In the ledger entry at this seqno (a signature entry) that covers up to `covered`.
    Entry { seqno: u64, covered: u64 },
}

impl Covering {
    /// The last seqno the signature covers.
    pub fn covered(&self) -> u64 {
        match self {
            Covering::Record(r) => r.seqno,
            Covering::Entry { covered, .. } => *covered,
        }
    }
}

/// Every applied signature entry as `(its seqno, the last seqno it covers)`, in order, with the
/// newest records.
#[derive(Debug)]
struct Signatures {
    seqnos: SpillVec<16>,
    records: VecDeque<(u64, SignatureRecord)>,
}

impl Signatures {
    fn new(retention: &Retention) -> Result<Signatures, SpillError> {
        if let Some(dir) = &retention.dir {
            std::fs::create_dir_all(dir).map_err(|source| SpillError::Io { path: dir.clone(), source })?;
        }
        let path = retention.dir.as_ref().map(|d| d.join("signatures"));
        let window = if path.is_some() { SIGNATURE_RECORDS_KEPT } else { usize::MAX };
        Ok(Signatures { seqnos: SpillVec::new(0, window, path.as_deref())?, records: VecDeque::new() })
    }

    fn push(&mut self, seqno: u64, record: SignatureRecord) -> Result<(), SpillError> {
        let mut item = [0u8; 16];
        item[..8].copy_from_slice(&seqno.to_le_bytes());
        item[8..].copy_from_slice(&record.seqno.to_le_bytes());
        self.seqnos.push(item)?;
        self.records.push_back((seqno, record));
        if self.records.len() > SIGNATURE_RECORDS_KEPT {
            self.records.pop_front();
        }
        Ok(())
    }

    fn last(&self) -> Option<&SignatureRecord> {
        self.records.back().map(|(_, r)| r)
    }

    /// The first signature that covers `seqno`.
    fn covering(&self, seqno: u64) -> Result<Option<Covering>, SpillError> {
        let covered = |item: &[u8; 16]| u64::from_le_bytes(item[8..].try_into().expect("8 bytes"));
        let at = self.seqnos.partition_point(|item| covered(item) < seqno)?;
        if at == self.seqnos.len() {
            return Ok(None);
        }
        let item = self.seqnos.get(at)?;
        let entry = u64::from_le_bytes(item[..8].try_into().expect("8 bytes"));
        Ok(Some(match self.records.binary_search_by_key(&entry, |(s, _)| *s) {
            Ok(i) => Covering::Record(self.records[i].1.clone()),
            Err(_) => Covering::Entry { seqno: entry, covered: covered(&item) },
        }))
    }
}

/// Why the applied ledger could not be set up or take an entry: its Merkle tree, or the
/// signature index it keeps in files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppliedError {
    #[error("the Merkle tree{at}: {source}")]
    Tree { at: String, source: TreeError },
    #[error("the signature index{at}: {source}")]
    Signatures { at: String, source: SpillError },
}

/// The applied ledger. A node that started from a snapshot knows the entries after it only.
#[derive(Debug)]
pub struct AppliedLedger {
    pub tree: MerkleTree,
    /// The first seqno this node applied: 0, or one after the snapshot it started from.
    pub base: u64,
    /// The facts of the most recent entries, `recent[s - recent_from]` for seqno `s`: at most
    /// `recent_max` of them.
    recent: VecDeque<EntryMeta>,
    recent_from: u64,
    recent_max: usize,
    /// `(first seqno, view)` of every view so far (from the snapshot for those before `base`).
    pub views: Vec<(u64, u64)>,
    signatures: Signatures,
    pub last_applied: TxId,
    /// The last applied entry that is not a signature: what the next signature must cover.
    pub last_non_signature: Option<u64>,
}

impl AppliedLedger {
    /// An empty ledger from seqno 0 on.
    pub fn new(retention: &Retention) -> Result<AppliedLedger, AppliedError> {
        let tree = MerkleTree::new(retention.keep()).map_err(|source| AppliedError::Tree { at: String::new(), source })?;
        AppliedLedger::starting_at(0, tree, retention)
    }

    fn starting_at(base: u64, tree: MerkleTree, retention: &Retention) -> Result<AppliedLedger, AppliedError> {
        Ok(AppliedLedger {
            tree,
            base,
            recent: VecDeque::new(),
            recent_from: base,
            recent_max: retention.recent_entries.max(1),
            views: Vec::new(),
            signatures: Signatures::new(retention).map_err(|source| AppliedError::Signatures { at: String::new(), source })?,
            last_applied: TxId::default(),
            last_non_signature: None,
        })
    }

    /// The ledger of a node that starts from a snapshot.
    pub fn from_snapshot(s: &crate::snapshot::Loaded, retention: &Retention) -> Result<AppliedLedger, AppliedError> {
        let at = format!(" of the snapshot at {}", s.txid);
        let tree = MerkleTree::from_frontier(s.txid.seqno + 1, &s.frontier, retention.keep())
            .map_err(|source| AppliedError::Tree { at: at.clone(), source })?;
        let mut ledger = AppliedLedger::starting_at(s.txid.seqno + 1, tree, retention)?;
        ledger.views = s.views.clone();
        ledger.signatures.push(s.txid.seqno, s.signature.clone()).map_err(|source| AppliedError::Signatures { at, source })?;
        ledger.last_applied = s.txid;
        Ok(ledger)
    }

    /// The highest seqno covered by an applied (hence committed) signature.
    pub fn last_signed(&self) -> Option<u64> {
        self.signatures.last().map(|s| s.seqno)
    }

    /// The newest applied signature's record.
    pub fn last_signature(&self) -> Option<&SignatureRecord> {
        self.signatures.last()
    }

    /// The first applied signature that covers `seqno`, if any.
    pub fn covering_signature(&self, seqno: u64) -> Result<Option<Covering>, SpillError> {
        self.signatures.covering(seqno)
    }

    pub fn is_signed(&self, seqno: u64) -> bool {
        self.last_signed().is_some_and(|s| seqno <= s)
    }

    /// Entries that the next signature must cover.
    pub fn unsigned(&self) -> u64 {
        consort_ledger::verify::unsigned(self.last_non_signature, self.last_signed())
    }

    /// The view of applied entry `seqno` (also before a snapshot the node started from).
    pub fn view_of(&self, seqno: u64) -> Option<u64> {
        if seqno > self.last_applied.seqno {
            return None;
        }
        let at = self.views.partition_point(|(first, _)| *first <= seqno);
        at.checked_sub(1).map(|i| self.views[i].1)
    }

    /// The facts of the entry at `seqno`, if it is among the recent ones this node keeps.
    pub fn meta(&self, seqno: u64) -> Option<&EntryMeta> {
        self.recent.get(usize::try_from(seqno.checked_sub(self.recent_from)?).ok()?)
    }

    /// The Merkle root of the entries up to `seqno`.
    pub fn root_at(&self, seqno: u64) -> Result<Digest, TreeError> {
        self.tree.root_at(seqno + 1)
    }

    /// Adds an applied entry; `signed` is its record when it is a signature entry.
    pub fn push(&mut self, le: &LedgerEntry, signed: Option<SignatureRecord>) -> Result<(), AppliedError> {
        self.tree.append(le.leaf()).map_err(|source| AppliedError::Tree { at: format!(" at {}", le.txid), source })?;
        self.recent.push_back(EntryMeta::of(le));
        if self.recent.len() > self.recent_max {
            self.recent.pop_front();
            self.recent_from += 1;
        }
        self.last_applied = le.txid;
        if self.views.last().is_none_or(|(_, v)| *v != le.txid.view) {
            self.views.push((le.txid.seqno, le.txid.view));
        }
        if le.kind != EntryKind::Signature {
            self.last_non_signature = Some(le.txid.seqno);
        }
        if let Some(record) = signed {
            self.signatures
                .push(le.txid.seqno, record)
                .map_err(|source| AppliedError::Signatures { at: format!(" at {}", le.txid), source })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(view: u64, seqno: u64, kind: EntryKind) -> LedgerEntry {
        LedgerEntry {
            txid: TxId::new(view, seqno),
            kind,
            commit_evidence_digest: [0; 32],
            claims_digest: [seqno as u8; 32],
            public: vec![seqno as u8; 10],
            private: vec![],
            app: (kind == EntryKind::Tx && seqno.is_multiple_of(3)).then_some(AppRef { version: seqno, bundle_digest: [1; 32] }),
            inputs: Vec::new(),
        }
    }

    fn record(covered: u64) -> SignatureRecord {
        SignatureRecord { sig: String::new(), node: "n".into(), view: 1, seqno: covered, root: format!("{covered}"), cert: String::new() }
    }

    fn tempdir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("consort-applied-{name}-{}", std::process::id()))
    }

    #[test]
    fn views_are_known_for_every_applied_entry_and_facts_for_the_recent_ones() {
        let mut ledger = AppliedLedger::new(&Retention { recent_entries: 3, dir: None }).expect("new");
        for (view, seqno) in [(1, 0), (1, 1), (1, 2), (2, 3), (2, 4), (4, 5), (4, 6)] {
            ledger.push(&entry(view, seqno, EntryKind::Tx), None).expect("push");
        }
        let views: Vec<Option<u64>> = (0..8).map(|s| ledger.view_of(s)).collect();
        assert_eq!(views, [Some(1), Some(1), Some(1), Some(2), Some(2), Some(4), Some(4), None], "none beyond the last applied");
        // Only the last three entries' facts stay, and they are the right ones.
        assert!((0..4).all(|s| ledger.meta(s).is_none()));
        for s in 4..7 {
            let meta = ledger.meta(s).expect("recent");
            let e = entry(ledger.view_of(s).expect("view"), s, EntryKind::Tx);
            assert_eq!((meta.claims_digest, meta.write_set_digest()), (e.claims_digest, e.write_set_digest()));
        }
        assert!(ledger.meta(7).is_none());
        assert_eq!(ledger.tree.len(), 7, "the tree has every leaf");
    }

    /// Signatures every tenth entry, far more than stay in memory: each entry finds the first
    /// signature covering it, from memory when recent and from the index file otherwise, and
    /// the tree proves every entry as one kept wholly in memory does.
    #[test]
    fn every_entry_finds_its_covering_signature_and_proof_however_old() {
        let dir = tempdir("covering");
        let mut spilled = AppliedLedger::new(&Retention { recent_entries: 8, dir: Some(dir.clone()) }).expect("new");
        let mut all = AppliedLedger::new(&Retention { recent_entries: 8, dir: None }).expect("new");
        let n = 10 * (SIGNATURE_RECORDS_KEPT as u64 + 40);
        for s in 0..n {
            let (kind, signed) = if s % 10 == 9 { (EntryKind::Signature, Some(record(s - 1))) } else { (EntryKind::Tx, None) };
            spilled.push(&entry(1, s, kind), signed.clone()).expect("push");
            all.push(&entry(1, s, kind), signed).expect("push");
        }
        assert_eq!(spilled.last_signed(), Some(n - 2));
        assert_eq!(spilled.last_signature().map(|r| r.seqno), Some(n - 2));
        let (mut from_memory, mut from_entries) = (0, 0);
        for s in 0..n {
            let covering = spilled.covering_signature(s).expect("index");
            if s > n - 2 {
                assert!(covering.is_none(), "{s} is not signed yet");
                continue;
            }
            let covering = covering.expect("signed");
            // The signature at 10k+9 covers 10k+8: entries 10k..=10k+8 and the previous signature.
            let expected = if s % 10 == 9 { s + 9 } else { s - s % 10 + 8 };
            assert_eq!(covering.covered(), expected, "seqno {s}");
            match covering {
                Covering::Record(r) => {
                    assert_eq!(r.seqno, expected);
                    from_memory += 1;
                }
                Covering::Entry { seqno, covered } => {
                    assert_eq!((seqno, covered), (expected + 1, expected));
                    from_entries += 1;
                }
            }
            assert_eq!(spilled.tree.proof(s, expected + 1).expect("proof"), all.tree.proof(s, expected + 1).expect("proof"));
        }
        assert!(from_memory > 0 && from_entries > 0, "{from_memory} from memory, {from_entries} from entries");
        assert_eq!(spilled.root_at(n - 1).expect("root"), all.root_at(n - 1).expect("root"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
