//! Snapshots of the KV state, written every `tx_count` transactions at a committed signature
//! entry, to `snapshot_<seqno>.committed` in the snapshot directory.
//!
//! A snapshot holds every live key of every map with the seqno that wrote it, as of signature
//! entry `seqno` (so everything in it is covered by that signature). Public maps are in the
//! clear; private maps are sealed with the ledger secret in force at `seqno` (AES-256-GCM, with
//! the rest of the file as AAD), as the ledger seals them. [`verify`] checks a snapshot
//! against a ledger: the ledger's entry at `seqno` is a signature of `view`, and replaying the
//! ledger's public writes up to it gives exactly the snapshot's public maps.
//!
//! A snapshot also carries what a node needs to go on from it without the ledger before it:
//! the Merkle tree of entries `0..=seqno` (its frontier), the signature entry's record, the
//! views' first seqnos and Raft's membership. A node whose ledger is empty joins from the
//! newest snapshot (fetched from the network, or put in its snapshot directory) and keeps a
//! ledger that starts after it ([`open`]); the private part, sealed over everything else,
//! authenticates the whole file to anyone holding the ledger secret. Snapshots are bounded
//! (the newest [`SNAPSHOTS_KEPT`] are kept) and verifiable against a ledger ([`verify`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use consort_crypto::{LedgerSecret, NodeKey};
use consort_kv::{State, TxId, WriteSet};
use consort_ledger::{Digest, EntryKind, Keep, MerkleTree, SignatureRecord};
use openraft::StoredMembership;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Snapshot files a node keeps; older ones are removed once a newer one is written.
pub const SNAPSHOTS_KEPT: usize = 3;
const FORMAT: u32 = 2;
/// A snapshot larger than this is refused (reading one allocates it whole).
pub const SNAPSHOT_BYTES_MAX: u64 = 4 << 30;

/// Why a snapshot could not be read, opened, stored or checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {size} bytes, more than the {SNAPSHOT_BYTES_MAX}-byte limit", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    /// Not a snapshot, of a format this node does not read, or a part that does not decode.
    #[error("{}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    /// The private part does not open with this service's ledger secrets (another service's
    /// snapshot, or a changed one), or a rekey it records does not open with this node's key.
    #[error("{}: does not open with this service's ledger secrets ({reason}): it was not written by a node of this service, or it was changed", path.display())]
    NotThisService { path: PathBuf, reason: String },
    /// Checked against a ledger, the snapshot is not the state that ledger gives.
    #[error("{0}")]
    DiffersFromLedger(String),
    /// The ledger it was checked against could not be read.
    #[error("the ledger: {0}")]
    Ledger(String),
}
const PREFIX: &str = "snapshot_";
const SUFFIX: &str = ".committed";

/// Where and how often to snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    pub directory: PathBuf,
    /// A snapshot at the first signature at least this many seqnos after the previous one;
    /// 0 writes none (the directory is still where a joining node looks for one).
    pub tx_count: u64,
}

/// One map's live keys: `(key, value, seqno that wrote it)`, in key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapDump {
    pub name: String,
    pub entries: Vec<(ByteBuf, ByteBuf, u64)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    seqno: u64,
    view: u64,
    /// The first seqno of the ledger secret that seals the private part.
    secret_since: u64,
}

/// What a node needs, besides the state, to go on from a snapshot: public, and bound to the
/// sealed private part like the rest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Continuation {
    /// The frontier of the Merkle tree of entries `0..=seqno` ([`MerkleTree::frontier`]).
    pub tree: Vec<ByteBuf>,
    /// The record of the signature entry at `seqno` (its public bytes).
    pub signature: ByteBuf,
    /// `(first seqno, view)` of every view up to `seqno`.
    pub views: Vec<(u64, u64)>,
    /// Raft's membership as of `seqno` (JSON of openraft's `StoredMembership`).
    pub membership: ByteBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    header: Header,
    continuation: Continuation,
    public: Vec<MapDump>,
    /// CBOR of the private `Vec<MapDump>`, sealed (also when it is empty).
    #[serde(with = "serde_bytes")]
    private_sealed: Vec<u8>,
}

