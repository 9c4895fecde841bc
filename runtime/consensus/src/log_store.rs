//! Raft log storage on the ledger's chunk files; vote and committed mark in sled.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use consort_ledger::{CommitSecret, Durability, LedgerFiles};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};

use crate::convert::{from_ledger, to_ledger};
use crate::types::{Entry, LogId, StorageError, TypeConfig};

/// Recent entries kept decoded in memory; older ones are read back from the chunk files.
/// Large enough to cover Raft's apply and replication lag under normal load.
const CACHE_ENTRIES_MAX: usize = 8192;

struct Inner {
    files: LedgerFiles,
    cache: BTreeMap<u64, Entry>,
    db: sled::Db,
    commit: CommitSecret,
    last_purged: Option<LogId>,
    /// The newest entry a crash of the machine cannot have lost (when the ledger opened): the
    /// committed mark Raft reads back is never above it (see `read_committed`).
    durable_at_open: Option<LogId>,
    durability: Durability,
}

#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    /// Set (by the state machine) when governance asks to close the open ledger chunk at the
    /// next signature; kept apart so that the asker does not keep the log (and its sled lock)
    /// alive.
    chunk_requested: Arc<AtomicBool>,
}

fn sled_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write(&e).into()
}

impl LogStore {
    /// Opens the log on the ledger in `ledger_dir`; an empty ledger starts at `first_if_empty`.
    pub fn open(
        ledger_dir: &Path,
        raft_dir: &Path,
        chunk_bytes: u64,
        durability: Durability,
        commit: CommitSecret,
        first_if_empty: u64,
    ) -> Result<LogStore, String> {
        let (files, opened) = LedgerFiles::open_from(ledger_dir, chunk_bytes, first_if_empty, durability).map_err(|e| e.to_string())?;
        // Under `SyncPoints` the entries after the last sync point may be gone after a power
        // loss even though Raft's committed mark (in sled) counts them.
        let durable = match durability {
            Durability::EveryAppend => opened.last,
            Durability::SyncPoints => opened.last_sync_point,
        };
        let durable_at_open = durable.map(crate::convert::log_id_of);
        let db = sled::open(raft_dir).map_err(|e| format!("opening Raft state in {}: {e}", raft_dir.display()))?;
        // The cache fills with what is appended from now on; older entries are read from files.
        let cache = BTreeMap::new();
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner { files, cache, db, commit, last_purged: None, durable_at_open, durability })),
            chunk_requested: Arc::default(),
        })
    }

    /// Ends writing for a clean shutdown (Raft has stopped): everything appended is synced and
    /// the open chunk is cut to its records (no reserved zeros after them).
    pub fn close(&self) -> Result<(), consort_ledger::LedgerFilesError> {
        self.lock().files.close_tail()
    }

    /// The flag that closes the open ledger chunk after the next signature appended once set.
    pub fn chunk_request(&self) -> Arc<AtomicBool> {
        self.chunk_requested.clone()
    }

    /// The first seqno and the next seqno of the ledger files.
    pub fn range(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.files.first(), inner.files.len())
    }

    /// The node starts from the snapshot at `log_id`: Raft must take entries up to it as gone.
    pub fn set_purged(&self, log_id: LogId) {
        self.lock().last_purged = Some(log_id);
    }

    /// Records a vote in `term` for this node unless a vote is stored: a node that starts from
    /// a state whose last entry is in `term` campaigns in a later term.
    pub fn seed_vote(&self, term: u64, node_id: u64) -> Result<(), String> {
        let inner = self.lock();
        let fail = |e: String| format!("recording the first vote: {e}");
        if inner.db.get("vote").map_err(|e| fail(e.to_string()))?.is_none() {
            let bytes = serde_json::to_vec(&Vote::new(term, node_id)).map_err(|e| fail(e.to_string()))?;
            inner.db.insert("vote", bytes).map_err(|e| fail(e.to_string()))?;
            inner.db.flush().map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }

    /// The ledger entry at `index`, from the cache or the chunk files (historical queries).
    pub fn read_entry(&self, index: u64) -> Result<consort_ledger::LedgerEntry, String> {
        let inner = self.lock();
        if index >= inner.files.len() || index < inner.files.first() {
            return Err(format!("seqno {index} is not in this node's ledger (it holds {}..{})", inner.files.first(), inner.files.len()));
        }
        let entry = Self::entry_at(&inner, index).map_err(|e| e.to_string())?;
        Ok(to_ledger(&entry, &inner.commit))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn entry_at(inner: &Inner, index: u64) -> Result<Entry, StorageError> {
        if let Some(e) = inner.cache.get(&index) {
            return Ok(e.clone());
        }
        let le = inner.files.read(index).map_err(|e| StorageIOError::read_log_at_index(index, &e))?;
        from_ledger(le).map_err(|e| StorageIOError::read_log_at_index(index, &std::io::Error::other(e)).into())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.lock();
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => inner.files.first(),
        };
        // Purged entries stay in the ledger (it is the audit record), but not in Raft's log;
        // the log has no entries before the ledger's first.
        let start = start.max(inner.last_purged.map_or(0, |p| p.index + 1)).max(inner.files.first());
        let end = match range.end_bound() {
            Bound::Included(e) => e + 1,
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        }
        .min(inner.files.len());
        (start..end).map(|i| Self::entry_at(&inner, i)).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        let len = inner.files.len();
        let last_entry = if len == inner.files.first() { None } else { Some(Self::entry_at(&inner, len - 1)?.log_id) };
        // Raft may purge beyond the last entry (a snapshot ahead of the log): the log then ends there.
        let last_log_id = last_entry.max(inner.last_purged);
        Ok(LogState { last_purged_log_id: inner.last_purged, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let inner = self.lock();
        let bytes = serde_json::to_vec(vote).map_err(sled_err)?;
        inner.db.insert("vote", bytes).map_err(sled_err)?;
        // A vote must be durable before it is acted on (Raft safety).
        inner.db.flush().map_err(sled_err)?;
        Ok(())
    }

    /// Under `SyncPoints` the vote comes back as not yet granted by a quorum, so a primary
    /// that restarts never leads again in its old view: it may have lost entries after its
    /// last sync point that peers still hold at the same index and view, and a new view is the
    /// only way for the ids of what it writes next not to collide with theirs. Forgetting that
    /// a vote was granted is safe; the vote itself (whom this node voted for) is kept.
    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        let inner = self.lock();
        let Some(bytes) = inner.db.get("vote").map_err(sled_err)? else { return Ok(None) };
        let mut vote: Vote<u64> = serde_json::from_slice(&bytes).map_err(sled_err)?;
        if inner.durability == Durability::SyncPoints {
            vote.committed = false;
        }
        Ok(Some(vote))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut inner = self.lock();
        let bytes = serde_json::to_vec(&committed).map_err(sled_err)?;
        inner.db.insert("committed", bytes).map_err(sled_err)?;
        if let Some(c) = committed {
            inner.files.commit(c.index).map_err(|e| StorageIOError::write_logs(&e))?;
        }
        Ok(())
    }

    /// Raft reads this once, at start. The mark is never above what the ledger surely holds:
    /// under `SyncPoints` a power loss can take the transactions after the last sync point
    /// while sled kept a mark that counts them. Committed entries are re-learnt from peers
    /// (Raft's committed index need not be durable); for this node alone, those transactions
    /// are lost, as their status (`Invalid` once a new view starts below them) says.
    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let inner = self.lock();
        let stored: Option<LogId> = match inner.db.get("committed").map_err(sled_err)? {
            Some(v) => serde_json::from_slice(&v).map_err(sled_err)?,
            None => None,
        };
        let cap = inner.durable_at_open.or(inner.last_purged);
        Ok(match (stored, cap) {
            (Some(s), Some(c)) if s.index > c.index => Some(c),
            (Some(_), None) => None,
            _ => stored,
        })
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        if self.chunk_requested.swap(false, Ordering::Relaxed) {
            inner.files.close_at_next_signature();
        }
        for entry in entries {
            if inner.files.is_empty() && entry.log_id.index != inner.files.first() {
                // Raft says where an empty log begins (0, or after the snapshot it started from).
                inner.files.start_at(entry.log_id.index).map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            }
            let le = to_ledger(&entry, &inner.commit);
            inner.files.append(&le).map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            inner.cache.insert(entry.log_id.index, entry);
        }
        while inner.cache.len() > CACHE_ENTRIES_MAX {
            inner.cache.pop_first();
        }
        // Acknowledged once durable as the ledger's policy says: every batch, or sync points.
        let synced = inner.files.settle().map_err(|e| std::io::Error::other(e.to_string()));
        drop(inner);
        callback.log_io_completed(synced);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.files.truncate(log_id.index).map_err(|e| StorageIOError::write_logs(&e))?;
        inner.cache.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The ledger keeps every entry (it is the audit record); purging only drops the cache.
        let mut inner = self.lock();
        inner.last_purged = Some(log_id);
        inner.cache = inner.cache.split_off(&(log_id.index + 1));
        Ok(())
    }
}
