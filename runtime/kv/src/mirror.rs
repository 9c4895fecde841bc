//! Copies of the state kept in another process, and transactions run on such a copy.
//!
//! A JS worker process keeps a copy of the node's [`State`], so that a script's `ccf.kv`
//! operations need no round trip to the node. Before each request the node sends the worker the
//! [`StateDelta`] from the state it sent last to the request's snapshot. States are persistent
//! maps that share structure, so the delta skips every subtree the two share: its cost follows
//! what changed, not the size of the state. The worker runs the request on its copy in an
//! ordinary [`Tx`] and sends back its [`TxEffects`] (each key and map it read, at the version it
//! saw, and its write set), which the node absorbs into the request's own transaction, on the
//! same snapshot, before reserving it as usual. Absorbing checks every version read against the
//! node's snapshot, so a copy that differed from the node's state could never commit.

use std::sync::Arc;

use imbl::ordmap::DiffItem;
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::store::{Entry, MapState};
use crate::{Bytes, State, Tx, TxId, WriteSet};

/// What turns the state at `base` into the state at `target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateDelta {
    pub base: TxId,
    pub target: TxId,
    pub maps: Vec<MapDelta>,
}

/// One map's changes. `header` is `None` when the map is gone (a snapshot was installed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapDelta {
    pub name: String,
    pub header: Option<MapHeader>,
    pub entries: Vec<EntryChange>,
}

/// A map's own figures after the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapHeader {
    pub version: u64,
    pub live: u64,
    pub bytes: u64,
}

/// One key's entry after the change: `None` when the key is gone; otherwise its value (`None`
/// for a tombstone) and the seqno that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryChange {
    #[serde(with = "serde_bytes")]
    pub key: Bytes,
    pub entry: Option<(Option<serde_bytes::ByteBuf>, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    #[error("a state delta from {delta} cannot apply to the state at {have}")]
    WrongBase { delta: TxId, have: TxId },
    #[error("effects of a transaction that read {effects} cannot join one that reads {have}")]
    WrongSnapshot { effects: TxId, have: TxId },
    #[error("the copy read {map:?} at version {copy}, the node's state has {node}: the copies differ")]
    Diverged { map: String, copy: u64, node: u64 },
    #[error("effects can only join a transaction that has not read or written anything yet")]
    NotFresh,
    #[error("the write set of the effects does not decode: {0}")]
    Writes(#[from] crate::DecodeError),
}

impl State {
    /// The delta that turns `old` into this state.
    pub fn delta_from(&self, old: &State) -> StateDelta {
        let mut maps = Vec::new();
        if !self.maps.ptr_eq(&old.maps) {
            let empty = OrdMap::new();
            for (name, new) in &self.maps {
                let before = old.maps.get(name);
                if before.is_some_and(|o| o.entries.ptr_eq(&new.entries) && header(o) == header(new)) {
                    continue;
                }
                let entries = before
                    .map_or(&empty, |o| &o.entries)
                    .diff(&new.entries)
                    .map(|item| match item {
                        DiffItem::Add(key, e) | DiffItem::Update { new: (key, e), .. } => EntryChange {
                            key: key.clone(),
                            entry: Some((e.value.as_ref().map(|v| serde_bytes::ByteBuf::from(v.to_vec())), e.version)),
                        },
                        DiffItem::Remove(key, _) => EntryChange { key: key.clone(), entry: None },
                    })
                    .collect();
                maps.push(MapDelta { name: name.clone(), header: Some(header(new)), entries });
            }
            for name in old.maps.keys().filter(|n| !self.maps.contains_key(*n)) {
                maps.push(MapDelta { name: name.clone(), header: None, entries: Vec::new() });
            }
        }
        StateDelta { base: old.txid, target: self.txid, maps }
    }

    /// Applies a delta computed from a state equal to this one.
    pub fn apply_delta(&mut self, delta: &StateDelta) -> Result<(), MirrorError> {
        if self.txid != delta.base {
            return Err(MirrorError::WrongBase { delta: delta.base, have: self.txid });
        }
        for m in &delta.maps {
            let Some(h) = m.header else {
                self.maps.remove(&m.name);
                continue;
            };
            let map = self.maps.entry(m.name.clone()).or_default();
            for change in &m.entries {
                match &change.entry {
                    None => {
                        map.entries.remove(&change.key);
                    }
                    Some((value, version)) => {
                        let entry = Entry { value: value.as_deref().map(|v| Arc::from(&v[..])), version: *version };
                        map.entries.insert(change.key.clone(), entry);
                    }
                }
            }
            (map.version, map.live, map.bytes) = (h.version, h.live as usize, h.bytes);
        }
        self.txid = delta.target;
        Ok(())
    }
}

fn header(m: &MapState) -> MapHeader {
    MapHeader { version: m.version, live: m.live as u64, bytes: m.bytes }
}

/// What a transaction read (each key and whole map, at the version it saw) and wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxEffects {
    pub read_txid: TxId,
    pub key_reads: Vec<(String, serde_bytes::ByteBuf, u64)>,
    pub map_reads: Vec<(String, u64)>,
    /// The write set in its canonical encoding.
    #[serde(with = "serde_bytes")]
    pub writes: Vec<u8>,
}

