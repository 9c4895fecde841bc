//! The `/gov` API (SPEC §5, api-version 2024-07-01): members' signed writes run through
//! `consort_gov` on one transaction each (re-run on a conflict), and the read-only views of
//! proposals, ballots, members and the service.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use consort_consensus::CommitError;
use consort_gov::{app_versions, Constitution, Failure, GovError, MemberRequirement, Phase, ProposalInfo, SignedRequest};
use consort_js::{KvAccess, RuntimeOptions, ScriptError};
use consort_kv::names::*;
use consort_kv::{State, Tx, TxId, SINGLETON_KEY};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::call::Call;
use crate::context::Node;
use crate::reply::{self, Reply};

/// The one method each `/gov` path answers (`None`: no such path).
fn methods(parts: &[&str]) -> Option<&'static Method> {
    let action = |segment: &str, verbs: &[&str]| segment.split_once(':').is_some_and(|(_, verb)| verbs.contains(&verb));
    match parts {
        ["members", "proposals:create" | "proposals:dry-run"] => Some(&Method::POST),
        ["members", "proposals", a] if action(a, &["withdraw"]) => Some(&Method::POST),
        ["members", "proposals", _, "ballots", a] if action(a, &["submit"]) => Some(&Method::POST),
        ["recovery", "members", a] if action(a, &["recover"]) => Some(&Method::POST),
        ["members", "state-digests", a] if action(a, &["update", "ack"]) => Some(&Method::POST),
        ["members", "proposals"]
        | ["members", "proposals", _]
        | ["members", "proposals", _, "actions"]
        | ["members", "proposals", _, "ballots", _]
        | ["members", "state-digests", _]
        | ["recovery", "encrypted-shares", _]
        | ["service", "info" | "constitution" | "members" | "nodes" | "javascript-app" | "users" | "jwk" | "join-policy" | "javascript-modules"
        | "js-modules"]
        | ["service", "members" | "nodes" | "users" | "javascript-modules" | "js-modules" | "transactions", _]
        | ["service", "javascript-app", "versions"]
        | ["service", "javascript-app", "versions", _] => Some(&Method::GET),
        _ => None,
    }
}

/// The API versions this node answers (CCF 6's current one and its preview).
const API_VERSIONS: [&str; 2] = ["2024-07-01", "2023-06-01-preview"];

