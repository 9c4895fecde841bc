//! Joining a network. The joining node calls `POST /node/join` on a node of the network over
//! TLS, presenting a self-signed certificate of its own key (which proves it holds the key its
//! id comes from). The primary records it in `public:ccf.gov.nodes.info` with a certificate
//! endorsed by the service identity: `Trusted` at once while the service is `Opening`,
//! `Pending` once it is open (members then pass `transition_node_to_trusted`). A trusted
//! node's answer carries what it needs to take part: its endorsed certificate, the service key
//! and the ledger secrets. The primary adds trusted nodes as Raft voters ([`reconcile`]).

use std::time::Duration;

use consort_consensus::CommitError;
use consort_crypto::{node_id_of_public_key, LedgerSecret, NodeKey, ParsedCert};
use consort_kv::SINGLETON_KEY;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::call::Call;
use crate::config::{JoinConfig, NodeConfig};
use crate::context::Node;
use crate::identity::{JoinGrant, NodeIdentity};
use crate::reply::{self, Reply};
use consort_kv::names::{NODES_ENDORSED_CERTIFICATES, NODES_INFO, SERVICE_INFO};

/// Hostnames a joining node may ask to have in its certificate.
const HOSTNAMES_MAX: usize = 16;
/// Nodes waiting for the members' vote at once; further join requests are refused until some
/// are trusted or removed (anyone with a key can ask to join).
const PENDING_NODES_MAX: usize = 64;

#[derive(Debug, Serialize, Deserialize)]
struct JoinRequest {
    rpc_address: String,
    node_address: String,
    hostnames: Vec<String>,
    /// The node's certificate signing request (PEM), as CCF nodes send it: governance endorses
    /// it (`ccf.network.generateEndorsedCertificate`) for the validity period members choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certificate_signing_request: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct JoinAnswer {
    node_id: String,
    status: String,
    #[serde(default)]
    node_certificate: Option<String>,
    #[serde(default)]
    service_key: Option<String>,
    #[serde(default)]
    ledger_secret: Option<String>,
    #[serde(default)]
    later_ledger_secrets: Vec<(u64, String)>,
}

