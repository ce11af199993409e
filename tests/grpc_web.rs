//! gRPC-Web against a server loadagent did not write: Python sonora under hypercorn
//! (tests/python/web_server.py), binary and text, over HTTP/1.1 and HTTP/2, with and without
//! TLS (mutual TLS included), unary calls and server streams. Counts equal what the server
//! kept; statuses and messages equal what sonora's own client sees; a protocol mismatch
//! either way says which protocol the server speaks. The second implementation is tonic-web
//! (hyper's HTTP/1.1 and HTTP/2) in the reference target: counts, statuses as native gRPC
//! sees them, server streams and TLS.

mod common;

use common::*;

/// The echo service's gRPC-Web scenario, with a 10 s call deadline (sonora under load on a
/// slow machine).
fn web_scenario(
    address: &str,
    kind: &str,
    target_extra: &str,
    call_extra: &str,
    load: &str,
) -> String {
    common::web_scenario(
        address,
        kind,
        target_extra,
        &format!("timeout = \"10s\"\n{call_extra}"),
        load,
    )
}

/// Every gRPC-Web form: (protocol, HTTP version).
const EVERY_FORM: [(&str, &str); 4] = [
    ("grpc-web", "1.1"),
    ("grpc-web", "2"),
    ("grpc-web-text", "1.1"),
    ("grpc-web-text", "2"),
];

fn report_of(dir: &std::path::Path, name: &str, text: &str) -> serde_json::Value {
    let path = scenario(dir, name, text);
    run_report(dir, &path)
}

#[test]
fn every_protocol_and_http_version_counts_what_the_server_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python_web(&[]);
    let mut total = 0;
    // Every form on the default transport (HTTP/1.1 on the lean connection, HTTP/2 on the
    // lean client), then HTTP/1.1 through hyper's client (`transport = "h2"`).
    let forms = EVERY_FORM
        .into_iter()
        .map(|(protocol, http)| (protocol, http, "lean"))
        .chain([("grpc-web", "1.1", "h2"), ("grpc-web-text", "1.1", "h2")]);
    for (i, (protocol, http, transport)) in forms.enumerate() {
        let n = 150 + i as u64;
        let report = report_of(
            dir.path(),
            &format!("web{i}.toml"),
            &web_scenario(
                &server.address(),
                "unary",
                &format!("protocol = \"{protocol}\"\nhttp_version = \"{http}\""),
                &format!("data = {{ message = \"{protocol} {http} {transport} {{{{request_number}}}}\" }}\ntransport = \"{transport}\""),
                &format!("requests = {n}\nconcurrency = 4"),
            ),
        );
        assert_eq!(num(&report, "totals.requests") as u64, n, "{report}");
        assert_eq!(
            num(&report, "totals.ok") as u64,
            n,
            "{protocol} {http}: {report}"
        );
        assert_eq!(
            report["protocol"],
            format!("{protocol} over HTTP/{http}"),
            "{report}"
        );
        // Over HTTP/2 the calls go on the lean client, which reports its connections.
        if http == "2" && transport == "lean" {
            assert_eq!(num(&report, "connections.opened"), 1.0, "{report}");
            assert!(num(&report, "connections.socket_writes") >= 1.0, "{report}");
        } else {
            assert!(report["connections"].is_null(), "{report}");
        }
        total += n;
    }
    let counts = server.stop_with_counts();
    assert_eq!(counts["unary"].as_u64(), Some(total), "{counts}");
    // Connections: HTTP/1.1 one per worker (4 per run, four runs), HTTP/2 the one
    // `[load] connections` (the default, 1) shared by the workers (two runs).
    assert_eq!(counts["connections"].as_u64(), Some(4 * 4 + 2), "{counts}");
    assert_eq!(
        counts["messages"].as_object().unwrap().len() as u64,
        total,
        "every request rendered its own message: {counts}"
    );
}

