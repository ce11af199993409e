//! One round of a target's probe — a health Check, a method call, a gRPC-Web call, or a
//! Watch stream followed — asked through the probe library (`crate::probe`) on the
//! prober's kept connection, and judged by its verdicts.

use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;

use super::Prober;
use crate::grpc::lean::SharedConnection;
use crate::grpc::web::{WebOptions, WebSender};
use crate::probe::health::{self, HealthAnswer};
use crate::probe::method::{MethodProbe, PrepareError, Verdict};
use crate::probe::verdict::{Failure, MethodVerdict};
use crate::probe::NotProcessed;
use crate::telemetry::probe_series::Phase;
use crate::telemetry::traces::traceparent;
use opentelemetry::trace::TraceContextExt;

impl Prober {
    /// A Watch request (tonic's), with the target's metadata and a `traceparent`.
    pub(super) fn request(&self) -> tonic::Request<HealthCheckRequest> {
        let metadata = self
            .target
            .probe
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let mut req = crate::probe::health::request(&self.target.probe.service, metadata);
        if let Some(tp) = self.trace_header() {
            if let Ok(v) = tonic::metadata::MetadataValue::try_from(tp.as_bytes()) {
                req.metadata_mut().insert("traceparent", v);
            }
        }
        req
    }

    /// The `traceparent` that makes the target's own span of this call join the probe's
    /// trace (tracing on).
    fn trace_header(&self) -> Option<http::HeaderValue> {
        let parent = self
            .span
            .as_ref()
            .map(|cx| cx.span().span_context().clone());
        parent.as_ref().and_then(traceparent)
    }

    /// The authority the target's calls name: the address dialled (a fleet's backend).
    fn authority(&self) -> String {
        self.address.to_string()
    }

    /// The target's Check, made at its first probe.
    fn health_call(&mut self) -> Result<health::Check, String> {
        if let Some(c) = &self.check {
            return Ok(c.clone());
        }
        let check = health::Check::new(
            &self.authority(),
            &self.target.probe.service,
            &self.target.probe.metadata,
            self.target.probe.timeout,
            self.tls.is_some(),
        )?;
        self.check = Some(check.clone());
        Ok(check)
    }

    /// Whether this target's health service is checked (all but method probes with
    /// `health = false`).
    pub(super) fn checks_health(&self) -> bool {
        self.target.probe.method.as_ref().is_none_or(|m| m.health)
    }

