//! `GET /probe?target=HOST:PORT&module=NAME[&debug=true]`: the multi-target exporter pattern.
//! Prometheus discovers the targets and sends each here; the agent probes it once with the
//! module's settings and answers that probe's series, in blackbox_exporter's names (so its
//! dashboards and alerts keep working) plus this project's extras.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{Gauge, GaugeVec, Opts, Registry};
use tokio::sync::Semaphore;

use super::config::{AgentConfig, ProbeKeys, ProbeMode};
use super::probe_bounds::EndpointConfig;
use crate::probe::method::{MethodProbe, PrepareError};
use crate::probe::once::{self, Module, ProbeVerdict, Target};
use crate::probe::verdict::Failure;
use crate::telemetry::Metrics;
use crate::tls::ClientTls;
use crate::vocabulary::{FleetName, HostPort};

/// What Prometheus' scrape timeout is shortened by, so the answer arrives before Prometheus
/// gives up (blackbox_exporter's `timeout_offset`).
const SCRAPE_TIMEOUT_MARGIN: Duration = Duration::from_millis(500);

/// The modules and bounds of one configuration; replaced whole on reload.
#[derive(Debug)]
pub struct Modules {
    modules: BTreeMap<String, ProbeKeys>,
    /// Each TLS module's configuration, built once (its files read once, not per scrape);
    /// each probe only sets the name verified. Missing: it could not be built (reported by
    /// the probes that use it).
    tls: BTreeMap<String, Result<ClientTls, String>>,
    endpoint: EndpointConfig,
    in_flight: Arc<Semaphore>,
}

impl Modules {
    /// The modules and bounds of `config`.
    pub fn of(config: &AgentConfig) -> Self {
        let tls = config
            .modules
            .iter()
            .filter_map(|(name, keys)| {
                let o = keys.tls.as_ref()?;
                let built = ClientTls::build(o, "localhost", None)
                    .map_err(|e| format!("tls.{}: {}", e.key, e.message));
                Some((name.clone(), built))
            })
            .collect();
        Self {
            modules: config.modules.clone(),
            tls,
            endpoint: config.endpoint.clone(),
            // Bounded when read (`MAX_CONCURRENT_BOUND`), far below the semaphore's limit.
            in_flight: Arc::new(Semaphore::new(config.endpoint.max_concurrent as usize)),
        }
    }
}

/// What `/probe` reads: the current modules (swapped on reload) and the agent's counters.
#[derive(Debug, Clone)]
pub struct EndpointState {
    /// The current configuration's modules.
    pub modules: Arc<RwLock<Arc<Modules>>>,
    /// Where refusals and probes are counted.
    pub metrics: Arc<Metrics>,
}

/// Why a request was not probed: its HTTP status, the counter's `reason` and the words.
struct Refusal(StatusCode, &'static str, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.2)).into_response()
    }
}

/// The `/probe` handler.
pub async fn probe(
    State(s): State<EndpointState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let modules = s
        .modules
        .read()
        .map(|m| m.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    let params = query(&uri);
    match admit(&modules, &params) {
        Err(Refusal(code, reason, why)) => {
            s.metrics
                .probe_endpoint_refused
                .with_label_values(&[reason])
                .inc();
            Refusal(code, reason, why).into_response()
        }
        Ok((name, keys, address)) => {
            // Taken here, not queued: a scrape that waits is a scrape that times out.
            let Ok(_permit) = modules.in_flight.clone().try_acquire_owned() else {
                s.metrics
                    .probe_endpoint_refused
                    .with_label_values(&["busy"])
                    .inc();
                return Refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    format!(
                        "{} probes are in flight already ([probe] max_concurrent); try again",
                        modules.endpoint.max_concurrent
                    ),
                )
                .into_response();
            };
            let timeout = probe_timeout(&headers, keys.timeout);
            let written = params.get("target").cloned().unwrap_or_default();
            let tls = modules.tls.get(name).cloned();
            let outcome = run(keys, tls, address, &written, timeout).await;
            s.metrics
                .probe_endpoint_probes
                .with_label_values(&[
                    name,
                    if outcome.success() {
                        "success"
                    } else {
                        "failure"
                    },
                ])
                .inc();
            let exposition = outcome.exposition();
            if params.get("debug").is_some_and(|d| d == "true") {
                let text = format!(
                    "Logs for the probe:\n{}\n\n\nMetrics that would have been returned:\n{}\n\n\nModule configuration:\n{}\n",
                    outcome.log.join("\n"),
                    exposition,
                    describe(name, keys)
                );
                return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text)
                    .into_response();
            }
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                exposition,
            )
                .into_response()
        }
    }
}

