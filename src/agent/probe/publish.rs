//! What a prober says of each round: the `loadagent_probe_*` series, the
//! `/api/v1/targets` row, the round's span, and a log line at most once a minute.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::super::config::ProbeMode;
use super::{now_unix, ProbeResult, Prober};
use crate::probe::verdict::MethodVerdict;
use crate::telemetry::probe_series::BackendSeries;
use crate::telemetry::traces::end_span;
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;

impl Prober {
    /// Changes this prober's series (`loadagent_probe_*{target, backend}`).
    pub(super) fn series(&self, f: impl FnOnce(&mut BackendSeries)) {
        self.ctx
            .metrics
            .probes
            .backend(&self.target.name, &self.backend, f);
    }

    /// One observation of `loadagent_probe_latency_seconds`.
    pub(super) fn observe_latency(&self, took: Duration) {
        self.ctx.metrics.probes.observe_latency(
            &self.target.name,
            &self.backend,
            took.as_secs_f64(),
        );
    }

    pub(super) fn set_status(&self, status: Option<&str>) {
        self.series(|s| s.set_serving(status));
    }

    pub(super) fn log_failure(&mut self, message: &str) {
        if let Some(since) = self.log.allow() {
            tracing::warn!(target = %self.target.name, backend = %self.backend, "probe failed: {message} (logged at most once a minute per target{since})");
        }
    }

    /// Opens the span of one probe round (a Check call, or a Watch stream up to its first
    /// answer), when tracing is on.
    pub(super) fn open_span(&mut self, method: &'static str) {
        let Some(traces) = &self.ctx.traces else {
            return;
        };
        let mut attributes = vec![
            KeyValue::new("loadagent.target", self.target.name.clone()),
            KeyValue::new("server.address", self.address.host().to_string()),
            KeyValue::new("server.port", i64::from(self.address.port())),
            KeyValue::new("rpc.system", "grpc"),
        ];
        match &self.target.probe.method {
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
                    self.target.probe.service.clone(),
                ));
            }
        }
        self.span = Some(traces.span("loadagent.probe", SpanKind::Client, None, attributes));
    }

    /// Ends the open probe span, if any, with the probe's result.
    pub(super) fn close_span(
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
    pub(super) fn publish(
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
    pub(super) fn publish_round(
        &mut self,
        status: Option<String>,
        code: Option<i32>,
        took: Duration,
        error: Option<String>,
        method: Option<MethodVerdict>,
    ) {
        let health = self.checks_health();
        let healthy = !health || status.as_deref() == Some("SERVING");
        let success = healthy && method.as_ref().is_none_or(|m| m.passed);
        let code = if health {
            code
        } else {
            method.as_ref().map(|m| i32::from(m.code))
        };
        let error = match (error, method.as_ref().and_then(|m| m.failure.clone())) {
            // A connection that failed fails both alike: said once.
            (Some(h), Some((_, m))) if h == m => Some(h),
            (Some(h), Some((_, m))) => Some(format!("{h}; {m}")),
            (h, m) => h.or(m.map(|m| m.1)),
        };
        let status = if health { status } else { None };
        self.close_span(success, status.as_deref(), code, error.as_deref());
        let name = self.target.name.clone();
        let checks = method.map(|r| r.checks).unwrap_or_default();
        self.series(|s| {
            s.set_success(success);
            s.set_grpc_status(code.unwrap_or(14));
            s.count_result(success);
            if health {
                s.set_serving(status.as_deref());
            }
            for c in &checks {
                s.set_check_failed(&c.check, !c.passed);
            }
        });
        if let Some(e) = &error {
            self.ctx
                .metrics
                .errors_total
                .with_label_values(&["probe", "failed"])
                .inc();
            self.log_failure(e);
        }
        let result = ProbeResult {
            name: name.clone(),
            address: self.target.address.to_string(),
            backend: self.backend.clone(),
            mode: if self.target.probe.mode == ProbeMode::Watch {
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
}
