//! Retries by gRPC's retry policy (`[call.retry]`, gRFC A6) against Python grpcio: a server
//! that fails the first N attempts of each call, one that sends `grpc-retry-pushback-ms`, and
//! one that fails everything (throttling bounds the retries). The report's calls, attempts
//! and retries are checked against what the server received.

mod common;

use common::*;
use serde_json::Value;

/// Runs `calls` unary calls (one per 50 ms), each with its own message, under `retry`;
/// returns the exit code and the report.
fn run(server: &Server, calls: u64, retry: &str) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), server, calls, retry, &[])
}

fn run_in(
    dir: &std::path::Path,
    server: &Server,
    calls: u64,
    retry: &str,
    args: &[&str],
) -> (i32, Value) {
    let load = format!(
        "rate = 20\nrequests = {calls}\nduration = \"30s\"\nconnections = 1\n\n[call.retry]\n{retry}"
    );
    let s = scenario(
        dir,
        "r.toml",
        &echo_scenario(
            &server.address(),
            "data = { message = \"m{{request_number}}\" }",
            &load,
        ),
    );
    let out_path = dir.join(format!("report{}.json", args.join("").replace('/', "of")));
    let (out, report) = run_file(&s, &out_path, args);
    (out.status.code().unwrap_or(-1), report)
}

/// `loadagent run -q SCENARIO --out OUT ARGS…`, whatever its exit code: its output and report.
fn run_file(
    scenario: &std::path::Path,
    out_path: &std::path::Path,
    args: &[&str],
) -> (std::process::Output, Value) {
    let mut all = vec![
        "run",
        "-q",
        scenario.to_str().unwrap(),
        "--out",
        out_path.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = loadagent(&all);
    let json =
        std::fs::read_to_string(out_path).unwrap_or_else(|_| panic!("no report:\n{}", text(&out)));
    let report = serde_json::from_str(&json).expect("report is JSON");
    (out, report)
}

fn count(v: &Value, path: &str) -> u64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_u64()
        .unwrap_or_else(|| panic!("{path} in {v}"))
}

const POLICY: &str = "max_attempts = 3\ninitial_backoff = \"5ms\"\nmax_backoff = \"20ms\"\nbackoff_multiplier = 2\nretryable_status_codes = [\"UNAVAILABLE\"]\n";

#[test]
fn calls_that_fail_their_first_attempts_succeed_on_retry() {
    let server = Server::python(&["--fail-attempts", "2"]);
    let (code, report) = run(&server, 40, POLICY);
    let counts = server.stop_with_counts();
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "totals.requests"), 40, "calls, not attempts");
    assert_eq!(count(&report, "totals.errors"), 0, "{report}");
    assert_eq!(count(&report, "totals.attempts"), 120);
    assert_eq!(counts["requests"].as_u64(), Some(120), "the server's count");
    assert_eq!(counts["failed"].as_u64(), Some(80));
    let r = &report["retries"];
    assert_eq!(count(&report, "retries.attempts"), 120, "{r}");
    assert_eq!(count(&report, "retries.retries"), 80, "{r}");
    assert_eq!(count(&report, "retries.succeeded_on_retry"), 40, "{r}");
    assert_eq!(count(&report, "retries.exhausted"), 0, "{r}");
    assert_eq!(count(&report, "retries.attempt_latency.count"), 120, "{r}");
    // Every message reached the server three times.
    let messages = counts["messages"].as_object().unwrap();
    assert_eq!(messages.len(), 40);
    assert!(
        messages.values().all(|n| n.as_u64() == Some(3)),
        "{messages:?}"
    );

    // Two attempts allowed: every call fails on its last, and the server saw two of each.
    let server = Server::python(&["--fail-attempts", "2"]);
    let (_, report) = run(
        &server,
        20,
        &POLICY.replace("max_attempts = 3", "max_attempts = 2"),
    );
    let counts = server.stop_with_counts();
    assert_eq!(count(&report, "totals.requests"), 20);
    assert_eq!(count(&report, "totals.errors"), 20);
    assert_eq!(count(&report, "status_codes.UNAVAILABLE"), 20, "{report}");
    assert_eq!(count(&report, "retries.exhausted"), 20);
    assert_eq!(count(&report, "retries.succeeded_on_retry"), 0);
    assert_eq!(counts["requests"].as_u64(), Some(40));
    assert_eq!(count(&report, "totals.attempts"), 40);
}

