//! Requests a backup cannot execute go to the primary: forwarded over the node-to-node channel
//! (the primary executes them as if the client had called it, with the client's certificate,
//! and its answer — with the primary's transaction id — goes back to the client), or, for an
//! endpoint with a `redirection_strategy`, answered with a `307` naming the node to call.
//!
//! Which requests go (SPEC §4 `forwarding_required`, decided before execution): `always`
//! endpoints; `sometimes` (the default) endpoints of mode `readwrite`, and once a connection
//! has had a request forwarded, its later `sometimes` requests too (so a client reads its own
//! writes on the same connection, as in CCF); never `never` endpoints. Governance writes and
//! join requests always go to the primary.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use consort_consensus::{ForwardError, ForwardHandler};
use http_body_util::BodyExt;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::call::{Call, Origin};
use crate::context::Node;
use crate::reply::{self, Reply};
use consort_kv::names::NODES_INFO;

/// Headers that describe one HTTP connection, not the request or answer: not carried over.
const HOP_BY_HOP: [&str; 6] = ["connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te"];

/// A forwarded request, as it travels between nodes (CBOR).
#[derive(Debug, Serialize, Deserialize)]
struct Forwarded {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, ByteBuf)>,
    body: ByteBuf,
    /// The client's TLS certificate (DER), which the primary authenticates as it would its own
    /// client's.
    caller_cert: Option<ByteBuf>,
}

/// The primary's answer to a forwarded request.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    status: u16,
    headers: Vec<(String, ByteBuf)>,
    body: ByteBuf,
}

/// The headers that travel with a forwarded request or answer.
fn carried(headers: &HeaderMap) -> Vec<(String, ByteBuf)> {
    headers
        .iter()
        .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str().to_owned(), ByteBuf::from(v.as_bytes())))
        .collect()
}

/// Headers back from their travelling form (invalid ones are dropped).
fn header_map(headers: &[(String, ByteBuf)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_bytes(v)) {
            map.append(k, v);
        }
    }
    map
}

/// Whether a request this node received from a client must run on the primary. `writes`: the
/// request needs the primary whatever the connection did before (governance writes, joins,
/// `always` and `readwrite` endpoints); `sticky`: it needs it only if this connection was
/// forwarded before (`sometimes` endpoints that only read).
pub fn needed(node: &Node, call: &Call<'_>, writes: bool, sticky: bool) -> bool {
    let Origin::Client(session) = call.origin else { return false };
    (writes || (sticky && session.forwarded.load(Ordering::Relaxed))) && !node.consensus.is_primary()
}

/// Whether an app endpoint's request goes to the primary.
pub fn needed_for_endpoint(node: &Node, call: &Call<'_>, endpoint: &consort_js::EndpointDef) -> bool {
    match endpoint.forwarding_required.as_str() {
        "always" => needed(node, call, true, false),
        "never" => false,
        _ => needed(node, call, endpoint.mode == consort_js::Mode::Readwrite, true),
    }
}

/// Sends the request to the primary and returns its answer.
pub async fn to_primary(node: &Node, call: &Call<'_>) -> Reply {
    if let Origin::Client(session) = call.origin {
        session.forwarded.store(true, Ordering::Relaxed);
    }
    let request = Forwarded {
        method: call.method.as_str().to_owned(),
        path: call.path.clone(),
        query: call.query.clone(),
        headers: carried(call.headers),
        body: ByteBuf::from(call.body.clone()),
        caller_cert: call.peer_cert.map(|c| ByteBuf::from(c.der())),
    };
    let mut bytes = Vec::with_capacity(call.body.len() + 512);
    ciborium::into_writer(&request, &mut bytes).expect("a forwarded request encodes");
    let answer = match node.consensus.forward(bytes, Duration::from_millis(node.config.limits.forwarding_timeout_ms)).await {
        Ok(a) => a,
        // Sent, but unanswered: the primary may have executed it (see `reply::commit_failure`).
        Err(e @ ForwardError::NoAnswer(..)) => {
            return reply::error(
                StatusCode::GATEWAY_TIMEOUT,
                "TransactionOutcomeUnknown",
                format!("{e}; do not retry before reading back what it would have written"),
            )
        }
        Err(ForwardError::IsPrimary) => {
            return reply::error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "this node became the primary; retry")
        }
        Err(e) => return reply::error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", e.to_string()),
    };
    match ciborium::from_reader::<Answer, _>(answer.as_slice()) {
        Ok(a) => {
            let mut r = reply::bytes(StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), a.body.into_vec());
            *r.headers_mut() = header_map(&a.headers);
            r
        }
        Err(e) => reply::error(StatusCode::BAD_GATEWAY, "ForwardingFailed", format!("the primary's answer cannot be read: {e}")),
    }
}

