//! Prometheus rules, generated. Every rule names the metric definitions it uses, and a test
//! checks each expression mentions only metrics the agent exports.

use std::fmt::Write;

use crate::telemetry::metrics::{self as m, Definition};

/// Where each alert's runbook section lives (anchors are the lower-cased alert names).
pub const RUNBOOK: &str = "docs/runbook.md";

#[derive(Debug)]
/// One alerting rule.
pub struct Alert {
    /// The alert's name.
    pub name: &'static str,
    /// Its PromQL expression.
    pub expr: &'static str,
    /// How long it must hold before it fires.
    pub for_: &'static str,
    /// `page` or `ticket`.
    pub severity: &'static str,
    /// One line, for the notification.
    pub summary: &'static str,
    /// What it means and what to look at.
    pub description: &'static str,
    /// The metrics it reads (checked to exist).
    pub uses: &'static [Definition],
}

#[derive(Debug)]
/// One recording rule.
pub struct Recording {
    /// The series it records.
    pub record: &'static str,
    /// Its PromQL expression.
    pub expr: &'static str,
    /// The metrics it reads (checked to exist).
    pub uses: &'static [Definition],
}

/// Every recording rule.
pub const RECORDINGS: &[Recording] = &[
    Recording {
        record: "loadagent:probe_latency_seconds:p99_5m",
        expr: "histogram_quantile(0.99, sum by (instance, target, le) (rate(loadagent_probe_latency_seconds_bucket[5m])))",
        uses: &[m::PROBE_LATENCY],
    },
    Recording {
        record: "loadagent:probe_serving_ratio",
        expr: "avg by (instance, target) (loadagent_probe_success)",
        uses: &[m::PROBE_SUCCESS],
    },
    Recording {
        record: "loadagent:run_error_ratio:30m",
        expr: "sum by (instance, scenario) (increase(loadagent_run_requests_total{status!=\"OK\"}[30m])) / sum by (instance, scenario) (increase(loadagent_run_requests_total[30m]))",
        uses: &[m::RUN_REQUESTS],
    },
    Recording {
        record: "loadagent:run_latency_seconds:p99_30m",
        expr: "histogram_quantile(0.99, sum by (instance, scenario, latency, le) (increase(loadagent_run_latency_seconds_bucket[30m])))",
        uses: &[m::RUN_LATENCY],
    },
    Recording {
        record: "loadagent:run_handshake_error_ratio:30m",
        expr: "sum by (instance, scenario) (increase(loadagent_run_handshake_errors_total[30m])) / (sum by (instance, scenario) (increase(loadagent_run_handshake_errors_total[30m])) + sum by (instance, scenario) (increase(loadagent_run_handshakes_total[30m])))",
        uses: &[m::RUN_HANDSHAKE_ERRORS, m::RUN_HANDSHAKES],
    },
];

