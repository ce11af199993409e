//! Health probing, one task per target — per backend, for a target named by DNS — so a slow
//! or hanging target never delays another. A DNS-named target's supervisor (`follow`)
//! resolves the name every `resolve_every`, starts a prober for each new backend and stops
//! (and forgets the series of) each one that left; a failed resolution keeps the last known
//! backends probed.
//! Check mode calls grpc.health.v1 Check every interval over a kept connection; Watch mode
//! keeps a Watch stream open and follows its statuses, reconnecting with exponential backoff
//! (except after UNIMPLEMENTED, which is reported and not retried).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::channels::{Channels, SharedChannel};
use super::config::{ProbeAddress, ProbeMode, ProbeTarget};
use crate::discovery::Fleet;
use crate::grpc::method_probe::{MethodProbe, Verdict};
use crate::grpc::web::{WebCall, WebOptions, WebSender};
use crate::probe::health::{self, HealthAnswer};
use crate::probe::method::PrepareError;
use crate::scenario::{FleetName, HostPort};
use crate::telemetry::traces::{end_span, traceparent, Traces};
use crate::telemetry::Metrics;
use crate::tls::ClientTls;
use opentelemetry::trace::{SpanKind, TraceContextExt};
use opentelemetry::KeyValue;

/// The statuses a target can be in, as `serving_status` labels.
const STATUSES: [&str; 4] = crate::telemetry::metrics::SERVING_STATUSES;

/// A target's last probe, for `/api/v1/targets`.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub name: String,
    /// As configured (a DNS name for a fleet).
    pub address: String,
    /// The instance probed: `IP:PORT` for a DNS name's backend, else the address.
    pub backend: String,
    pub mode: &'static str,
    pub success: bool,
    /// The grpc.health.v1 status, when the RPC answered.
    pub status: Option<String>,
    pub grpc_status_code: Option<i32>,
    pub duration_seconds: f64,
    pub error: Option<String>,
    /// A method probe's checks and how each went in the last call.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    /// Unix seconds of the probe.
    pub at: f64,
}

/// One `expect` check of a method probe, as `/api/v1/targets` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub check: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How a method probe's call went, for `publish`.
struct MethodRound {
    passed: bool,
    code: u8,
    error: Option<String>,
    checks: Vec<CheckResult>,
}

/// The last result of each (target, backend).
pub type Results = Arc<Mutex<BTreeMap<(String, String), ProbeResult>>>;

/// Shared by every prober.
#[derive(Clone)]
pub struct ProbeContext {
    pub metrics: Arc<Metrics>,
    pub results: Results,
    /// Counts targets whose first probe round is done (`/readyz`).
    pub first_round: Arc<std::sync::atomic::AtomicUsize>,
    pub stop: CancellationToken,
    /// A span per probe when tracing is on.
    pub traces: Option<Arc<Traces>>,
    /// Connections shared by probers that reach one address the same way.
    pub channels: Arc<Channels>,
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

struct Prober {
    target: ProbeTarget,
    /// Where this prober connects: the address, or one backend of the name.
    address: HostPort,
    /// The `backend` label.
    backend: String,
    /// Set by the target's first published result, whichever backend's (`/readyz`).
    first: Arc<AtomicBool>,
    /// Stops this prober alone (its backend left the name), or with the agent.
    stop: CancellationToken,
    tls: Option<ClientTls>,
    ctx: ProbeContext,
    /// The shared connection in use, and its generation.
    channel: Option<(Channel, u64)>,
    /// The target's log limit, shared by every backend's prober: a name whose 1,024
    /// backends all fail logs one line a minute, not 1,024.
    log: LogLimit,
    /// The span of the probe in progress (tracing on), ended when its result is published.
    span: Option<opentelemetry::Context>,
    /// The method probe, prepared (from files when the config was read, else by reflection
    /// at the first probe that reaches the target).
    method: Option<MethodProbe>,
    /// Renders a method probe's templates; `calls` numbers its requests.
    renderer: crate::grpc::request::Renderer,
    calls: u64,
    /// A gRPC-Web target: its call (made once the method is known) and its connection.
    web: Option<(WebCall, Option<WebSender>)>,
}

impl Prober {
    /// The `target` and `backend` labels.
    fn labels(&self) -> [&str; 2] {
        [&self.target.name, &self.backend]
    }

    /// The labels with a third (`phase`, `serving_status`, `version`, `result`).
    fn labels_and<'a>(&'a self, third: &'a str) -> [&'a str; 3] {
        [&self.target.name, &self.backend, third]
    }