/// What answers a request once it is read: the router's, handed in so that forwarding never
/// reaches back into the router (which forwards through this module).
pub type Dispatch = for<'a> fn(&'a Node, &'a Call<'a>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send + 'a>>;

/// What answers requests forwarded to this node: each is executed by `dispatch` as if its
/// client had called this node directly.
pub fn handler(node: Weak<Node>, dispatch: Dispatch) -> ForwardHandler {
    Arc::new(move |bytes| {
        let node = node.clone();
        Box::pin(async move {
            let answer = match node.upgrade() {
                Some(node) => execute(&node, &bytes, dispatch).await,
                None => reply::error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "the node is stopping"),
            };
            let (parts, body) = answer.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let answer = Answer { status: parts.status.as_u16(), headers: carried(&parts.headers), body: ByteBuf::from(body.to_vec()) };
            let mut out = Vec::with_capacity(answer.body.len() + 256);
            ciborium::into_writer(&answer, &mut out).expect("an answer encodes");
            out
        })
    })
}

async fn execute(node: &Node, bytes: &[u8], dispatch: Dispatch) -> Reply {
    let request: Forwarded = match ciborium::from_reader(bytes) {
        Ok(r) => r,
        Err(e) => return reply::error(StatusCode::BAD_REQUEST, "InvalidInput", format!("a forwarded request cannot be read: {e}")),
    };
    let limit = node.config.limits.request_body_bytes_max;
    if request.body.len() > limit {
        return reply::error(StatusCode::PAYLOAD_TOO_LARGE, "RequestBodyTooLarge", format!("request body is above the {limit}-byte limit"));
    }
    let Ok(method) = Method::from_bytes(request.method.as_bytes()) else {
        return reply::error(StatusCode::BAD_REQUEST, "InvalidInput", format!("a forwarded request has method {:?}", request.method));
    };
    let headers = header_map(&request.headers);
    let caller_cert = request.caller_cert.map(|c| crate::auth::PeerCert::new(c.into_vec()));
    let call = Call {
        method,
        path: request.path,
        query: request.query,
        headers: &headers,
        body: request.body.into_vec(),
        peer_cert: caller_cert.as_ref(),
        origin: Origin::Forwarded,
    };
    dispatch(node, &call).await
}

/// An endpoint's `redirection_strategy`: `to_primary` sends a backup's clients to the primary,
/// `to_backup` sends the primary's clients to a backup, with a `307` whose `Location` is that
/// node's RPC address. `None` when the request stays here (no strategy, `none`, this node
/// already has the right role, or no such node is known).
pub fn redirect(node: &Node, call: &Call<'_>, strategy: Option<&str>) -> Option<Reply> {
    let strategy = strategy.filter(|s| *s != "none")?;
    if matches!(call.origin, Origin::Forwarded) {
        return None;
    }
    let primary = node.consensus.primary()?;
    let to_primary = match strategy {
        "to_primary" if !node.consensus.is_primary() => true,
        "to_backup" if node.consensus.is_primary() => false,
        _ => return None,
    };
    let state = node.consensus.store().snapshot();
    let target = state.iter(NODES_INFO).find_map(|(id, info)| {
        let raft_id = consort_consensus::raft_node_id(&String::from_utf8_lossy(id));
        let info: serde_json::Value = serde_json::from_slice(info).ok()?;
        let wanted = if to_primary { raft_id == primary } else { raft_id != primary && info["status"] == "Trusted" };
        wanted.then(|| info["rpc_address"].as_str().map(str::to_owned)).flatten()
    })?;
    let query = if call.query.is_empty() { String::new() } else { format!("?{}", call.query) };
    let location = format!("https://{target}{}{query}", call.path);
    let mut r = reply::error(StatusCode::TEMPORARY_REDIRECT, "Redirect", format!("call {location}"));
    r.headers_mut().insert(hyper::header::LOCATION, HeaderValue::from_str(&location).ok()?);
    Some(r)
}