impl TxEffects {
    /// The effects of a transaction on the snapshot at `read_txid` that wrote `writes` without
    /// reading anything.
    pub fn writes_only(read_txid: TxId, writes: &WriteSet) -> TxEffects {
        TxEffects { read_txid, key_reads: Vec::new(), map_reads: Vec::new(), writes: writes.encode() }
    }
}

impl Tx {
    /// Whether this transaction has read or written nothing yet.
    pub fn is_untouched(&self) -> bool {
        self.reads.is_empty() && self.map_reads.is_empty() && self.writes.is_empty()
    }

    pub fn effects(&self) -> TxEffects {
        TxEffects {
            read_txid: self.read_txid(),
            key_reads: self.reads.iter().map(|((m, k), v)| (m.clone(), serde_bytes::ByteBuf::from(k.clone()), *v)).collect(),
            map_reads: self.map_reads.iter().map(|(m, v)| (m.clone(), *v)).collect(),
            writes: self.writes.encode(),
        }
    }

    /// Takes on the reads and writes of a transaction run on a copy of this one's snapshot, as
    /// if it had made them itself. Every version read must be the snapshot's.
    pub fn absorb(&mut self, effects: &TxEffects) -> Result<(), MirrorError> {
        if !self.is_untouched() {
            return Err(MirrorError::NotFresh);
        }
        if effects.read_txid != self.read_txid() {
            return Err(MirrorError::WrongSnapshot { effects: effects.read_txid, have: self.read_txid() });
        }
        let writes = WriteSet::decode(&effects.writes)?;
        for (map, key, copy) in &effects.key_reads {
            let node = self.snapshot.version_of(map, key);
            if node != *copy {
                return Err(MirrorError::Diverged { map: map.clone(), copy: *copy, node });
            }
        }
        for (map, copy) in &effects.map_reads {
            let node = self.snapshot.map_version(map);
            if node != *copy {
                return Err(MirrorError::Diverged { map: map.clone(), copy: *copy, node });
            }
        }
        self.reads = effects.key_reads.iter().map(|(m, k, v)| ((m.clone(), k.to_vec()), *v)).collect();
        self.map_reads = effects.map_reads.iter().cloned().collect();
        self.writes = writes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A sequence of write sets over a few maps and keys: puts, removals, new maps.
    fn writes() -> impl Strategy<Value = Vec<Vec<(u8, u8, Option<u8>)>>> {
        prop::collection::vec(prop::collection::vec((0u8..4, 0u8..12, prop::option::of(any::<u8>())), 0..6), 1..30)
    }

    fn write_set(ops: &[(u8, u8, Option<u8>)]) -> WriteSet {
        let mut w = WriteSet::default();
        for (map, key, value) in ops {
            let name = format!("m{map}");
            match value {
                Some(v) => w.put(&name, vec![*key], vec![*v; usize::from(*v % 5)]),
                None => w.remove(&name, vec![*key]),
            }
        }
        w
    }

    proptest! {
        /// Applying the delta between any two states of one history to the older one gives
        /// the newer one exactly: entries, tombstones, versions, counts and sizes.
        #[test]
        fn a_delta_turns_one_state_into_the_other(history in writes(), from in 0usize..30, to in 0usize..30) {
            let mut states = vec![State::default()];
            for (i, ops) in history.iter().enumerate() {
                let mut next = states.last().expect("one").clone();
                next.apply(TxId::new(2, i as u64 + 1), &write_set(ops));
                states.push(next);
            }
            let (from, to) = (from % states.len(), to % states.len());
            let mut copy = states[from].clone();
            copy.apply_delta(&states[to].delta_from(&states[from])).expect("same base");
            prop_assert_eq!(&copy, &states[to]);
            // A fresh copy takes the whole state as one delta from the empty state.
            let mut fresh = State::default();
            fresh.apply_delta(&states[to].delta_from(&State::default())).expect("empty base");
            prop_assert_eq!(&fresh, &states[to]);
        }
    }

    #[test]
    fn bytes_and_live_follow_puts_and_removals() {
        let mut s = State::default();
        s.apply(TxId::new(1, 1), &write_set(&[(0, 1, Some(3)), (0, 2, Some(4)), (1, 1, Some(2))]));
        assert_eq!(s.bytes(), (1 + 3) + (1 + 4) + (1 + 2));
        s.apply(TxId::new(1, 2), &write_set(&[(0, 1, None), (1, 1, Some(4))]));
        assert_eq!(s.bytes(), (1 + 4) + (1 + 4));
        assert_eq!(s.map("m0").map(|m| m.live), Some(1));
    }

    #[test]
    fn a_delta_refuses_another_base_and_a_state_replaced_by_a_snapshot_is_reached() {
        let mut a = State::default();
        a.apply(TxId::new(1, 1), &write_set(&[(0, 1, Some(1))]));
        let mut b = a.clone();
        b.apply(TxId::new(1, 2), &write_set(&[(1, 1, Some(1))]));
        let mut stale = State::default();
        assert_eq!(stale.apply_delta(&b.delta_from(&a)), Err(MirrorError::WrongBase { delta: TxId::new(1, 1), have: TxId::default() }));
        // An unrelated state (as after installing a snapshot): maps the old one had are dropped.
        let mut restored = State::default();
        restored.restore("m3", vec![9], b"x", 7);
        restored.advance(TxId::new(3, 9));
        let mut copy = b.clone();
        copy.apply_delta(&restored.delta_from(&b)).expect("base b");
        assert_eq!(copy, restored);
    }

    #[test]
    fn effects_join_a_fresh_transaction_on_the_same_snapshot_only() {
        let mut s = State::default();
        s.apply(TxId::new(1, 1), &write_set(&[(0, 1, Some(1)), (0, 2, Some(2))]));
        let snapshot = Arc::new(s);
        let mut copy = Tx::new(Arc::new((*snapshot).clone()));
        assert!(copy.get("m0", &[1]).is_some());
        assert_eq!(copy.size("m0"), 2);
        copy.put("m1", vec![5], vec![5]);
        let effects = copy.effects();

        let mut node = Tx::new(snapshot.clone());
        node.absorb(&effects).expect("same snapshot");
        assert_eq!(node.write_set(), copy.write_set());
        assert_eq!(node.effects(), effects);
        assert_eq!(node.absorb(&effects), Err(MirrorError::NotFresh));

        // A copy whose state differed from the node's is caught.
        let mut other = State::default();
        other.apply(TxId::new(1, 1), &write_set(&[(0, 1, Some(9)), (0, 3, Some(2))]));
        let mut wrong = Tx::new(Arc::new(other));
        let _ = wrong.size("m0");
        let _ = wrong.get("m0", &[3]);
        let mut node = Tx::new(snapshot.clone());
        assert!(matches!(node.absorb(&wrong.effects()), Err(MirrorError::Diverged { .. })));
        // And effects read from another snapshot.
        let mut later = (*snapshot).clone();
        later.advance(TxId::new(1, 2));
        let mut node = Tx::new(Arc::new(later));
        assert!(matches!(node.absorb(&effects), Err(MirrorError::WrongSnapshot { .. })));
    }
}
