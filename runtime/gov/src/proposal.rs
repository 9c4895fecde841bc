//! A proposal's record (`public:ccf.gov.proposals_info`, CCF's `ProposalInfo`) and its API shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposalState {
    Open,
    Accepted,
    Withdrawn,
    Rejected,
    Failed,
    Dropped,
}

/// Why a ballot, `resolve` or `apply` failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalInfo {
    pub proposer_id: String,
    pub state: ProposalState,
    /// Member id → ballot source.
    #[serde(default)]
    pub ballots: BTreeMap<String, String>,
    /// Set once the proposal leaves `Open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_votes: Option<BTreeMap<String, bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vote_failures: Option<BTreeMap<String, Failure>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

impl ProposalInfo {
    pub fn new(proposer_id: &str) -> ProposalInfo {
        ProposalInfo {
            proposer_id: proposer_id.to_owned(),
            state: ProposalState::Open,
            ballots: BTreeMap::new(),
            final_votes: None,
            vote_failures: None,
            failure: None,
        }
    }

    /// The `/gov` API's view (camelCase, api-version 2024-07-01).
    pub fn to_api(&self, proposal_id: &str) -> Value {
        let mut v = json!({
            "proposalId": proposal_id,
            "proposerId": self.proposer_id,
            "proposalState": self.state,
            "ballotCount": self.ballots.len(),
        });
        if let Some(votes) = &self.final_votes {
            v["finalVotes"] = json!(votes);
        }
        if let Some(failures) = &self.vote_failures {
            v["voteFailures"] = json!(failures);
        }
        if let Some(failure) = &self.failure {
            v["failure"] = json!(failure);
        }
        v
    }
}
