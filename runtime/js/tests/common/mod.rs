//! What the JS crate's integration tests share.

use std::sync::Arc;

use consort_js::{JsPool, WorkerCommand};

/// A pool of real worker processes (this crate's `consort-js-worker` binary).
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn pool(workers: usize) -> JsPool {
    JsPool::new(WorkerCommand::new(env!("CARGO_BIN_EXE_consort-js-worker")), workers, 256, Arc::new(FixedHost))
}

/// Consensus as a test stands it: committed up to 3.42, every seqno in view 3.
pub struct FixedHost;

impl consort_js::JsHost for FixedHost {
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
}
