//! OTLP traces: one span per run and per probe, and a sampled fraction of individual calls,
//! exported over OTLP/gRPC (Jaeger ingests OTLP natively).
//!
//! Exporting must never slow the load. Ending a span only hands it to a bounded queue
//! (`try_send`: never blocks); one exporter thread with its own runtime batches and sends.
//! When the queue is full or an export fails, the spans are dropped and counted
//! (`loadagent_errors_total{component="tracing"}` in the agent), with at most one log line
//! a minute. The SDK's own BatchSpanProcessor was not used because it cannot report how
//! many spans it dropped while running.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderValue;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    Sampler, SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter as _, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use prometheus::IntCounterVec;

pub use crate::vocabulary::tracing::{check_endpoint, TracingConfig, DEFAULT_SAMPLE_RATIO};
use crate::vocabulary::HostPort;

/// Spans waiting for the exporter; beyond this they are dropped, never waited for.
const QUEUE: usize = 4096;
/// Spans per export request.
const BATCH: usize = 512;
/// A partial batch is sent after this long.
const LINGER: Duration = Duration::from_secs(1);
/// One export request may take this long before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one warning per this long about dropped spans.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// How many spans went out and how many were lost.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Spans handed to the exporter thread.
    queued: AtomicU64,
    /// Spans the exporter sent.
    pub exported: AtomicU64,
    /// Spans lost (the queue full, or the endpoint refusing them).
    pub dropped: AtomicU64,
    /// Of `dropped`, those lost because the queue was full.
    queue_full: AtomicU64,
    /// Of `dropped`, those never queued: the queue was full or the exporter had stopped.
    not_queued: AtomicU64,
    /// The agent's `loadagent_errors_total`, counted by span under component "tracing".
    errors_total: Option<IntCounterVec>,
}

impl ExportStats {
    fn dropped(&self, spans: u64, kind: &str) {
        self.dropped.fetch_add(spans, Ordering::Relaxed);
        if let Some(c) = &self.errors_total {
            c.with_label_values(&["tracing", kind]).inc_by(spans);
        }
    }
}

enum Message {
    Span(Box<SpanData>),
    Flush(mpsc::Sender<()>),
}

/// Hands ended spans to the exporter thread without ever blocking.
#[derive(Debug)]
struct QueueProcessor {
    queue: SyncSender<Message>,
    stats: Arc<ExportStats>,
}

impl QueueProcessor {
    fn flush(&self, timeout: Duration) -> OTelSdkResult {
        let (ack, done) = mpsc::channel();
        // A full queue is waited for here (flushes happen at the end, not on the hot path).
        self.queue
            .send(Message::Flush(ack))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        done.recv_timeout(timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        match self.queue.try_send(Message::Span(Box::new(span))) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                self.stats.not_queued.fetch_add(1, Ordering::Relaxed);
                self.stats.dropped(1, "queue_full");
            }
            Err(TrySendError::Disconnected(_)) => {
                self.stats.not_queued.fetch_add(1, Ordering::Relaxed);
                self.stats.dropped(1, "exporter_stopped");
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush(EXPORT_TIMEOUT)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.flush(timeout)
    }
}

/// Where warnings go: the agent logs them, `run` prints them to stderr.
pub type Warn = fn(&str);

/// A running trace pipeline.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// What the exporter did.
    pub stats: Arc<ExportStats>,
    /// Where spans go.
    pub endpoint: String,
    /// The share of calls that get a span.
    pub sample_ratio: f64,
}

