//! loadagent against gRPC implementations it did not write, agreeing with their counts and
//! with what their own clients see: the interop TestService on Python grpcio and on Node's
//! @grpc/grpc-js, Node's http2 server answering in ways that are not well-formed gRPC
//! (compared with grpcio's and grpc-js's clients), and Python's http.server (not HTTP/2).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn proto() -> String {
    repo()
        .join("tests/interop/test_service.proto")
        .display()
        .to_string()
}

/// A scenario against grpc.testing.TestService on `address`.
fn interop(address: &str, kind: &str, method: &str, call: &str, rest: &str) -> String {
    format!(
        "name = \"interop\"\nkind = \"{kind}\"\n[target]\naddress = \"{address}\"\n[call]\nmethod = \"grpc.testing.TestService/{method}\"\nproto = [\"{}\"]\n{call}\n{rest}",
        proto()
    )
}

fn run(dir: &Path, text: &str) -> serde_json::Value {
    let path = scenario(dir, "s.toml", text);
    run_report(dir, &path)
}

fn status(report: &serde_json::Value, code: &str) -> f64 {
    report["status_codes"][code].as_f64().unwrap_or(0.0)
}

fn counted(counts: &serde_json::Value, method: &str, what: &str) -> f64 {
    counts[method][what].as_f64().unwrap_or(0.0)
}

