//! A weighted mix of calls (`[[calls]]`) on the record of a Python grpcio server: each
//! method's count in the report is the count the server kept, the mix as sent follows the
//! weights within sampling error, each entry's own metadata and deadline reach the server
//! (grpcio's HPACK decoder reads the headers the lean client shares and the ones it sends
//! per entry), thresholds name a method, shards merge into the same mix, and bad mixes are
//! refused naming the key.

mod common;

use common::*;
use serde_json::Value;

const SAY: &str = "/testing.echo.v1.Echo/Say";
const CHECK: &str = "/grpc.health.v1.Health/Check";

/// Say with the metadata the server requires (weight 3), the health check (weight 1), and
/// Say without the metadata (weight 1: the server refuses each as UNAUTHENTICATED).
fn mix(address: &str, load: &str, extra: &str) -> String {
    format!(
        r#"
name = "mix"
kind = "unary"
[target]
address = "{address}"
[[calls]]
method = "testing.echo.v1.Echo/Say"
weight = 3
data = {{ message = "with" }}
metadata = {{ x-who = "say" }}
[[calls]]
method = "grpc.health.v1.Health/Check"
weight = 1
timeout = "2s"
metadata = {{ x-who = "check" }}
[[calls]]
method = "testing.echo.v1.Echo/Say"
weight = 1.0
data = {{ message = "without" }}
[load]
{load}
{extra}
"#
    )
}

fn requests(m: &Value) -> u64 {
    m["requests"].as_u64().unwrap()
}

/// The report's methods agree with the server's counts, and the shares with the weights.
fn check_against_server(report: &Value, counts: &Value) {
    let methods = report["methods"].as_array().expect("methods[]");
    assert_eq!(methods.len(), 3, "{report}");
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "testing.echo.v1.Echo/Say",
            "grpc.health.v1.Health/Check",
            "testing.echo.v1.Echo/Say"
        ]
    );
    let [with, check, without] = [&methods[0], &methods[1], &methods[2]];
    let total = report["totals"]["requests"].as_u64().unwrap();
    assert_eq!(
        requests(with) + requests(check) + requests(without),
        total,
        "the methods add up to the totals"
    );
    // Every call the report counts, the server received, by method.
    let calls = &counts["calls"];
    assert_eq!(
        calls[SAY].as_u64().unwrap(),
        requests(with) + requests(without),
        "{calls}"
    );
    assert_eq!(calls[CHECK].as_u64().unwrap(), requests(check), "{calls}");
    // Each entry's own metadata: only the first entry's Say calls carried x-who=say.
    assert_eq!(counts["metadata_ok"].as_u64().unwrap(), requests(with));
    assert_eq!(with["ok"], with["requests"]);
    assert_eq!(check["ok"], check["requests"]);
    assert_eq!(without["errors"], without["requests"]);
    assert_eq!(
        without["status_codes"]["UNAUTHENTICATED"].as_u64(),
        Some(requests(without))
    );
    // Shares within four standard deviations of the weights' (3:1:1).
    for (m, share) in [(with, 0.6), (check, 0.2), (without, 0.2)] {
        let want = total as f64 * share;
        let sd = (total as f64 * share * (1.0 - share)).sqrt();
        assert!(
            (requests(m) as f64 - want).abs() <= 4.0 * sd,
            "{} of {total} for weight share {share}: {report}",
            requests(m)
        );
        assert!(m["latency"]["corrected"]["p99_us"].as_u64().unwrap() > 0);
    }
}

#[test]
fn a_mix_reaches_the_server_as_weighted_with_each_entrys_metadata() {
    // The lean client (the default), and h2's.
    for transport in ["", "transport = \"h2\"\n"] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::python(&["--require-metadata", "x-who=say"]);
        let s = scenario(
            dir.path(),
            "mix.toml",
            &mix(
                &server.address(),
                "rate = 500\nduration = \"3s\"\nconcurrency = 32\nconnections = 2",
                // A method's figures in a threshold: the failing third entry's error rate.
                "[thresholds]\n\"methods.0.error_rate\" = \"< 0.01\"\n\"methods.2.error_rate\" = \"> 0.99\"\n\"methods.1.latency.p99\" = \"< 2s\"",
            )
            .replace("[[calls]]\n", &format!("[[calls]]\n{transport}")),
        );
        let report = run_report(dir.path(), &s);
        let counts = server.stop_with_counts();
        assert_eq!(report["totals"]["requests"], 1500, "{transport}: {report}");
        // Each entry says `transport = "h2"`: the mix goes on h2, not the lean client (whose
        // connections the report counts).
        assert_eq!(
            report["connections"].is_null(),
            !transport.is_empty(),
            "{transport}: {report}"
        );
        check_against_server(&report, &counts);
        let thresholds = report["thresholds"].as_array().unwrap();
        assert_eq!(thresholds.len(), 3);
        assert!(thresholds.iter().all(|t| t["passed"] == true), "{report}");
        // The summary shows the mix as a table.
        let out = loadagent(&["report", dir.path().join("report.json").to_str().unwrap()]);
        let said = text(&out);
        assert!(said.contains("methods   a mix of 3"), "{said}");
        assert!(said.contains("grpc.health.v1.Health/Check"), "{said}");
    }
}

