//! Limits on a script: time, heap and stack (SPEC §4, `set_js_runtime_options`).
//!
//! Boa cannot be interrupted from another thread and has no heap cap (FACTS.md), so the limits
//! are enforced from inside the worker thread:
//! - **time**: the handler runs as an async script evaluation that yields every
//!   [`YIELD_BUDGET`] cost units of bytecode, across every JS-to-JS call; at each yield the
//!   worker checks the deadline and the heap, and abandons the evaluation (and its context)
//!   when either is exceeded. JS run *inside* a native callback (`reduce`, getters, ...) does
//!   not yield, so every context also has an instruction budget (Boa's `fuzz` feature) sized
//!   from a measured instruction rate: a backstop that stops such code within a small multiple
//!   of the time limit.
//! - **heap**: [`consort_alloc`] counts the worker thread's live bytes; a script whose
//!   allocations exceed `max_heap_bytes` is stopped at its next yield. One native operation
//!   (say `"x".repeat(n)`) can overshoot by its own result before the check.
//! - **stack**: Boa's recursion and VM-stack limits, derived from `max_stack_bytes`.
//!
//! A script that runs past [`LONG_RUN`] also runs this thread's long-run hook at its yields
//! (see [`on_long_run`]): the JS worker uses it to give back the jobs queued behind it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Cost units between two checks of the deadline and the heap. Small, because a script can
/// double a string every few units; measured overhead on the logging handler is in docs/perf.md.
pub const YIELD_BUDGET: u32 = 64;

/// How long a script runs before its thread's long-run hook is called at its yields (then at
/// most every [`LONG_RUN_PERIOD`]).
pub const LONG_RUN: Duration = Duration::from_millis(2);
const LONG_RUN_PERIOD: Duration = Duration::from_millis(1);

thread_local! {
    static LONG_RUN_HOOK: RefCell<Option<Box<dyn FnMut()>>> = const { RefCell::new(None) };
}

/// Sets what this thread does at the yields of a script that has run past [`LONG_RUN`].
pub fn on_long_run(hook: impl FnMut() + 'static) {
    LONG_RUN_HOOK.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
}

/// The least native stack a script thread gets (the parser's bound in `nesting.rs` is a
/// quarter of it).
pub const SCRIPT_STACK_MIN_BYTES: u64 = 256 * 1024 * 1024;

/// The per-service JS limits, with CCF's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeOptions {
    pub max_heap_bytes: u64,
    pub max_stack_bytes: u64,
    pub max_execution_time_ms: u64,
    pub log_exception_details: bool,
    pub return_exception_details: bool,
    pub max_cached_interpreters: u64,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            max_heap_bytes: 100 * 1024 * 1024,
            max_stack_bytes: 1024 * 1024,
            max_execution_time_ms: 5000,
            log_exception_details: false,
            return_exception_details: false,
            max_cached_interpreters: 10,
        }
    }
}

impl RuntimeOptions {
    /// JS call depth allowed by `max_stack_bytes` (one Boa frame costs about 1 KiB of Rust
    /// stack when calls nest through natives; the worker threads have room for the maximum).
    /// Any value is applied as given, as CCF applies it: a stack too small for the handler's
    /// first call fails the request with a stack overflow.
    pub fn recursion_limit(&self) -> usize {
        (self.max_stack_bytes / 1024).min(16 * 1024) as usize
    }

    /// Values on Boa's VM stack allowed by `max_stack_bytes` (16 bytes a value).
    pub fn vm_stack_values(&self) -> usize {
        (self.max_stack_bytes / 16).min(4 * 1024 * 1024) as usize
    }

    /// Native stack a script thread needs under these options, so that the heap and stack
    /// limits trip before the stack runs out: twice the heap limit (the data shapes Boa still
    /// walks by native recursion take at most 0.7 bytes of stack per byte of heap, measured by
    /// `stack-probe`), never less than [`SCRIPT_STACK_MIN_BYTES`], which holds the deepest calls
    /// and `JSON.stringify` levels any stack limit allows (see the test).
    pub fn script_stack_bytes(&self) -> u64 {
        self.max_heap_bytes.saturating_mul(2).max(SCRIPT_STACK_MIN_BYTES)
    }

    /// The instruction backstop for one request: four times what the measured rate runs in
    /// `max_execution_time_ms`.
    pub fn instruction_budget(&self) -> usize {
        let per_ms = instructions_per_ms();
        (per_ms.saturating_mul(self.max_execution_time_ms as usize)).saturating_mul(4).max(1_000_000)
    }
}

/// Which limit stopped a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Limit {
    Time,
    Heap,
    Stack,
}