#[test]
fn the_servers_pushback_sets_the_delay_or_stops_the_retries() {
    // 300 ms of pushback above a 5 ms backoff: each call waits the server's time, and the
    // latency a user feels (first attempt to answer) shows it while each attempt is quick.
    let server = Server::python(&["--fail-attempts", "1", "--pushback-ms", "300"]);
    let (code, report) = run(&server, 10, POLICY);
    let counts = server.stop_with_counts();
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "totals.errors"), 0, "{report}");
    assert_eq!(counts["requests"].as_u64(), Some(20));
    let p50 = report["latency"]["uncorrected"]["p50_us"].as_u64().unwrap();
    assert!(p50 >= 300_000, "the call waited the pushback: p50 {p50} us");
    let attempt_p50 = count(&report, "retries.attempt_latency.p50_us");
    assert!(
        attempt_p50 < 300_000,
        "each attempt is quick: {attempt_p50} us"
    );

    // A negative pushback, and one that is not a number: no retry at all.
    for pushback in ["-1", "soon"] {
        let server = Server::python(&["--fail-attempts", "1", "--pushback-ms", pushback]);
        let (_, report) = run(&server, 10, POLICY);
        let counts = server.stop_with_counts();
        assert_eq!(counts["requests"].as_u64(), Some(10), "pushback {pushback}");
        assert_eq!(count(&report, "totals.errors"), 10);
        assert_eq!(count(&report, "retries.stopped_by_pushback"), 10);
        assert_eq!(count(&report, "retries.retries"), 0);
        assert_eq!(count(&report, "totals.attempts"), 10);
    }
}

#[test]
fn throttling_bounds_the_retries_sent_to_an_overloaded_server() {
    // Every call fails. A bucket of 10 tokens loses one per failure and allows a retry only
    // while more than half is left after it: only the failures that leave 9, 8, 7 and 6
    // may be retried (fewer when one of them was a call's last attempt), and the server
    // never answers OK to refill it. At most four retries in the whole run, however many
    // calls fail; every call ends exhausted or throttled.
    let server = Server::python(&["--fail-every", "1"]);
    let policy = format!("{POLICY}\n[call.retry.throttling]\nmax_tokens = 10\ntoken_ratio = 0.1\n");
    let (_, report) = run(&server, 40, &policy);
    let counts = server.stop_with_counts();
    let r = &report["retries"];
    assert_eq!(count(&report, "totals.requests"), 40);
    assert_eq!(count(&report, "totals.errors"), 40);
    let retries = count(&report, "retries.retries");
    assert!((3..=4).contains(&retries), "{r}");
    assert_eq!(
        counts["requests"].as_u64(),
        Some(40 + retries),
        "the server's count"
    );
    assert_eq!(count(&report, "totals.attempts"), 40 + retries);
    assert_eq!(
        count(&report, "retries.exhausted") + count(&report, "retries.stopped_by_throttling"),
        40,
        "{r}"
    );
    assert!(count(&report, "retries.stopped_by_throttling") >= 38, "{r}");

    // Without throttling the same server gets three attempts per call.
    let server = Server::python(&["--fail-every", "1"]);
    let (_, report) = run(&server, 20, POLICY);
    let counts = server.stop_with_counts();
    assert_eq!(counts["requests"].as_u64(), Some(60));
    assert_eq!(count(&report, "retries.exhausted"), 20);
}

