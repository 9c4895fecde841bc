//! The governance flows, each on one transaction: create a proposal, submit a ballot,
//! withdraw, and members' state-digest update and acknowledgement. The caller commits the
//! transaction when a flow returns `Ok`, and discards it on `Err`.

use std::collections::BTreeMap;
use std::future::Future;

use consort_kv::Tx;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::proposal::{Failure, ProposalInfo, ProposalState};
use crate::signed::SignedRequest;
use crate::{get_json, put_json, GovError};
use consort_kv::names::{CONSTITUTION, COSE_HISTORY, MEMBERS_ACKS, MEMBERS_INFO, PROPOSALS, PROPOSALS_INFO};

/// What a script may touch (SPEC §3): ballots, `validate` and `resolve` read governance and
/// framework maps only; `apply` also writes governance maps and public app maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    ReadOnly,
    Apply,
}

/// Runs governance JavaScript: `function` exported by the module `source`, called with `args`,
/// its `ccf.kv` on `tx`. Returns the function's result as JSON, or why it failed (an exception,
/// a limit).
pub trait Constitution {
    fn run(
        &self,
        tx: &mut Tx,
        source: &str,
        function: &str,
        args: Vec<Value>,
        phase: Phase,
    ) -> impl Future<Output = Result<Value, Failure>> + Send;
}

fn internal(message: impl Into<String>) -> GovError {
    GovError::new(500, "InternalError", message)
}

fn constitution(tx: &mut Tx) -> Result<String, GovError> {
    get_json::<String>(tx, CONSTITUTION, &consort_kv::SINGLETON_KEY)
        .ok_or_else(|| internal("No constitution is set - proposals cannot be evaluated"))
}

fn record_history(tx: &mut Tx, req: &SignedRequest) {
    put_json(tx, COSE_HISTORY, req.member_id.as_bytes(), &req.envelope);
}

/// The proposal's text (proposals and ballots are JSON text).
fn text(content: &[u8], what: &str) -> Result<String, GovError> {
    String::from_utf8(content.to_vec()).map_err(|_| GovError::new(400, "InvalidInput", format!("the {what} is not UTF-8 text")))
}

/// Checks that a request about one proposal was signed for that proposal.
fn signed_for(req: &SignedRequest, proposal_id: &str) -> Result<(), GovError> {
    match &req.proposal_id {
        Some(signed) if signed == proposal_id => Ok(()),
        Some(signed) => Err(GovError::new(
            400,
            "InvalidAuthenticationInfo",
            format!("Authenticated proposal id ({signed}) does not match the URL ({proposal_id})"),
        )),
        None => Err(GovError::new(400, "InvalidAuthenticationInfo", "the protected header has no ccf.gov.msg.proposal_id")),
    }
}

/// Refuses a request whose path names another member than the one who signed it.
pub fn signed_by(req: &SignedRequest, member_id: &str) -> Result<(), GovError> {
    if req.member_id != member_id {
        return Err(GovError::new(
            400,
            "InvalidAuthenticationInfo",
            format!("Member ID from path parameter ({member_id}) does not match member ID from body signature ({}).", req.member_id),
        ));
    }
    Ok(())
}

/// `POST /gov/members/proposals:create`. `read_marker` identifies the state the proposal was
/// read at (its id binds the request to it). Returns the proposal's API view.
/// A proposal the constitution's `validate` accepted: its text, the id it gets (from the state
/// it was read at and the signed request), and the constitution that judged it.
struct Validated {
    proposal: String,
    id: String,
    constitution: String,
}

