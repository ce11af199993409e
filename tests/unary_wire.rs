//! The unary load's own HTTP/2 client (`grpc::lean`) against a server this project did not
//! write (Python grpcio) and the reference target: flow control with messages larger than
//! the windows, the server's stream limit, GOAWAY on a graceful stop, and a connection lost
//! mid-run.

mod common;

use common::*;

#[test]
fn messages_larger_than_the_flow_control_windows_go_both_ways() {
    let server = Server::python(&[]);
    let dir = tempfile::tempdir().unwrap();
    // 1 MB each way: grpcio starts with 64 KiB windows and 16 KiB frames, so the request
    // waits for WINDOW_UPDATEs and both directions span many DATA frames.
    let big = "x".repeat(1_000_000);
    let s = scenario(
        dir.path(),
        "big.toml",
        &echo_scenario(
            &server.address(),
            &format!("data = {{ message = \"{big}\" }}\ntimeout = \"20s\""),
            "requests = 24\nconcurrency = 4\nconnections = 2",
        ),
    );
    let report = run_report(dir.path(), &s);
    let counts = server.stop_with_counts();
    assert_eq!(
        report["status_codes"],
        serde_json::json!({"OK": 24}),
        "{}",
        report["errors"]
    );
    assert_eq!(num(&counts, "requests"), 24.0);
    assert_eq!(
        counts["messages"][&big],
        serde_json::json!(24),
        "the server got whole messages"
    );
}

#[test]
fn the_servers_limit_on_concurrent_streams_is_respected() {
    // Two streams at a time while 32 calls want to be in flight: the others wait their turn.
    // grpcio still refuses some new streams (REFUSED_STREAM) while it counts finished ones
    // as open for a moment; those are retried transparently, as gRPC clients do.
    let server = Server::python(&["--max-concurrent-streams", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "limit.toml",
        &echo_scenario(
            &server.address(),
            "data = { message = \"m\", delay_ms = 2 }",
            "requests = 300\nconcurrency = 32",
        ),
    );
    let report = run_report(dir.path(), &s);
    let counts = server.stop_with_counts();
    assert_eq!(
        report["status_codes"],
        serde_json::json!({"OK": 300}),
        "{}",
        report["errors"]
    );
    assert_eq!(num(&counts, "requests"), 300.0);
}

#[test]
fn a_graceful_stop_finishes_calls_in_flight_and_the_load_moves_to_the_next_server() {
    let first = Server::python(&[]);
    let port = first.port;
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "goaway.toml",
        &echo_scenario(
            &first.address(),
            "data = { message = \"m\", delay_ms = 30 }\ntimeout = \"5s\"",
            "rate = 100\nconcurrency = 16\nconnections = 2\nduration = \"6s\"",
        ),
    );
    let out_path = dir.path().join("goaway.json");
    let run = spawn_run(&s, &out_path);
    // SIGTERM: grpcio sends GOAWAY and gives calls in flight a second to finish.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let first_counts = first.stop_with_counts();
    let second = Server::python(&["--port", &port.to_string()]);
    let r = finish_run(run, &out_path);
    let second_counts = second.stop_with_counts();

    eprintln!(
        "graceful stop: status {} errors {}",
        r["status_codes"], r["errors"]
    );
    // Every call a server took was answered: no call is lost or counted twice.
    let served = num(&first_counts, "requests") + num(&second_counts, "requests");
    assert_eq!(num(&r, "status_codes.OK"), served, "{}", r["errors"]);
    // The calls that found no server failed as UNAVAILABLE; a call grpcio had not started
    // when its grace ran out may be CANCELLED. Nothing else failed.
    let code = |c: &str| r["status_codes"][c].as_f64().unwrap_or(0.0);
    let (ok, unavailable) = (code("OK"), code("UNAVAILABLE"));
    assert_eq!(
        ok + unavailable + code("CANCELLED"),
        num(&r, "totals.requests"),
        "{}",
        r["status_codes"]
    );
    assert!(
        unavailable >= 1.0,
        "the gap between the servers shows: {}",
        r["status_codes"]
    );
    assert!(num(&r, "totals.requests") >= 590.0, "{}", r["totals"]);
    let last_seconds: f64 = r["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .take(2)
        .map(|i| num(i, "ok"))
        .sum();
    assert!(last_seconds > 0.0, "the load reached the second server");
}

#[test]
fn a_connection_lost_mid_run_fails_its_calls_and_reconnects() {
    let mut target = Server::reference_target();
    let port = target.port;
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "lost.toml",
        &bench_scenario(
            &target.address(),
            "{ payload_size = 16, delay_ms = 50 }",
            "rate = 200\nconcurrency = 64\nconnections = 2\nduration = \"5s\"",
        ),
    );
    let out_path = dir.path().join("lost.json");
    let run = spawn_run(&s, &out_path);
    // Killed, not stopped: the connections just end, with calls in flight on them.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    target.child.kill().unwrap();
    target.child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _second = Server::reference_target_on(port);
    let r = finish_run(run, &out_path);

    eprintln!(
        "lost connection: status {} errors {}",
        r["status_codes"], r["errors"]
    );
    let unavailable = num(&r, "status_codes.UNAVAILABLE");
    assert!(
        unavailable >= 10.0,
        "calls in flight (about 10 at 200/s × 50 ms) failed: {}",
        r["status_codes"]
    );
    let messages: Vec<&str> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("connection")),
        "the errors say what happened: {messages:?}"
    );
    // The target had spoken HTTP/2: a reset now is the target going away, never "does
    // not speak HTTP/2".
    assert!(
        messages
            .iter()
            .all(|m| !m.contains("does not speak HTTP/2")),
        "a reset is not a protocol mismatch: {messages:?}"
    );
    let ok = num(&r, "status_codes.OK");
    assert_eq!(
        ok + unavailable,
        num(&r, "totals.requests"),
        "{}",
        r["status_codes"]
    );
    let after: f64 = r["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .skip(3)
        .map(|i| num(i, "ok"))
        .sum();
    assert!(after > 0.0, "the load reconnected after the restart");
}