#[test]
fn a_retry_policy_is_refused_where_it_would_be_ignored() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, says) in [
        (
            "transport = \"h2\"\n[call.retry]\nmax_attempts = 2\ninitial_backoff = \"1s\"\nmax_backoff = \"1s\"\nbackoff_multiplier = 2\nretryable_status_codes = [\"UNAVAILABLE\"]\n",
            "retries are the lean client's",
        ),
        (
            "[call.retry]\nmax_attempts = 1\ninitial_backoff = \"1s\"\nmax_backoff = \"1s\"\nbackoff_multiplier = 2\nretryable_status_codes = [\"UNAVAILABLE\"]\n",
            "call.retry.max_attempts`: must be at least 2",
        ),
        (
            "[call.retry]\nmax_attempts = 2\ninitial_backoff = \"1s\"\nmax_backoff = \"1s\"\nbackoff_multiplier = 2\nretryable_status_codes = [\"UNAVAILABEL\"]\n",
            "\"UNAVAILABEL\" is not a gRPC code name",
        ),
        (
            "[call.retry]\nmax_attempts = 2\n",
            "call.retry.initial_backoff`: missing",
        ),
        (
            "[call.retry]\nmax_attempts = 8\ninitial_backoff = \"1s\"\nmax_backoff = \"1s\"\nbackoff_multiplier = 2\nretryable_status_codes = [\"UNAVAILABLE\"]\n",
            "it takes any value above 5 as 5; write 5 at most",
        ),
    ] {
        let s = scenario(
            dir.path(),
            "bad.toml",
            &format!(
                "name = \"x\"\nkind = \"unary\"\n[target]\naddress = \"127.0.0.1:1\"\n[call]\nmethod = \"a.B/C\"\n{extra}"
            ),
        );
        let out = loadagent(&["validate", s.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(says), "want `{says}` in:\n{}", text(&out));
        assert!(text(&out).contains("bad.toml:"), "names the file and line");
    }
    // A stream is not retried: refused rather than ignored.
    let s = scenario(
        dir.path(),
        "stream.toml",
        "name = \"x\"\nkind = \"bidi_stream\"\n[target]\naddress = \"127.0.0.1:1\"\n[call]\nmethod = \"a.B/C\"\n[call.retry]\nmax_attempts = 2\ninitial_backoff = \"1s\"\nmax_backoff = \"1s\"\nbackoff_multiplier = 2\nretryable_status_codes = [\"UNAVAILABLE\"]\n",
    );
    let out = loadagent(&["validate", s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("retries are for kind = \"unary\""),
        "{}",
        text(&out)
    );
}

#[test]
fn shards_merge_their_attempts_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&["--fail-attempts", "1"]);
    let mut outs = Vec::new();
    for shard in ["0/2", "1/2"] {
        let (code, _) = run_in(dir.path(), &server, 40, POLICY, &["--shard", shard]);
        assert_eq!(code, 0);
        outs.push(
            dir.path()
                .join(format!("report--shard{}.json", shard.replace('/', "of"))),
        );
    }
    let report = merge_reports(&outs, &dir.path().join("merged.json"));
    let counts = server.stop_with_counts();
    assert_eq!(count(&report, "totals.requests"), 40, "{report}");
    assert_eq!(count(&report, "totals.attempts"), 80);
    assert_eq!(counts["requests"].as_u64(), Some(80), "the server's count");
    assert_eq!(count(&report, "retries.retries"), 40);
    assert_eq!(count(&report, "retries.succeeded_on_retry"), 40);
    assert_eq!(
        count(&report, "retries.attempt_latency.count"),
        80,
        "{}",
        report["retries"]
    );
    assert_eq!(count(&report, "connections.opened"), 2, "one per shard");
    assert_eq!(report["connections"]["requests_per_connection"], 20.0);
}

