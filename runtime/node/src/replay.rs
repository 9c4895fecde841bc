//! Running a committed app transaction again (issue 23): the state just before it, read back
//! from the ledger ([`consort_consensus::replay`]), its recorded inputs, and the app that ran
//! it (or another recorded version, or a bundle from a directory), run once in the same engine
//! with the recorded time and random values; what it answers and writes, next to what the
//! ledger recorded. The files are only read; nothing is written anywhere.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use consort_consensus::replay::{self, Before, Keys, ReplayError};
use consort_js::{
    Bundle, HistoricalState, JsHost, JsPool, JsResponse, KvAccess, RecordedInputs, ResponseSummary, RuntimeOptions, ScriptError, SourceMode,
};
use consort_kv::names::{APP_VERSIONS, JS_RUNTIME_OPTIONS};
use consort_kv::{State, Store, TxId, WriteDifference, WriteSet, SINGLETON_KEY};
use consort_ledger::AppRef;

use crate::identity::NodeIdentity;

/// Which app to run the transaction with.
pub enum AppChoice {
    /// The version that ran it, as its ledger entry names it.
    Recorded,
    /// Another recorded version (earlier or later).
    Version(u64),
    /// A bundle from outside the ledger (`--app DIR`, a proposed app): a fix tried on the old
    /// inputs.
    Bundle { bundle: Arc<Bundle>, from: String },
}

/// Which transaction to replay, and where its ledger is.
pub struct ReplayJob {
    pub ledger: PathBuf,
    pub snapshots: Option<PathBuf>,
    pub secrets: SecretsFrom,
    pub txid: TxId,
}

/// What opens the ledger.
pub enum SecretsFrom {
    /// The directory of a node of the service: its key and ledger secrets (and its copy of the
    /// service certificate, which the ledger is checked under).
    NodeDir(PathBuf),
    /// Members' RSA encryption keys (PEM), whose shares in the ledger give every ledger secret;
    /// the ledger is checked under `service_cert_pem`.
    RecoveryKeys { service_cert_pem: String, encryption_keys: Vec<String> },
}

/// A transaction run again.
pub struct Replayed {
    pub txid: TxId,
    /// The app version the ledger says ran the transaction.
    pub recorded_app: AppRef,
    /// What ran now: `app version N (bundle digest …)` or the directory the bundle came from.
    pub ran: String,
    pub response: Result<JsResponse, ScriptError>,
    pub recorded_response: ResponseSummary,
    /// What the run wrote (it is not committed), and what the ledger recorded.
    pub writes: WriteSet,
    pub recorded_writes: WriteSet,
    /// Keys the two write differently (left: recorded, right: this run).
    pub differences: Vec<WriteDifference>,
    /// Time and random values the run drew beyond the recording (a modified app drawing more).
    pub beyond_recording: usize,
    /// Where the state came from: the snapshot (if any) and entries applied after it.
    pub snapshot: Option<PathBuf>,
    pub replayed_entries: u64,
}

impl Replayed {
    /// Whether the run answered as recorded (status and body).
    pub fn same_response(&self) -> bool {
        self.response.as_ref().is_ok_and(|r| ResponseSummary::of(r) == self.recorded_response)
    }
}

/// Why a transaction cannot be replayed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayFailure {
    /// The node directory does not hold a node's key and secrets.
    #[error("the node directory {0}: {1}")]
    NodeDir(PathBuf, String),
    #[error(transparent)]
    Ledger(#[from] ReplayError),
    /// The transaction ran with input recording off (or before it existed).
    #[error("transaction {0} has no recorded inputs (recording was off when it ran, or it predates recording): it cannot be replayed")]
    NotRecorded(TxId),
    #[error("{0}")]
    Inputs(String),
    /// The recovery keys given do not give the ledger secrets.
    #[error("recovery shares: {0}")]
    Shares(String),
    /// The app asked for is not a recorded version, or cannot run.
    #[error("{0}")]
    App(String),
}

/// Reads the ledger up to the transaction `job` names, with the secrets of the node directory
/// it names (blocking: reads and checks the whole ledger).
pub fn read(job: &ReplayJob) -> Result<Before, ReplayFailure> {
    let (keys, service_cert_pem) = match &job.secrets {
        SecretsFrom::NodeDir(dir) => {
            let identity = NodeIdentity::load(dir).map_err(|e| ReplayFailure::NodeDir(dir.clone(), e))?;
            (node_keys(&identity), identity.service_cert_pem)
        }
        SecretsFrom::RecoveryKeys { service_cert_pem, encryption_keys } => {
            (keys_from_recovery(&job.ledger, job.snapshots.as_deref(), service_cert_pem, encryption_keys)?, service_cert_pem.clone())
        }
    };
    Ok(replay::read_before(&job.ledger, job.snapshots.as_deref(), &service_cert_pem, keys, job.txid)?)
}

