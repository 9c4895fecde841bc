//! Building HTTP answers: JSON bodies, errors as `{"error": {"code", "message"}}` (SPEC §4), with
//! CCF's `details` array where CCF gives one.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

pub type Reply = Response<Full<Bytes>>;

pub const TXID_HEADER: &str = "x-ms-ccf-transaction-id";

pub fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(value).expect("JSON value serialises"))));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn ok(value: &serde_json::Value) -> Reply {
    json(StatusCode::OK, value)
}

pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Reply {
    json(status, &serde_json::json!({"error": {"code": code, "message": message.into()}}))
}

/// An error with CCF's `details` array (objects with at least `code` and `message`).
pub fn error_with_details(status: StatusCode, code: &str, message: impl Into<String>, details: Vec<serde_json::Value>) -> Reply {
    json(status, &serde_json::json!({"error": {"code": code, "message": message.into(), "details": details}}))
}

pub fn empty(status: StatusCode) -> Reply {
    bytes(status, Vec::new())
}

pub fn bytes(status: StatusCode, body: Vec<u8>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

pub fn with_txid(mut r: Reply, txid: consort_kv::TxId) -> Reply {
    if let Ok(v) = HeaderValue::from_str(&txid.to_string()) {
        r.headers_mut().insert(TXID_HEADER, v);
    }
    r
}

/// The answer to a write consensus did not commit (anything but a conflict, which is re-run):
/// 503 `ServiceUnavailable` when it did not and will not happen (not the primary, consensus not
/// running: safe to retry), and 500 `TransactionOutcomeUnknown` when consensus took it and
/// stopped, so that it may still commit; that answer carries the transaction id when this node's
/// log holds the write, for the client to ask `/app/tx` before retrying.
pub fn commit_failure(e: consort_consensus::CommitError) -> Reply {
    use consort_consensus::CommitError;
    match e {
        CommitError::OutcomeUnknown { reason, txid } => {
            let ask = match txid {
                Some(t) => format!("; ask GET /app/tx?transaction_id={t} before retrying"),
                None => "; do not retry before reading back what it would have written".into(),
            };
            let r =
                error(StatusCode::INTERNAL_SERVER_ERROR, "TransactionOutcomeUnknown", format!("{reason}: the write may still commit{ask}"));
            match txid {
                Some(t) => with_txid(r, t),
                None => r,
            }
        }
        other => error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", other.to_string()),
    }
}
