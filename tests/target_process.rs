//! The target's side of a run: `[target] process` (by pid file or name, sampled from /proc)
//! and `metrics_url` (a Python grpcio server exposing prometheus_client's default metrics,
//! scraped and parsed). Figures are checked against /proc read by the test itself and
//! against each other.

mod common;

use common::*;

fn proc_cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn proc_rss(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024.0
}

fn ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn within(actual: f64, expected: f64, share: f64) -> bool {
    (actual - expected).abs() <= expected * share
}

#[test]
fn a_python_target_is_sampled_from_proc_and_its_metrics_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("server.pid");
    let port_file = dir.path().join("metrics.port");
    let py = Server::python(&[
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--metrics-port-file",
        port_file.to_str().unwrap(),
    ]);
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let metrics_port = std::fs::read_to_string(&port_file)
        .unwrap()
        .trim()
        .to_string();
    let s = scenario(
        dir.path(),
        "watched.toml",
        &format!(
            "{}\n",
            echo_scenario(&py.address(), "data = { message = \"hello\" }", "rate = 300\nduration = \"3s\"")
                .replace(
                    "[call]",
                    &format!(
                        "process = \"server.pid\"\nmetrics_url = \"http://127.0.0.1:{metrics_port}/metrics\"\n\n[call]"
                    )
                )
        ),
    );
    let ticks_before = proc_cpu_ticks(pid);
    let report = run_report(dir.path(), &s);
    let test_cpu = (proc_cpu_ticks(pid) - ticks_before) as f64 / ticks_per_second();
    let rss_now = proc_rss(pid);
    let t = &report["target_process"];
    assert_eq!(t["pids"], serde_json::json!([pid]), "{t}");
    assert!(t["process"].as_str().unwrap().ends_with("server.pid"));

    // CPU of the measured part: some of what the test saw over the whole command.
    let cpu = num(t, "cpu_seconds");
    assert!(
        cpu > 0.0 && cpu <= test_cpu + 0.05 && cpu >= test_cpu * 0.3,
        "target cpu {cpu}s; /proc over the whole command {test_cpu}s"
    );
    let requests = num(&report, "totals.requests");
    let per_1k = num(t, "cpu_seconds_per_1k_requests");
    assert!((per_1k - cpu / requests * 1000.0).abs() < 1e-5, "{per_1k}");
    // Memory: the sampled peak is the process's RSS (it hardly moves once serving).
    let peak = num(t, "peak_rss_bytes");
    assert!(
        within(peak, rss_now, 0.25),
        "peak {peak} vs /proc now {rss_now}"
    );

    // The endpoint says the same of the same process, through prometheus_client.
    let endpoint_rss = num(t, "process_resident_memory_bytes");
    assert!(
        within(endpoint_rss, peak, 0.25),
        "endpoint {endpoint_rss} vs /proc {peak}"
    );
    let endpoint_cpu = num(t, "process_cpu_seconds_total");
    assert!(
        (endpoint_cpu - cpu).abs() <= 0.3 + cpu * 0.3,
        "endpoint cpu {endpoint_cpu}s vs /proc {cpu}s"
    );
    let runtime = t["runtime"].as_object().unwrap();
    assert!(
        runtime.contains_key("python_gc_objects_collected_total"),
        "{t}"
    );
    assert!(runtime.contains_key("process_open_fds"), "{t}");
    assert!(
        t["errors"].is_null() || t["errors"].as_array().unwrap().is_empty(),
        "{t}"
    );
    // The summary and the HTML page show the target's side too.
    let html = dir.path().join("r.html");
    let out = loadagent(&[
        "report",
        dir.path().join("report.json").to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("  target    "), "{}", text(&out));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("process_resident_memory_bytes"),
        "the Target table"
    );
}

#[test]
fn a_target_found_by_name_and_mistakes_that_exit_2() {
    let target = Server::reference_target();
    let dir = tempfile::tempdir().unwrap();
    let body = |extra: &str| {
        format!(
            r#"
name = "by-name"
kind = "unary"
[target]
address = "{}"
{extra}
[call]
method = "loadagent.bench.v1.Bench/Unary"
[load]
requests = 500
concurrency = 4
"#,
            target.address()
        )
    };
    // By name: the child `loadagent target` (the generator itself is never counted).
    let s = scenario(dir.path(), "named.toml", &body("process = \"loadagent\""));
    let report = run_report(dir.path(), &s);
    let t = &report["target_process"];
    assert_eq!(t["pids"], serde_json::json!([target.child.id()]), "{t}");
    assert!(num(t, "cpu_seconds") > 0.0, "{t}");
    assert!(num(t, "peak_rss_bytes") > 1_000_000.0, "{t}");

    // Thresholds may name the target's figures: they hold, or fail with exit 3.
    let limits = |rss: &str| {
        format!(
            "{}[thresholds]\n\"target_process.peak_rss_bytes\" = \"{rss}\"\n\"target_process.cpu_seconds\" = \">= 0\"\n",
            body("process = \"loadagent\"")
        )
    };
    let s = scenario(dir.path(), "limits.toml", &limits("< 10000000000"));
    let report = run_report(dir.path(), &s);
    assert!(report["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["passed"] == true));
    let s = scenario(dir.path(), "limits.toml", &limits("< 1000"));
    let out = loadagent(&["run", "-q", s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    // Without a watched target there is nothing to hold the threshold against: exit 2.
    let s = scenario(
        dir.path(),
        "unwatched.toml",
        &format!(
            "{}[thresholds]\n\"target_process.peak_rss_bytes\" = \"< 1000\"\n",
            body("")
        ),
    );
    let out = loadagent(&["validate", s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("target_process"), "{}", text(&out));

    let expect_2 = |extra: &str, words: &str| {
        let s = scenario(dir.path(), "bad.toml", &body(extra));
        let out = loadagent(&["run", "-q", s.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{extra}: {}", text(&out));
        assert!(
            text(&out).contains(words),
            "{extra} should say `{words}`: {}",
            text(&out)
        );
    };
    expect_2(
        "process = \"no-such-process-xyz\"",
        "no process named `no-such-process-xyz`",
    );
    expect_2("process = \"missing.pid\"", "cannot read the pid file");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    expect_2(
        &format!("metrics_url = \"http://127.0.0.1:{closed}/metrics\""),
        "[target] metrics_url",
    );
    expect_2(
        "metrics_url = \"https://example.com/metrics\"",
        "only http:// URLs",
    );
    // The reference target's gRPC port does not speak Prometheus.
    let not_metrics = format!("metrics_url = \"http://{}/metrics\"", target.address());
    let s = scenario(dir.path(), "bad.toml", &body(&not_metrics));
    let out = loadagent(&["run", "-q", s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