async fn validated(tx: &mut Tx, js: &impl Constitution, req: &SignedRequest, read_marker: &[u8]) -> Result<Validated, GovError> {
    let proposal = text(&req.content, "proposal")?;
    let id = hex::encode(Sha256::new().chain_update(read_marker).chain_update(req.request_digest).finalize());
    let constitution = constitution(tx)?;
    let validity = js
        .run(tx, &constitution, "validate", vec![json!(proposal)], Phase::ReadOnly)
        .await
        .map_err(|f| internal(format!("Failed to execute validation: {}", f.reason)))?;
    if !validity.is_object() {
        return Err(internal("Validation failed to return an object"));
    }
    if validity.get("valid") != Some(&Value::Bool(true)) {
        let description = validity.get("description").and_then(Value::as_str).unwrap_or("");
        return Err(GovError::new(400, "ProposalFailedToValidate", format!("Proposal failed to validate: {description}")));
    }
    Ok(Validated { proposal, id, constitution })
}

pub async fn create_proposal(tx: &mut Tx, js: &impl Constitution, req: &SignedRequest, read_marker: &[u8]) -> Result<Value, GovError> {
    let Validated { proposal, id: proposal_id, constitution } = validated(tx, js, req, read_marker).await?;
    if tx.has(PROPOSALS, proposal_id.as_bytes()) {
        return Err(internal("Proposal ID collision."));
    }
    tx.put(PROPOSALS, proposal_id.clone().into_bytes(), req.content.clone());
    let mut info = ProposalInfo::new(&req.member_id);
    put_json(tx, PROPOSALS_INFO, proposal_id.as_bytes(), &info);
    record_history(tx, req);
    crate::replay::admit(tx, req.created_at, &req.request_digest, &proposal_id)?;
    resolve(tx, js, &proposal_id, &proposal, &mut info, &constitution).await;
    Ok(info.to_api(&proposal_id))
}

/// `POST /gov/members/proposals:dry-run`: what `:create` would check (the signed proposal, the
/// constitution's `validate`), then the constitution's `apply` as if the proposal were accepted
/// now, on `tx`, and the writes it would make. Nothing of the proposal is stored and the caller
/// discards `tx`: the answer is all there is.
pub async fn dry_run_proposal(tx: &mut Tx, js: &impl Constitution, req: &SignedRequest, read_marker: &[u8]) -> Result<Value, GovError> {
    let Validated { proposal, id: proposal_id, constitution } = validated(tx, js, req, read_marker).await?;
    let failure = match js.run(tx, &constitution, "apply", vec![json!(proposal), json!(proposal_id)], Phase::Apply).await {
        Ok(_) => {
            crate::app_versions::record_if_changed(tx, &proposal_id);
            None
        }
        Err(f) => Some(json!({"reason": format!("Failed to apply(): {}", f.reason), "trace": f.trace})),
    };
    let writes = if failure.is_some() { Vec::new() } else { crate::dry_run::writes_of(tx) };
    Ok(json!({"valid": true, "applied": failure.is_none(), "failure": failure, "writes": writes}))
}

/// `POST /gov/members/proposals/{proposal_id}/ballots/{member_id}:submit`.
pub async fn submit_ballot(
    tx: &mut Tx,
    js: &impl Constitution,
    req: &SignedRequest,
    proposal_id: &str,
    member_id: &str,
) -> Result<Value, GovError> {
    signed_for(req, proposal_id)?;
    signed_by(req, member_id)?;
    let mut info = proposal_info(tx, proposal_id)?;
    if info.state != ProposalState::Open {
        return Err(GovError::new(
            400,
            "ProposalNotOpen",
            format!("Proposal {proposal_id} is currently in state {:?} - only Open proposals can receive votes", info.state),
        ));
    }
    let proposal = tx.get(PROPOSALS, proposal_id.as_bytes()).ok_or_else(|| not_found(proposal_id))?;
    let proposal = text(&proposal, "stored proposal")?;
    let ballot = serde_json::from_slice::<Value>(&req.content)
        .ok()
        .and_then(|v| v.get("ballot").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| {
            GovError::new(400, "InvalidInput", "Signed request body is not a JSON object containing required string field \"ballot\"")
        })?;
    let constitution = constitution(tx)?;
    match info.ballots.get(member_id) {
        Some(previous) if *previous == ballot => return Ok(info.to_api(proposal_id)),
        Some(_) => {
            return Err(GovError::new(
                400,
                "VoteAlreadyExists",
                format!("Different ballot already submitted by {member_id} for {proposal_id}."),
            ))
        }
        None => {}
    }
    info.ballots.insert(member_id.to_owned(), ballot);
    record_history(tx, req);
    resolve(tx, js, proposal_id, &proposal, &mut info, &constitution).await;
    Ok(info.to_api(proposal_id))
}

