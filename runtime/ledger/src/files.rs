//! Ledger chunk files (SPEC §7).
//!
//! Entries are appended to `ledger_<from>` (the open chunk). A chunk closes after a signature
//! entry once it holds `chunk_bytes_target` bytes, and is renamed `ledger_<from>-<to>`; once
//! every entry in it is committed it becomes `ledger_<from>-<to>.committed` and never changes.
//!
//! Each record is framed as `len:u32 LE ‖ BLAKE3(record):[32] ‖ record`, so a changed byte is
//! pinned to its entry, and a write torn by a crash is recognised at the tail of the open chunk
//! and cut off (it was never acknowledged: appends are acknowledged only after `sync`).
//!
//! The open chunk reserves space ahead of its records, written as zeros and made durable before
//! any record goes there, so that the `fdatasync` acknowledging an append flushes the record's
//! bytes only, not the file's size and block map too (on this project's ext4 disk: 110 µs
//! instead of 155 µs, and one is paid per transaction). Readers take zeros after the last record
//! as the chunk's end (anything else there is damage); a chunk is cut to its records when it
//! closes, and the open chunk when the node stops cleanly ([`LedgerFiles::close_tail`]).
//!
//! When an append is made durable is the [`Durability`] policy: at every append, or (CCF's
//! model, the default) at sync points only: signature, view-start and membership entries.
//! Under the second, what precedes a sync point is synced before the sync point is written,
//! so an intact sync point proves every record before it reached the disk; damage that only
//! transactions follow can be writes that a power loss left out of order, and is cut off.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use consort_kv::TxId;

use crate::entry::{EntryError, LedgerEntry};

const FRAME_HEADER_BYTES: u64 = 4 + 32;
/// How much space the open chunk reserves at a time: its target size, within these bounds.
const RESERVE_BYTES_MIN: u64 = 64 * 1024;
const RESERVE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// No entry may be larger: bounds what a corrupt length field can make us allocate.
pub const ENTRY_BYTES_MAX: u32 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerFilesError {
    #[error("ledger IO on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A record is damaged: the frame or the entry inside it does not check out.
    #[error("{file}: bad entry at byte {offset} (seqno {seqno}): {reason}")]
    Corrupt { file: String, offset: u64, seqno: u64, reason: String },
    #[error("ledger seqno {0} is not present")]
    Missing(u64),
    #[error("cannot truncate committed entry {0}")]
    TruncateCommitted(u64),
    #[error("the ledger holds entries {first}..{next}: it cannot start again at {requested}")]
    NotEmpty { first: u64, next: u64, requested: u64 },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerFilesError + '_ {
    move |source| LedgerFilesError::Io { path: path.to_owned(), source }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkName {
    pub first: u64,
    pub last: Option<u64>,
    pub committed: bool,
}

impl ChunkName {
    pub fn parse(name: &str) -> Option<ChunkName> {
        let rest = name.strip_prefix("ledger_")?;
        let (range, committed) = match rest.strip_suffix(".committed") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let num = |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten();
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (num(a)?, Some(num(b)?)),
            None => (num(range)?, None),
        };
        if committed && last.is_none() {
            return None;
        }
        Some(ChunkName { first, last, committed })
    }

    pub fn file_name(&self) -> String {
        match (self.last, self.committed) {
            (None, _) => format!("ledger_{}", self.first),
            (Some(l), false) => format!("ledger_{}-{l}", self.first),
            (Some(l), true) => format!("ledger_{}-{l}.committed", self.first),
        }
    }
}

/// Chunk files in `dir`, ordered by first seqno.
pub fn list_chunks(dir: &Path) -> Result<Vec<ChunkName>, LedgerFilesError> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir).map_err(io_err(dir))? {
        let item = item.map_err(io_err(dir))?;
        if let Some(name) = item.file_name().to_str().and_then(ChunkName::parse) {
            out.push(name);
        }
    }
    out.sort_by_key(|c| c.first);
    Ok(out)
}

/// Whether `dir` holds no ledger chunk (or cannot be read, or does not exist yet).
pub fn holds_no_chunk(dir: &Path) -> bool {
    list_chunks(dir).map_or(true, |c| c.is_empty())
}

/// One record read back from a chunk.
pub struct Record {
    pub offset: u64,
    pub frame_bytes: u64,
    pub entry: LedgerEntry,
}

/// Where a chunk file stopped making sense: byte offset and reason.
pub type Damage = Option<(u64, String)>;

/// The prefix of a damage reason that a crash during an append can explain: nothing valid
/// follows the damage. Anything else (damage with intact records after it) is corruption.
pub const TORN_WRITE: &str = "torn write";

/// When appended entries are made durable: `ledger.sync` in the node's configuration, whose
/// values name what an answered write waits for (`"signatures"`, `"transactions"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Durability {
    /// Every append is written to the OS (it survives the process); `fdatasync` runs at sync
    /// points only — signature, view-start and membership entries — and before one is written.
    /// Everything a committed signature covers is on disk wherever that signature is; a power
    /// loss can lose only transactions no signature covers yet (as in CCF, which flushes each
    /// transaction to the OS and leaves durability to replication).
    #[default]
    #[serde(rename = "signatures")]
    SyncPoints,
    /// `fdatasync` ends every append: nothing acknowledged is lost even by a power loss.
    #[serde(rename = "transactions")]
    EveryAppend,
}

/// What follows damage in a chunk file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// No intact record: a write torn by a crash.
    Nothing,
    /// Intact transaction records only: under [`Durability::SyncPoints`], writes a power loss
    /// left out of order; otherwise corruption.
    Transactions,
    /// An intact sync point: everything before it was durable, so the damage is corruption.
    SyncPoint,
}

