//! gRPC-Web and probes at servers that do not answer as asked (issue 23): a server that never
//! answers a stream, one that refuses text with HTTP 415, an HTTP/1.1-only server (Python's
//! http.server) spoken to in HTTP/2 or probed, and an answer whose head is too large.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;

/// The echo service over gRPC-Web, `target_extra` in [target]; the run fails on any error.
fn web(address: &str, kind: &str, target_extra: &str, load: &str) -> String {
    web_scenario(
        address,
        kind,
        &format!("protocol = \"grpc-web\"\n{target_extra}"),
        "data = { message = \"hi\" }",
        &format!("{load}\n[thresholds]\nerror_rate = \"< 0.01\""),
    )
}

/// A loopback server thread: on each connection, each request is read (its head up to the
/// blank line, then its `content-length` body) and answered with `answer`, as a keep-alive
/// HTTP/1.1 server answers every request; when `answer` is empty nothing is written and the
/// connection is held, never answered. It stops by itself.
fn responder(answer: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(40);
        while Instant::now() < until {
            let Ok((s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let answer = answer.clone();
            std::thread::spawn(move || answer_each_request(s, &answer, until));
        }
    });
    address
}

/// Answers each request on `s` with `answer` until the client closes, or holds it
/// unanswered (`answer` empty) until `until`.
fn answer_each_request(mut s: std::net::TcpStream, answer: &[u8], until: Instant) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
            match s.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        if answer.is_empty() {
            // Never answered, never closed.
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            return;
        }
        if !head.ends_with(b"\r\n\r\n") {
            return;
        }
        let length = String::from_utf8_lossy(&head)
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<u64>().ok())?
            })
            .unwrap_or(0);
        if std::io::copy(&mut (&mut s).take(length), &mut std::io::sink()).is_err()
            || s.write_all(answer).is_err()
        {
            return;
        }
    }
}

/// Python's own HTTP/1.1 server (written by others), on a loopback port; stops when dropped.
struct HttpServer(std::process::Child, String);

impl HttpServer {
    fn start() -> Self {
        let port = free_port();
        let mut child = std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let address = format!("127.0.0.1:{port}");
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < until, "http.server did not start");
            assert!(child.try_wait().unwrap().is_none(), "http.server exited");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self(child, address)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(
    dir: &std::path::Path,
    text: &str,
) -> (std::process::Output, Option<serde_json::Value>, Duration) {
    let s = scenario(dir, "web-trust.toml", text);
    let out = dir.join("web-trust.json");
    let _ = std::fs::remove_file(&out);
    let started = Instant::now();
    let result = loadagent(&[
        "run",
        "-q",
        s.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let report = std::fs::read_to_string(&out)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    (result, report, started.elapsed())
}

/// Server streams to a server that takes the request and never answers: the run ends on
/// time, the streams are cancelled with the reason, and the run fails (exit 1) — it never
/// passes its thresholds having measured nothing.
#[test]
fn streams_a_server_never_answers_fail_the_run_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let address = responder(Vec::new());
    let (out, report, took) = run(
        dir.path(),
        &web(
            &address,
            "server_stream",
            "",
            "concurrency = 4\nduration = \"3s\"\nwarmup = \"0s\"",
        ),
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("never answered") && said.contains("no response head"),
        "{said}"
    );
    assert!(took < Duration::from_secs(9), "a 3 s run took {took:?}");
    assert!(report.is_none(), "no report of a run that measured nothing");
}

/// A gRPC-Web server that takes binary but answers text with 415 (as Connect for Node
/// does): the message names the content type refused and both possible fixes.
#[test]
fn a_415_names_what_was_refused_and_both_fixes() {
    let dir = tempfile::tempdir().unwrap();
    let address = responder(
        b"HTTP/1.1 415 Unsupported Media Type\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n".to_vec(),
    );
    let scenario = web(&address, "unary", "", "requests = 5\nconcurrency = 1")
        .replace("protocol = \"grpc-web\"", "protocol = \"grpc-web-text\"");
    let (out, _, _) = run(dir.path(), &scenario);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("refused the content type sent (application/grpc-web-text"),
        "{said}"
    );
    assert!(
        said.contains("protocol = \"grpc\"") && said.contains("protocol = \"grpc-web\""),
        "{said}"
    );
}

/// gRPC-Web over HTTP/2 at an HTTP/1.1-only server fails the run (exit 1) saying so, as the
/// other mismatches do.
#[test]
fn http2_at_an_http1_only_server_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start();
    let (out, _, _) = run(
        dir.path(),
        &web(
            &server.1,
            "unary",
            "http_version = \"2\"",
            "requests = 5\nconcurrency = 1",
        ),
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("does not speak HTTP/2") && said.contains("http_version = \"1.1\""),
        "{said}"
    );
}

/// An answer whose head is larger than the client takes is called that, not "does not speak
/// HTTP/1.1".
#[test]
fn a_response_head_too_large_is_called_that() {
    let dir = tempfile::tempdir().unwrap();
    let mut answer =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc-web+proto\r\nx-big: ".to_vec();
    answer.extend(std::iter::repeat_n(b'a', 8 << 20));
    answer.extend_from_slice(b"\r\n\r\n");
    let address = responder(answer);
    let (out, report, _) = run(
        dir.path(),
        &web(&address, "unary", "", "requests = 2\nconcurrency = 1"),
    );
    let said = text(&out);
    let report = report.unwrap_or_else(|| panic!("{said}"));
    let errors = report["errors"].to_string();
    assert!(errors.contains("response head is too large"), "{errors}");
    assert!(!errors.contains("does not speak HTTP/1.1"), "{errors}");
    assert_eq!(out.status.code(), Some(3), "the threshold fails: {said}");
}

/// `probe` at an HTTP/1.1-only server: connection failed (exit 2, "does not speak HTTP/2"),
/// with and without `--method`, every time.
#[test]
fn probe_at_an_http1_only_server_is_a_failed_connection() {
    let server = HttpServer::start();
    for _ in 0..3 {
        for extra in [
            vec![],
            vec!["--method", "testing.echo.v1.Echo/Say", "--proto"],
        ] {
            let mut args = vec!["probe", server.1.as_str(), "--timeout", "3s"];
            let proto = echo_proto();
            args.extend(extra.iter().copied());
            if !extra.is_empty() {
                args.push(&proto);
            }
            let out = loadagent(&args);
            let said = text(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
            assert!(said.contains("does not speak HTTP/2"), "{said}");
        }
    }
}
