//! Committed state and the optimistic-concurrency gate in front of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use imbl::OrdMap;

use crate::{Bytes, Tx, TxId, WriteSet};

/// One key's committed value (or tombstone) and the seqno that wrote it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) value: Option<Arc<[u8]>>,
    pub(crate) version: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MapState {
    pub(crate) entries: OrdMap<Bytes, Entry>,
    /// The last seqno that changed any key of this map.
    pub(crate) version: u64,
    /// Keys with a value (tombstones excluded).
    pub(crate) live: usize,
    /// Bytes of the live keys and their values.
    pub(crate) bytes: u64,
}

impl MapState {
    /// Sets `key`'s entry, keeping `live` and `bytes` true.
    fn set(&mut self, key: Bytes, entry: Entry) {
        let size = |k: &Bytes, e: &Entry| e.value.as_ref().map_or(0, |v| (k.len() + v.len()) as u64);
        let added = size(&key, &entry);
        let now_live = entry.value.is_some();
        let before = self.entries.get(&key).map(|e| (e.value.is_some(), size(&key, e)));
        let (was_live, removed) = before.unwrap_or((false, 0));
        self.entries.insert(key, entry);
        self.live = self.live + usize::from(now_live) - usize::from(was_live);
        self.bytes = self.bytes + added - removed;
    }
}

/// The committed state of every map as of `txid`. Cloning is O(1) (persistent maps), so every
/// transaction reads its own immutable snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub(crate) maps: OrdMap<String, MapState>,
    pub(crate) txid: TxId,
}

impl State {
    /// The last transaction applied to this state.
    pub fn txid(&self) -> TxId {
        self.txid
    }

    pub fn get(&self, map: &str, key: &[u8]) -> Option<&Arc<[u8]>> {
        self.maps.get(map)?.entries.get(key)?.value.as_ref()
    }

    /// The seqno of the last write (put or remove) of `key`, 0 if never written.
    pub fn version_of(&self, map: &str, key: &[u8]) -> u64 {
        self.maps.get(map).and_then(|m| m.entries.get(key)).map_or(0, |e| e.version)
    }

    pub(crate) fn entry(&self, map: &str, key: &[u8]) -> Option<&Entry> {
        self.maps.get(map)?.entries.get(key)
    }

    pub(crate) fn map(&self, map: &str) -> Option<&MapState> {
        self.maps.get(map)
    }

    pub fn map_version(&self, map: &str) -> u64 {
        self.maps.get(map).map_or(0, |m| m.version)
    }

    pub fn map_names(&self) -> impl Iterator<Item = &String> {
        self.maps.keys()
    }

    /// Live `(key, value)` pairs of one map in key order.
    pub fn iter<'a>(&'a self, map: &str) -> impl Iterator<Item = (&'a Bytes, &'a Arc<[u8]>)> + 'a {
        self.iter_versioned(map).map(|(k, v, _)| (k, v))
    }

    /// Live `(key, value, seqno that wrote it)` of one map in key order.
    pub fn iter_versioned<'a>(&'a self, map: &str) -> impl Iterator<Item = (&'a Bytes, &'a Arc<[u8]>, u64)> + 'a {
        self.maps.get(map).into_iter().flat_map(|m| m.entries.iter().filter_map(|(k, e)| e.value.as_ref().map(|v| (k, v, e.version))))
    }

    /// Applies a write set as transaction `txid`: every key it writes gets version `txid.seqno`.
    pub fn apply(&mut self, txid: TxId, writes: &WriteSet) {
        assert!(txid.seqno > self.txid.seqno || self.txid == TxId::default(), "apply out of order: {txid} after {}", self.txid);
        for (name, map_writes) in &writes.maps {
            if map_writes.is_empty() {
                continue;
            }
            let map = self.maps.entry(name.clone()).or_default();
            map.version = txid.seqno;
            for (key, value) in map_writes {
                map.set(key.clone(), Entry { value: value.as_deref().map(Arc::from), version: txid.seqno });
            }
        }
        self.txid = txid;
    }

    /// Advances the transaction id without writes (signature and consensus entries).
    pub fn advance(&mut self, txid: TxId) {
        self.txid = txid;
    }

    /// Puts one key as a snapshot recorded it: its value and the seqno that wrote it. A map's
    /// version becomes the newest of its keys' (a snapshot holds no tombstones).
    pub fn restore(&mut self, map: &str, key: Bytes, value: &[u8], version: u64) {
        let m = self.maps.entry(map.to_owned()).or_default();
        m.version = m.version.max(version);
        m.set(key, Entry { value: Some(Arc::from(value)), version });
    }

    /// Bytes of every live key and value.
    pub fn bytes(&self) -> u64 {
        self.maps.values().map(|m| m.bytes).sum()
    }

    /// About what a copy of this state takes, encoded or in memory: its keys and values, plus
    /// 32 bytes for every entry (tombstones included).
    pub fn size_estimate(&self) -> u64 {
        self.maps.values().map(|m| m.bytes + 32 * m.entries.len() as u64).sum()
    }
}