    fn set_status(&self, status: Option<&str>) {
        self.ctx.metrics.probes_changed();
        for s in STATUSES {
            let v = if Some(s) == status { 1.0 } else { 0.0 };
            self.ctx
                .metrics
                .probe_health_status
                .with_label_values(&self.labels_and(s))
                .set(v);
        }
    }

    fn log_failure(&mut self, message: &str) {
        if let Some(since) = self.log.allow() {
            tracing::warn!(target = %self.target.name, backend = %self.backend, "probe failed: {message} (logged at most once a minute per target{since})");
        }
    }

    /// Opens the span of one probe round (a Check call, or a Watch stream up to its first
    /// answer), when tracing is on.
    fn open_span(&mut self, method: &'static str) {
        let Some(traces) = &self.ctx.traces else {
            return;
        };
        let mut attributes = vec![
            KeyValue::new("loadagent.target", self.target.name.clone()),
            KeyValue::new("server.address", self.address.host().to_string()),
            KeyValue::new("server.port", i64::from(self.address.port())),
            KeyValue::new("rpc.system", "grpc"),
        ];
        match &self.target.method {
            // A method probe's span names the method it calls.
            Some(spec) => {
                attributes.push(KeyValue::new("rpc.service", spec.name.service.clone()));
                attributes.push(KeyValue::new("rpc.method", spec.name.method.clone()));
            }
            None => {
                attributes.push(KeyValue::new("rpc.service", "grpc.health.v1.Health"));
                attributes.push(KeyValue::new("rpc.method", method));
                attributes.push(KeyValue::new(
                    "grpc.health.service",
                    self.target.service.clone(),
                ));
            }
        }
        self.span = Some(traces.span("loadagent.probe", SpanKind::Client, None, attributes));
    }

    /// Ends the open probe span, if any, with the probe's result.
    fn close_span(
        &mut self,
        success: bool,
        status: Option<&str>,
        code: Option<i32>,
        error: Option<&str>,
    ) {
        let Some(cx) = self.span.take() else {
            return;
        };
        let mut attributes = vec![KeyValue::new("loadagent.probe.success", success)];
        if let Some(s) = status {
            attributes.push(KeyValue::new("grpc.health.status", s.to_string()));
        }
        if let Some(c) = code {
            attributes.push(KeyValue::new("rpc.grpc.status_code", i64::from(c)));
        }
        end_span(&cx, attributes, error.map(str::to_string));
    }

    /// Publishes one probe's result.
    fn publish(
        &mut self,
        status: Option<String>,
        code: Option<i32>,
        took: Duration,
        error: Option<String>,
    ) {
        self.publish_round(status, code, took, error, None);
    }

