//! Observability artifacts generated from the metric definitions in `telemetry`: Prometheus
//! alerting and recording rules, Grafana dashboards, and the SLO rules of an agent config.

pub mod alerts;
pub mod dashboards;
pub mod slo;
