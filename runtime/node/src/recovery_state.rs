//! What a recovery node knows of its recovery (the steps are in `recovery.rs`): the previous
//! service's files, recorded in its directory so that it can finish after a restart, and the
//! progress of restoring the private maps.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use consort_consensus::recovery::PreviousFiles;

/// The recovery node's record of the previous files (in its directory), so that it can finish
/// the recovery after a restart.
pub(crate) const PREVIOUS_FILES: &str = "recovery_previous.json";
/// What the recovery node knows of its recovery.
#[derive(Default)]
pub struct Recovery {
    /// The previous service's files, on the node that was started with `recover`.
    pub files: Option<PreviousFiles>,
    /// Set while the private maps are being restored.
    pub(crate) running: AtomicBool,
    /// Why the last attempt to finish failed, if it did.
    pub(crate) failure: Mutex<Option<String>>,
    /// Wakes the finisher when a share submission reached the threshold.
    pub(crate) wake: tokio::sync::Notify,
}

impl Recovery {
    /// The recovery node's record in `dir`, if it is one.
    pub fn load(dir: &Path) -> Result<Recovery, String> {
        let path = dir.join(PREVIOUS_FILES);
        let files = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?),
            Err(_) => None,
        };
        Ok(Recovery { files, ..Recovery::default() })
    }

    /// `ReadingPrivateLedger` while the private maps are restored (CCF's node state).
    pub fn reading_private_ledger(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks the finisher to look at the submitted shares now.
    pub fn kick(&self) {
        self.wake.notify_one();
    }
}