/// What intact records start after `from`: damage followed by intact records cannot be a
/// write torn by a crash (appends only ever add at the end), so it must not be cut off as one.
/// Runs only on damaged files.
fn intact_after(bytes: &[u8], from: usize) -> After {
    let header = FRAME_HEADER_BYTES as usize;
    let mut found = After::Nothing;
    let mut p = from + 1;
    while p + header <= bytes.len() {
        let len = u32::from_le_bytes(bytes[p..p + 4].try_into().expect("4 bytes"));
        let end = p + header + len as usize;
        let intact = (len <= ENTRY_BYTES_MAX && end <= bytes.len())
            .then(|| &bytes[p + header..end])
            .filter(|body| blake3::hash(body).as_bytes() == &bytes[p + 4..p + header])
            .and_then(|body| LedgerEntry::decode(body).ok());
        match intact {
            Some(e) if e.kind.is_sync_point() => return After::SyncPoint,
            Some(_) => {
                found = After::Transactions;
                p = end;
            }
            None => p += 1,
        }
    }
    found
}

/// Reads every record of one chunk file. Returns the good records and, if the file does not
/// end cleanly, where and why it stopped (classified as under [`Durability::EveryAppend`]).
pub fn read_chunk(path: &Path) -> Result<(Vec<Record>, Damage), LedgerFilesError> {
    read_chunk_as(path, Durability::EveryAppend)
}

/// As [`read_chunk`], with damage classified under `durability`.
fn read_chunk_as(path: &Path, durability: Durability) -> Result<(Vec<Record>, Damage), LedgerFilesError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let (records, damage) = scan_chunk(&bytes);
    let damage = damage.map(|(offset, reason)| match (intact_after(&bytes, offset as usize), durability) {
        (After::Nothing, _) => (offset, format!("{TORN_WRITE}: {reason}")),
        (After::Transactions, Durability::SyncPoints) => (offset, format!("{TORN_WRITE} after the last sync point: {reason}")),
        _ => (offset, format!("{reason}, with intact records after it")),
    });
    Ok((records, damage))
}

fn scan_chunk(bytes: &[u8]) -> (Vec<Record>, Damage) {
    let mut records = Vec::new();
    let mut at = 0u64;
    while (at as usize) < bytes.len() {
        let rest = &bytes[at as usize..];
        if rest[..rest.len().min(FRAME_HEADER_BYTES as usize)].iter().all(|b| *b == 0) {
            // Space the open chunk reserved (no frame starts with a zero length and digest): the
            // chunk ends here, and anything but zeros after it is damage, named where it starts.
            return match rest.iter().position(|b| *b != 0) {
                None => (records, None),
                Some(i) => (records, Some((at + i as u64, format!("non-zero byte after the last record (which ends at byte {at})")))),
            };
        }
        if (rest.len() as u64) < FRAME_HEADER_BYTES {
            return (records, Some((at, "incomplete frame header".into())));
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
        if len > ENTRY_BYTES_MAX {
            return (records, Some((at, format!("frame length {len} exceeds the {ENTRY_BYTES_MAX}-byte limit"))));
        }
        let end = FRAME_HEADER_BYTES as usize + len as usize;
        if rest.len() < end {
            return (records, Some((at, "incomplete record".into())));
        }
        let body = &rest[FRAME_HEADER_BYTES as usize..end];
        if blake3::hash(body).as_bytes() != &rest[4..36] {
            return (records, Some((at, "record digest mismatch: the entry's bytes were changed".into())));
        }
        match LedgerEntry::decode(body) {
            Ok(entry) => records.push(Record { offset: at, frame_bytes: end as u64, entry }),
            Err(e) => return (records, Some((at, format!("entry does not decode: {e}")))),
        }
        at += end as u64;
    }
    (records, None)
}

pub fn frame(entry: &LedgerEntry) -> Vec<u8> {
    let body = entry.encode();
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES as usize + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(blake3::hash(&body).as_bytes());
    out.extend_from_slice(&body);
    out
}

#[derive(Debug)]
struct Chunk {
    name: ChunkName,
    bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Loc {
    chunk: usize,
    offset: u64,
}

/// How many closed chunks' record offsets stay in memory for reads (each is found again by
/// reading the chunk's frame headers when needed).
const CLOSED_INDEXES_KEPT: usize = 8;

/// What [`LedgerFiles::open_from`] found at the end of the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Opened {
    /// The last entry's id.
    pub last: Option<TxId>,
    /// The last sync point's id (signature, view start or membership entry).
    pub last_sync_point: Option<TxId>,
}

/// The offsets of every record in the chunk file at `path`, from its frame headers only.
fn record_offsets(path: &Path) -> Result<Vec<u64>, LedgerFilesError> {
    let file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, file);
    let mut offsets = Vec::new();
    let mut at = 0u64;
    let mut header = [0u8; FRAME_HEADER_BYTES as usize];
    while at + FRAME_HEADER_BYTES <= len {
        reader.read_exact(&mut header).map_err(io_err(path))?;
        let body = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        if header.iter().all(|b| *b == 0) {
            break;
        }
        offsets.push(at);
        reader.seek_relative(i64::from(body)).map_err(io_err(path))?;
        at += FRAME_HEADER_BYTES + u64::from(body);
    }
    Ok(offsets)
}

type ClosedOffsets = std::collections::VecDeque<(u64, std::sync::Arc<Vec<u64>>)>;