pub async fn handle(node: &Node, call: &Call<'_>) -> Reply {
    let path = call.path.strip_prefix("/gov").unwrap_or("");
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let allowed = methods(&parts);
    if allowed != Some(&call.method) {
        return crate::call::refuse_method(call, allowed.map(|m| m.to_string()));
    }
    match call.query_param("api-version") {
        Some(v) if API_VERSIONS.contains(&v.as_str()) => {}
        Some(v) => {
            return reply::error(
                StatusCode::BAD_REQUEST,
                "UnsupportedApiVersionValue",
                format!("Unsupported api-version {v:?}: this node supports {}", API_VERSIONS.join(", ")),
            )
        }
        None => {
            return reply::error(
                StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                format!("/gov requests need an api-version query parameter (for example ?api-version={})", API_VERSIONS[0]),
            )
        }
    }
    let state = node.consensus.store().snapshot();
    match (&call.method, parts.as_slice()) {
        (&Method::POST, ["members", "proposals:create"]) => write(node, call, Write::Create).await,
        (&Method::POST, ["members", "proposals:dry-run"]) => dry_run(node, call).await,
        (&Method::POST, ["members", "proposals", action]) => match action.split_once(':') {
            Some((id, "withdraw")) => write(node, call, Write::Withdraw { proposal_id: id.to_owned() }).await,
            _ => not_found(path),
        },
        (&Method::POST, ["members", "proposals", id, "ballots", action]) => match action.split_once(':') {
            Some((member, "submit")) => {
                write(node, call, Write::Ballot { proposal_id: (*id).to_owned(), member_id: member.to_owned() }).await
            }
            _ => not_found(path),
        },
        (&Method::POST, ["recovery", "members", action]) => match action.split_once(':') {
            Some((member, "recover")) => recovery_share(node, call, member).await,
            _ => not_found(path),
        },
        (&Method::GET, ["recovery", "encrypted-shares", member]) => match consort_gov::recovery::encrypted_share(&state, member) {
            Some(share) => {
                use base64::Engine;
                reply::ok(&json!({"memberId": member, "encryptedShare": base64::engine::general_purpose::STANDARD.encode(share)}))
            }
            None => reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("Recovery share not found for member {member}.")),
        },
        (&Method::POST, ["members", "state-digests", action]) => match action.split_once(':') {
            Some((member, "update")) => write(node, call, Write::Update { member_id: member.to_owned() }).await,
            Some((member, "ack")) => write(node, call, Write::Ack { member_id: member.to_owned() }).await,
            _ => not_found(path),
        },
        (&Method::GET, ["members", "proposals"]) => {
            let list: Vec<Value> = state
                .iter(PROPOSALS_INFO)
                .filter_map(|(k, v)| Some(serde_json::from_slice::<ProposalInfo>(v).ok()?.to_api(&String::from_utf8_lossy(k))))
                .collect();
            reply::ok(&json!({"value": list}))
        }
        (&Method::GET, ["members", "proposals", id]) => match read::<ProposalInfo>(&state, PROPOSALS_INFO, id) {
            Some(info) => reply::ok(&info.to_api(id)),
            None => proposal_not_found(id),
        },
        (&Method::GET, ["members", "proposals", id, "actions"]) => match state.get(PROPOSALS, id.as_bytes()) {
            Some(p) => raw(p.to_vec(), "application/json"),
            None => proposal_not_found(id),
        },
        (&Method::GET, ["members", "proposals", id, "ballots", member]) => match read::<ProposalInfo>(&state, PROPOSALS_INFO, id) {
            None => proposal_not_found(id),
            Some(info) => match info.ballots.get(*member) {
                Some(ballot) => raw(ballot.clone().into_bytes(), "application/javascript"),
                None => reply::error(StatusCode::NOT_FOUND, "VoteNotFound", format!("Member {member} has not voted for proposal {id}.")),
            },
        },
        (&Method::GET, ["members", "state-digests", member]) => match read::<Value>(&state, MEMBERS_ACKS, member) {
            Some(ack) => reply::ok(&json!({"memberId": member, "stateDigest": ack.get("state_digest")})),
            None => reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("No ACK record exists for member {member}.")),
        },
        (&Method::GET, ["service", "info"]) => {
            let info: Value = state.get(SERVICE_INFO, &SINGLETON_KEY).and_then(|v| serde_json::from_slice(v).ok()).unwrap_or(Value::Null);
            reply::ok(&json!({
                "status": info.get("status"),
                "certificate": info.get("cert"),
                "recoveryCount": info.get("recovery_count").cloned().unwrap_or(json!(0)),
                "serviceData": info.get("service_data").cloned().unwrap_or(Value::Null),
            }))
        }
        (&Method::GET, ["service", "constitution"]) => {
            match state.get(CONSTITUTION, &SINGLETON_KEY).and_then(|v| serde_json::from_slice::<String>(v).ok()) {
                Some(c) => raw(c.into_bytes(), "application/javascript"),
                None => reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", "no constitution is set"),
            }
        }
        (&Method::GET, ["service", "members"]) => {
            let list: Vec<Value> = state.iter(MEMBERS_CERTS).map(|(k, _)| member_view(&state, &String::from_utf8_lossy(k))).collect();
            reply::ok(&json!({"value": list}))
        }
        (&Method::GET, ["service", "members", id]) => match state.get(MEMBERS_CERTS, id.as_bytes()) {
            Some(_) => reply::ok(&member_view(&state, id)),
            None => reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("Member {id} does not exist.")),
        },
        (&Method::GET, ["service", "nodes"]) => {
            let list: Vec<Value> = state.iter(NODES_INFO).map(|(k, v)| node_view(&state, &String::from_utf8_lossy(k), v)).collect();
            reply::ok(&json!({"value": list}))
        }
        (&Method::GET, ["service", "nodes", id]) => match state.get(NODES_INFO, id.as_bytes()) {
            Some(v) => reply::ok(&node_view(&state, id, v)),
            None => reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("Node {id} does not exist.")),
        },
        (&Method::GET, ["service", "javascript-app"]) => {
            // CCF's view: camelCase fields under the upper-case verb, or with `?case=original`
            // each endpoint as set_js_app stored it.
            let original = match call.query_param("case").as_deref() {
                None => false,
                Some("original") => true,
                Some(_) => {
                    return reply::error(
                        StatusCode::BAD_REQUEST,
                        "InvalidQueryParameterValue",
                        "Accepted values for the 'case' query parameter are: original",
                    )
                }
            };
            let mut endpoints = serde_json::Map::new();
            for (k, v) in state.iter(ENDPOINTS) {
                let key = String::from_utf8_lossy(k);
                let Some((method, path)) = key.split_once(' ') else { continue };
                let def: Value = serde_json::from_slice(v).unwrap_or(Value::Null);
                let view = if original {
                    def
                } else {
                    json!({
                        "jsModule": def.get("js_module"), "jsFunction": def.get("js_function"),
                        "forwardingRequired": def.get("forwarding_required"), "redirectionStrategy": def.get("redirection_strategy"),
                        "authnPolicies": def.get("authn_policies"), "mode": def.get("mode"), "openApi": def.get("openapi"),
                    })
                };
                let entry = endpoints.entry(path.to_owned()).or_insert_with(|| json!({}));
                entry[method.to_ascii_uppercase()] = view;
            }
            reply::ok(&json!({"endpoints": endpoints}))
        }
        (&Method::GET, ["service", "javascript-app", "versions"]) => {
            let mut tx = Tx::new(state.clone());
            let list: Vec<Value> = app_versions::versions(&mut tx).iter().map(|v| version_view(node, &state, v)).collect();
            reply::ok(&json!({"value": list}))
        }
        (&Method::GET, ["service", "javascript-app", "versions", n]) => {
            let record = n.parse::<u64>().ok().and_then(|n| app_versions::version(&mut Tx::new(state.clone()), n));
            match record {
                Some(v) => reply::ok(&v.bundle),
                None => reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("App version {n} does not exist.")),
            }
        }
        (&Method::GET, ["service", "users"]) => {
            let list: Vec<Value> = state.iter(USERS_CERTS).map(|(k, c)| user_view(&state, &String::from_utf8_lossy(k), c)).collect();
            reply::ok(&json!({"value": list}))
        }
        (&Method::GET, ["service", "users", id]) => match state.get(USERS_CERTS, id.as_bytes()) {
            Some(cert) => reply::ok(&user_view(&state, id, cert)),
            None => reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("User {id} does not exist.")),
        },
        (&Method::GET, ["service", "jwk"]) => reply::ok(&jwk_view(&state)),
        (&Method::GET, ["service", "join-policy"]) => reply::ok(&join_policy_view(&state)),
        // CCF's name, and the one Consort had first.
        (&Method::GET, ["service", "javascript-modules" | "js-modules"]) => {
            let list: Vec<Value> = state.iter(MODULES).map(|(k, _)| json!({"moduleName": String::from_utf8_lossy(k)})).collect();
            reply::ok(&json!({"value": list}))
        }
        (&Method::GET, ["service", "javascript-modules" | "js-modules", name]) => {
            let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy().into_owned();
            let key = if name.starts_with('/') { name.clone() } else { format!("/{name}") };
            match state.get(MODULES, key.as_bytes()).or_else(|| state.get(MODULES, name.as_bytes())) {
                Some(src) => raw(src.to_vec(), "application/javascript"),
                None => reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("Module {name} does not exist.")),
            }
        }
        (&Method::GET, ["service", "transactions", "commit"]) => {
            let txid = node.consensus.committed_txid();
            reply::ok(&json!({"transactionId": txid.to_string(), "status": "Committed"}))
        }
        (&Method::GET, ["service", "transactions", id]) => match id.parse::<TxId>() {
            Ok(txid) => reply::ok(&json!({"transactionId": txid.to_string(), "status": node.consensus.status(txid).as_str()})),
            Err(e) => reply::error(StatusCode::BAD_REQUEST, "InvalidResourceName", format!("{id:?} is not a transaction id: {e}")),
        },
        (_, _) => not_found(path),
    }
}

