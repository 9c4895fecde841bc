//! Where scripts run. `pool.rs` is what the node calls (admission, metrics) and, for
//! `js.isolation = "process"`, the slots of worker processes it drives over `protocol.rs`'s
//! frames, with the watchdog; `worker.rs` is the worker process's loop (`consort js-worker`).
//! `threads.rs` runs the same jobs on the node's own threads (`"threads"`).

pub mod pool;
pub mod protocol;
pub mod threads;
pub mod worker;
