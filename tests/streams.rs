//! Streaming load: server, client and bidi streams against the reference target and a
//! Python grpcio server, with per-message latency, stream statuses and a server restart.

mod common;

use common::*;

fn stream_scenario(
    address: &str,
    kind: &str,
    method: &str,
    data: &str,
    load: &str,
    stream: &str,
) -> String {
    format!(
        r#"
name = "streams"
kind = "{kind}"
[target]
address = "{address}"
[call]
method = "{method}"
data = {data}
timeout = "10s"
[load]
{load}
[stream]
{stream}
"#
    )
}

#[test]
fn bidi_ping_pong_counts_every_message_and_times_each_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "pp.toml",
        &stream_scenario(
            "embedded",
            "bidi_stream",
            "loadagent.bench.v1.Bench/BidiStream",
            "{ payload_size = 16, delay_ms = 20 }",
            "requests = 12\nconcurrency = 4",
            "messages = 5",
        ),
    );
    let r = run_report(dir.path(), &s);
    let streams = &r["streams"];
    assert_eq!(
        (
            num(&r, "streams.opened"),
            num(&r, "streams.completed"),
            num(&r, "streams.failed"),
            num(&r, "streams.open_at_end"),
        ),
        (12.0, 12.0, 0.0, 0.0),
        "{streams}"
    );
    // The warm-up's streams still open when the measured part began (at most one a worker).
    assert!(num(&r, "streams.open_at_start") <= 4.0, "{streams}");
    assert_eq!(num(&r, "messages.sent"), 60.0);
    assert_eq!(num(&r, "messages.received"), 60.0);
    let p50 = num(&r, "latency_message.p50_us");
    assert!(
        (20_000.0..=26_000.0).contains(&p50),
        "per-message p50 {p50}us for a 20 ms server delay"
    );
    assert_eq!(num(&r, "latency_message.count"), 60.0);
    assert_eq!(num(&r, "latency_first_message.count"), 12.0);
    assert!(
        num(&r, "latency.uncorrected.p50_us") >= 100_000.0,
        "a stream of 5 round trips of 20 ms"
    );
    // Merged with itself: streams and messages add up, as requests do.
    let (report, merged) = (dir.path().join("report.json"), dir.path().join("m.json"));
    let m = loadagent(&[
        "merge",
        report.to_str().unwrap(),
        report.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(m.status.code(), Some(0), "{}", text(&m));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged).unwrap()).unwrap();
    for field in [
        "streams.opened",
        "streams.completed",
        "messages.sent",
        "messages.received",
    ] {
        assert_eq!(num(&m, field), 2.0 * num(&r, field), "{field}");
    }
}

#[test]
fn server_stream_gaps_and_client_stream_counts_on_the_reference_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = Server::reference_target();
    let s = scenario(
        dir.path(),
        "ss.toml",
        &stream_scenario(
            &target.address(),
            "server_stream",
            "loadagent.bench.v1.Bench/ServerStream",
            "{ delay_ms = 15, response_count = 8 }",
            "requests = 6\nconcurrency = 3",
            "",
        ),
    );
    let r = run_report(dir.path(), &s);
    assert_eq!(num(&r, "messages.received"), 48.0, "{}", r["errors"]);
    let gap = num(&r, "latency_message.p50_us");
    assert!(
        (15_000.0..=21_000.0).contains(&gap),
        "gap between messages {gap}us for 15 ms"
    );
    assert_eq!(
        num(&r, "latency_message.count"),
        42.0,
        "7 gaps per stream of 8"
    );

    // The client ends a never-ending server stream after `messages`: counted OK.
    let s = scenario(
        dir.path(),
        "ss2.toml",
        &stream_scenario(
            &target.address(),
            "server_stream",
            "loadagent.bench.v1.Bench/ServerStream",
            "{ delay_ms = 1, response_count = 0 }",
            "requests = 5\nconcurrency = 5",
            "messages = 30",
        ),
    );
    let r = run_report(dir.path(), &s);
    assert_eq!(r["status_codes"], serde_json::json!({"OK": 5}));
    assert_eq!(num(&r, "messages.received"), 150.0);

    let s = scenario(
        dir.path(),
        "cs.toml",
        &stream_scenario(
            &target.address(),
            "client_stream",
            "loadagent.bench.v1.Bench/ClientStream",
            "[{ payload_size = 8 }, { payload_size = 9 }]",
            "requests = 10\nconcurrency = 2",
            "messages = 7\nmessage_interval = \"1ms\"",
        ),
    );
    let r = run_report(dir.path(), &s);
    assert_eq!(num(&r, "messages.sent"), 70.0);
    assert_eq!(
        num(&r, "messages.received"),
        10.0,
        "one response per client stream"
    );
    assert!(
        r.get("latency_message").is_none(),
        "no per-message latency for client streams"
    );
}