fn dump(state: &State, public: bool) -> Vec<MapDump> {
    state
        .map_names()
        .filter(|name| consort_kv::is_public(name) == public)
        .map(|name| MapDump {
            name: name.clone(),
            entries: state.iter_versioned(name).map(|(k, v, at)| (ByteBuf::from(k.clone()), ByteBuf::from(v.to_vec()), at)).collect(),
        })
        .filter(|m| !m.entries.is_empty())
        .collect()
}

fn aad(header: &Header, continuation: &Continuation, public: &[MapDump]) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(&(header, continuation, public), &mut out).expect("CBOR encodes");
    out
}

/// The bytes of a snapshot of `state` (as of signature entry `seqno` in `view`). The private
/// part is sealed even when empty: its tag authenticates the whole file.
pub(crate) fn encode(
    state: &State,
    seqno: u64,
    view: u64,
    continuation: Continuation,
    (secret_since, secret): (u64, &LedgerSecret),
) -> Vec<u8> {
    let header = Header { format: FORMAT, seqno, view, secret_since };
    let public = dump(state, true);
    let mut plain = Vec::new();
    ciborium::into_writer(&dump(state, false), &mut plain).expect("CBOR encodes");
    let private_sealed = secret.seal(&aad(&header, &continuation, &public), &plain);
    let mut out = Vec::new();
    ciborium::into_writer(&File { header, continuation, public, private_sealed }, &mut out).expect("CBOR encodes");
    out
}

fn malformed(path: &Path, reason: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Malformed { path: path.to_owned(), reason: reason.to_string() }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.to_owned(), source }
}

fn read_file(path: &Path) -> Result<File, SnapshotError> {
    let size = std::fs::metadata(path).map_err(io(path))?.len();
    if size > SNAPSHOT_BYTES_MAX {
        return Err(SnapshotError::TooLarge { path: path.to_owned(), size });
    }
    let bytes = std::fs::read(path).map_err(io(path))?;
    let snap: File = ciborium::from_reader(bytes.as_slice()).map_err(|e| malformed(path, format!("not a snapshot: {e}")))?;
    if snap.header.format != FORMAT {
        return Err(malformed(path, format!("snapshot format {} (this node reads {FORMAT})", snap.header.format)));
    }
    Ok(snap)
}

/// The frontier of the tree of entries `0..=seqno` the snapshot carries, checked to fit it.
fn frontier_of(c: &Continuation, seqno: u64) -> Result<Vec<Digest>, String> {
    let peaks: Vec<Digest> = c
        .tree
        .iter()
        .map(|d| Digest::try_from(d.as_slice()).map_err(|_| "a tree hash is not 32 bytes".to_owned()))
        .collect::<Result<_, _>>()?;
    MerkleTree::from_frontier(seqno + 1, &peaks, Keep::All).map_err(|e| e.to_string())?;
    Ok(peaks)
}

/// A snapshot opened to start a node from: the state and everything needed to go on from it.
pub struct Loaded {
    pub path: PathBuf,
    pub txid: TxId,
    pub state: State,
    /// The frontier of the Merkle tree of entries `0..=txid.seqno`.
    pub frontier: Vec<Digest>,
    pub signature: SignatureRecord,
    /// `(first seqno, view)` of every view up to the snapshot.
    pub views: Vec<(u64, u64)>,
    pub membership: StoredMembership<u64, openraft::BasicNode>,
}

/// A snapshot's public part, which needs no secret: what a recovery replays before the
/// members' shares open the private part ([`Public::open_private`]).
pub struct Public {
    pub path: PathBuf,
    pub txid: TxId,
    /// Public maps only.
    pub state: State,
    /// The frontier of the Merkle tree of entries `0..=txid.seqno`.
    pub frontier: Vec<Digest>,
    pub signature: SignatureRecord,
    /// The signature entry's public bytes (its record as JSON).
    pub signature_entry: Vec<u8>,
    pub views: Vec<(u64, u64)>,
    pub membership: StoredMembership<u64, openraft::BasicNode>,
    file: File,
}