    pub(super) async fn check_once(&mut self) {
        self.open_span("Check");
        let started = Instant::now();
        if self.target.probe.web.is_some() {
            let round = self.web_round().await;
            return self.publish_round(None, None, started.elapsed(), None, Some(round));
        }
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => {
                let method = self
                    .target
                    .probe
                    .method
                    .is_some()
                    .then(|| self.failed_round(&e));
                return self.publish_round(None, None, started.elapsed(), Some(e), method);
            }
        };
        let (status, code, error) = if self.checks_health() {
            self.health_check(conn.clone()).await
        } else {
            (None, None, None)
        };
        let method = match self.target.probe.method.is_some() {
            true => Some(self.method_round(conn).await),
            false => None,
        };
        self.publish_round(status, code, started.elapsed(), error, method);
    }

    /// One grpc.health.v1 Check: the status, the gRPC code and what went wrong. A Check the
    /// server did not process (its connection was closing) is sent once more on a new one.
    pub(super) async fn health_check(
        &mut self,
        conn: SharedConnection,
    ) -> (Option<String>, Option<i32>, Option<String>) {
        let check = match self.health_call() {
            Ok(c) => c,
            Err(e) => return (None, None, Some(e)),
        };
        let trace = self.trace_header();
        let timeout = self.target.probe.timeout;
        let mut t = Instant::now();
        let mut answer = check
            .on(
                &conn,
                trace.as_ref().map(http::HeaderValue::as_bytes),
                timeout,
            )
            .await;
        if answer.is_err() {
            self.drop_channel();
            let conn = match self.connection().await {
                Ok(c) => c,
                Err(e) => return (None, None, Some(e)),
            };
            t = Instant::now();
            answer = check
                .on(
                    &conn,
                    trace.as_ref().map(http::HeaderValue::as_bytes),
                    timeout,
                )
                .await;
        }
        let answer = answer.unwrap_or_else(|NotProcessed(why)| {
            HealthAnswer::Failed(tonic::Status::unavailable(why))
        });
        let took = t.elapsed();
        self.series(|s| s.set_phase(Phase::Check, took));
        if let HealthAnswer::Status(_) = answer {
            if self.target.probe.method.is_none() {
                self.observe_latency(took);
            }
        }
        // A connection the server no longer serves on (or that answers nothing) is made
        // again for the next probe.
        let broken = match &answer {
            HealthAnswer::Failed(s) => s.code() == tonic::Code::Unavailable,
            HealthAnswer::NoAnswer(_) | HealthAnswer::Ended => true,
            HealthAnswer::Status(_) => false,
        };
        if broken {
            self.drop_channel();
        }
        judged(&answer)
    }

    /// Publishes a Watch stream's answer, judged by the probe library.
    fn publish_answer(&mut self, answer: HealthAnswer, took: Duration) {
        let (status, code, error) = judged(&answer);
        self.publish(status, code, took, error);
    }

    /// The method probe, prepared: from the config, or by reflection now (kept once had).
    pub(super) async fn method_probe(&mut self) -> Result<MethodProbe, String> {
        if let Some(p) = &self.method {
            return Ok(p.clone());
        }
        let Some(spec) = &self.target.probe.method else {
            return Err("no method".into());
        };
        let prepared = match &spec.prepared {
            Some(p) => p.clone(),
            None => crate::probe::method::by_reflection(
                &self.address,
                &spec.name,
                &spec.messages,
                &spec.checks,
                self.target.probe.timeout,
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
    pub(super) async fn web_round(&mut self) -> MethodVerdict {
        self.web_round_once(false).await
    }

    pub(super) async fn web_round_once(&mut self, retried: bool) -> MethodVerdict {
        let probe = match self.method_probe().await {
            Ok(p) => p,
            Err(e) => return self.failed_round(&e),
        };
        if self.web.is_none() {
            let Some((protocol, http_version)) = self.target.probe.web else {
                return self.failed_round("not a gRPC-Web target");
            };
            let options = WebOptions {
                protocol,
                http_version,
                cors_origin: None,
                connect_timeout: self.target.probe.timeout,
            };
            let authority = format!("{}:{}", self.target.address.host(), self.address.port());
            match probe.web_call(
                &authority,
                &self.target.probe.metadata,
                self.target.probe.timeout,
                &options,
                self.tls.as_ref(),
            ) {
                Ok(call) => self.web = Some(Box::new((call, None))),
                Err(e) => return self.failed_round(&e.to_string()),
            }
        }
        let Some((call, sender)) = self.web.as_deref_mut() else {
            return self.failed_round("no gRPC-Web call");
        };
        if sender.as_ref().is_some_and(WebSender::is_closed) {
            *sender = None;
        }
        if sender.is_none() {
            let t = Instant::now();
            let endpoint = call.endpoint(self.address.clone());
            match call.connect(&endpoint).await {
                Ok(s) => *sender = Some(s),
                Err(e) => {
                    let why = format!("cannot connect to {}: {e}", self.address);
                    return self.failed_round(&why);
                }
            }
            let took = t.elapsed();
            self.series(|s| s.set_phase(Phase::Connect, took));
        }
        let Some((call, Some(sender))) = self.web.as_deref_mut() else {
            return self.failed_round("no gRPC-Web connection");
        };
        let n = self.calls;
        self.calls += 1;
        let verdict = probe.call_web(call, sender, n, &mut self.renderer).await;
        // Idle until the next round: its buffers are given back meanwhile.
        sender.shrink_idle();
        if !verdict.reusable {
            if let Some((_, s)) = self.web.as_deref_mut() {
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
    pub(super) fn failed_round(&self, why: &str) -> MethodVerdict {
        let checks = self
            .target
            .probe
            .method
            .as_ref()
            .map(|spec| spec.check_labels())
            .unwrap_or_default();
        MethodVerdict::not_called(
            checks,
            Failure::Connect,
            crate::grpc::status::UNAVAILABLE,
            why,
        )
    }

    /// Calls the target's method once and judges the answer (once more on a new connection
    /// when the server did not process it).
    pub(super) async fn method_round(&mut self, conn: SharedConnection) -> MethodVerdict {
        let probe = match self.method_probe().await {
            Ok(p) => p,
            Err(e) => return self.failed_round(&e),
        };
        let headers = match &self.method_headers {
            Some(h) => h.clone(),
            None => match probe.lean_headers(
                &self.authority(),
                &self.target.probe.metadata,
                self.target.probe.timeout,
                self.tls.is_some(),
            ) {
                Ok(h) => self.method_headers.insert(h).clone(),
                Err(e) => return self.failed_round(&e.to_string()),
            },
        };
        let trace = self.trace_header();
        let trace = trace.as_ref().map(http::HeaderValue::as_bytes);
        let timeout = self.target.probe.timeout;
        let n = self.calls;
        self.calls += 1;
        let mut conn = conn;
        let mut retried = false;
        let verdict = loop {
            let verdict = probe
                .call(&conn, &headers, n, &mut self.renderer, trace, timeout)
                .await;
            if !verdict.not_processed || retried {
                break verdict;
            }
            retried = true;
            self.drop_channel();
            conn = match self.connection().await {
                Ok(c) => c,
                Err(e) => return self.failed_round(&e),
            };
        };
        if verdict.code == crate::grpc::status::UNAVAILABLE || !verdict.reusable {
            self.drop_channel();
        }
        self.judged_round(&probe, verdict)
    }

    /// Exports a method probe's call and makes its round.
    pub(super) fn judged_round(&mut self, probe: &MethodProbe, verdict: Verdict) -> MethodVerdict {
        self.series(|s| s.set_phase(Phase::Method, verdict.took));
        if verdict.response.is_some() || verdict.code != crate::grpc::status::UNAVAILABLE {
            self.observe_latency(verdict.took);
        }
        MethodVerdict::of(probe.descriptor.full_name(), &verdict)
    }

    /// Follows a Watch stream; returns the delay before trying again, or None to stop.
    pub(super) async fn watch_once(&mut self) -> Option<Duration> {
        self.open_span("Watch");
        let started = Instant::now();
        let channel = match self.watch_channel().await {
            Ok(c) => c,
            Err(e) => {
                self.publish(None, None, started.elapsed(), Some(e));
                return Some(Duration::ZERO);
            }
        };
        let mut stream = match health::watch(channel, self.request()).await {
            Ok(s) => s,
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                self.publish(None, Some(12), started.elapsed(), Some("the target does not implement Watch (UNIMPLEMENTED); not retried: use mode = \"check\"".into()));
                return None;
            }
            Err(s) => {
                self.drop_channel();
                self.publish_answer(HealthAnswer::Failed(s), started.elapsed());
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
                        self.observe_latency(started.elapsed());
                        first = false;
                    }
                    self.publish_answer(HealthAnswer::Status(resp.status), started.elapsed());
                }
                Ok(None) => {
                    self.drop_channel();
                    self.publish_answer(HealthAnswer::Ended, started.elapsed());
                    return Some(Duration::ZERO);
                }
                Err(s) => {
                    self.drop_channel();
                    self.publish_answer(HealthAnswer::Failed(s), started.elapsed());
                    return Some(Duration::ZERO);
                }
            }
        }
    }
}

/// A health answer as a round publishes it: the status name, the gRPC code, the failure.
fn judged(answer: &HealthAnswer) -> (Option<String>, Option<i32>, Option<String>) {
    let v = answer.verdict();
    (
        v.status.map(str::to_string),
        Some(v.code),
        v.failure.map(|f| f.1),
    )
}