/// The query's parameters (the last of a repeated one); none when it does not decode.
fn query(uri: &axum::http::Uri) -> BTreeMap<String, String> {
    Query::<BTreeMap<String, String>>::try_from_uri(uri)
        .map(|Query(q)| q)
        .unwrap_or_default()
}

/// What `/probe` makes of a request's URI: the module's name and the address to probe, or the
/// HTTP status, the counter's reason and the words of its refusal. (The handler's first step;
/// public for the fuzz target.)
pub fn admit_uri(
    modules: &Modules,
    uri: &axum::http::Uri,
) -> Result<(String, HostPort), (u16, &'static str, String)> {
    admit(modules, &query(uri))
        .map(|(name, _, address)| (name.to_string(), address))
        .map_err(|Refusal(code, reason, why)| (code.as_u16(), reason, why))
}

/// The module and the address, or why the request is refused.
fn admit<'m>(
    modules: &'m Modules,
    params: &BTreeMap<String, String>,
) -> Result<(&'m str, &'m ProbeKeys, HostPort), Refusal> {
    let known = || {
        if modules.modules.is_empty() {
            "the config has no [modules.NAME] table".to_string()
        } else {
            let names: Vec<&str> = modules.modules.keys().map(String::as_str).collect();
            format!("known modules: {}", names.join(", "))
        }
    };
    let Some(module) = params.get("module") else {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "unknown_module",
            format!("the `module` parameter is missing; {}", known()),
        ));
    };
    let Some((name, keys)) = modules.modules.get_key_value(module) else {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "unknown_module",
            format!("unknown module {module:?}; {}", known()),
        ));
    };
    let Some(target) = params.get("target").filter(|t| !t.is_empty()) else {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "bad_target",
            "the `target` parameter is missing; write target=HOST:PORT".into(),
        ));
    };
    if let Ok(Some(fleet)) = FleetName::parse(target) {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "bad_target",
            format!(
                "{fleet} is a DNS name of many backends: /probe probes one address. Let Prometheus find the backends (dns_sd_configs, kubernetes_sd_configs) and send each here, or let the agent follow the name ([[targets]] address = \"{fleet}\")"
            ),
        ));
    }
    let address = HostPort::parse(target).map_err(|e| {
        Refusal(
            StatusCode::BAD_REQUEST,
            "bad_target",
            format!("target {target:?}: {e}"),
        )
    })?;
    if !modules.endpoint.allows(address.host()) {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "not_allowed",
            format!("target {target:?} is not in [probe] allowed_targets of the agent's config"),
        ));
    }
    Ok((name, keys, address))
}

/// The module's timeout, shortened to fit Prometheus' scrape timeout (its header, less a
/// margin) when that is shorter.
fn probe_timeout(headers: &HeaderMap, module: Duration) -> Duration {
    let scrape = headers
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)));
    match scrape {
        None => module,
        Some(s) => {
            // A scrape timeout shorter than the margin is used whole: something is better than
            // a probe that cannot start.
            let budget = if s > SCRAPE_TIMEOUT_MARGIN {
                s - SCRAPE_TIMEOUT_MARGIN
            } else {
                s
            };
            budget.min(module)
        }
    }
}

