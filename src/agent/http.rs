//! The agent's HTTP endpoints (axum): /metrics, /probe, /healthz, /readyz, /api/v1/targets.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::host::HostCollector;
use super::probe::ProbeContext;

#[derive(Debug, Clone)]
/// What the endpoints read.
pub struct AppState {
    /// Recent scheduled-run reports (the same JSON as `run --out`).
    pub runs: super::schedule::Runs,
    /// The probers' shared state (results, first round).
    pub probes: ProbeContext,
    /// The host metrics.
    pub host: Arc<HostCollector>,
    /// Targets of the current configuration (changes on reload).
    pub targets: Arc<std::sync::atomic::AtomicUsize>,
    /// What `/probe` reads: the modules of the current configuration.
    pub endpoint: super::probe_endpoint::EndpointState,
}

/// Prometheus text format, or OpenMetrics when the scraper's Accept header asks for it. The
/// body is written in chunks as it is sent (`Metrics::exposition`): with 1,000 targets a
/// whole render would be 2.5 MB held per scrape.
async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    s.host.refresh(&s.probes.metrics);
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let content_type = match openmetrics {
        true => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        false => "text/plain; version=0.0.4; charset=utf-8",
    };
    let chunks = crate::telemetry::Metrics::exposition(s.probes.metrics.clone(), openmetrics)
        .map(Ok::<_, std::convert::Infallible>);
    (
        [(header::CONTENT_TYPE, content_type)],
        axum::body::Body::from_stream(futures_util::stream::iter(chunks)),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once the config is loaded and every target has been probed once.
async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let done = s.probes.first_round.load(Ordering::Relaxed);
    let targets = s.targets.load(Ordering::Relaxed);
    if done >= targets {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("first probe round: {done} of {targets} targets\n"),
        )
    }
}

async fn targets(State(s): State<AppState>) -> impl IntoResponse {
    let list: Vec<_> = s
        .probes
        .results
        .lock()
        .map(|r| r.values().cloned().collect())
        .unwrap_or_default();
    Json(list)
}

async fn runs(State(s): State<AppState>) -> impl IntoResponse {
    let list: Vec<_> = s
        .runs
        .lock()
        .map(|r| r.iter().cloned().collect())
        .unwrap_or_default();
    Json(list)
}

/// The agent's routes: `/metrics`, `/probe`, `/healthz`, `/readyz`, `/api/v1/targets`,
/// `/api/v1/runs`.
pub fn router(state: AppState) -> Router {
    let probe = Router::new()
        .route("/probe", get(super::probe_endpoint::probe))
        .with_state(state.endpoint.clone());
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/runs", get(runs))
        .with_state(state)
        .merge(probe)
}