/// Reads the snapshot at `path` without opening its private part.
pub fn open_public(path: &Path) -> Result<Public, SnapshotError> {
    let snap = read_file(path)?;
    let Header { seqno, view, .. } = snap.header;
    let bad = |what: String| malformed(path, what);
    let mut state = State::default();
    restore(&mut state, &snap.public);
    let txid = TxId::new(view, seqno);
    state.advance(txid);
    let c = &snap.continuation;
    let signature: SignatureRecord = serde_json::from_slice(&c.signature).map_err(|e| bad(format!("the signature record: {e}")))?;
    let membership = serde_json::from_slice(&c.membership).map_err(|e| bad(format!("the membership: {e}")))?;
    // The tree is checked by the next signature its reader applies: it signs a root over it.
    let frontier = frontier_of(c, seqno).map_err(bad)?;
    Ok(Public {
        path: path.to_owned(),
        txid,
        state,
        frontier,
        signature,
        signature_entry: c.signature.to_vec(),
        views: c.views.clone(),
        membership,
        file: snap,
    })
}

impl Public {
    /// The private maps, opened with `secrets`. The sealed part's tag covers the whole file:
    /// a snapshot that opens was written by a node of the service that holds these secrets.
    pub fn open_private(&self, secrets: &crate::secrets::LedgerSecrets) -> Result<Vec<MapDump>, SnapshotError> {
        let f = &self.file;
        let aad = aad(&f.header, &f.continuation, &f.public);
        let plain = secrets
            .open(f.header.seqno, &aad, &f.private_sealed)
            .map_err(|e| SnapshotError::NotThisService { path: self.path.clone(), reason: e.to_string() })?;
        ciborium::from_reader(plain.as_slice()).map_err(|e| malformed(&self.path, format!("the private part: {e}")))
    }
}

/// Opens the snapshot at `path` with the ledger secrets this node holds. A rekey recorded in
/// the snapshot's state (the secret wrapped for `node`) is adopted first, so a node given the
/// secrets at its join can open a snapshot taken after later rekeys.
pub(crate) fn open(path: &Path, secrets: &crate::secrets::LedgerSecrets, node: (&str, &NodeKey)) -> Result<Loaded, SnapshotError> {
    let public = open_public(path)?;
    let mut state = public.state.clone();
    if let Some(wrapped) = state.get(consort_kv::names::LEDGER_SECRETS, node.0.as_bytes()) {
        let since = state.version_of(consort_kv::names::LEDGER_SECRETS, node.0.as_bytes());
        let mut writes = WriteSet::default();
        writes
            .maps
            .entry(consort_kv::names::LEDGER_SECRETS.to_owned())
            .or_default()
            .insert(node.0.as_bytes().to_vec(), Some(wrapped.to_vec()));
        secrets.apply(since, &writes, node.0, node.1).map_err(|reason| SnapshotError::NotThisService { path: path.to_owned(), reason })?;
    }
    restore(&mut state, &public.open_private(secrets)?);
    state.advance(public.txid);
    let Public { path, txid, frontier, signature, views, membership, .. } = public;
    Ok(Loaded { path, txid, state, frontier, signature, views, membership })
}

pub(crate) fn restore(state: &mut State, maps: &[MapDump]) {
    for m in maps {
        for (k, v, at) in &m.entries {
            state.restore(&m.name, k.to_vec(), v, *at);
        }
    }
}

/// What `consort ledger verify --snapshot` needs from a snapshot to check a ledger that starts
/// after it (no secret needed: the ledger's own signatures vouch for the snapshot's tree).
pub fn verify_start(path: &Path) -> Result<consort_ledger::verify::VerifyStart, SnapshotError> {
    let snap = read_file(path)?;
    let frontier = frontier_of(&snap.continuation, snap.header.seqno).map_err(|e| malformed(path, e))?;
    let service_cert_der = snap
        .public
        .iter()
        .find(|m| m.name == consort_kv::names::SERVICE_INFO)
        .and_then(|m| m.entries.iter().find(|(k, _, _)| k.as_slice() == consort_kv::SINGLETON_KEY))
        .and_then(|(_, v, _)| consort_ledger::verify::service_cert_of_info(v));
    Ok(consort_ledger::verify::VerifyStart { snapshot_seqno: snap.header.seqno, view: snap.header.view, frontier, service_cert_der })
}