/// One probe's verdicts and its log.
struct Outcome {
    health: Option<ProbeVerdict>,
    method: Option<ProbeVerdict>,
    /// Why the probe could not be made at all (TLS settings, the method's types).
    setup_failure: Option<String>,
    tls: bool,
    took: Duration,
    log: Vec<String>,
}

impl Outcome {
    fn success(&self) -> bool {
        self.setup_failure.is_none()
            && [&self.health, &self.method]
                .iter()
                .all(|v| v.as_ref().is_none_or(ProbeVerdict::success))
            && (self.health.is_some() || self.method.is_some())
    }

    /// The verdict whose RPC went last (the method's when it was called).
    fn last(&self) -> Option<&ProbeVerdict> {
        self.method.as_ref().or(self.health.as_ref())
    }

    fn exposition(&self) -> String {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = Gauge::with_opts(Opts::new(name, help)).expect("a valid metric name");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("a valid metric name");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        gauge(
            "probe_success",
            "Displays whether or not the probe was a success",
        )
        .set(f64::from(u8::from(self.success())));
        gauge(
            "probe_duration_seconds",
            "Returns how long the probe took to complete in seconds",
        )
        .set(self.took.as_secs_f64());
        let durations = gauge_vec(
            "probe_grpc_duration_seconds",
            "Duration of gRPC request by phase",
            &["phase"],
        );
        for v in [&self.health, &self.method].into_iter().flatten() {
            for (phase, took) in &v.phases {
                durations
                    .with_label_values(&[phase])
                    .add(took.as_secs_f64());
            }
        }
        gauge(
            "probe_grpc_ssl",
            "Indicates if SSL was used for the connection",
        )
        .set(f64::from(u8::from(self.tls)));
        if let Some(last) = self.last() {
            let code = match (&last.call, &last.health, &last.failure) {
                (Some(call), _, _) => i32::from(call.code),
                (None, Some(h), _) => h.code,
                // Nothing answered: what a gRPC client reports for a connection it could not make.
                (None, None, _) => 14,
            };
            gauge("probe_grpc_status_code", "Response gRPC status code").set(f64::from(code));
        }
        if let Some(h) = self.health.as_ref().and_then(|v| v.health.as_ref()) {
            let statuses = gauge_vec(
                "probe_grpc_healthcheck_response",
                "Response HealthCheck response",
                &["serving_status"],
            );
            for s in crate::telemetry::metrics::SERVING_STATUSES {
                statuses
                    .with_label_values(&[s])
                    .set(f64::from(u8::from(h.status == Some(s))));
            }
        }
        let facts = [&self.health, &self.method]
            .into_iter()
            .flatten()
            .find_map(|v| v.tls.as_ref());
        if let Some(f) = facts {
            if let Some(expiry) = f.earliest_expiry {
                gauge(
                    "probe_ssl_earliest_cert_expiry",
                    "Returns earliest SSL cert expiry in unixtime",
                )
                .set(expiry as f64);
            }
            gauge_vec(
                "probe_tls_version_info",
                "Contains the TLS version used",
                &["version"],
            )
            .with_label_values(&[&blackbox_tls_version(&f.version)])
            .set(1.0);
        }
        if let Some(call) = self.method.as_ref().and_then(|v| v.call.as_ref()) {
            let checks = gauge_vec(
                "probe_grpc_check_failed",
                "1 when this `expect` check of the module's method probe failed, else 0 (check = the check as written)",
                &["check"],
            );
            for (check, why) in &call.checks {
                checks
                    .with_label_values(&[check])
                    .set(f64::from(u8::from(why.is_some())));
            }
        }
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        // Encoding our own gauges cannot fail; an empty answer would be a failed scrape.
        let _ = encoder.encode_utf8(&registry.gather(), &mut out);
        out
    }
}

/// blackbox_exporter's words for TLS versions (`TLS 1.3`), from rustls' (`TLSv1_3`).
fn blackbox_tls_version(version: &str) -> String {
    let digits = version
        .trim_start_matches("TLSv")
        .trim_start_matches("TLS")
        .replace('_', ".");
    format!("TLS {}", digits.trim())
}