#[test]
fn every_interop_method_on_grpcio_and_grpc_js_counts_what_the_server_counts() {
    for (peer, server) in [
        ("grpcio", Server::python_interop()),
        ("grpc-js", Server::node_interop()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let a = server.address();
        let closed = |n: u32| format!("[load]\nrequests = {n}\nconcurrency = 4\n");
        let ok = run(
            dir.path(),
            &interop(
                &a,
                "unary",
                "UnaryCall",
                "data = { response_size = 10 }",
                &closed(40),
            ),
        );
        assert_eq!(status(&ok, "OK"), 40.0, "{peer}: {ok}");
        let failing = run(
            dir.path(),
            &interop(
                &a,
                "unary",
                "UnaryCall",
                "data = { response_status = { code = 5, message = \"not here\" } }",
                &closed(10),
            ),
        );
        assert_eq!(status(&failing, "NOT_FOUND"), 10.0, "{peer}: {failing}");
        assert!(
            failing["errors"].to_string().contains("not here"),
            "{peer}: {failing}"
        );
        let server_stream = run(
            dir.path(),
            &interop(
                &a,
                "server_stream",
                "StreamingOutputCall",
                "data = { response_parameters = [{ size = 5 }, { size = 5 }, { size = 5 }] }",
                &closed(10),
            ),
        );
        assert_eq!(
            status(&server_stream, "OK"),
            10.0,
            "{peer}: {server_stream}"
        );
        assert_eq!(num(&server_stream, "messages.received"), 30.0, "{peer}");
        let client_stream = run(
            dir.path(),
            &interop(
                &a,
                "client_stream",
                "StreamingInputCall",
                "data = { payload = { body = \"AAAA\" } }",
                &format!("[stream]\nmessages = 5\n{}", closed(10)),
            ),
        );
        assert_eq!(
            status(&client_stream, "OK"),
            10.0,
            "{peer}: {client_stream}"
        );
        let bidi = run(
            dir.path(),
            &interop(
                &a,
                "bidi_stream",
                "FullDuplexCall",
                "data = { response_parameters = [{ size = 3 }] }",
                &format!("[stream]\nmessages = 4\n{}", closed(10)),
            ),
        );
        assert_eq!(status(&bidi, "OK"), 10.0, "{peer}: {bidi}");
        assert_eq!(num(&bidi, "messages.received"), 40.0, "{peer}");
        // Half-duplex: the server answers only after the client half-closes, so a client
        // that waits for every reply before closing waits forever.
        let half = run(
            dir.path(),
            &interop(
                &a,
                "bidi_stream",
                "HalfDuplexCall",
                "data = { response_parameters = [{ size = 3 }] }\ntimeout = \"10s\"",
                &format!(
                    "[stream]\nmessages = 4\nmode = \"pipelined\"\n{}",
                    closed(10)
                ),
            ),
        );
        assert_eq!(status(&half, "OK"), 10.0, "{peer}: {half}");
        assert_eq!(num(&half, "messages.received"), 40.0, "{peer}");

        let counts = server.stop_with_counts();
        assert_eq!(
            counted(&counts, "UnaryCall", "calls"),
            50.0,
            "{peer}: {counts}"
        );
        assert_eq!(
            counted(&counts, "UnaryCall", "sent"),
            40.0,
            "{peer}: {counts}"
        );
        assert_eq!(counts["UnaryCall"]["statuses"]["NOT_FOUND"], 10, "{peer}");
        assert_eq!(
            counted(&counts, "StreamingOutputCall", "sent"),
            30.0,
            "{peer}"
        );
        assert_eq!(
            counted(&counts, "StreamingInputCall", "received"),
            50.0,
            "{peer}"
        );
        assert_eq!(
            counted(&counts, "FullDuplexCall", "received"),
            40.0,
            "{peer}"
        );
        assert_eq!(counted(&counts, "FullDuplexCall", "sent"), 40.0, "{peer}");
        assert_eq!(
            counted(&counts, "HalfDuplexCall", "received"),
            40.0,
            "{peer}"
        );
        assert_eq!(counted(&counts, "HalfDuplexCall", "sent"), 40.0, "{peer}");
        assert_eq!(counts["HalfDuplexCall"]["statuses"]["OK"], 10, "{peer}");
    }
}

#[test]
fn a_stream_longer_than_the_unary_default_deadline_completes() {
    let server = Server::python_interop();
    let dir = tempfile::tempdir().unwrap();
    // 23 s, past the 20 s a unary call gets by default: a stream has no deadline unless
    // `timeout` is written.
    let report = run(
        dir.path(),
        &interop(
            &server.address(),
            "bidi_stream",
            "FullDuplexCall",
            "data = { response_parameters = [{ size = 1 }] }",
            "[stream]\nmessages = 1000\nmessage_interval = \"1s\"\nstream_duration = \"23s\"\n[load]\nrequests = 1\nconcurrency = 1\n",
        ),
    );
    assert_eq!(status(&report, "OK"), 1.0, "{report}");
    assert_eq!(status(&report, "DEADLINE_EXCEEDED"), 0.0, "{report}");
    assert!(num(&report, "messages.received") >= 22.0, "{report}");
}

/// What grpcio's and grpc-js's clients see calling `method` on `address`.
fn client_sees(address: &str, method: &str, shape: &str) -> (String, String) {
    let py = Command::new("python3")
        .arg(repo().join("tests/python/grpc_client.py"))
        .args([address, method, shape])
        .output()
        .unwrap();
    let js = Command::new("node")
        .arg(repo().join("tests/node/grpc_client.js"))
        .args([address, method, shape])
        .output()
        .unwrap();
    let code = |o: &std::process::Output| -> String {
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("no answer: {}", text(o)))
    };
    (code(&py), code(&js))
}

/// The TestService method of `kind` (unary or server stream).
fn method_of(kind: &str) -> &'static str {
    if kind == "unary" {
        "UnaryCall"
    } else {
        "StreamingOutputCall"
    }
}

/// A run of `requests` calls of `kind` at Node's http2 server, two at a time.
fn against_node(server: &Server, kind: &str, call: &str, requests: u32) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    run(
        dir.path(),
        &interop(
            &server.address(),
            kind,
            method_of(kind),
            call,
            &format!("[load]\nrequests = {requests}\nconcurrency = 2\n"),
        ),
    )
}

