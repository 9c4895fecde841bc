//! Applies committed entries, in order, to the KV store and the applied ledger (Merkle tree,
//! views, signatures: [`crate::applied`]).

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use crate::secrets::LedgerSecrets;
use consort_crypto::NodeKey;
use consort_kv::{Store, TxId, WriteSet};
use consort_ledger::{CommitSecret, EntryKind, LedgerEntry, SignatureRecord};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError, StoredMembership};

use crate::applied::AppliedLedger;
use crate::convert::{to_ledger, txid_of};
use crate::types::{Entry, LogId, StorageError, TypeConfig};

/// What the state machine shares with the node.
pub struct Shared {
    pub store: Arc<Store>,
    pub ledger: RwLock<AppliedLedger>,
    /// Bumped after every applied batch; the signer and readiness checks wait on it.
    pub applied: tokio::sync::watch::Sender<TxId>,
}

impl Shared {
    pub fn ledger(&self) -> std::sync::RwLockReadGuard<'_, AppliedLedger> {
        self.ledger.read().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct StateMachine {
    shared: Arc<Shared>,
    secrets: Arc<LedgerSecrets>,
    /// Who this node is, to find the ledger secrets wrapped for it in rekey transactions.
    node: (String, NodeKey),
    commit: CommitSecret,
    last_applied: Option<LogId>,
    membership: StoredMembership<u64, openraft::BasicNode>,
    /// Writes a snapshot of the state at every `tx_count`-th signature, if configured.
    snapshots: Option<crate::snapshot::Writer>,
    /// The snapshot this node started from, which Raft may send to a peer that needs entries
    /// this node's ledger does not have.
    started_from: Option<(SnapshotMeta<u64, openraft::BasicNode>, std::path::PathBuf)>,
    /// Set to close the Raft log's open chunk when governance asks (`ccf.node.triggerLedgerChunk`).
    chunk_request: Arc<std::sync::atomic::AtomicBool>,
    /// Whether governance asked for a snapshot at the next signature (`ccf.node.triggerSnapshot`).
    snapshot_requested: bool,
}

/// A transaction entry's writes: the public part as written, the private part opened with the
/// ledger secret of its seqno (its AAD binds it to the public part and the claims digest).
pub fn decode_writes(le: &LedgerEntry, secrets: &LedgerSecrets) -> Result<WriteSet, String> {
    let public = WriteSet::decode(&le.public).map_err(|e| format!("public writes of {}: {e}", le.txid))?;
    let private = if le.private.is_empty() {
        WriteSet::default()
    } else {
        let aad = LedgerEntry::private_aad(&le.claims_digest, &le.public);
        let plain = secrets.open(le.txid.seqno, &aad, &le.private).map_err(|e| format!("private writes of {}: {e}", le.txid))?;
        WriteSet::decode(&plain).map_err(|e| format!("private writes of {}: {e}", le.txid))?
    };
    Ok(public.merge(private))
}

impl StateMachine {
    /// `start`: the snapshot the node starts from (`shared` already holds its state).
    pub fn new(
        shared: Arc<Shared>,
        secrets: Arc<LedgerSecrets>,
        node: (String, NodeKey),
        commit: CommitSecret,
        snapshots: Option<crate::snapshot::Writer>,
        start: Option<&crate::snapshot::Loaded>,
        chunk_request: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        let last_applied = start.map(|s| crate::convert::log_id_of(s.txid));
        let membership = start.map_or_else(StoredMembership::default, |s| s.membership.clone());
        let started_from = start.map(|s| {
            let meta = SnapshotMeta {
                last_log_id: last_applied,
                last_membership: s.membership.clone(),
                snapshot_id: format!("snapshot-{}", s.txid),
            };
            (meta, s.path.clone())
        });
        StateMachine {
            shared,
            secrets,
            node,
            commit,
            last_applied,
            membership,
            snapshots,
            started_from,
            chunk_request,
            snapshot_requested: false,
        }
    }

