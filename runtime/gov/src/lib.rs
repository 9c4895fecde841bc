//! Governance (SPEC §5) without IO and without a JS engine: members' signed requests
//! (COSE_Sign1), proposals and their states, ballots, the replay window, members' state-digest
//! acknowledgements, and the flows that tie them to a transaction.
//!
//! The constitution and ballots are JavaScript; this crate runs them through the
//! [`Constitution`] trait, which the node implements over its JS worker pool.

pub mod app_versions;
pub mod dry_run;
mod engine;
mod proposal;
pub mod recovery;
mod replay;
mod signed;

pub use app_versions::AppVersion;
pub use engine::{
    ack_state_digest, create_proposal, dry_run_proposal, signed_by, submit_ballot, update_state_digest, withdraw_proposal, Constitution,
    Phase,
};
pub use proposal::{Failure, ProposalInfo, ProposalState};
pub use signed::{check_created_at, verify_signed_request, MemberRequirement, SignedRequest, MSG_TYPES};

/// A governance request refused: the HTTP status, CCF's error code, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl GovError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> GovError {
        GovError { status, code, message: message.into() }
    }
}

impl std::fmt::Display for GovError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

/// Reads a JSON value from `map[key]`, if present and well-formed.
pub(crate) fn get_json<T: serde::de::DeserializeOwned>(tx: &mut consort_kv::Tx, map: &str, key: &[u8]) -> Option<T> {
    tx.get(map, key).and_then(|v| serde_json::from_slice(&v).ok())
}

/// Writes `value` as JSON at `map[key]` (how governance tables hold their values).
pub fn put_json<T: serde::Serialize>(tx: &mut consort_kv::Tx, map: &str, key: &[u8], value: &T) {
    tx.put(map, key.to_vec(), serde_json::to_vec(value).expect("governance values serialise"));
}
