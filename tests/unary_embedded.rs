//! `loadagent run` and `validate` against the built-in reference target.

mod common;

use common::*;

#[test]
fn shipped_scenarios_validate() {
    for entry in std::fs::read_dir(repo().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        let out = loadagent(&["validate", path.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            text(&out)
        );
    }
}

#[test]
fn closed_model_sends_exactly_the_requests_asked() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "c.toml",
        &bench_scenario(
            "embedded",
            "{ payload_size = 128 }",
            "requests = 500\nconcurrency = 8\nwarmup = \"200ms\"",
        ),
    );
    let r = run_report(dir.path(), &s);
    assert_eq!(num(&r, "totals.requests"), 500.0);
    assert_eq!(num(&r, "totals.ok"), 500.0);
    assert_eq!(r["load"]["model"], "closed");
    assert!(
        r["latency"]["corrected"].is_null(),
        "no corrected histogram in the closed model"
    );
    assert_eq!(num(&r, "latency.uncorrected.count"), 500.0);
    assert_eq!(r["schema"], "loadagent.report/v1");
    for key in [
        "arch",
        "os",
        "cpu_model",
        "kernel",
        "hostname",
        "loadagent_version",
    ] {
        assert!(
            r["platform"][key].as_str().is_some_and(|s| !s.is_empty()),
            "platform.{key}"
        );
    }
    assert!(num(&r, "platform.logical_cpus") >= 1.0);
    assert!(num(&r, "process.peak_rss_bytes") > 1_000_000.0);
}

#[test]
fn reference_target_delay_and_error_status() {
    let dir = tempfile::tempdir().unwrap();
    let target = Server::reference_target();
    let s = scenario(
        dir.path(),
        "d.toml",
        &bench_scenario(
            &target.address(),
            "{ delay_ms = 25 }",
            "rate = 40\nconcurrency = 8\nduration = \"2s\"",
        ),
    );
    let r = run_report(dir.path(), &s);
    let p50 = num(&r, "latency.uncorrected.p50_us");
    assert!(
        (25_000.0..=32_000.0).contains(&p50),
        "p50 {p50}us for a 25ms delay"
    );
    // One interval per second, by completion time: the last requests may end after 2s.
    let intervals = r["intervals"].as_array().unwrap();
    assert!((2..=3).contains(&intervals.len()), "{}", r["intervals"]);
    let summed: f64 = intervals.iter().map(|i| num(i, "requests")).sum();
    assert_eq!(
        summed,
        num(&r, "totals.requests"),
        "intervals add up to the totals"
    );
    assert!(
        (37.0..=41.0).contains(&num(&intervals[0], "requests")),
        "interval 0: {}",
        intervals[0]
    );

    let s = scenario(
        dir.path(),
        "e.toml",
        &bench_scenario(
            &target.address(),
            r#"{ error_code = 8, error_message = "too busy" }"#,
            "requests = 30\nconcurrency = 3",
        ),
    );
    let r = run_report(dir.path(), &s);
    assert_eq!(num(&r, "totals.errors"), 30.0);
    assert_eq!(r["status_codes"]["RESOURCE_EXHAUSTED"].as_f64(), Some(30.0));
    assert_eq!(r["errors"][0]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(r["errors"][0]["message"], "too busy");
}

#[test]
fn deadline_exceeded_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "t.toml",
        &bench_scenario(
            "embedded",
            "{ delay_ms = 300 }",
            "requests = 10\nconcurrency = 5",
        )
        .replace("timeout = \"2s\"", "timeout = \"50ms\""),
    );
    let r = run_report(dir.path(), &s);
    // The client's deadline and the server's own (tonic enforces grpc-timeout and answers
    // CANCELLED "Timeout expired") race at 50 ms; either way no call may succeed.
    let codes = &r["status_codes"];
    let expired = codes["DEADLINE_EXCEEDED"].as_f64().unwrap_or(0.0)
        + codes["CANCELLED"].as_f64().unwrap_or(0.0);
    assert_eq!(expired, 10.0, "{codes}");
    assert!(codes["OK"].is_null(), "{codes}");
    assert!(
        num(&r, "latency.uncorrected.max_us") < 250_000.0,
        "calls end at the deadline, not the delay"
    );
}

#[test]
fn stages_ramp_the_rate() {
    // 0 → 200/s over 1s then 200 → 0 over 1s: 100 + 100 requests.
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "ramp.toml",
        &bench_scenario("embedded", "{}", "concurrency = 16\n[[load.stages]]\nduration = \"1s\"\nrate = 200\n[[load.stages]]\nduration = \"1s\"\nrate = 0"),
    );
    let r = run_report(dir.path(), &s);
    let n = num(&r, "totals.requests");
    assert!((199.0..=201.0).contains(&n), "ramp sent {n}");
    assert_eq!(r["load"]["stages"].as_array().unwrap().len(), 2);
}

#[test]
fn gzip_requests_are_accepted_by_the_reference_target() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "gz.toml",
        &bench_scenario(
            "embedded",
            r#"{ payload = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }"#,
            "requests = 50\nconcurrency = 2",
        )
        .replace(
            "timeout = \"2s\"",
            "timeout = \"2s\"\ncompression = \"gzip\"",
        ),
    );
    let r = run_report(dir.path(), &s);
    assert_eq!(num(&r, "totals.ok"), 50.0, "{}", r["errors"]);
}

#[test]
fn validate_reports_ok_without_sending_load() {
    let out = loadagent(&[
        "validate",
        repo().join("scenarios/unary.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}
