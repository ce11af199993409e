//! Grafana dashboards, generated. Every query uses only metrics the agent exports (a test
//! checks each name against the definitions and evaluates each query in a real Prometheus).

use serde_json::{json, Value};

/// Keeps series of the chosen nodes and architectures (`loadagent_node_info` carries them).
const NODE: &str = "and on(instance) loadagent_node_info{node=~\"$node\",arch=~\"$arch\"}";

/// A panel: its title, kind, unit and queries (expression, legend).
#[derive(Debug)]
pub struct Panel {
    /// The panel's title.
    pub title: &'static str,
    /// Grafana's panel type (`timeseries`, `stat`, …).
    pub kind: &'static str,
    /// Grafana's unit.
    pub unit: &'static str,
    /// Its queries: (expression, legend).
    pub queries: Vec<(String, &'static str)>,
    /// Needs hardware perf counters, which many VMs refuse (the panel may stay empty there).
    pub needs_hardware_counters: bool,
}

#[derive(Debug)]
/// One Grafana dashboard.
pub struct Dashboard {
    /// Its stable uid.
    pub uid: &'static str,
    /// Its title.
    pub title: &'static str,
    /// Template variables besides `datasource`, `node` and `arch`: (name, label_values query).
    pub vars: Vec<(&'static str, &'static str)>,
    /// Its panels, in order.
    pub panels: Vec<Panel>,
}

fn p(
    title: &'static str,
    kind: &'static str,
    unit: &'static str,
    queries: Vec<(String, &'static str)>,
) -> Panel {
    Panel {
        title,
        kind,
        unit,
        queries,
        needs_hardware_counters: false,
    }
}

fn q(expr: String, legend: &'static str) -> (String, &'static str) {
    (expr, legend)
}

/// Every dashboard.
pub fn all() -> Vec<Dashboard> {
    let target_var = ("target", "label_values(loadagent_probe_success, target)");
    let scenario_var = (
        "scenario",
        "label_values(loadagent_run_requests_total, scenario)",
    );
    let by_arch = "* on(instance) group_left(arch) loadagent_node_info";
    vec![
        Dashboard {
            uid: "loadagent-fleet",
            title: "loadagent: fleet overview",
            vars: vec![target_var],
            panels: vec![
                // A target named by DNS is probed per backend: these count backends.
                p("Backends up", "stat", "none", vec![q(format!("sum(loadagent_probe_success{{target=~\"$target\"}} {NODE})"), "up")]),
                p("Backends down", "stat", "none", vec![q(format!("count((loadagent_probe_success{{target=~\"$target\"}} {NODE}) == 0) or vector(0)"), "down")]),
                p("Share of each target's backends SERVING", "timeseries", "percentunit", vec![q(format!("avg by (target) (loadagent_probe_success{{target=~\"$target\"}} {NODE})"), "{{target}}")]),
                p("Backends per target (from DNS)", "timeseries", "none", vec![q(format!("max by (target) (loadagent_probe_backends{{target=~\"$target\"}} {NODE})"), "{{target}}")]),
                p("Health status per backend", "state-timeline", "none", vec![q(format!("max by (target, backend, serving_status) (loadagent_probe_healthcheck_status{{target=~\"$target\"}} {NODE}) == 1"), "{{target}} {{backend}} {{serving_status}}")]),
                p("Slowest backends (probe p99)", "table", "s", vec![q(format!("topk(10, histogram_quantile(0.99, sum by (target, backend, le) (rate(loadagent_probe_latency_seconds_bucket{{target=~\"$target\"}}[$__rate_interval]) {NODE})))"), "{{target}} {{backend}}")]),
                p("Method probe checks failing (health SERVING or not)", "table", "none", vec![q(format!("max by (target, backend, check) (loadagent_probe_check_failed{{target=~\"$target\"}} {NODE}) == 1"), "{{target}} {{backend}} {{check}}")]),
                p("Method probes passing", "timeseries", "percentunit", vec![q(format!("1 - avg by (target) (max by (instance, target, backend) (loadagent_probe_check_failed{{target=~\"$target\"}} {NODE}))"), "{{target}}")]),
                p("DNS resolution failures", "timeseries", "none", vec![q(format!("sum by (target) (increase(loadagent_probe_resolutions_total{{target=~\"$target\",result=\"failure\"}}[$__rate_interval]) {NODE})"), "{{target}}")]),
                p("Probe latency p50 / p99", "timeseries", "s", vec![
                    q(format!("histogram_quantile(0.5, sum by (target, le) (rate(loadagent_probe_latency_seconds_bucket{{target=~\"$target\"}}[$__rate_interval]) {NODE}))"), "{{target}} p50"),
                    q(format!("histogram_quantile(0.99, sum by (target, le) (rate(loadagent_probe_latency_seconds_bucket{{target=~\"$target\"}}[$__rate_interval]) {NODE}))"), "{{target}} p99"),
                ]),
                // Recorded by the SLO rules `loadagent alerts --config agent.toml` writes.
                p("Error budget remaining (SLOs)", "timeseries", "percentunit", vec![q("loadagent:probe_slo_error_budget_remaining{target=~\"$target\"}".into(), "{{target}} {{slo}}")]),
                p("Certificates expiring soonest (days)", "table", "d", vec![q(format!("bottomk(10, (loadagent_probe_ssl_earliest_cert_expiry{{target=~\"$target\"}} {NODE}) - time()) / 86400"), "{{target}} {{backend}}")]),
                p("Agents reporting", "stat", "none", vec![q("count(loadagent_build_info)".into(), "agents"), q("count(up{job=\"loadagent\"} == 0) or vector(0)".into(), "not scraped")]),
            ],
        },
        Dashboard {
            uid: "loadagent-runs",
            title: "loadagent: load runs",
            vars: vec![scenario_var],
            panels: vec![
                p("Achieved vs asked rps", "timeseries", "reqps", vec![
                    q(format!("sum by (scenario) (loadagent_run_rps{{scenario=~\"$scenario\"}} {NODE})"), "{{scenario}} achieved"),
                    q(format!("sum by (scenario) (loadagent_run_asked_rps{{scenario=~\"$scenario\"}} {NODE})"), "{{scenario}} asked"),
                ]),
                p("Latency percentiles (corrected and uncorrected)", "timeseries", "s", vec![
                    q(format!("histogram_quantile(0.5, sum by (latency, le) (increase(loadagent_run_latency_seconds_bucket{{scenario=~\"$scenario\"}}[$__range]) {NODE}))"), "p50 {{latency}}"),
                    q(format!("histogram_quantile(0.99, sum by (latency, le) (increase(loadagent_run_latency_seconds_bucket{{scenario=~\"$scenario\"}}[$__range]) {NODE}))"), "p99 {{latency}}"),
                ]),
                p("Latency heatmap (corrected)", "heatmap", "s", vec![q(format!("sum by (le) (increase(loadagent_run_latency_seconds_bucket{{scenario=~\"$scenario\",latency=\"corrected\"}}[$__rate_interval]) {NODE})"), "{{le}}")]),
                p("Requests by status", "timeseries", "none", vec![q(format!("sum by (status) (increase(loadagent_run_requests_total{{scenario=~\"$scenario\"}}[$__rate_interval]) {NODE})"), "{{status}}")]),
                p("Last run passed its thresholds", "stat", "none", vec![q(format!("loadagent_run_success{{scenario=~\"$scenario\"}} {NODE}"), "{{scenario}}")]),
                p("What ended each capacity search", "table", "none", vec![q(format!("loadagent_run_capacity_limited_by{{scenario=~\"$scenario\"}} {NODE} == 1"), "{{instance}} {{scenario}} {{limited_by}}")]),
            ],
        },
        Dashboard {
            uid: "loadagent-tls",
            title: "loadagent: TLS handshakes",
            vars: vec![scenario_var],
            panels: vec![
                p("Handshakes per second", "timeseries", "ops", vec![q(format!("sum by (scenario) (rate(loadagent_run_handshakes_total{{scenario=~\"$scenario\"}}[$__rate_interval]) {NODE})"), "{{scenario}}")]),
                p("Phase latency p99", "timeseries", "s", vec![q(format!("loadagent_run_phase_seconds{{scenario=~\"$scenario\",quantile=\"0.99\"}} {NODE}"), "{{scenario}} {{phase}}")]),
                p("Resumption ratio", "stat", "percentunit", vec![q(format!("loadagent_run_tls_resumed_ratio{{scenario=~\"$scenario\"}} {NODE}"), "{{scenario}}")]),
                p("Handshake errors by class", "timeseries", "none", vec![q(format!("sum by (class) (increase(loadagent_run_handshake_errors_total{{scenario=~\"$scenario\"}}[$__rate_interval]) {NODE})"), "{{class}}")]),
                p("Probe TLS handshake time", "timeseries", "s", vec![q(format!("loadagent_probe_duration_seconds{{phase=\"tls\"}} {NODE}"), "{{target}} {{backend}}")]),
            ],
        },
        Dashboard {
            uid: "loadagent-node",
            title: "loadagent: node runtime",
            vars: vec![],
            panels: vec![
                p("CPU busy", "timeseries", "percentunit", vec![q(format!("loadagent_host_cpu_usage_ratio {NODE}"), "{{instance}}")]),
                p("Memory", "timeseries", "bytes", vec![
                    q(format!("loadagent_host_memory_total_bytes {NODE}"), "{{instance}} total"),
                    q(format!("loadagent_host_memory_available_bytes {NODE}"), "{{instance}} available"),
                ]),
                p("Load average", "timeseries", "none", vec![q(format!("loadagent_host_load_average {NODE}"), "{{instance}} {{window}}")]),
                p("Network", "timeseries", "Bps", vec![
                    q(format!("rate(loadagent_host_network_receive_bytes_total[$__rate_interval]) {NODE}"), "{{interface}} in"),
                    q(format!("rate(loadagent_host_network_transmit_bytes_total[$__rate_interval]) {NODE}"), "{{interface}} out"),
                ]),
                p("Process CPU", "timeseries", "percentunit", vec![q(format!("rate(loadagent_process_cpu_seconds_total[$__rate_interval]) {NODE}"), "{{process}}")]),
                p("Process RSS", "timeseries", "bytes", vec![q(format!("loadagent_process_resident_memory_bytes {NODE}"), "{{process}}")]),
                p("Threads and open files", "timeseries", "none", vec![
                    q(format!("loadagent_process_threads {NODE}"), "{{process}} threads"),
                    q(format!("loadagent_process_open_fds {NODE}"), "{{process}} fds"),
                ]),
                p("perf events per second", "timeseries", "none", vec![q(format!("rate(loadagent_perf_events_total[$__rate_interval]) {NODE}"), "{{process}} {{event}}")]),
                // Never fatal, so easy to miss: failed probes, rejected reloads, lost spans.
                p("Agent internal errors", "timeseries", "none", vec![q(format!("sum by (component, kind) (increase(loadagent_errors_total[$__rate_interval]) {NODE})"), "{{component}} {{kind}}")]),
                Panel {
                    needs_hardware_counters: true,
                    ..p("Instructions per cycle", "timeseries", "none", vec![q(format!("sum by (process) (rate(loadagent_perf_events_total{{event=\"instructions\"}}[$__rate_interval]) {NODE}) / sum by (process) (rate(loadagent_perf_events_total{{event=\"cycles\"}}[$__rate_interval]) {NODE})"), "{{process}}")])
                },
            ],
        },
        Dashboard {
            uid: "loadagent-arch",
            title: "loadagent: arm64 vs amd64",
            vars: vec![scenario_var],
            panels: vec![
                p("Throughput per core", "timeseries", "reqps", vec![q(format!("sum by (arch) (loadagent_run_rps{{scenario=~\"$scenario\"}} {by_arch}) / sum by (arch) (loadagent_node_cpus {by_arch})"), "{{arch}}")]),
                p("Latency p50 / p99 (corrected)", "timeseries", "s", vec![
                    q(format!("histogram_quantile(0.5, sum by (arch, le) (increase(loadagent_run_latency_seconds_bucket{{scenario=~\"$scenario\",latency=\"corrected\"}}[$__range]) {by_arch}))"), "{{arch}} p50"),
                    q(format!("histogram_quantile(0.99, sum by (arch, le) (increase(loadagent_run_latency_seconds_bucket{{scenario=~\"$scenario\",latency=\"corrected\"}}[$__range]) {by_arch}))"), "{{arch}} p99"),
                ]),
                p("Agent RSS", "timeseries", "bytes", vec![q(format!("avg by (arch) (loadagent_process_resident_memory_bytes{{process=\"loadagent\"}} {by_arch})"), "{{arch}}")]),
                p("CPU seconds per 1,000 requests", "timeseries", "s", vec![q(format!("avg by (arch) (loadagent_run_cpu_seconds_per_1k_requests{{scenario=~\"$scenario\"}} {by_arch})"), "{{arch}}")]),
                // The server's side, for scenarios that watch their target ([target] process / metrics_url).
                p("Target CPU seconds per 1,000 requests", "timeseries", "s", vec![q(format!("avg by (arch) (loadagent_run_target_cpu_seconds_per_1k_requests{{scenario=~\"$scenario\"}} {by_arch})"), "{{arch}}")]),
                p("Target peak RSS", "timeseries", "bytes", vec![q(format!("avg by (arch) (loadagent_run_target_peak_resident_memory_bytes{{scenario=~\"$scenario\"}} {by_arch})"), "{{arch}}")]),
                // The comparison's real answer: scheduled capacity searches ([capacity]), the
                // highest rate within the SLO per core of the server (watched on its node).
                p("Capacity per core by architecture", "timeseries", "reqps", vec![
                    q(format!("avg by (arch) (loadagent_run_capacity_rps_per_server_core{{scenario=~\"$scenario\"}} {by_arch})"), "{{arch}} per core used"),
                    q(format!("avg by (arch) (loadagent_run_capacity_rps_per_usable_core{{scenario=~\"$scenario\"}} {by_arch})"), "{{arch}} per usable core"),
                ]),
                p("Capacity (highest rate within the SLO)", "timeseries", "reqps", vec![q(format!("avg by (arch, scenario) (loadagent_run_capacity_rps{{scenario=~\"$scenario\"}} {by_arch})"), "{{arch}} {{scenario}}")]),
            ],
        },
    ]
}

fn var(name: &str, query: &str) -> Value {
    json!({
        "name": name, "label": name, "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name}, "definition": query, "refresh": 2, "includeAll": true,
        "multi": true, "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "sort": 1
    })
}

/// The dashboard's Grafana JSON.
pub fn render(d: &Dashboard) -> Value {
    let mut vars = vec![json!({
        "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
        "current": {}, "hide": 0, "refresh": 1
    })];
    vars.push(var("node", "label_values(loadagent_node_info, node)"));
    vars.push(var("arch", "label_values(loadagent_node_info, arch)"));
    for (name, query) in &d.vars {
        vars.push(var(name, query));
    }
    let panels: Vec<Value> = d
        .panels
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let targets: Vec<Value> = p
                .queries
                .iter()
                .enumerate()
                .map(|(j, (expr, legend))| json!({
                    "refId": char::from(b'A' + j as u8).to_string(), "expr": expr, "legendFormat": legend,
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "format": if p.kind == "heatmap" { "heatmap" } else if p.kind == "table" { "table" } else { "time_series" },
                    "instant": p.kind == "table"
                }))
                .collect();
            json!({
                "id": i + 1, "title": p.title, "type": p.kind,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i / 2) * 8},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "targets": targets,
                "description": if p.needs_hardware_counters { "Needs hardware perf counters; empty on nodes that refuse them (see loadagent_perf_event_supported)." } else { "" },
            })
        })
        .collect();
    json!({
        "uid": d.uid, "title": d.title, "schemaVersion": 39, "version": 1, "editable": true,
        "tags": ["loadagent"], "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
        "templating": {"list": vars}, "panels": panels,
        "__comment": "Generated by `loadagent dashboards --out dashboards/` from src/observe/dashboards.rs: do not edit."
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::DEFINITIONS;

    #[test]
    fn every_query_uses_exported_metrics_and_the_datasource_variable() {
        for d in all() {
            let v = render(&d);
            let mut ids = std::collections::HashSet::new();
            for panel in v["panels"].as_array().unwrap() {
                assert!(
                    ids.insert(panel["id"].as_u64().unwrap()),
                    "{}: duplicate panel id",
                    d.uid
                );
                assert_eq!(panel["datasource"]["uid"], "${datasource}");
                let targets = panel["targets"].as_array().unwrap();
                assert!(
                    !targets.is_empty(),
                    "{}: empty panel {}",
                    d.uid,
                    panel["title"]
                );
                for t in targets {
                    assert_eq!(t["datasource"]["uid"], "${datasource}");
                    let expr = t["expr"].as_str().unwrap();
                    for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                        if word.starts_with("loadagent_") {
                            let base = word.trim_end_matches("_bucket");
                            assert!(
                                DEFINITIONS.iter().any(|d| d.name == word || d.name == base),
                                "{}: `{word}` is not exported",
                                d.uid
                            );
                        }
                    }
                }
            }
        }
    }
}
