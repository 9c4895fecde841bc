//! Historical queries (SPEC §4): committed transactions read back from the ledger, loaded in
//! the background and cached per handle with an expiry, as CCF's historical state cache does.
//! A request for a state that is not loaded yet starts the load and is told to come back
//! (`mode: "historical"` endpoints answer 202 with `retry-after`; `getStateRange` answers null).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consort_consensus::Consensus;
use consort_js::{HistoricalMap, HistoricalState};
use consort_kv::TxId;

/// At most this many transactions are cached (loaded or loading) at once, over all handles.
pub const STATES_MAX: usize = 10_000;
/// At most this many handles are live at once.
pub const HANDLES_MAX: usize = 1_000;
/// How long a `mode: "historical"` request's state stays cached for its retry.
pub const ENDPOINT_EXPIRY: Duration = Duration::from_secs(60);
/// The longest expiry a script may ask for.
const EXPIRY_MAX: Duration = Duration::from_secs(24 * 3600);

/// Who asked: an app's `getStateRange` handle, or a historical endpoint's request.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Handle {
    App(u64),
    Endpoint(u64),
}

enum Slot {
    Loading,
    /// A loaded state and the bytes it is counted as.
    Ready(Arc<HistoricalState>, usize),
    Failed(String),
}

impl Slot {
    fn bytes(&self) -> usize {
        match self {
            Slot::Ready(_, bytes) => *bytes,
            _ => 0,
        }
    }
}

/// What a loaded state is counted as against `memory.historical_cache_bytes`: its keys, values,
/// map names and receipt, and a fixed overhead per write and per state.
fn size_of(state: &HistoricalState) -> usize {
    const OVERHEAD: usize = 64;
    let writes: usize = state
        .maps
        .iter()
        .map(|m| {
            m.name.len() + OVERHEAD + m.writes.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()) + OVERHEAD).sum::<usize>()
        })
        .sum();
    state.receipt.len() + writes + OVERHEAD
}

struct Held {
    seqnos: std::ops::RangeInclusive<u64>,
    expires: Instant,
}

#[derive(Default)]
struct Inner {
    states: HashMap<u64, Slot>,
    handles: HashMap<Handle, Held>,
    /// The bytes of the loaded states, at most `bytes_max`.
    bytes: usize,
    bytes_max: usize,
}

impl Inner {
    /// Forgets the states `keep` rejects.
    fn retain_states(&mut self, mut keep: impl FnMut(u64) -> bool) {
        let mut freed = 0;
        self.states.retain(|s, slot| {
            let kept = keep(*s);
            if !kept {
                freed += slot.bytes();
            }
            kept
        });
        self.bytes -= freed;
    }
}

pub struct Historical {
    consensus: Arc<Consensus>,
    runtime: tokio::runtime::Handle,
    inner: Arc<Mutex<Inner>>,
}

