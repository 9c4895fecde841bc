//! Disaster recovery on the node (SPEC §9), in CCF's steps:
//!
//! 1. [`prepare`]: a node started with `command.type = "recover"` reads the previous ledger
//!    (`consort_consensus::recovery`), makes a new service identity, and starts a new ledger
//!    after the previous one's last signature.
//! 2. [`open_recovery`]: its first transaction makes the service `Recovering` under the new
//!    identity, endorses the previous identity, retires the previous nodes and trusts itself.
//!    Other nodes join it the usual way. Members pass `transition_service_to_open` (with the
//!    previous identity), which makes it `WaitingForRecoveryShares`.
//! 3. Members submit the shares the previous service issued them (`/gov/recovery/...`, in
//!    [`crate::gov`]). At the threshold, [`finish`] opens the previous ledger secrets, reads
//!    the previous private maps and writes them in transactions of the new service, then opens
//!    it (`recovery_count` + 1) and issues shares of the new service's secrets.
//!
//! Between 1 and 3 only the recovery node can read the previous files; if it is lost before the
//! service opens, the recovery starts again from the previous files (never modified).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use consort_consensus::CommitError;
use consort_crypto::LedgerSecret;
use consort_gov::recovery::{self as shares, RecoverySecret};
use consort_gov::GovError;
use consort_kv::{Tx, SINGLETON_KEY};
use serde_json::{json, Value};

use crate::config::{NodeConfig, RecoverConfig};
use crate::context::Node;
use crate::identity::NodeIdentity;
use crate::recovery_state::PREVIOUS_FILES;
use crate::reply;
use consort_kv::names::{NODES_INFO, SERVICE_INFO};

/// Private keys and values written back per transaction of the new service (bounded so that a
/// transaction, a Raft entry and a ledger record stay small).
const RESTORE_BATCH_BYTES: usize = 1024 * 1024;

/// Step 1: reads and checks the previous ledger, makes the new identity, and leaves the
/// previous public state as the snapshot the new ledger starts after. Nothing is written
/// before the previous ledger has been read whole, so a failed recovery can simply be retried.
/// Meanwhile the node answers on `listener`: `/node/state` says `ReadingPublicLedger` (with the
/// last signature replayed so far), anything else 503.
pub async fn prepare(config: &NodeConfig, r: &RecoverConfig, listener: &tokio::net::TcpListener) -> Result<NodeIdentity, String> {
    let ledger_dir = config.ledger_dir();
    if !consort_ledger::files::holds_no_chunk(&ledger_dir) {
        return Err(format!(
            "{} already holds a ledger: a recovery starts a new service in a fresh directory (the previous ledger is command.previous_ledger)",
            ledger_dir.display()
        ));
    }
    let snapshot_dir = config.snapshots().directory;
    if !consort_consensus::snapshot::list(&snapshot_dir).is_empty() {
        return Err(format!("{} already holds snapshots: a recovery starts in a fresh snapshot directory", snapshot_dir.display()));
    }
    let previous_cert = std::fs::read_to_string(&r.previous_service_identity)
        .map_err(|e| format!("the previous service certificate {}: {e}", r.previous_service_identity.display()))?;
    consort_crypto::ParsedCert::from_pem(&previous_cert)
        .map_err(|e| format!("the previous service certificate {}: {e}", r.previous_service_identity.display()))?;
    let identity = NodeIdentity::generate(&config.hostnames)?;
    let (ledger, snapshots) = (r.previous_ledger.clone(), r.previous_snapshots.clone());
    let progress = Arc::new(AtomicU64::new(0));
    let started = std::time::Instant::now();
    let reading = {
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || {
            consort_consensus::recovery::read_previous(&ledger, snapshots.as_deref(), &previous_cert, &progress)
        })
    };
    let reply = reading_reply(identity.node_id.clone(), progress);
    let previous = crate::standin::answer_while(listener, &identity, &config.limits, reply, reading)
        .await?
        .map_err(|e| format!("reading the previous ledger: {e}"))?
        .map_err(|e| e.to_string())?;
    tracing::info!(
        "read the previous ledger in {:.2?}: {} entries replayed{} up to the signature at {}; {} uncommitted entries after it dropped",
        started.elapsed(),
        previous.replayed,
        previous.files.snapshot.as_ref().map_or(String::new(), |p| format!(" after the snapshot {}", p.display())),
        previous.files.last,
        previous.dropped
    );
    let raft_id = consort_consensus::raft_node_id(&identity.node_id);
    consort_consensus::recovery::write_start_snapshot(&snapshot_dir, &previous, (raft_id, &config.node_address), &identity.ledger_secret)
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&config.directory).map_err(|e| format!("{}: {e}", config.directory.display()))?;
    let record = serde_json::to_vec_pretty(&previous.files).expect("paths serialise");
    std::fs::write(config.directory.join(PREVIOUS_FILES), record).map_err(|e| format!("{}: {e}", config.directory.display()))?;
    identity.save(&config.directory)?;
    Ok(identity)
}