    fn apply_one(&mut self, entry: &Entry) -> Result<(), StorageError> {
        let le = to_ledger(entry, &self.commit);
        let fail = |msg: String| -> StorageError { StorageIOError::apply(entry.log_id, &std::io::Error::other(msg)).into() };
        let mut signed = None;
        match (&entry.payload, le.kind) {
            (EntryPayload::Normal(_), EntryKind::Tx) => {
                let writes = decode_writes(&le, &self.secrets).map_err(fail)?;
                self.secrets.apply(le.txid.seqno, &writes, &self.node.0, &self.node.1).map_err(fail)?;
                self.snapshot_requested |= writes.maps.contains_key(consort_kv::SNAPSHOT_REQUESTS);
                if writes.maps.contains_key(consort_kv::LEDGER_CHUNK_REQUESTS) {
                    self.chunk_request.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                self.shared.store.apply(le.txid, &writes);
            }
            (EntryPayload::Normal(_), EntryKind::Signature) => {
                let record: SignatureRecord =
                    serde_json::from_slice(&le.public).map_err(|e| fail(format!("signature {}: {e}", le.txid)))?;
                let ours = self.shared.ledger().root_at(record.seqno).map_err(|e| fail(format!("signature at {}: {e}", le.txid)))?;
                if hex::encode(ours) != record.root {
                    // Replicas disagree about the ledger: never serve from a divergent state.
                    return Err(fail(format!(
                        "signature at {} signs a root that differs from this node's ledger at seqno {}",
                        le.txid, record.seqno
                    )));
                }
                self.shared.store.apply(le.txid, &signature_writes(&le.public));
                signed = Some(record);
            }
            (EntryPayload::Membership(m), _) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                self.shared.store.advance(le.txid);
            }
            _ => self.shared.store.advance(le.txid),
        }
        let mut ledger = self.shared.ledger.write().unwrap_or_else(|p| p.into_inner());
        let is_signature = signed.is_some();
        ledger.push(&le, signed).map_err(|e| fail(e.to_string()))?;
        if is_signature {
            // The snapshot covers this signature entry too: taken once it is in the tree.
            let requested = std::mem::take(&mut self.snapshot_requested);
            if let Some(writer) = self.snapshots.as_mut().filter(|w| requested || w.due(le.txid.seqno)) {
                let continuation = crate::snapshot::Continuation {
                    tree: ledger.tree.frontier().iter().map(|d| serde_bytes::ByteBuf::from(d.to_vec())).collect(),
                    signature: serde_bytes::ByteBuf::from(le.public.clone()),
                    views: ledger.views.clone(),
                    membership: serde_bytes::ByteBuf::from(serde_json::to_vec(&self.membership).expect("membership serialises")),
                };
                writer.submit(crate::snapshot::Job {
                    state: self.shared.store.snapshot(),
                    seqno: le.txid.seqno,
                    view: le.txid.view,
                    continuation,
                    secret: (self.secrets.current_since(), self.secrets.current()),
                });
            }
        }
        drop(ledger);
        self.last_applied = Some(entry.log_id);
        Ok(())
    }
}

/// What a signature entry writes to the store: its record (the entry's public part) as the
/// latest signature. Derived from the entry by every node alike, so replicas, snapshots and
/// replays agree; the ledger entry itself is unchanged.
pub(crate) fn signature_writes(record: &[u8]) -> WriteSet {
    let mut writes = WriteSet::default();
    writes.put(consort_kv::names::SIGNATURES, consort_kv::SINGLETON_KEY.to_vec(), record.to_vec());
    writes
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = NoSnapshots;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership<u64, openraft::BasicNode>), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            self.apply_one(&entry)?;
            out.push(());
        }
        if let Some(l) = self.last_applied {
            self.shared.applied.send_replace(txid_of(&l));
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        NoSnapshots
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Err(no_snapshots())
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<u64, openraft::BasicNode>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        Err(no_snapshots())
    }

    /// Only a node that started from a snapshot has one for Raft: its ledger has no entries
    /// before it, so a peer that needs those is offered the snapshot (which it refuses, see
    /// [`NoSnapshots`]).
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some((meta, path)) = &self.started_from else { return Ok(None) };
        let bytes = std::fs::read(path).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        Ok(Some(Snapshot { meta: meta.clone(), snapshot: Box::new(Cursor::new(bytes)) }))
    }
}

/// Raft never builds snapshots (`SnapshotPolicy::Never`) and this node never installs one
/// while running: every node keeps its whole ledger from where it started, and a node joins
/// from a snapshot only at its start, with an empty ledger (`snapshot` module). A peer whose
/// ledger ends before the first entry of every other node's cannot catch up; it stops with
/// this error, and starts again on an empty directory to join from a snapshot.
pub struct NoSnapshots;

fn no_snapshots() -> StorageError {
    StorageIOError::write_snapshot(
        None,
        &std::io::Error::other(
            "this node's ledger ends before the primary's begins (the primary joined from a snapshot): \
             start this node on an empty directory so that it joins from a snapshot",
        ),
    )
    .into()
}

impl RaftSnapshotBuilder<TypeConfig> for NoSnapshots {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        Err(no_snapshots())
    }
}
