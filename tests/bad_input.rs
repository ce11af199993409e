//! Bad input: exit code 2 with a message naming the file, line, column and key;
//! an unreachable target: exit code 1 with a message that says so.

mod common;

use common::*;

/// Validates `text` and returns (exit code, stderr).
fn validate(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), "bad.toml", text);
    let out = loadagent(&["validate", path.to_str().unwrap()]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

fn assert_problem(text: &str, line: usize, key: &str, words: &str) {
    let (code, err, path) = validate(text);
    assert_eq!(code, Some(2), "exit code for:\n{text}\n{err}");
    let want = format!("{path}:{line}:");
    assert!(err.contains(&want), "message should name {want}:\n{err}");
    assert!(
        err.contains(&format!("`{key}`")),
        "message should name the key {key}:\n{err}"
    );
    assert!(err.contains(words), "message should say `{words}`:\n{err}");
}

#[test]
fn the_good_scenario_is_valid() {
    let (code, err, _) = validate(GOOD_SCENARIO);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn toml_syntax_error_points_at_the_line() {
    let (code, err, path) = validate(&GOOD_SCENARIO.replace("rate = 100", "rate = = 100"));
    assert_eq!(code, Some(2));
    assert!(err.contains(&format!("{path}:9:")), "{err}");
    assert!(err.contains("TOML syntax error"), "{err}");
}

#[test]
fn unknown_key_lists_the_valid_ones() {
    assert_problem(
        &GOOD_SCENARIO.replace("rate = 100", "rat = 100"),
        9,
        "load.rat",
        "did you mean `rate`?",
    );
    assert_problem(
        &GOOD_SCENARIO.replace("rate = 100", "rate = 100\nbogus = 1"),
        10,
        "load.bogus",
        "valid keys here: concurrency, connection_churn, connection_max_age, connections, duration, keepalive, rate, requests, stages, threads, warmup",
    );
}

#[test]
fn wrong_types_zero_and_negative_rates_and_bad_durations() {
    assert_problem(
        &GOOD_SCENARIO.replace("rate = 100", "rate = \"fast\""),
        9,
        "load.rate",
        "expected a number, found string",
    );
    assert_problem(
        &GOOD_SCENARIO.replace("rate = 100", "rate = 0"),
        9,
        "load.rate",
        "greater than zero",
    );
    assert_problem(
        &GOOD_SCENARIO.replace("rate = 100", "rate = -5"),
        9,
        "load.rate",
        "greater than zero",
    );
    assert_problem(
        &GOOD_SCENARIO.replace("duration = \"1s\"", "duration = \"10 parsecs\""),
        10,
        "load.duration",
        "not a duration",
    );
    assert_problem(
        &GOOD_SCENARIO.replace("duration = \"1s\"", "duration = 10"),
        10,
        "load.duration",
        "expected a string",
    );
    assert_problem(
        &GOOD_SCENARIO.replace("kind = \"unary\"", "kind = \"sideways\""),
        2,
        "kind",
        "valid values: \"unary\"",
    );
    assert_problem(
        &GOOD_SCENARIO.replace("address = \"embedded\"", "address = \"nowhere\""),
        4,
        "target.address",
        "host:port",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD_SCENARIO
        .replace("rate = 100", "rate = 0\nconcurrency = \"many\"")
        .replace("duration = \"1s\"", "duration = \"soon\"")
        .replace("kind = \"unary\"", "kind = \"unary\"\ncolour = \"red\"");
    let (code, err, path) = validate(&text);
    assert_eq!(code, Some(2));
    for (line, key) in [
        (3, "colour"),
        (10, "load.rate"),
        (11, "load.concurrency"),
        (12, "load.duration"),
    ] {
        assert!(
            err.contains(&format!("{path}:{line}:")) && err.contains(&format!("`{key}`")),
            "missing {key} at line {line}:\n{err}"
        );
    }
    assert!(err.contains("4 problems"), "{err}");
}

#[test]
fn a_method_or_field_that_does_not_exist() {
    assert_problem(
        &GOOD_SCENARIO.replace("Bench/Unary", "Bench/Nope"),
        6,
        "call.method",
        "has no method `Nope`; its methods: Unary, ServerStream, ClientStream, BidiStream",
    );
    assert_problem(
        &GOOD_SCENARIO.replace(
            "loadagent.bench.v1.Bench/Unary",
            "loadagent.bench.v1.Missing/Unary",
        ),
        6,
        "call.method",
        "does not know the service",
    );
    assert_problem(
        &GOOD_SCENARIO.replace("payload_size = 8", "payload_sise = 8"),
        7,
        "call.data.payload_sise",
        "unrecognized field name 'payload_sise'",
    );
    let (_, err, path) = validate(&GOOD_SCENARIO.replace("payload_size = 8", "payload_sise = 8"));
    assert!(
        err.contains(&format!("{path}:7:10:")),
        "points at the key's column:\n{err}"
    );
    assert_problem(
        &GOOD_SCENARIO.replace("payload_size = 8", "payload_size = \"big\""),
        7,
        "call.data.payload_size",
        "does not fit loadagent.bench.v1.BenchRequest",
    );
}

#[test]
fn a_streaming_method_with_kind_unary_names_its_shape() {
    assert_problem(
        &GOOD_SCENARIO.replace("Bench/Unary", "Bench/BidiStream"),
        6,
        "call.method",
        "is a bidi_stream method",
    );
}

#[test]
fn proto_and_protoset_problems() {
    let text = GOOD_SCENARIO.replace("data =", "proto = [\"missing.proto\"]\ndata =");
    assert_problem(&text, 7, "call.proto", "does not exist");
    let text = GOOD_SCENARIO.replace("data =", "protoset = \"bad.toml\"\ndata =");
    // bad.toml is the scenario itself: not a descriptor set.
    assert_problem(&text, 7, "call.protoset", "is not a protoset");
}

#[test]
fn metadata_that_loadagent_sets_itself_is_rejected() {
    assert_problem(
        &GOOD_SCENARIO.replace("data =", "metadata = { te = \"x\" }\ndata ="),
        7,
        "call.metadata.te",
        "set by loadagent itself",
    );
}

#[test]
fn a_missing_file_and_bad_usage_exit_2() {
    let out = loadagent(&["run", "/nonexistent/scenario.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/scenario.toml"));
    let out = loadagent(&["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = loadagent(&[
        "run",
        repo().join("scenarios/unary.toml").to_str().unwrap(),
        "--out",
        "/nonexistent/dir/r.json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_refused_connection_exits_1_with_a_clear_message() {
    // Bind then drop a listener: the port is closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    for schema in ["", "proto = [\"PROTO\"]"] {
        let schema = schema.replace("PROTO", repo().join("proto/bench.proto").to_str().unwrap());
        let text = GOOD_SCENARIO
            .replace(
                "address = \"embedded\"",
                &format!("address = \"127.0.0.1:{port}\""),
            )
            .replace("data =", &format!("{schema}\ndata ="));
        let path = scenario(dir.path(), "refused.toml", &text);
        let out = loadagent(&["run", "-q", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", text_of(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("refused"),
            "{}",
            text_of(&out)
        );
    }
}

fn text_of(out: &std::process::Output) -> String {
    text(out)
}

#[test]
fn a_target_that_never_answers_times_out_with_exit_1() {
    // A listener that accepts TCP (the kernel's backlog) but never speaks HTTP/2.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD_SCENARIO
        .replace(
            "address = \"embedded\"",
            &format!("address = \"127.0.0.1:{port}\"\nconnect_timeout = \"300ms\""),
        )
        .replace(
            "data =",
            &format!(
                "proto = [{:?}]\ndata =",
                repo().join("proto/bench.proto").to_str().unwrap()
            ),
        );
    let path = scenario(dir.path(), "silent.toml", &text);
    let started = std::time::Instant::now();
    let out = loadagent(&["run", "-q", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text_of(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("timed out"),
        "{}",
        text_of(&out)
    );
    assert!(started.elapsed().as_secs() < 30, "no hang");
    drop(silent);
}

#[test]
fn a_bad_tracing_table_is_named() {
    assert_problem(
        &format!("{GOOD_SCENARIO}[tracing]\notlp_endpoint = \"localhost:4317\"\n"),
        12,
        "tracing.otlp_endpoint",
        "http://",
    );
    assert_problem(
        &format!("{GOOD_SCENARIO}[tracing]\nsample_ratio = 1.5\n"),
        12,
        "tracing.sample_ratio",
        "fraction from 0",
    );
    assert_problem(
        &format!("{GOOD_SCENARIO}[tracing]\nsample_rate = 0.1\n"),
        12,
        "tracing.sample_rate",
        "sample_ratio",
    );
    // The standard variable is checked too when the file has no endpoint.
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), "env.toml", GOOD_SCENARIO);
    let out = std::process::Command::new(bin())
        .args(["run", "-q", path.to_str().unwrap()])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("OTEL_EXPORTER_OTLP"),
        "{}",
        text(&out)
    );
}

/// Templates whose renderings add up past a message's bound are refused before anything is
/// rendered (exit 2, naming the key and the bound), quickly and in little memory.
#[test]
fn templates_past_the_message_bound_are_refused() {
    let many = "{{random_string(65536)}}".repeat(70);
    let text = GOOD_SCENARIO.replace(
        "data = { payload_size = 8 }",
        &format!("data = {{ payload_size = 8, error_message = \"{many}\" }}"),
    );
    let started = std::time::Instant::now();
    assert_problem(&text, 7, "call.data.error_message", "4194304");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // Just under the bound is fine.
    let fewer = "{{random_string(65536)}}".repeat(60);
    let (code, err, _) = validate(&GOOD_SCENARIO.replace(
        "data = { payload_size = 8 }",
        &format!("data = {{ payload_size = 8, error_message = \"{fewer}\" }}"),
    ));
    assert_eq!(code, Some(0), "{err}");
}
