//! What the JS crate's integration tests share.

use std::sync::Arc;

use consort_js::{HistoricalMap, HistoricalState};
use consort_js::{JsPool, WorkerCommand};

/// A pool of real worker processes (this crate's `consort-js-worker` binary).
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn pool(workers: usize) -> JsPool {
    JsPool::new(WorkerCommand::new(env!("CARGO_BIN_EXE_consort-js-worker")), workers, 256, Arc::new(FixedHost))
}

/// The same on the node's own threads (`js.isolation = "threads"`).
#[allow(dead_code)]
pub fn threads(threads: usize) -> JsPool {
    JsPool::threads(threads, 256, Arc::new(FixedHost))
}

/// A pool of each kind, named: tests that hold in both isolation modes run on both.
#[allow(dead_code)]
pub fn pools(workers: usize) -> [(&'static str, JsPool); 2] {
    [("process", pool(workers)), ("threads", threads(workers))]
}

/// Consensus as a test stands it: committed up to 3.42, every seqno in view 3.
pub struct FixedHost;

impl consort_js::JsHost for FixedHost {
    fn latest_ledger_secret_seqno(&self) -> u64 {
        7
    }

    fn endorse_csr(&self, csr: &str, valid_from: &str, days: u64) -> Result<String, String> {
        Ok(format!("endorsed {} from {valid_from} for {days} days", csr.len()))
    }

    fn renew_service_cert(&self, valid_from: &str, days: u64) -> Result<String, String> {
        Ok(format!("renewed from {valid_from} for {days} days"))
    }

    fn last_committed(&self) -> (u64, u64) {
        (3, 42)
    }

    fn status(&self, view: u64, seqno: u64) -> &'static str {
        if view == 3 && seqno <= 42 {
            "Committed"
        } else {
            "Unknown"
        }
    }

    fn view_of(&self, seqno: u64) -> Option<u64> {
        (seqno <= 42).then_some(3)
    }

    /// Handle 0 is always still loading; beyond seqno 42 nothing is committed. Each state wrote
    /// `records["1"] = "v<seqno>"` and removed `records["2"]`.
    fn state_range(&self, handle: u64, from: u64, to: u64, _expiry: u64) -> Result<Option<Vec<HistoricalState>>, String> {
        if to > 42 {
            return Err(format!("seqno {to} is not committed yet"));
        }
        if handle == 0 {
            return Ok(None);
        }
        Ok(Some((from..=to).map(state).collect()))
    }

    fn drop_states(&self, handle: u64) -> bool {
        handle == 7
    }
}

/// The historical state FixedHost serves for `seqno`.
#[allow(dead_code)]
pub fn state(seqno: u64) -> HistoricalState {
    use serde_bytes::ByteBuf;
    HistoricalState {
        view: 3,
        seqno,
        receipt: format!(r#"{{"node_id":"n","signature":"s","cert":"c","proof":[],"leaf_components":{{"claims_digest":"{seqno}"}}}}"#),
        maps: vec![HistoricalMap {
            name: "records".into(),
            writes: vec![
                (ByteBuf::from(b"1".to_vec()), Some(ByteBuf::from(format!("v{seqno}").into_bytes()))),
                (ByteBuf::from(b"2".to_vec()), None),
            ],
        }],
    }
}