/// Stores snapshot bytes fetched from another node as `snapshot_<seqno>.committed` in `dir`.
pub fn store_fetched(dir: &Path, bytes: &[u8]) -> Result<PathBuf, SnapshotError> {
    let snap: File = ciborium::from_reader(bytes).map_err(|e| malformed(Path::new("the fetched snapshot"), e))?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(format!("{PREFIX}{}{SUFFIX}", snap.header.seqno));
    write_atomically(&path, bytes)?;
    Ok(path)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(&tmp))
}

/// The seqno of a snapshot file name, if it is one.
pub fn seqno_of(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?.parse().ok()
}

/// The snapshot files in `dir`, oldest first.
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((seqno_of(e.file_name().to_str()?)?, e.path())))
        .collect();
    found.sort();
    found
}

/// A snapshot to write: the state as of a signature entry, and the secret that seals it.
pub(crate) struct Job {
    pub state: Arc<State>,
    pub seqno: u64,
    pub view: u64,
    pub continuation: Continuation,
    /// The ledger secret in force, and the seqno it applies from.
    pub secret: (u64, LedgerSecret),
}

/// Writes snapshots on a thread of its own; [`Writer::due`] says when the next one is due.
pub(crate) struct Writer {
    config: SnapshotConfig,
    last: u64,
    jobs: SyncSender<Job>,
}

impl Writer {
    /// `keep`: a snapshot never removed (the one this node's ledger starts after).
    pub(crate) fn start(config: SnapshotConfig, keep: Option<u64>) -> Result<Writer, String> {
        std::fs::create_dir_all(&config.directory)
            .map_err(|e| format!("creating the snapshot directory {}: {e}", config.directory.display()))?;
        let last = list(&config.directory).last().map_or(0, |(s, _)| *s);
        // One job waits at most: a snapshot due while another is being written is skipped
        // (the next signature after it takes its place).
        let (jobs, rx) = sync_channel::<Job>(1);
        let dir = config.directory.clone();
        std::thread::Builder::new()
            .name("consort-snapshots".into())
            .spawn(move || {
                for job in rx {
                    if let Err(e) = write(&dir, &job, keep) {
                        tracing::warn!("snapshot at {}: {e}", job.seqno);
                    }
                }
            })
            .map_err(|e| format!("starting the snapshot writer: {e}"))?;
        Ok(Writer { config, last, jobs })
    }

    /// Whether a signature entry at `seqno` should be snapshotted.
    pub(crate) fn due(&self, seqno: u64) -> bool {
        seqno >= self.last.saturating_add(self.config.tx_count)
    }

    pub(crate) fn submit(&mut self, job: Job) {
        let seqno = job.seqno;
        match self.jobs.try_send(job) {
            Ok(()) => self.last = seqno,
            Err(TrySendError::Full(_)) => tracing::debug!("snapshot at {seqno} skipped: the previous one is still being written"),
            Err(TrySendError::Disconnected(_)) => tracing::warn!("snapshot at {seqno} skipped: the writer stopped"),
        }
    }
}

fn write(dir: &Path, job: &Job, keep: Option<u64>) -> Result<(), String> {
    let bytes = encode(&job.state, job.seqno, job.view, job.continuation.clone(), (job.secret.0, &job.secret.1));
    write_atomically(&dir.join(format!("{PREFIX}{}{SUFFIX}", job.seqno)), &bytes).map_err(|e| e.to_string())?;
    let all = list(dir);
    for (_, old) in all.iter().take(all.len().saturating_sub(SNAPSHOTS_KEPT)).filter(|(s, _)| Some(*s) != keep) {
        let _ = std::fs::remove_file(old);
    }
    tracing::info!("snapshot of the state at seqno {} written ({} bytes)", job.seqno, bytes.len());
    Ok(())
}

/// One public map as the ledger's writes leave it: key → (value, seqno that wrote it).
type ReplayedMap = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

/// What [`verify`] found.
#[derive(Debug)]
pub struct SnapshotReport {
    pub seqno: u64,
    pub view: u64,
    pub public_maps: usize,
    pub public_keys: usize,
}