#[test]
fn a_stop_ends_calls_waiting_for_their_retry_with_the_failure_they_had() {
    // The server asks for a minute's wait before each retry; SIGTERM must not wait for it,
    // nor lose the calls: each ends with its failure, and no retry is counted unsent.
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::python(&["--fail-attempts", "1", "--pushback-ms", "60000"]);
    let s = scenario(
        dir.path(),
        "r.toml",
        &echo_scenario(
            &server.address(),
            "data = { message = \"m{{request_number}}\" }",
            &format!("rate = 20\nduration = \"60s\"\n\n[call.retry]\n{POLICY}"),
        ),
    );
    let out_path = dir.path().join("report.json");
    let mut child = spawn_run(&s, &out_path);
    server.wait_for_line("FIRST", || child.try_wait().ok().flatten().is_some());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let started = std::time::Instant::now();
    terminate(&child);
    let report = finish_run(child, &out_path);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the stop did not wait out the pushback"
    );
    let counts = server.stop_with_counts();
    assert_eq!(report["interrupted"], true);
    let calls = count(&report, "totals.requests");
    assert!(calls >= 5, "{report}");
    assert_eq!(
        count(&report, "totals.errors"),
        calls,
        "each ended with its failure"
    );
    assert_eq!(count(&report, "status_codes.UNAVAILABLE"), calls);
    assert_eq!(count(&report, "retries.retries"), 0, "none was sent");
    assert_eq!(count(&report, "totals.attempts"), calls);
    assert_eq!(
        counts["requests"].as_u64(),
        Some(calls),
        "the server's count"
    );
}

#[test]
fn in_a_mix_each_entry_keeps_its_own_policy() {
    // Two entries call Say; only the first retries. The server fails the first attempt of
    // each message: the first entry's calls all succeed on their retry, the second's fail.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&["--fail-attempts", "1"]);
    let s = scenario(
        dir.path(),
        "mix.toml",
        &format!(
            r#"name = "mix"
kind = "unary"
[target]
address = "{}"
[[calls]]
method = "testing.echo.v1.Echo/Say"
weight = 1
data = {{ message = "a{{{{request_number}}}}" }}
[calls.retry]
{POLICY}
[[calls]]
method = "testing.echo.v1.Echo/Say"
weight = 1
data = {{ message = "b{{{{request_number}}}}" }}
[load]
rate = 50
requests = 100
duration = "30s"
"#,
            server.address()
        ),
    );
    let (_, report) = run_file(&s, &dir.path().join("report.json"), &[]);
    let counts = server.stop_with_counts();
    let methods = report["methods"].as_array().unwrap();
    let (with, without) = (&methods[0], &methods[1]);
    let with_calls = with["requests"].as_u64().unwrap();
    let without_calls = without["requests"].as_u64().unwrap();
    assert_eq!(with_calls + without_calls, 100);
    assert!(with_calls > 20 && without_calls > 20, "{methods:?}");
    assert_eq!(with["errors"], 0, "{with}");
    assert_eq!(without["errors"].as_u64(), Some(without_calls), "{without}");
    assert_eq!(count(&report, "retries.succeeded_on_retry"), with_calls);
    assert_eq!(count(&report, "retries.retries"), with_calls);
    assert_eq!(
        counts["requests"].as_u64(),
        Some(2 * with_calls + without_calls),
        "the server's count"
    );
    assert_eq!(
        count(&report, "totals.attempts"),
        2 * with_calls + without_calls
    );
}

#[test]
fn a_pushback_past_the_deadline_ends_the_call_at_its_deadline() {
    // A server asking for 292 million years: the call ends DEADLINE_EXCEEDED when its
    // deadline (1 s) passes, unsent again; nothing overflows.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&[
        "--fail-attempts",
        "1",
        "--pushback-ms",
        "9223372036854775807",
    ]);
    let s = scenario(
        dir.path(),
        "far.toml",
        &echo_scenario(
            &server.address(),
            "data = { message = \"m{{request_number}}\" }\ntimeout = \"1s\"",
            &format!("rate = 20\nrequests = 5\nduration = \"30s\"\n\n[call.retry]\n{POLICY}"),
        ),
    );
    let started = std::time::Instant::now();
    let (out, report) = run_file(&s, &dir.path().join("report.json"), &[]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{}",
        text(&out)
    );
    assert_ne!(out.status.code(), Some(101), "{}", text(&out));
    let counts = server.stop_with_counts();
    assert_eq!(
        count(&report, "status_codes.DEADLINE_EXCEEDED"),
        5,
        "{report}"
    );
    assert_eq!(counts["requests"].as_u64(), Some(5), "no retry was sent");
    let p50 = report["latency"]["uncorrected"]["p50_us"].as_u64().unwrap();
    assert!(
        (900_000..3_000_000).contains(&p50),
        "ended at the deadline: {p50} us"
    );
}