/// `POST /node/join`, answered by the primary.
pub async fn handle(node: &Node, call: &Call<'_>) -> Reply {
    if crate::forward::needed(node, call, true, false) {
        return crate::forward::to_primary(node, call).await;
    }
    let Some(cert) = call.peer_cert else {
        return reply::error(StatusCode::UNAUTHORIZED, "Unauthorized", "a joining node presents a certificate of its own key over TLS");
    };
    let spki = match ParsedCert::from_der(cert.der()) {
        Ok(c) => c.public_key_der,
        Err(e) => return reply::error(StatusCode::UNAUTHORIZED, "Unauthorized", format!("the TLS client certificate: {e}")),
    };
    let node_id = node_id_of_public_key(&spki);
    let req: JoinRequest = match serde_json::from_slice(&call.body) {
        Ok(r) => r,
        Err(e) => {
            return reply::error(
                StatusCode::BAD_REQUEST,
                "InvalidInput",
                format!("a join request is {{rpc_address, node_address, hostnames}}: {e}"),
            )
        }
    };
    if let Some(csr) = &req.certificate_signing_request {
        match consort_crypto::csr_public_key(csr) {
            Ok(key) if key == spki => {}
            Ok(_) => {
                return reply::error(
                    StatusCode::BAD_REQUEST,
                    "InvalidInput",
                    "the certificate signing request is not for the TLS client certificate's key",
                )
            }
            Err(e) => return reply::error(StatusCode::BAD_REQUEST, "InvalidInput", e.to_string()),
        }
    }
    if req.hostnames.len() > HOSTNAMES_MAX {
        return reply::error(StatusCode::BAD_REQUEST, "InvalidInput", format!("at most {HOSTNAMES_MAX} hostnames"));
    }
    if !node.consensus.is_primary() {
        return reply::error(StatusCode::SERVICE_UNAVAILABLE, "NotPrimary", "join through the primary (see /node/network)");
    }
    for _ in 0..=node.config.js.conflict_retries_max {
        let mut tx = node.consensus.store().begin();
        let known: Option<Value> = tx.get(NODES_INFO, node_id.as_bytes()).and_then(|v| serde_json::from_slice(&v).ok());
        let info = match known {
            Some(info) => info,
            None => {
                let pending = tx
                    .entries(NODES_INFO)
                    .iter()
                    .filter(|(_, v)| serde_json::from_slice::<Value>(v).is_ok_and(|i| i["status"] == "Pending"))
                    .count();
                if pending >= PENDING_NODES_MAX {
                    return reply::error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "TooManyPendingNodes",
                        format!("{pending} nodes already wait for the members' vote; retry later"),
                    );
                }
                let service: Value = tx.get(SERVICE_INFO, &SINGLETON_KEY).and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default();
                let status = if service["status"] == "Open" { "Pending" } else { "Trusted" };
                let cert = match consort_crypto::endorse_node_cert(
                    &spki,
                    "Consort Node",
                    &req.hostnames,
                    &node.identity.service_cert_pem,
                    &node.identity.service_key,
                ) {
                    Ok(c) => c,
                    Err(e) => return reply::error(StatusCode::BAD_REQUEST, "InvalidInput", format!("endorsing the node: {e}")),
                };
                let mut info = json!({"status": status, "cert": cert, "rpc_address": req.rpc_address, "node_address": req.node_address,
                    "public_key": consort_crypto::public_key_pem(&spki)});
                if let Some(csr) = &req.certificate_signing_request {
                    info["certificate_signing_request"] = json!(csr);
                }
                consort_gov::put_json(&mut tx, NODES_INFO, node_id.as_bytes(), &info);
                if status == "Trusted" {
                    tx.put(NODES_ENDORSED_CERTIFICATES, node_id.clone().into_bytes(), cert.clone().into_bytes());
                }
                match node.consensus.commit(&tx, None).await {
                    Ok(txid) => tracing::info!("node {node_id} asked to join: {status} at {txid}"),
                    Err(CommitError::Conflict(_)) => continue,
                    Err(e) => return reply::commit_failure(e),
                }
                info
            }
        };
        let status = info["status"].as_str().unwrap_or_default().to_owned();
        let mut answer = JoinAnswer {
            node_id: node_id.clone(),
            status: status.clone(),
            node_certificate: None,
            service_key: None,
            ledger_secret: None,
            later_ledger_secrets: Vec::new(),
        };
        match status.as_str() {
            "Trusted" => {
                // The certificate governance endorsed when it trusted the node, if it did.
                let endorsed = node
                    .consensus
                    .store()
                    .snapshot()
                    .get(NODES_ENDORSED_CERTIFICATES, node_id.as_bytes())
                    .map(|c| String::from_utf8_lossy(c).into_owned());
                answer.node_certificate = endorsed.or_else(|| info["cert"].as_str().map(str::to_owned));
                answer.service_key = Some(node.identity.service_key.to_pem());
                answer.ledger_secret = Some(hex::encode(node.identity.ledger_secret.as_bytes()));
                answer.later_ledger_secrets =
                    node.consensus.later_ledger_secrets().iter().map(|(from, s)| (*from, hex::encode(s.as_bytes()))).collect();
            }
            "Pending" => {}
            other => return reply::error(StatusCode::FORBIDDEN, "NodeNotTrusted", format!("node {node_id} is {other}")),
        }
        return reply::ok(&serde_json::to_value(&answer).expect("a join answer serialises"));
    }
    reply::error(StatusCode::SERVICE_UNAVAILABLE, "TransactionConflict", "the join conflicted with concurrent writes; retry")
}

