//! Calling the app's JS endpoints: route, authenticate, execute in the pool, commit (re-running
//! the handler when its reads conflicted), and answer with the transaction id.

use std::sync::Arc;

use consort_consensus::CommitError;
use consort_js::{Bundle, EndpointMatch, JsRequest, KvAccess, Limit, Mode, RecordedInputs, RuntimeOptions, ScriptError, SourceMode};
use consort_kv::State;
use consort_ledger::AppRef;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use crate::call::Call;
use crate::context::Node;
use crate::reply::{self, Reply};

/// Runs the app endpoint `m` (routed on `state`, in `app`, of app version `version`) for `call`.
pub async fn call(
    node: &Node,
    call: &Call<'_>,
    state: &State,
    (app, version): (&Arc<Bundle>, Option<AppRef>),
    m: EndpointMatch<'_>,
) -> Reply {
    if !node.is_open_at(state) {
        return reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceNotOpen",
            "the service is not open yet: members open it with a transition_service_to_open proposal",
        );
    }
    if let Some(r) = crate::forward::redirect(node, call, m.endpoint.redirection_strategy.as_deref()) {
        return r;
    }
    if crate::forward::needed_for_endpoint(node, call, m.endpoint) {
        return crate::forward::to_primary(node, call).await;
    }
    let header = |name: hyper::header::HeaderName| call.headers.get(name).and_then(|v| v.to_str().ok());
    let creds = crate::auth::Credentials {
        cert: call.peer_cert,
        authorization: header(hyper::header::AUTHORIZATION),
        content_type: header(CONTENT_TYPE),
        body: &call.body,
    };
    let caller = match crate::auth::authenticate(state, &m.endpoint.authn_policies, creds) {
        Ok(c) => c,
        Err(refusals) => return unauthenticated(refusals),
    };
    let historical = if m.endpoint.mode == Mode::Historical {
        match historical_state(node, call) {
            Ok(state) => Some(state),
            Err(reply) => return *reply,
        }
    } else {
        None
    };
    let headers = call.headers.iter().filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned()))).collect();
    let hostname = call.headers.get(hyper::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_owned();
    let request = JsRequest {
        method: call.method.as_str().to_owned(),
        path: call.path.clone(),
        url: if call.query.is_empty() { call.path.clone() } else { format!("{}?{}", call.path, call.query) },
        // CCF's full template, with the front end's prefix.
        route: format!("/app{}", m.route),
        query: call.query.clone(),
        hostname,
        headers,
        params: m.params.clone(),
        caller,
        body: call.body.clone(),
        historical,
    };
    let access = if m.endpoint.mode == Mode::Readwrite { KvAccess::AppReadWrite } else { KvAccess::AppReadOnly };
    let endpoint = m.endpoint;
    let retries = node.config.js.conflict_retries_max;
    let options = node.js_options_at(state);
    // A transaction's inputs are recorded when its entry can name the app version that ran it.
    let record = version.is_some() && access == KvAccess::AppReadWrite && node.records_inputs_at(state);
    let sources = if record { SourceMode::Record } else { SourceMode::Live };
    for _ in 0..=retries {
        let tx = node.consensus.store().begin();
        let run = node.pool.execute_drawing(Arc::clone(app), endpoint, request.clone(), tx, access, options.clone(), sources.clone());
        let ex = match run.await {
            Ok(ex) => ex,
            Err(e) => return reply::error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", e.to_string()),
        };
        let response = match ex.response {
            Ok(r) => r,
            Err(e) => return script_failure(call, e, &options),
        };
        let apply = ex.apply_writes.unwrap_or((200..300).contains(&response.status));
        let txid = if apply && !ex.tx.write_set().is_empty() {
            // The ledger entry names the version that ran it (and the receipt proves it), and
            // carries what it was given and drew, sealed, for `consort replay`.
            let inputs = record.then(|| {
                let caller = request.caller.as_ref().map(crate::auth::recorded_caller);
                RecordedInputs::encode_run(&request, caller.as_deref(), &ex.drawn.draws, &response)
            });
            match node.consensus.commit_app(&ex.tx, ex.claims_digest, version.map(|v| (v, inputs.as_deref()))).await {
                Ok(txid) => txid,
                Err(CommitError::Conflict(_)) => continue,
                Err(e) => return reply::commit_failure(e),
            }
        } else {
            ex.tx.read_txid()
        };
        return reply::with_txid(build(response), txid);
    }
    reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "TransactionConflict",
        format!("the transaction conflicted with concurrent writes {} times; retry", retries + 1),
    )
}