/// An app version in the versions list: its number, bundle digest, proposal, and the
/// transaction at which it took effect.
fn version_view(node: &Node, state: &State, v: &consort_gov::AppVersion) -> Value {
    let seqno = state.version_of(APP_VERSIONS, v.version.to_string().as_bytes());
    let txid = node.consensus.ledger().view_of(seqno).map(|view| TxId::new(view, seqno).to_string());
    json!({"version": v.version, "bundleDigest": v.bundle_digest, "proposalId": v.proposal_id, "seqno": seqno, "transactionId": txid})
}

fn not_found(path: &str) -> Reply {
    reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("Unknown path: /gov{path}"))
}

fn proposal_not_found(id: &str) -> Reply {
    reply::error(StatusCode::NOT_FOUND, "ProposalNotFound", format!("Could not find proposal {id}."))
}

fn read<T: serde::de::DeserializeOwned>(state: &State, map: &str, key: &str) -> Option<T> {
    state.get(map, key.as_bytes()).and_then(|v| serde_json::from_slice(v).ok())
}

fn raw(body: Vec<u8>, content_type: &'static str) -> Reply {
    let mut r = reply::empty(StatusCode::OK);
    *r.body_mut() = http_body_util::Full::new(hyper::body::Bytes::from(body));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn member_view(state: &State, id: &str) -> Value {
    let info: Value = read(state, MEMBERS_INFO, id).unwrap_or(Value::Null);
    let cert = state.get(MEMBERS_CERTS, id.as_bytes()).map(|c| String::from_utf8_lossy(c).into_owned());
    let key = state.get(MEMBERS_ENCRYPTION_KEYS, id.as_bytes()).map(|c| String::from_utf8_lossy(c).into_owned());
    let mut v = json!({
        "memberId": id, "status": info.get("status"), "memberData": info.get("member_data").cloned().unwrap_or(Value::Null),
        "certificate": cert, "recoveryRole": info.get("recovery_role"),
    });
    if let Some(key) = key {
        v["publicEncryptionKey"] = json!(key);
    }
    v
}

/// CCF's user description: `userData` is the whole `users.info` value (`{user_data}`), or null.
fn user_view(state: &State, id: &str, cert: &[u8]) -> Value {
    let info: Value = read(state, USERS_INFO, id).unwrap_or(Value::Null);
    json!({"userId": id, "certificate": String::from_utf8_lossy(cert), "userData": info})
}

/// `GET /gov/service/jwk`: JWT issuers and their signing keys (as PEM), as CCF shows them.
/// CCF's `/gov/service/join-policy`: the TEE rules governance recorded (Consort runs no TEE,
/// so they decide nothing here; see the constitution's TEE actions).
fn join_policy_view(state: &State) -> Value {
    let text = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
    let allowed = |map: &str| -> Vec<Value> {
        state
            .iter(map)
            .filter(|(_, v)| serde_json::from_slice::<Value>(v).is_ok_and(|s| s == "AllowedToJoin"))
            .map(|(k, _)| Value::String(text(k)))
            .collect()
    };
    let by_key = |map: &str| -> serde_json::Map<String, Value> {
        state.iter(map).map(|(k, v)| (text(k), serde_json::from_slice(v).unwrap_or(Value::Null))).collect()
    };
    json!({
        "sgx": {"measurements": allowed(NODES_CODE_IDS)},
        "virtual": {"measurements": allowed(NODES_VIRTUAL_MEASUREMENTS), "hostData": state.iter(NODES_VIRTUAL_HOST_DATA).map(|(k, _)| Value::String(text(k))).collect::<Vec<_>>()},
        "snp": {
            "measurements": allowed(NODES_SNP_MEASUREMENTS),
            "hostData": by_key(NODES_SNP_HOST_DATA),
            "uvmEndorsements": by_key(NODES_SNP_UVM_ENDORSEMENTS),
            "tcbVersions": by_key(NODES_SNP_TCB_VERSIONS),
        },
    })
}

fn jwk_view(state: &State) -> Value {
    use base64::Engine;
    let mut issuers = serde_json::Map::new();
    for (issuer, v) in state.iter(JWT_ISSUERS) {
        let meta: Value = serde_json::from_slice(v).unwrap_or(Value::Null);
        let mut view = json!({"autoRefresh": meta.get("auto_refresh").cloned().unwrap_or(json!(false))});
        if let Some(name) = meta.get("ca_cert_bundle_name").filter(|n| !n.is_null()) {
            view["caCertBundleName"] = name.clone();
        }
        issuers.insert(String::from_utf8_lossy(issuer).into_owned(), view);
    }
    let mut keys = serde_json::Map::new();
    for (kid, v) in state.iter(JWT_PUBLIC_SIGNING_KEYS) {
        let list: Vec<Value> = serde_json::from_slice(v).unwrap_or_default();
        let shown: Vec<Value> = list
            .iter()
            .map(|m| {
                let der = m["public_key"].as_str().and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
                let pem = der.map(|d| pem::encode(&pem::Pem::new("PUBLIC KEY", d)));
                json!({"publicKey": pem, "issuer": m["issuer"], "constraint": m.get("constraint").cloned().unwrap_or(Value::Null)})
            })
            .collect();
        keys.insert(String::from_utf8_lossy(kid).into_owned(), Value::Array(shown));
    }
    let bundles: serde_json::Map<String, Value> = state
        .iter(CA_CERT_BUNDLES)
        .map(|(name, v)| {
            let pem = serde_json::from_slice::<String>(v).unwrap_or_else(|_| String::from_utf8_lossy(v).into_owned());
            (String::from_utf8_lossy(name).into_owned(), Value::String(pem))
        })
        .collect();
    json!({"issuers": issuers, "keys": keys, "caCertBundles": bundles})
}

/// A node as CCF's `/gov/service/nodes` shows it: the certificate is the one governance
/// endorsed (`nodes.endorsed_certificates`), else the one it was given at its join.
fn node_view(state: &State, id: &str, value: &[u8]) -> Value {
    let info: Value = serde_json::from_slice(value).unwrap_or(Value::Null);
    let endorsed = state.get(NODES_ENDORSED_CERTIFICATES, id.as_bytes()).map(|c| Value::String(String::from_utf8_lossy(c).into_owned()));
    json!({"nodeId": id, "status": info.get("status"), "certificate": endorsed.or_else(|| info.get("cert").cloned()),
           "nodeData": info.get("node_data").cloned().unwrap_or(Value::Null), "retiredCommitted": false,
           "rpcAddress": info.get("rpc_address"), "nodeAddress": info.get("node_address")})
}

/// A signed governance write.
enum Write {
    Create,
    Ballot { proposal_id: String, member_id: String },
    Withdraw { proposal_id: String },
    Update { member_id: String },
    Ack { member_id: String },
}

impl Write {
    fn msg_type(&self) -> &'static str {
        match self {
            Write::Create => "proposal",
            Write::Ballot { .. } => "ballot",
            Write::Withdraw { .. } => "withdrawal",
            Write::Update { .. } => "state_digest",
            Write::Ack { .. } => "ack",
        }
    }

    /// Proposals, ballots and withdrawals need an active member; a new member acknowledges the
    /// state digest to become one.
    fn requirement(&self) -> MemberRequirement {
        match self {
            Write::Create | Write::Ballot { .. } | Write::Withdraw { .. } => MemberRequirement::Active,
            Write::Update { .. } | Write::Ack { .. } => MemberRequirement::Any,
        }
    }
}

