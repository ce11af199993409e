//! The span of one run (`loadagent run`, or a scheduled run in the agent): it opens before
//! the load, its sampled calls are its children, and it closes with the run's figures.

use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};

use crate::report::Report;
use crate::telemetry::traces::{end_span, CallSampler, Traces};
use crate::vocabulary::{HostPort, Scenario};

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A run's span while the run goes on.
#[derive(Debug)]
pub struct RunSpan {
    cx: Context,
}

impl RunSpan {
    /// Opens the span and makes the sampler for the run's calls. `address` is the target
    /// actually dialled (the embedded target's real port, not "embedded").
    pub fn start(traces: &Traces, scenario: &Scenario, address: &HostPort) -> (Self, CallSampler) {
        let mut attributes = vec![
            KeyValue::new("loadagent.scenario", scenario.name.clone()),
            KeyValue::new("loadagent.kind", scenario.kind.as_str()),
            KeyValue::new("loadagent.target", scenario.target.address.describe()),
            KeyValue::new("loadagent.load.model", scenario.load.model().as_str()),
            KeyValue::new(
                "loadagent.load.concurrency",
                i64::from(scenario.load.concurrency),
            ),
            KeyValue::new(
                "loadagent.load.connections",
                i64::from(scenario.load.connections),
            ),
        ];
        if let Some(rate) = scenario.load.rate {
            attributes.push(KeyValue::new("loadagent.load.rate", rate));
        }
        if let Some(call) = &scenario.call {
            attributes.push(KeyValue::new("rpc.method", call.method.value.to_string()));
        }
        let cx = traces.span("loadagent.run", SpanKind::Internal, None, attributes);
        // A scenario's own ratio wins over the agent's for its scheduled runs.
        let sample_ratio = scenario.tracing.sample_ratio.unwrap_or(traces.sample_ratio);
        let method = scenario.call.as_ref().map(|c| {
            (
                c.method.value.service.as_str(),
                c.method.value.method.as_str(),
            )
        });
        let sampler = CallSampler::new(traces, &cx, sample_ratio, method, address, &scenario.name);
        (Self { cx }, sampler)
    }

    /// Closes the span with the run's totals and tail latency.
    pub fn finish(self, report: &Report) {
        let t = &report.totals;
        let mut attributes = vec![
            KeyValue::new("loadagent.requests", as_i64(t.requests)),
            KeyValue::new("loadagent.errors", as_i64(t.errors)),
            KeyValue::new("loadagent.sent_late", as_i64(t.sent_late)),
            KeyValue::new("loadagent.rps", t.rps),
            KeyValue::new(
                "loadagent.latency.p99_us",
                as_i64(report.latency.uncorrected.p99_us),
            ),
            KeyValue::new("loadagent.interrupted", report.interrupted),
        ];
        if let Some(c) = &report.latency.corrected {
            attributes.push(KeyValue::new(
                "loadagent.latency.corrected.p99_us",
                as_i64(c.p99_us),
            ));
        }
        let failed = report.thresholds.iter().filter(|t| !t.passed).count();
        let error = if t.requests > 0 && t.errors == t.requests {
            Some(format!("every one of {} requests failed", t.requests))
        } else if failed > 0 {
            Some(format!("{failed} thresholds failed"))
        } else {
            None
        };
        end_span(&self.cx, attributes, error);
    }

    /// Closes the span of a run that could not run.
    pub fn failed(self, why: &str) {
        end_span(&self.cx, Vec::new(), Some(why.to_string()));
    }
}
