//! The built-in endpoints: `/node/*` (state, network, consensus, metrics, readiness, snapshots,
//! ledger entries) and the app's `/commit`, `/tx`, `/receipt` and `/api`.

use consort_kv::{TxId, SINGLETON_KEY};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::call::Call;
use crate::context::Node;
use crate::reply::{self, Reply};
use consort_kv::names::{NODES_INFO, SERVICE_INFO};

/// The refusal, if the request's `Accept` header does not admit the JSON a built-in endpoint
/// answers with.
pub(crate) fn json_refused(call: &Call<'_>) -> Option<Reply> {
    let header = call.headers.get(hyper::header::ACCEPT).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    match crate::accept::admits_json(header) {
        Ok(()) => None,
        Err(crate::accept::Refusal::Malformed(m)) => Some(reply::error(StatusCode::BAD_REQUEST, "InvalidHeaderValue", m)),
        Err(crate::accept::Refusal::NotAcceptable(m)) => Some(reply::error(StatusCode::NOT_ACCEPTABLE, "UnsupportedContentType", m)),
    }
}

pub(crate) fn node_endpoint(node: &Node, call: &Call<'_>) -> Reply {
    let c = &node.consensus;
    match call.path.as_str() {
        "/node/state" => {
            let ledger = c.ledger();
            let status = service_info(node)["status"].clone();
            // CCF's node states: a recovering service is a public network until its private
            // maps are restored.
            let state = if node.recovery.reading_private_ledger() {
                "ReadingPrivateLedger"
            } else if status == "Recovering" || status == "WaitingForRecoveryShares" {
                "PartOfPublicNetwork"
            } else {
                "PartOfNetwork"
            };
            let mut body = json!({
                "node_id": node.node_id(),
                "state": state,
                "last_signed_seqno": ledger.last_signed().unwrap_or(0),
                // The snapshot this node started from (0: it has the whole ledger).
                "startup_seqno": ledger.base.saturating_sub(1),
            });
            if let Some(failure) = node.recovery.failure() {
                body["recovery_failure"] = json!(failure);
            }
            reply::ok(&body)
        }
        "/node/service/previous_identity" => {
            let state = c.store().snapshot();
            let info = service_info(node);
            let endorsements: Vec<String> = state
                .get(consort_kv::names::PREVIOUS_IDENTITY_ENDORSEMENTS, &SINGLETON_KEY)
                .and_then(|v| serde_json::from_slice(v).ok())
                .unwrap_or_default();
            match info["previous_service_identity"].as_str() {
                Some(previous) => reply::ok(&json!({
                    "previous_service_identity": previous,
                    // Consort's addition: each previous identity endorsed by the one after it,
                    // newest first (`consort receipt verify --endorsements`).
                    "endorsements": endorsements.concat(),
                })),
                None => reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", "This service is not a recovery of a previous service."),
            }
        }
        "/node/network" => {
            let info = service_info(node);
            reply::ok(&json!({
                "service_status": info.get("status").cloned().unwrap_or(Value::Null),
                "service_certificate": node.service_cert_pem(),
                "current_view": c.current_view(),
                "primary_id": primary_node_id(node),
                "recovery_count": info.get("recovery_count").cloned().unwrap_or(json!(0)),
                // Where the current ledger secret starts (0 until the first trigger_ledger_rekey).
                "latest_ledger_secret_seqno": c.ledger_secrets().1,
            }))
        }
        "/node/network/nodes" => reply::ok(&json!({"nodes": nodes(node)})),
        "/node/consensus" => {
            // The Raft configuration as this node sees it, by node id.
            let voters = c.voters();
            let state = c.store().snapshot();
            let ids: Vec<String> = state
                .iter(NODES_INFO)
                .map(|(id, _)| String::from_utf8_lossy(id).into_owned())
                .filter(|id| voters.contains(&consort_consensus::raft_node_id(id)))
                .collect();
            reply::ok(&json!({"voters": ids, "primary_id": primary_node_id(node), "current_view": c.current_view()}))
        }
        "/node/network/nodes/self" => node_info(node, node.node_id()),
        "/node/network/nodes/primary" => match primary_node_id(node) {
            Some(id) => node_info(node, &id),
            None => reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", "no primary is known"),
        },
        p if p.starts_with("/node/network/nodes/") => node_info(node, &p["/node/network/nodes/".len()..]),
        "/node/commit" => commit(node),
        "/node/tx" => tx_status(node, call),
        "/node/version" => {
            reply::ok(&json!({"ccf_version": format!("consort-{}", crate::VERSION), "js_engine": "boa 0.22", "unsafe": false}))
        }
        "/node/primary" => match c.is_primary() {
            true => reply::ok(&json!({"primary": true})),
            false => reply::error(StatusCode::NOT_FOUND, "NotPrimary", "this node is not the primary"),
        },
        "/node/metrics" => {
            let mut r = reply::bytes(StatusCode::OK, node.metrics.render(&metric_figures(node)).into_bytes());
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"));
            r
        }
        "/node/js_metrics" => {
            let o = node.js_options();
            let mut m = serde_json::to_value(node.pool.metrics()).expect("metrics serialise");
            if let Some(obj) = m.as_object_mut() {
                // CCF's names for the limits in force.
                obj.insert("max_heap_size".into(), json!(o.max_heap_bytes));
                obj.insert("max_stack_size".into(), json!(o.max_stack_bytes));
                obj.insert("max_execution_time".into(), json!(o.max_execution_time_ms));
                obj.insert("max_cached_interpreters".into(), json!(o.max_cached_interpreters));
            }
            reply::ok(&m)
        }
        // Any node of the network is ready once it knows a primary (a backup forwards writes to
        // it), so load balancers can spread requests: governance from the start, the app once
        // the service is open.
        "/node/ready/gov" => ready(c.primary().is_some(), "this node knows no primary yet"),
        "/node/ready/app" => ready(
            c.primary().is_some() && node.is_open_at(&c.store().snapshot()),
            "the service is not open, or this node knows no primary yet",
        ),
        _ => reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("Unknown path: {}", call.path)),
    }
}

