//! Differential test of the hand-written unary client: the same calls over the lean client
//! (`grpc::lean`, what unary load uses) and over `h2` (what streams and storms use) end with
//! the same status and message, against the reference target (every answer it can give) and
//! against Node's http2 server answering in ways that are not well-formed gRPC.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use loadagent::grpc::channel::Endpoint;
use loadagent::grpc::lean::{Connection, RequestHeaders};
use loadagent::grpc::unary::UnaryCall;

/// A varint-encoded protobuf field (wire type 0) or bytes field (wire type 2).
fn varint_field(out: &mut Vec<u8>, number: u8, mut value: u64) {
    out.push(number << 3);
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
}

fn string_field(out: &mut Vec<u8>, number: u8, s: &str) {
    out.push((number << 3) | 2);
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// A framed `loadagent.bench.v1.BenchRequest`.
fn bench_request(payload_size: u64, error_code: u64, message: &str) -> Bytes {
    let mut m = Vec::new();
    varint_field(&mut m, 1, payload_size);
    if error_code != 0 {
        varint_field(&mut m, 3, error_code);
        string_field(&mut m, 4, message);
    }
    loadagent::grpc::frame::frame(&m, None).unwrap()
}

/// (code, message) of one call over the lean client.
async fn over_lean(endpoint: &Endpoint, call: &UnaryCall, body: Bytes) -> (u8, String) {
    let mut conn = Connection::open(endpoint, Arc::new(RequestHeaders::for_call(call, false)))
        .await
        .expect("lean connection");
    conn.start(0, 0, body, &[], None);
    let mut done = Vec::new();
    let finished = std::future::poll_fn(|cx| {
        if let Err(lost) = conn.poll_io(cx, &mut done) {
            return std::task::Poll::Ready(Err(lost.0));
        }
        match done.pop() {
            Some(c) => std::task::Poll::Ready(Ok(c.outcome)),
            None => std::task::Poll::Pending,
        }
    });
    match tokio::time::timeout(Duration::from_secs(10), finished).await {
        Ok(Ok(o)) => (o.code, o.message.unwrap_or_default()),
        Ok(Err(lost)) => panic!("lean connection lost: {lost}"),
        Err(_) => panic!("lean call did not end"),
    }
}

/// (code, message) of one call over h2.
async fn over_h2(endpoint: &Endpoint, call: &UnaryCall, body: Bytes) -> (u8, String) {
    let mut send = loadagent::grpc::channel::connect(endpoint)
        .await
        .expect("h2 connection");
    let (o, _) = call
        .call_timed(&mut send, body, &loadagent::grpc::unary::PerCall::default())
        .await;
    (o.code, o.message.unwrap_or_default())
}

fn endpoint(address: String) -> Endpoint {
    Endpoint {
        address: address.parse().expect("host:port"),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    }
}

fn call(address: &str, path: &str) -> UnaryCall {
    UnaryCall::new(address, path, &[], Some(Duration::from_secs(10)), None).unwrap()
}

#[tokio::test]
async fn every_answer_of_the_reference_target_reads_the_same_over_lean_and_h2() {
    let target = Server::reference_target();
    let e = endpoint(target.address());
    let c = call(&target.address(), "/loadagent.bench.v1.Bench/Unary");
    let mut cases = vec![bench_request(0, 0, ""), bench_request(100_000, 0, "")];
    for code in 1..=16 {
        cases.push(bench_request(8, code, "a message with spaces, % and é"));
    }
    // A response over the 4 MiB limit.
    cases.push(bench_request(5 << 20, 0, ""));
    for body in cases {
        let lean = over_lean(&e, &c, body.clone()).await;
        let h2 = over_h2(&e, &c, body.clone()).await;
        assert_eq!(lean, h2, "request {body:?}");
    }
    // An unknown method: UNIMPLEMENTED both ways.
    let unknown = call(&target.address(), "/loadagent.bench.v1.Bench/Nope");
    let body = bench_request(0, 0, "");
    assert_eq!(
        over_lean(&e, &unknown, body.clone()).await,
        over_h2(&e, &unknown, body).await
    );
}

#[tokio::test]
async fn malformed_answers_read_the_same_over_lean_and_h2() {
    for mode in [
        "html200",
        "status:503",
        "status:404",
        "compressed_plain",
        "size:5242880",
        "no_message",
        "two_messages",
    ] {
        let server = Server::node_h2(mode);
        let e = endpoint(server.address());
        let c = call(&server.address(), "/grpc.testing.TestService/UnaryCall");
        let body = loadagent::grpc::frame::frame(&[], None).unwrap();
        let lean = over_lean(&e, &c, body.clone()).await;
        let h2 = over_h2(&e, &c, body).await;
        assert_eq!(lean, h2, "{mode}");
        assert_ne!(lean.0, 0, "{mode} is not OK");
    }
}

#[test]
fn transport_h2_routes_unary_load_through_h2_with_the_same_results() {
    let target = Server::reference_target();
    let dir = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    for transport in ["lean", "h2"] {
        let s = scenario(
            dir.path(),
            &format!("{transport}.toml"),
            &bench_scenario(
                &target.address(),
                "[{ payload_size = 16 }, { error_code = 5, error_message = \"gone\" }]",
                "requests = 200\nconcurrency = 8\nconnections = 2",
            )
            .replace(
                "[call]\n",
                &format!("[call]\ntransport = \"{transport}\"\n"),
            ),
        );
        reports.push(run_report(dir.path(), &s));
    }
    for r in &reports {
        assert_eq!(num(r, "totals.requests"), 200.0, "{r}");
        assert_eq!(num(r, "status_codes.OK"), 100.0, "{}", r["status_codes"]);
        assert_eq!(
            num(r, "status_codes.NOT_FOUND"),
            100.0,
            "{}",
            r["status_codes"]
        );
    }
    assert_eq!(reports[0]["errors"], reports[1]["errors"]);
    let bad = scenario(
        dir.path(),
        "bad.toml",
        &bench_scenario(&target.address(), "{}", "requests = 1")
            .replace("[call]\n", "[call]\ntransport = \"http3\"\n"),
    );
    let out = loadagent(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("call.transport"),
        "{}",
        text(&out)
    );
}
