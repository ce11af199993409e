//! `[target] process` and `metrics_url`: what of the target to watch during a run, as the
//! scenario gives it (the watching itself is `host::target_process`).

use super::url::{check_url, UrlError};

/// `[target] process` and `metrics_url`, as the scenario gives them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetSpec {
    /// A process name (every process of that name, summed) or a pid file (a path, or a
    /// name ending in `.pid`).
    pub process: Option<String>,
    /// The target's Prometheus endpoint.
    pub metrics_url: Option<String>,
}

impl TargetSpec {
    /// Whether nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.process.is_none() && self.metrics_url.is_none()
    }
}

/// A process entry names a pid file when it is a path or ends in `.pid`; otherwise it is a
/// process name.
pub fn is_pid_file(entry: &str) -> bool {
    entry.contains('/') || entry.ends_with(".pid")
}

/// `http://host:port/path` → its parts; other schemes are refused (a scenario error).
pub fn check_metrics_url(url: &str) -> Result<(), UrlError> {
    check_url(url, &["http"], "http://", "http://10.0.0.7:9090/metrics")
}
