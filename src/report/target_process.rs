//! The target's side of a run: the server process's memory and CPU, sampled on this node
//! (`[target] process`) and/or read from its own Prometheus endpoint (`[target] metrics_url`).

use serde::{Deserialize, Serialize};

/// The `target_process` block of a report. Every figure is optional: each source gives
/// what it can.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetProcess {
    /// What was sampled: the process name or pid file, and/or the metrics URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<String>,
    /// Highest resident memory seen during the measured part (summed over the pids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    /// CPU used during the measured part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds_per_1k_requests: Option<f64>,
    /// From the endpoint: `process_resident_memory_bytes` at its highest scrape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_resident_memory_bytes: Option<f64>,
    /// From the endpoint: the increase of `process_cpu_seconds_total` over the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_cpu_seconds_total: Option<f64>,
    /// Runtime gauges the endpoint exposes (e.g. go_goroutines, go_threads,
    /// process_num_threads, python_gc_objects_collected_total), at the last scrape.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub runtime: std::collections::BTreeMap<String, f64>,
    /// Problems reading the target's side (it never fails the run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}