/// The joining side: asks `join.target_rpc_address` until this node is trusted (or the timeout
/// passes), then writes its identity into `config.directory`.
pub async fn join(config: &NodeConfig, join: &JoinConfig, rpc_address: &str) -> Result<NodeIdentity, String> {
    let service_cert_pem = std::fs::read_to_string(&join.service_certificate)
        .map_err(|e| format!("reading the service certificate {}: {e}", join.service_certificate.display()))?;
    let node_key = NodeKey::generate();
    let own_cert = consort_crypto::self_signed_service_cert(&node_key, "Consort joining node").map_err(|e| e.to_string())?;
    let ca = reqwest::Certificate::from_pem(service_cert_pem.as_bytes()).map_err(|e| format!("the service certificate: {e}"))?;
    let identity = reqwest::Identity::from_pem(format!("{own_cert}{}", node_key.to_pem()).as_bytes()).map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .identity(identity)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("HTTPS client: {e}"))?;
    let url = format!("https://{}/node/join", join.target_rpc_address);
    let csr = consort_crypto::node_csr(&node_key, "Consort Node", &config.hostnames).map_err(|e| e.to_string())?;
    let body = JoinRequest {
        rpc_address: rpc_address.to_owned(),
        node_address: config.node_address.clone(),
        hostnames: config.hostnames.clone(),
        certificate_signing_request: Some(csr),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(join.timeout_ms);
    let mut told_pending = false;
    let answer = loop {
        let last = match client.post(&url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {
                let answer: JoinAnswer = r.json().await.map_err(|e| format!("{url}: the answer: {e}"))?;
                if answer.status == "Trusted" {
                    break answer;
                }
                if !told_pending {
                    tracing::info!(
                        "node {} is {} in the network: members trust it with transition_node_to_trusted",
                        answer.node_id,
                        answer.status
                    );
                    told_pending = true;
                }
                format!("still {}", answer.status)
            }
            Ok(r) if r.status() == StatusCode::FORBIDDEN || r.status() == StatusCode::BAD_REQUEST => {
                return Err(format!("{url} refused the join: {}", r.text().await.unwrap_or_default()));
            }
            Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("not trusted within {} ms ({last})", join.timeout_ms));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let missing = |what: &str| format!("the join answer has no {what}");
    let secret_hex = answer.ledger_secret.ok_or_else(|| missing("ledger_secret"))?;
    let raw: [u8; 32] = hex::decode(secret_hex).ok().and_then(|v| v.try_into().ok()).ok_or("the ledger secret is not 32 hex bytes")?;
    let grant = JoinGrant {
        node_cert_pem: answer.node_certificate.ok_or_else(|| missing("node_certificate"))?,
        service_key_pem: answer.service_key.ok_or_else(|| missing("service_key"))?,
        ledger_secret: LedgerSecret::from_bytes(raw),
        later_ledger_secrets: crate::identity::secrets_from_hex(answer.later_ledger_secrets)?,
    };
    if join.fetch_recent_snapshot {
        fetch_snapshot(config, &client, &join.target_rpc_address).await;
    }
    NodeIdentity::create_joined(&config.directory, node_key, &service_cert_pem, grant)
}

/// A fresh joining node with no snapshot of its own fetches the target's newest one into its
/// snapshot directory, and starts from it (consensus opens it with the ledger secrets, which
/// also authenticates it). Without one it replays the primary's whole ledger, so a failure
/// here is only logged.
async fn fetch_snapshot(config: &NodeConfig, client: &reqwest::Client, target: &str) {
    use consort_consensus::snapshot;
    let dir = config.snapshots().directory;
    let ledger_empty = consort_ledger::files::holds_no_chunk(&config.ledger_dir());
    if !ledger_empty || !snapshot::list(&dir).is_empty() {
        return;
    }
    let url = format!("https://{target}/node/snapshot");
    let fetched = async {
        let r = client.get(&url).send().await.map_err(|e| e.to_string())?;
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(format!("{}: {}", r.status(), r.text().await.unwrap_or_default()));
        }
        if r.content_length().is_none_or(|n| n > snapshot::SNAPSHOT_BYTES_MAX) {
            return Err(format!("no length, or more than {} bytes", snapshot::SNAPSHOT_BYTES_MAX));
        }
        let bytes = r.bytes().await.map_err(|e| e.to_string())?;
        snapshot::store_fetched(&dir, &bytes).map(Some).map_err(|e| e.to_string())
    };
    match fetched.await {
        Ok(Some(path)) => tracing::info!("fetched the snapshot {} from {target}; starting from it", path.display()),
        Ok(None) => tracing::info!("{target} has no snapshot yet: catching up from the ledger"),
        Err(e) => tracing::warn!("fetching a snapshot from {url}: {e}; catching up from the ledger instead"),
    }
}

/// On the primary: every trusted node with an address becomes a Raft voter (retried until it
/// does), and retired nodes stop being voters. Runs until the node stops.
pub async fn reconcile(node: std::sync::Weak<Node>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(node) = node.upgrade() else { return };
        if !node.consensus.is_primary() {
            continue;
        }
        let voters = node.consensus.voters();
        let state = node.consensus.store().snapshot();
        // Trusted nodes that are not voters yet, and retired ones that still are (never this
        // node itself: a retired primary keeps serving until another primary takes over).
        let (mut wanted, mut retired) = (Vec::new(), Vec::new());
        for (id, v) in state.iter(NODES_INFO) {
            let Ok(info) = serde_json::from_slice::<Value>(v) else { continue };
            let id = String::from_utf8_lossy(id).into_owned();
            let voter = voters.contains(&consort_consensus::raft_node_id(&id));
            match (info["status"].as_str(), info["node_address"].as_str()) {
                (Some("Trusted"), Some(address)) if !voter => wanted.push((id, address.to_owned())),
                (Some("Retired"), _) if voter && id != node.node_id() => retired.push(id),
                _ => {}
            }
        }
        for (id, address) in wanted {
            match node.consensus.add_voter(&id, &address, Duration::from_secs(10)).await {
                Ok(()) => tracing::info!("node {id} at {address} is now a voter"),
                Err(e) => tracing::warn!("{e}; retrying"),
            }
        }
        for id in retired {
            match node.consensus.remove_voter(&id).await {
                Ok(()) => tracing::info!("node {id} is retired and no longer a voter"),
                Err(e) => tracing::warn!("{e}; retrying"),
            }
        }
    }
}