#[test]
fn streams_ended_with_an_error_status_are_counted_by_status() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "err.toml",
        &stream_scenario(
            "embedded",
            "bidi_stream",
            "loadagent.bench.v1.Bench/BidiStream",
            r#"{ error_code = 9, error_message = "not now" }"#,
            "requests = 8\nconcurrency = 2",
            "messages = 3",
        ),
    );
    let r = run_report(dir.path(), &s);
    assert_eq!(
        r["status_codes"],
        serde_json::json!({"FAILED_PRECONDITION": 8})
    );
    assert_eq!(r["streams"]["failed"], 8);
    assert_eq!(r["errors"][0]["message"], "not now");
}

#[test]
fn python_streams_agree_with_the_servers_counts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&[]);
    let s = scenario(
        dir.path(),
        "chat.toml",
        &stream_scenario(
            &server.address(),
            "bidi_stream",
            "testing.echo.v1.Echo/Chat",
            r#"{ message = "hi", delay_ms = 15 }"#,
            // A count, not a duration: a stream still open when a timed run ends is
            // half-closed early, so its count would depend on the machine's speed.
            "rate = 10\nconcurrency = 8\nrequests = 20",
            "messages = 4\nmessage_interval = \"5ms\"",
        ),
    );
    let r = run_report(dir.path(), &s);
    let sub = scenario(
        dir.path(),
        "sub.toml",
        &stream_scenario(
            &server.address(),
            "server_stream",
            "testing.echo.v1.Echo/Subscribe",
            "{ delay_ms = 10, inner = { id = 6 } }",
            "requests = 5\nconcurrency = 5",
            "",
        ),
    );
    let r2 = run_report(dir.path(), &sub);
    let counts = server.stop_with_counts();
    assert_eq!(
        num(&r, "streams.opened") + num(&r2, "streams.opened"),
        counts["streams"].as_f64().unwrap()
    );
    assert_eq!(
        num(&r, "messages.sent"),
        counts["stream_received"].as_f64().unwrap(),
        "messages the server received"
    );
    assert_eq!(
        num(&r, "messages.received") + num(&r2, "messages.received"),
        counts["stream_sent"].as_f64().unwrap(),
        "messages the server sent"
    );
    assert_eq!(num(&r, "messages.sent"), 80.0, "20 streams × 4 messages");
    let p50 = num(&r, "latency_message.p50_us");
    assert!(
        (15_000.0..=22_000.0).contains(&p50),
        "per-message p50 {p50}us for a 15 ms delay"
    );
    assert_eq!(num(&r2, "messages.received"), 30.0);
}

#[test]
fn a_python_stream_failed_by_the_server_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&[]);
    let s = scenario(
        dir.path(),
        "fail.toml",
        &stream_scenario(
            &server.address(),
            "bidi_stream",
            "testing.echo.v1.Echo/Chat",
            r#"[{ message = "a" }, { message = "fail" }]"#,
            "requests = 6\nconcurrency = 2",
            "messages = 4\nmode = \"pipelined\"",
        ),
    );
    let r = run_report(dir.path(), &s);
    assert_eq!(r["status_codes"], serde_json::json!({"UNAVAILABLE": 6}));
    assert_eq!(r["errors"][0]["message"], "asked to fail");
}

