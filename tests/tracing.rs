//! OTLP traces: an in-test OTLP/gRPC receiver (the trace service of the opentelemetry-proto
//! crate on tonic) receives the spans of `loadagent run` and of the agent; the traceparent a
//! sampled call carries reaches a Python grpcio server; an unreachable endpoint loses spans
//! (counted) and nothing else.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;

/// One received span with its resource's `service.name`.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn attr(&self, key: &str) -> Option<&Value> {
        attr(&self.span.attributes, key)
    }

    fn string(&self, key: &str) -> Option<String> {
        match self.attr(key) {
            Some(Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        }
    }

    fn int(&self, key: &str) -> Option<i64> {
        match self.attr(key) {
            Some(Value::IntValue(i)) => Some(*i),
            _ => None,
        }
    }
}

fn attr<'a>(list: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    list.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

#[derive(Default, Clone)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .map_or(String::new(), |v| match v {
                    Value::StringValue(s) => s.clone(),
                    _ => String::new(),
                });
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on a loopback port, on its own runtime thread.
struct Receiver {
    collector: Collector,
    endpoint: String,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Self {
            collector,
            endpoint,
            _runtime: runtime,
        }
    }

    fn spans(&self) -> Vec<Received> {
        self.collector.spans.lock().unwrap().clone()
    }

    /// The received spans called `name`.
    fn named(&self, name: &str) -> Vec<Received> {
        self.spans()
            .into_iter()
            .filter(|r| r.span.name == name)
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_run_exports_its_span_and_every_sampled_call_as_a_child() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "traced.toml",
        &format!(
            r#"
name = "traced"
kind = "unary"
[target]
address = "embedded"
[call]
method = "loadagent.bench.v1.Bench/Unary"
data = {{ payload_size = 16 }}
[load]
concurrency = 2
requests = 40
[tracing]
otlp_endpoint = "{}"
sample_ratio = 1.0
"#,
            receiver.endpoint
        ),
    );
    let out = loadagent(&["run", "-q", s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The run flushes before it exits: everything is there when it returns.
    let spans = receiver.spans();
    let runs = receiver.named("loadagent.run");
    assert_eq!(runs.len(), 1, "one run span: {spans:#?}");
    let run = &runs[0];
    assert_eq!(run.service, "loadagent");
    assert!(run.span.parent_span_id.is_empty(), "the run span is a root");
    assert_eq!(run.string("loadagent.scenario").as_deref(), Some("traced"));
    assert_eq!(run.int("loadagent.requests"), Some(40));
    assert_eq!(run.int("loadagent.errors"), Some(0));
    let calls = receiver.named("loadagent.bench.v1.Bench/Unary");
    assert_eq!(
        calls.len(),
        40,
        "sample_ratio = 1: a span per call ({} spans in all)",
        spans.len()
    );
    for c in &calls {
        assert_eq!(
            c.span.trace_id, run.span.trace_id,
            "calls are in the run's trace"
        );
        assert_eq!(
            c.span.parent_span_id, run.span.span_id,
            "calls are the run's children"
        );
        assert_eq!(c.span.kind, SpanKind::Client as i32);
        assert_eq!(c.string("rpc.system").as_deref(), Some("grpc"));
        assert_eq!(c.string("rpc.method").as_deref(), Some("Unary"));
        assert_eq!(c.int("rpc.grpc.status_code"), Some(0));
        assert!(c.span.end_time_unix_nano >= c.span.start_time_unix_nano);
        assert!(
            c.span.start_time_unix_nano >= run.span.start_time_unix_nano
                && c.span.end_time_unix_nano <= run.span.end_time_unix_nano,
            "a call lies within its run"
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("traces    41 spans exported to"),
        "the summary says what went out:\n{stdout}"
    );
}

#[test]
fn sampled_calls_carry_their_traceparent_to_a_python_server_and_failures_are_errors() {
    let receiver = Receiver::start();
    let py = Server::python(&["--fail-every", "5"]);
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "sampled.toml",
        &format!(
            "{}\n[tracing]\notlp_endpoint = \"{}\"\nsample_ratio = 0.5\n",
            echo_scenario(
                &py.address(),
                "data = { message = \"hi\" }",
                "concurrency = 4\nrequests = 400"
            ),
            receiver.endpoint
        ),
    );
    let out = loadagent(&["run", "-q", s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let counts = py.stop_with_counts();
    let calls = receiver.named("testing.echo.v1.Echo/Say");
    // Binomial(400, 0.5): 200 ± 10 (one standard deviation); these bounds are 7 of them.
    assert!(
        (130..=270).contains(&calls.len()),
        "about half the calls are sampled: {}",
        calls.len()
    );
    // Exactly the sampled calls carried a traceparent, naming their own span.
    let seen = counts["traceparents"]["/testing.echo.v1.Echo/Say"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut sent: Vec<String> = seen
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut expected: Vec<String> = calls
        .iter()
        .map(|c| format!("00-{}-{}-01", hex(&c.span.trace_id), hex(&c.span.span_id)))
        .collect();
    sent.sort();
    expected.sort();
    assert_eq!(
        sent, expected,
        "the server saw each sampled call's traceparent"
    );
    // Every fifth request fails (UNAVAILABLE, 14): those spans are errors with the message.
    let failed: Vec<_> = calls
        .iter()
        .filter(|c| c.int("rpc.grpc.status_code") == Some(14))
        .collect();
    assert!(!failed.is_empty(), "some sampled calls failed");
    for f in failed {
        let status = f.span.status.as_ref().expect("a status");
        assert_eq!(status.code, 2, "STATUS_CODE_ERROR");
        assert!(status.message.contains("planned failure"), "{status:?}");
    }
}

#[test]
fn an_unreachable_endpoint_drops_and_counts_spans_and_the_run_is_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "lost.toml",
        &format!(
            r#"
name = "lost"
kind = "unary"
[target]
address = "embedded"
[call]
method = "loadagent.bench.v1.Bench/Unary"
[load]
requests = 200
concurrency = 4
[tracing]
otlp_endpoint = "http://127.0.0.1:{}"
sample_ratio = 1.0
"#,
            closed_port()
        ),
    );
    let report = dir.path().join("r.json");
    let out = loadagent(&[
        "run",
        "-q",
        s.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(num(&json, "totals.ok"), 200.0, "the load is whole");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("0 spans exported") && stdout.contains("201 dropped"),
        "every span is counted as dropped:\n{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings = stderr.matches("spans dropped").count();
    assert_eq!(warnings, 1, "one rate-limited warning:\n{stderr}");
}

#[test]
fn the_agent_exports_probe_and_scheduled_run_spans_and_counts_lost_ones() {
    let receiver = Receiver::start();
    let py = Server::python(&[]);
    let dir = tempfile::tempdir().unwrap();
    scenario(
        dir.path(),
        "scheduled.toml",
        r#"
name = "scheduled"
kind = "unary"
[target]
address = "embedded"
[call]
method = "loadagent.bench.v1.Bench/Unary"
[load]
requests = 20
concurrency = 1
[tracing]
sample_ratio = 1.0
"#,
    );
    let agent = start_agent(
        dir.path(),
        &format!(
            r#"
[[targets]]
name = "py"
address = "{}"
interval = "200ms"

[[schedules]]
scenario = "scheduled.toml"
every = "1h"

[tracing]
otlp_endpoint = "{}"
sample_ratio = 0.0
"#,
            py.address(),
            receiver.endpoint
        ),
    );
    eventually(30, || {
        let probes = receiver.named("loadagent.probe").len();
        let run = receiver.named("loadagent.run").pop();
        let calls = receiver.named("loadagent.bench.v1.Bench/Unary").len();
        match run {
            // The scenario's own sample_ratio (1) wins over the agent's (0).
            Some(_) if probes >= 3 && calls == 20 => Ok(()),
            _ => Err(format!(
                "{probes} probe spans, run span {}, {calls} call spans",
                run.is_some()
            )),
        }
    });
    let probe = receiver.named("loadagent.probe").remove(0);
    assert_eq!(probe.string("loadagent.target").as_deref(), Some("py"));
    assert_eq!(
        probe.string("grpc.health.status").as_deref(),
        Some("SERVING")
    );
    assert_eq!(probe.span.kind, SpanKind::Client as i32);
    // A graceful stop exports the last spans: every traceparent the server saw names one.
    let mut agent = agent;
    terminate(&agent.child);
    let _ = agent.child.wait();
    let probe_ids: std::collections::HashSet<String> = receiver
        .named("loadagent.probe")
        .iter()
        .map(|r| hex(&r.span.span_id))
        .collect();
    let counts = py.stop_with_counts();
    let checks = counts["traceparents"]["/grpc.health.v1.Health/Check"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        checks.len() >= 3,
        "health checks carried a traceparent: {counts}"
    );
    for tp in &checks {
        let span_id = tp.as_str().unwrap().split('-').nth(2).unwrap();
        assert!(probe_ids.contains(span_id), "{tp} names a probe span");
    }

    // Unreachable endpoint: spans are counted as lost in loadagent_errors_total.
    let dir = tempfile::tempdir().unwrap();
    let py = Server::python(&[]);
    let agent = start_agent(
        dir.path(),
        &format!(
            "[[targets]]\nname = \"py\"\naddress = \"{}\"\ninterval = \"100ms\"\n\n[tracing]\notlp_endpoint = \"http://127.0.0.1:{}\"\n",
            py.address(),
            closed_port()
        ),
    );
    let addr = format!("127.0.0.1:{}", agent.port);
    eventually(30, || {
        let (_, body) = http_get(&addr, "/metrics");
        let lost = body
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "loadagent_errors_total{component=\"tracing\",kind=\"export_failed\"} ",
                )
            })
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        let up = sample(&body, "loadagent_probe_success{target=\"py\"}") == Some(1.0);
        if lost >= 1.0 && up {
            Ok(())
        } else {
            Err(format!("lost {lost}, probe up {up}"))
        }
    });
}
