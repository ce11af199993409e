//! `run --remote-write URL` against a real Prometheus (its remote-write receiver): after a
//! run, PromQL gives the report's counts; a receiver that fails and recovers gets every batch
//! once, in order; one that refuses (4xx) is not retried; one that is down costs the run
//! nothing but a counted, said-once error.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const SCENARIO: &str = r#"
name = "pushed"
kind = "unary"
[target]
address = "embedded"
[call]
method = "loadagent.bench.v1.Bench/Unary"
data = { error_code = 0 }
[load]
rate = 200
duration = "3s"
"#;

fn receiver(dir: &Path) -> Prometheus {
    Prometheus::start_with(
        dir,
        "global:\n  scrape_interval: 1m\n",
        &["--web.enable-remote-write-receiver"],
    )
}

fn write_url(addr: &str) -> String {
    format!("http://{addr}/api/v1/write")
}

/// Runs the scenario pushing to `url`: (exit code, stdout, stderr, report).
fn run_pushing(dir: &Path, url: &str, extra: &[&str]) -> (Option<i32>, String, String, Value) {
    let scenario = scenario(dir, "pushed.toml", SCENARIO);
    let out_path = dir.join("pushed.json");
    let mut args = vec![
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out_path.to_str().unwrap(),
        "-q",
        "--remote-write",
        url,
    ];
    args.extend_from_slice(extra);
    let out = loadagent(&args);
    let report = std::fs::read_to_string(&out_path)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    )
}

/// Prometheus holds the report's request count and latency count.
fn assert_prometheus_has_the_report(prometheus: &Prometheus, report: &Value) {
    let requests = num(report, "totals.requests");
    assert!(requests >= 500.0, "{report}");
    eventually(20, || {
        let get = |expr: &str| prometheus.value(expr);
        let pushed = get("sum(loadagent_run_requests_total{scenario=\"pushed\"})")?;
        let latencies =
            get("loadagent_run_latency_seconds_count{scenario=\"pushed\",latency=\"corrected\"}")?;
        let ok = get("loadagent_run_requests_total{scenario=\"pushed\",status=\"OK\"}")?;
        if (pushed, latencies, ok) != (requests, requests, requests) {
            return Err(format!(
                "pushed {pushed} requests, {latencies} latencies, {ok} OK; the report has {requests}"
            ));
        }
        Ok(())
    });
}

