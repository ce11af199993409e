//! `[tracing]` in a scenario or the agent's config: where spans go and how many calls get one.

pub use super::defaults::DEFAULT_SAMPLE_RATIO;
use super::url::{check_url, UrlError};

/// `[tracing]` in a scenario or the agent's config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TracingConfig {
    /// `otlp_endpoint`; when absent, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` from the environment; none of them: no tracing.
    pub otlp_endpoint: Option<String>,
    /// The fraction of calls (streams, handshakes) that get a span, 0 to 1, when set.
    pub sample_ratio: Option<f64>,
}

impl TracingConfig {
    /// `sample_ratio`, or the default.
    pub fn ratio(&self) -> f64 {
        self.sample_ratio.unwrap_or(DEFAULT_SAMPLE_RATIO)
    }

    /// The endpoint to export to and where it was set: the file, else the standard
    /// environment variables.
    pub fn endpoint(&self) -> Option<(String, &'static str)> {
        if let Some(e) = &self.otlp_endpoint {
            return Some((e.clone(), "[tracing] otlp_endpoint"));
        }
        [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .into_iter()
        .find_map(|k| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (v, k))
        })
    }
}

/// An OTLP/gRPC endpoint is a URL with a scheme, as the OpenTelemetry SDKs take it.
pub fn check_endpoint(endpoint: &str) -> Result<(), UrlError> {
    check_url(
        endpoint,
        &["http", "https"],
        "http:// or https://",
        "http://localhost:4317",
    )
}