impl Traces {
    /// Starts exporting to the configured endpoint; `None` when no endpoint is configured.
    /// `errors_total` is the agent's error counter, if any.
    pub fn start(
        config: &TracingConfig,
        errors_total: Option<IntCounterVec>,
        warn: Warn,
    ) -> Result<Option<Self>, String> {
        let Some((endpoint, from)) = config.endpoint() else {
            return Ok(None);
        };
        check_endpoint(&endpoint).map_err(|e| format!("{from}: {e}"))?;
        let stats = Arc::new(ExportStats {
            errors_total,
            ..Default::default()
        });
        let resource = Resource::builder()
            .with_service_name("loadagent")
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("host.arch", std::env::consts::ARCH),
                KeyValue::new(
                    "host.name",
                    sysinfo::System::host_name().unwrap_or_default(),
                ),
            ])
            .build();
        let (queue, incoming) = mpsc::sync_channel(QUEUE);
        let (started, start_result) = mpsc::channel();
        let exporter = Exporter {
            endpoint: endpoint.clone(),
            resource: resource.clone(),
            stats: stats.clone(),
            warn,
        };
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || exporter.run(incoming, started))
            .map_err(|e| format!("cannot start the trace exporter thread: {e}"))?;
        start_result
            .recv()
            .map_err(|_| "the trace exporter thread stopped".to_string())??;
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(resource)
            .with_span_processor(QueueProcessor {
                queue,
                stats: stats.clone(),
            })
            .build();
        let tracer = provider.tracer("loadagent");
        Ok(Some(Self {
            provider,
            tracer,
            stats,
            endpoint,
            sample_ratio: config.ratio(),
        }))
    }

    /// Flushes and stops; spans still queued after `timeout` are lost (and were counted).
    pub fn shutdown(&self, timeout: Duration) {
        let _ = self.provider.shutdown_with_timeout(timeout);
    }

    /// One line for a summary: how many spans went where. After `shutdown`, spans still
    /// queued or in an unfinished export are lost too, and counted with the dropped ones.
    pub fn describe(&self) -> String {
        let s = &self.stats;
        let exported = s.exported.load(Ordering::Relaxed);
        let dropped = s.dropped.load(Ordering::Relaxed);
        let failed = dropped - s.not_queued.load(Ordering::Relaxed);
        let unsent = s
            .queued
            .load(Ordering::Relaxed)
            .saturating_sub(exported + failed);
        format!(
            "{exported} spans exported to {}, {} dropped",
            self.endpoint,
            dropped + unsent
        )
    }

    /// Starts a span (not a call span: those come from a [`CallSampler`]).
    pub fn span(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: Option<&Context>,
        attributes: Vec<KeyValue>,
    ) -> Context {
        let builder = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes);
        let span = match parent {
            Some(cx) => builder.start_with_context(&self.tracer, cx),
            None => builder.start_with_context(&self.tracer, &Context::new()),
        };
        Context::new().with_span(span)
    }
}

/// The exporter thread: a current-thread runtime for the tonic client, fed by the queue.
struct Exporter {
    endpoint: String,
    resource: Resource,
    stats: Arc<ExportStats>,
    warn: Warn,
}

impl Exporter {
    fn run(self, incoming: Receiver<Message>, started: mpsc::Sender<Result<(), String>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = started.send(Err(format!("cannot start the trace exporter: {e}")));
                return;
            }
        };
        // The tonic channel connects lazily, so building needs the runtime but no server.
        let built = runtime.block_on(async {
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(self.endpoint.clone())
                .with_timeout(EXPORT_TIMEOUT)
                .build()
        });
        let mut exporter = match built {
            Ok(e) => e,
            Err(e) => {
                let _ = started.send(Err(format!(
                    "cannot make an OTLP exporter for {}: {e}",
                    self.endpoint
                )));
                return;
            }
        };
        exporter.set_resource(&self.resource);
        let _ = started.send(Ok(()));

        let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH);
        let mut warned: Option<Instant> = None;
        let mut unwarned_drops = 0u64;
        let mut seen_queue_full = 0u64;
        let mut due = Instant::now() + LINGER;
        loop {
            let wait = due.saturating_duration_since(Instant::now());
            let (send_now, ack, stop) = match incoming.recv_timeout(wait) {
                Ok(Message::Span(s)) => {
                    batch.push(*s);
                    // Full, or lingered long enough (a steady trickle never times out).
                    (batch.len() >= BATCH || Instant::now() >= due, None, false)
                }
                Ok(Message::Flush(ack)) => (true, Some(ack), false),
                Err(RecvTimeoutError::Timeout) => (true, None, false),
                Err(RecvTimeoutError::Disconnected) => (true, None, true),
            };
            if send_now {
                due = Instant::now() + LINGER;
                if !batch.is_empty() {
                    let spans = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    let n = spans.len() as u64;
                    let result = runtime.block_on(async {
                        tokio::time::timeout(EXPORT_TIMEOUT * 2, exporter.export(spans)).await
                    });
                    match result {
                        Ok(Ok(())) => {
                            self.stats.exported.fetch_add(n, Ordering::Relaxed);
                        }
                        Ok(Err(e)) => {
                            self.stats.dropped(n, "export_failed");
                            unwarned_drops += n;
                            self.warn_limited(&mut warned, &mut unwarned_drops, &e.to_string());
                        }
                        Err(_) => {
                            self.stats.dropped(n, "export_failed");
                            unwarned_drops += n;
                            self.warn_limited(&mut warned, &mut unwarned_drops, "timed out");
                        }
                    }
                }
                let queue_full = self.stats.queue_full.load(Ordering::Relaxed);
                if queue_full > seen_queue_full {
                    unwarned_drops += queue_full - seen_queue_full;
                    seen_queue_full = queue_full;
                    self.warn_limited(&mut warned, &mut unwarned_drops, "the queue was full");
                }
            }
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
            if stop {
                return;
            }
        }
    }

    /// One warning now and then, saying how many spans were lost since the last one.
    fn warn_limited(&self, warned: &mut Option<Instant>, unwarned: &mut u64, why: &str) {
        if warned.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        (self.warn)(&format!(
            "traces: {} spans dropped, could not export to {}: {why} (next warning in a minute at most)",
            *unwarned, self.endpoint
        ));
        *warned = Some(Instant::now());
        *unwarned = 0;
    }
}

