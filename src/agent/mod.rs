//! `loadagent agent`: the node daemon. Probes gRPC targets' health, exports its own, the
//! host's and the probes' metrics for Prometheus, until SIGTERM or SIGINT.

pub mod channels;
pub mod config;
pub mod host;
pub mod http;
pub mod perf;
pub mod probe;
pub mod probe_bounds;
pub mod probe_endpoint;
pub mod probe_keys;
pub mod schedule;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::http_server::{serve, web_config};
use crate::telemetry::traces::Traces;
use crate::telemetry::Metrics;
use crate::tls::ClientTls;
use config::AgentConfig;

#[derive(Debug, thiserror::Error)]
/// Why the agent could not start.
pub enum AgentError {
    #[error("cannot listen on {0}: {1}")]
    /// The listen address could not be bound.
    Listen(String, std::io::Error),
    #[error("target {0}: {1}")]
    /// A target's TLS settings could not be used.
    Tls(String, String),
    #[error("metrics: {0}")]
    /// The metrics could not be registered.
    Metrics(String),
    #[error("tracing: {0}")]
    /// Traces could not be set up.
    Tracing(String),
}

fn build_tls(target: &config::ProbeTarget) -> Result<Option<ClientTls>, AgentError> {
    match &target.probe.tls {
        None => Ok(None),
        Some(o) => ClientTls::build(o, target.address.host(), None)
            .map(Some)
            .map_err(|e| {
                AgentError::Tls(target.name.clone(), format!("tls.{}: {}", e.key, e.message))
            }),
    }
}

/// Pushes the scheduled runs' series (`loadagent_run_*`, with the node's and the build's
/// info) to `[remote_write]`, labelled `job="loadagent"` and `instance` = the node, as a
/// scrape would; trouble is counted in `loadagent_errors_total{component="remote_write"}`
/// and logged once.
fn start_pushing(
    settings: crate::telemetry::remote_write::Settings,
    metrics: &Arc<Metrics>,
) -> crate::telemetry::remote_write::Pusher {
    use crate::telemetry::remote_write::{PushSource, Pusher};
    let node = crate::telemetry::node::node_name();
    let settings = settings.with_labels(&[("job", "loadagent"), ("instance", &node)]);
    let (gather, errors) = (metrics.clone(), metrics.errors_total.clone());
    Pusher::start(
        settings,
        PushSource {
            gather: Box::new(move || {
                let mut families = gather.registry.gather();
                families.retain(|f| {
                    f.name().starts_with("loadagent_run_")
                        || f.name() == crate::telemetry::metrics::NODE_INFO.name
                        || f.name() == crate::telemetry::metrics::BUILD_INFO.name
                });
                families
            }),
            count: Box::new(move |kind, n| {
                errors.with_label_values(&["remote_write", kind]).inc_by(n)
            }),
            say_once: Box::new(|m| tracing::warn!("{m}")),
        },
    )
}

/// A reloaded config's SLO latency thresholds must be buckets of the running histogram
/// (its buckets are fixed when the agent starts).
fn latencies_fit(config: &AgentConfig, buckets: &[f64]) -> Result<(), String> {
    match config
        .slo_latencies()
        .into_iter()
        .find(|t| !buckets.contains(t))
    {
        None => Ok(()),
        Some(t) => Err(format!(
            "an SLO latency of {t}s is not a bucket of the running probe latency histogram (buckets are set when the agent starts): restart the agent to take it"
        )),
    }
}

/// The probers of one configuration; replaced whole on reload.
struct Generation {
    stop: CancellationToken,
    probers: Vec<tokio::task::JoinHandle<()>>,
}

impl Generation {
    fn start(
        config: &AgentConfig,
        ctx: &probe::ProbeContext,
        targets: &AtomicUsize,
    ) -> Result<Self, AgentError> {
        let tls: Vec<Option<ClientTls>> = config
            .targets
            .iter()
            .map(build_tls)
            .collect::<Result<_, _>>()?;
        let stop = ctx.stop.child_token();
        let ctx = probe::ProbeContext {
            stop: stop.clone(),
            ..ctx.clone()
        };
        ctx.first_round
            .store(0, std::sync::atomic::Ordering::Relaxed);
        targets.store(config.targets.len(), std::sync::atomic::Ordering::Relaxed);
        let probers = config
            .targets
            .iter()
            .zip(tls)
            .map(|(t, tls)| probe::spawn(t.clone(), tls, ctx.clone()))
            .collect();
        Ok(Self { stop, probers })
    }

    async fn stop(self) {
        self.stop.cancel();
        for p in self.probers {
            let _ = p.await;
        }
    }
}

