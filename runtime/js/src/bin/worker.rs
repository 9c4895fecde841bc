//! The JS worker process: see `consort_js::worker_main`.

#[global_allocator]
static ALLOC: consort_alloc::CountingAllocator = consort_alloc::CountingAllocator;

fn main() -> std::process::ExitCode {
    consort_js::worker_main(false)
}
