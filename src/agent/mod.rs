//! `loadagent agent`: the node daemon. Probes gRPC targets' health, exports its own, the
//! host's and the probes' metrics for Prometheus, until SIGTERM or SIGINT.

pub mod config;
pub mod host;
pub mod http;
pub mod probe;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::telemetry::Metrics;
use crate::tls::ClientTls;
use config::AgentConfig;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot listen on {0}: {1}")]
    Listen(String, std::io::Error),
    #[error("target {0}: {1}")]
    Tls(String, String),
    #[error("metrics: {0}")]
    Metrics(String),
}

/// The node's name: `NODE_NAME` (set by the DaemonSet from the downward API), else the hostname.
fn node_name() -> String {
    std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(sysinfo::System::host_name)
        .unwrap_or_else(|| "unknown".into())
}

/// Runs the agent until `stop` fires. `ready` receives the address it listens on.
pub async fn run(
    config: AgentConfig,
    stop: CancellationToken,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), AgentError> {
    let metrics = Arc::new(Metrics::new().map_err(|e| AgentError::Metrics(e.to_string()))?);
    let platform = crate::report::platform::Platform::current();
    metrics
        .build_info
        .with_label_values(&[
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH,
            option_env!("RUSTC_VERSION").unwrap_or("unknown"),
        ])
        .set(1.0);
    metrics
        .node_info
        .with_label_values(&[
            &node_name(),
            &platform.arch,
            &platform.cpu_model,
            &platform.logical_cpus.to_string(),
        ])
        .set(1.0);

    let ctx = probe::ProbeContext {
        metrics: metrics.clone(),
        results: Arc::new(Mutex::new(BTreeMap::new())),
        first_round: Arc::new(AtomicUsize::new(0)),
        stop: stop.clone(),
    };
    let mut probers = Vec::new();
    for target in &config.targets {
        let tls = match &target.tls {
            None => None,
            Some(o) => {
                let host = target
                    .address
                    .rsplit_once(':')
                    .map_or(target.address.as_str(), |(h, _)| h);
                Some(
                    ClientTls::build(o, host.trim_start_matches('[').trim_end_matches(']'), None)
                        .map_err(|e| {
                        AgentError::Tls(
                            target.name.clone(),
                            format!("tls.{}: {}", e.key, e.message),
                        )
                    })?,
                )
            }
        };
        probers.push(probe::spawn(target.clone(), tls, ctx.clone()));
    }
    let state = http::AppState {
        probes: ctx,
        host: Arc::new(host::HostCollector::new()),
        targets: config.targets.len(),
    };
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| AgentError::Listen(config.listen.clone(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| AgentError::Listen(config.listen.clone(), e))?;
    ready(addr);
    let served = axum::serve(listener, http::router(state))
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .await;
    stop.cancel();
    for p in probers {
        let _ = p.await;
    }
    served.map_err(|e| AgentError::Listen(config.listen.clone(), e))
}