    /// Publishes one probe's result: the health check's (unless `health = false`) and the
    /// method probe's, when the target has one.
    fn publish_round(
        &mut self,
        status: Option<String>,
        code: Option<i32>,
        took: Duration,
        error: Option<String>,
        method: Option<MethodRound>,
    ) {
        let health = self.checks_health();
        let healthy = !health || status.as_deref() == Some("SERVING");
        let success = healthy && method.as_ref().is_none_or(|m| m.passed);
        let code = if health {
            code
        } else {
            method.as_ref().map(|m| i32::from(m.code))
        };
        let error = match (error, method.as_ref().and_then(|m| m.error.clone())) {
            (Some(h), Some(m)) => Some(format!("{h}; {m}")),
            (h, m) => h.or(m),
        };
        let status = if health { status } else { None };
        self.close_span(success, status.as_deref(), code, error.as_deref());
        let m = &self.ctx.metrics;
        m.probes_changed();
        let name = self.target.name.clone();
        m.probe_success
            .with_label_values(&self.labels())
            .set(if success { 1.0 } else { 0.0 });
        m.probe_grpc_status
            .with_label_values(&self.labels())
            .set(f64::from(code.unwrap_or(14)));
        m.probes_total
            .with_label_values(&self.labels_and(if success { "success" } else { "failure" }))
            .inc();
        if health {
            self.set_status(status.as_deref());
        }
        let checks = method.map(|r| r.checks).unwrap_or_default();
        for c in &checks {
            m.probe_check_failed
                .with_label_values(&[&self.target.name, &self.backend, &c.check])
                .set(if c.passed { 0.0 } else { 1.0 });
        }
        if let Some(e) = &error {
            m.errors_total.with_label_values(&["probe", "failed"]).inc();
            self.log_failure(e);
        }
        let result = ProbeResult {
            name: name.clone(),
            address: self.target.address.to_string(),
            backend: self.backend.clone(),
            mode: if self.target.mode == ProbeMode::Watch {
                "watch"
            } else {
                "check"
            },
            success,
            status,
            grpc_status_code: code,
            duration_seconds: took.as_secs_f64(),
            error,
            checks,
            at: now_unix(),
        };
        if let Ok(mut r) = self.ctx.results.lock() {
            r.insert((name, self.backend.clone()), result);
        }
        if !self.first.swap(true, Ordering::Relaxed) {
            self.ctx.first_round.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Which shared connection this prober uses (`Channels`).
    fn channel_key(&self) -> String {
        Channels::key(
            &self.address,
            self.target.address.host(),
            self.target.timeout,
            &format!("{:?}", self.target.tls),
        )
    }

    /// The kept channel: the connection shared with the probers that reach this address the
    /// same way, made (timing resolve and connect) when there is none. Every prober sharing
    /// it exports what making it measured.
    async fn channel(&mut self) -> Result<Channel, String> {
        if let Some((c, _)) = &self.channel {
            return Ok(c.clone());
        }
        let key = self.channel_key();
        let channels = self.ctx.channels.clone();
        let shared = channels
            .get_or_connect(&key, |generation| self.connect(generation))
            .await?;
        let m = &self.ctx.metrics;
        m.probe_duration
            .with_label_values(&self.labels_and("resolve"))
            .set(shared.resolve.as_secs_f64());
        let mut connect = shared.connect;
        let facts = shared.tls.lock().ok().and_then(|g| g.clone());
        if let Some(f) = facts {
            // `connect` is TCP alone; the handshake is its own phase.
            connect = connect.saturating_sub(f.handshake);
            m.probe_duration
                .with_label_values(&self.labels_and("tls"))
                .set(f.handshake.as_secs_f64());
            if let Some(expiry) = f.earliest_expiry {
                m.probe_cert_expiry
                    .with_label_values(&self.labels())
                    .set(expiry as f64);
            }
            for v in crate::telemetry::metrics::TLS_VERSIONS {
                m.probe_tls_version
                    .with_label_values(&self.labels_and(v))
                    .set(if v == f.version { 1.0 } else { 0.0 });
            }
        }
        m.probe_duration
            .with_label_values(&self.labels_and("connect"))
            .set(connect.as_secs_f64());
        self.channel = Some((shared.channel.clone(), shared.generation));
        Ok(shared.channel)
    }

    /// Resolves and connects: a new shared connection.
    async fn connect(&self, generation: u64) -> Result<SharedChannel, String> {
        let t0 = Instant::now();
        let resolved = tokio::time::timeout(
            self.target.timeout,
            tokio::net::lookup_host(self.address.dial()),
        )
        .await;
        let resolve = t0.elapsed();
        match resolved {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("cannot resolve {}: {e}", self.address)),
            Err(_) => {
                return Err(format!(
                    "resolving {} took longer than {:?}",
                    self.address, self.target.timeout
                ))
            }
        }
        let t1 = Instant::now();
        let tls: crate::grpc::control::TlsFactsSlot = Default::default();
        let channel = crate::grpc::control::channel_with_facts(
            &self.address,
            None,
            self.target.timeout,
            self.tls.as_ref(),
            Some(tls.clone()),
        )
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", self.address))?;
        Ok(SharedChannel {
            channel,
            generation,
            resolve,
            connect: t1.elapsed(),
            tls,
        })
    }

    /// The connection failed this prober: the next probe (of any prober sharing it) makes a
    /// new one.
    fn drop_channel(&mut self) {
        if let Some((_, generation)) = self.channel.take() {
            self.ctx
                .channels
                .invalidate(&self.channel_key(), generation);
        }
    }

    fn request(&self) -> tonic::Request<HealthCheckRequest> {
        let metadata = self
            .target
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let mut req = crate::probe::health::request(&self.target.service, metadata);
        // The target's own span of this call joins the probe's trace.
        let parent = self
            .span
            .as_ref()
            .map(|cx| cx.span().span_context().clone());
        if let Some(tp) = parent.as_ref().and_then(traceparent) {
            if let Ok(v) = tonic::metadata::MetadataValue::try_from(tp.as_bytes()) {
                req.metadata_mut().insert("traceparent", v);
            }
        }
        req
    }

    /// Whether this target's health service is checked (all but method probes with
    /// `health = false`).
    fn checks_health(&self) -> bool {
        self.target.method.as_ref().is_none_or(|m| m.health)
    }

    async fn check_once(&mut self) {
        self.open_span("Check");
        let started = Instant::now();
        if self.target.web.is_some() {
            let round = self.web_round().await;
            return self.publish_round(None, None, started.elapsed(), None, Some(round));
        }
        let channel = match self.channel().await {
            Ok(c) => c,
            Err(e) => {
                let method = self.unreachable_round(&e);
                return self.publish_round(None, None, started.elapsed(), Some(e), method);
            }
        };
        let (status, code, error) = if self.checks_health() {
            self.health_check(channel.clone()).await
        } else {
            (None, None, None)
        };
        let method = match self.target.method.is_some() {
            true => Some(self.method_round(channel).await),
            false => None,
        };
        self.publish_round(status, code, started.elapsed(), error, method);
    }

    /// One grpc.health.v1 Check: the status, the gRPC code and what went wrong.
    async fn health_check(
        &mut self,
        channel: Channel,
    ) -> (Option<String>, Option<i32>, Option<String>) {
        let t = Instant::now();
        let answer = health::check(channel, self.request(), self.target.timeout).await;
        let took = t.elapsed();
        self.ctx
            .metrics
            .probe_duration
            .with_label_values(&self.labels_and("check"))
            .set(took.as_secs_f64());
        match answer {
            HealthAnswer::Status(status) => {
                if self.target.method.is_none() {
                    self.ctx
                        .metrics
                        .probe_latency
                        .with_label_values(&self.labels())
                        .observe(took.as_secs_f64());
                }
                let status = health::status_name(status);
                let error = (status != "SERVING").then(|| format!("answered {status}"));
                (Some(status.to_string()), Some(0), error)
            }
            HealthAnswer::Failed(s) => {
                if s.code() == tonic::Code::Unavailable {
                    self.drop_channel();
                }
                let status =
                    (s.code() == tonic::Code::NotFound).then(|| "SERVICE_UNKNOWN".to_string());
                (
                    status,
                    Some(s.code() as i32),
                    Some(format!(
                        "health check failed: {}: {}",
                        s.code(),
                        s.message()
                    )),
                )
            }
            // A Check has no stream to end; a server that sends nothing is not answering.
            HealthAnswer::NoAnswer(_) | HealthAnswer::Ended => {
                self.drop_channel();
                (
                    None,
                    Some(4),
                    Some(format!("no answer within {:?}", self.target.timeout)),
                )
            }
        }
    }

    /// The method probe, prepared: from the config, or by reflection now (kept once had).
    async fn method_probe(&mut self) -> Result<MethodProbe, String> {
        if let Some(p) = &self.method {
            return Ok(p.clone());
        }
        let Some(spec) = &self.target.method else {
            return Err("no method".into());
        };
        let prepared = match &spec.prepared {
            Some(p) => p.clone(),
            None => crate::probe::method::by_reflection(
                &self.address,
                &spec.name,
                &spec.messages,
                &spec.checks,
                self.target.timeout,
                self.tls.as_ref(),
            )
            .await
            .map_err(|e| match e {
                PrepareError::Reflection(e) => format!("the types of {} could not be had by reflection: {e} (`proto` or `protoset` in the target)", spec.name),
                PrepareError::Problems(problems) => problems
                    .iter()
                    .map(|p| format!("{}: {}", p.key, p.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            })?,
        };
        self.method = Some(prepared.clone());
        Ok(prepared)
    }

    /// A gRPC-Web target's round: its method called over gRPC-Web on the prober's own
    /// connection (made, timed, again after a failure).
    async fn web_round(&mut self) -> MethodRound {
        self.web_round_once(false).await
    }

    async fn web_round_once(&mut self, retried: bool) -> MethodRound {
        let probe = match self.method_probe().await {
            Ok(p) => p,
            Err(e) => return self.failed_round(e),
        };
        if self.web.is_none() {
            let Some((protocol, http_version)) = self.target.web else {
                return self.failed_round("not a gRPC-Web target".into());
            };
            let options = WebOptions {
                protocol,
                http_version,
                cors_origin: None,
                connect_timeout: self.target.timeout,
            };
            let authority = format!("{}:{}", self.target.address.host(), self.address.port());
            match probe.web_call(
                &authority,
                &self.target.metadata,
                self.target.timeout,
                &options,
                self.tls.as_ref(),
            ) {
                Ok(call) => self.web = Some((call, None)),
                Err(e) => return self.failed_round(e.to_string()),
            }
        }
        let Some((call, sender)) = self.web.as_mut() else {
            return self.failed_round("no gRPC-Web call".into());
        };
        if sender.as_ref().is_some_and(WebSender::is_closed) {
            *sender = None;
        }
        if sender.is_none() {
            let t = Instant::now();
            let endpoint = call.endpoint(self.address.clone());
            match crate::grpc::web::connect(&endpoint, call.version).await {
                Ok(s) => *sender = Some(s),
                Err(e) => {
                    let why = format!("cannot connect to {}: {e}", self.address);
                    let mut round = self.unreachable_round(&why).unwrap_or(MethodRound {
                        passed: false,
                        code: crate::grpc::status::UNAVAILABLE,
                        error: None,
                        checks: Vec::new(),
                    });
                    round.error = Some(why);
                    return round;
                }
            }
            self.ctx
                .metrics
                .probe_duration
                .with_label_values(&self.labels_and("connect"))
                .set(t.elapsed().as_secs_f64());
        }
        let Some((call, Some(sender))) = self.web.as_mut() else {
            return self.failed_round("no gRPC-Web connection".into());
        };
        let n = self.calls;
        self.calls += 1;
        let verdict = probe.call_web(call, sender, n, &mut self.renderer).await;
        if !verdict.reusable {
            if let Some((_, s)) = self.web.as_mut() {
                *s = None;
            }
        }
        if verdict.not_processed && !retried {
            // The server never processed it (its connection was closing): once more, on a
            // new connection.
            return Box::pin(self.web_round_once(true)).await;
        }
        self.judged_round(&probe, verdict)
    }

    /// A round that failed before any call, for `why`: every check failed.
    fn failed_round(&self, why: String) -> MethodRound {
        let mut round = self.unreachable_round(&why).unwrap_or(MethodRound {
            passed: false,
            code: crate::grpc::status::UNKNOWN,
            error: None,
            checks: Vec::new(),
        });
        round.error = Some(why);
        round
    }

    /// A method probe's round when no call could be made: every check failed, for `why`.
    fn unreachable_round(&self, why: &str) -> Option<MethodRound> {
        let spec = self.target.method.as_ref()?;
        Some(MethodRound {
            passed: false,
            code: crate::grpc::status::UNAVAILABLE,
            error: None,
            checks: spec
                .check_labels()
                .into_iter()
                .map(|check| CheckResult {
                    check,
                    passed: false,
                    reason: Some(why.to_string()),
                })
                .collect(),
        })
    }

    /// Calls the target's method once and judges the answer.
    async fn method_round(&mut self, channel: Channel) -> MethodRound {
        let probe = match self.method_probe().await {
            Ok(p) => p,
            Err(e) => return self.failed_round(e),
        };
        let metadata = self.request().metadata().clone();
        let n = self.calls;
        self.calls += 1;
        let verdict = probe
            .call(
                channel,
                n,
                &mut self.renderer,
                &metadata,
                self.target.timeout,
            )
            .await;
        if verdict.code == crate::grpc::status::UNAVAILABLE {
            self.drop_channel();
        }
        self.judged_round(&probe, verdict)
    }

    /// Exports a method probe's call and makes its round.
    fn judged_round(&mut self, probe: &MethodProbe, verdict: Verdict) -> MethodRound {
        let m = &self.ctx.metrics;
        m.probe_duration
            .with_label_values(&self.labels_and("method"))
            .set(verdict.took.as_secs_f64());
        if verdict.response.is_some() || verdict.code != crate::grpc::status::UNAVAILABLE {
            m.probe_latency
                .with_label_values(&self.labels())
                .observe(verdict.took.as_secs_f64());
        }
        let error = verdict.failures().map(|f| {
            let status = crate::grpc::status::code_name(verdict.code);
            if verdict.status_message.is_empty() {
                format!("method {}: {status}: {f}", probe.descriptor.full_name())
            } else {
                format!(
                    "method {}: {status} ({}): {f}",
                    probe.descriptor.full_name(),
                    verdict.status_message
                )
            }
        });
        MethodRound {
            passed: verdict.passed(),
            code: verdict.code,
            error,
            checks: verdict
                .checks
                .iter()
                .map(|(check, why)| CheckResult {
                    check: check.clone(),
                    passed: why.is_none(),
                    reason: why.clone(),
                })
                .collect(),
        }
    }

    /// Where this prober's checks fall: the first within the first second (or interval, if
    /// shorter), the rest at a fixed phase of each interval — both from a hash of target and
    /// backend, so 1,000 targets probed every 5 s are spread over the interval instead of
    /// all starting in the same millisecond (what made probes late), and a restarted agent
    /// probes each target at the same phase again.
    fn phases(&self) -> (Duration, Duration) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&self.target.name, &self.backend).hash(&mut h);
        let h = h.finish();
        let within = |span: Duration| {
            let nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX).max(1);
            Duration::from_nanos(h % nanos)
        };
        let interval = self.target.interval;
        (
            within(interval.min(Duration::from_secs(1))),
            within(interval),
        )
    }

