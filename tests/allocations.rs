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

thread_local! {
    /// This thread's allocations, for work done on the test's own thread: the harness's
    /// other threads (reporting another test's result) allocate meanwhile.
    static THREAD_ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count() {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    // Not during the thread's teardown, when its locals are gone.
    let _ = THREAD_ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

/// Allocations made on this thread so far.
fn thread_allocations() -> u64 {
    THREAD_ALLOCATIONS.with(std::cell::Cell::get)
}

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is the whole process's: one measurement at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Allocations per unary call over the lean client, in steady state: none (0.01 measured:
/// what a run does per second, spread over its calls). One allocation added per call reads
/// 1.0; one per ten calls, 0.1.
const UNARY_BUDGET: f64 = 0.1;

/// Allocations per message of a ping-pong bidi stream (h2, the client streams use), in
/// steady state: none (0.01 measured), as for a unary call.
const STREAM_MESSAGE_BUDGET: f64 = 0.1;

/// Allocations made while the library runs `requests` unary calls at the reference target
/// at `address`; `target_extra`: more `[target]` keys (gRPC-Web's).
fn allocations_of(dir: &std::path::Path, address: &str, target_extra: &str, requests: u64) -> u64 {
    let load = format!("requests = {requests}\nconcurrency = 8\nconnections = 1\nthreads = 1");
    let text = bench_scenario(address, "{}", &load).replacen(
        "[call]",
        &format!("{target_extra}\n[call]"),
        1,
    );
    let path = scenario(dir, &format!("alloc-{requests}.toml"), &text);
    let (allocations, report) = allocations_running(&path);
    assert_eq!(report.totals.ok, requests, "every call answered");
    allocations
}

/// Allocations per call of `n` calls and twice as many, the first runs' warm-up apart;
/// printed with `label` (benches/summary.sh reads it).
fn allocations_per_call(label: &str, target_extra: &str, n: u64) -> f64 {
    let target = Server::reference_target();
    let dir = tempfile::tempdir().unwrap();
    // The first run warms what is made once per process (descriptor pools, TLS roots).
    allocations_of(dir.path(), &target.address(), target_extra, 200);
    let once = allocations_of(dir.path(), &target.address(), target_extra, n);
    let twice = allocations_of(dir.path(), &target.address(), target_extra, 2 * n);
    let per_call = twice.saturating_sub(once) as f64 / n as f64;
    eprintln!(
        "allocations, {label}: {once} for {n} calls, {twice} for {}: {per_call:.2} per call",
        2 * n
    );
    per_call
}

/// Allocations made while the library runs the scenario at `path`, and its report.
fn allocations_running(path: &std::path::Path) -> (u64, loadagent::report::Report) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let finished = runtime.block_on(async {
        let prepared = loadagent::run::prepare(loadagent::run::load(path).unwrap())
            .await
            .unwrap();
        loadagent::run::execute(prepared, loadagent::run::Hooks::default())
            .await
            .unwrap()
    });
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    drop(runtime);
    (after - before, finished.report)
}

#[test]
fn a_unary_call_allocates_within_its_budget() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let per_call = allocations_per_call("unary", "", 4_000);
    assert!(
        per_call <= UNARY_BUDGET,
        "{per_call:.2} allocations per unary call, above the budget of {UNARY_BUDGET}: \
         something on the hot path allocates (src/load/dispatch.rs, src/grpc/lean/)"
    );
}

/// Allocations per gRPC-Web unary call over HTTP/1.1 on the lean connection (`grpc::web::http1`),
/// in steady state: one (1.00 measured), the call's turn boxed by its worker
/// (`load::workers`: so that a stream worker's state does not hold a gRPC-Web call's). The
/// request is written into the connection's buffer and the answer read in place (3.00 a call
/// while the chunk-size line and the trailer frame were copied before being read).
const WEB_HTTP1_BUDGET: f64 = 1.1;