#[test]
fn statuses_and_messages_are_what_a_grpc_web_client_sees() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python_web(&[]);
    for message in [
        "fail:NOT_FOUND:no such thing here",
        "fail:RESOURCE_EXHAUSTED:quota 100% used, ünï",
        "fail:PERMISSION_DENIED:",
        "plain",
    ] {
        let client = std::process::Command::new("python3")
            .arg(repo().join("tests/python/web_client.py"))
            .arg(format!("http://{}", server.address()))
            .arg(message)
            .output()
            .unwrap();
        assert!(client.status.success(), "{}", text(&client));
        let seen: serde_json::Value =
            serde_json::from_slice(client.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
        for protocol in ["grpc-web", "grpc-web-text"] {
            let report = report_of(
                dir.path(),
                "status.toml",
                &web_scenario(
                    &server.address(),
                    "unary",
                    &format!("protocol = \"{protocol}\""),
                    &format!("data = {{ message = {} }}", serde_json::json!(message)),
                    "requests = 5\nconcurrency = 1",
                ),
            );
            let code = seen["code"].as_str().unwrap();
            assert_eq!(
                report["status_codes"][code], 5,
                "{protocol} {message}: sonora's client saw {seen}; loadagent: {report}"
            );
            if code != "OK" {
                assert_eq!(
                    report["errors"][0]["message"], seen["details"],
                    "{protocol}: {report}"
                );
            }
        }
    }
    let counts = server.stop_with_counts();
    assert_eq!(counts["unary"].as_u64(), Some(4 * (1 + 2 * 5)), "{counts}");
}

#[test]
fn server_streams_count_every_message_and_tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = Server::python_web(&[
        "--tls-cert",
        &pki.path("server.pem"),
        "--tls-key",
        &pki.path("server.key"),
        "--tls-ca",
        &pki.path("ca.pem"),
    ]);
    let tls = format!(
        "[target.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"",
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key")
    );
    let mut streams = 0;
    for (i, (protocol, http)) in [("grpc-web", "1.1"), ("grpc-web-text", "2")]
        .into_iter()
        .enumerate()
    {
        let report = report_of(
            dir.path(),
            &format!("stream{i}.toml"),
            &web_scenario(
                &format!("localhost:{}", server.port),
                "server_stream",
                &format!("protocol = \"{protocol}\"\nhttp_version = \"{http}\"\n{tls}"),
                "data = { message = \"s\", inner = { id = 7 } }",
                "requests = 20\nconcurrency = 2\nwarmup = \"0s\"",
            ),
        );
        assert_eq!(
            num(&report, "totals.ok"),
            20.0,
            "{protocol} {http}: {report}"
        );
        assert_eq!(num(&report, "messages.received"), 140.0, "{report}");
        // Every stream the server served was opened in the measured part (warm-up 0).
        assert_eq!(
            num(&report, "streams.opened"),
            20.0,
            "{}",
            report["streams"]
        );
        assert_eq!(
            num(&report, "streams.completed"),
            20.0,
            "{}",
            report["streams"]
        );
        streams += 20;
        let report = report_of(
            dir.path(),
            &format!("unary{i}.toml"),
            &web_scenario(
                &format!("localhost:{}", server.port),
                "unary",
                &format!("protocol = \"{protocol}\"\nhttp_version = \"{http}\"\n{tls}"),
                "data = { message = \"over tls\" }",
                "requests = 30\nconcurrency = 3",
            ),
        );
        assert_eq!(num(&report, "totals.ok"), 30.0, "{report}");
    }
    // Without the client certificate the server refuses the handshake.
    let no_cert = format!("[target.tls]\nca = \"{}\"", pki.path("ca.pem"));
    let path = scenario(
        dir.path(),
        "nocert.toml",
        &web_scenario(
            &format!("localhost:{}", server.port),
            "unary",
            &format!("protocol = \"grpc-web\"\n{no_cert}"),
            "",
            "requests = 3\nconcurrency = 1",
        ),
    );
    let out = loadagent(&["run", "-q", path.to_str().unwrap()]);
    let all = text(&out);
    assert!(
        all.contains("UNAVAILABLE") || out.status.code() == Some(1),
        "a handshake without the client certificate fails: {all}"
    );
    let counts = server.stop_with_counts();
    assert_eq!(counts["streams"].as_u64(), Some(streams), "{counts}");
    assert_eq!(
        counts["stream_sent"].as_u64(),
        Some(streams * 7),
        "{counts}"
    );
    assert_eq!(counts["unary"].as_u64(), Some(60), "{counts}");
}