    /// Checks at `when`'s time, measuring how late each started.
    async fn check_at(&mut self, when: tokio::time::Instant) -> bool {
        tokio::select! {
            _ = tokio::time::sleep_until(when) => {}
            _ = self.stop.cancelled() => return false,
        }
        let late = tokio::time::Instant::now().saturating_duration_since(when);
        self.ctx.metrics.observe_lateness(late);
        Box::pin(self.check_once()).await;
        true
    }

    async fn run_check(mut self) {
        let (first, steady) = self.phases();
        let start = tokio::time::Instant::now();
        let mut next = start + steady;
        if next <= start + first {
            next += self.target.interval;
        }
        if !self.check_at(start + first).await {
            return;
        }
        loop {
            if !self.check_at(next).await {
                return;
            }
            // A check that overran its interval does not make the next ones pile up: the
            // next is the first of this phase still ahead (arithmetic, not a loop: a 1 ns
            // interval must not spin).
            next = next_at_phase(next, self.target.interval, tokio::time::Instant::now());
        }
    }

    /// Follows a Watch stream; returns the delay before trying again, or None to stop.
    async fn watch_once(&mut self) -> Option<Duration> {
        self.open_span("Watch");
        let started = Instant::now();
        let channel = match self.channel().await {
            Ok(c) => c,
            Err(e) => {
                self.publish(None, None, started.elapsed(), Some(e));
                return Some(Duration::ZERO);
            }
        };
        let mut stream = match HealthClient::new(channel)
            .watch(self.request())
            .await
            .map_err(crate::grpc::status::as_clients_report)
        {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                self.publish(None, Some(12), started.elapsed(), Some("the target does not implement Watch (UNIMPLEMENTED); not retried: use mode = \"check\"".into()));
                return None;
            }
            Err(s) => {
                self.drop_channel();
                self.publish(
                    None,
                    Some(s.code() as i32),
                    started.elapsed(),
                    Some(format!("watch failed: {}: {}", s.code(), s.message())),
                );
                return Some(Duration::ZERO);
            }
        };
        let mut first = true;
        loop {
            let msg = tokio::select! {
                m = stream.message() => m.map_err(crate::grpc::status::as_clients_report),
                _ = self.stop.cancelled() => return None,
            };
            match msg {
                Ok(Some(resp)) => {
                    if first {
                        self.ctx
                            .metrics
                            .probe_latency
                            .with_label_values(&self.labels())
                            .observe(started.elapsed().as_secs_f64());
                        first = false;
                    }
                    let status = health::status_name(resp.status);
                    let error = (status != "SERVING").then(|| format!("answered {status}"));
                    self.publish(Some(status.to_string()), Some(0), started.elapsed(), error);
                }
                Ok(None) => {
                    self.drop_channel();
                    self.publish(
                        None,
                        Some(14),
                        started.elapsed(),
                        Some("the watch stream ended".into()),
                    );
                    return Some(Duration::ZERO);
                }
                Err(s) => {
                    self.drop_channel();
                    self.publish(
                        None,
                        Some(s.code() as i32),
                        started.elapsed(),
                        Some(format!(
                            "watch stream failed: {}: {}",
                            s.code(),
                            s.message()
                        )),
                    );
                    return Some(Duration::ZERO);
                }
            }
        }
    }

    async fn run_watch(mut self) {
        let min = Duration::from_millis(100);
        let max = self.target.interval.max(min);
        let mut backoff = min;
        loop {
            let t = Instant::now();
            match self.watch_once().await {
                None => {
                    // Reported and not retried; wait for the agent to stop.
                    self.stop.cancelled().await;
                    return;
                }
                Some(_) => {
                    // A stream that lasted a while earns a fresh backoff.
                    if t.elapsed() > max {
                        backoff = min;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(max);
                }
            }
        }
    }
}