/// What the node answers while it reads the previous ledger (CCF's `ReadingPublicLedger`).
fn reading_reply(node_id: String, progress: Arc<AtomicU64>) -> crate::standin::StandInReply {
    Arc::new(move |method, path| {
        let seqno = progress.load(Ordering::Relaxed);
        if method == hyper::Method::GET && path == "/node/state" {
            return reply::ok(&json!({"node_id": node_id, "state": "ReadingPublicLedger", "last_signed_seqno": seqno, "startup_seqno": 0}));
        }
        reply::error(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!("this node is reading the previous service's ledger (replayed up to seqno {seqno} so far); retry once /node/state says otherwise"),
        )
    })
}

/// Step 2: the new service's first transaction, once (a restarted recovery node finds it done).
pub async fn open_recovery(
    consensus: &consort_consensus::Consensus,
    identity: &NodeIdentity,
    (rpc_address, node_address): (&str, &str),
) -> Result<(), String> {
    let mut tx = consensus.store().begin();
    let mut info: Value = tx.get(SERVICE_INFO, &SINGLETON_KEY).and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or(Value::Null);
    let previous_cert = info["cert"].as_str().unwrap_or_default().to_owned();
    if previous_cert.trim() == identity.service_cert_pem.trim() {
        return Ok(());
    }
    let endorsement = consort_crypto::endorse_previous_identity(&previous_cert, &identity.service_cert_pem, &identity.service_key)
        .map_err(|e| format!("endorsing the previous service identity: {e}"))?;
    let mut endorsements: Vec<String> = tx
        .get(consort_kv::names::PREVIOUS_IDENTITY_ENDORSEMENTS, &SINGLETON_KEY)
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default();
    endorsements.insert(0, endorsement);
    consort_gov::put_json(&mut tx, consort_kv::names::PREVIOUS_IDENTITY_ENDORSEMENTS, &SINGLETON_KEY, &endorsements);
    info["status"] = json!("Recovering");
    info["cert"] = json!(identity.service_cert_pem);
    info["previous_service_identity"] = json!(previous_cert);
    consort_gov::put_json(&mut tx, SERVICE_INFO, &SINGLETON_KEY, &info);
    for (id, value) in tx.entries(NODES_INFO) {
        let mut node: Value = serde_json::from_slice(&value).unwrap_or(Value::Null);
        if node["status"] != "Retired" {
            node["status"] = json!("Retired");
            consort_gov::put_json(&mut tx, NODES_INFO, &id, &node);
        }
    }
    consort_gov::put_json(
        &mut tx,
        NODES_INFO,
        identity.node_id.as_bytes(),
        &json!({"status": "Trusted", "cert": identity.node_cert_pem, "rpc_address": rpc_address, "node_address": node_address}),
    );
    let txid = consensus.commit(&tx, None).await.map_err(|e| format!("the recovery transaction: {e}"))?;
    tracing::info!("recovering the service under a new identity at {txid}; members open it with transition_service_to_open");
    Ok(())
}

/// The ledger secrets the service has, as shares protect them; `made_now` is a secret this
/// transaction makes (a rekey), which applies after it.
fn service_secrets(node: &Node, made_now: Option<LedgerSecret>) -> Vec<RecoverySecret> {
    let mut out: Vec<RecoverySecret> =
        node.consensus.all_ledger_secrets().into_iter().map(|(from, secret)| RecoverySecret { from: Some(from), secret }).collect();
    out.extend(made_now.map(|secret| RecoverySecret { from: None, secret }));
    out
}

/// Issues new shares in a governance transaction that changes who holds them, the threshold
/// or the ledger secrets (CCF re-shares in the same transaction). While the service recovers,
/// the previous service's shares stay as they are: they are what members submit.
pub fn reissue_if_needed(node: &Node, tx: &mut Tx, made_now: Option<LedgerSecret>) -> Result<(), GovError> {
    if !shares::reissue_needed(tx.write_set()) {
        return Ok(());
    }
    let status = tx.get(SERVICE_INFO, &SINGLETON_KEY).and_then(|v| serde_json::from_slice::<Value>(&v).ok()).map(|i| i["status"].clone());
    if status.is_some_and(|s| s == "Recovering" || s == "WaitingForRecoveryShares") {
        return Ok(());
    }
    let holders = shares::issue_shares(tx, &service_secrets(node, made_now))?;
    if holders == 0 {
        tracing::warn!("no active member has a recovery role: this service cannot be recovered from its ledger if all its nodes are lost");
    }
    Ok(())
}