#[test]
fn cors_preflights_go_first_and_a_refusal_fails_the_calls() {
    let dir = tempfile::tempdir().unwrap();
    let cors = "protocol = \"grpc-web\"\ncors_origin = \"https://app.example\"";
    let run = |server: &Server, name: &str| {
        report_of(
            dir.path(),
            name,
            &web_scenario(
                &server.address(),
                "unary",
                cors,
                "data = { message = \"cors\" }",
                "requests = 40\nconcurrency = 4",
            ),
        )
    };
    let allowing = Server::python_web(&[]);
    let report = run(&allowing, "allowed.toml");
    assert_eq!(num(&report, "totals.ok"), 40.0, "{report}");
    let counts = allowing.stop_with_counts();
    assert_eq!(counts["unary"].as_u64(), Some(40), "{counts}");
    assert_eq!(
        counts["preflights"].as_u64(),
        Some(4),
        "one preflight per connection (one per worker): {counts}"
    );

    let other = Server::python_web(&["--allow-origin", "https://other.example"]);
    let report = run(&other, "refused.toml");
    assert_eq!(num(&report, "totals.ok"), 0.0, "{report}");
    let message = report["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("allows origin https://other.example, not https://app.example"),
        "{message}"
    );
    let counts = other.stop_with_counts();
    assert_eq!(
        counts["unary"].as_u64(),
        Some(0),
        "no call after a refusal: {counts}"
    );

    // sonora as it ships answers a preflight with HTTP 500 under hypercorn.
    let as_is = Server::python_web(&["--sonora-as-is"]);
    let report = run(&as_is, "broken.toml");
    assert_eq!(num(&report, "totals.ok"), 0.0, "{report}");
    assert!(report["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("CORS preflight: HTTP status 500"));
}

#[test]
fn a_preflight_answer_that_never_ends_cannot_hold_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // Answers every preflight's head, promises a body and never sends it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            use std::io::{Read, Write};
            let mut conn = conn;
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\naccess-control-allow-origin: *\r\ncontent-length: 100\r\n\r\n",
            );
            held.push(conn);
        }
    });
    let text_ = web_scenario(
        &address,
        "unary",
        "protocol = \"grpc-web\"\ncors_origin = \"https://app.example\"\nconnect_timeout = \"300ms\"",
        "",
        "requests = 3\nconcurrency = 1",
    );
    let report = report_of(dir.path(), "held.toml", &text_);
    assert_eq!(num(&report, "totals.errors"), 3.0, "{report}");
    assert!(report["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("CORS preflight: no whole answer within"));
}

#[test]
fn a_mismatched_protocol_says_which_one_the_server_speaks() {
    let dir = tempfile::tempdir().unwrap();
    let web = Server::python_web(&[]);
    let native = Server::python(&[]);
    // The run stops and fails (exit 1) with the message, as at a target not speaking HTTP/2.
    let fails = |name: &str, text_: String| {
        let path = scenario(dir.path(), name, &text_);
        let out = loadagent(&["run", "-q", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        text(&out)
    };
    // Native gRPC at the gRPC-Web server.
    let message = fails(
        "native.toml",
        web_scenario(
            &web.address(),
            "unary",
            "",
            "",
            "requests = 5\nconcurrency = 1",
        ),
    );
    assert!(
        message.contains("no call succeeded")
            && message.contains("speaks gRPC-Web")
            && message.contains("protocol = \"grpc-web\""),
        "{message}"
    );
    // A long run stops at the first interval instead of running its course.
    let started = std::time::Instant::now();
    let message = fails(
        "native_long.toml",
        web_scenario(
            &web.address(),
            "unary",
            "",
            "",
            "duration = \"60s\"\nconcurrency = 1",
        ),
    );
    assert!(message.contains("stopping: wrong protocol"), "{message}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "stopped early: {:?}",
        started.elapsed()
    );
    // gRPC-Web at the native server, over HTTP/1.1 and over HTTP/2.
    for (http, says) in [
        ("1.1", "does not speak HTTP/1.1"),
        ("2", "protocol = \"grpc\""),
    ] {
        let message = fails(
            "web.toml",
            web_scenario(
                &native.address(),
                "unary",
                &format!("protocol = \"grpc-web\"\nhttp_version = \"{http}\""),
                "",
                "requests = 5\nconcurrency = 1",
            ),
        );
        assert!(message.contains(says), "HTTP/{http}: {message}");
    }
    // sonora as it ships writes its unary trailer frame without a readable grpc-status: a
    // conforming client fails such a call, and so does loadagent.
    let as_is = Server::python_web(&["--sonora-as-is"]);
    let report = report_of(
        dir.path(),
        "asis.toml",
        &web_scenario(
            &as_is.address(),
            "unary",
            "protocol = \"grpc-web\"",
            "",
            "requests = 5\nconcurrency = 1",
        ),
    );
    assert_eq!(report["status_codes"]["INTERNAL"], 5, "{report}");
    assert!(report["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("no grpc-status"));
}

#[test]
fn bad_grpc_web_scenarios_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let web = Server::python_web(&[]);
    let cases = [
        (
            "kind = \"bidi_stream\"",
            "protocol = \"grpc-web\"",
            "",
            "target.protocol",
        ),
        (
            "kind = \"unary\"",
            "http_version = \"2\"",
            "",
            "target.http_version",
        ),
        (
            "kind = \"unary\"",
            "protocol = \"grpc-web\"",
            "compression = \"gzip\"",
            "call.compression",
        ),
        (
            "kind = \"unary\"",
            "protocol = \"grpc-websocket\"",
            "",
            "target.protocol",
        ),
    ];
    for (kind, target, call, key) in cases {
        let text_ = web_scenario(&web.address(), "unary", target, call, "requests = 1")
            .replace("kind = \"unary\"", kind);
        let path = scenario(dir.path(), "bad.toml", &text_);
        let out = loadagent(&["validate", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{key}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("`{key}`")),
            "{key}: {}",
            text(&out)
        );
    }
    // Types by reflection through a gRPC-Web endpoint: said plainly, with what to do.
    let no_types = web_scenario(
        &web.address(),
        "unary",
        "protocol = \"grpc-web\"",
        "",
        "requests = 1",
    )
    .replace(&format!("proto = [\"{}\"]", echo_proto()), "");
    let path = scenario(dir.path(), "reflect.toml", &no_types);
    let out = loadagent(&["run", "-q", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("gRPC-Web") && text(&out).contains("proto"),
        "{}",
        text(&out)
    );
    let counts = web.stop_with_counts();
    assert_eq!(
        counts["unary"].as_u64(),
        Some(0),
        "validation sends nothing: {counts}"
    );
}

#[test]
fn probes_go_over_grpc_web_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python_web(&[]);
    let proto = echo_proto();
    let address = server.address();
    // `probe --protocol`: the same checks and exit codes as native method probes.
    let probe = |extra: &[&str]| {
        let mut args = vec![
            "probe",
            address.as_str(),
            "--method",
            "testing.echo.v1.Echo/Say",
            "--proto",
            &proto,
        ];
        args.extend_from_slice(extra);
        let out = loadagent(&args);
        (out.status.code(), text(&out))
    };
    let (code, out) = probe(&[
        "--protocol",
        "grpc-web",
        "--data",
        r#"{"message": "edge"}"#,
        "--expect",
        r#"message == "edge""#,
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(r#"response: {"message":"edge"}"#), "{out}");
    let (code, out) = probe(&[
        "--protocol",
        "grpc-web-text",
        "--http-version",
        "2",
        "--data",
        r#"{"message": "fail:UNAVAILABLE:down"}"#,
    ]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("UNAVAILABLE: down"), "{out}");

    // The agent: a gRPC-Web target probed by its method, one passing and one failing.
    let agent = start_agent(
        dir.path(),
        &format!(
            r#"
[[targets]]
name = "edge"
address = "{addr}"
interval = "200ms"
protocol = "grpc-web"
method = "testing.echo.v1.Echo/Say"
proto = ["{proto}"]
data = {{ message = "edge {{{{request_number}}}}" }}
expect = ['message matches "^edge [0-9]+$"']

[[targets]]
name = "edge-failing"
address = "{addr}"
interval = "200ms"
protocol = "grpc-web-text"
http_version = "2"
method = "testing.echo.v1.Echo/Say"
proto = ["{proto}"]
data = {{ message = "fail:NOT_FOUND:nothing" }}
"#,
            addr = server.address()
        ),
    );
    let metrics = || http_get(&agent.address(), "/metrics").1;
    eventually(20, || {
        let m = metrics();
        match (
            sample(&m, "loadagent_probe_success{target=\"edge\"}"),
            sample(&m, "loadagent_probe_success{target=\"edge-failing\"}"),
        ) {
            (Some(1.0), Some(0.0)) => Ok(()),
            other => Err(format!("{other:?}: {m}")),
        }
    });
    let m = metrics();
    assert_eq!(
        sample(
            &m,
            "loadagent_probe_check_failed{target=\"edge-failing\",check=\"status == OK\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "loadagent_probe_grpc_status_code{target=\"edge-failing\"}"
        ),
        Some(5.0),
        "no health check: the method's status: {m}"
    );
    assert!(
        !m.contains("loadagent_probe_healthcheck_status{backend=\"127.0.0.1"),
        "grpc.health.v1 is not asked over gRPC-Web: {m}"
    );
    assert_promtool_accepts(&m);
    terminate(&agent.child);
    let counts = server.stop_with_counts();
    assert!(counts["unary"].as_u64().unwrap() >= 4, "{counts}");

    // A gRPC-Web target without a method, or asking for health: exit 2 naming the key.
    let config = scenario(
        dir.path(),
        "bad.toml",
        "[[targets]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nprotocol = \"grpc-web\"\n\n[[targets]]\nname = \"b\"\naddress = \"127.0.0.1:1\"\nprotocol = \"grpc-web\"\nhealth = true\nmethod = \"testing.echo.v1.Echo/Say\"\n\n[[targets]]\nname = \"c\"\naddress = \"127.0.0.1:1\"\nhttp_version = \"2\"\n",
    );
    let out = loadagent(&["agent", "--check-config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for key in [
        "targets[0].method",
        "targets[1].health",
        "targets[2].http_version",
    ] {
        assert!(
            text(&out).contains(&format!("`{key}`")),
            "{key}: {}",
            text(&out)
        );
    }
}

#[test]
fn calls_on_a_connection_the_server_recycles_are_sent_again_never_twice() {
    // hypercorn closes an HTTP/2 connection after 40 requests (GOAWAY): calls it refused
    // unprocessed, or that were still waiting to go, are sent again on a new connection —
    // none counted as failed, none processed twice. (Calls it had taken are sometimes cut off
    // by its abrupt close: those fail, as for any client.)
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python_web(&["--max-requests-per-connection", "40"]);
    let report = report_of(
        dir.path(),
        "recycled.toml",
        &web_scenario(
            &server.address(),
            "unary",
            "protocol = \"grpc-web\"\nhttp_version = \"2\"",
            "data = { message = \"r {{request_number}}\" }",
            "requests = 300\nconcurrency = 8",
        ),
    );
    assert_eq!(num(&report, "totals.requests"), 300.0, "{report}");
    for e in report["errors"].as_array().unwrap() {
        let message = e["message"].as_str().unwrap();
        assert!(
            !message.contains("canceled") && !message.contains("not a result of an error"),
            "an unprocessed call was counted as failed: {report}"
        );
    }
    let counts = server.stop_with_counts();
    let served = counts["unary"].as_f64().unwrap();
    assert!(served <= 300.0, "a call processed twice: {counts}");
    assert!(num(&report, "totals.ok") <= served, "{report} {counts}");
    assert!(
        counts["connections"].as_u64().unwrap() >= 300 / 40,
        "the server did recycle: {counts}"
    );
}

/// A scenario calling the reference target's `Bench/Unary` (or `ServerStream` for a server
/// stream) with `data`; `target_extra` goes in [target] (the protocol, HTTP version, TLS).
fn bench_web_scenario(
    address: &str,
    kind: &str,
    target_extra: &str,
    data: &str,
    load: &str,
) -> String {
    let method = if kind == "server_stream" {
        "ServerStream"
    } else {
        "Unary"
    };
    format!(
        r#"
name = "tonic-web"
kind = "{kind}"
[target]
address = "{address}"
{target_extra}
[call]
method = "loadagent.bench.v1.Bench/{method}"
data = {data}
timeout = "10s"
[load]
{load}
"#
    )
}

/// The second gRPC-Web implementation: the reference target answers gRPC-Web through
/// tonic-web (hyper's HTTP/1.1 and HTTP/2, not sonora's ASGI). Every form counts every call
/// and message the request asked for, and a failing call's status and message are the ones
/// the same server gives a native gRPC client (whose statuses grpcio and grpc-js confirm in
/// tests/peers.rs).
#[test]
fn tonic_web_counts_every_call_and_message_and_fails_as_native_grpc_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::reference_target();
    let failing = r#"{ error_code = 8, error_message = "quota 100% used, ünï" }"#;
    let native = report_of(
        dir.path(),
        "native.toml",
        &bench_web_scenario(
            &server.address(),
            "unary",
            "",
            failing,
            "requests = 3\nconcurrency = 1",
        ),
    );
    assert_eq!(native["status_codes"]["RESOURCE_EXHAUSTED"], 3, "{native}");
    for (i, (protocol, http)) in EVERY_FORM.into_iter().enumerate() {
        let form = format!("protocol = \"{protocol}\"\nhttp_version = \"{http}\"");
        let n = 200 + i as u64;
        let report = report_of(
            dir.path(),
            &format!("unary{i}.toml"),
            &bench_web_scenario(
                &server.address(),
                "unary",
                &form,
                "{ payload_size = 100 }",
                &format!("requests = {n}\nconcurrency = 4"),
            ),
        );
        assert_eq!(
            num(&report, "totals.requests") as u64,
            n,
            "{protocol} {http}: {report}"
        );
        assert_eq!(
            num(&report, "totals.ok") as u64,
            n,
            "{protocol} {http}: {report}"
        );

        let report = report_of(
            dir.path(),
            &format!("fail{i}.toml"),
            &bench_web_scenario(
                &server.address(),
                "unary",
                &form,
                failing,
                "requests = 3\nconcurrency = 1",
            ),
        );
        assert_eq!(
            report["status_codes"], native["status_codes"],
            "{protocol} {http}: {report}"
        );
        assert_eq!(
            report["errors"][0]["message"], native["errors"][0]["message"],
            "{protocol} {http}: {report}"
        );

        let report = report_of(
            dir.path(),
            &format!("stream{i}.toml"),
            &bench_web_scenario(
                &server.address(),
                "server_stream",
                &form,
                "{ payload_size = 10, response_count = 9 }",
                "requests = 20\nconcurrency = 2\nwarmup = \"0s\"",
            ),
        );
        assert_eq!(
            num(&report, "totals.ok"),
            20.0,
            "{protocol} {http}: {report}"
        );
        assert_eq!(
            num(&report, "messages.received"),
            180.0,
            "{protocol} {http}: {report}"
        );
        assert_eq!(
            num(&report, "streams.completed"),
            20.0,
            "{}",
            report["streams"]
        );
    }
}

/// tonic-web over TLS: the reference target offers h2 then HTTP/1.1 by ALPN, so both
/// gRPC-Web forms reach it through the certificate it wrote, and every call is counted.
#[test]
fn tonic_web_over_tls_in_both_http_versions() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("target.pem");
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["target", "--listen", "127.0.0.1:0", "--tls", "--cert-out"])
        .arg(&cert);
    let server = Server::try_start(cmd, "listening on ").expect("the TLS target starts");
    for (i, (protocol, http)) in [("grpc-web", "1.1"), ("grpc-web-text", "2")]
        .into_iter()
        .enumerate()
    {
        let form = format!(
            "protocol = \"{protocol}\"\nhttp_version = \"{http}\"\ntls = {{ ca = {:?}, server_name = \"localhost\" }}",
            cert.display().to_string()
        );
        let report = report_of(
            dir.path(),
            &format!("tls{i}.toml"),
            &bench_web_scenario(
                &server.address(),
                "unary",
                &form,
                "{ payload_size = 100 }",
                "requests = 50\nconcurrency = 2",
            ),
        );
        assert_eq!(
            num(&report, "totals.ok"),
            50.0,
            "{protocol} {http}: {report}"
        );
        assert_eq!(
            report["protocol"],
            format!("{protocol} over HTTP/{http}"),
            "{report}"
        );
    }
}