/// The reason a transaction could not be reserved: something it read has changed or is about
/// to change. The caller re-executes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transaction conflict on map {map:?}")]
pub struct Conflict {
    pub map: String,
}

/// Proof that a transaction passed the gate; its writes are in flight until applied.
#[must_use = "a reservation must be applied or released"]
#[derive(Debug)]
pub struct Reservation {
    keys: Vec<(String, Bytes)>,
}

#[derive(Default)]
struct InFlight {
    keys: HashMap<(String, Bytes), u32>,
    maps: HashMap<String, u32>,
}

impl InFlight {
    fn add(&mut self, map: &str, key: &[u8]) {
        *self.keys.entry((map.to_owned(), key.to_vec())).or_default() += 1;
        *self.maps.entry(map.to_owned()).or_default() += 1;
    }

    /// Saturating: a write set applied on a node that never reserved it (a backup replaying the
    /// primary's entries, or a restart replaying the ledger) has nothing to retire.
    fn retire(&mut self, map: &str, key: &[u8]) {
        let k = (map.to_owned(), key.to_vec());
        if let Some(n) = self.keys.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                self.keys.remove(&k);
            }
            if let Some(m) = self.maps.get_mut(map) {
                *m -= 1;
                if *m == 0 {
                    self.maps.remove(map);
                }
            }
        }
    }
}

struct Inner {
    state: Arc<State>,
    in_flight: InFlight,
}

/// The store a node serves from: the newest applied [`State`] plus the writes in flight.
pub struct Store {
    inner: Mutex<Inner>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(State::default())
    }
}

impl Store {
    pub fn new(state: State) -> Self {
        Store { inner: Mutex::new(Inner { state: Arc::new(state), in_flight: InFlight::default() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock is a bug in this module; the data is still consistent
        // because every critical section below completes its update before it can panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Arc<State> {
        self.lock().state.clone()
    }

    pub fn begin(&self) -> Tx {
        Tx::new(self.snapshot())
    }

    /// Checks `tx`'s reads against the newest state and the writes in flight; on success its
    /// writes become in flight. Must be followed by [`Store::apply`] of the same write set, or
    /// by [`Store::release`] if it never reaches the ledger.
    pub fn reserve(&self, tx: &Tx) -> Result<Reservation, Conflict> {
        let mut inner = self.lock();
        for ((map, key), seen) in tx.key_reads() {
            if inner.state.version_of(map, key) != *seen || inner.in_flight.keys.contains_key(&(map.clone(), key.clone())) {
                return Err(Conflict { map: map.clone() });
            }
        }
        for (map, seen) in tx.map_reads() {
            if inner.state.map_version(map) != *seen || inner.in_flight.maps.contains_key(map) {
                return Err(Conflict { map: map.clone() });
            }
        }
        let mut keys = Vec::new();
        for (map, writes) in &tx.write_set().maps {
            for key in writes.keys() {
                inner.in_flight.add(map, key);
                keys.push((map.clone(), key.clone()));
            }
        }
        Ok(Reservation { keys })
    }

    /// Forgets a reservation whose write set will never be applied.
    pub fn release(&self, reservation: Reservation) {
        let mut inner = self.lock();
        for (map, key) in &reservation.keys {
            inner.in_flight.retire(map, key);
        }
    }

    /// Applies a write set at `txid` and retires its in-flight marks.
    pub fn apply(&self, txid: TxId, writes: &WriteSet) {
        let mut inner = self.lock();
        let mut next = (*inner.state).clone();
        next.apply(txid, writes);
        inner.state = Arc::new(next);
        for (map, map_writes) in &writes.maps {
            for key in map_writes.keys() {
                inner.in_flight.retire(map, key);
            }
        }
    }

    /// Records that `txid` holds no KV writes (signatures, consensus entries).
    pub fn advance(&self, txid: TxId) {
        let mut inner = self.lock();
        let mut next = (*inner.state).clone();
        next.advance(txid);
        inner.state = Arc::new(next);
    }

    /// Replaces the whole state (installing a snapshot); nothing may be in flight.
    pub fn reset(&self, state: State) {
        let mut inner = self.lock();
        inner.state = Arc::new(state);
        inner.in_flight = InFlight::default();
    }
}
