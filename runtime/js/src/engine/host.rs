//! What a script's host gives it, whatever runs the script: `ccf.kv` operations on the
//! request's transaction (`KvOp`, answered by a `KvBackend`), and the questions the node answers
//! about consensus and history (`HostQuery`, answered by a `JsHost`). A worker process sends
//! them over its pipes; a JS thread in the node answers them in place.

use serde::{Deserialize, Serialize};

use crate::engine::bundle::EndpointDef;

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