/// Gives a sampled fraction of a run's calls a span, child of the run's span.
#[derive(Debug, Clone)]
pub struct CallSampler {
    tracer: SdkTracer,
    parent: Context,
    ratio: f64,
    name: Cow<'static, str>,
    attributes: Vec<KeyValue>,
}

impl CallSampler {
    /// `method` is "package.Service/Method" (None for a handshake storm without a call);
    /// `address` is the target dialled.
    pub fn new(
        traces: &Traces,
        parent: &Context,
        ratio: f64,
        method: Option<(&str, &str)>,
        address: &HostPort,
        scenario: &str,
    ) -> Self {
        let mut attributes = vec![
            KeyValue::new("loadagent.scenario", scenario.to_string()),
            KeyValue::new("server.address", address.host().to_string()),
            KeyValue::new("server.port", i64::from(address.port())),
        ];
        let name = match method {
            Some((service, method)) => {
                attributes.push(KeyValue::new("rpc.system", "grpc"));
                attributes.push(KeyValue::new("rpc.service", service.to_string()));
                attributes.push(KeyValue::new("rpc.method", method.to_string()));
                Cow::Owned(format!("{service}/{method}"))
            }
            None => Cow::Borrowed("tls handshake"),
        };
        Self {
            tracer: traces.tracer.clone(),
            parent: parent.clone(),
            ratio,
            name,
            attributes,
        }
    }

    /// A span for this call, if it is in the sample.
    pub fn sample(&self) -> Option<CallSpan> {
        if self.ratio <= 0.0 || (self.ratio < 1.0 && rand::random::<f64>() >= self.ratio) {
            return None;
        }
        let span = self
            .tracer
            .span_builder(self.name.clone())
            .with_kind(SpanKind::Client)
            .with_start_time(SystemTime::now())
            .with_attributes(self.attributes.clone())
            .start_with_context(&self.tracer, &self.parent);
        let traceparent = traceparent(span.span_context());
        Some(CallSpan { span, traceparent })
    }
}

/// The W3C `traceparent` header naming `context` as the parent (sampled).
pub fn traceparent(context: &opentelemetry::trace::SpanContext) -> Option<HeaderValue> {
    if !context.is_valid() {
        return None;
    }
    let mut value = HeaderValue::from_str(&format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    ))
    .ok()?;
    // Unique per call: HPACK must not index it, or each sampled call would evict the
    // connection's reusable headers (path, content-type …) from the dynamic table and make
    // the next calls re-send them in full. Sensitive values are sent "never indexed".
    value.set_sensitive(true);
    Some(value)
}

/// One sampled call in flight.
#[derive(Debug)]
pub struct CallSpan {
    span: Span,
    /// Sent in the call's metadata, so the target's own span joins the trace.
    pub traceparent: Option<HeaderValue>,
}

impl CallSpan {
    /// Adds an attribute to the call's span.
    pub fn set_attribute(&mut self, attribute: KeyValue) {
        self.span.set_attribute(attribute);
    }

    /// Ends the span with the call's gRPC status; any code but OK is an error (as the
    /// OpenTelemetry RPC conventions have it for client spans).
    pub fn end(mut self, code: u8, message: Option<&str>, measured: bool, late: bool) {
        self.span
            .set_attribute(KeyValue::new("rpc.grpc.status_code", i64::from(code)));
        if !measured {
            self.span
                .set_attribute(KeyValue::new("loadagent.warmup", true));
        }
        if late {
            self.span
                .set_attribute(KeyValue::new("loadagent.sent_late", true));
        }
        if code != crate::grpc::status::OK {
            let name = crate::grpc::status::code_name(code);
            let description = match message {
                Some(m) if !m.is_empty() => format!("{name}: {m}"),
                _ => name.to_string(),
            };
            self.span.set_status(Status::error(description));
        }
        self.span.end();
    }
}

/// Ends the span held by `cx`, with an error status when `error` is given.
pub fn end_span(cx: &Context, attributes: Vec<KeyValue>, error: Option<String>) {
    let span = cx.span();
    span.set_attributes(attributes);
    if let Some(e) = error {
        span.set_status(Status::error(e));
    }
    span.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_a_scheme_and_a_host() {
        assert!(check_endpoint("http://localhost:4317").is_ok());
        assert!(check_endpoint("https://collector.example").is_ok());
        assert!(check_endpoint("localhost:4317").is_err());
        assert!(check_endpoint("ftp://x:1").is_err());
        assert!(check_endpoint("").is_err());
    }

    #[test]
    fn traceparent_is_w3c_version_00() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        assert_eq!(
            traceparent(&sc).unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert!(
            traceparent(&sc).unwrap().is_sensitive(),
            "never HPACK-indexed"
        );
        assert!(traceparent(&SpanContext::empty_context()).is_none());
    }
}