#[test]
fn a_mix_over_grpc_web_sends_each_entrys_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python_web(&[]);
    let s = scenario(
        dir.path(),
        "web.toml",
        &format!(
            r#"
kind = "unary"
[target]
address = "{}"
protocol = "grpc-web"
[[calls]]
method = "testing.echo.v1.Echo/Say"
proto = ["{proto}"]
weight = 3
data = {{ message = "kept" }}
[[calls]]
method = "testing.echo.v1.Echo/Say"
proto = ["{proto}"]
data = {{ message = "fail:UNAVAILABLE:asked" }}
[load]
concurrency = 4
requests = 400
"#,
            server.address(),
            proto = echo_proto()
        ),
    );
    let report = run_report(dir.path(), &s);
    let counts = server.stop_with_counts();
    let methods = report["methods"].as_array().unwrap();
    let messages = &counts["messages"];
    assert_eq!(
        messages["kept"].as_u64(),
        Some(requests(&methods[0])),
        "{counts}"
    );
    assert_eq!(
        messages["fail:UNAVAILABLE:asked"].as_u64(),
        Some(requests(&methods[1])),
        "{counts}"
    );
    assert_eq!(requests(&methods[0]) + requests(&methods[1]), 400);
    assert_eq!(methods[0]["ok"], methods[0]["requests"]);
    assert_eq!(
        methods[1]["status_codes"]["UNAVAILABLE"].as_u64(),
        Some(requests(&methods[1]))
    );
    // 3:1 within four standard deviations (sd of 400 draws at 1/4: 8.7).
    assert!(
        (requests(&methods[1]) as f64 - 100.0).abs() <= 35.0,
        "{report}"
    );
}