/// Keeps a closed chunk's offsets as the most recent, forgetting the oldest beyond the bound.
fn remember(cache: &mut ClosedOffsets, first: u64, offsets: std::sync::Arc<Vec<u64>>) {
    cache.push_back((first, offsets));
    while cache.len() > CLOSED_INDEXES_KEPT {
        cache.pop_front();
    }
}

/// Writes zeros to bytes `from..to` of `file` from one static buffer: a reservation (up to
/// 4 MiB) allocates nothing, so it never leaves the allocator holding megabytes it touched.
fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64);
        file.write_all_at(&ZEROS[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

/// Every intact entry of the ledger in `dir`, in order, without changing any file (tests and
/// tools; a node reads entries one at a time with [`LedgerFiles::read`]).
pub fn read_entries(dir: &Path) -> Result<Vec<LedgerEntry>, LedgerFilesError> {
    let mut out = Vec::new();
    for name in list_chunks(dir)? {
        out.extend(read_chunk(&dir.join(name.file_name()))?.0.into_iter().map(|r| r.entry));
    }
    Ok(out)
}

/// The ledger directory of a running node.
#[derive(Debug)]
pub struct LedgerFiles {
    dir: PathBuf,
    chunk_bytes_target: u64,
    chunks: Vec<Chunk>,
    /// The first seqno in these files: 0, or one after the snapshot the node started from.
    first: u64,
    /// One past the last seqno.
    next: u64,
    /// The offsets of the open chunk's records (the last chunk, while it has no last seqno).
    /// Other chunks' offsets are read from their frame headers when needed, and the newest
    /// few kept: memory does not grow with the ledger.
    open_offsets: Vec<u64>,
    /// Record offsets of recently read closed chunks, by first seqno, most recent last.
    closed_offsets: std::sync::Mutex<ClosedOffsets>,
    /// The open chunk's file, and its length: its records and the zeros reserved after them.
    writer: Option<(File, u64)>,
    durability: Durability,
    /// Appended records not yet synced, and whether a sync point is among them.
    unsynced: bool,
    sync_point_unsynced: bool,
    /// `fdatasync` calls that made appended records durable.
    syncs: u64,
    /// Entries below this seqno are committed.
    committed_end: u64,
    /// Whether the open chunk closes after the next signature whatever its size
    /// (`ccf.node.triggerLedgerChunk`).
    close_requested: bool,
}

impl LedgerFiles {
    /// Opens (or creates) the ledger in `dir`, cutting off a torn write at the tail of the open
    /// chunk. Any other damage is an error: the node must not run on a corrupt ledger.
    /// Appends are synced as [`Durability::EveryAppend`] says.
    pub fn open(dir: &Path, chunk_bytes_target: u64) -> Result<LedgerFiles, LedgerFilesError> {
        Ok(Self::open_from(dir, chunk_bytes_target, 0, Durability::EveryAppend)?.0)
    }

    /// As [`LedgerFiles::open`]; an empty ledger starts at seqno `first_if_empty` (one after
    /// the snapshot a joining node starts from). A ledger with files starts where its first
    /// file does. `durability` says when [`LedgerFiles::settle`] syncs, and so which damage at
    /// the tail can be writes a crash left unfinished. Every chunk is read and checked, one at a
    /// time: what stays in memory is the open chunk's record offsets.
    pub fn open_from(
        dir: &Path,
        chunk_bytes_target: u64,
        first_if_empty: u64,
        durability: Durability,
    ) -> Result<(LedgerFiles, Opened), LedgerFilesError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let names = list_chunks(dir)?;
        let first = names.first().map_or(first_if_empty, |c| c.first);
        let mut files = LedgerFiles {
            dir: dir.to_owned(),
            chunk_bytes_target,
            chunks: Vec::new(),
            first,
            next: first,
            open_offsets: Vec::new(),
            closed_offsets: Default::default(),
            writer: None,
            durability,
            unsynced: false,
            sync_point_unsynced: false,
            syncs: 0,
            close_requested: false,
            committed_end: first,
        };
        let mut opened = Opened::default();
        let count = names.len();
        for (i, name) in names.into_iter().enumerate() {
            let path = dir.join(name.file_name());
            let (records, damage) = read_chunk_as(&path, durability)?;
            let is_tail = i + 1 == count && name.last.is_none();
            let bytes = records.last().map_or(0, |r| r.offset + r.frame_bytes);
            if let Some((offset, reason)) = damage {
                if !is_tail || !reason.starts_with(TORN_WRITE) {
                    return Err(LedgerFilesError::Corrupt { file: name.file_name(), offset, seqno: files.len(), reason });
                }
                // Cut at the end of the last record (the damage may start further on, after
                // reserved zeros): the next append goes right after that record.
                tracing_free_warn(&format!(
                    "cutting a torn write off {} at byte {bytes} (damage at byte {offset}): {reason}",
                    path.display()
                ));
                let f = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
                f.set_len(bytes).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
            }
            for r in records {
                let expected = files.len();
                if r.entry.txid.seqno != expected {
                    return Err(LedgerFilesError::Corrupt {
                        file: name.file_name(),
                        offset: r.offset,
                        seqno: expected,
                        reason: format!("expected seqno {expected}, found {}", r.entry.txid.seqno),
                    });
                }
                if is_tail {
                    files.open_offsets.push(r.offset);
                }
                files.next += 1;
                opened.last = Some(r.entry.txid);
                if r.entry.kind.is_sync_point() {
                    opened.last_sync_point = Some(r.entry.txid);
                }
            }
            if name.committed {
                files.committed_end = files.committed_end.max(name.last.map_or(0, |l| l + 1));
            }
            files.chunks.push(Chunk { name, bytes });
        }
        Ok((files, opened))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The next seqno (the number of entries, for a ledger that starts at 0).
    pub fn len(&self) -> u64 {
        self.next
    }

    /// The first seqno in these files (see [`LedgerFiles::open_from`]).
    pub fn first(&self) -> u64 {
        self.first
    }

    pub fn is_empty(&self) -> bool {
        self.next == self.first
    }

    /// Where the record of `seqno` is.
    fn locate(&self, seqno: u64) -> Result<Loc, LedgerFilesError> {
        if seqno < self.first || seqno >= self.next {
            return Err(LedgerFilesError::Missing(seqno));
        }
        let chunk = self.chunks.partition_point(|c| c.name.first <= seqno) - 1;
        let i = (seqno - self.chunks[chunk].name.first) as usize;
        let offset =
            if self.is_open_chunk(chunk) { self.open_offsets.get(i).copied() } else { self.closed_chunk_offsets(chunk)?.get(i).copied() };
        let offset = offset.ok_or_else(|| LedgerFilesError::Corrupt {
            file: self.chunks[chunk].name.file_name(),
            offset: self.chunks[chunk].bytes,
            seqno,
            reason: "the chunk holds fewer records than its name says".into(),
        })?;
        Ok(Loc { chunk, offset })
    }

    /// Whether `chunk` is the one appends go to (its offsets are in `open_offsets`).
    fn is_open_chunk(&self, chunk: usize) -> bool {
        chunk + 1 == self.chunks.len() && self.chunks[chunk].name.last.is_none()
    }

    /// The record offsets of closed chunk `chunk`, from the cache or its frame headers.
    fn closed_chunk_offsets(&self, chunk: usize) -> Result<std::sync::Arc<Vec<u64>>, LedgerFilesError> {
        let first = self.chunks[chunk].name.first;
        let mut cache = self.closed_offsets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = cache.iter().position(|(f, _)| *f == first) {
            let hit = cache.remove(at).expect("found above");
            cache.push_back(hit.clone());
            return Ok(hit.1);
        }
        let offsets = std::sync::Arc::new(record_offsets(&self.path_of(chunk))?);
        remember(&mut cache, first, offsets.clone());
        Ok(offsets)
    }

    fn path_of(&self, chunk: usize) -> PathBuf {
        self.dir.join(self.chunks[chunk].name.file_name())
    }

    fn open_chunk(&mut self) -> Result<usize, LedgerFilesError> {
        if let Some(last) = self.chunks.last() {
            if last.name.last.is_none() {
                return Ok(self.chunks.len() - 1);
            }
        }
        let first = self.len();
        self.chunks.push(Chunk { name: ChunkName { first, last: None, committed: false }, bytes: 0 });
        self.open_offsets.clear();
        self.writer = None;
        Ok(self.chunks.len() - 1)
    }

    /// Makes a ledger that holds no chunk start at `seqno` instead (Raft decides where a log
    /// begins: with the first entry it appends to an empty one).
    pub fn start_at(&mut self, seqno: u64) -> Result<(), LedgerFilesError> {
        if !self.chunks.is_empty() {
            return Err(LedgerFilesError::NotEmpty { first: self.first, next: self.next, requested: seqno });
        }
        (self.first, self.next, self.committed_end) = (seqno, seqno, seqno);
        Ok(())
    }

    /// Appends one entry (not yet durable: call [`LedgerFiles::settle`] or [`LedgerFiles::sync`]).
    pub fn append(&mut self, entry: &LedgerEntry) -> Result<(), LedgerFilesError> {
        assert_eq!(entry.txid.seqno, self.len(), "ledger append out of order");
        let sync_point = entry.kind.is_sync_point();
        if sync_point && self.durability == Durability::SyncPoints {
            // An intact sync point must prove that every record before it is on disk.
            self.sync()?;
        }
        let chunk = self.open_chunk()?;
        let path = self.path_of(chunk);
        if self.writer.is_none() {
            let f = OpenOptions::new().create(true).write(true).truncate(false).open(&path).map_err(io_err(&path))?;
            let len = f.metadata().map_err(io_err(&path))?.len();
            if len == 0 {
                // A new chunk: its name must be as durable as the records synced into it.
                File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io_err(&self.dir))?;
            }
            self.writer = Some((f, len));
        }
        let framed = frame(entry);
        let offset = self.chunks[chunk].bytes;
        let end = offset + framed.len() as u64;
        let step = self.chunk_bytes_target.clamp(RESERVE_BYTES_MIN, RESERVE_BYTES_MAX);
        let (w, reserved) = self.writer.as_mut().expect("writer opened above");
        if end > *reserved {
            let len = end.max(*reserved + step);
            write_zeros(w, *reserved, len).map_err(io_err(&path))?;
            w.sync_all().map_err(io_err(&path))?;
            *reserved = len;
        }
        w.write_all_at(&framed, offset).map_err(io_err(&path))?;
        self.chunks[chunk].bytes = end;
        self.open_offsets.push(offset);
        self.next += 1;
        self.unsynced = true;
        self.sync_point_unsynced |= sync_point;
        if entry.kind == crate::EntryKind::Signature && (self.chunks[chunk].bytes >= self.chunk_bytes_target || self.close_requested) {
            self.close_requested = false;
            self.close_open_chunk()?;
        }
        Ok(())
    }

    /// Closes the open chunk after the next signature entry, whatever its size.
    pub fn close_at_next_signature(&mut self) {
        self.close_requested = true;
    }

    fn close_open_chunk(&mut self) -> Result<(), LedgerFilesError> {
        let chunk = self.chunks.len() - 1;
        if let Some((w, _)) = self.writer.take() {
            let path = self.path_of(chunk);
            w.set_len(self.chunks[chunk].bytes).map_err(io_err(&path))?;
            w.sync_all().map_err(io_err(&path))?;
        }
        self.mark_synced();
        let from = self.path_of(chunk);
        self.chunks[chunk].name.last = Some(self.len() - 1);
        let offsets = std::mem::take(&mut self.open_offsets);
        remember(self.closed_offsets.get_mut().unwrap_or_else(|p| p.into_inner()), self.chunks[chunk].name.first, offsets.into());
        let to = self.path_of(chunk);
        fs::rename(&from, &to).map_err(io_err(&to))?;
        self.mark_committed_chunks()
    }

    /// Ends writing for now (a clean shutdown): makes every appended entry durable and cuts the
    /// open chunk to its records, so that no reserved zeros are left after them. A later append
    /// reserves space again.
    pub fn close_tail(&mut self) -> Result<(), LedgerFilesError> {
        self.sync()?;
        self.writer = None;
        let Some(chunk) = self.chunks.len().checked_sub(1).filter(|c| self.chunks[*c].name.last.is_none()) else { return Ok(()) };
        let path = self.path_of(chunk);
        let f = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        if f.metadata().map_err(io_err(&path))?.len() > self.chunks[chunk].bytes {
            f.set_len(self.chunks[chunk].bytes).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Makes every appended entry durable (entries in closed chunks were synced when their
    /// chunk closed).
    pub fn sync(&mut self) -> Result<(), LedgerFilesError> {
        if let Some((w, _)) = self.writer.as_mut().filter(|_| self.unsynced) {
            w.sync_data().map_err(|source| LedgerFilesError::Io { path: self.dir.clone(), source })?;
            self.syncs += 1;
        }
        self.mark_synced();
        Ok(())
    }

    /// Everything appended so far is on disk.
    fn mark_synced(&mut self) {
        (self.unsynced, self.sync_point_unsynced) = (false, false);
    }

    /// How many times appended records were synced since the ledger opened.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Ends one append call of the Raft log: syncs what the [`Durability`] policy says must be
    /// durable before the append is acknowledged.
    pub fn settle(&mut self) -> Result<(), LedgerFilesError> {
        match self.durability {
            Durability::EveryAppend => self.sync(),
            Durability::SyncPoints if self.sync_point_unsynced => self.sync(),
            Durability::SyncPoints => Ok(()),
        }
    }

    pub fn read(&self, seqno: u64) -> Result<LedgerEntry, LedgerFilesError> {
        let loc = self.locate(seqno)?;
        let path = self.path_of(loc.chunk);
        let mut f = File::open(&path).map_err(io_err(&path))?;
        f.seek(SeekFrom::Start(loc.offset)).map_err(io_err(&path))?;
        let mut header = [0u8; FRAME_HEADER_BYTES as usize];
        f.read_exact(&mut header).map_err(io_err(&path))?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let corrupt =
            |reason: String| LedgerFilesError::Corrupt { file: self.chunks[loc.chunk].name.file_name(), offset: loc.offset, seqno, reason };
        if len > ENTRY_BYTES_MAX {
            return Err(corrupt(format!("frame length {len} too large")));
        }
        let mut body = vec![0u8; len as usize];
        f.read_exact(&mut body).map_err(io_err(&path))?;
        if blake3::hash(&body).as_bytes() != &header[4..] {
            return Err(corrupt("record digest mismatch".into()));
        }
        LedgerEntry::decode(&body).map_err(|e: EntryError| corrupt(e.to_string()))
    }

    /// Removes entries `from..` (consensus overwrites an uncommitted suffix).
    pub fn truncate(&mut self, from: u64) -> Result<(), LedgerFilesError> {
        if from >= self.len() {
            return Ok(());
        }
        if from < self.committed_end {
            return Err(LedgerFilesError::TruncateCommitted(from));
        }
        let loc = self.locate(from)?;
        if !self.is_open_chunk(loc.chunk) {
            self.open_offsets = self.closed_chunk_offsets(loc.chunk)?.to_vec();
        }
        self.closed_offsets.get_mut().unwrap_or_else(|p| p.into_inner()).clear();
        self.writer = None;
        for chunk in self.chunks.drain(loc.chunk + 1..).collect::<Vec<_>>() {
            let path = self.dir.join(chunk.name.file_name());
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
        let old = self.path_of(loc.chunk);
        self.chunks[loc.chunk].name.last = None;
        let new = self.path_of(loc.chunk);
        if old != new {
            fs::rename(&old, &new).map_err(io_err(&new))?;
        }
        let f = OpenOptions::new().write(true).open(&new).map_err(io_err(&new))?;
        f.set_len(loc.offset).map_err(io_err(&new))?;
        f.sync_all().map_err(io_err(&new))?;
        self.mark_synced();
        self.chunks[loc.chunk].bytes = loc.offset;
        self.open_offsets.truncate((from - self.chunks[loc.chunk].name.first) as usize);
        self.next = from;
        if loc.offset == 0 {
            fs::remove_file(&new).map_err(io_err(&new))?;
            self.chunks.pop();
        }
        Ok(())
    }

    /// Records that entries up to `seqno` are committed: closed chunks wholly below it are
    /// renamed `.committed`.
    pub fn commit(&mut self, seqno: u64) -> Result<(), LedgerFilesError> {
        self.committed_end = self.committed_end.max((seqno + 1).min(self.len()));
        self.mark_committed_chunks()
    }

    fn mark_committed_chunks(&mut self) -> Result<(), LedgerFilesError> {
        for i in 0..self.chunks.len() {
            let name = &self.chunks[i].name;
            if let Some(last) = name.last {
                if !name.committed && last < self.committed_end {
                    let from = self.path_of(i);
                    self.chunks[i].name.committed = true;
                    let to = self.path_of(i);
                    fs::rename(&from, &to).map_err(io_err(&to))?;
                }
            }
        }
        Ok(())
    }
}

/// The ledger crate does not depend on a logging framework; torn tails are rare and reported
/// on standard error so an operator sees them.
fn tracing_free_warn(msg: &str) {
    eprintln!("consort ledger: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EntryKind;
    use consort_kv::TxId;

    fn entry(seqno: u64, kind: EntryKind) -> LedgerEntry {
        LedgerEntry {
            txid: TxId::new(1, seqno),
            kind,
            commit_evidence_digest: [0; 32],
            claims_digest: [0; 32],
            public: vec![seqno as u8; 100],
            private: vec![],
            // All three entry formats, side by side in the same files.
            app: (seqno % 2 == 1).then_some(crate::AppRef { version: seqno, bundle_digest: [7; 32] }),
            inputs: if seqno % 4 == 1 { vec![seqno as u8; 5] } else { Vec::new() },
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("consort-ledger-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn chunks_rotate_commit_reopen_and_truncate() {
        let dir = tempdir("rotate");
        let mut files = LedgerFiles::open(&dir, 300).expect("open");
        assert!(files.is_empty());
        for s in 0..10 {
            let kind = if s % 4 == 3 { EntryKind::Signature } else { EntryKind::Tx };
            files.append(&entry(s, kind)).expect("append");
        }
        files.sync().expect("sync");
        files.commit(7).expect("commit");
        let names: Vec<String> = list_chunks(&dir).expect("list").iter().map(|c| c.file_name()).collect();
        assert_eq!(names, ["ledger_0-3.committed", "ledger_4-7.committed", "ledger_8"]);
        for closed in ["ledger_0-3.committed", "ledger_4-7.committed"] {
            let (records, damage) = read_chunk(&dir.join(closed)).expect("read");
            let end = records.last().map(|r| r.offset + r.frame_bytes);
            assert_eq!((damage, end), (None, Some(fs::metadata(dir.join(closed)).expect("meta").len())), "{closed} is cut to its records");
        }
        assert_eq!(files.read(6).expect("read"), entry(6, EntryKind::Tx));
        drop(files);
        let mut files = LedgerFiles::open(&dir, 300).expect("reopen");
        assert_eq!((files.len(), read_entries(&dir).expect("entries").len()), (10, 10));
        for s in 0..10 {
            let kind = if s % 4 == 3 { EntryKind::Signature } else { EntryKind::Tx };
            assert_eq!(files.read(s).expect("read from a closed or the open chunk"), entry(s, kind));
        }
        assert!(files.truncate(7).is_err(), "committed entries stay");
        files.truncate(9).expect("truncate");
        files.append(&entry(9, EntryKind::Tx)).expect("append after truncate");
        assert_eq!(files.len(), 10);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_empty_ledger_starts_where_it_is_told_and_one_with_entries_does_not_move() {
        let dir = tempdir("start-at");
        let mut files = LedgerFiles::open(&dir, 300).expect("open");
        files.start_at(5).expect("empty");
        files.append(&entry(5, EntryKind::Tx)).expect("append at the new start");
        assert_eq!((files.first(), files.len()), (5, 6));
        assert!(matches!(files.start_at(0), Err(LedgerFilesError::NotEmpty { first: 5, next: 6, requested: 0 })));
        drop(files);
        let files = LedgerFiles::open(&dir, 300).expect("reopen");
        assert_eq!((files.first(), files.len(), files.read(5).expect("read")), (5, 6, entry(5, EntryKind::Tx)));
        let _ = fs::remove_dir_all(&dir);
    }

    /// More closed chunks than their offsets stay in memory: every entry reads back in any
    /// order, and cutting into a closed chunk that is not committed reopens it.
    #[test]
    fn entries_read_back_from_any_chunk_and_a_cut_reopens_a_closed_chunk() {
        let dir = tempdir("many-chunks");
        let mut files = LedgerFiles::open(&dir, 300).expect("open");
        let kind = |s: u64| if s % 3 == 2 { EntryKind::Signature } else { EntryKind::Tx };
        let n = 3 * (CLOSED_INDEXES_KEPT as u64 + 6);
        for s in 0..n {
            files.append(&entry(s, kind(s))).expect("append");
        }
        files.sync().expect("sync");
        files.commit(n / 2).expect("commit");
        assert!(list_chunks(&dir).expect("list").len() > CLOSED_INDEXES_KEPT + 2);
        for s in (0..n).rev().chain(0..n).chain((0..n).step_by(7)) {
            assert_eq!(files.read(s).expect("read"), entry(s, kind(s)), "seqno {s}");
        }
        assert!(files.closed_offsets.lock().expect("lock").len() <= CLOSED_INDEXES_KEPT);
        // Entry n-5 is in a closed chunk above the committed mark: cut there, the chunk reopens.
        let cut = n - 5;
        files.truncate(cut).expect("truncate");
        assert_eq!(files.len(), cut);
        for s in cut..n + 2 {
            files.append(&entry(s, kind(s))).expect("append after the cut");
        }
        for s in 0..n + 2 {
            assert_eq!(files.read(s).expect("read"), entry(s, kind(s)), "seqno {s} after the cut");
        }
        drop(files);
        let files = LedgerFiles::open(&dir, 300).expect("reopen");
        assert_eq!(files.len(), n + 2);
        assert_eq!(read_entries(&dir).expect("entries"), (0..n + 2).map(|s| entry(s, kind(s))).collect::<Vec<_>>());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_requested_chunk_closes_at_the_next_signature_whatever_its_size() {
        let dir = tempdir("chunk-request");
        let mut files = LedgerFiles::open(&dir, 1 << 20).expect("open");
        let kind = |s: u64| if s % 3 == 2 { EntryKind::Signature } else { EntryKind::Tx };
        for s in 0..4 {
            files.append(&entry(s, kind(s))).expect("append");
        }
        files.close_at_next_signature();
        for s in 4..9 {
            files.append(&entry(s, kind(s))).expect("append");
        }
        let names: Vec<String> = list_chunks(&dir).expect("list").iter().map(|c| c.file_name()).collect();
        assert_eq!(names, ["ledger_0-5", "ledger_6"], "closed at the signature at 5, once; the signature at 8 does not close");
    }

    #[test]
    fn torn_tail_is_cut_and_damage_elsewhere_is_an_error() {
        let dir = tempdir("torn");
        let mut files = LedgerFiles::open(&dir, 250).expect("open");
        for s in 0..5 {
            let kind = if s == 1 { EntryKind::Signature } else { EntryKind::Tx };
            files.append(&entry(s, kind)).expect("append");
        }
        files.sync().expect("sync");
        drop(files);
        let open_chunk = dir.join("ledger_2");
        let (records, damage) = read_chunk(&open_chunk).expect("read");
        assert!(damage.is_none(), "the space reserved after the records is not damage: {damage:?}");
        let end = records.last().map(|r| r.offset + r.frame_bytes).expect("records");
        assert!(fs::metadata(&open_chunk).expect("meta").len() > end, "the open chunk reserves space");
        // A crash in the middle of the last append: its tail never reached the disk.
        let f = OpenOptions::new().write(true).open(&open_chunk).expect("open");
        f.write_all_at(&[0u8; 10], end - 10).expect("tear");
        drop(f);
        let files = LedgerFiles::open(&dir, 250).expect("torn tail tolerated");
        assert_eq!(files.len(), 4);
        drop(files);
        // Cut at the torn record; the next append reserves space again and reads back.
        assert_eq!(fs::metadata(&open_chunk).expect("meta").len(), records[records.len() - 1].offset);
        let mut files = LedgerFiles::open(&dir, 250).expect("reopen");
        files.append(&entry(4, EntryKind::Tx)).expect("append after the cut");
        files.sync().expect("sync");
        assert_eq!(files.read(4).expect("read"), entry(4, EntryKind::Tx));
        drop(files);
        let closed = dir.join("ledger_0-1");
        let mut bytes = fs::read(&closed).expect("read");
        bytes[60] ^= 0x01;
        fs::write(&closed, bytes).expect("write");
        let err = LedgerFiles::open(&dir, 250).expect_err("corruption refused");
        assert!(err.to_string().contains("ledger_0-1"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_clean_close_leaves_only_records_and_bytes_after_them_are_named() {
        let dir = tempdir("clean-tail");
        let mut files = LedgerFiles::open(&dir, 1 << 20).expect("open");
        for s in 0..3 {
            files.append(&entry(s, EntryKind::Tx)).expect("append");
        }
        let open_chunk = dir.join("ledger_0");
        let (records, _) = read_chunk(&open_chunk).expect("read");
        let end = records.last().map(|r| r.offset + r.frame_bytes).expect("records");
        assert!(fs::metadata(&open_chunk).expect("meta").len() > end, "the open chunk reserves space while it is written");
        files.close_tail().expect("close");
        assert_eq!(fs::metadata(&open_chunk).expect("meta").len(), end, "only records are left");
        // Appending after a close reserves again, right after the last record.
        files.append(&entry(3, EntryKind::Tx)).expect("append after close");
        files.close_tail().expect("close");
        drop(files);
        let (records, damage) = read_chunk(&open_chunk).expect("read");
        assert_eq!((records.len(), damage), (4, None));
        let end = fs::metadata(&open_chunk).expect("meta").len();
        // A node stopped on a crash leaves its reservation: zeros only, not damage; a non-zero
        // byte there is damage, named at its own offset.
        let f = OpenOptions::new().write(true).open(&open_chunk).expect("open");
        f.write_all_at(&[0u8; 4096], end).expect("reserve");
        assert_eq!(read_chunk(&open_chunk).expect("read").1, None, "zeros after the records");
        f.write_all_at(&[0x5a], end + 1000).expect("flip");
        drop(f);
        let (records, damage) = read_chunk(&open_chunk).expect("read");
        let (offset, reason) = damage.expect("damage");
        assert_eq!((records.len(), offset), (4, end + 1000), "{reason}");
        assert!(reason.contains("non-zero byte after the last record"), "{reason}");
        // At the tail it can be a write a crash tore: a restart cuts it at the last record.
        let mut files = LedgerFiles::open(&dir, 1 << 20).expect("open cuts the tail");
        assert_eq!(files.len(), 4);
        assert_eq!(fs::metadata(&open_chunk).expect("meta").len(), end);
        files.append(&entry(4, EntryKind::Tx)).expect("append after the cut");
        files.close_tail().expect("close");
        drop(files);
        assert_eq!(read_chunk(&open_chunk).expect("read").0.len(), 5);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn damage_with_intact_records_after_it_is_never_cut_as_a_torn_write() {
        for (what, flip) in [("length prefix", 0usize), ("digest", 10), ("body", 50)] {
            let dir = tempdir("mid-damage");
            let mut files = LedgerFiles::open(&dir, 1 << 20).expect("open");
            for s in 0..4 {
                files.append(&entry(s, EntryKind::Tx)).expect("append");
            }
            files.sync().expect("sync");
            drop(files);
            let open_chunk = dir.join("ledger_0");
            let mut bytes = fs::read(&open_chunk).expect("read");
            let second = frame(&entry(0, EntryKind::Tx)).len();
            bytes[second + flip + 2] ^= 0x40;
            fs::write(&open_chunk, &bytes).expect("write");
            let err = LedgerFiles::open(&dir, 1 << 20).expect_err(what);
            assert!(err.to_string().contains("intact records after it"), "{what}: {err}");
            assert_eq!(fs::read(&open_chunk).expect("read"), bytes, "{what}: nothing was cut");
            let _ = fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn appends_are_synced_as_the_durability_policy_says() {
        for (durability, expected) in [(Durability::SyncPoints, [0, 0, 0, 1, 1]), (Durability::EveryAppend, [1, 2, 3, 4, 5])] {
            let dir = tempdir("durability");
            let (mut files, _) = LedgerFiles::open_from(&dir, 1 << 20, 0, durability).expect("open");
            let mut syncs = Vec::new();
            for s in 0..5 {
                files.append(&entry(s, if s == 3 { EntryKind::Signature } else { EntryKind::Tx })).expect("append");
                files.settle().expect("settle");
                syncs.push(files.syncs());
            }
            // Under SyncPoints the transactions before the signature were synced before it
            // was written, then the signature itself: two syncs, one settle.
            let expected: Vec<u64> = expected.iter().map(|n| if durability == Durability::SyncPoints { n * 2 } else { *n }).collect();
            assert_eq!(syncs, expected, "{durability:?}");
            let _ = fs::remove_dir_all(&dir);
        }
    }

    /// A chunk whose record `hole` a power loss left as zeros, with the records after it on disk.
    fn ledger_with_a_hole(name: &str, kinds: &[EntryKind], hole: usize) -> (PathBuf, Vec<u8>) {
        let dir = tempdir(name);
        let (mut files, _) = LedgerFiles::open_from(&dir, 1 << 20, 0, Durability::SyncPoints).expect("open");
        for (s, kind) in kinds.iter().enumerate() {
            files.append(&entry(s as u64, *kind)).expect("append");
        }
        files.sync().expect("sync");
        drop(files);
        let chunk = dir.join("ledger_0");
        let (records, _) = read_chunk(&chunk).expect("read");
        let mut bytes = fs::read(&chunk).expect("read");
        let r = &records[hole];
        bytes[r.offset as usize..(r.offset + r.frame_bytes) as usize].fill(0);
        fs::write(&chunk, &bytes).expect("write");
        (dir, bytes)
    }

    #[test]
    fn a_hole_only_transactions_follow_is_cut_under_sync_points_and_refused_otherwise() {
        use EntryKind::{Signature, Tx};
        let kinds = [Tx, Signature, Tx, Tx, Tx];
        let (dir, bytes) = ledger_with_a_hole("hole-tail", &kinds, 2);
        let err = LedgerFiles::open(&dir, 1 << 20).expect_err("every-append ledgers never have holes");
        assert!(err.to_string().contains("intact records after it"), "{err}");
        assert_eq!(fs::read(dir.join("ledger_0")).expect("read"), bytes, "nothing was cut");
        let (mut files, opened) = LedgerFiles::open_from(&dir, 1 << 20, 0, Durability::SyncPoints).expect("cut after the last sync point");
        assert_eq!(files.len(), 2, "the signature and what it covers stay");
        assert_eq!((opened.last, opened.last_sync_point), (Some(TxId::new(1, 1)), Some(TxId::new(1, 1))));
        files.append(&entry(2, Tx)).expect("append after the cut");
        files.sync().expect("sync");
        assert_eq!(files.read(2).expect("read"), entry(2, Tx));
        let _ = fs::remove_dir_all(&dir);

        // A sync point after the hole proves the hole was on disk once: corruption.
        let (dir, bytes) = ledger_with_a_hole("hole-signed", &[Tx, Tx, Tx, Signature, Tx], 1);
        let err = LedgerFiles::open_from(&dir, 1 << 20, 0, Durability::SyncPoints).expect_err("signed damage refused");
        assert!(err.to_string().contains("intact records after it"), "{err}");
        assert_eq!(fs::read(dir.join("ledger_0")).expect("read"), bytes, "nothing was cut");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_ledger_can_start_after_a_snapshot() {
        let dir = tempdir("from");
        let (mut files, _) = LedgerFiles::open_from(&dir, 300, 40, Durability::EveryAppend).expect("open");
        assert_eq!((files.first(), files.len()), (40, 40));
        for s in 40..46 {
            let kind = if s % 4 == 3 { EntryKind::Signature } else { EntryKind::Tx };
            files.append(&entry(s, kind)).expect("append");
        }
        files.sync().expect("sync");
        assert!(matches!(files.read(39), Err(LedgerFilesError::Missing(39))));
        assert_eq!(files.read(41).expect("read"), entry(41, EntryKind::Tx));
        assert!(files.truncate(39).is_err(), "nothing before the start can be cut");
        drop(files);
        let (mut files, opened) =
            LedgerFiles::open_from(&dir, 300, 0, Durability::EveryAppend).expect("reopen: its files say where it starts");
        assert_eq!((files.first(), files.len(), opened.last), (40, 46, Some(TxId::new(1, 45))));
        files.truncate(44).expect("truncate");
        files.append(&entry(44, EntryKind::Tx)).expect("append after truncate");
        assert_eq!(list_chunks(&dir).expect("list")[0].first, 40);
        let _ = fs::remove_dir_all(&dir);
    }
}
