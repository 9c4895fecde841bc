//! Members' signed requests: a COSE_Sign1 body whose protected header holds `alg` (ES256 or
//! ES384), `kid` (the member id), `ccf.gov.msg.type`, `ccf.gov.msg.created_at` and, for
//! requests about one proposal, `ccf.gov.msg.proposal_id` (as CCF's `ccf_cose_sign1` writes them).

use consort_crypto::cose::Sign1;
use consort_kv::Tx;
use sha2::{Digest, Sha256};

use crate::GovError;
use consort_kv::names::{MEMBERS_CERTS, MEMBERS_INFO};

/// Every `ccf.gov.msg.type` a member may sign.
pub const MSG_TYPES: [&str; 6] = ["proposal", "ballot", "withdrawal", "state_digest", "ack", "recovery_share"];

/// A request whose signature, signer and message type have been checked.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub member_id: String,
    pub msg_type: String,
    /// Seconds since the epoch, as the member's tool stamped it.
    pub created_at: u64,
    pub proposal_id: Option<String>,
    /// The signed content.
    pub content: Vec<u8>,
    /// The whole COSE_Sign1, kept in `public:ccf.gov.cose_history`.
    pub envelope: Vec<u8>,
    /// SHA-256 of the signature bytes: identifies the request (proposal ids, the replay window).
    pub request_digest: [u8; 32],
}

/// Who may send a request: any member (state digests, acks) or only an active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRequirement {
    Any,
    Active,
}

fn unauthorized(message: impl Into<String>) -> GovError {
    GovError::new(401, "InvalidAuthenticationInfo", message)
}

/// Whether a request's `created_at` is within `skew` seconds of `now` (the node's clock), as
/// well as the replay window's checks: a request dated far ahead (or long ago) is refused.
pub fn check_created_at(req: &SignedRequest, now: u64, skew: u64) -> Result<(), GovError> {
    if req.created_at.abs_diff(now) > skew {
        return Err(GovError::new(
            400,
            "InvalidCreatedAt",
            format!("ccf.gov.msg.created_at {} is more than {skew} s away from this node's clock ({now})", req.created_at),
        ));
    }
    Ok(())
}

/// Checks a signed governance request against the member tables in `tx`: a well-formed tagged
/// COSE_Sign1, a known member's signature, the expected message type and a `created_at`; and, if
/// asked, that the member is active.
pub fn verify_signed_request(tx: &mut Tx, body: &[u8], expected_type: &str, who: MemberRequirement) -> Result<SignedRequest, GovError> {
    let sign1 = Sign1::parse(body).map_err(|e| unauthorized(format!("the body is not a valid COSE_Sign1 request: {e}")))?;
    let member_id = sign1.kid.clone();
    let pem = tx
        .get(MEMBERS_CERTS, member_id.as_bytes())
        .and_then(|v| String::from_utf8(v).ok())
        .ok_or_else(|| unauthorized(format!("the signer (kid {member_id:?}) is not a member of this service")))?;
    let der =
        consort_crypto::cert_der_from_pem(&pem).map_err(|e| GovError::new(500, "InternalError", format!("member certificate: {e}")))?;
    sign1.verify_with_cert(&der).map_err(|e| unauthorized(format!("member {member_id}: {e}")))?;
    let msg_type =
        sign1.text("ccf.gov.msg.type").ok_or_else(|| unauthorized("the protected header has no ccf.gov.msg.type (text)"))?.to_owned();
    if msg_type != expected_type {
        return Err(unauthorized(format!("ccf.gov.msg.type is {msg_type:?}, this endpoint takes {expected_type:?}")));
    }
    let created_at = sign1
        .int("ccf.gov.msg.created_at")
        .ok_or_else(|| unauthorized("the protected header has no ccf.gov.msg.created_at (integer seconds)"))?;
    let created_at = u64::try_from(created_at).map_err(|_| unauthorized(format!("ccf.gov.msg.created_at {created_at} is negative")))?;
    let proposal_id = sign1.text("ccf.gov.msg.proposal_id").map(str::to_owned);
    if who == MemberRequirement::Active {
        let status = tx
            .get(MEMBERS_INFO, member_id.as_bytes())
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(&v).ok())
            .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned));
        if status.as_deref() != Some("Active") {
            return Err(GovError::new(
                403,
                "AuthorizationFailed",
                format!(
                    "member {member_id} is {} and not Active: acknowledge the state digest (state-digests/{member_id}:update, then :ack) first",
                    status.unwrap_or_else(|| "unknown".into())
                ),
            ));
        }
    }
    let request_digest: [u8; 32] = Sha256::digest(sign1.signature()).into();
    Ok(SignedRequest {
        member_id,
        msg_type,
        created_at,
        proposal_id,
        content: sign1.payload.clone(),
        envelope: body.to_vec(),
        request_digest,
    })
}