/// The first time after `now` that is `last` plus a whole number (at least one) of `interval`s.
fn next_at_phase(
    last: tokio::time::Instant,
    interval: Duration,
    now: tokio::time::Instant,
) -> tokio::time::Instant {
    let step = interval.as_nanos().max(1);
    let behind = now.saturating_duration_since(last).as_nanos();
    let periods = behind / step + 1;
    let ahead = u64::try_from(periods.saturating_mul(step)).unwrap_or(u64::MAX);
    last.checked_add(Duration::from_nanos(ahead))
        .unwrap_or_else(|| now + interval.min(Duration::from_secs(3600)))
}

/// Starts probing `target`: one supervised prober for an address, or a supervisor that
/// follows a DNS name's backends with one prober each.
pub fn spawn(
    target: ProbeTarget,
    tls: Option<ClientTls>,
    ctx: ProbeContext,
) -> tokio::task::JoinHandle<()> {
    let first = Arc::new(AtomicBool::new(false));
    match target.address.clone() {
        ProbeAddress::Fixed(address) => {
            ctx.metrics
                .probe_backends
                .with_label_values(&[target.name.as_str()])
                .set(1.0);
            let backend = address.to_string();
            let stop = ctx.stop.clone();
            let shared = PerTarget {
                first,
                log: LogLimit::default(),
            };
            spawn_instance(target, address, backend, stop, tls, ctx, shared)
        }
        ProbeAddress::Fleet(name) => tokio::spawn(follow(target, name, tls, ctx, first)),
    }
}

