//! Messages between the node and a JS worker process: `len:u32 LE ‖ CBOR`, over the worker's
//! stdin (node → worker) and stdout (worker → node).

use std::io::{Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::engine::host::{Handler, HistoricalState, HostAnswer, HostQuery, KvOp, KvReply};
use crate::engine::limits::RuntimeOptions;
use crate::engine::runtime::{JsResponse, KvAccess, ScriptError};
use crate::engine::sources::{Drawn, SourceMode};

/// Bounds what a corrupt or hostile length prefix can make either side allocate.
pub const FRAME_BYTES_MAX: usize = 512 * 1024 * 1024;

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
        /// The request object as the handler sees it, minus its body and historical state
        /// (the fields beside it).
        request: crate::JsRequest,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
        access: KvAccess,
        /// Sent when they differ from the worker's last job's (the worker keeps them).
        options: Option<RuntimeOptions>,
        /// For `mode: "historical"` endpoints: the state `ccf.historicalState` shows.
        historical: Option<HistoricalState>,
        /// Where the request's `ccf.kv` operations run.
        kv: JobKv,
        /// How the handler's time and random values are drawn.
        sources: SourceMode,
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

// Built once per message and sent at once, like `ToWorker`: boxing the outcome buys nothing.
#[allow(clippy::large_enum_variant)]
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
        /// The time and random values drawn, when recording or replaying.
        drawn: Drawn,
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
