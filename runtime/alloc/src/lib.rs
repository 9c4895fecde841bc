//! A counting global allocator: mimalloc plus a per-thread tally of live bytes.
//!
//! mimalloc rather than glibc's malloc: with scripts on the node's threads, memory a request
//! allocates on an async-runtime thread is freed on a JS thread and back, and glibc's arenas
//! lock and consolidate on every such free. A quarter of the node's CPU went to malloc and
//! free in a profile of committed POSTs; mimalloc took the node from 10.7k to 15.1k of them a
//! second (docs/perf.md). Without transparent huge pages (`no_thp`): where the kernel gives
//! them to every mapping, mimalloc's arenas made a node's resident memory twice glibc's
//! (114 MB against 53 MB after a POST run); without them it is glibc's (54 MB), as fast.
//!
//! Boa has no heap limit of its own. Each JS worker reads [`thread_live_bytes`] before a
//! request and at every point where the script yields, and stops a script whose allocations
//! exceed `max_heap_bytes`. The tally is per thread because a Boa context lives on one thread
//! and its garbage collector frees on that thread too.
//!
//! Binaries opt in with
//! `#[global_allocator] static ALLOC: consort_alloc::CountingAllocator = consort_alloc::CountingAllocator;`.
//! Without it the tally stays 0 and no heap limit is enforced.

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc as Inner;
use std::cell::Cell;

thread_local! {
    // Const-initialised with no destructor: accessing it never allocates.
    static LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
}

/// Bytes allocated minus bytes freed by the current thread since it started (negative when it
/// frees memory that other threads allocated).
pub fn thread_live_bytes() -> i64 {
    LIVE_BYTES.try_with(Cell::get).unwrap_or(0)
}

/// Runs `f` without counting what it leaves allocated on this thread: for work a thread does
/// on behalf of the system while a script's allocations are being watched.
pub fn uncounted<R>(f: impl FnOnce() -> R) -> R {
    let before = thread_live_bytes();
    let r = f();
    add(before.wrapping_sub(thread_live_bytes()));
    r
}

fn add(delta: i64) {
    // `try_with`: during thread teardown the slot may be gone; then there is nothing to count.
    let _ = LIVE_BYTES.try_with(|c| c.set(c.get().wrapping_add(delta)));
}

pub struct CountingAllocator;

// SAFETY: every method forwards to mimalloc with the caller's arguments unchanged and only
// adds bookkeeping that neither allocates nor touches the returned memory.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received; the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { Inner.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { Inner.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (hence by mimalloc) with `layout`.
        unsafe { Inner.dealloc(ptr, layout) };
        add(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr`/`layout` come from this allocator; `new_size` is the caller's.
        let p = unsafe { Inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as i64 - layout.size() as i64);
        }
        p
    }
}