/// The node's figures for a metrics scrape: consensus, the ledger and snapshot files, the pool.
fn metric_figures(node: &Node) -> crate::metrics::Figures {
    let c = &node.consensus;
    let dir = node.config.ledger_dir();
    let chunks = consort_ledger::files::list_chunks(&dir).unwrap_or_default();
    let ledger_bytes = chunks.iter().filter_map(|ch| std::fs::metadata(dir.join(ch.file_name())).ok()).map(|m| m.len()).sum();
    let snapshot_seqno = consort_consensus::snapshot::list(&node.config.snapshots().directory).last().map_or(0, |(s, _)| *s);
    crate::metrics::Figures {
        raft: c.figures(),
        committed_seqno: c.committed_txid().seqno,
        ledger_bytes,
        ledger_chunks: chunks.len() as u64,
        snapshot_seqno,
        js: node.pool.metrics(),
        historical_cache_bytes: node.historical.bytes() as u64,
    }
}

fn ready(yes: bool, why_not: &str) -> Reply {
    if yes {
        reply::empty(StatusCode::NO_CONTENT)
    } else {
        reply::error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", why_not)
    }
}

/// `GET /node/snapshot[?since=N]`: a redirect to the newest committed snapshot (newer than
/// seqno N) this node holds, as CCF does; `GET /node/snapshot/<name>`: its bytes. A joining
/// node fetches its starting state this way; the file is no secret (its private part is
/// sealed with the ledger secret, whose tag also authenticates the rest).
pub(crate) async fn snapshot(node: &Node, call: &Call<'_>) -> Reply {
    use consort_consensus::snapshot;
    let dir = node.config.snapshots().directory;
    let not_found = |why: String| reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", why);
    let Some(name) = call.path.strip_prefix("/node/snapshot/") else {
        let since = match call.query_param("since").map(|s| s.parse::<u64>()) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => return bad_query("since is a seqno".into()),
        };
        return match snapshot::list(&dir).into_iter().rfind(|(s, _)| *s > since) {
            Some((_, path)) => {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                let mut r = reply::empty(StatusCode::FOUND);
                if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("/node/snapshot/{name}")) {
                    r.headers_mut().insert(hyper::header::LOCATION, v);
                }
                r
            }
            None => not_found(format!("this node has no committed snapshot after seqno {since}")),
        };
    };
    if snapshot::seqno_of(name).is_none() {
        return not_found(format!("{name} is not a snapshot's name (snapshot_<seqno>.committed)"));
    }
    match tokio::fs::read(dir.join(name)).await {
        Ok(bytes) => {
            let mut r = reply::bytes(StatusCode::OK, if call.method == Method::HEAD { Vec::new() } else { bytes });
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/octet-stream"));
            r
        }
        Err(_) => not_found(format!("this node has no snapshot {name} (it keeps the newest {})", snapshot::SNAPSHOTS_KEPT)),
    }
}

/// `GET /node/ledger/entries[?from=S][&to=S]`: the node's applied ledger entries `from..=to`
/// (at most [`ledger_view::ENTRIES_MAX`]; the newest by default), shaped for the caller by
/// [`ledger_view::describe`]: a member (by its TLS client certificate) sees every public
/// write, anyone else the governance tables' (docs/decisions.md).
pub(crate) async fn ledger_entries(node: &Node, call: &Call<'_>) -> Reply {
    use crate::ledger_view::{self, Reader};
    let state = node.consensus.store().snapshot();
    let creds = crate::auth::Credentials { cert: call.peer_cert, ..Default::default() };
    let member = match crate::auth::authenticate(&state, &[json!("member_cert")], creds) {
        Ok(Some(caller)) => caller["id"].as_str().map(str::to_owned),
        _ => None,
    };
    let reader = if member.is_some() { Reader::Member } else { Reader::Anyone };
    let held = node.consensus.applied_seqnos();
    let (from, to) = match ledger_view::range(call.query_param("from").as_deref(), call.query_param("to").as_deref(), held) {
        Ok(r) => r,
        Err(e) => return bad_query(e),
    };
    let consensus = node.consensus.clone();
    let read = tokio::task::spawn_blocking(move || {
        consensus.applied_entries(from, to, |le| ledger_view::describe(&le, consensus.status(le.txid).as_str(), reader))
    })
    .await;
    let (described, (first, last)) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => return reply::error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", format!("the ledger cannot be read: {e}")),
        Err(e) => return reply::error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", format!("reading the ledger failed: {e}")),
    };
    reply::ok(&json!({
        "first": first,
        "last": last,
        "committed": node.consensus.committed_txid().to_string(),
        "reader": match &member { Some(id) => json!({"member": id}), None => json!("anyone") },
        "entries": described,
    }))
}

