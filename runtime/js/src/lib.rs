//! The JavaScript host, in two halves a newcomer can read apart:
//! - [`engine`]: Boa embedded as Consort runs it: bundles (SPEC §4), the `ccf` global, the
//!   limits and the hardening of the built-ins that recurse, and how a job runs on it;
//! - [`executors`]: where jobs run: worker processes (`js.isolation = "process"`, the default:
//!   the pool, the worker's loop and the frames between them) or the node's own threads
//!   (`"threads"`). They share every line of the engine; only the transport differs.
//!
//! No sockets and no files: a request comes in as a [`JsRequest`] with a KV [`consort_kv::Tx`],
//! and leaves as a [`JsResponse`] with the same transaction carrying its writes.

mod engine;
mod executors;

pub use engine::bundle::{AppMetadata, Bundle, BundleError, EndpointDef, EndpointMatch, Mode, RouteError};
pub use engine::crypto::jwk_public_key_der;
pub use engine::host::{HistoricalMap, HistoricalState, JsHost};
pub use engine::limits::{instructions_per_ms, Limit, RuntimeOptions};
pub use engine::recorded::{RecordedInputs, ResponseSummary};
pub use engine::runtime::{bench_direct_calls, validate_bundle, JsRequest, JsResponse, KvAccess, KvBackend, ScriptError};
pub use engine::sources::{Drawn, Draws, SourceMode};
pub use executors::pool::{CallOutcome, Execution, JsPool, PoolError, PoolMetrics, WorkerCommand};
pub use executors::worker::{init_logging, worker_main};

// Unit tests count the bytes they leave behind (see `engine::runtime::tests`).
#[cfg(test)]
#[global_allocator]
static ALLOC: consort_alloc::CountingAllocator = consort_alloc::CountingAllocator;