#[test]
fn a_server_restarted_mid_run_fails_some_streams_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut target = Server::reference_target();
    let port = target.port;
    let s = scenario(
        dir.path(),
        "restart.toml",
        &stream_scenario(
            &target.address(),
            "bidi_stream",
            "loadagent.bench.v1.Bench/BidiStream",
            "{ payload_size = 8 }",
            "concurrency = 8\nconnections = 2\nduration = \"5s\"",
            "messages = 1000\nmessage_interval = \"20ms\"\nstream_duration = \"600ms\"",
        ),
    );
    let out_path = dir.path().join("restart.json");
    let run = std::process::Command::new(bin())
        .args([
            "run",
            "-q",
            s.to_str().unwrap(),
            "--out",
            out_path.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The stimulus: kill the target one second in, restart it on the same port.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    target.child.kill().unwrap();
    target.child.wait().unwrap();
    let _second = Server::reference_target_on(port);
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    eprintln!(
        "restart run: streams {} status {} errors {}",
        r["streams"], r["status_codes"], r["errors"]
    );
    let failed = num(&r, "streams.failed");
    let completed = num(&r, "streams.completed");
    assert!(
        failed >= 1.0,
        "streams cut by the restart are failed: {}",
        r["status_codes"]
    );
    assert!(
        completed >= 16.0,
        "streams before and after the restart complete: {}",
        r["streams"]
    );
    let after: f64 = r["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .skip(3)
        .map(|i| num(i, "messages_received"))
        .sum();
    assert!(after > 0.0, "new streams reconnected after the restart");
}

#[test]
fn stream_kind_and_method_shape_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "shape.toml",
        &stream_scenario(
            "embedded",
            "bidi_stream",
            "loadagent.bench.v1.Bench/Unary",
            "{}",
            "requests = 1",
            "messages = 1",
        ),
    );
    let out = loadagent(&["validate", s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`loadagent.bench.v1.Bench.Unary` is a unary method") && err.contains(":7:"),
        "{err}"
    );

    let s = scenario(
        dir.path(),
        "mode.toml",
        &stream_scenario(
            "embedded",
            "server_stream",
            "loadagent.bench.v1.Bench/ServerStream",
            "{}",
            "requests = 1",
            "mode = \"pipelined\"",
        ),
    );
    let out = loadagent(&["validate", s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`mode` applies to bidi_stream only"));
}

#[test]
fn messages_of_streams_opened_in_the_warmup_count_once_it_is_over() {
    // Long-lived streams open during the warm-up and outlast it: their messages in the
    // measured part are counted (4 streams × 20 messages/s × 2 s ≈ 160).
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "warm.toml",
        &stream_scenario(
            "embedded",
            "bidi_stream",
            "loadagent.bench.v1.Bench/BidiStream",
            "{ payload_size = 8 }",
            "concurrency = 4\nduration = \"2s\"\nwarmup = \"1s\"",
            "messages = 100000\nmessage_interval = \"50ms\"",
        ),
    );
    let r = run_report(dir.path(), &s);
    let received = num(&r, "messages.received");
    assert!(
        (120.0..=180.0).contains(&received),
        "{received} messages in the measured part"
    );
    assert_eq!(
        num(&r, "streams.opened"),
        0.0,
        "the streams opened in the warm-up are not the measured part's"
    );
}

#[test]
fn pipelined_streams_without_interval_deliver_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "pipe.toml",
        &stream_scenario(
            "embedded",
            "bidi_stream",
            "loadagent.bench.v1.Bench/BidiStream",
            "{ payload_size = 8 }",
            "requests = 6\nconcurrency = 3",
            "messages = 500\nmode = \"pipelined\"",
        ),
    );
    let r = run_report(dir.path(), &s);
    assert_eq!(num(&r, "messages.sent"), 3000.0);
    assert_eq!(num(&r, "messages.received"), 3000.0);
    assert_eq!(
        num(&r, "latency_message.count"),
        3000.0,
        "every reply matched to its message"
    );
    assert_eq!(r["status_codes"], serde_json::json!({"OK": 6}));
}

#[test]
fn a_message_over_the_receive_limit_fails_its_stream_cleanly() {
    // 4 MiB of payload plus the message's own bytes is just over gRPC's 4 MiB limit.
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "big.toml",
        &stream_scenario(
            "embedded",
            "server_stream",
            "loadagent.bench.v1.Bench/ServerStream",
            "{ payload_size = 4194304, response_count = 2 }",
            "requests = 3\nconcurrency = 1",
            "",
        ),
    );
    let r = run_report(dir.path(), &s);
    assert_eq!(
        r["status_codes"],
        serde_json::json!({"RESOURCE_EXHAUSTED": 3})
    );
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("larger than max"),
        "{}",
        r["errors"]
    );
}

