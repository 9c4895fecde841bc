//! An append-only array of fixed-size items of which only the newest stay in memory.
//!
//! Items `first..len` exist; the newest `window` of them (at least) are in memory, and older
//! ones are written to the array's file, when it has one, or forgotten. The file is a cache the
//! owner derives again at every start (it is not synced, and is recreated empty on open), so
//! what a node keeps in memory does not grow with its ledger while everything stays readable.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpillError {
    #[error("item {0} does not exist")]
    OutOfRange(u64),
    /// The item left memory and there is no file to read it back from.
    #[error("item {0} is no longer kept (only the newest ones are)")]
    Forgotten(u64),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

#[derive(Debug)]
pub struct SpillVec<const W: usize> {
    /// The first item that ever existed (items before it belong to an earlier array).
    first: u64,
    /// The index of `memory[0]`: items `first..memory_from` are in the file or forgotten.
    memory_from: u64,
    memory: VecDeque<[u8; W]>,
    window: usize,
    file: Option<(File, PathBuf)>,
}

impl<const W: usize> SpillVec<W> {
    /// An empty array whose first item will have index `first`; it keeps the newest `window`
    /// items (at least one) in memory and writes older ones to a new, empty file at `path`.
    pub fn new(first: u64, window: usize, path: Option<&Path>) -> Result<Self, SpillError> {
        let file = path
            .map(|p| {
                let f = OpenOptions::new().create(true).read(true).write(true).truncate(true).open(p);
                f.map(|f| (f, p.to_owned())).map_err(|source| SpillError::Io { path: p.to_owned(), source })
            })
            .transpose()?;
        Ok(SpillVec { first, memory_from: first, memory: VecDeque::new(), window: window.max(1), file })
    }

    /// One past the last index.
    pub fn len(&self) -> u64 {
        self.memory_from + self.memory.len() as u64
    }

    pub fn first(&self) -> u64 {
        self.first
    }

    /// Whether no item was pushed.
    pub fn is_empty(&self) -> bool {
        self.len() == self.first
    }

    /// Items in memory now.
    pub fn in_memory(&self) -> usize {
        self.memory.len()
    }

    pub fn last(&self) -> Option<&[u8; W]> {
        self.memory.back()
    }

    pub fn push(&mut self, item: [u8; W]) -> Result<(), SpillError> {
        self.memory.push_back(item);
        // Spilled in batches of an eighth of the window, so that a write moves many items.
        let batch = (self.window / 8).max(1);
        if self.memory.len() < self.window.saturating_add(batch) {
            return Ok(());
        }
        if let Some((file, path)) = &self.file {
            let bytes: Vec<u8> = self.memory.iter().take(batch).flatten().copied().collect();
            let at = (self.memory_from - self.first) * W as u64;
            file.write_all_at(&bytes, at).map_err(|source| SpillError::Io { path: path.clone(), source })?;
        }
        self.memory.drain(..batch);
        self.memory_from += batch as u64;
        Ok(())
    }

    pub fn get(&self, index: u64) -> Result<[u8; W], SpillError> {
        if index < self.first || index >= self.len() {
            return Err(SpillError::OutOfRange(index));
        }
        if index >= self.memory_from {
            return Ok(self.memory[(index - self.memory_from) as usize]);
        }
        let Some((file, path)) = &self.file else { return Err(SpillError::Forgotten(index)) };
        let mut item = [0u8; W];
        file.read_exact_at(&mut item, (index - self.first) * W as u64).map_err(|source| SpillError::Io { path: path.clone(), source })?;
        Ok(item)
    }

    /// The first index in `first..len` whose item `pred` rejects, for a `pred` that holds for a
    /// prefix of the array and then never again (as `slice::partition_point`).
    pub fn partition_point(&self, mut pred: impl FnMut(&[u8; W]) -> bool) -> Result<u64, SpillError> {
        let (mut lo, mut hi) = (self.first, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(&self.get(mid)?) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(i: u64) -> [u8; 8] {
        i.to_le_bytes()
    }

    fn tempfile(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("consort-spill-{name}-{}", std::process::id()))
    }

    #[test]
    fn with_a_file_every_item_stays_readable_and_memory_stays_within_the_window() {
        let path = tempfile("file");
        let mut v = SpillVec::<8>::new(10, 16, Some(&path)).expect("new");
        assert!(v.is_empty());
        for i in 10..1000 {
            v.push(item(i)).expect("push");
            assert!(v.in_memory() <= 16 + 2, "at most the window and a batch: {}", v.in_memory());
        }
        assert_eq!((v.first(), v.len(), v.last()), (10, 1000, Some(&item(999))));
        for i in 10..1000 {
            assert_eq!(v.get(i).expect("get"), item(i), "item {i}");
        }
        assert!(matches!(v.get(9), Err(SpillError::OutOfRange(9))));
        assert!(matches!(v.get(1000), Err(SpillError::OutOfRange(1000))));
        assert_eq!(v.partition_point(|b| u64::from_le_bytes(*b) < 500).expect("search"), 500);
        assert_eq!(v.partition_point(|_| true).expect("search"), 1000);
        assert_eq!(v.partition_point(|_| false).expect("search"), 10);
        // Opening the path again starts an empty array: the file is only a cache.
        let v = SpillVec::<8>::new(0, 16, Some(&path)).expect("reopen");
        assert!(v.is_empty() && std::fs::metadata(&path).expect("meta").len() == 0);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn without_a_file_old_items_are_forgotten_and_say_so() {
        let mut v = SpillVec::<8>::new(0, 4, None).expect("new");
        for i in 0..100 {
            v.push(item(i)).expect("push");
        }
        assert!(v.in_memory() <= 5);
        for i in 96..100 {
            assert_eq!(v.get(i).expect("recent"), item(i));
        }
        assert!(matches!(v.get(3), Err(SpillError::Forgotten(3))));
        assert!(matches!(v.partition_point(|b| u64::from_le_bytes(*b) < 2), Err(SpillError::Forgotten(_))));
    }
}