fn gov_error(e: GovError) -> Reply {
    reply::error(StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), e.code, e.message)
}

/// Governance writes are COSE_Sign1 bodies: the refusal of any other content type.
fn not_cose(call: &Call<'_>) -> Option<Reply> {
    match crate::auth::media_type(call.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())) {
        Some("application/cose") => None,
        other => Some(reply::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedContentType",
            format!("governance writes are COSE_Sign1 bodies with content-type application/cose, got {other:?}"),
        )),
    }
}

async fn write(node: &Node, call: &Call<'_>, op: Write) -> Reply {
    if crate::forward::needed(node, call, true, false) {
        return crate::forward::to_primary(node, call).await;
    }
    if let Some(refused) = not_cose(call) {
        return refused;
    }
    let retries = node.config.js.conflict_retries_max;
    for _ in 0..=retries {
        let mut tx = node.consensus.store().begin();
        let req =
            match consort_gov::verify_signed_request(&mut tx, &call.body, op.msg_type(), op.requirement()).and_then(|r| fresh(node, r)) {
                Ok(r) => r,
                Err(e) => return gov_error(e),
            };
        let js = GovJs::new(node, node.js_options_at(tx.snapshot()));
        let outcome = run(node, &mut tx, &js, &req, &op).await;
        if js.broken.load(Ordering::Relaxed) {
            return reply::error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "the JS workers are busy or stopped; retry");
        }
        let answer = match outcome {
            Ok(a) => a,
            Err(e) => return gov_error(e),
        };
        let made = match add_rekey_secrets(&mut tx) {
            Ok(made) => made,
            Err(e) => return gov_error(e),
        };
        if let Err(e) = crate::recovery::reissue_if_needed(node, &mut tx, made) {
            return gov_error(e);
        }
        let txid = if tx.write_set().is_empty() {
            tx.read_txid()
        } else {
            match node.consensus.commit(&tx, None).await {
                Ok(txid) => txid,
                Err(CommitError::Conflict(_)) => continue,
                Err(e) => return reply::commit_failure(e),
            }
        };
        let r = match answer {
            Some(v) => reply::ok(&v),
            None => reply::empty(StatusCode::NO_CONTENT),
        };
        return reply::with_txid(r, txid);
    }
    reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "TransactionConflict",
        format!("the governance transaction conflicted with concurrent writes {} times; retry", retries + 1),
    )
}

