//! The JavaScript host: bundles (SPEC §4), the Boa runtime with the `ccf` global, and a pool of
//! worker threads (a Boa `Context` is `!Send`, so each lives on one thread).
//!
//! No sockets and no files: a request comes in as a [`JsRequest`] with a KV [`consort_kv::Tx`],
//! and leaves as a [`JsResponse`] with the same transaction carrying its writes.

mod bundle;
mod crypto;
mod json;
mod limits;
mod nesting;
mod pool;
pub mod protocol;
mod runner;
mod runtime;
mod threads;
mod worker;

pub use bundle::{percent_decode, AppMetadata, Bundle, BundleError, EndpointDef, EndpointMatch, Mode, RouteError};
pub use crypto::jwk_public_key_der;
pub use limits::{instructions_per_ms, Limit, RuntimeOptions};
pub use pool::{CallOutcome, Execution, JsPool, PoolError, PoolMetrics, WorkerCommand};
pub use protocol::JsHost;
pub use runtime::{
    bench_direct_calls, validate_bundle, JsRequest, JsResponse, KvAccess, KvBackend, ScriptError, LEDGER_REKEY_REQUEST_TABLE,
};
pub use worker::{init_logging, worker_main};

// Unit tests count the bytes they leave behind (see `runtime::tests`).
#[cfg(test)]
#[global_allocator]
static ALLOC: consort_alloc::CountingAllocator = consort_alloc::CountingAllocator;