/// `POST /gov/members/proposals/{proposal_id}:withdraw`: by the proposer, while Open.
/// `Ok(None)` for an unknown proposal (withdrawal is idempotent: 204).
pub fn withdraw_proposal(tx: &mut Tx, req: &SignedRequest, proposal_id: &str) -> Result<Option<Value>, GovError> {
    signed_for(req, proposal_id)?;
    let Some(mut info) = get_json::<ProposalInfo>(tx, PROPOSALS_INFO, proposal_id.as_bytes()) else {
        return Ok(None);
    };
    if req.member_id != info.proposer_id {
        return Err(GovError::new(
            403,
            "AuthorizationFailed",
            format!("Proposal {proposal_id} can only be withdrawn by proposer {}, not caller {}.", info.proposer_id, req.member_id),
        ));
    }
    match info.state {
        ProposalState::Open => {
            info.state = ProposalState::Withdrawn;
            put_json(tx, PROPOSALS_INFO, proposal_id.as_bytes(), &info);
            remove_other_closed_proposals(tx, proposal_id);
            record_history(tx, req);
        }
        ProposalState::Withdrawn => {}
        other => {
            return Err(GovError::new(
                400,
                "ProposalNotOpen",
                format!("Proposal {proposal_id} is currently in state {other:?} and cannot be withdrawn."),
            ))
        }
    }
    Ok(Some(info.to_api(proposal_id)))
}

/// `POST /gov/members/state-digests/{member_id}:update`: records `root` (hex, the Merkle root of
/// the last signature) as what the member must acknowledge.
pub fn update_state_digest(tx: &mut Tx, req: &SignedRequest, member_id: &str, root: Option<String>) -> Result<Value, GovError> {
    signed_by(req, member_id)?;
    let mut ack: Value = get_json(tx, MEMBERS_ACKS, member_id.as_bytes()).unwrap_or_else(|| json!({}));
    let root = root.ok_or_else(|| internal("Service has no signatures to ack yet - try again soon."))?;
    ack["state_digest"] = json!(root);
    put_json(tx, MEMBERS_ACKS, member_id.as_bytes(), &ack);
    Ok(json!({"memberId": member_id, "stateDigest": root}))
}

/// `POST /gov/members/state-digests/{member_id}:ack`: the member signs the digest it was given
/// and becomes Active.
pub fn ack_state_digest(tx: &mut Tx, req: &SignedRequest, member_id: &str) -> Result<(), GovError> {
    signed_by(req, member_id)?;
    let mut ack: Value = get_json(tx, MEMBERS_ACKS, member_id.as_bytes())
        .ok_or_else(|| GovError::new(403, "AuthorizationFailed", format!("No ACK record exists for member {member_id}.")))?;
    let signed = serde_json::from_slice::<Value>(&req.content)
        .ok()
        .and_then(|v| v.get("stateDigest").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| GovError::new(400, "InvalidInput", "the signed body must be {\"stateDigest\": \"<hex>\"}"))?;
    let expected = ack.get("state_digest").and_then(Value::as_str).unwrap_or_default().to_owned();
    if signed != expected {
        return Err(GovError::new(
            400,
            "StateDigestMismatch",
            format!("Submitted state digest is not valid.\nExpected\n {expected}\nReceived\n {signed}"),
        ));
    }
    ack["cose_sign1_req"] = json!(req.envelope);
    put_json(tx, MEMBERS_ACKS, member_id.as_bytes(), &ack);
    let mut info: Value =
        get_json(tx, MEMBERS_INFO, member_id.as_bytes()).ok_or_else(|| internal(format!("member {member_id} has no information")))?;
    info["status"] = json!("Active");
    put_json(tx, MEMBERS_INFO, member_id.as_bytes(), &info);
    Ok(())
}

