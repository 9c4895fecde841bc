//! Snapshots of the KV state, written every `tx_count` transactions at a committed signature
//! entry, to `snapshot_<seqno>.committed` in the snapshot directory.
//!
//! A snapshot holds every live key of every map with the seqno that wrote it, as of signature
//! entry `seqno` (so everything in it is covered by that signature). Public maps are in the
//! clear; private maps are sealed with the ledger secret in force at `seqno` (AES-256-GCM, the
//! header and public part as AAD), as the ledger seals them. [`verify`] checks a snapshot
//! against a ledger: the ledger's entry at `seqno` is a signature of `view`, and replaying the
//! ledger's public writes up to it gives exactly the snapshot's public maps.
//!
//! Joining nodes still catch up from the ledger; snapshots are written, bounded (the newest
//! [`SNAPSHOTS_KEPT`] are kept) and verifiable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use consort_crypto::LedgerSecret;
use consort_kv::{State, WriteSet};
use consort_ledger::EntryKind;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Snapshot files a node keeps; older ones are removed once a newer one is written.
pub const SNAPSHOTS_KEPT: usize = 3;
const FORMAT: u32 = 1;
const PREFIX: &str = "snapshot_";
const SUFFIX: &str = ".committed";

/// Where and how often to snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    pub directory: PathBuf,
    /// A snapshot at the first signature at least this many seqnos after the previous one.
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

#[derive(Debug, Serialize, Deserialize)]
struct File {
    header: Header,
    public: Vec<MapDump>,
    /// CBOR of the private `Vec<MapDump>`, sealed; empty when there are no private maps.
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

fn aad(header: &Header, public: &[MapDump]) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(&(header, public), &mut out).expect("CBOR encodes");
    out
}

/// The bytes of a snapshot of `state` (as of signature entry `seqno` in `view`).
pub fn encode(state: &State, seqno: u64, view: u64, (secret_since, secret): (u64, &LedgerSecret)) -> Vec<u8> {
    let header = Header { format: FORMAT, seqno, view, secret_since };
    let public = dump(state, true);
    let private = dump(state, false);
    let private_sealed = if private.is_empty() {
        Vec::new()
    } else {
        let mut plain = Vec::new();
        ciborium::into_writer(&private, &mut plain).expect("CBOR encodes");
        secret.seal(&aad(&header, &public), &plain)
    };
    let mut out = Vec::new();
    ciborium::into_writer(&File { header, public, private_sealed }, &mut out).expect("CBOR encodes");
    out
}

/// The seqno of a snapshot file name, if it is one.
fn seqno_of(name: &str) -> Option<u64> {
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
    pub(crate) fn start(config: SnapshotConfig) -> Result<Writer, String> {
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
                    if let Err(e) = write(&dir, &job) {
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

fn write(dir: &Path, job: &Job) -> Result<(), String> {
    let bytes = encode(&job.state, job.seqno, job.view, (job.secret.0, &job.secret.1));
    let name = format!("{PREFIX}{}{SUFFIX}", job.seqno);
    let tmp = dir.join(format!("{name}.tmp"));
    let io = |e: std::io::Error| format!("{}: {e}", tmp.display());
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, dir.join(&name)).map_err(io)?;
    let all = list(dir);
    for (_, old) in all.iter().take(all.len().saturating_sub(SNAPSHOTS_KEPT)) {
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
    pub has_private: bool,
}

/// Checks the snapshot in `file` against the ledger in `ledger_dir` (which should itself pass
/// `consort ledger verify`).
pub fn verify(file: &Path, ledger_dir: &Path) -> Result<SnapshotReport, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let snap: File = ciborium::from_reader(bytes.as_slice()).map_err(|e| format!("{}: not a snapshot: {e}", file.display()))?;
    if snap.header.format != FORMAT {
        return Err(format!("snapshot format {} (this tool reads {FORMAT})", snap.header.format));
    }
    let (seqno, view) = (snap.header.seqno, snap.header.view);
    let mut state: BTreeMap<String, ReplayedMap> = BTreeMap::new();
    let mut found = None;
    let chunks = consort_ledger::files::list_chunks(ledger_dir).map_err(|e| e.to_string())?;
    'chunks: for chunk in chunks {
        let (records, _) = consort_ledger::files::read_chunk(&ledger_dir.join(chunk.file_name())).map_err(|e| e.to_string())?;
        for record in records {
            let e = record.entry;
            if e.txid.seqno > seqno {
                break 'chunks;
            }
            if e.kind == EntryKind::Tx {
                let writes = WriteSet::decode(&e.public).map_err(|err| format!("public writes of {}: {err}", e.txid))?;
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
            if e.txid.seqno == seqno {
                found = Some((e.kind, e.txid.view));
            }
        }
    }
    match found {
        Some((EntryKind::Signature, v)) if v == view => {}
        Some((kind, v)) => return Err(format!("the ledger's entry {v}.{seqno} is a {kind:?} entry, not the signature {view}.{seqno}")),
        None => return Err(format!("the ledger has no entry at seqno {seqno}: it ends before the snapshot")),
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
        return Err(format!("the snapshot's public map {differs:?} differs from the ledger's state at seqno {seqno}"));
    }
    Ok(SnapshotReport {
        seqno,
        view,
        public_maps: snap.public.len(),
        public_keys: snap.public.iter().map(|m| m.entries.len()).sum(),
        has_private: !snap.private_sealed.is_empty(),
    })
}