/// `[stream] message_rate`: each message has an intended send time on the stream's own
/// schedule. A stall in a real grpcio server (one reply 500 ms late) shows in the corrected
/// per-message percentiles — the messages due during the stall were sent late, at once — and
/// not in the uncorrected ones, where it is one slow message of 300.
#[test]
fn a_server_stall_shows_in_the_corrected_message_latency_and_not_the_uncorrected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&["--stall-after", "50", "--stall-ms", "500"]);
    let s = scenario(
        dir.path(),
        "paced.toml",
        &stream_scenario(
            &server.address(),
            "bidi_stream",
            "testing.echo.v1.Echo/Chat",
            r#"{ message = "hi" }"#,
            "requests = 1\nconcurrency = 1",
            "messages = 300\nmessage_rate = 100",
        ),
    );
    let r = run_report(dir.path(), &s);
    let counts = server.stop_with_counts();
    assert_eq!(num(&r, "messages.sent"), 300.0);
    assert_eq!(num(&r, "messages.received"), 300.0);
    assert_eq!(counts["stream_received"].as_f64(), Some(300.0));
    assert_eq!(counts["stream_sent"].as_f64(), Some(300.0));
    let late = num(&r, "messages.sent_late");
    // At least the 50 messages due during the stall, and those due while the stream caught
    // up one round trip at a time — how many depends on the round trip (a loaded machine's
    // can approach the 10 ms period, and then most later messages are late too).
    assert!(
        (45.0..=300.0).contains(&late),
        "the messages due during the 500 ms stall were sent late: {late} of 300"
    );
    let corrected_p99 = num(&r, "latency_message_corrected.p99_us");
    let uncorrected_p99 = num(&r, "latency_message.p99_us");
    let uncorrected_max = num(&r, "latency_message.max_us");
    assert!(
        corrected_p99 >= 300_000.0,
        "corrected p99 {corrected_p99}us shows the stall"
    );
    assert!(
        uncorrected_p99 < 100_000.0,
        "uncorrected p99 {uncorrected_p99}us: one slow message of 300"
    );
    assert!(uncorrected_max >= 500_000.0, "the stalled reply itself");
    let corrected_p50 = num(&r, "latency_message_corrected.p50_us");
    assert!(
        corrected_p50 < 100_000.0,
        "most messages were on time: corrected p50 {corrected_p50}us"
    );
}

/// Pipelined streams on a message schedule deliver the asked rate: the sends do not wait for
/// the replies, so round trips do not stretch the period (as `message_interval` does).
#[test]
fn pipelined_streams_on_a_message_schedule_send_what_was_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&[]);
    let s = scenario(
        dir.path(),
        "pipelined.toml",
        &stream_scenario(
            &server.address(),
            "bidi_stream",
            "testing.echo.v1.Echo/Chat",
            r#"{ message = "hi", delay_ms = 5 }"#,
            "requests = 10\nconcurrency = 10",
            "messages = 100\nmessage_rate = 50\nmode = \"pipelined\"",
        ),
    );
    let started = std::time::Instant::now();
    let r = run_report(dir.path(), &s);
    let took = started.elapsed().as_secs_f64();
    let counts = server.stop_with_counts();
    assert_eq!(num(&r, "messages.sent"), 1000.0);
    assert_eq!(num(&r, "messages.received"), 1000.0);
    assert_eq!(counts["stream_received"].as_f64(), Some(1000.0));
    // 100 messages at 50/s take 2 s on schedule (a grpcio server answers a stream's
    // messages one after another, 5 ms each: it keeps up).
    assert!(took < 3.5, "{took}s for a 2 s schedule");
    let p50 = num(&r, "latency_message_corrected.p50_us");
    assert!(
        (5_000.0..=60_000.0).contains(&p50),
        "corrected p50 {p50}us for a 5 ms delay"
    );
}