#[test]
fn malformed_grpc_answers_get_the_status_a_grpc_client_sees() {
    // (mode, kind, the status loadagent reports, which client agrees)
    let cases = [
        ("html200", "unary", "UNKNOWN", "grpcio"),
        ("status:503", "unary", "UNAVAILABLE", "both"),
        ("status:404", "unary", "UNIMPLEMENTED", "both"),
        ("compressed_plain", "unary", "INTERNAL", "grpcio"),
        ("size:5242880", "unary", "RESOURCE_EXHAUSTED", "both"),
        (
            "size:5242880",
            "server_stream",
            "RESOURCE_EXHAUSTED",
            "both",
        ),
        ("no_message", "unary", "UNIMPLEMENTED", "grpc-js"),
        // Both clients wait for the deadline here; a second message is a cardinality
        // violation, INTERNAL at once.
        ("two_messages", "unary", "INTERNAL", "neither"),
    ];
    for (mode, kind, want, agrees) in cases {
        let server = Server::node_h2(mode);
        let method = method_of(kind);
        let report = against_node(&server, kind, "data = {}", 6);
        assert_eq!(status(&report, want), 6.0, "{mode} {kind}: {report}");
        if mode == "html200" {
            assert!(
                report["errors"].to_string().contains("text/html"),
                "{report}"
            );
        }
        // Node's http2 server answers a client that cancels streams fast (as a client
        // must when a message is too large) by refusing some later streams with
        // ENHANCE_YOUR_CALM (rapid-reset protection): those never reached it.
        let refused: f64 = report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("reset by the server")
            })
            .map(|e| e["count"].as_f64().unwrap())
            .sum();
        let counts = server.stop_with_counts();
        assert_eq!(
            counts["served"].as_f64().unwrap(),
            6.0 - refused,
            "every call the server did not refuse reached it once: {mode} {kind}: {report}"
        );
        let for_clients = Server::node_h2(mode);
        let path = format!("/grpc.testing.TestService/{method}");
        let (py, js) = client_sees(&for_clients.address(), &path, kind);
        match agrees {
            "both" => assert!(
                py == want && js == want,
                "{mode}: grpcio {py}, grpc-js {js}"
            ),
            "grpcio" => assert_eq!(py, want, "{mode}: grpcio"),
            "grpc-js" => assert_eq!(js, want, "{mode}: grpc-js"),
            _ => {}
        }
    }
    // The limit is one setting for unary calls and streams alike.
    for kind in ["unary", "server_stream"] {
        let server = Server::node_h2("size:5242880");
        let report = against_node(
            &server,
            kind,
            "data = {}\nmax_receive_message_size = 8388608",
            3,
        );
        assert_eq!(status(&report, "OK"), 3.0, "{kind}: {report}");
    }
}

/// Whether an HTTP/1 server answers at `a` (its status line begins "HTTP/").
fn answers_http(a: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(a) else {
        return false;
    };
    let mut head = [0u8; 5];
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .is_ok()
        && s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok()
        && s.read_exact(&mut head).is_ok()
        && &head == b"HTTP/"
}

#[test]
fn a_target_that_is_not_http2_fails_alike_with_reflection_and_with_proto_files() {
    // A free port may be taken before the server binds it — by a socket the kernel connects
    // to itself when it picks that port as the source of a connect to it, which also makes a
    // bare connect look like a server — so the server is ready when it answers HTTP, and a
    // server that could not bind is started again on another port.
    let (mut http, a) = (0..5)
        .find_map(|_| {
            let port = free_port();
            let mut http = Command::new("python3")
                .args([
                    "-m",
                    "http.server",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let a = format!("127.0.0.1:{port}");
            for _ in 0..100 {
                if answers_http(&a) {
                    return Some((http, a));
                }
                if http.try_wait().unwrap().is_some() {
                    return None;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = http.kill();
            let _ = http.wait();
            None
        })
        .expect("python3 -m http.server answers on a free port");
    let dir = tempfile::tempdir().unwrap();
    let with_proto = interop(
        &a,
        "unary",
        "UnaryCall",
        "data = {}",
        "[load]\nrequests = 1\n",
    );
    let with_reflection = with_proto.replace(&format!("proto = [\"{}\"]\n", proto()), "");
    assert_ne!(with_proto, with_reflection);
    for text in [with_proto, with_reflection] {
        let path = scenario(dir.path(), "s.toml", &text);
        let out = loadagent(&["run", "-q", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("does not speak HTTP/2"), "{err}");
        assert!(!err.contains("call.method"), "{err}");
    }
    let _ = http.kill();
    let _ = http.wait();
}
