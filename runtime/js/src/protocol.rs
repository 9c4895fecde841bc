//! Messages between the node and a JS worker process: `len:u32 LE ‖ CBOR`, over the worker's
//! stdin (node → worker) and stdout (worker → node).

use std::io::{Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bundle::EndpointDef;
use crate::limits::RuntimeOptions;
use crate::runtime::{JsResponse, KvAccess, ScriptError};

/// Bounds what a corrupt or hostile length prefix can make either side allocate.
pub const FRAME_BYTES_MAX: usize = 512 * 1024 * 1024;

/// One operation of `ccf.kv` on the request's transaction, which lives in the node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum KvOp {
    Has {
        map: String,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    Get {
        map: String,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    Version {
        map: String,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    Put {
        map: String,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Remove {
        map: String,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    Clear {
        map: String,
    },
    Size {
        map: String,
    },
    Entries {
        map: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum KvReply {
    Bool(bool),
    Value(Option<serde_bytes::ByteBuf>),
    Version(Option<u64>),
    Size(u64),
    Entries(Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>),
    Done,
}

impl KvOp {
    /// Runs the operation on the node's transaction.
    pub fn apply(self, tx: &mut consort_kv::Tx) -> KvReply {
        use serde_bytes::ByteBuf;
        match self {
            KvOp::Has { map, key } => KvReply::Bool(tx.has(&map, &key)),
            KvOp::Get { map, key } => KvReply::Value(tx.get(&map, &key).map(ByteBuf::from)),
            KvOp::Version { map, key } => KvReply::Version(tx.version_of_previous_write(&map, &key)),
            KvOp::Put { map, key, value } => {
                tx.put(&map, key, value);
                KvReply::Done
            }
            KvOp::Remove { map, key } => KvReply::Bool(tx.remove(&map, key)),
            KvOp::Clear { map } => {
                tx.clear(&map);
                KvReply::Done
            }
            KvOp::Size { map } => KvReply::Size(tx.size(&map) as u64),
            KvOp::Entries { map } => {
                KvReply::Entries(tx.entries(&map).into_iter().map(|(k, v)| (ByteBuf::from(k), ByteBuf::from(v))).collect())
            }
        }
    }
}

// Messages are built once and serialised at once; boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// Run one request. `bundle` is sent when the worker does not have `bundle_id` yet, and
    /// `options` when they changed. `seq` numbers the jobs sent to one worker, in order: the node
    /// may send a job while the worker still runs the one before it (see `FromWorker::Handback`).
    Job {
        seq: u64,
        bundle_id: u64,
        bundle: Option<String>,
        handler: Handler,
        /// The request object as the handler sees it, minus its body (built natively in the
        /// worker: Boa's `JSON.parse` goes through its full JS parser).
        request: serde_json::Value,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
        access: KvAccess,
        /// Sent when they differ from the worker's last job's (the worker keeps them).
        options: Option<RuntimeOptions>,
        /// For `mode: "historical"` endpoints: the state `ccf.historicalState` shows.
        historical: Option<HistoricalState>,
        /// Where the request's `ccf.kv` operations run.
        kv: JobKv,
    },
    /// Call `function` exported by the one-module script `source` with `args` in a fresh
    /// interpreter (governance: the constitution's functions and ballots).
    Call {
        seq: u64,
        source: String,
        function: String,
        args: Vec<serde_json::Value>,
        access: KvAccess,
        options: Option<RuntimeOptions>,
    },
    Kv(KvReply),
    Host(HostAnswer),
    /// The delta from the worker's copy of the state to the running request's snapshot.
    Sync(consort_kv::StateDelta),
}

/// The function that handles a request, and the endpoint's `interpreter_reuse` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handler {
    pub js_module: String,
    pub js_function: String,
    pub reuse_key: Option<String>,
}

impl Handler {
    pub fn of(endpoint: &EndpointDef) -> Handler {
        Handler {
            js_module: endpoint.js_module.clone(),
            js_function: endpoint.js_function.clone(),
            reuse_key: endpoint.interpreter_reuse.as_ref().and_then(|r| r.get("key")).and_then(|k| k.as_str()).map(str::to_owned),
        }
    }
}

/// Where a request's `ccf.kv` operations run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JobKv {
    /// On the node's transaction, one round trip per operation (states too large to copy).
    Node,
    /// On the worker's copy of the state, at the request's `snapshot`. `whole` is the whole
    /// state, for a worker without a copy yet; `current` says that the copy will be at the
    /// snapshot when the job starts (the node says so only when no job queued ahead of it can
    /// move the copy). If not, the worker asks for the delta (`FromWorker::Sync`) when the script
    /// first reads: a script that only writes needs none. The worker sends the transaction's
    /// effects back with its outcome.
    Copy { snapshot: consort_kv::TxId, whole: Option<consort_kv::StateDelta>, current: bool },
}

/// A question for the node about consensus (`ccf.consensus.*`) or history (`ccf.historical.*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum HostQuery {
    LastCommitted,
    Status {
        view: u64,
        seqno: u64,
    },
    ViewOf {
        seqno: u64,
    },
    StateRange {
        handle: u64,
        from: u64,
        to: u64,
        expiry_seconds: u64,
    },
    DropStates {
        handle: u64,
    },
    /// `ccf.network.getLatestLedgerSecretSeqno()`.
    LatestLedgerSecretSeqno,
    /// `ccf.network.generateEndorsedCertificate(csr, validFrom, validityPeriodDays)`.
    EndorseCsr {
        csr: String,
        valid_from: String,
        days: u64,
    },
    /// `ccf.network.generateNetworkCertificate(validFrom, validityPeriodDays)`.
    RenewServiceCert {
        valid_from: String,
        days: u64,
    },
    /// The AMD root certificates the node trusts beyond AMD's own (for
    /// `snp_attestation.verifySnpAttestation`).
    SnpExtraRoots,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum HostAnswer {
    TxId {
        view: u64,
        seqno: u64,
    },
    Status(String),
    View(Option<u64>),
    /// `None` while some of the range is still loading.
    States(Result<Option<Vec<HistoricalState>>, String>),
    Dropped(bool),
    Seqno(u64),
    /// A certificate (PEM), or why none could be made.
    Certificate(Result<String, String>),
    /// (product, SHA-256 of the root certificate's DER, hex) pairs.
    SnpRoots(Vec<(String, String)>),
}

/// One committed transaction for historical queries: its id, receipt and writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoricalState {
    pub view: u64,
    pub seqno: u64,
    /// The receipt as JSON text (the shape of `@microsoft/ccf-app`'s `Receipt`).
    pub receipt: String,
    /// Per map, the keys the transaction wrote: `Some(value)` for a put, `None` for a removal.
    pub maps: Vec<HistoricalMap>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoricalMap {
    pub name: String,
    pub writes: Vec<(serde_bytes::ByteBuf, Option<serde_bytes::ByteBuf>)>,
}

/// What the node answers host queries from: its consensus state.
pub trait JsHost: Send + Sync {
    fn last_committed(&self) -> (u64, u64);
    /// `Committed`, `Pending`, `Unknown` or `Invalid`.
    fn status(&self, view: u64, seqno: u64) -> &'static str;
    fn view_of(&self, seqno: u64) -> Option<u64>;
    /// `ccf.historical.getStateRange`: `Ok(None)` while loading (loading starts on the first
    /// call); an error for a range that can never be served.
    fn state_range(&self, handle: u64, from: u64, to: u64, expiry_seconds: u64) -> Result<Option<Vec<HistoricalState>>, String>;
    /// `ccf.historical.dropCachedStates`: whether the handle held anything.
    fn drop_states(&self, handle: u64) -> bool;
    /// The seqno from which the current ledger secret applies.
    fn latest_ledger_secret_seqno(&self) -> u64;
    /// A certificate for a certificate signing request, signed by the service identity.
    fn endorse_csr(&self, csr: &str, valid_from: &str, days: u64) -> Result<String, String>;
    /// The service identity re-issued for a new validity period.
    fn renew_service_cert(&self, valid_from: &str, days: u64) -> Result<String, String>;
    /// SEV-SNP roots of trust configured beyond AMD's: (product, certificate SHA-256 hex).
    fn snp_extra_roots(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

impl HostQuery {
    pub fn answer(self, host: &dyn JsHost) -> HostAnswer {
        match self {
            HostQuery::LastCommitted => {
                let (view, seqno) = host.last_committed();
                HostAnswer::TxId { view, seqno }
            }
            HostQuery::Status { view, seqno } => HostAnswer::Status(host.status(view, seqno).to_owned()),
            HostQuery::ViewOf { seqno } => HostAnswer::View(host.view_of(seqno)),
            HostQuery::StateRange { handle, from, to, expiry_seconds } => {
                HostAnswer::States(host.state_range(handle, from, to, expiry_seconds))
            }
            HostQuery::DropStates { handle } => HostAnswer::Dropped(host.drop_states(handle)),
            HostQuery::LatestLedgerSecretSeqno => HostAnswer::Seqno(host.latest_ledger_secret_seqno()),
            HostQuery::EndorseCsr { csr, valid_from, days } => HostAnswer::Certificate(host.endorse_csr(&csr, &valid_from, days)),
            HostQuery::RenewServiceCert { valid_from, days } => HostAnswer::Certificate(host.renew_service_cert(&valid_from, days)),
            HostQuery::SnpExtraRoots => HostAnswer::SnpRoots(host.snp_extra_roots()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    Kv(KvOp),
    Host(HostQuery),
    /// Asks for `ToWorker::Sync`.
    Sync,
    /// `reused`: the request ran on an interpreter kept from an earlier request.
    Done {
        response: Result<JsResponse, ScriptError>,
        apply_writes: Option<bool>,
        claims_digest: Option<[u8; 32]>,
        reused: bool,
        /// For a job run on the worker's copy of the state: what its transaction read and wrote.
        effects: Option<consort_kv::TxEffects>,
    },
    /// The outcome of a `Call`: the function's result as JSON text.
    Returned(Result<String, ScriptError>),
    /// Jobs (by `seq`) the worker received while running a job that has run long, and gives
    /// back unstarted, so that the node runs them elsewhere instead of behind it.
    Handback(Vec<u64>),
    /// Sent before the outcome of a job: the worker must not be used again (it holds work it
    /// could not stop, such as a bundle check that ran past its limits); the node discards it.
    Retire,
}

impl ToWorker {
    /// The `seq` of a job or call.
    pub fn seq(&self) -> Option<u64> {
        match self {
            ToWorker::Job { seq, .. } | ToWorker::Call { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}

/// A message as one frame: `len:u32 LE ‖ CBOR`, ready to be written in one call.
pub fn encode_frame<T: Serialize>(msg: &T) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4];
    ciborium::into_writer(msg, &mut buf).map_err(|e| std::io::Error::other(e.to_string()))?;
    let len = buf.len() - 4;
    if len > FRAME_BYTES_MAX {
        return Err(std::io::Error::other(format!("message of {len} bytes is above the {FRAME_BYTES_MAX}-byte frame limit")));
    }
    buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(buf)
}

/// The length of the frame whose prefix is `len`, if it is within the limit.
fn frame_len(len: [u8; 4]) -> std::io::Result<usize> {
    let len = u32::from_le_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(std::io::Error::other(format!("frame of {len} bytes is above the limit")));
    }
    Ok(len)
}

fn decode_frame<T: DeserializeOwned>(body: &[u8]) -> std::io::Result<T> {
    ciborium::from_reader(body).map_err(|e| std::io::Error::other(e.to_string()))
}

pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    w.write_all(&encode_frame(msg)?)?;
    w.flush()
}

pub fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let mut buf = vec![0u8; frame_len(len)?];
    r.read_exact(&mut buf)?;
    decode_frame(&buf)
}

/// `write_frame` for the node's side, on the async runtime.
pub async fn write_frame_async<T: Serialize>(w: &mut (impl tokio::io::AsyncWrite + Unpin), msg: &T) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    w.write_all(&encode_frame(msg)?).await?;
    w.flush().await
}

/// `read_frame` for the node's side, on the async runtime.
pub async fn read_frame_async<T: DeserializeOwned>(r: &mut (impl tokio::io::AsyncRead + Unpin)) -> std::io::Result<T> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let mut buf = vec![0u8; frame_len(len)?];
    r.read_exact(&mut buf).await?;
    decode_frame(&buf)
}
