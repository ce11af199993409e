//! Method probes against Python grpcio: `loadagent probe --method/--data/--expect` (its exit
//! codes), the agent's `[[targets]] method` probes (a service SERVING while answering its
//! method wrongly), and bad definitions refused naming the key.

mod common;

use common::*;

fn probe(args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["probe"];
    all.extend_from_slice(args);
    let out = loadagent(&all);
    (out.status.code(), text(&out))
}

const SAY: &str = "testing.echo.v1.Echo/Say";

/// `probe ADDR --method Say --proto echo.proto` and `extra`.
fn probe_say(addr: &str, extra: &[&str]) -> (Option<i32>, String) {
    let proto = echo_proto();
    let mut all = vec![addr, "--method", SAY, "--proto", &proto];
    all.extend_from_slice(extra);
    probe(&all)
}

#[test]
fn probe_calls_a_method_and_judges_the_answer_with_each_exit_code() {
    let server = Server::python(&[]);
    let addr = server.address();
    let proto = echo_proto();
    let mut calls = 0;

    // Types by reflection (grpcio-reflection), then from the proto file: both pass.
    let (code, out) = probe(&[
        &addr,
        "--method",
        SAY,
        "--data",
        r#"{"message": "hello x", "inner": {"id": 7}}"#,
        "--expect",
        r#"message == "hello x""#,
        "--expect",
        r#"message matches "^hello""#,
    ]);
    calls += 1;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(r#"response: {"message":"hello x"}"#), "{out}");
    assert!(
        out.contains("check `message == \"hello x\"`: passed"),
        "{out}"
    );
    let (code, out) = probe_say(&addr, &["--data", r#"{"message": "a"}"#]);
    calls += 1;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("check `status == OK`: passed"),
        "no check on status: the call must end OK: {out}"
    );

    // A wrong answer: exit 5, saying what was found.
    let (code, out) = probe_say(
        &addr,
        &[
            "--data",
            r#"{"message": "hello x"}"#,
            "--expect",
            r#"message == "bye""#,
        ],
    );
    calls += 1;
    assert_eq!(code, Some(5), "{out}");
    assert!(out.contains("FAILED") && out.contains("hello x"), "{out}");

    // The call fails (its deadline passes in the server): exit 3, as grpc-health-probe's
    // failed RPC; the same failure expected by a check on status passes.
    let slow = r#"{"message": "slow", "delay_ms": 1500}"#;
    let (code, out) = probe_say(&addr, &["--data", slow, "--timeout", "300ms"]);
    calls += 1;
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("DEADLINE_EXCEEDED"), "{out}");
    let (code, out) = probe_say(
        &addr,
        &[
            "--data",
            slow,
            "--timeout",
            "300ms",
            "--expect",
            "status == DEADLINE_EXCEEDED",
        ],
    );
    calls += 1;
    assert_eq!(code, Some(0), "{out}");

    // Bad definitions are bad arguments (1), found before any call, naming the flag.
    for (args, says) in [
        (vec!["--expect", "nosuch == 1"], "--expect"),
        (vec!["--expect", "message > 3"], "--expect"),
        (vec!["--data", r#"{"nope": 1}"#], "--data"),
        (vec!["--data", "[1]"], "--data"),
    ] {
        let (code, out) = probe_say(&addr, &args);
        assert_eq!(code, Some(1), "{args:?}: {out}");
        assert!(out.contains(says), "{args:?}: {out}");
    }
    let (code, out) = probe(&[
        &addr,
        "--method",
        "testing.echo.v1.Echo/Nope",
        "--proto",
        &proto,
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("Say") && out.contains("Nope"), "{out}");
    let (code, out) = probe(&[
        &addr,
        "--method",
        "testing.echo.v1.Echo/Chat",
        "--proto",
        &proto,
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("unary"), "{out}");
    let (code, out) = probe(&[&addr, "--method", SAY, "--expect", "nosuch == 1"]);
    assert_eq!(code, Some(1), "by reflection too: {out}");

    // Types that do not fit what the server sends (its reply's field 1 is a string, these
    // say int64): the response does not decode, a failed check with the reason (exit 5).
    let dir = tempfile::tempdir().unwrap();
    let wrong = scenario(
        dir.path(),
        "wrong.proto",
        "syntax = \"proto3\";\npackage testing.echo.v1;\nservice Echo { rpc Say(SayRequest) returns (Wrong); }\nmessage SayRequest { string message = 1; }\nmessage Wrong { int64 message = 1; }\n",
    );
    let (code, out) = probe(&[
        &addr,
        "--method",
        SAY,
        "--proto",
        wrong.to_str().unwrap(),
        "--data",
        r#"{"message": "not a number"}"#,
    ]);
    calls += 1;
    assert_eq!(code, Some(5), "{out}");
    assert!(
        out.contains("does not decode as testing.echo.v1.Wrong"),
        "{out}"
    );

    let closed = free_port();
    let (code, out) = probe(&[
        &format!("127.0.0.1:{closed}"),
        "--method",
        SAY,
        "--proto",
        &proto,
    ]);
    assert_eq!(code, Some(2), "{out}");

    let counts = server.stop_with_counts();
    assert_eq!(
        counts["requests"].as_u64(),
        Some(calls),
        "the server answered exactly the probes' calls: {counts}"
    );
}

#[test]
fn the_agent_sees_a_serving_target_answer_its_method_wrongly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::python(&[]);
    let agent = start_agent(
        dir.path(),
        &format!(
            r#"
[[targets]]
name = "echo-say"
address = "{}"
interval = "200ms"
timeout = "2s"
method = "{SAY}"
data = {{ message = "probe {{{{request_number}}}}" }}
expect = ['message matches "^probe [0-9]+$"']
"#,
            server.address()
        ),
    );
    let metrics = || http_get(&agent.address(), "/metrics").1;
    let ok = "loadagent_probe_check_failed{target=\"echo-say\",check=\"status == OK\"}";
    eventually(20, || {
        let m = metrics();
        match sample(&m, "loadagent_probe_success{target=\"echo-say\"}") {
            Some(1.0) => Ok(()),
            other => Err(format!("success {other:?}: {m}")),
        }
    });
    assert_eq!(sample(&metrics(), ok), Some(0.0));

    server.command("BREAK");
    server.wait_for_line("OK BREAK", || false);
    eventually(20, || {
        let m = metrics();
        match sample(&m, "loadagent_probe_success{target=\"echo-say\"}") {
            Some(0.0) => Ok(()),
            other => Err(format!("success {other:?}: {m}")),
        }
    });
    let m = metrics();
    assert_eq!(
        sample(
            &m,
            "loadagent_probe_healthcheck_status{target=\"echo-say\",serving_status=\"SERVING\"}"
        ),
        Some(1.0),
        "health still says SERVING: {m}"
    );
    assert_eq!(sample(&m, ok), Some(0.0), "the call itself is OK: {m}");
    let failed: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("loadagent_probe_check_failed{") && l.ends_with(" 1"))
        .collect();
    assert_eq!(failed.len(), 1, "{m}");
    assert!(
        failed[0].contains(r#"check="message matches \"^probe [0-9]+$\"""#),
        "{m}"
    );
    assert_promtool_accepts(&m);

    let (_, targets) = http_get(&agent.address(), "/api/v1/targets");
    let targets: serde_json::Value = serde_json::from_str(&targets).unwrap();
    let t = &targets[0];
    let check = &t["checks"][1];
    assert_eq!(check["passed"], false, "{t}");
    assert!(
        check["reason"]
            .as_str()
            .unwrap_or("")
            .contains("found \"\""),
        "says what was found: {t}"
    );
    assert!(
        t["error"]
            .as_str()
            .unwrap_or("")
            .contains("message matches"),
        "{t}"
    );

    // Each call the agent made reached the server: the probes it counted, plus at most the
    // one in flight when the counter was read.
    let probes = sample(
        &metrics(),
        "loadagent_probes_total{target=\"echo-say\",result=\"success\"}",
    )
    .unwrap_or(0.0)
        + sample(
            &metrics(),
            "loadagent_probes_total{target=\"echo-say\",result=\"failure\"}",
        )
        .unwrap_or(0.0);
    terminate(&agent.child);
    let counts = server.stop_with_counts();
    let served = counts["requests"].as_f64().unwrap();
    assert!(
        served >= probes && served <= probes + 2.0,
        "served {served}, probes counted {probes}"
    );
    assert!(
        counts["messages"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| k.starts_with("probe ")),
        "templates rendered: {counts}"
    );
}

#[test]
fn bad_method_probes_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let proto = echo_proto();
    let config = scenario(
        dir.path(),
        "agent.toml",
        &format!(
            r#"
[[targets]]
name = "a"
address = "127.0.0.1:1"
method = "testing.echo.v1.Echo/Nope"
proto = ["{proto}"]

[[targets]]
name = "b"
address = "127.0.0.1:1"
method = "{SAY}"
proto = ["{proto}"]
data = {{ nope = 1 }}
expect = ['message > 3', 'nosuch == "x"', 'mood == HAPPY']

[[targets]]
name = "c"
address = "127.0.0.1:1"
expect = ['status == OK']

[[targets]]
name = "d"
address = "127.0.0.1:1"
method = "{SAY}"
mode = "watch"
"#
        ),
    );
    let out = loadagent(&["agent", "--check-config", config.to_str().unwrap()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    for (key, says) in [
        ("targets[0].method", "no method `Nope`"),
        ("targets[1].data.nope", "nope"),
        (
            "targets[1].expect[0]",
            "cannot be applied to this field (a string)",
        ),
        ("targets[1].expect[1]", "no field `nosuch`"),
        ("targets[1].expect[2]", "not a value"),
        ("targets[2].expect", "add `method"),
        ("targets[3].method", "watch"),
    ] {
        let line = all
            .lines()
            .find(|l| l.contains(&format!("`{key}`")))
            .unwrap_or_else(|| panic!("no problem for {key}: {all}"));
        assert!(line.contains(says), "{key}: {line}");
        assert!(
            line.contains("agent.toml:"),
            "names the file and line: {line}"
        );
    }
}

/// `-H` metadata reaches the server with a method probe (grpcio answers UNAUTHENTICATED
/// without it), and a probe without it fails as the RPC it is (exit 3).
#[test]
fn probe_metadata_reaches_the_server() {
    let server = Server::python(&["--require-metadata", "authorization=Bearer t0ken"]);
    let addr = server.address();
    let (code, out) = probe_say(&addr, &["-H", "authorization=Bearer t0ken"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = probe_say(&addr, &[]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("UNAUTHENTICATED"), "{out}");
    let counts = server.stop_with_counts();
    assert_eq!(
        counts["metadata_ok"].as_f64().unwrap(),
        1.0,
        "the server saw the metadata once: {counts}"
    );
}