#[test]
fn shards_of_a_mix_merge_into_the_servers_counts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&["--require-metadata", "x-who=say"]);
    let s = scenario(
        dir.path(),
        "mix.toml",
        &mix(&server.address(), "concurrency = 4\nrequests = 800", ""),
    );
    let mut outs = Vec::new();
    for i in 0..2 {
        let out = dir.path().join(format!("shard-{i}.json"));
        let run = loadagent(&[
            "run",
            "-q",
            s.to_str().unwrap(),
            "--shard",
            &format!("{i}/2"),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(run.status.code(), Some(0), "{}", text(&run));
        outs.push(out);
    }
    let report = merge_reports(&outs, &dir.path().join("merged.json"));
    let counts = server.stop_with_counts();
    assert_eq!(report["totals"]["requests"], 800, "{report}");
    // The closed model has no corrected latency: the shares and counts are what matter.
    let methods = report["methods"].as_array().unwrap();
    let calls = &counts["calls"];
    assert_eq!(
        calls[SAY].as_u64().unwrap(),
        requests(&methods[0]) + requests(&methods[2])
    );
    assert_eq!(calls[CHECK].as_u64().unwrap(), requests(&methods[1]));
    assert_eq!(
        counts["metadata_ok"].as_u64().unwrap(),
        requests(&methods[0])
    );
}

#[test]
fn bad_mixes_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = mix("127.0.0.1:1", "requests = 1", "");
    let with_call = format!("{base}\n[call]\nmethod = \"a.B/C\"\n");
    for (name, text_of, want) in [
        (
            "zero",
            base.replacen("weight = 3", "weight = 0", 1),
            "`calls[0].weight`: 0 is not valid: it must be a finite number greater than zero",
        ),
        (
            "negative",
            base.replacen("weight = 3", "weight = -2", 1),
            "`calls[0].weight`",
        ),
        (
            "string",
            base.replacen("weight = 3", "weight = \"heavy\"", 1),
            "`calls[0].weight`: expected a number",
        ),
        (
            "both",
            with_call,
            "give `[call]` (one method) or `[[calls]]` entries",
        ),
        (
            "stream",
            base.replacen("kind = \"unary\"", "kind = \"bidi_stream\"", 1),
            "a mix of calls is for kind = \"unary\"",
        ),
        (
            "transport",
            base.replacen("weight = 1\n", "weight = 1\ntransport = \"h2\"\n", 1),
            "`calls[1].transport`",
        ),
        (
            "method",
            base.replacen("grpc.health.v1.Health/Check", "Check", 1),
            "`calls[1].method`",
        ),
    ] {
        let s = scenario(dir.path(), &format!("{name}.toml"), &text_of);
        let out = loadagent(&["validate", s.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(text(&out).contains(want), "{name}: {}", text(&out));
    }
    // A method the server does not have: refused before any load, naming the entry.
    let server = Server::python(&[]);
    let s = scenario(
        dir.path(),
        "missing.toml",
        &mix(&server.address(), "requests = 10", "").replacen(
            "grpc.health.v1.Health/Check",
            "testing.echo.v1.Echo/Shout",
            1,
        ),
    );
    let out = loadagent(&["run", "-q", s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("Shout"), "{}", text(&out));
    let counts = server.stop_with_counts();
    assert!(
        counts["calls"].get(SAY).is_none(),
        "no load was sent: {counts}"
    );
}

/// The values of `key` the server received.
fn recorded(counts: &Value, key: &str) -> Vec<String> {
    counts["recorded_metadata"][key]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn metadata_templates_are_rendered_per_call_on_every_client() {
    let metadata = r#"metadata = { x-request-id = "req-{{request_number}}", x-uuid = "{{uuid}}", x-color = "{{random_choice(red, green)}}", x-fixed = "same" }"#;
    for (what, kind, call_extra) in [
        ("lean unary", "unary", ""),
        ("h2 unary", "unary", "transport = \"h2\""),
        ("bidi streams", "bidi_stream", ""),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::python(&[
            "--record-metadata",
            "x-request-id",
            "--record-metadata",
            "x-uuid",
            "--record-metadata",
            "x-color",
            "--record-metadata",
            "x-fixed",
        ]);
        let method = if kind == "unary" { "Say" } else { "Chat" };
        let s = scenario(
            dir.path(),
            "t.toml",
            &format!(
                r#"
kind = "{kind}"
[target]
address = "{}"
[call]
method = "testing.echo.v1.Echo/{method}"
{metadata}
{call_extra}
[load]
concurrency = 2
requests = 40
"#,
                server.address()
            ),
        );
        run_report(dir.path(), &s);
        let counts = server.stop_with_counts();
        let mut ids = recorded(&counts, "x-request-id");
        ids.sort();
        let mut want: Vec<String> = (0..40).map(|n| format!("req-{n}")).collect();
        want.sort();
        assert_eq!(ids, want, "{what}: one id per request, each number once");
        let uuids: std::collections::BTreeSet<String> =
            recorded(&counts, "x-uuid").into_iter().collect();
        assert_eq!(uuids.len(), 40, "{what}: a new uuid per request");
        let colors: std::collections::BTreeSet<String> =
            recorded(&counts, "x-color").into_iter().collect();
        assert_eq!(
            colors.into_iter().collect::<Vec<_>>(),
            ["green", "red"],
            "{what}"
        );
        assert_eq!(recorded(&counts, "x-fixed"), vec!["same"; 40], "{what}");
    }
}

#[test]
fn bad_metadata_templates_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (name, metadata, want) in [
        (
            "function",
            r#"metadata = { x-id = "{{nope}}" }"#,
            "`call.metadata.x-id`: `{{nope}}` is not a template function",
        ),
        (
            "bin",
            r#"metadata = { x-id-bin = "{{uuid}}" }"#,
            "`call.metadata.x-id-bin`: a \"-bin\" value is base64",
        ),
        (
            "choice",
            r#"metadata = { x-id = "{{random_choice()}}" }"#,
            "random_choice takes",
        ),
    ] {
        let s = scenario(
            dir.path(),
            &format!("{name}.toml"),
            &echo_scenario("127.0.0.1:1", metadata, ""),
        );
        let out = loadagent(&["validate", s.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(text(&out).contains(want), "{name}: {}", text(&out));
    }
}