/// The ledger secrets that members' recovery keys open (instead of a node's directory): the
/// ledger's public state at its last signature holds the shares issued last, each encrypted to
/// a member's RSA key, and the sealed list of every ledger secret the service has had. Each
/// `encryption_keys` PEM opens its member's share; together they must reach the threshold (or
/// include an Owner's whole key). Blocking: reads and checks the whole ledger.
pub fn keys_from_recovery(
    ledger: &Path,
    snapshots: Option<&Path>,
    service_cert_pem: &str,
    encryption_keys: &[String],
) -> Result<Keys, ReplayFailure> {
    let shares = |e: String| ReplayFailure::Shares(e);
    let progress = std::sync::atomic::AtomicU64::new(0);
    let public = consort_consensus::recovery::read_previous(ledger, snapshots, service_cert_pem, &progress)
        .map_err(|e| ReplayFailure::Ledger(ReplayError::Ledger(e.to_string())))?;
    let store = Store::new(public.state);
    let mut tx = store.begin();
    let issued: Vec<(Vec<u8>, Vec<u8>)> =
        tx.entries(consort_kv::names::RECOVERY_SHARES).into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    if issued.is_empty() {
        return Err(shares("this ledger holds no recovery shares (its service had no active recovery member)".into()));
    }
    for (n, pem) in encryption_keys.iter().enumerate() {
        let opened =
            issued.iter().find_map(|(member, encrypted)| Some((member, consort_crypto::recovery::decrypt_share(pem, encrypted).ok()?)));
        let (member, plain) = opened.ok_or_else(|| shares(format!("recovery key {} opens none of the shares this ledger holds", n + 1)))?;
        let share =
            consort_gov::recovery::Share::decode(&plain).map_err(|e| shares(format!("the share recovery key {} opens: {e}", n + 1)))?;
        tx.put(consort_kv::names::SUBMITTED_SHARES, member.clone(), share.encode());
    }
    let mut secrets = consort_gov::recovery::combine_submitted(&mut tx).map_err(shares)?.into_iter();
    let (_, first) = secrets.next().ok_or_else(|| shares("the shares open an empty list of ledger secrets".into()))?;
    Ok(Keys { first, later: secrets.collect(), node: None })
}

/// Runs recorded transactions again, one at a time: on a JS thread of this process (`consort
/// replay`), or in a node's own JS pool (a dry-run, so that the proposed app runs where the
/// node's scripts run: in worker processes by default).
pub struct Replayer<'a> {
    pool: Pool<'a>,
}

enum Pool<'a> {
    /// A pool of one thread whose host answers for the ledger being replayed.
    Own(JsPool, Arc<ReplayHost>),
    /// A node's pool: its host answers for the node (`ccf.consensus` sees the node as it is).
    Node(&'a JsPool),
}

impl Default for Replayer<'_> {
    fn default() -> Self {
        let host = Arc::new(ReplayHost { last: std::sync::Mutex::new(TxId::default()) });
        Replayer { pool: Pool::Own(JsPool::threads(1, 1, host.clone()), host) }
    }
}