/// How often the finisher looks for enough shares without being woken (it is woken when a
/// submission reaches the threshold; this also covers a restart with the shares already in).
const FINISHER_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs step 3 on the recovery node once the submitted shares are enough, until the service
/// is open (then it ends) or the node stops.
pub async fn finisher(node: std::sync::Weak<Node>) {
    loop {
        let Some(node) = node.upgrade() else { return };
        if node.recovery.files.is_none() {
            return;
        }
        let outcome = finish(&node).await;
        node.recovery.running.store(false, Ordering::Release);
        match outcome {
            Ok(Finish::Open) => {
                *node.recovery.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
                return;
            }
            Ok(Finish::NotYet) => {}
            Err(e) => {
                tracing::error!("the private recovery failed: {e}");
                *node.recovery.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        }
        let _ = tokio::time::timeout(FINISHER_POLL, node.recovery.wake.notified()).await;
    }
}

enum Finish {
    /// Not waiting for shares yet, or not enough of them.
    NotYet,
    /// The service is open (now, or it already was).
    Open,
}

/// Step 3.
async fn finish(node: &Node) -> Result<Finish, String> {
    let files = node.recovery.files.clone().ok_or("this node was not started with a previous ledger")?;
    let mut tx = node.consensus.store().begin();
    let status = tx.get(SERVICE_INFO, &SINGLETON_KEY).and_then(|v| serde_json::from_slice::<Value>(&v).ok()).map(|i| i["status"].clone());
    match status.as_ref().and_then(|s| s.as_str()) {
        Some("WaitingForRecoveryShares") => {}
        Some("Open") => return Ok(Finish::Open),
        _ => return Ok(Finish::NotYet),
    }
    let Ok(secrets) = shares::combine_submitted(&mut tx) else { return Ok(Finish::NotYet) };
    node.recovery.running.store(true, Ordering::Release);
    tracing::info!("recovery shares open {} ledger secrets of the previous service; reading its private maps", secrets.len());
    let started = std::time::Instant::now();
    let private =
        tokio::task::spawn_blocking(move || files.private_state(&secrets)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let keys: usize = private.values().map(|m| m.len()).sum();
    tracing::info!("read {keys} private keys in {} maps in {:.2?}; writing them to the new service", private.len(), started.elapsed());
    let mut batch: Vec<(&str, &[u8], &[u8])> = Vec::new();
    let mut bytes = 0;
    for (map, entries) in &private {
        for (k, v) in entries {
            batch.push((map, k, v));
            bytes += k.len() + v.len();
            if bytes >= RESTORE_BATCH_BYTES {
                commit_restore(node, &std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
        }
    }
    if !batch.is_empty() {
        commit_restore(node, &batch).await?;
    }
    for _ in 0..=node.config.js.conflict_retries_max {
        let mut tx = node.consensus.store().begin();
        let mut info: Value = tx.get(SERVICE_INFO, &SINGLETON_KEY).and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or(Value::Null);
        info["status"] = json!("Open");
        info["recovery_count"] = json!(info["recovery_count"].as_u64().unwrap_or(0) + 1);
        consort_gov::put_json(&mut tx, SERVICE_INFO, &SINGLETON_KEY, &info);
        tx.clear(consort_kv::names::SUBMITTED_SHARES);
        shares::issue_shares(&mut tx, &service_secrets(node, None)).map_err(|e| e.to_string())?;
        match node.consensus.commit(&tx, None).await {
            Ok(txid) => {
                tracing::info!("the recovered service opened at {txid}");
                return Ok(Finish::Open);
            }
            Err(CommitError::Conflict(_)) => continue,
            Err(e) => return Err(format!("opening the recovered service: {e}")),
        }
    }
    Err("opening the recovered service kept conflicting".into())
}

async fn commit_restore(node: &Node, batch: &[(&str, &[u8], &[u8])]) -> Result<(), String> {
    for _ in 0..=node.config.js.conflict_retries_max {
        let mut tx = node.consensus.store().begin();
        for (map, k, v) in batch {
            tx.put(map, k.to_vec(), v.to_vec());
        }
        match node.consensus.commit(&tx, None).await {
            Ok(_) => return Ok(()),
            Err(CommitError::Conflict(_)) => continue,
            Err(e) => return Err(format!("writing the restored private maps: {e}")),
        }
    }
    Err("writing the restored private maps kept conflicting".into())
}