impl Limit {
    /// What CCF reports as the exception for this limit (QuickJS's words): a client that
    /// checks `details[0].message` of a 500 sees the same on Consort.
    pub fn ccf_reason(self) -> &'static str {
        match self {
            Limit::Time => "InternalError: interrupted",
            Limit::Heap => "InternalError: out of memory",
            Limit::Stack => "InternalError: stack overflow",
        }
    }

    pub fn describe(self, o: &RuntimeOptions) -> String {
        match self {
            Limit::Time => format!("script exceeded the time limit (max_execution_time_ms = {})", o.max_execution_time_ms),
            Limit::Heap => format!("script exceeded the heap limit (max_heap_bytes = {})", o.max_heap_bytes),
            Limit::Stack => format!("script exceeded the stack limit (max_stack_bytes = {})", o.max_stack_bytes),
        }
    }
}

/// Watches one request: its deadline and how much the worker thread has allocated since.
pub struct Watch {
    deadline: Instant,
    heap_base: i64,
    heap_max: i64,
    /// When the long-run hook is due next.
    long_run: Cell<Instant>,
}

impl Watch {
    pub fn start(o: &RuntimeOptions) -> Watch {
        let now = Instant::now();
        Watch {
            deadline: now + Duration::from_millis(o.max_execution_time_ms),
            heap_base: consort_alloc::thread_live_bytes(),
            heap_max: i64::try_from(o.max_heap_bytes).unwrap_or(i64::MAX),
            long_run: Cell::new(now + LONG_RUN),
        }
    }

    pub fn exceeded(&self) -> Option<Limit> {
        self.exceeded_at(Instant::now())
    }

    fn exceeded_at(&self, now: Instant) -> Option<Limit> {
        if consort_alloc::thread_live_bytes().saturating_sub(self.heap_base) > self.heap_max {
            return Some(Limit::Heap);
        }
        (now >= self.deadline).then_some(Limit::Time)
    }

    /// Polls `fut` to completion on this thread, checking the limits each time it yields.
    /// A future abandoned here must not be resumed: its context is discarded by the caller.
    pub fn drive<F: Future>(&self, fut: F) -> Result<F::Output, Limit> {
        let mut fut = pin!(fut);
        let mut cx = TaskContext::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return Ok(v);
            }
            let now = Instant::now();
            if let Some(limit) = self.exceeded_at(now) {
                return Err(limit);
            }
            if now >= self.long_run.get() {
                self.long_run.set(now + LONG_RUN_PERIOD);
                LONG_RUN_HOOK.with(|h| {
                    if let Some(hook) = h.borrow_mut().as_mut() {
                        hook();
                    }
                });
            }
        }
    }
}

/// Boa instructions per millisecond on this machine, measured once per process.
pub fn instructions_per_ms() -> usize {
    static RATE: OnceLock<usize> = OnceLock::new();
    *RATE.get_or_init(measure_rate)
}

fn measure_rate() -> usize {
    use boa_engine::{Context, Source};
    const BUDGET: usize = 50_000_000;
    let Ok(mut ctx) = Context::builder().instructions_remaining(BUDGET).build() else { return 100_000 };
    let started = Instant::now();
    // A loop of calls and property work, the shape of typical handler code.
    let _ =
        ctx.eval(Source::from_bytes("let o = {n: 0}; function f(x) { return x + 1; } for (let i = 0; i < 200000; i++) { o.n = f(o.n); }"));
    let used = BUDGET - ctx.instructions_remaining();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    ((used as f64 / ms.max(0.001)) as usize).max(1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_stacks_grow_with_the_heap_and_stack_limits() {
        let mib = 1024 * 1024;
        // CCF's defaults fit the least stack a thread gets.
        assert_eq!(RuntimeOptions::default().script_stack_bytes(), SCRIPT_STACK_MIN_BYTES);
        // A governance-raised heap: twice the heap.
        let heap = RuntimeOptions { max_heap_bytes: 1024 * mib, ..Default::default() };
        assert_eq!(heap.script_stack_bytes(), 2048 * mib);
        // Whatever the stack limit, the least stack holds every call (Boa's recursion limit)
        // and JSON.stringify level it allows at 2 KiB each (a debug build's frames).
        let stack = RuntimeOptions { max_stack_bytes: u64::MAX, ..Default::default() };
        let calls = stack.recursion_limit() as u64;
        let levels = crate::engine::json::levels_allowed(stack.recursion_limit()) as u64;
        assert!((calls + levels) * 2048 <= SCRIPT_STACK_MIN_BYTES, "{calls} calls, {levels} levels");
        assert_eq!(stack.script_stack_bytes(), SCRIPT_STACK_MIN_BYTES);
        // Never overflows on absurd values.
        let huge = RuntimeOptions { max_heap_bytes: u64::MAX, max_stack_bytes: u64::MAX, ..Default::default() };
        assert_eq!(huge.script_stack_bytes(), u64::MAX);
    }
}
