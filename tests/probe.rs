//! `loadagent probe`: one health check with grpc-health-probe's exit codes
//! (0 SERVING, 1 bad arguments, 2 connection failed, 3 RPC failed, 4 not SERVING).

mod common;

use common::*;

fn probe(args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["probe"];
    all.extend_from_slice(args);
    let out = loadagent(&all);
    (out.status.code(), text(&out))
}

#[test]
fn serving_targets_exit_0_with_check_and_watch() {
    let target = Server::reference_target();
    let (code, out) = probe(&[&target.address()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("status: SERVING"), "{out}");
    let (code, out) = probe(&[&target.address(), "--watch"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = probe(&[&target.address(), "--service", "loadagent.bench.v1.Bench"]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn not_serving_unknown_services_and_dead_ports() {
    let server = Server::python(&["--health", "NOT_SERVING"]);
    let (code, out) = probe(&[&server.address()]);
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains("NOT_SERVING"), "{out}");
    let (code, out) = probe(&[&server.address(), "--watch", "-H", "x-probe=1"]);
    assert_eq!(code, Some(4), "watch reports the current status: {out}");
    let (code, out) = probe(&[&server.address(), "--service", "no.such.Service"]);
    assert_eq!(
        code,
        Some(3),
        "an unknown service fails the RPC (NOT_FOUND): {out}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, out) = probe(&[&format!("127.0.0.1:{closed}"), "--timeout", "500ms"]);
    assert_eq!(code, Some(2), "{out}");
}

#[test]
fn bad_arguments_exit_1() {
    let (code, _) = probe(&[]);
    assert_eq!(code, Some(1));
    let (code, out) = probe(&["127.0.0.1:1", "--timeout", "soon"]);
    assert_eq!(code, Some(1), "{out}");
    let (code, out) = probe(&["nohost"]);
    assert_eq!(code, Some(1), "{out}");
    let (code, out) = probe(&["127.0.0.1:1", "-H", "novalue"]);
    assert_eq!(code, Some(1), "{out}");
    // Other commands keep exit 2 for usage errors.
    assert_eq!(loadagent(&["run"]).status.code(), Some(2));
}