fn sent(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("remote"))
        .unwrap_or_else(|| panic!("no remote line: {stdout}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_run_pushes_what_its_report_says() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = receiver(dir.path());
    eventually(20, || prometheus.query("up").map(|_| ()));
    let (code, stdout, stderr, report) = run_pushing(dir.path(), &write_url(&prometheus.api), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        sent(&stdout) >= 2,
        "pushed during the run and at its end: {stdout}"
    );
    assert!(
        stdout.contains("(0 retried, 0 refused, 0 lost)"),
        "{stdout}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_prometheus_has_the_report(&prometheus, &report);
}

#[test]
fn a_receiver_that_fails_then_recovers_gets_every_batch_once() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = receiver(dir.path());
    eventually(20, || prometheus.query("up").map(|_| ()));
    let upstream = write_url(&prometheus.api);
    let proxy = Server::remote_write_proxy(&["--upstream", &upstream, "--fail-first", "3"]);
    let proxy_addr = format!("127.0.0.1:{}", proxy.port);
    let (code, stdout, stderr, report) = run_pushing(dir.path(), &write_url(&proxy_addr), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(
        stderr.matches("warning: remote write").count(),
        1,
        "said once: {stderr}"
    );
    assert!(stderr.contains("HTTP 500"), "{stderr}");
    let (_, stats) = http_get(&proxy_addr, "/stats");
    let stats: Value = serde_json::from_str(&stats).unwrap();
    let posts: Vec<&str> = stats["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let forwarded: Vec<&str> = stats["forwarded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    // The first three attempts failed and were sent again; every batch got through once.
    assert!(posts.len() > 3, "{posts:?}");
    let unique: std::collections::BTreeSet<&&str> = forwarded.iter().collect();
    assert_eq!(
        unique.len(),
        forwarded.len(),
        "a batch accepted twice: {forwarded:?}"
    );
    assert_eq!(forwarded.len() as u64, sent(&stdout), "{stdout}");
    assert_eq!(
        posts.len(),
        forwarded.len() + 3,
        "retried exactly the failed ones: {stdout}"
    );
    assert!(
        stdout.contains("(3 retried, 0 refused, 0 lost)"),
        "{stdout}"
    );
    assert_prometheus_has_the_report(&prometheus, &report);
}

#[test]
fn a_refusing_receiver_is_not_retried_and_a_dead_one_costs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // 400 to everything: each batch is sent once and counted refused.
    let proxy = Server::remote_write_proxy(&["--fail-first", "1000000", "--status", "400"]);
    let proxy_addr = format!("127.0.0.1:{}", proxy.port);
    let (code, stdout, stderr, report) = run_pushing(dir.path(), &write_url(&proxy_addr), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (_, stats) = http_get(&proxy_addr, "/stats");
    let stats: Value = serde_json::from_str(&stats).unwrap();
    let posts = stats["posts"].as_array().unwrap().len();
    assert!(posts >= 2, "{stats}");
    assert!(
        stdout.contains(&format!(
            "0 pushes to http://{proxy_addr}/api/v1/write (0 retried, {posts} refused, 0 lost)"
        )),
        "{stdout}"
    );
    assert_eq!(
        stderr.matches("warning: remote write").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("HTTP 400"), "{stderr}");
    assert_eq!(num(&report, "totals.requests"), 600.0);

    // Nothing listens: the run ends as without remote write, the loss counted and said once.
    let dead = format!("127.0.0.1:{}", free_port());
    let (code, stdout, stderr, report) = run_pushing(dir.path(), &write_url(&dead), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(
        stderr.matches("warning: remote write").count(),
        1,
        "{stderr}"
    );
    assert!(stdout.contains("0 pushes to"), "{stdout}");
    assert!(
        !stdout.contains(" 0 lost)"),
        "the undelivered batches are counted: {stdout}"
    );
    assert_eq!(num(&report, "totals.requests"), 600.0);
}

#[test]
fn bad_remote_write_flags_are_refused_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("empty-token");
    std::fs::write(&token, "\n").unwrap();
    for (extra, url, words) in [
        (vec![], "ftp://x/y", "http and https"),
        (
            vec!["--remote-write-header", "nope"],
            "http://127.0.0.1:1/w",
            "NAME=VALUE",
        ),
        (
            vec!["--remote-write-bearer-token-file", "/nonexistent/token"],
            "http://127.0.0.1:1/w",
            "--remote-write: bearer token file",
        ),
        (
            vec!["--remote-write-bearer-token-file", token.to_str().unwrap()],
            "http://127.0.0.1:1/w",
            "the file is empty",
        ),
    ] {
        let (code, stdout, stderr, _) = run_pushing(dir.path(), url, &extra);
        assert_eq!(code, Some(2), "{extra:?}: {stdout}{stderr}");
        assert!(stderr.contains(words), "{words} in {stderr}");
        assert!(!stdout.contains("result"), "no run: {stdout}");
    }
}

/// The agent pushes its scheduled runs' series after each run, with the token and headers of
/// its `[remote_write]`, labelled as a scrape would label them.
#[test]
fn the_agent_pushes_scheduled_runs() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = receiver(dir.path());
    eventually(20, || prometheus.query("up").map(|_| ()));
    let upstream = write_url(&prometheus.api);
    let proxy = Server::remote_write_proxy(&["--upstream", &upstream]);
    scenario(
        dir.path(),
        "short.toml",
        &SCENARIO.replace("duration = \"3s\"", "duration = \"1s\""),
    );
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    let agent = start_agent(
        dir.path(),
        &format!(
            "[[schedules]]\nscenario = \"short.toml\"\nevery = \"2s\"\n\n[remote_write]\nurl = \"http://127.0.0.1:{}/api/v1/write\"\nbearer_token_file = \"token\"\nheaders = {{ X-Scope-OrgID = \"team-a\" }}\n",
            proxy.port
        ),
    );
    eventually(60, || {
        let r = prometheus
            .query("sum(loadagent_run_requests_total{job=\"loadagent\",scenario=\"pushed\"})")?;
        let v: f64 = r[0]["value"][1]
            .as_str()
            .ok_or(format!("nothing yet: {r}"))?
            .parse()
            .unwrap();
        // Two runs of 200 at least: pushed after each.
        if v >= 400.0 {
            Ok(())
        } else {
            Err(format!("{v}"))
        }
    });
    let info = prometheus
        .query("loadagent_node_info{job=\"loadagent\"}")
        .unwrap();
    assert!(
        !info[0]["metric"]["instance"].as_str().unwrap().is_empty(),
        "{info}"
    );
    let (_, stats) = http_get(&format!("127.0.0.1:{}", proxy.port), "/stats");
    let stats: Value = serde_json::from_str(&stats).unwrap();
    for h in stats["headers"].as_array().unwrap() {
        assert_eq!(h[0], "Bearer s3cret");
        assert_eq!(h[1], "team-a");
    }
    drop(agent);
}
