//! Connections that behave like real clients' (`[load] keepalive`, `connection_max_age`)
//! against Python grpcio: connections aged out by the client or by the server's
//! MAX_CONNECTION_AGE lose no call the server did not fail, and the report's `connections`
//! counts them; keepalive PINGs against grpcio's default enforcement policy end in GOAWAY
//! `too_many_pings`, reported as such, and against a permissive policy in none.

mod common;

use common::*;
use serde_json::Value;

fn run(server: &Server, load: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "c.toml",
        &echo_scenario(&server.address(), "data = { message = \"c\" }", load),
    );
    run_report(dir.path(), &s)
}

fn count(v: &Value, path: &str) -> u64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_u64()
        .unwrap_or_else(|| panic!("{path} in {v}"))
}

#[test]
fn connections_aged_by_the_client_lose_no_call() {
    let server = Server::python(&[]);
    let report = run(
        &server,
        "rate = 200\nduration = \"4s\"\nconnections = 2\nconnection_max_age = \"1s\"",
    );
    let counts = server.stop_with_counts();
    assert_eq!(count(&report, "totals.errors"), 0, "{report}");
    assert_eq!(count(&report, "totals.requests"), 800);
    assert_eq!(
        counts["requests"].as_u64(),
        Some(800),
        "the server got each once"
    );
    // Two connections, each replaced about every second (±10%) for four seconds.
    let aged = count(&report, "connections.closed_by_age");
    assert!((4..=10).contains(&aged), "{}", report["connections"]);
    assert!(
        count(&report, "connections.opened") >= aged + 2,
        "{}",
        report["connections"]
    );
    assert_eq!(count(&report, "connections.closed_by_server"), 0);
}

#[test]
fn connections_aged_by_the_server_lose_no_call() {
    // grpcio's MAX_CONNECTION_AGE: a GOAWAY after a second, calls in flight get 2 s more.
    let server = Server::python(&[
        "--grpc-option",
        "grpc.max_connection_age_ms=1000",
        "--grpc-option",
        "grpc.max_connection_age_grace_ms=2000",
    ]);
    let report = run(&server, "rate = 200\nduration = \"4s\"\nconnections = 2");
    let counts = server.stop_with_counts();
    assert_eq!(count(&report, "totals.errors"), 0, "{report}");
    assert_eq!(
        counts["requests"].as_u64(),
        Some(800),
        "no call lost or sent twice"
    );
    assert!(
        count(&report, "connections.closed_by_server") >= 2,
        "{}",
        report["connections"]
    );
    assert_eq!(count(&report, "connections.closed_by_age"), 0);
}

#[test]
fn keepalive_against_grpcios_enforcement_policy() {
    // grpcio's defaults: a ping sooner than 5 minutes after the last one, while the server
    // sends nothing, is a strike; past two, GOAWAY too_many_pings. Calls 6.7 s apart leave
    // room for six pings a second apart between them (the server's answers reset the count).
    let strict = Server::python(&[]);
    let report = run(
        &strict,
        "rate = 0.15\nduration = \"7s\"\nconnections = 1\nkeepalive = { time = \"1s\", timeout = \"5s\", without_calls = true }",
    );
    strict.stop_with_counts();
    let c = &report["connections"];
    assert!(count(&report, "connections.too_many_pings") >= 1, "{c}");
    assert!(count(&report, "connections.closed_by_server") >= 1, "{c}");
    assert_eq!(count(&report, "connections.keepalive_failures"), 0, "{c}");
    assert_eq!(count(&report, "totals.errors"), 0, "{report}");
    // A server that allows them: pings answered, no GOAWAY.
    let permissive = Server::python(&[
        "--grpc-option",
        "grpc.keepalive_permit_without_calls=1",
        "--grpc-option",
        "grpc.http2.min_ping_interval_without_data_ms=100",
        "--grpc-option",
        "grpc.http2.max_ping_strikes=0",
    ]);
    let report = run(
        &permissive,
        "rate = 0.15\nduration = \"7s\"\nconnections = 1\nkeepalive = { time = \"1s\", timeout = \"5s\", without_calls = true }",
    );
    permissive.stop_with_counts();
    let c = &report["connections"];
    assert_eq!(count(&report, "connections.too_many_pings"), 0, "{c}");
    assert_eq!(count(&report, "connections.closed_by_server"), 0, "{c}");
    assert_eq!(count(&report, "connections.opened"), 1, "{c}");
    assert!(count(&report, "connections.keepalive_pings") >= 4, "{c}");
}