/// Probes `address` with `keys` within `timeout`: the health check (unless the module calls a
/// method alone or over gRPC-Web), then the method (when the module has one and health passed).
async fn run(
    keys: &ProbeKeys,
    tls: Option<Result<ClientTls, String>>,
    address: HostPort,
    written: &str,
    timeout: Duration,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut log = Vec::new();
    let mut say =
        |line: String| log.push(format!("{:>8.3}s {line}", started.elapsed().as_secs_f64()));
    say(format!(
        "beginning probe of {address} (timeout {:.3}s)",
        timeout.as_secs_f64()
    ));
    let mut outcome = Outcome {
        health: None,
        method: None,
        setup_failure: None,
        tls: keys.tls.is_some(),
        took: Duration::ZERO,
        log: Vec::new(),
    };
    // The module's configuration, verifying the target's host unless it names its own.
    let named = keys.tls.as_ref().is_some_and(|o| o.server_name.is_some());
    let tls = match tls {
        None => None,
        Some(built) => match built.and_then(|t| {
            if named {
                Ok(t)
            } else {
                t.with_server_name(address.host())
            }
        }) {
            Ok(t) => Some(t),
            Err(why) => {
                say(format!("probe failed: {why}"));
                outcome.setup_failure = Some(why);
                outcome.took = started.elapsed();
                outcome.log = log;
                return outcome;
            }
        },
    };
    let target = |left: Duration| Target {
        address: address.clone(),
        tls: tls.clone(),
        metadata: keys.metadata.clone(),
        timeout: left,
    };
    let health = keys.web.is_none() && keys.method.as_ref().is_none_or(|m| m.health);
    if health {
        let module = Module::Health {
            service: keys.service.clone(),
            watch: keys.mode == ProbeMode::Watch,
        };
        say(format!(
            "grpc.health.v1 {} of service {:?}",
            if keys.mode == ProbeMode::Watch {
                "Watch"
            } else {
                "Check"
            },
            keys.service
        ));
        let v = once::once(&target(left(deadline)), &module).await;
        match (&v.failure, &v.health) {
            (None, _) => say("health: SERVING".into()),
            (Some((kind, why)), _) => say(format!("health failed ({}): {why}", kind_name(*kind))),
        }
        outcome.health = Some(v);
    }
    let health_passed = outcome.health.as_ref().is_none_or(ProbeVerdict::success);
    if let (Some(spec), true) = (&keys.method, health_passed) {
        let probe: Result<MethodProbe, String> = match &spec.prepared {
            Some(p) => Ok(p.clone()),
            None => {
                say(format!(
                    "asking {address} for {}'s types by reflection",
                    spec.name
                ));
                crate::probe::method::by_reflection(
                    &address,
                    &spec.name,
                    &spec.messages,
                    &spec.checks,
                    left(deadline),
                    tls.as_ref(),
                )
                .await
                .map_err(|e| match e {
                    PrepareError::Reflection(e) => {
                        format!("the types of {} could not be had by reflection: {e} (give the module `proto` or `protoset`)", spec.name)
                    }
                    PrepareError::Problems(p) => p
                        .iter()
                        .map(|p| format!("{}: {}", p.key, p.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                })
            }
        };
        match probe {
            Err(why) => {
                say(format!("probe failed: {why}"));
                outcome.setup_failure = Some(why);
            }
            Ok(probe) => {
                let t = target(left(deadline));
                let module = match keys.web {
                    None => Ok(Module::Method(probe)),
                    Some((protocol, http_version)) => {
                        let options = crate::grpc::web::WebOptions {
                            protocol,
                            http_version,
                            cors_origin: None,
                            connect_timeout: t.timeout,
                        };
                        Module::web(probe, &t, written, &options).map_err(|e| e.to_string())
                    }
                };
                match module {
                    Err(why) => {
                        say(format!("probe failed: {why}"));
                        outcome.setup_failure = Some(why);
                    }
                    Ok(module) => {
                        say(format!("calling {}", spec.name));
                        let v = once::once(&t, &module).await;
                        if let Some(call) = &v.call {
                            say(format!(
                                "status {}{}",
                                crate::grpc::status::code_name(call.code),
                                if call.status_message.is_empty() {
                                    String::new()
                                } else {
                                    format!(": {}", call.status_message)
                                }
                            ));
                            for (check, why) in &call.checks {
                                match why {
                                    None => say(format!("check `{check}`: passed")),
                                    Some(why) => say(format!("check `{check}`: FAILED: {why}")),
                                }
                            }
                        }
                        if let Some((kind, why)) = &v.failure {
                            say(format!("method failed ({}): {why}", kind_name(*kind)));
                        }
                        outcome.method = Some(v);
                    }
                }
            }
        }
    } else if keys.method.is_some() {
        say("the method is not called: the health check failed".into());
    }
    outcome.took = started.elapsed();
    let verdict = if outcome.success() {
        "succeeded"
    } else {
        "failed"
    };
    say(format!(
        "probe {verdict} in {:.3}s",
        outcome.took.as_secs_f64()
    ));
    outcome.log = log;
    outcome
}

/// What is left of the probe's budget (at least a millisecond: a step with none fails fast,
/// naming its deadline).
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

fn kind_name(kind: Failure) -> &'static str {
    match kind {
        Failure::Connect => "connection failed",
        Failure::Rpc => "rpc failed",
        Failure::NotServing => "not serving",
        Failure::Check => "check failed",
    }
}

/// The module as `debug=true` shows it.
fn describe(name: &str, keys: &ProbeKeys) -> String {
    let mut out = format!(
        "[modules.{name}]\nservice = {:?}\ntimeout = \"{}ms\"\nmode = \"{}\"\ntls = {}\n",
        keys.service,
        keys.timeout.as_millis(),
        if keys.mode == ProbeMode::Watch {
            "watch"
        } else {
            "check"
        },
        keys.tls.is_some()
    );
    if !keys.metadata.is_empty() {
        let names: Vec<&str> = keys.metadata.iter().map(|(k, _)| k.as_str()).collect();
        // Values may be credentials: names only.
        out.push_str(&format!("metadata keys = {names:?}\n"));
    }
    if let Some(m) = &keys.method {
        out.push_str(&format!(
            "method = \"{}\"\nhealth = {}\nexpect = {:?}\n",
            m.name,
            m.health,
            m.checks.iter().map(|c| c.text.as_str()).collect::<Vec<_>>()
        ));
    }
    if let Some((protocol, version)) = keys.web {
        out.push_str(&format!(
            "protocol = {protocol:?}\nhttp_version = {version:?}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scrape_timeout_shortens_the_module_timeout() {
        let mut h = HeaderMap::new();
        let module = Duration::from_secs(5);
        assert_eq!(probe_timeout(&h, module), module);
        h.insert("x-prometheus-scrape-timeout-seconds", "2".parse().unwrap());
        assert_eq!(probe_timeout(&h, module), Duration::from_millis(1500));
        h.insert("x-prometheus-scrape-timeout-seconds", "10".parse().unwrap());
        assert_eq!(probe_timeout(&h, module), module, "capped by the module's");
        h.insert(
            "x-prometheus-scrape-timeout-seconds",
            "0.3".parse().unwrap(),
        );
        assert_eq!(probe_timeout(&h, module), Duration::from_millis(300));
        for bad in ["-1", "NaN", "inf", "x", "0"] {
            h.insert("x-prometheus-scrape-timeout-seconds", bad.parse().unwrap());
            assert_eq!(probe_timeout(&h, module), module, "{bad}");
        }
    }

    #[test]
    fn tls_versions_in_blackbox_words() {
        assert_eq!(blackbox_tls_version("TLSv1_3"), "TLS 1.3");
        assert_eq!(blackbox_tls_version("TLSv1.2"), "TLS 1.2");
    }
}