/// `POST /gov/members/proposals:dry-run`: the same signed body as `:create`, from an active
/// member; the proposal is validated and applied on a transaction that is then dropped, and the
/// answer lists the writes it would have made. Nothing is committed or stored (not even the
/// request in the replay window), so it runs on whichever node is asked, on that node's state.
async fn dry_run(node: &Node, call: &Call<'_>) -> Reply {
    if let Some(refused) = not_cose(call) {
        return refused;
    }
    let mut tx = node.consensus.store().begin();
    let req =
        match consort_gov::verify_signed_request(&mut tx, &call.body, "proposal", MemberRequirement::Active).and_then(|r| fresh(node, r)) {
            Ok(r) => r,
            Err(e) => return gov_error(e),
        };
    let js = GovJs::new(node, node.js_options_at(tx.snapshot()));
    let marker = tx.read_txid().to_string();
    let outcome = consort_gov::dry_run_proposal(&mut tx, &js, &req, marker.as_bytes()).await;
    if js.broken.load(Ordering::Relaxed) {
        return reply::error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "the JS workers are busy or stopped; retry");
    }
    match outcome {
        Ok(mut answer) => {
            answer["stateAt"] = json!(tx.read_txid().to_string());
            // An app change is tried on the transactions the app ran last.
            if answer["applied"] == true && tx.write_set().maps.get(APP_VERSIONS).is_some_and(|w| !w.is_empty()) {
                answer["appReplay"] = proposed_app_replay(node, &mut tx).await;
            }
            reply::ok(&answer)
        }
        Err(e) => gov_error(e),
    }
}