impl<'a> Replayer<'a> {
    /// Runs in `pool`, a node's.
    pub fn on(pool: &'a JsPool) -> Replayer<'a> {
        Replayer { pool: Pool::Node(pool) }
    }
}

impl Replayer<'_> {
    /// Runs the transaction `before` holds again, with the app `choice` names, on the state
    /// before it.
    pub async fn run(&self, before: Before, choice: &AppChoice) -> Result<Replayed, ReplayFailure> {
        let txid = before.entry.txid;
        let recorded_app = before.entry.app.ok_or(ReplayError::NotAnAppTransaction(txid, "no app version"))?;
        let inputs = before.inputs.as_deref().ok_or(ReplayFailure::NotRecorded(txid))?;
        let inputs = RecordedInputs::decode(inputs).map_err(|e| ReplayFailure::Inputs(format!("transaction {txid}: {e}")))?;
        let (bundle, ran) = match choice {
            AppChoice::Recorded => (Arc::new(version_bundle(&before, recorded_app.version, Some(&recorded_app))?), describe(&recorded_app)),
            AppChoice::Version(n) => (Arc::new(version_bundle(&before, *n, None)?), format!("app version {n}")),
            AppChoice::Bundle { bundle, from } => (bundle.clone(), format!("the app in {from}")),
        };
        let options = js_options(&before.state);
        let state = before.state;
        let pool = match &self.pool {
            Pool::Own(pool, host) => {
                *host.last.lock().unwrap_or_else(|p| p.into_inner()) = TxId::new(state_view(&state, txid), txid.seqno.saturating_sub(1));
                pool
            }
            Pool::Node(pool) => *pool,
        };
        let request = inputs.to_request();
        let path = request.path.strip_prefix("/app").unwrap_or(&request.path).to_owned();
        let m = bundle.route(&request.method, &path).map_err(|e| {
            ReplayFailure::App(format!(
                "{ran} has no endpoint for {} {} ({e:?}): it cannot run this transaction",
                request.method, request.path
            ))
        })?;
        // The route's template and parameters as the app run now sees them; the caller's
        // certificate as authentication gave it (the record leaves out what the state holds).
        let mut request = request;
        request.route = format!("/app{}", m.route);
        request.params = m.params.clone();
        request.caller = request.caller.map(|c| crate::auth::restored_caller(&state, &c));
        let store = Store::new(state);
        let ex = pool
            .execute_drawing(
                bundle.clone(),
                m.endpoint,
                request,
                store.begin(),
                KvAccess::AppReadWrite,
                Arc::new(options),
                SourceMode::Replay(inputs.draws),
            )
            .await
            .map_err(|e| ReplayFailure::App(format!("running the handler: {e}")))?;
        let writes = ex.tx.write_set().clone();
        let differences = before.writes.differences(&writes);
        Ok(Replayed {
            txid,
            recorded_app,
            ran,
            response: ex.response,
            recorded_response: inputs.response,
            writes,
            recorded_writes: before.writes,
            differences,
            beyond_recording: ex.drawn.beyond_recording,
            snapshot: before.snapshot,
            replayed_entries: before.replayed,
        })
    }
}

/// What opens a node's ledger: its secrets, and its key for those of later rekeys (as a
/// restart opens it).
pub(crate) fn node_keys(identity: &NodeIdentity) -> Keys {
    Keys {
        first: identity.ledger_secret.clone(),
        later: identity.later_ledger_secrets.clone(),
        node: Some((identity.node_id.clone(), identity.node_key.clone())),
    }
}

/// Where a node's own ledger is, and what opens it.
pub struct LedgerSource {
    pub ledger: PathBuf,
    pub snapshots: Option<PathBuf>,
    pub service_cert_pem: String,
    pub keys: Keys,
}

/// How many recorded transactions a proposed app is tried on.
pub const PROPOSED_APP_REPLAYS: usize = 100;

/// The proposed app `bundle` run in `pool` (the node's) on the last `count` recorded app
/// transactions of the ledger, each on the state before it, as the dry-run of an app change answers it: how many were
/// replayed, and those whose response or write set would differ (public values shown, private
/// ones by key only) or that the proposed app could not run.
pub async fn try_proposed_app(source: LedgerSource, bundle: Arc<Bundle>, count: usize, pool: &JsPool) -> serde_json::Value {
    use serde_json::json;
    let LedgerSource { ledger, snapshots, service_cert_pem, keys } = source;
    let read =
        tokio::task::spawn_blocking(move || replay::read_recorded(&ledger, snapshots.as_deref(), &service_cert_pem, keys, count)).await;
    let befores = match read {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return json!({"window": count, "error": e.to_string()}),
        Err(e) => return json!({"window": count, "error": format!("internal: reading the ledger stopped: {e}")}),
    };
    let replayer = Replayer::on(pool);
    let choice = AppChoice::Bundle { bundle, from: "the proposal".into() };
    let (mut replayed, mut differing) = (0, Vec::new());
    for before in befores {
        let txid = before.entry.txid.to_string();
        let version = before.entry.app.map(|a| a.version);
        match replayer.run(before, &choice).await {
            Ok(r) => {
                replayed += 1;
                if r.same_response() && r.differences.is_empty() {
                    continue;
                }
                let proposed = match &r.response {
                    Ok(resp) => {
                        json!({"status": resp.status, "sameBody": ResponseSummary::of(resp).body_digest == r.recorded_response.body_digest})
                    }
                    Err(e) => json!({"error": e.to_string()}),
                };
                let writes: Vec<_> = r.differences.iter().map(shown_difference).collect();
                differing.push(json!({
                    "transactionId": txid,
                    "ranBy": version,
                    "response": {"recorded": {"status": r.recorded_response.status}, "proposed": proposed},
                    "writes": writes,
                }));
            }
            Err(e) => differing.push(json!({"transactionId": txid, "ranBy": version, "failure": e.to_string()})),
        }
    }
    json!({"window": count, "replayed": replayed, "differing": differing})
}