#[test]
fn a_grpc_web_call_over_http1_allocates_within_its_budget() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let per_call = allocations_per_call(
        "grpc-web over HTTP/1.1",
        "protocol = \"grpc-web\"\nhttp_version = \"1.1\"",
        2_000,
    );
    assert!(
        per_call <= WEB_HTTP1_BUDGET,
        "{per_call:.2} allocations per gRPC-Web call over HTTP/1.1, above the budget of \
         {WEB_HTTP1_BUDGET}: something on its path allocates (src/load/web.rs, src/grpc/web/)"
    );
}

/// Allocations while 4 ping-pong bidi streams each exchange `messages` messages.
fn stream_allocations(dir: &std::path::Path, address: &str, messages: u64) -> u64 {
    let path = scenario(
        dir,
        &format!("stream-{messages}.toml"),
        &format!(
            "name = \"s\"\nkind = \"bidi_stream\"\n[target]\naddress = \"{address}\"\n[call]\nmethod = \"loadagent.bench.v1.Bench/BidiStream\"\ndata = {{}}\n[stream]\nmessages = {messages}\n[load]\nrequests = 4\nconcurrency = 4\nconnections = 1\nthreads = 1\n"
        ),
    );
    let (allocations, report) = allocations_running(&path);
    let exchanged = report.messages.as_ref().map_or(0, |m| m.received);
    assert_eq!(exchanged, 4 * messages, "every message answered");
    allocations
}

#[test]
fn a_streamed_message_allocates_within_its_budget() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let target = Server::reference_target();
    let dir = tempfile::tempdir().unwrap();
    let n = 1_000;
    stream_allocations(dir.path(), &target.address(), 50);
    let once = stream_allocations(dir.path(), &target.address(), n);
    let twice = stream_allocations(dir.path(), &target.address(), 2 * n);
    let per_message = twice.saturating_sub(once) as f64 / (4 * n) as f64;
    eprintln!("allocations: {once} for {n} messages a stream, {twice} for {}: {per_message:.2} per message", 2 * n);
    assert!(
        per_message <= STREAM_MESSAGE_BUDGET,
        "{per_message:.2} allocations per streamed message, above the budget of \
         {STREAM_MESSAGE_BUDGET}: something on the stream path allocates (src/load/stream.rs)"
    );
}

/// Allocations per health-check probe on a connection kept open. Through tonic's general
/// client a probe allocated 36.01 times (2026-12-06); on the lean shared connection
/// (`grpc::lean::SharedConnection`, issue 28) 5.00 (2026-12-07): the call handed to the
/// connection's task, its answer channel, the response message, and the write buffer and
/// stream map the idle connection gave back (a thousand idle connections hold none). The
/// budget leaves room for other threads' allocations only.
const PROBE_BUDGET: f64 = 5.5;

/// Allocations while `probes` health checks run one after another on `conn`.
fn probe_allocations(
    runtime: &tokio::runtime::Runtime,
    conn: &loadagent::grpc::lean::SharedConnection,
    check: &loadagent::probe::health::Check,
    probes: u64,
) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    runtime.block_on(async {
        for _ in 0..probes {
            let answer = check
                .on(conn, None, std::time::Duration::from_secs(5))
                .await
                .unwrap();
            assert!(answer.is_serving(), "{answer:?}");
        }
    });
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn a_probe_allocates_within_its_budget() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let target = Server::reference_target();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let endpoint = loadagent::grpc::channel::Endpoint {
        address: loadagent::vocabulary::HostPort::parse(&target.address()).unwrap(),
        connect_timeout: std::time::Duration::from_secs(5),
        tls: None,
    };
    let (conn, _) = runtime
        .block_on(loadagent::grpc::lean::SharedConnection::open(&endpoint))
        .unwrap();
    let check = loadagent::probe::health::Check::new(
        &target.address(),
        "",
        &[],
        std::time::Duration::from_secs(5),
        false,
    )
    .unwrap();
    let n = 500;
    probe_allocations(&runtime, &conn, &check, 50);
    let once = probe_allocations(&runtime, &conn, &check, n);
    let twice = probe_allocations(&runtime, &conn, &check, 2 * n);
    let per_probe = twice.saturating_sub(once) as f64 / n as f64;
    eprintln!(
        "allocations: {once} for {n} probes, {twice} for {}: {per_probe:.2} per probe",
        2 * n
    );
    assert!(
        per_probe <= PROBE_BUDGET,
        "{per_probe:.2} allocations per probe, above the budget of {PROBE_BUDGET}: \
         something on the probe path allocates more (src/probe/, src/grpc/lean/shared.rs)"
    );
}

