//! A guard on the lean client's batching that times nothing: in the open model requests are
//! released on the timer's 1 ms ticks, and a tick's requests go to a connection in one
//! write. So however fast or slow the machine, a run over one connection makes at most about
//! one socket write per millisecond (fewer when a tick has nothing due), whatever the rate —
//! counted by the client itself (`connections.socket_writes`). A change that writes per
//! call, or the headers and the message apart, makes at least twice that, on any machine.

mod common;

use common::*;

/// Writes per millisecond of the run allowed: one per tick, and half as many again for
/// ticks split in two (a timer that fires late lets a response's wake-up release what is
/// due first). Measured 0.91–1.02; releasing on every wake-up measured 1.8, a write per
/// call would be 2.0.
const WRITES_PER_MS: f64 = 1.5;

/// Writes outside the ticks: the connection's preface and SETTINGS, their acknowledgements,
/// the PING that proves HTTP/2, the close.
const HANDSHAKE_WRITES: f64 = 10.0;

#[test]
fn requests_due_together_go_in_one_write() {
    let target = Server::reference_target();
    let dir = tempfile::tempdir().unwrap();
    // 2,000 requests a second: two due per tick. A write per call would be two per
    // millisecond, the double of the bound; a debug build on a busy 2-core machine keeps
    // this rate (it is not behind, which would release on the responses' wake-ups too).
    let requests = 6_000;
    let path = scenario(
        dir.path(),
        "writes.toml",
        &bench_scenario(
            &target.address(),
            "{ payload_size = 64 }",
            &format!("rate = 2000\nrequests = {requests}\nconcurrency = 64\nconnections = 1\nthreads = 1"),
        ),
    );
    let report = run_report(dir.path(), &path);
    assert_eq!(
        num(&report, "totals.ok"),
        requests as f64,
        "every call answered"
    );
    let writes = num(&report, "connections.socket_writes");
    let reads = num(&report, "connections.socket_reads");
    let ms = num(&report, "duration_seconds") * 1000.0;
    let bound = WRITES_PER_MS * ms + HANDSHAKE_WRITES;
    eprintln!(
        "{writes} socket writes and {reads} reads for {requests} calls in {ms:.0} ms \
         ({:.2} calls per write; bound {bound:.0} writes)",
        requests as f64 / writes
    );
    assert!(
        writes <= bound,
        "{writes} socket writes in {ms:.0} ms (bound {bound:.0}): requests due in one tick \
         no longer go in one write (src/load/dispatch.rs `dispatch`, src/grpc/lean/conn.rs)"
    );
    // Every call's response was read: reads happened, and the count is not a constant.
    assert!(
        reads >= 1.0 && writes >= 1.0,
        "the client counted its socket calls"
    );
}
