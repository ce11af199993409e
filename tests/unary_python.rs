//! `loadagent run` against a gRPC server this project did not write (Python grpcio).

mod common;

use common::*;

#[test]
fn server_receives_exactly_the_requests_the_report_counts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&[]);
    let s = scenario(
        dir.path(),
        "count.toml",
        &echo_scenario(
            &server.address(),
            r#"data = { message = "hi" }
timeout = "2s""#,
            "rate = 200\nconcurrency = 8\nconnections = 2\nduration = \"2s\"",
        ),
    );
    let report = run_report(dir.path(), &s);
    let counts = server.stop_with_counts();
    let reported = num(&report, "totals.requests");
    assert_eq!(
        counts["requests"].as_f64().unwrap(),
        reported,
        "server count vs report"
    );
    assert_eq!(num(&report, "totals.ok"), reported);
    assert!(
        (390.0..=410.0).contains(&reported),
        "200/s for 2s asks 400, got {reported}"
    );
    assert_eq!(report["status_codes"]["OK"].as_f64().unwrap(), reported);
    assert_eq!(
        report["schema_source"], "server reflection (v1alpha)",
        "grpcio serves only v1alpha: the fallback"
    );
}

#[test]
fn server_side_delay_sets_the_median() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&[]);
    let s = scenario(
        dir.path(),
        "delay.toml",
        &echo_scenario(
            &server.address(),
            "data = { delay_ms = 40 }",
            "rate = 50\nconcurrency = 16\nduration = \"2s\"",
        ),
    );
    let report = run_report(dir.path(), &s);
    for which in ["corrected", "uncorrected"] {
        let p50 = num(&report, &format!("latency.{which}.p50_us"));
        assert!(
            (40_000.0..=52_000.0).contains(&p50),
            "{which} p50 {p50}us should be at or just above 40ms"
        );
    }
}

#[test]
fn a_stall_shows_in_corrected_percentiles_only() {
    // One request at a time; the 50th request stalls the whole server for a second. The
    // uncorrected histogram sees one slow request; the corrected one sees every request
    // that should have been sent during the stall.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&["--stall-after", "50", "--stall-ms", "1000"]);
    let s = scenario(
        dir.path(),
        "stall.toml",
        &echo_scenario(
            &server.address(),
            "",
            "rate = 100\nconcurrency = 1\nduration = \"3s\"",
        ),
    );
    let report = run_report(dir.path(), &s);
    let corrected_p90 = num(&report, "latency.corrected.p90_us");
    let uncorrected_p90 = num(&report, "latency.uncorrected.p90_us");
    let uncorrected_max = num(&report, "latency.uncorrected.max_us");
    assert!(
        uncorrected_p90 < 50_000.0,
        "uncorrected p90 {uncorrected_p90}us should not see the stall"
    );
    assert!(
        corrected_p90 > 200_000.0,
        "corrected p90 {corrected_p90}us should show the stall"
    );
    assert!(
        uncorrected_max >= 1_000_000.0,
        "the stalled request itself took a second: {uncorrected_max}"
    );
    assert!(
        num(&report, "totals.sent_late") >= 50.0,
        "requests queued behind the stall were sent late"
    );
    // Requests are sent late, never dropped.
    assert!((295.0..=305.0).contains(&num(&report, "totals.requests")));
}

#[test]
fn proto_files_protoset_and_reflection_each_resolve_the_method() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&[]);
    let proto = repo().join("tests/python/echo.proto");
    let protoset = dir.path().join("echo.protoset");
    let status = std::process::Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "--include_imports"])
        .arg(format!("-I{}", repo().join("tests/python").display()))
        .arg(format!("-o{}", protoset.display()))
        .arg(&proto)
        .status()
        .unwrap();
    assert!(status.success(), "protoc wrote the protoset");
    let data = r#"data = { message = "x", mood = "HAPPY", inner = { id = 7, tags = ["a"] }, sent = "2024-01-01T00:00:00Z" }"#;
    for (schema, want) in [
        (
            format!("proto = [{:?}]\n{data}", proto.display().to_string()),
            "proto files",
        ),
        (
            format!("protoset = {:?}\n{data}", protoset.display().to_string()),
            "protoset",
        ),
        (data.to_string(), "server reflection (v1alpha)"),
    ] {
        let s = scenario(
            dir.path(),
            "schema.toml",
            &echo_scenario(&server.address(), &schema, "requests = 20\nconcurrency = 2"),
        );
        let report = run_report(dir.path(), &s);
        assert!(
            report["schema_source"].as_str().unwrap().starts_with(want),
            "{schema}: {}",
            report["schema_source"]
        );
        assert_eq!(num(&report, "totals.ok"), 20.0, "{schema}");
    }
}

