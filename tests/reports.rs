//! Reports people use: thresholds, HTML (rendered in a real browser), HdrHistogram interval
//! logs read by a library this project did not write, CSV, saved reports and merging.

mod common;

use std::process::Command;

use common::*;

fn bench(extra_call: &str, load: &str, thresholds: &str) -> String {
    format!(
        r#"
name = "reports"
kind = "unary"
[target]
address = "embedded"
[call]
method = "loadagent.bench.v1.Bench/Unary"
data = {{ payload_size = 16{extra_call} }}
timeout = "2s"
[load]
{load}
{thresholds}
"#
    )
}

fn run(
    dir: &std::path::Path,
    name: &str,
    text: &str,
    extra: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let s = scenario(dir, name, text);
    let out_path = dir.join(format!("{name}.json"));
    let mut args = vec![
        "run",
        "-q",
        s.to_str().unwrap(),
        "--out",
        out_path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = loadagent(&args);
    let report = std::fs::read_to_string(&out_path)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or_default();
    (out, report)
}

#[test]
fn thresholds_pass_fail_and_set_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let th = "[thresholds]\n\"latency.p99\" = \"< 2s\"\n\"error_rate\" = \"< 0.01\"\n\"rps\" = \"> 90000\"\n\"totals.requests\" = \">= 100\"";
    let (out, r) = run(
        dir.path(),
        "th",
        &bench("", "rate = 100\nduration = \"1s\"", th),
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let results = r["thresholds"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    let verdict = |m: &str| {
        results.iter().find(|t| t["metric"] == m).unwrap()["passed"]
            .as_bool()
            .unwrap()
    };
    assert!(verdict("latency.p99") && verdict("error_rate") && verdict("totals.requests"));
    assert!(!verdict("rps"), "90000 rps was not reached");
    assert_eq!(
        results
            .iter()
            .find(|t| t["metric"] == "latency.p99")
            .unwrap()["unit"],
        "us"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAILED  rps > 90000"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 4 thresholds failed"));

    let (out, _) = run(
        dir.path(),
        "ok",
        &bench(
            "",
            "rate = 100\nduration = \"1s\"",
            "[thresholds]\n\"latency.p99\" = \"< 2s\"",
        ),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn bad_thresholds_are_rejected_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    for (th, words) in [
        ("\"latency.p99\" = \"<< 5ms\"", "not a number"),
        (
            "\"latency.p99\" = \"< 5 parsecs\"",
            "unknown unit `parsecs`",
        ),
        (
            "\"phases.tls_handshake.p99\" = \"< 20ms\"",
            "the report has no `phases`",
        ),
        (
            "\"latency.p99\" = \"< 5\"",
            "is a latency: give the limit a unit",
        ),
        ("\"rps\" = \"> 5ms\"", "is not a latency"),
    ] {
        let s = scenario(
            dir.path(),
            "bad.toml",
            &bench(
                "",
                "rate = 100\nduration = \"1s\"",
                &format!("[thresholds]\n{th}"),
            ),
        );
        let out = loadagent(&["validate", s.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{th}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        let line = std::fs::read_to_string(&s)
            .unwrap()
            .lines()
            .position(|l| l == th)
            .unwrap()
            + 1;
        assert!(
            err.contains(&format!("{}:{line}:", s.display())) && err.contains(words),
            "{th}: {err}"
        );
    }
}

#[test]
fn abort_on_fail_stops_the_run_early() {
    let dir = tempfile::tempdir().unwrap();
    let (out, r) = run(
        dir.path(),
        "abort",
        &bench(
            ", error_code = 14",
            "rate = 50\nduration = \"60s\"",
            "[thresholds]\nabort_on_fail = true\n\"error_rate\" = \"< 0.5\"",
        ),
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        num(&r, "duration_seconds") < 10.0,
        "stopped within a few intervals"
    );
    assert_eq!(r["aborted_by_threshold"], "error_rate < 0.5");
    assert_eq!(r["interrupted"], true);
}

#[test]
fn interval_log_is_read_by_hdrhistogram_with_the_reports_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let hlog = dir.path().join("run.hlog");
    let csv = dir.path().join("run.csv");
    let (out, r) = run(
        dir.path(),
        "hlog",
        &bench(", delay_ms = 3", "rate = 150\nduration = \"3s\"", ""),
        &[
            "--hlog",
            hlog.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let py = Command::new("python3")
        .arg(repo().join("tests/python/hlog_percentiles.py"))
        .arg(&hlog)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    for tag in ["corrected", "uncorrected"] {
        for key in ["count", "p50_us", "p90_us", "p99_us", "max_us", "min_us"] {
            assert_eq!(
                read[tag][key].as_f64(),
                r["latency"][tag][key].as_f64(),
                "{tag}.{key}: {read}"
            );
        }
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("t_seconds,requests,ok,errors,rps,p50_us,p99_us,max_us")
    );
    let rows: Vec<Vec<u64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), r["intervals"].as_array().unwrap().len());
    assert_eq!(
        rows.iter().map(|r| r[1]).sum::<u64>() as f64,
        num(&r, "totals.requests")
    );
}

#[test]
fn html_report_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let (out, _) = run(
        dir.path(),
        "html",
        &bench(
            ", delay_ms = 2",
            "rate = 100\nduration = \"2s\"",
            "[thresholds]\n\"latency.p99\" = \"< 1s\"",
        ),
        &["--html", html.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && page.contains("Latency by percentile") && page.contains("99.9%")
    );
    // The only URL in the page is the SVG namespace: nothing is fetched.
    assert_eq!(
        page.matches("http").count(),
        page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
        "no network fetches"
    );
    assert!(!page.contains("<script"), "plots need no JavaScript");

    let png = dir.path().join("shot.png");
    let profile = tempfile::tempdir().unwrap();
    let shot = Command::new("timeout")
        .args([
            "60",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium runs (tests/setup.sh installs it)");
    assert!(
        png.exists(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    let pixels = bytes.len() / channels;
    let non_white = bytes
        .chunks(channels)
        .filter(|p| p[..3].iter().any(|c| *c < 200))
        .count();
    let coloured = bytes
        .chunks(channels)
        .filter(|p| p[0] > 150 && p[1] < 100 && p[2] < 100)
        .count();
    assert!(
        non_white * 100 > pixels,
        "the page is blank: {non_white} of {pixels} pixels drawn"
    );
    assert!(
        coloured > 100,
        "the red corrected-latency line is drawn: {coloured} red pixels"
    );
}

#[test]
fn saved_reports_render_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = run(
        dir.path(),
        "saved",
        &bench("", "requests = 50\nconcurrency = 2", ""),
        &[],
    );
    let saved = dir.path().join("saved.json");
    let html = dir.path().join("saved.html");
    let out = loadagent(&[
        "report",
        saved.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));

    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"schema": "loadagent.report/v0"}"#).unwrap();
    let out = loadagent(&["report", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("schema loadagent.report/v1 (its schema: loadagent.report/v0)"));
    std::fs::write(&other, "not json").unwrap();
    let out = loadagent(&["report", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not JSON"));
}

#[test]
fn merge_adds_histograms_and_counts_and_refuses_other_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let (_, a) = run(
        dir.path(),
        "a",
        &bench(", delay_ms = 1", "requests = 120\nconcurrency = 4", ""),
        &[],
    );
    let (_, b) = run(
        dir.path(),
        "b",
        &bench(", delay_ms = 8", "requests = 80\nconcurrency = 4", ""),
        &[],
    );
    let merged_path = dir.path().join("m.json");
    let (pa, pb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let out = loadagent(&[
        "merge",
        pa.to_str().unwrap(),
        pb.to_str().unwrap(),
        "--out",
        merged_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged_path).unwrap()).unwrap();
    assert_eq!(num(&m, "totals.requests"), 200.0);
    assert_eq!(num(&m, "latency.uncorrected.count"), 200.0);
    assert_eq!(
        num(&m, "latency.uncorrected.max_us"),
        num(&a, "latency.uncorrected.max_us").max(num(&b, "latency.uncorrected.max_us"))
    );
    assert_eq!(
        num(&m, "latency.uncorrected.min_us"),
        num(&a, "latency.uncorrected.min_us").min(num(&b, "latency.uncorrected.min_us"))
    );
    let p50 = num(&m, "latency.uncorrected.p50_us");
    assert!(
        p50 >= num(&a, "latency.uncorrected.p50_us")
            && p50 <= num(&b, "latency.uncorrected.p50_us"),
        "merged p50 lies between"
    );
    assert!(
        (num(&m, "totals.rps") - num(&a, "totals.rps") - num(&b, "totals.rps")).abs() < 0.01,
        "rates are summed"
    );
    assert_eq!(m["merged_from"].as_array().unwrap().len(), 2);

    let other = dir.path().join("c.json");
    let mut c = a.clone();
    c["name"] = "another".into();
    std::fs::write(&other, c.to_string()).unwrap();
    let out = loadagent(&[
        "merge",
        pa.to_str().unwrap(),
        other.to_str().unwrap(),
        "--out",
        merged_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let out = loadagent(&[
        "merge",
        pa.to_str().unwrap(),
        other.to_str().unwrap(),
        "--out",
        merged_path.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged_path).unwrap()).unwrap();
    assert_eq!(m["merge_forced"], true);
}

/// Forged or damaged numbers and times are refused naming the field (exit 2), and nothing
/// merge writes is refused when read back.
#[test]
fn merge_refuses_forged_figures_and_writes_only_what_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (_, a) = run(
        dir.path(),
        "a",
        &bench("", "rate = 200\nduration = \"1s\"\nwarmup = \"0s\"", ""),
        &[],
    );
    let merged = dir.path().join("m.json");
    let merge = |x: &serde_json::Value, y: &serde_json::Value| {
        let (px, py) = (dir.path().join("x.json"), dir.path().join("y.json"));
        std::fs::write(&px, x.to_string()).unwrap();
        std::fs::write(&py, y.to_string()).unwrap();
        let _ = std::fs::remove_file(&merged);
        loadagent(&[
            "merge",
            px.to_str().unwrap(),
            py.to_str().unwrap(),
            "--out",
            merged.to_str().unwrap(),
        ])
    };
    let forged = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = a.clone();
        f(&mut v);
        v
    };
    let big = 1u64 << 52;
    let cases: Vec<(serde_json::Value, serde_json::Value, &str)> = vec![
        (
            forged(&|v| v["started_at"] = "garbage".into()),
            a.clone(),
            "`started_at`",
        ),
        (
            forged(&|v| v["duration_seconds"] = (-5).into()),
            a.clone(),
            "`duration_seconds`",
        ),
        (
            forged(&|v| v["totals"]["rps"] = 1.5e308.into()),
            forged(&|v| v["totals"]["rps"] = 1.5e308.into()),
            "`totals.rps`",
        ),
        (
            forged(&|v| {
                v["totals"]["requests"] = big.into();
                v["totals"]["ok"] = big.into();
            }),
            forged(&|v| {
                v["totals"]["requests"] = big.into();
                v["totals"]["ok"] = big.into();
            }),
            "`totals.requests`",
        ),
        (
            forged(&|v| {
                let n = v["intervals"][0]["requests"].as_u64().unwrap();
                v["intervals"][0]["requests"] = (n + 1).into();
            }),
            a.clone(),
            "`intervals[0].hdr` counts",
        ),
        (
            forged(&|v| {
                v["shard"] = serde_json::json!({"index": 0, "count": 2});
                v["load"]["rate"] = 100.into();
            }),
            forged(&|v| v["shard"] = serde_json::json!({"index": 1, "count": 2})),
            "load.rate",
        ),
    ];
    for (x, y, says) in cases {
        let out = merge(&x, &y);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{says}: {said}");
        assert!(said.contains(says), "{says}: {said}");
        assert!(!merged.exists(), "{says}: nothing written");
    }
    // A merge that succeeds reads back, with `report` and with `merge` again.
    let out = merge(&a, &a);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let back = loadagent(&["report", merged.to_str().unwrap()]);
    assert_eq!(back.status.code(), Some(0), "{}", text(&back));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged).unwrap()).unwrap();
    let again = merge(&m, &a);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
}