/// Publishes round `i` of a prober's series (`target`, `backend`), as
/// `agent/probe/{publish,connection,rounds}.rs` do: every family a round touches; one round
/// in five fails.
fn publish_round(
    series: &loadagent::telemetry::probe_series::ProbeSeries,
    target: &str,
    backend: &str,
    i: u32,
) {
    use loadagent::telemetry::probe_series::Phase;
    let took = std::time::Duration::from_micros(u64::from(200 + i % 700));
    let ok = i % 5 != 0;
    series.backend(target, backend, |s| {
        s.set_phase(Phase::Resolve, took);
        s.set_phase(Phase::Connect, took);
        s.set_phase(Phase::Check, took);
        s.set_success(ok);
        s.set_grpc_status(if ok { 0 } else { 14 });
        s.count_result(ok);
        s.set_serving(Some(if ok { "SERVING" } else { "NOT_SERVING" }));
        s.set_check_failed("status == OK", !ok);
    });
    series.observe_latency(target, backend, took.as_secs_f64());
}

/// Allocations on this thread while one prober publishes `rounds` rounds.
fn publishing_allocations(
    series: &loadagent::telemetry::probe_series::ProbeSeries,
    rounds: u32,
) -> u64 {
    let before = thread_allocations();
    for i in 0..rounds {
        publish_round(series, "checkout", "10.0.0.7:8443", i);
    }
    thread_allocations() - before
}

/// A probe round's series are plain numbers made at the first round: publishing the next
/// ones allocates nothing (the prometheus crate's vectors hashed and looked up label values
/// per series, and kept ~750 bytes a series).
#[test]
fn publishing_a_probe_round_allocates_nothing_once_its_series_exist() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let series = loadagent::telemetry::probe_series::ProbeSeries::new(
        &loadagent::telemetry::metrics::probe_latency_buckets(&[0.3]),
    );
    publishing_allocations(&series, 1);
    let allocations = publishing_allocations(&series, 1_000);
    eprintln!(
        "{:.2} per published probe round",
        allocations as f64 / 1_000.0
    );
    assert_eq!(
        allocations, 0,
        "{allocations} allocations publishing 1,000 probe rounds: something in \
         src/telemetry/probe_series.rs allocates per update"
    );
}

/// A scrape of 1,000 targets writes its 2.5 MB in chunks as they are sent: a few allocations
/// a chunk (the chunk, the cursor's position), not one a sample, and never the whole text.
#[test]
fn a_scrape_allocates_per_chunk_not_per_sample() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let metrics = loadagent::telemetry::Metrics::new().unwrap();
    for t in 0..1_000 {
        let target = format!("target-{t}");
        metrics.probes.set_backends(&target, 1);
        publish_round(&metrics.probes, &target, "127.0.0.1:50051", 1);
    }
    let before = thread_allocations();
    let mut bytes = 0;
    let mut chunks = 0;
    let mut largest = 0;
    for chunk in loadagent::telemetry::Metrics::exposition(&metrics, true) {
        bytes += chunk.len();
        largest = largest.max(chunk.capacity());
        chunks += 1;
    }
    let allocations = thread_allocations() - before;
    eprintln!("a scrape: {bytes} bytes in {chunks} chunks, {allocations} allocations, the largest chunk {largest} bytes");
    assert!(bytes > 2_000_000, "1,000 targets' series: {bytes} bytes");
    // The probe families' chunks (two allocations each: the buffer, the cursor's key) and
    // the rest of the registry, gathered by the prometheus crate (~40 series).
    assert!(
        allocations <= 3 * chunks + 300,
        "{allocations} allocations for a scrape of {chunks} chunks"
    );
    assert!(
        largest <= 128 * 1024,
        "a chunk of {largest} bytes: the text is not held whole"
    );
}
