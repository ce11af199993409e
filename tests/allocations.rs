//! A guard on the hot path that times nothing: heap allocations per unary call, counted by a
//! counting global allocator in this test binary while loadagent's own library runs calls
//! against the reference target (a separate process: its allocations are not counted).
//!
//! Per call is the difference between a run of 2N calls and one of N, over N: what a run
//! costs once (prepare, connections, the report) cancels out. The budget is what the lean
//! client reaches today; it only goes down. A change that adds an allocation per call fails
//! here on any machine.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations per unary call over the lean client, in steady state: none (0.01 measured:
/// what a run does per second, spread over its calls). One allocation added per call reads
/// 1.0; one per ten calls, 0.1.
const UNARY_BUDGET: f64 = 0.1;

/// Allocations made while the library runs `requests` calls of `scenario`.
fn allocations_of(dir: &std::path::Path, address: &str, requests: u64) -> u64 {
    let path = scenario(
        dir,
        &format!("alloc-{requests}.toml"),
        &bench_scenario(
            address,
            "{}",
            &format!("requests = {requests}\nconcurrency = 8\nconnections = 1\nthreads = 1"),
        ),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let finished = runtime.block_on(async {
        let prepared = loadagent::run::prepare(loadagent::run::load(&path).unwrap())
            .await
            .unwrap();
        loadagent::run::execute(prepared, loadagent::run::Hooks::default())
            .await
            .unwrap()
    });
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(finished.report.totals.ok, requests, "every call answered");
    drop(finished);
    drop(runtime);
    after - before
}

#[test]
fn a_unary_call_allocates_within_its_budget() {
    let target = Server::reference_target();
    let dir = tempfile::tempdir().unwrap();
    let n = 4_000;
    // The first run warms what is made once per process (descriptor pools, TLS roots).
    allocations_of(dir.path(), &target.address(), 200);
    let once = allocations_of(dir.path(), &target.address(), n);
    let twice = allocations_of(dir.path(), &target.address(), 2 * n);
    let per_call = twice.saturating_sub(once) as f64 / n as f64;
    eprintln!(
        "allocations: {once} for {n} calls, {twice} for {}: {per_call:.2} per call",
        2 * n
    );
    assert!(
        per_call <= UNARY_BUDGET,
        "{per_call:.2} allocations per unary call, above the budget of {UNARY_BUDGET}: \
         something on the hot path allocates (src/load/dispatch.rs, src/grpc/lean/)"
    );
}