/// Every alerting rule.
pub const ALERTS: &[Alert] = &[
    Alert {
        name: "LoadagentTargetDown",
        expr: "loadagent_probe_grpc_status_code != 0",
        for_: "1m",
        severity: "critical",
        summary: "gRPC target {{ $labels.target }} is down at {{ $labels.backend }}",
        description: "The health probe of {{ $labels.target }} (backend {{ $labels.backend }}) from {{ $labels.instance }} has failed (not connected, or the health RPC failed) for a minute.",
        uses: &[m::PROBE_GRPC_STATUS],
    },
    Alert {
        name: "LoadagentTargetDegraded",
        expr: "loadagent:probe_serving_ratio < 0.75 and on (instance, target) loadagent_probe_backends >= 2",
        for_: "2m",
        severity: "warning",
        summary: "Fewer than 75% of the backends of {{ $labels.target }} are SERVING",
        description: "Seen from {{ $labels.instance }}, under three quarters of the backends {{ $labels.target }} resolves to have answered SERVING for two minutes: the fleet is running short.",
        uses: &[m::PROBE_SUCCESS, m::PROBE_BACKENDS],
    },
    Alert {
        name: "LoadagentTargetUnresolved",
        expr: "loadagent_probe_backends == 0",
        for_: "2m",
        severity: "critical",
        summary: "The DNS name of {{ $labels.target }} gives no backend",
        description: "{{ $labels.instance }} has had no backend to probe for {{ $labels.target }} for two minutes: its name does not resolve, or resolves to nothing (see /api/v1/targets for the resolver's answer).",
        uses: &[m::PROBE_BACKENDS],
    },
    Alert {
        name: "LoadagentTargetResolveFailing",
        expr: "increase(loadagent_probe_resolutions_total{result=\"failure\"}[10m]) > 0",
        for_: "10m",
        severity: "warning",
        summary: "Resolving the DNS name of {{ $labels.target }} fails",
        description: "{{ $labels.instance }} keeps failing to resolve {{ $labels.target }}: it probes the last backends it knew, which may no longer be the fleet.",
        uses: &[m::PROBE_RESOLUTIONS],
    },
    Alert {
        name: "LoadagentTargetNotServing",
        expr: "loadagent_probe_healthcheck_status{serving_status=\"NOT_SERVING\"} == 1",
        for_: "1m",
        severity: "critical",
        summary: "gRPC target {{ $labels.target }} reports NOT_SERVING",
        description: "grpc.health.v1 on {{ $labels.target }} has answered NOT_SERVING to {{ $labels.instance }} for a minute.",
        uses: &[m::PROBE_HEALTH_STATUS],
    },
    Alert {
        name: "LoadagentMethodProbeFailing",
        expr: "max by (instance, target, backend) (loadagent_probe_check_failed) == 1 and on (instance, target, backend) loadagent_probe_healthcheck_status{serving_status=\"SERVING\"} == 1",
        for_: "2m",
        severity: "critical",
        summary: "{{ $labels.target }} says SERVING but answers its method probe wrongly",
        description: "From {{ $labels.instance }}, backend {{ $labels.backend }} of {{ $labels.target }} has answered SERVING to health checks while a check of its method probe failed for two minutes: it is up but answering real calls wrongly (see /api/v1/targets for which check and what was found).",
        uses: &[m::PROBE_CHECK_FAILED, m::PROBE_HEALTH_STATUS],
    },
    Alert {
        name: "LoadagentProbeLatencyHigh",
        expr: "loadagent:probe_latency_seconds:p99_5m > 0.5",
        for_: "10m",
        severity: "warning",
        summary: "Health checks of {{ $labels.target }} are slow",
        description: "The p99 health-check latency of {{ $labels.target }} seen from {{ $labels.instance }} has been over the 500 ms SLO for 10 minutes.",
        uses: &[m::PROBE_LATENCY],
    },
    Alert {
        name: "LoadagentCertificateExpiringSoon",
        expr: "loadagent_probe_ssl_earliest_cert_expiry - time() < 14 * 86400",
        for_: "10m",
        severity: "warning",
        summary: "The TLS certificate of {{ $labels.target }} expires within 14 days",
        description: "A certificate presented by {{ $labels.target }} expires in less than 14 days; renew it.",
        uses: &[m::PROBE_CERT_EXPIRY],
    },
    Alert {
        name: "LoadagentCertificateExpiringCritical",
        expr: "loadagent_probe_ssl_earliest_cert_expiry - time() < 3 * 86400",
        for_: "10m",
        severity: "critical",
        summary: "The TLS certificate of {{ $labels.target }} expires within 3 days",
        description: "A certificate presented by {{ $labels.target }} expires in less than 3 days; renew it now.",
        uses: &[m::PROBE_CERT_EXPIRY],
    },
    Alert {
        name: "LoadagentScheduledRunErrorRatioHigh",
        expr: "loadagent:run_error_ratio:30m > 0.01",
        for_: "0m",
        severity: "warning",
        summary: "Scheduled runs of {{ $labels.scenario }} see errors",
        description: "More than 1% of the requests of scheduled scenario {{ $labels.scenario }} on {{ $labels.instance }} failed over 30 minutes.",
        uses: &[m::RUN_REQUESTS],
    },
    Alert {
        name: "LoadagentScheduledRunLatencyHigh",
        expr: "loadagent:run_latency_seconds:p99_30m{latency=\"corrected\"} > 0.25",
        for_: "0m",
        severity: "warning",
        summary: "Scheduled runs of {{ $labels.scenario }} are slow",
        description: "The corrected p99 latency of scheduled scenario {{ $labels.scenario }} on {{ $labels.instance }} was over 250 ms over 30 minutes.",
        uses: &[m::RUN_LATENCY],
    },
    Alert {
        name: "LoadagentScheduledRunThresholdsFailed",
        expr: "loadagent_run_success == 0",
        for_: "0m",
        severity: "warning",
        summary: "The last scheduled run of {{ $labels.scenario }} failed",
        description: "The last run of {{ $labels.scenario }} on {{ $labels.instance }} did not complete, did not meet its thresholds, or (a capacity search) measured no capacity of the service (see /api/v1/runs).",
        uses: &[m::RUN_SUCCESS],
    },
    Alert {
        name: "LoadagentCapacityDropped",
        // The median of the last week's searches is the service's own baseline; a search's
        // noise (coefficient of variation, docs/capacity.md, benches/capacity.sh) is a few percent, far below 20%.
        expr: "loadagent_run_capacity_rps < 0.8 * quantile_over_time(0.5, loadagent_run_capacity_rps[7d])",
        for_: "0m",
        severity: "warning",
        summary: "The capacity of {{ $labels.scenario }} fell",
        description: "The last capacity search of {{ $labels.scenario }} on {{ $labels.instance }} found a highest rate within its SLO more than 20% below the median of its searches over the last 7 days: the service, its node or its neighbours got slower, beyond a search's noise.",
        uses: &[m::RUN_CAPACITY_RPS],
    },
    Alert {
        name: "LoadagentTlsHandshakeErrorRatioHigh",
        expr: "loadagent:run_handshake_error_ratio:30m > 0.01",
        for_: "0m",
        severity: "warning",
        summary: "TLS handshakes to {{ $labels.scenario }} fail",
        description: "More than 1% of the TLS handshakes of scheduled storm {{ $labels.scenario }} on {{ $labels.instance }} failed over 30 minutes.",
        uses: &[m::RUN_HANDSHAKE_ERRORS, m::RUN_HANDSHAKES],
    },
    Alert {
        name: "LoadagentAgentAbsent",
        expr: "up{job=\"loadagent\"} == 0 or absent(up{job=\"loadagent\"})",
        for_: "5m",
        severity: "critical",
        summary: "A loadagent is not reporting",
        description: "Prometheus has not scraped the loadagent on {{ $labels.instance }} for 5 minutes (or no agent reports at all): that node is unobserved.",
        uses: &[],
    },
    Alert {
        name: "LoadagentMemoryGrowing",
        expr: "deriv(loadagent_process_resident_memory_bytes{process=\"loadagent\"}[30m]) > 10240",
        for_: "30m",
        severity: "warning",
        summary: "The loadagent on {{ $labels.instance }} keeps growing",
        description: "The agent's resident memory on {{ $labels.instance }} has grown faster than 10 KiB/s (36 MiB/h) for 30 minutes.",
        uses: &[m::PROCESS_RSS],
    },
    Alert {
        name: "LoadagentPerfCountersUnsupported",
        expr: "loadagent_perf_event_supported == 0",
        for_: "10m",
        severity: "info",
        summary: "perf event {{ $labels.event }} is not available on {{ $labels.instance }}",
        description: "The kernel or VM refuses perf event {{ $labels.event }} on {{ $labels.instance }} (common for hardware counters on VMs): its panels stay empty there.",
        uses: &[m::PERF_SUPPORTED],
    },
];

