//! A transaction: reads from one snapshot, its own writes on top.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::{Bytes, State, TxId, WriteSet};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The transaction has already been turned into a write set.
    #[error("transaction is closed")]
    Closed,
}

/// Cloning is cheap for small transactions (the snapshot is shared): governance tries `apply` on
/// a clone so that a failing one leaves none of its writes.
#[derive(Clone)]
pub struct Tx {
    pub(crate) snapshot: Arc<State>,
    /// Version seen for each key read from the snapshot (0 = never written).
    pub(crate) reads: HashMap<(String, Bytes), u64>,
    /// Map version seen by whole-map reads (`forEach`, `size`).
    pub(crate) map_reads: HashMap<String, u64>,
    pub(crate) writes: WriteSet,
}

impl Tx {
    pub fn new(snapshot: Arc<State>) -> Self {
        Tx { snapshot, reads: HashMap::new(), map_reads: HashMap::new(), writes: WriteSet::default() }
    }

    /// The last transaction visible to this one's reads.
    pub fn read_txid(&self) -> TxId {
        self.snapshot.txid()
    }

    pub fn snapshot(&self) -> &Arc<State> {
        &self.snapshot
    }

    fn own_write(&self, map: &str, key: &[u8]) -> Option<&Option<Bytes>> {
        self.writes.maps.get(map)?.get(key)
    }

    fn note_read(&mut self, map: &str, key: &[u8]) {
        let version = self.snapshot.version_of(map, key);
        self.reads.entry((map.to_owned(), key.to_vec())).or_insert(version);
    }

    pub fn get(&mut self, map: &str, key: &[u8]) -> Option<Bytes> {
        if let Some(own) = self.own_write(map, key) {
            return own.clone();
        }
        self.note_read(map, key);
        self.snapshot.get(map, key).map(|v| v.to_vec())
    }

    pub fn has(&mut self, map: &str, key: &[u8]) -> bool {
        if let Some(own) = self.own_write(map, key) {
            return own.is_some();
        }
        self.note_read(map, key);
        self.snapshot.get(map, key).is_some()
    }

    /// The seqno of the last committed write of `key` before this transaction, if any.
    /// Keys written by this transaction have no committed version yet.
    pub fn version_of_previous_write(&mut self, map: &str, key: &[u8]) -> Option<u64> {
        if self.own_write(map, key).is_some() {
            return None;
        }
        self.note_read(map, key);
        self.snapshot.entry(map, key).map(|e| e.version)
    }

    pub fn put(&mut self, map: &str, key: Bytes, value: Bytes) {
        self.writes.put(map, key, value);
    }

    /// Removes `key`; returns whether it had a value.
    pub fn remove(&mut self, map: &str, key: Bytes) -> bool {
        let existed = self.has(map, &key);
        self.writes.remove(map, key);
        existed
    }

    /// Removes every key of `map`.
    pub fn clear(&mut self, map: &str) {
        for (key, _) in self.entries(map) {
            self.writes.remove(map, key);
        }
    }