/// The app a dry-run's transaction would leave deployed, run on the last recorded app
/// transactions of this node's ledger (`replay::try_proposed_app`).
async fn proposed_app_replay(node: &Node, tx: &mut Tx) -> Value {
    let bundle = app_versions::deployed_bundle(tx);
    let bundle = match consort_js::Bundle::from_json(bundle.to_string().as_bytes()) {
        Ok(b) => Arc::new(b),
        Err(e) => return json!({"error": format!("the proposed app: {e}")}),
    };
    let identity = &node.identity;
    let source = crate::replay::LedgerSource {
        ledger: node.config.ledger_dir(),
        snapshots: Some(node.config.snapshots().directory).filter(|d| d.is_dir()),
        service_cert_pem: identity.service_cert_pem.clone(),
        keys: crate::replay::node_keys(identity),
    };
    crate::replay::try_proposed_app(source, bundle, crate::replay::PROPOSED_APP_REPLAYS, &node.pool).await
}

/// The request, if its `created_at` is within the configured skew of this node's clock.
fn fresh(node: &Node, req: SignedRequest) -> Result<SignedRequest, GovError> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    consort_gov::check_created_at(&req, now, node.config.limits.governance_clock_skew_s)?;
    Ok(req)
}

/// If the constitution asked for a ledger rekey (`ccf.node.triggerLedgerRekey`), the new
/// secret goes into this same transaction, wrapped for each trusted node; each node starts
/// using it when it applies the transaction (`consort_kv::names::LEDGER_SECRETS`).
/// Returns the new secret.
fn add_rekey_secrets(tx: &mut Tx) -> Result<Option<consort_crypto::LedgerSecret>, GovError> {
    if tx.write_set().maps.get(consort_kv::LEDGER_REKEY_REQUESTS).is_none_or(|w| w.is_empty()) {
        return Ok(None);
    }
    let secret = consort_crypto::LedgerSecret::generate();
    let mut wrapped = Vec::new();
    for (node_id, info) in tx.entries(NODES_INFO) {
        let info: Value = serde_json::from_slice(&info).unwrap_or(Value::Null);
        if info["status"] != "Trusted" {
            continue;
        }
        let cert = consort_crypto::ParsedCert::from_pem(info["cert"].as_str().unwrap_or_default())
            .map_err(|e| GovError::new(500, "InternalError", format!("node {}: {e}", String::from_utf8_lossy(&node_id))))?;
        let sealed = consort_crypto::wrap_secret_for(&cert.public_key_der, &secret)
            .map_err(|e| GovError::new(500, "InternalError", format!("wrapping the ledger secret: {e}")))?;
        wrapped.push((node_id, sealed));
    }
    if wrapped.is_empty() {
        return Err(GovError::new(500, "InternalError", "a ledger rekey needs at least one trusted node"));
    }
    for (node_id, sealed) in wrapped {
        tx.put(consort_kv::names::LEDGER_SECRETS, node_id, sealed);
    }
    Ok(Some(secret))
}