#[test]
fn metadata_reaches_the_server_and_statuses_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&[
        "--require-metadata",
        "authorization=Bearer t0ken",
        "--fail-every",
        "4",
    ]);
    let s = scenario(
        dir.path(),
        "md.toml",
        &echo_scenario(
            &server.address(),
            r#"metadata = { authorization = "Bearer t0ken" }
compression = "gzip""#,
            "requests = 40\nconcurrency = 1",
        ),
    );
    let report = run_report(dir.path(), &s);
    let counts = server.stop_with_counts();
    assert_eq!(
        counts["metadata_ok"].as_f64().unwrap(),
        40.0,
        "every request carried the metadata"
    );
    assert_eq!(report["status_codes"]["OK"].as_f64().unwrap(), 30.0);
    assert_eq!(
        report["status_codes"]["UNAVAILABLE"].as_f64().unwrap(),
        10.0
    );
    assert_eq!(report["errors"][0]["message"], "planned failure");
    assert_eq!(report["errors"][0]["count"].as_f64().unwrap(), 10.0);
}

#[test]
fn sigterm_stops_the_run_and_writes_a_whole_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::python(&[]);
    let s = scenario(
        dir.path(),
        "long.toml",
        &echo_scenario(
            &server.address(),
            "timeout = \"2s\"",
            "rate = 100\nconcurrency = 4\nduration = \"60s\"",
        ),
    );
    let out_path = dir.path().join("out").join("report.json");
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let mut child = std::process::Command::new(bin())
        .args([
            "run",
            "-q",
            s.to_str().unwrap(),
            "--out",
            out_path.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Give up if loadagent exits before the server sees a request (it failed to start).
    server.wait_for_line("FIRST", || child.try_wait().ok().flatten().is_some());
    terminate(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    assert_eq!(report["interrupted"], true);
    assert!(num(&report, "duration_seconds") < 30.0);
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().collect();
    assert_eq!(
        entries.len(),
        1,
        "only the report, no temporary file left behind"
    );
    let counts = server.stop_with_counts();
    assert_eq!(
        counts["requests"].as_f64().unwrap(),
        num(&report, "totals.requests"),
        "requests in flight were drained and counted"
    );
}

#[test]
fn templates_lists_and_data_files_reach_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&[]);
    let s = scenario(
        dir.path(),
        "tpl.toml",
        &echo_scenario(
            &server.address(),
            r#"data = { message = "req-{{request_number}}-w{{worker_id}}", inner = { id = "{{request_number}}", tags = ["{{uuid}}"] } }"#,
            "requests = 60\nconcurrency = 1",
        ),
    );
    let r = run_report(dir.path(), &s);
    let counts = server.stop_with_counts();
    assert_eq!(num(&r, "totals.ok"), 60.0, "{}", r["errors"]);
    let messages = counts["messages"].as_object().unwrap();
    assert_eq!(messages.len(), 60, "every request differs: {messages:?}");
    for n in 0..60 {
        assert!(
            messages.contains_key(&format!("req-{n}-w0")),
            "req-{n}-w0 missing"
        );
    }
    assert_eq!(
        counts["distinct_ids"].as_f64(),
        Some(60.0),
        "int64 field filled from a template"
    );

    // A list is sent round-robin; a JSON-lines file likewise.
    let server = Server::python(&[]);
    let s = scenario(
        dir.path(),
        "list.toml",
        &echo_scenario(
            &server.address(),
            r#"data = [{ message = "a" }, { message = "b" }]"#,
            "requests = 40\nconcurrency = 2",
        ),
    );
    run_report(dir.path(), &s);
    let counts = server.stop_with_counts();
    assert_eq!(counts["messages"], serde_json::json!({"a": 20, "b": 20}));

    let server = Server::python(&[]);
    std::fs::write(
        dir.path().join("msgs.jsonl"),
        "{\"message\": \"x\"}\n\n{\"message\": \"y\", \"mood\": \"HAPPY\"}\n{\"message\": \"z\"}\n",
    )
    .unwrap();
    let s = scenario(
        dir.path(),
        "file.toml",
        &echo_scenario(
            &server.address(),
            r#"data_file = "msgs.jsonl""#,
            "requests = 30\nconcurrency = 3",
        ),
    );
    run_report(dir.path(), &s);
    let counts = server.stop_with_counts();
    assert_eq!(
        counts["messages"],
        serde_json::json!({"x": 10, "y": 10, "z": 10})
    );
}

#[test]
fn bad_templates_and_data_files_are_rejected_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&[]);
    std::fs::write(
        dir.path().join("bad.jsonl"),
        "{\"message\": \"ok\"}\nnot json\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("wrong.jsonl"),
        "{\"message\": \"ok\"}\n{\"nosuch\": 1}\n",
    )
    .unwrap();
    for (call, words) in [
        (
            r#"data = { message = "{{nope}}" }"#,
            "not a template function",
        ),
        (
            r#"data = { mood = "{{random_int(1, 2)}}" }"#,
            "does not fit",
        ),
        (
            r#"data = { message = "{{random_int(5)}}" }"#,
            "random_int takes two whole numbers",
        ),
        (
            r#"data_file = "bad.jsonl""#,
            "bad.jsonl:2: not a JSON object",
        ),
        (r#"data_file = "missing.jsonl""#, "cannot read"),
        (
            r#"data_file = "wrong.jsonl""#,
            "unrecognized field name 'nosuch'",
        ),
        (r#"data = []"#, "an empty list sends nothing"),
    ] {
        let s = scenario(
            dir.path(),
            "bad.toml",
            &echo_scenario(&server.address(), call, "requests = 1"),
        );
        let out = loadagent(&["validate", s.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{call}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(words),
            "{call}: {}",
            text(&out)
        );
    }
}