impl Historical {
    /// A cache whose loaded states hold at most `bytes_max` bytes (`memory.historical_cache_bytes`).
    pub fn new(consensus: Arc<Consensus>, runtime: tokio::runtime::Handle, bytes_max: usize) -> Historical {
        Historical { consensus, runtime, inner: Arc::new(Mutex::new(Inner { bytes_max, ..Inner::default() })) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The states of `from..=to` if all are loaded; `Ok(None)` while some are loading (loading
    /// starts here); an error for a range that cannot be served.
    pub fn range(&self, handle: Handle, from: u64, to: u64, expiry: Duration) -> Result<Option<Vec<Arc<HistoricalState>>>, String> {
        if from > to {
            return Err(format!("the range {from}..{to} is empty (from must be at most to)"));
        }
        let count = to - from + 1;
        if count > STATES_MAX as u64 {
            return Err(format!("a range of {count} transactions is more than the {STATES_MAX} this node caches"));
        }
        let committed = self.consensus.committed_txid().seqno;
        if to > committed {
            return Err(format!("seqno {to} is not committed yet (last committed: {committed})"));
        }
        let mut inner = self.lock();
        let now = Instant::now();
        inner.handles.retain(|_, h| h.expires > now);
        if inner.handles.len() >= HANDLES_MAX && !inner.handles.contains_key(&handle) {
            return Err(format!("{HANDLES_MAX} historical handles are live; drop some with dropCachedStates"));
        }
        inner.handles.insert(handle, Held { seqnos: from..=to, expires: now + expiry.min(EXPIRY_MAX) });
        // Forget states no live handle needs any more (merged ranges: O((H + S) log H)).
        let wanted = merged(inner.handles.values().map(|h| (*h.seqnos.start(), *h.seqnos.end())));
        inner.retain_states(|s| covered(&wanted, s));
        let missing = (from..=to).filter(|s| !inner.states.contains_key(s)).count();
        if inner.states.len() + missing > STATES_MAX {
            inner.handles.remove(&handle);
            return Err(format!("the historical cache is full ({STATES_MAX} transactions); drop cached states or retry later"));
        }
        let mut ready = Vec::with_capacity(count as usize);
        let mut loading = false;
        for seqno in from..=to {
            match inner.states.get(&seqno) {
                Some(Slot::Ready(s, _)) => ready.push(s.clone()),
                Some(Slot::Loading) => loading = true,
                Some(Slot::Failed(e)) => {
                    let e = e.clone();
                    inner.states.remove(&seqno);
                    inner.handles.remove(&handle);
                    return Err(e);
                }
                None => {
                    inner.states.insert(seqno, Slot::Loading);
                    self.load(seqno);
                    loading = true;
                }
            }
        }
        Ok((!loading).then_some(ready))
    }

    /// Forgets a handle and the states no other handle needs.
    pub fn drop_handle(&self, handle: Handle) -> bool {
        let mut inner = self.lock();
        let dropped = inner.handles.remove(&handle).is_some();
        let wanted = merged(inner.handles.values().map(|h| (*h.seqnos.start(), *h.seqnos.end())));
        inner.retain_states(|s| covered(&wanted, s));
        dropped
    }

    /// The bytes of the states loaded now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn load(&self, seqno: u64) {
        let (consensus, inner) = (self.consensus.clone(), self.inner.clone());
        self.runtime.spawn_blocking(move || {
            let loaded = read(&consensus, seqno);
            let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
            let (bytes, bytes_max) = (inner.bytes, inner.bytes_max);
            // Store only if someone still waits for it, and only within the cache's bound.
            let Some(slot) = inner.states.get_mut(&seqno) else { return };
            *slot = match loaded {
                Ok(state) => match size_of(&state) {
                    size if bytes + size <= bytes_max => Slot::Ready(Arc::new(state), size),
                    size => Slot::Failed(format!(
                        "the historical cache is full: it holds {bytes} bytes of states and seqno {seqno} needs {size} more, \
                         beyond memory.historical_cache_bytes ({bytes_max}); drop cached states or retry later"
                    )),
                },
                Err(e) => Slot::Failed(e),
            };
            inner.bytes += slot.bytes();
        });
    }
}

/// Sorted, disjoint inclusive ranges covering the given ones.
fn merged(ranges: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = ranges.collect();
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(all.len());
    for (from, to) in all {
        match out.last_mut() {
            Some(last) if from <= last.1.saturating_add(1) => last.1 = last.1.max(to),
            _ => out.push((from, to)),
        }
    }
    out
}

fn covered(ranges: &[(u64, u64)], seqno: u64) -> bool {
    let i = ranges.partition_point(|r| r.1 < seqno);
    ranges.get(i).is_some_and(|r| r.0 <= seqno)
}

fn read(consensus: &Consensus, seqno: u64) -> Result<HistoricalState, String> {
    let view = consensus.ledger().view_of(seqno).ok_or_else(|| format!("seqno {seqno} is not in this node's ledger"))?;
    let entry = consensus.historical(TxId::new(view, seqno)).map_err(|e| e.to_string())?;
    let maps = entry
        .writes
        .maps
        .into_iter()
        .map(|(name, writes)| HistoricalMap {
            name,
            writes: writes
                .into_iter()
                .map(|(k, v)| (serde_bytes::ByteBuf::from(k.to_vec()), v.map(|v| serde_bytes::ByteBuf::from(v.to_vec()))))
                .collect(),
        })
        .collect();
    let receipt = serde_json::to_string(&entry.receipt).map_err(|e| e.to_string())?;
    Ok(HistoricalState { view, seqno, receipt, maps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_ranges_cover_exactly_their_parts() {
        let m = merged([(10, 20), (1, 3), (15, 30), (4, 5), (40, 40)].into_iter());
        assert_eq!(m, vec![(1, 5), (10, 30), (40, 40)]);
        for (s, want) in
            [(0, false), (1, true), (5, true), (6, false), (9, false), (10, true), (30, true), (31, false), (40, true), (41, false)]
        {
            assert_eq!(covered(&m, s), want, "{s}");
        }
        assert!(!covered(&[], 0));
    }
}