/// YAML single-quoted scalar.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The rule file (Prometheus YAML).
pub fn render() -> String {
    String::from("# Generated by `loadagent alerts --out alerts/` from src/observe/alerts.rs: do not edit.\n")
        + &groups()
}

/// The same rules as a prometheus-operator PrometheusRule, for deploy/kubernetes/.
pub fn render_prometheus_rule() -> String {
    let mut o = String::from(
        "# Generated by `loadagent alerts --out alerts/ --kubernetes deploy/kubernetes/` from src/observe/alerts.rs: do not edit.\n\
         # The same groups as alerts/loadagent.rules.yml. prometheus-operator picks PrometheusRules\n\
         # by its ruleSelector: add the label your Prometheus selects on (e.g. release: prometheus).\n\
         apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: loadagent\n  namespace: loadagent\n  labels:\n    app.kubernetes.io/name: loadagent\n    app.kubernetes.io/component: rules\nspec:\n",
    );
    for line in groups().lines() {
        let _ = writeln!(o, "  {line}");
    }
    o
}

/// `groups:` and every rule, at the top level of a YAML document.
fn groups() -> String {
    let mut o = String::from("groups:\n");
    let _ = writeln!(o, "  - name: loadagent-recording\n    rules:");
    for r in RECORDINGS {
        let _ = writeln!(
            o,
            "      - record: {}\n        expr: {}",
            r.record,
            q(r.expr)
        );
    }
    let _ = writeln!(o, "  - name: loadagent-alerts\n    rules:");
    for a in ALERTS {
        let _ = writeln!(
            o,
            "      - alert: {}\n        expr: {}\n        for: {}",
            a.name,
            q(a.expr),
            a.for_
        );
        let _ = writeln!(o, "        labels:\n          severity: {}", a.severity);
        let _ = writeln!(
            o,
            "        annotations:\n          summary: {}\n          description: {}",
            q(a.summary),
            q(a.description)
        );
        let _ = writeln!(
            o,
            "          runbook_url: {}",
            q(&format!("{RUNBOOK}#{}", a.name.to_lowercase()))
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::DEFINITIONS;

    /// Every `loadagent_…` name in an expression is an exported metric (or one of its
    /// histogram series), and every metric a rule declares appears in it.
    #[test]
    fn rules_use_only_exported_metrics() {
        let exprs = ALERTS
            .iter()
            .map(|a| (a.name, a.expr, a.uses))
            .chain(RECORDINGS.iter().map(|r| (r.record, r.expr, r.uses)));
        for (name, expr, uses) in exprs {
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
                if !word.starts_with("loadagent_") {
                    continue;
                }
                let base = word
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_count")
                    .trim_end_matches("_sum");
                assert!(
                    DEFINITIONS.iter().any(|d| d.name == word || d.name == base),
                    "{name}: `{word}` is not an exported metric"
                );
            }
            for d in uses {
                assert!(
                    expr.contains(d.name)
                        || RECORDINGS
                            .iter()
                            .any(|r| expr.contains(r.record) && r.expr.contains(d.name)),
                    "{name} declares {} but does not use it",
                    d.name
                );
            }
        }
    }

    #[test]
    fn alerts_follow_the_naming_and_annotation_rules() {
        for a in ALERTS {
            assert!(
                a.name.starts_with("Loadagent") && !a.name.contains('_'),
                "{}",
                a.name
            );
            assert!(["critical", "warning", "info"].contains(&a.severity));
            assert!(!a.summary.is_empty() && !a.description.is_empty());
            assert!(
                !a.summary.contains("$value") && !a.description.contains("$value"),
                "annotations use labels only, so tests can state them exactly"
            );
        }
    }
}