/// One differing key as the dry-run shows it: public values as the table holds them, private
/// ones not at all.
fn shown_difference(d: &WriteDifference) -> serde_json::Value {
    use serde_json::json;
    let (key, encoding) = consort_gov::dry_run::shown(&d.key);
    let mut out = json!({"table": d.map, "key": key});
    if let Some(e) = encoding {
        out["keyEncoding"] = json!(e);
    }
    if !consort_kv::is_public(&d.map) {
        out["private"] = json!(true);
        return out;
    }
    let value = |w: &Option<Option<Vec<u8>>>| match w {
        None => json!({"written": false}),
        Some(None) => json!({"removed": true}),
        Some(Some(v)) => json!({"value": consort_gov::dry_run::value_of(v)}),
    };
    out["recorded"] = value(&d.left);
    out["proposed"] = value(&d.right);
    out
}

/// A key as text, or base64 when it is not (then prefixed `base64:`).
pub fn show_key(bytes: &[u8]) -> String {
    match consort_gov::dry_run::shown(bytes) {
        (serde_json::Value::String(s), None) => format!("{s:?}"),
        (v, _) => format!("base64:{}", v.as_str().unwrap_or_default()),
    }
}

/// A value as JSON when it is JSON, else text, else `{"base64": ...}`.
pub fn show_value(bytes: &[u8]) -> String {
    consort_gov::dry_run::value_of(bytes).to_string()
}

fn describe(app: &AppRef) -> String {
    format!("app version {} (bundle digest {})", app.version, hex::encode(app.bundle_digest))
}

/// The bundle of app version `n`, as recorded before the transaction or after it; when
/// `expected` is given, its digest must be the one the transaction's entry names.
fn version_bundle(before: &Before, n: u64, expected: Option<&AppRef>) -> Result<Bundle, ReplayFailure> {
    let key = n.to_string().into_bytes();
    let raw = before
        .state
        .get(APP_VERSIONS, &key)
        .map(|v| v.to_vec())
        .or_else(|| before.later_app_versions.get(&key).cloned())
        .ok_or_else(|| ReplayFailure::App(format!("app version {n} is not recorded in this ledger")))?;
    let version: consort_gov::app_versions::AppVersion =
        serde_json::from_slice(&raw).map_err(|e| ReplayFailure::App(format!("the record of app version {n}: {e}")))?;
    if let Some(app) = expected {
        if version.bundle_digest != hex::encode(app.bundle_digest) {
            return Err(ReplayFailure::App(format!(
                "the record of app version {n} has bundle digest {}, but the transaction names {}",
                version.bundle_digest,
                hex::encode(app.bundle_digest)
            )));
        }
    }
    let json = serde_json::to_vec(&version.bundle).expect("JSON serialises");
    Bundle::from_json(&json).map_err(|e| ReplayFailure::App(format!("the bundle of app version {n}: {e}")))
}

/// The JS limits as the state sets them (the defaults if unset or unreadable).
fn js_options(state: &State) -> RuntimeOptions {
    state.get(JS_RUNTIME_OPTIONS, &SINGLETON_KEY).and_then(|v| serde_json::from_slice(v).ok()).unwrap_or_default()
}

/// The view of the state's last transaction (the transaction's own view if the state says none).
fn state_view(state: &State, txid: TxId) -> u64 {
    let last = state.txid();
    if last.seqno == 0 {
        txid.view
    } else {
        last.view
    }
}

/// What a replayed script learns of consensus: the transaction before it is the last one
/// committed. Historical state and the service identity's key are not there to give.
struct ReplayHost {
    /// The transaction before the one being replayed.
    last: std::sync::Mutex<TxId>,
}

impl ReplayHost {
    fn last(&self) -> TxId {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl JsHost for ReplayHost {
    fn last_committed(&self) -> (u64, u64) {
        let last = self.last();
        (last.view, last.seqno)
    }

    fn status(&self, _view: u64, seqno: u64) -> &'static str {
        if seqno <= self.last().seqno {
            "Committed"
        } else {
            "Unknown"
        }
    }

    fn view_of(&self, seqno: u64) -> Option<u64> {
        let last = self.last();
        (seqno <= last.seqno).then_some(last.view)
    }

    fn state_range(&self, _: u64, _: u64, _: u64, _: u64) -> Result<Option<Vec<HistoricalState>>, String> {
        Err("historical state is not available in a replay".into())
    }

    fn drop_states(&self, _: u64) -> bool {
        false
    }

    fn latest_ledger_secret_seqno(&self) -> u64 {
        0
    }

    fn endorse_csr(&self, _: &str, _: &str, _: u64) -> Result<String, String> {
        Err("the service identity's key is not available in a replay".into())
    }

    fn renew_service_cert(&self, _: &str, _: u64) -> Result<String, String> {
        Err("the service identity's key is not available in a replay".into())
    }
}