    /// Every live `(key, value)` of `map` as this transaction sees it, in key order.
    pub fn entries(&mut self, map: &str) -> Vec<(Bytes, Bytes)> {
        self.map_reads.entry(map.to_owned()).or_insert(self.snapshot.map_version(map));
        let mut merged: BTreeMap<Bytes, Option<Bytes>> = self.snapshot.iter(map).map(|(k, v)| (k.clone(), Some(v.to_vec()))).collect();
        if let Some(own) = self.writes.maps.get(map) {
            merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        merged.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()
    }

    /// The number of live keys of `map` as this transaction sees it.
    pub fn size(&mut self, map: &str) -> usize {
        self.map_reads.entry(map.to_owned()).or_insert(self.snapshot.map_version(map));
        let base = self.snapshot.map(map).map_or(0, |m| m.live);
        let Some(own) = self.writes.maps.get(map) else {
            return base;
        };
        own.iter().fold(base, |n, (key, value)| {
            let before = self.snapshot.get(map, key).is_some();
            match (before, value.is_some()) {
                (false, true) => n + 1,
                (true, false) => n - 1,
                _ => n,
            }
        })
    }

    pub fn write_set(&self) -> &WriteSet {
        &self.writes
    }

    pub fn into_write_set(self) -> WriteSet {
        self.writes
    }

    pub(crate) fn key_reads(&self) -> impl Iterator<Item = (&(String, Bytes), &u64)> {
        self.reads.iter()
    }

    pub(crate) fn map_reads(&self) -> impl Iterator<Item = (&String, &u64)> {
        self.map_reads.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn commit(store: &Store, tx: Tx, txid: TxId) -> Result<(), crate::Conflict> {
        let r = store.reserve(&tx)?;
        store.apply(txid, tx.write_set());
        drop(r);
        Ok(())
    }

    #[test]
    fn reads_see_own_writes_and_snapshot_only() {
        let store = Store::default();
        let mut t1 = store.begin();
        t1.put("m", b"a".to_vec(), b"1".to_vec());
        assert_eq!(t1.get("m", b"a"), Some(b"1".to_vec()));
        let mut t2 = store.begin();
        commit(&store, t1, TxId::new(1, 1)).expect("commit");
        // t2's snapshot predates t1.
        assert_eq!(t2.get("m", b"a"), None);
        assert_eq!(store.begin().get("m", b"a"), Some(b"1".to_vec()));
    }

    #[test]
    fn read_write_conflict_is_detected_and_retry_succeeds() {
        let store = Store::default();
        let mut a = store.begin();
        let mut b = store.begin();
        let n = |t: &mut Tx| t.get("c", b"n").map_or(0, |v| v[0]);
        let na = n(&mut a);
        a.put("c", b"n".to_vec(), vec![na + 1]);
        let nb = n(&mut b);
        b.put("c", b"n".to_vec(), vec![nb + 1]);
        commit(&store, a, TxId::new(1, 1)).expect("first wins");
        assert!(commit(&store, b, TxId::new(1, 2)).is_err(), "second must conflict");
        let mut retry = store.begin();
        let nr = n(&mut retry);
        retry.put("c", b"n".to_vec(), vec![nr + 1]);
        commit(&store, retry, TxId::new(1, 2)).expect("retry");
        assert_eq!(store.begin().get("c", b"n"), Some(vec![2]));
    }

    #[test]
    fn in_flight_writes_block_readers_until_applied() {
        let store = Store::default();
        let mut a = store.begin();
        a.get("m", b"k");
        a.put("m", b"k".to_vec(), b"x".to_vec());
        let ra = store.reserve(&a).expect("a reserves");
        let mut b = store.begin();
        b.get("m", b"k");
        b.put("m", b"k".to_vec(), b"y".to_vec());
        assert!(store.reserve(&b).is_err(), "b read k while a's write is in flight");
        store.apply(TxId::new(1, 1), a.write_set());
        drop(ra);
        let mut c = store.begin();
        c.get("m", b"k");
        let rc = store.reserve(&c).expect("c sees a's write");
        store.release(rc);
    }

    #[test]
    fn blind_writes_do_not_conflict_and_whole_map_reads_do() {
        let store = Store::default();
        let mut scan = store.begin();
        assert_eq!(scan.size("m"), 0);
        let mut blind = store.begin();
        blind.put("m", b"z".to_vec(), b"1".to_vec());
        commit(&store, blind, TxId::new(1, 1)).expect("blind");
        scan.put("other", b"k".to_vec(), b"v".to_vec());
        assert!(commit(&store, scan, TxId::new(1, 2)).is_err(), "size() read the map that changed");
    }

    #[test]
    fn versions_sizes_and_clear() {
        let store = Store::default();
        let mut t = store.begin();
        t.put("m", b"a".to_vec(), b"1".to_vec());
        t.put("m", b"b".to_vec(), b"2".to_vec());
        commit(&store, t, TxId::new(2, 5)).expect("commit");
        let mut t = store.begin();
        assert_eq!(t.version_of_previous_write("m", b"a"), Some(5));
        assert_eq!(t.version_of_previous_write("m", b"nope"), None);
        assert_eq!(t.size("m"), 2);
        assert!(t.remove("m", b"a".to_vec()));
        assert!(!t.remove("m", b"nope".to_vec()));
        assert_eq!(t.size("m"), 1);
        commit(&store, t, TxId::new(2, 6)).expect("commit");
        let mut t = store.begin();
        assert_eq!(t.version_of_previous_write("m", b"a"), Some(6), "deletion is a write");
        t.clear("m");
        assert_eq!(t.size("m"), 0);
        assert!(t.entries("m").is_empty());
        commit(&store, t, TxId::new(2, 7)).expect("commit");
        assert_eq!(store.snapshot().txid(), TxId::new(2, 7));
        assert_eq!(store.begin().size("m"), 0);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::Store;
    use proptest::prelude::*;

    /// Concurrent increments of a few counters, interleaved in any order: every increment that
    /// reserved is applied exactly once, every one that conflicted is retried, and the final
    /// counters equal the number of increments (nothing lost, nothing applied twice).
    fn run(ops: Vec<(u8, bool)>) {
        let store = Store::default();
        let mut seqno = 0;
        let mut pending: Vec<(u8, Tx)> = Vec::new();
        let mut expected = [0u64; 4];
        let start = |store: &Store, key: u8| {
            let mut tx = store.begin();
            let n = tx.get("c", &[key]).map_or(0, |v| u64::from_le_bytes(v.try_into().expect("8 bytes")));
            tx.put("c", vec![key], (n + 1).to_le_bytes().to_vec());
            tx
        };
        for (key, commit_one) in ops {
            let key = key % 4;
            pending.push((key, start(&store, key)));
            expected[key as usize] += 1;
            if commit_one {
                let (k, tx) = pending.remove(0);
                let mut tx = tx;
                loop {
                    match store.reserve(&tx) {
                        Ok(r) => {
                            seqno += 1;
                            store.apply(TxId::new(1, seqno), tx.write_set());
                            drop(r);
                            break;
                        }
                        Err(_) => tx = start(&store, k),
                    }
                }
            }
        }
        for (k, mut tx) in pending {
            while store.reserve(&tx).is_err() {
                tx = start(&store, k);
            }
            seqno += 1;
            store.apply(TxId::new(1, seqno), tx.write_set());
        }
        let mut check = store.begin();
        for key in 0..4u8 {
            let n = check.get("c", &[key]).map_or(0, |v| u64::from_le_bytes(v.try_into().expect("8 bytes")));
            assert_eq!(n, expected[key as usize], "counter {key}");
        }
    }

    proptest! {
        #[test]
        fn no_increment_lost_or_doubled(ops in proptest::collection::vec((any::<u8>(), any::<bool>()), 1..40)) {
            run(ops);
        }
    }
}
