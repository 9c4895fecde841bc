//! Boa as Consort runs it, whatever executor carries the job: the runtime with the `ccf`
//! global (`runtime.rs`, `prelude.js`, `crypto/`), bundles and routing (`bundle.rs`), the
//! limits (`limits.rs`) and the bounds on what Boa would recurse through without a stack check
//! (`nesting.rs` for sources, `json.rs` for `JSON.stringify`, the prelude for the rest), what
//! the host gives a script (`host.rs`), how an executor thread runs a job (`runner.rs`), and
//! the time and random values a script draws (`sources.rs`), recorded with the request as a
//! transaction's inputs (`recorded.rs`) so it can be replayed.

pub mod bundle;
pub mod crypto;
pub mod host;
pub mod json;
pub mod limits;
pub mod nesting;
pub mod recorded;
pub mod runner;
pub mod runtime;
pub mod sources;
pub mod web;