/// Checks the snapshot in `file` against the ledger in `ledger_dir` (which should itself pass
/// `consort ledger verify`).
pub fn verify(file: &Path, ledger_dir: &Path) -> Result<SnapshotReport, SnapshotError> {
    let snap = read_file(file)?;
    let (seqno, view) = (snap.header.seqno, snap.header.view);
    let mut state: BTreeMap<String, ReplayedMap> = BTreeMap::new();
    let mut found = None;
    let ledger = |e: &dyn std::fmt::Display| SnapshotError::Ledger(e.to_string());
    let mut tree = consort_ledger::verify::replay_tree(None).map_err(|e| ledger(&e))?;
    let mut views: Vec<(u64, u64)> = Vec::new();
    let chunks = consort_ledger::files::list_chunks(ledger_dir).map_err(|e| ledger(&e))?;
    'chunks: for chunk in chunks {
        let (records, _) = consort_ledger::files::read_chunk(&ledger_dir.join(chunk.file_name())).map_err(|e| ledger(&e))?;
        for record in records {
            let e = record.entry;
            if e.txid.seqno > seqno {
                break 'chunks;
            }
            let writes = match e.kind {
                EntryKind::Tx => Some(WriteSet::decode(&e.public).map_err(|err| ledger(&format!("public writes of {}: {err}", e.txid)))?),
                EntryKind::Signature => Some(crate::state_machine::signature_writes(&e.public)),
                _ => None,
            };
            if let Some(writes) = writes {
                for (map, keys) in writes.maps {
                    let m = state.entry(map).or_default();
                    for (k, v) in keys {
                        match v {
                            Some(v) => m.insert(k, (v, e.txid.seqno)),
                            None => m.remove(&k),
                        };
                    }
                }
            }
            tree.append(e.leaf()).map_err(|err| ledger(&format!("the Merkle tree at {}: {err}", e.txid)))?;
            if views.last().is_none_or(|(_, v)| *v != e.txid.view) {
                views.push((e.txid.seqno, e.txid.view));
            }
            if e.txid.seqno == seqno {
                found = Some((e.kind, e.txid.view, e.public));
            }
        }
    }
    match found {
        Some((EntryKind::Signature, v, record)) if v == view => {
            let c = &snap.continuation;
            if c.signature.as_slice() != record.as_slice() {
                return Err(SnapshotError::DiffersFromLedger(format!(
                    "the snapshot's signature record differs from the ledger's entry {view}.{seqno}"
                )));
            }
            if frontier_of(c, seqno).map_err(|e| malformed(file, e))? != tree.frontier() {
                return Err(SnapshotError::DiffersFromLedger(format!(
                    "the snapshot's Merkle tree differs from the ledger's entries 0..={seqno}"
                )));
            }
            if c.views != views {
                return Err(SnapshotError::DiffersFromLedger(format!(
                    "the snapshot's views {:?} differ from the ledger's {views:?}",
                    c.views
                )));
            }
        }
        Some((kind, v, _)) => {
            return Err(SnapshotError::DiffersFromLedger(format!(
                "the ledger's entry {v}.{seqno} is a {kind:?} entry, not the signature {view}.{seqno}"
            )))
        }
        None => {
            return Err(SnapshotError::DiffersFromLedger(format!("the ledger has no entry at seqno {seqno}: it ends before the snapshot")))
        }
    }
    let expected: Vec<MapDump> = state
        .into_iter()
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(name, keys)| MapDump {
            name,
            entries: keys.into_iter().map(|(k, (v, at))| (ByteBuf::from(k), ByteBuf::from(v), at)).collect(),
        })
        .collect();
    if expected != snap.public {
        let differs = expected
            .iter()
            .map(|m| m.name.as_str())
            .chain(snap.public.iter().map(|m| m.name.as_str()))
            .find(|name| expected.iter().find(|m| m.name == *name) != snap.public.iter().find(|m| m.name == *name))
            .unwrap_or("?");
        return Err(SnapshotError::DiffersFromLedger(format!(
            "the snapshot's public map {differs:?} differs from the ledger's state at seqno {seqno}"
        )));
    }
    Ok(SnapshotReport { seqno, view, public_maps: snap.public.len(), public_keys: snap.public.iter().map(|m| m.entries.len()).sum() })
}
