//! Observability artifacts generated from the metric definitions in `telemetry`: Prometheus
//! alerting and recording rules (and, next, Grafana dashboards).

pub mod alerts;
pub mod dashboards;