/// `POST /gov/recovery/members/{memberId}:recover`: a member's share of the previous service's
/// recovery key (a `recovery_share` COSE_Sign1 of `{"share": base64}`). Answers how many shares
/// are in and how many are needed; at the threshold the recovery node restores the private
/// state and opens the service (`crate::recovery`). Shares that do not combine are discarded,
/// and the service keeps waiting.
async fn recovery_share(node: &Node, call: &Call<'_>, member_id: &str) -> Reply {
    if crate::forward::needed(node, call, true, false) {
        return crate::forward::to_primary(node, call).await;
    }
    if let Some(refused) = not_cose(call) {
        return refused;
    }
    use consort_gov::recovery as shares;
    for _ in 0..=node.config.js.conflict_retries_max {
        let mut tx = node.consensus.store().begin();
        let req = match consort_gov::verify_signed_request(&mut tx, &call.body, "recovery_share", MemberRequirement::Active)
            .and_then(|r| fresh(node, r))
        {
            Ok(r) => r,
            Err(e) => return gov_error(e),
        };
        if let Err(e) = consort_gov::signed_by(&req, member_id) {
            return gov_error(e);
        }
        let submitted = match shares::submit_share(&mut tx, member_id, &req.content) {
            Ok(s) => s,
            Err(e) => return gov_error(e),
        };
        let mut refused = None;
        if submitted.reached() {
            if node.recovery.files.is_none() {
                return reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "this primary cannot read the previous ledger: the node started with command \"recover\" must be the primary to finish the recovery",
                );
            }
            if let Err(reason) = shares::combine_submitted(&mut tx) {
                tx.clear(consort_kv::names::SUBMITTED_SHARES);
                refused = Some(reason);
            }
        }
        let txid = match node.consensus.commit(&tx, None).await {
            Ok(txid) => txid,
            Err(CommitError::Conflict(_)) => continue,
            Err(e) => return reply::commit_failure(e),
        };
        if let Some(reason) = refused {
            let message = format!(
                "The {} submitted recovery shares do not give the recovery key: {reason}. They were discarded; the service is still waiting \
                 for recovery shares, and each member submits its share again.",
                submitted.count
            );
            return reply::with_txid(reply::error(StatusCode::BAD_REQUEST, "RecoverySharesInvalid", message), txid);
        }
        let mut message = if submitted.full_key {
            "Full recovery key successfully submitted".to_owned()
        } else {
            format!("{}/{} recovery shares successfully submitted", submitted.count, submitted.threshold)
        };
        if submitted.reached() {
            message.push_str("\nEnd of recovery procedure initiated");
            node.recovery.kick();
        }
        let body = json!({
            "message": message,
            "submittedCount": submitted.count,
            "recoveryThreshold": submitted.threshold,
            "fullKeySubmitted": submitted.full_key,
        });
        return reply::with_txid(reply::ok(&body), txid);
    }
    reply::error(StatusCode::SERVICE_UNAVAILABLE, "TransactionConflict", "the recovery share conflicted with concurrent writes; retry")
}