/// One prober for `address` (labelled `backend`), supervised: a prober that panics (a bug)
/// is counted (`loadagent_errors_total{component="probe",kind="panic"}`), logged and started
/// again a second later, so one target's bug never silences its probes for good.
fn spawn_instance(
    target: ProbeTarget,
    address: HostPort,
    backend: String,
    stop: CancellationToken,
    tls: Option<ClientTls>,
    ctx: ProbeContext,
    shared: PerTarget,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let prober = Prober {
                target: target.clone(),
                address: address.clone(),
                backend: backend.clone(),
                first: shared.first.clone(),
                stop: stop.clone(),
                tls: tls.clone(),
                ctx: ctx.clone(),
                channel: None,
                log: shared.log.clone(),
                span: None,
                method: None,
                renderer: crate::grpc::request::Renderer::new(0),
                calls: 0,
                web: None,
            };
            if prober.checks_health() {
                prober.set_status(None);
            }
            let task = match prober.target.mode {
                ProbeMode::Check => tokio::spawn(prober.run_check()),
                ProbeMode::Watch => tokio::spawn(prober.run_watch()),
            };
            match task.await {
                Err(e) if e.is_panic() && !stop.is_cancelled() => {
                    ctx.metrics
                        .errors_total
                        .with_label_values(&["probe", "panic"])
                        .inc();
                    tracing::error!(target = %target.name, backend = %backend, "prober panicked (a bug: please report it); restarting it");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => return,
                    }
                }
                _ => return,
            }
        }
    })
}