fn service_info(node: &Node) -> Value {
    let state = node.consensus.store().snapshot();
    state.get(SERVICE_INFO, &SINGLETON_KEY).and_then(|v| serde_json::from_slice(v).ok()).unwrap_or(Value::Null)
}

/// The node id of the primary this node knows of.
fn primary_node_id(node: &Node) -> Option<String> {
    let primary = node.consensus.primary()?;
    let state = node.consensus.store().snapshot();
    let found = state
        .iter(NODES_INFO)
        .map(|(id, _)| String::from_utf8_lossy(id).into_owned())
        .find(|id| consort_consensus::raft_node_id(id) == primary);
    found
}

fn nodes(node: &Node) -> Vec<Value> {
    let state = node.consensus.store().snapshot();
    let primary = node.consensus.primary();
    state
        .iter(NODES_INFO)
        .filter_map(|(id, v)| {
            let mut info: Value = serde_json::from_slice(v).ok()?;
            let id = String::from_utf8_lossy(id).into_owned();
            let primary = Some(consort_consensus::raft_node_id(&id)) == primary;
            info.as_object_mut()?.insert("node_id".into(), Value::String(id));
            info.as_object_mut()?.insert("primary".into(), Value::Bool(primary));
            Some(info)
        })
        .collect()
}

fn node_info(node: &Node, id: &str) -> Reply {
    match nodes(node).into_iter().find(|n| n["node_id"] == id) {
        Some(n) => reply::ok(&n),
        None => reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("no node with id {id}")),
    }
}

pub(crate) fn commit(node: &Node) -> Reply {
    let txid = node.consensus.committed_txid();
    reply::with_txid(reply::ok(&json!({"transaction_id": txid.to_string()})), txid)
}

fn txid_param(call: &Call<'_>) -> Result<TxId, String> {
    let raw = call.query_param("transaction_id").ok_or("missing query parameter transaction_id=<view>.<seqno>")?;
    raw.parse().map_err(|e: consort_kv::TxIdParseError| e.to_string())
}

fn bad_query(message: String) -> Reply {
    reply::error(StatusCode::BAD_REQUEST, "InvalidQueryParameterValue", message)
}

pub(crate) fn tx_status(node: &Node, call: &Call<'_>) -> Reply {
    let txid = match txid_param(call) {
        Ok(t) => t,
        Err(e) => return bad_query(e),
    };
    let status = node.consensus.status(txid);
    reply::ok(&json!({"transaction_id": txid.to_string(), "status": status.as_str()}))
}

pub(crate) fn receipt(node: &Node, call: &Call<'_>) -> Reply {
    let txid = match txid_param(call) {
        Ok(t) => t,
        Err(e) => return bad_query(e),
    };
    match node.consensus.receipt(txid) {
        Ok(r) => reply::with_txid(reply::ok(&serde_json::to_value(r).expect("receipt serialises")), txid),
        Err(e @ consort_consensus::ReceiptError::Invalid(_)) => reply::error(StatusCode::NOT_FOUND, "TransactionInvalid", e.to_string()),
        Err(e @ consort_consensus::ReceiptError::Read(..)) => {
            reply::error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string())
        }
        Err(e) => reply::error(StatusCode::NOT_FOUND, "TransactionPendingOrUnknown", e.to_string()),
    }
}

/// OpenAPI 3 of the app: every endpoint under `/app`, with its `openapi` object when given.
pub(crate) fn openapi(node: &Node) -> Reply {
    let app = match node.app() {
        Ok(app) => app,
        Err(e) => return reply::error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e),
    };
    let mut paths = serde_json::Map::new();
    for (path, methods) in app.iter().flat_map(|b| b.metadata.endpoints.iter()) {
        let mut ops = serde_json::Map::new();
        for (method, def) in methods {
            let mut op = def.openapi.clone().filter(Value::is_object).unwrap_or_else(|| json!({}));
            let o = op.as_object_mut().expect("checked to be an object");
            o.entry("responses").or_insert_with(|| json!({"default": {"description": "Default response"}}));
            let params: Vec<Value> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
                .collect();
            if !params.is_empty() {
                o.entry("parameters").or_insert(Value::Array(params));
            }
            ops.insert(method.clone(), op);
        }
        paths.insert(format!("/app{path}"), Value::Object(ops));
    }
    reply::ok(&json!({
        "openapi": "3.0.0",
        "info": {"title": "Consort application", "version": "1.0.0", "description": "Endpoints of the deployed JS application"},
        "servers": [],
        "paths": paths,
    }))
}