#[test]
fn bad_keepalive_and_age_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (name, load, want) in [
        (
            "fast",
            "keepalive = { time = \"100ms\" }",
            "`load.keepalive.time`: below 1s",
        ),
        (
            "no time",
            "keepalive = { timeout = \"1s\" }",
            "`load.keepalive.time`: missing",
        ),
        (
            "unknown",
            "keepalive = { time = \"10s\", permit = true }",
            "`load.keepalive.permit`: unknown key",
        ),
        (
            "age",
            "connection_max_age = \"10ms\"",
            "`load.connection_max_age`: below 1s",
        ),
    ] {
        let s = scenario(
            dir.path(),
            "bad.toml",
            &echo_scenario("127.0.0.1:1", "", load),
        );
        let out = loadagent(&["validate", s.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(text(&out).contains(want), "{name}: {}", text(&out));
    }
}

#[test]
fn churned_connections_each_carry_one_call_and_the_server_sees_each() {
    // 20 of the 100 requests a second each go on a connection of their own; grpcio tells
    // connections apart by the client's port.
    let server = Server::python(&[]);
    let report = run(
        &server,
        "rate = 100\nduration = \"3s\"\nconnections = 1\nconnection_churn = 20",
    );
    let counts = server.stop_with_counts();
    let c = &report["connections"];
    assert_eq!(count(&report, "totals.errors"), 0, "{report}");
    assert_eq!(
        counts["requests"].as_u64(),
        Some(300),
        "no call lost or sent twice"
    );
    let churned = count(&report, "connections.churned");
    assert!(
        (50..=62).contains(&churned),
        "about 20 a second for 3 s: {c}"
    );
    assert_eq!(count(&report, "connections.churn_failures"), 0, "{c}");
    assert_eq!(
        counts["connections"].as_u64(),
        Some(count(&report, "connections.opened")),
        "every connection the report counts, the server saw: {c}"
    );
    assert_eq!(count(&report, "connections.opened"), churned + 1, "{c}");
}

#[test]
fn churn_above_the_rate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "c.toml",
        &echo_scenario("127.0.0.1:1", "", "rate = 10\nconnection_churn = 20"),
    );
    let out = loadagent(&["validate", s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("load.connection_churn"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("write at most the rate"),
        "{}",
        text(&out)
    ); // A rate so small its period overflows a Duration: refused, not a crash.
    let s = scenario(
        dir.path(),
        "tiny.toml",
        &echo_scenario("127.0.0.1:1", "", "rate = 10\nconnection_churn = 1e-300"),
    );
    let out = loadagent(&["validate", s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("at least 0.01 new connections"),
        "{}",
        text(&out)
    );
}

/// A unary scenario against grpc-js's interop `EmptyCall`.
fn run_grpc_js(server: &Server, load: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let proto = repo().join("tests/interop/test_service.proto");
    let s = scenario(
        dir.path(),
        "js.toml",
        &format!(
            "name = \"js\"\nkind = \"unary\"\n[target]\naddress = \"{}\"\n[call]\nmethod = \"grpc.testing.TestService/EmptyCall\"\nproto = [\"{}\"]\n[load]\n{load}\n",
            server.address(),
            proto.display()
        ),
    );
    run_report(dir.path(), &s)
}

#[test]
fn grpc_js_ages_connections_and_answers_keepalive() {
    // grpc-js's MAX_CONNECTION_AGE: a GOAWAY every second, no call lost or sent twice.
    let server = Server::node_interop_with(&[
        ("grpc.max_connection_age_ms", 1000),
        ("grpc.max_connection_age_grace_ms", 2000),
    ]);
    let report = run_grpc_js(&server, "rate = 200\nduration = \"4s\"\nconnections = 2");
    let counts = server.stop_with_counts();
    assert_eq!(count(&report, "totals.errors"), 0, "{report}");
    assert_eq!(counts["EmptyCall"]["calls"].as_u64(), Some(800), "{counts}");
    assert!(
        count(&report, "connections.closed_by_server") >= 2,
        "{}",
        report["connections"]
    );
    // grpc-js (1.14) keeps no ping policy: pings a second apart are answered, never refused.
    let server = Server::node_interop();
    let report = run_grpc_js(
        &server,
        "rate = 0.15\nduration = \"7s\"\nconnections = 1\nkeepalive = { time = \"1s\", timeout = \"2s\", without_calls = true }",
    );
    let counts = server.stop_with_counts();
    let c = &report["connections"];
    assert_eq!(count(&report, "totals.errors"), 0, "{report}");
    assert_eq!(counts["EmptyCall"]["calls"].as_u64(), Some(2), "{counts}");
    assert_eq!(count(&report, "connections.keepalive_failures"), 0, "{c}");
    assert_eq!(count(&report, "connections.too_many_pings"), 0, "{c}");
    assert_eq!(count(&report, "connections.opened"), 1, "{c}");
    // Seven seconds with calls 6.7 s apart: a PING after each quiet second, each answered.
    assert!(count(&report, "connections.keepalive_pings") >= 4, "{c}");
}