fn not_found(proposal_id: &str) -> GovError {
    GovError::new(404, "ProposalNotFound", format!("Could not find proposal {proposal_id}."))
}

fn proposal_info(tx: &mut Tx, proposal_id: &str) -> Result<ProposalInfo, GovError> {
    get_json(tx, PROPOSALS_INFO, proposal_id.as_bytes()).ok_or_else(|| not_found(proposal_id))
}

/// Once a proposal closes, every other closed proposal is forgotten (CCF keeps only open
/// proposals and the last closed one).
fn remove_other_closed_proposals(tx: &mut Tx, keep: &str) {
    for (id, value) in tx.entries(PROPOSALS_INFO) {
        if id == keep.as_bytes() {
            continue;
        }
        let open = serde_json::from_slice::<ProposalInfo>(&value).is_ok_and(|i| i.state == ProposalState::Open);
        if !open {
            tx.remove(PROPOSALS, id.clone());
            tx.remove(PROPOSALS_INFO, id);
        }
    }
}

/// Runs every ballot, then `resolve`, and `apply` if accepted, updating `info` in `tx`. A
/// failing `apply` leaves none of its writes: it runs on a copy of the transaction that is
/// kept only if it succeeds, and the proposal is recorded `Failed` with the reason.
async fn resolve(tx: &mut Tx, js: &impl Constitution, proposal_id: &str, proposal: &str, info: &mut ProposalInfo, constitution: &str) {
    let mut votes = BTreeMap::new();
    let mut failures = BTreeMap::new();
    let ballots: Vec<(String, String)> = info.ballots.iter().map(|(m, b)| (m.clone(), b.clone())).collect();
    for (member, ballot) in ballots {
        match js.run(tx, &ballot, "vote", vec![json!(proposal), json!(info.proposer_id)], Phase::ReadOnly).await {
            Ok(v) => {
                votes.insert(member, v == Value::Bool(true));
            }
            Err(f) => {
                failures.insert(member, f);
            }
        }
    }
    let vote_list: Vec<Value> = votes.iter().map(|(m, v)| json!({"member_id": m, "vote": v})).collect();
    let args = vec![json!(proposal), json!(info.proposer_id), Value::Array(vote_list), json!(proposal_id)];
    match js.run(tx, constitution, "resolve", args, Phase::ReadOnly).await {
        Ok(Value::String(s)) if s == "Open" => info.state = ProposalState::Open,
        Ok(Value::String(s)) if s == "Accepted" => info.state = ProposalState::Accepted,
        Ok(Value::String(s)) if s == "Rejected" => info.state = ProposalState::Rejected,
        Ok(other) => {
            info.state = ProposalState::Failed;
            let shown = other.as_str().map_or_else(|| other.to_string(), str::to_owned);
            info.failure = Some(Failure { reason: format!("resolve() returned invalid status value: \"{shown}\""), trace: None });
        }
        Err(f) => {
            info.state = ProposalState::Failed;
            info.failure = Some(Failure { reason: format!("Failed to resolve(): {}", f.reason), trace: f.trace });
        }
    }
    if info.state != ProposalState::Open {
        remove_other_closed_proposals(tx, proposal_id);
        info.final_votes = Some(votes);
        info.vote_failures = Some(failures);
    }
    if info.state == ProposalState::Accepted {
        let mut applied = tx.clone();
        match js.run(&mut applied, constitution, "apply", vec![json!(proposal), json!(proposal_id)], Phase::Apply).await {
            Ok(_) => {
                crate::app_versions::record_if_changed(&mut applied, proposal_id);
                *tx = applied;
            }
            Err(f) => {
                info.state = ProposalState::Failed;
                info.failure = Some(Failure { reason: format!("Failed to apply(): {}", f.reason), trace: f.trace });
            }
        }
    }
    put_json(tx, PROPOSALS_INFO, proposal_id.as_bytes(), info);
}

#[cfg(test)]
mod tests;