/// Runs the agent until `stop` fires. `ready` receives the address it listens on. With a
/// config `path`, SIGHUP reloads it: a valid new config replaces the probes, an invalid one is
/// logged and counted, and the old one keeps running.
pub async fn run(
    config: AgentConfig,
    web: Arc<web_config::WebConfig>,
    stop: CancellationToken,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), AgentError> {
    let buckets = crate::telemetry::metrics::probe_latency_buckets(&config.slo_latencies());
    let metrics = Arc::new(
        Metrics::with_probe_buckets(&buckets).map_err(|e| AgentError::Metrics(e.to_string()))?,
    );
    let platform = crate::host::platform::Platform::current();
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
        .with_label_values(&crate::telemetry::node::node_info_labels(&platform))
        .set(1.0);
    metrics.node_cpus.set(platform.cores());
    // Traces start with the agent and stay as they are across reloads.
    let traces = Traces::start(&config.tracing, Some(metrics.errors_total.clone()), |m| {
        tracing::warn!("{m}")
    })
    .map_err(AgentError::Tracing)?
    .map(Arc::new);
    if let Some(t) = &traces {
        tracing::info!(endpoint = %t.endpoint, sample_ratio = t.sample_ratio, "exporting traces over OTLP");
    }
    let ctx = probe::ProbeContext {
        traces: traces.clone(),
        metrics: metrics.clone(),
        results: Arc::new(Mutex::new(BTreeMap::new())),
        first_round: Arc::new(AtomicUsize::new(0)),
        stop: stop.clone(),
        connections: Default::default(),
        watch_channels: Default::default(),
    };
    let targets = Arc::new(AtomicUsize::new(0));
    let mut generation = Generation::start(&config, &ctx, &targets)?;
    let runs: schedule::Runs = Default::default();
    let pusher = config
        .remote_write
        .clone()
        .map(|settings| start_pushing(settings, &metrics));
    let schedule_ctx = schedule::ScheduleContext {
        push: pusher.as_ref().map(|p| p.handle()),
        metrics: metrics.clone(),
        runs: runs.clone(),
        exclusive: Default::default(),
        stop: stop.clone(),
        traces: traces.clone(),
    };
    let schedules: Vec<_> = config
        .schedules
        .iter()
        .map(|s| schedule::spawn(s.clone(), schedule_ctx.clone()))
        .collect();
    let modules = Arc::new(std::sync::RwLock::new(Arc::new(
        probe_endpoint::Modules::of(&config),
    )));
    let state = http::AppState {
        endpoint: probe_endpoint::EndpointState {
            modules: modules.clone(),
            metrics: metrics.clone(),
        },
        runs,
        probes: ctx.clone(),
        host: Arc::new(host::HostCollector::watching(config.processes.clone())),
        targets: targets.clone(),
    };
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| AgentError::Listen(config.listen.clone(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| AgentError::Listen(config.listen.clone(), e))?;
    let server = serve::Server::new(
        http::router(state).layer(axum::middleware::from_fn_with_state(
            web.clone(),
            web_config::guard,
        )),
        web,
        metrics.errors_total.clone(),
    );
    let server = tokio::spawn(server.run(listener, stop.clone()));
    ready(addr);

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let reload = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = reload => {
                let Some(path) = &config.path else {
                    tracing::warn!("SIGHUP: no config file to reload (started without --config)");
                    continue;
                };
                match config::reload(path).map_err(|e| e.to_string()).and_then(|c| {
                    c.targets.iter().try_for_each(|t| build_tls(t).map(|_| ())).map_err(|e| e.to_string()).map(|()| c)
                }).and_then(|c| latencies_fit(&c, metrics.probes.buckets()).map(|()| c)) {
                    Ok(new) => {
                        generation.stop().await;
                        // Series of targets that no longer exist must not linger; counters of
                        // the ones that remain restart, which Prometheus reads as a reset.
                        metrics.reset_probe_series();
                        ctx.connections.clear();
                        ctx.watch_channels.clear();
                        if let Ok(mut r) = ctx.results.lock() {
                            r.clear();
                        }
                        if let Ok(mut m) = modules.write() {
                            *m = Arc::new(probe_endpoint::Modules::of(&new));
                        }
                        generation = Generation::start(&new, &ctx, &targets).unwrap_or_else(|e| {
                            tracing::error!(error = %e, "SIGHUP: the new config's probes could not start");
                            Generation { stop: CancellationToken::new(), probers: Vec::new() }
                        });
                        tracing::info!(config = %path.display(), targets = new.targets.len(), "SIGHUP: config reloaded");
                    }
                    Err(e) => {
                        metrics.errors_total.with_label_values(&["config", "reload_rejected"]).inc();
                        tracing::error!(error = %e, "SIGHUP: the new config is rejected; the old one keeps running");
                    }
                }
            }
        }
    }
    generation.stop().await;
    for s in schedules {
        let _ = s.await;
    }
    if let Some(p) = pusher {
        let d = p.finish().await;
        tracing::info!(
            sent = d.sent,
            retried = d.retries,
            refused = d.rejected,
            lost = d.lost,
            "remote write: done"
        );
    }
    if let Some(t) = traces {
        // The last probe and run spans, within a bounded time.
        let _ = tokio::task::spawn_blocking(move || t.shutdown(std::time::Duration::from_secs(5)))
            .await;
    }
    server
        .await
        .map_err(|e| AgentError::Metrics(format!("the HTTP server task failed: {e}")))
}
