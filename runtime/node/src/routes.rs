//! Request routing, the one way in for a request (from the server, or forwarded by a backup):
//! `/node/*` and the built-in `/app/*` endpoints to [`crate::node_api`], `/node/join` to
//! [`crate::join`], `/gov/*` to [`crate::gov`], the app's own endpoints to [`crate::app`].

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use crate::call::{actor_of, refuse_method, Actor, Call, Origin, Session};
use crate::context::Node;
use crate::reply::{self, Reply};

/// After the body limit is passed, up to this many more bytes are read and discarded so the
/// client can finish sending and read the 413 (closing on unread data makes TCP reset the
/// connection, and the client may never see the answer); beyond it the connection is dropped.
const OVERSIZED_BODY_DRAIN_BYTES_MAX: usize = 16 * 1024 * 1024;
const OVERSIZED_BODY_DRAIN_MS: u64 = 5_000;

enum Body {
    Complete(Vec<u8>),
    TooLarge,
    Broken(String),
}

async fn read_body(mut body: Incoming, limit: usize) -> Body {
    let mut buf = Vec::new();
    let mut total = 0usize;
    let drain_deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(OVERSIZED_BODY_DRAIN_MS);
    loop {
        let frame = if total > limit {
            match tokio::time::timeout_at(drain_deadline, body.frame()).await {
                Ok(f) => f,
                Err(_) => return Body::TooLarge,
            }
        } else {
            body.frame().await
        };
        let Some(frame) = frame else { break };
        let frame = match frame {
            Ok(f) => f,
            Err(e) if total > limit => {
                tracing::debug!("while discarding an oversized body: {e}");
                return Body::TooLarge;
            }
            Err(e) => return Body::Broken(e.to_string()),
        };
        if let Some(data) = frame.data_ref() {
            total = total.saturating_add(data.len());
            if total <= limit {
                buf.extend_from_slice(data);
            } else if total > limit.saturating_add(OVERSIZED_BODY_DRAIN_BYTES_MAX) {
                return Body::TooLarge;
            }
        }
    }
    if total > limit {
        Body::TooLarge
    } else {
        Body::Complete(buf)
    }
}

fn too_large(limit: usize) -> Reply {
    let mut r = reply::error(StatusCode::PAYLOAD_TOO_LARGE, "RequestBodyTooLarge", format!("request body is above the {limit}-byte limit"));
    r.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
    r
}

pub async fn handle(node: &Node, req: Request<Incoming>, peer_cert: Option<&crate::auth::PeerCert>, session: &Session) -> Reply {
    let limit = node.config.limits.request_body_bytes_max;
    let (parts, body) = req.into_parts();
    let body = match read_body(body, limit).await {
        Body::Complete(b) => b,
        Body::TooLarge => return too_large(limit),
        Body::Broken(e) => return reply::error(StatusCode::BAD_REQUEST, "InvalidInput", format!("reading the request body: {e}")),
    };
    let call = Call {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: &parts.headers,
        body,
        peer_cert,
        origin: Origin::Client(session),
    };
    dispatch(node, &call).await
}

/// [`dispatch`] as the forwarding handler takes it.
pub fn dispatch_boxed<'a>(node: &'a Node, call: &'a Call<'a>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send + 'a>> {
    Box::pin(dispatch(node, call))
}

/// Answers a request, whether a client sent it to this node or a backup forwarded it.
pub async fn dispatch(node: &Node, call: &Call<'_>) -> Reply {
    if crate::console::is_console(&call.path) {
        return crate::console::serve(call);
    }
    match actor_of(&call.path) {
        (Actor::Node, _) => node_actor(node, call).await,
        (Actor::Gov, _) => crate::gov::handle(node, call).await,
        (Actor::App, path) => app_actor(node, call, path).await,
    }
}

/// The methods each built-in `/node` path answers.
fn node_methods(path: &str) -> &'static [&'static str] {
    const GET: &[&str] = &["GET", "HEAD"];
    const GET_PATHS: &[&str] = &[
        "/node/state",
        "/node/service/previous_identity",
        "/node/network",
        "/node/network/nodes",
        "/node/consensus",
        "/node/commit",
        "/node/tx",
        "/node/version",
        "/node/primary",
        "/node/js_metrics",
        "/node/metrics",
        "/node/ready/gov",
        "/node/ready/app",
        "/node/snapshot",
        "/node/ledger/entries",
    ];
    match path {
        "/node/join" => &["POST"],
        p if GET_PATHS.contains(&p) || p.starts_with("/node/network/nodes/") || p.starts_with("/node/snapshot/") => GET,
        _ => &[],
    }
}

async fn node_actor(node: &Node, call: &Call<'_>) -> Reply {
    let allowed = node_methods(&call.path);
    if !allowed.contains(&call.method.as_str()) {
        return refuse_method(call, allowed.iter().map(|m| m.to_string()));
    }
    match call.path.as_str() {
        "/node/join" => crate::join::handle(node, call).await,
        p if p == "/node/snapshot" || p.starts_with("/node/snapshot/") => crate::node_api::snapshot(node, call).await,
        "/node/ledger/entries" => match crate::node_api::json_refused(call) {
            Some(refusal) => refusal,
            None => crate::node_api::ledger_entries(node, call).await,
        },
        _ => crate::node_api::json_refused(call).unwrap_or_else(|| crate::node_api::node_endpoint(node, call)),
    }
}

/// The app's endpoints first, then the built-in ones (CCF's order: an app that defines
/// `/commit` answers `GET /app/commit` itself).
async fn app_actor(node: &Node, call: &Call<'_>, path: &str) -> Reply {
    let state = node.consensus.store().snapshot();
    // The app and its version, read together (one look at the cache per request).
    let (app, version) = match node.app_and_version_at(&state) {
        Ok((app, version)) => (Ok(app), version),
        Err(e) => (Err(e), None),
    };
    if let Ok(Some(app)) = &app {
        match app.route(call.method.as_str(), path) {
            Ok(m) => return crate::app::call(node, call, &state, (app, version), m).await,
            Err(consort_js::RouteError::Ambiguous(templates)) => {
                return reply::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    format!("Multiple potential matches for path {path}: {}", templates.join(", ")),
                )
            }
            Err(consort_js::RouteError::NotFound) => {}
        }
    }
    let builtin: &[&str] = match path {
        "/commit" | "/tx" | "/receipt" | "/api" => &["GET", "HEAD"],
        _ => &[],
    };
    if builtin.contains(&call.method.as_str()) {
        if let Some(refusal) = crate::node_api::json_refused(call) {
            return refusal;
        }
        return match path {
            "/commit" => crate::node_api::commit(node),
            "/tx" => crate::node_api::tx_status(node, call),
            "/receipt" => crate::node_api::receipt(node, call),
            _ => crate::node_api::openapi(node),
        };
    }
    let mut allowed: Vec<String> = builtin.iter().map(|m| m.to_string()).collect();
    match &app {
        Ok(Some(app)) => allowed.extend(app.methods_at(path)),
        Ok(None) => {}
        Err(e) => {
            return reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("the deployed application cannot be read: {e}"),
            )
        }
    }
    refuse_method(call, allowed)
}