/// Long-lived streams on a message schedule in a time-bounded run (the closed model, streams
/// opened in the warm-up): the report counts the messages due in the measured part — streams
/// × rate × seconds, exactly — and each reply with its message. Pinned because it was not so:
/// every closed-model stream had number 0, so all fell due in the same millisecond (half
/// counted late); the last messages, due at the end, went out after it and counted, their
/// replies too, with no latency; and with the end as a stream's schedule bound, streams
/// with nothing more due closed and their workers opened thousands more.
#[test]
fn a_time_bounded_run_counts_the_messages_due_in_its_measured_part() {
    let server = Server::python(&[]);
    for mode in ["ping_pong", "pipelined"] {
        let dir = tempfile::tempdir().unwrap();
        let s = scenario(
            dir.path(),
            "scheduled.toml",
            &stream_scenario(
                &server.address(),
                "bidi_stream",
                "testing.echo.v1.Echo/Chat",
                r#"{ message = "hi" }"#,
                "concurrency = 8\nwarmup = \"1s\"\nduration = \"2s\"",
                &format!("messages = 100000\nmessage_rate = 10\nmode = \"{mode}\""),
            ),
        );
        let r = run_report(dir.path(), &s);
        let context = format!("{mode}: {} {}", r["messages"], r["streams"]);
        // 8 streams × 10 a second × 2 seconds.
        assert_eq!(num(&r, "messages.sent"), 160.0, "{context}");
        assert_eq!(num(&r, "messages.received"), 160.0, "{context}");
        assert_eq!(num(&r, "latency_message.count"), 160.0, "{context}");
        assert_eq!(
            num(&r, "latency_message_corrected.count"),
            160.0,
            "{context}"
        );
        let per_interval: Vec<f64> = r["intervals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["messages_sent"].as_f64().unwrap_or(0.0))
            .collect();
        assert_eq!(per_interval.iter().sum::<f64>(), 160.0, "{per_interval:?}");
        // The streams opened in the warm-up ran to the end: none closed, none opened.
        assert_eq!(
            (
                num(&r, "streams.open_at_start"),
                num(&r, "streams.opened"),
                num(&r, "streams.open_at_end"),
                num(&r, "streams.failed"),
            ),
            (8.0, 0.0, 8.0, 0.0),
            "{context}"
        );
    }
    // The server answered every message it was sent, warm-up and wind-down included.
    let counts = server.stop_with_counts();
    let (received, sent) = (
        counts["stream_received"].as_f64().unwrap(),
        counts["stream_sent"].as_f64().unwrap(),
    );
    assert!(received >= 2.0 * 160.0 && received == sent, "{counts}");
}

#[test]
fn message_rate_is_refused_with_message_interval_and_on_server_streams() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, method, stream, want) in [
        (
            "bidi_stream",
            "BidiStream",
            "message_rate = 10\nmessage_interval = \"10ms\"",
            "not both",
        ),
        (
            "server_stream",
            "ServerStream",
            "message_rate = 10",
            "server stream",
        ),
        (
            "bidi_stream",
            "BidiStream",
            "message_rate = 1e-300",
            "too slow",
        ),
    ] {
        let s = scenario(
            dir.path(),
            "bad.toml",
            &stream_scenario(
                "embedded",
                kind,
                &format!("loadagent.bench.v1.Bench/{method}"),
                "{}",
                "requests = 1",
                stream,
            ),
        );
        let out = loadagent(&["validate", s.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let t = text(&out);
        assert!(t.contains("stream.message_rate") && t.contains(want), "{t}");
    }
}

/// Streams opened in the warm-up and held through the run are in the report: open when the
/// measured part began, still open when it stopped (none opened in it), and their messages
/// counted — not "0 opened / 0 failed" with nothing said.
#[test]
fn streams_held_through_the_warm_up_are_reported_open_at_start_and_end() {
    let dir = tempfile::tempdir().unwrap();
    let target = Server::reference_target();
    let s = scenario(
        dir.path(),
        "held.toml",
        &stream_scenario(
            &target.address(),
            "server_stream",
            "loadagent.bench.v1.Bench/ServerStream",
            "{ delay_ms = 50, response_count = 0 }",
            "concurrency = 4\nwarmup = \"1s\"\nduration = \"2s\"",
            "messages = 0",
        ),
    );
    let r = run_report(dir.path(), &s);
    assert_eq!(num(&r, "streams.open_at_start"), 4.0, "{}", r["streams"]);
    assert_eq!(num(&r, "streams.open_at_end"), 4.0, "{}", r["streams"]);
    assert_eq!(num(&r, "streams.opened"), 0.0, "{}", r["streams"]);
    assert!(num(&r, "messages.received") > 50.0, "{}", r["messages"]);
}