/// At most one log line a minute for one target, whichever of its backends' probers (or
/// its resolutions) has something to say; the lines held back are counted in the next.
#[derive(Clone, Default)]
pub(crate) struct LogLimit(Arc<std::sync::Mutex<(Option<Instant>, u64)>>);

impl LogLimit {
    /// `Some` when a line may be logged now: the text to add about the lines held back
    /// since the last one (empty when none were).
    pub(crate) fn allow(&self) -> Option<String> {
        let mut state = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (last, held) = &mut *state;
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            *held += 1;
            return None;
        }
        *last = Some(Instant::now());
        let since = match std::mem::take(held) {
            0 => String::new(),
            n => format!("; {n} held back since the last"),
        };
        Some(since)
    }
}

/// What every backend's prober of one target shares.
#[derive(Clone)]
struct PerTarget {
    /// Set by the target's first published result (`/readyz`).
    first: Arc<AtomicBool>,
    log: LogLimit,
}

/// A running prober of one backend.
struct Instance {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    address: HostPort,
}

/// Follows a DNS-named target: resolves it now and every `resolve_every`, probes each
/// backend, and forgets the backends that left (their probers stop, their series and results
/// go). A resolution that fails or finds nothing is counted and keeps the last backends.
async fn follow(
    target: ProbeTarget,
    name: FleetName,
    tls: Option<ClientTls>,
    ctx: ProbeContext,
    first: Arc<AtomicBool>,
) {
    let m = ctx.metrics.clone();
    let label = target.name.clone();
    m.probe_backends
        .with_label_values(&[label.as_str()])
        .set(0.0);
    let fleet = match Fleet::unresolved(&name, target.resolve_every, target.timeout) {
        Ok(f) => f,
        Err(e) => {
            // No resolver at all (the system's configuration cannot be read): nothing to
            // probe until the config changes.
            resolve_failed(&ctx, &target, &first, &e.to_string());
            ctx.stop.cancelled().await;
            return;
        }
    };
    let mut running: HashMap<String, Instance> = HashMap::new();
    let log = LogLimit::default();
    loop {
        let refreshed = tokio::select! {
            r = fleet.refresh() => r,
            _ = ctx.stop.cancelled() => break,
        };
        match refreshed {
            Ok(left_out) => {
                m.probe_resolutions
                    .with_label_values(&[label.as_str(), "success"])
                    .inc();
                if !left_out.is_empty() {
                    if let Some(since) = log.allow() {
                        tracing::warn!(target = %label, "resolving {name}: left out {} (the other records are probed; logged at most once a minute per target{since})", crate::discovery::resolver::summarize(&left_out));
                    }
                }
            }
            Err(e) => {
                m.probe_resolutions
                    .with_label_values(&[label.as_str(), "failure"])
                    .inc();
                m.errors_total
                    .with_label_values(&["probe", "resolve"])
                    .inc();
                if let Some(since) = log.allow() {
                    tracing::warn!(target = %label, "{e}; probing the last known backends (logged at most once a minute per target{since})");
                }
                if running.is_empty() {
                    resolve_failed(&ctx, &target, &first, &e.to_string());
                }
            }
        }
        m.probes_changed();
        let now = fleet.current();
        m.probe_backends
            .with_label_values(&[label.as_str()])
            .set(now.backends.len() as f64);
        let wanted: HashMap<String, HostPort> = now
            .backends
            .iter()
            .map(|b| (b.address.to_string(), b.address.clone()))
            .collect();
        let gone: Vec<String> = running
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for backend in gone {
            if let Some(i) = running.remove(&backend) {
                i.stop.cancel();
                let _ = i.task.await;
                ctx.channels.forget(&i.address);
            }
            let checks = target
                .method
                .as_ref()
                .map(|m| m.check_labels())
                .unwrap_or_default();
            let checks: Vec<&str> = checks.iter().map(String::as_str).collect();
            m.remove_backend_series(&label, &backend, &checks);
            if let Ok(mut r) = ctx.results.lock() {
                r.remove(&(label.clone(), backend));
            }
        }
        if !running.is_empty() || !wanted.is_empty() {
            // A result that said the name did not resolve is replaced by the backends'.
            if let Ok(mut r) = ctx.results.lock() {
                r.remove(&(label.clone(), String::new()));
            }
        }
        for (backend, address) in wanted {
            if running.contains_key(&backend) {
                continue;
            }
            let stop = ctx.stop.child_token();
            let task = spawn_instance(
                target.clone(),
                address.clone(),
                backend.clone(),
                stop.clone(),
                tls.clone(),
                ctx.clone(),
                PerTarget {
                    first: first.clone(),
                    log: log.clone(),
                },
            );
            running.insert(
                backend,
                Instance {
                    stop,
                    task,
                    address,
                },
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(target.resolve_every) => {}
            _ = ctx.stop.cancelled() => break,
        }
    }
    for (_, i) in running {
        i.stop.cancel();
        let _ = i.task.await;
    }
}

/// A name that gave no backend: listed in `/api/v1/targets` with the reason (backend ""),
/// and counted as probed for `/readyz` (there is nothing to wait for).
fn resolve_failed(ctx: &ProbeContext, target: &ProbeTarget, first: &AtomicBool, why: &str) {
    let result = ProbeResult {
        name: target.name.clone(),
        address: target.address.to_string(),
        backend: String::new(),
        mode: if target.mode == ProbeMode::Watch {
            "watch"
        } else {
            "check"
        },
        success: false,
        status: None,
        grpc_status_code: None,
        duration_seconds: 0.0,
        error: Some(why.to_string()),
        checks: Vec::new(),
        at: now_unix(),
    };
    if let Ok(mut r) = ctx.results.lock() {
        r.insert((target.name.clone(), String::new()), result);
    }
    if !first.swap(true, Ordering::Relaxed) {
        ctx.first_round.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod phase_tests {
    use super::*;

    #[test]
    fn the_next_check_keeps_its_phase_and_never_spins() {
        let t0 = tokio::time::Instant::now();
        let s = Duration::from_secs(1);
        // On time: one interval later.
        assert_eq!(next_at_phase(t0, s, t0), t0 + s);
        // 3.5 intervals late: the 4th.
        assert_eq!(next_at_phase(t0, s, t0 + s * 3 + s / 2), t0 + s * 4);
        // A 1 ns interval a second behind: computed, not stepped through.
        let next = next_at_phase(t0, Duration::from_nanos(1), t0 + s);
        assert!(next > t0 + s && next <= t0 + s + Duration::from_nanos(1));
    }
}