/// The 401 when no policy accepted the caller, as CCF gives it: "Invalid authentication
/// credentials." with one `details` entry per policy saying why it refused (and, when the last
/// policy is `jwt`, its `WWW-Authenticate` challenge).
fn unauthenticated(refusals: Vec<crate::auth::Refusal>) -> Reply {
    const CODE: &str = "InvalidAuthenticationInfo";
    let bearer = refusals.last().is_some_and(|r| r.policy == "jwt");
    let details = refusals.into_iter().map(|r| serde_json::json!({"auth_policy": r.policy, "code": CODE, "message": r.message})).collect();
    let mut r = reply::error_with_details(StatusCode::UNAUTHORIZED, CODE, "Invalid authentication credentials.", details);
    if bearer {
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="JWT bearer token access", error="invalid_token""#),
        );
    }
    r
}

/// The 500 for a handler that gave no answer, in CCF's shape: "Exception thrown while
/// executing." ("Operation took too long to complete." for the time limit) and, with
/// `return_exception_details`, `details[0] = {code: "JSException", message, trace}` where the
/// message is what was thrown, or CCF's words for a limit (`InternalError: out of memory`),
/// whose trace then names the limit and its value. A module that cannot be loaded answers its
/// reason, as in CCF.
fn script_failure(call: &Call<'_>, e: ScriptError, options: &RuntimeOptions) -> Reply {
    const THROWN: &str = "Exception thrown while executing.";
    let (message, reason, trace) = match e {
        ScriptError::Load(why) => return reply::error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", why),
        ScriptError::Limit(limit, description) => {
            tracing::warn!("{} {}: {description}", call.method, call.path);
            let message = if limit == Limit::Time { "Operation took too long to complete." } else { THROWN };
            (message, limit.ccf_reason().to_owned(), Some(description))
        }
        ScriptError::Exception { message, trace } => (THROWN, message, trace),
        other => (THROWN, other.to_string(), None),
    };
    if options.log_exception_details {
        tracing::warn!("{} {}: {reason}: {}", call.method, call.path, trace.as_deref().unwrap_or("<no trace>"));
    }
    if !options.return_exception_details {
        return reply::error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message);
    }
    let mut detail = serde_json::json!({"code": "JSException", "message": reason});
    if let Some(trace) = trace {
        detail["trace"] = serde_json::Value::String(trace);
    }
    reply::error_with_details(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message, vec![detail])
}

/// The state a `mode: "historical"` endpoint runs with: the committed transaction named by the
/// `x-ms-ccf-transaction-id` request header, or the answer to give instead (400 for a missing or
/// malformed id, 404 for one that is not committed, 202 + `retry-after` while it loads).
fn historical_state(node: &Node, call: &Call<'_>) -> Result<Arc<consort_js::HistoricalState>, Box<Reply>> {
    use consort_consensus::TxStatus;
    let header = call.headers.get(crate::reply::TXID_HEADER).ok_or_else(|| {
        Box::new(reply::error(
            StatusCode::BAD_REQUEST,
            "MissingRequiredHeader",
            format!("historical endpoints need the {} header (view.seqno)", crate::reply::TXID_HEADER),
        ))
    })?;
    let txid: consort_kv::TxId = header.to_str().ok().and_then(|t| t.parse().ok()).ok_or_else(|| {
        Box::new(reply::error(
            StatusCode::BAD_REQUEST,
            "InvalidHeaderValue",
            format!("{} must be a transaction id (view.seqno), got {header:?}", crate::reply::TXID_HEADER),
        ))
    })?;
    match node.consensus.status(txid) {
        TxStatus::Committed => {}
        TxStatus::Invalid => {
            return Err(Box::new(reply::error(StatusCode::NOT_FOUND, "TransactionInvalid", format!("transaction {txid} is invalid"))));
        }
        other => {
            return Err(Box::new(reply::error(
                StatusCode::NOT_FOUND,
                "TransactionPendingOrUnknown",
                format!("only committed transactions can be queried; transaction {txid} is {}", other.as_str()),
            )))
        }
    }
    let handle = crate::historical::Handle::Endpoint(txid.seqno);
    match node.historical.range(handle, txid.seqno, txid.seqno, crate::historical::ENDPOINT_EXPIRY) {
        Ok(Some(mut states)) if states.len() == 1 => Ok(states.remove(0)),
        Ok(_) => {
            let mut r = reply::error(
                StatusCode::ACCEPTED,
                "HistoricalStateLoading",
                format!("historical transaction {txid} is not currently available; it is being loaded, retry shortly"),
            );
            r.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
            Err(Box::new(r))
        }
        Err(e) => Err(Box::new(reply::error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", e))),
    }
}

fn build(r: consort_js::JsResponse) -> Reply {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = Response::new(http_body_util::Full::new(hyper::body::Bytes::from(r.body)));
    *out.status_mut() = status;
    for (k, v) in r.headers {
        match (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
            (Ok(k), Ok(v)) => {
                out.headers_mut().append(k, v);
            }
            _ => return reply::error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", format!("handler set an invalid header {k:?}")),
        }
    }
    if !out.headers().contains_key(CONTENT_TYPE) {
        if let Some(ct) = r.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
            out.headers_mut().insert(CONTENT_TYPE, ct);
        }
    }
    out
}