async fn run(node: &Node, tx: &mut Tx, js: &GovJs<'_>, req: &SignedRequest, op: &Write) -> Result<Option<Value>, GovError> {
    match op {
        Write::Create => {
            let marker = tx.read_txid().to_string();
            consort_gov::create_proposal(tx, js, req, marker.as_bytes()).await.map(Some)
        }
        Write::Ballot { proposal_id, member_id } => consort_gov::submit_ballot(tx, js, req, proposal_id, member_id).await.map(Some),
        Write::Withdraw { proposal_id } => consort_gov::withdraw_proposal(tx, req, proposal_id),
        Write::Update { member_id } => {
            let root = node.consensus.ledger().last_signature().map(|s| s.root.clone());
            consort_gov::update_state_digest(tx, req, member_id, root).map(Some)
        }
        Write::Ack { member_id } => consort_gov::ack_state_digest(tx, req, member_id).map(|()| None),
    }
}

/// The constitution and ballots, run in the node's JS workers. Limits are the service's, each
/// raised to at least its default (as CCF does for governance), so that an app's tight limits
/// cannot stop governance.
struct GovJs<'a> {
    pool: &'a consort_js::JsPool,
    options: Arc<RuntimeOptions>,
    /// Set when the pool could not run a call: the transaction is then incomplete and must not
    /// be committed.
    broken: AtomicBool,
}

impl<'a> GovJs<'a> {
    fn new(node: &'a Node, service: Arc<RuntimeOptions>) -> GovJs<'a> {
        let d = RuntimeOptions::default();
        let options = RuntimeOptions {
            max_heap_bytes: service.max_heap_bytes.max(d.max_heap_bytes),
            max_stack_bytes: service.max_stack_bytes.max(d.max_stack_bytes),
            max_execution_time_ms: service.max_execution_time_ms.max(d.max_execution_time_ms),
            ..(*service).clone()
        };
        GovJs { pool: &node.pool, options: Arc::new(options), broken: AtomicBool::new(false) }
    }
}

impl Constitution for GovJs<'_> {
    async fn run(&self, tx: &mut Tx, source: &str, function: &str, args: Vec<Value>, phase: Phase) -> Result<Value, Failure> {
        let access = match phase {
            Phase::ReadOnly => KvAccess::GovReadOnly,
            Phase::Apply => KvAccess::GovApply,
        };
        let taken = std::mem::replace(tx, Tx::new(tx.snapshot().clone()));
        match self.pool.call(source.into(), function, args, taken, access, self.options.clone()).await {
            Ok(out) => {
                *tx = out.tx;
                out.result.map_err(|e: ScriptError| Failure { reason: e.to_string(), trace: None })
            }
            Err(e) => {
                self.broken.store(true, Ordering::Relaxed);
                Err(Failure { reason: e.to_string(), trace: None })
            }
        }
    }
}
