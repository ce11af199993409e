//! Every metric the agent exports, defined once: name, help, kind and labels. The registry
//! (`metrics`), the probe families (`probe_series`), the dashboards and the alert rules
//! (`observe`) are all made from these.

/// What kind of metric a definition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A gauge.
    Gauge,
    /// A counter.
    Counter,
    /// A histogram.
    Histogram,
}

/// One metric: its name, help text and labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Definition {
    /// The metric's name.
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// Its labels.
    pub labels: &'static [&'static str],
}

macro_rules! def {
    ($id:ident, $name:literal, $kind:ident, [$($l:literal),*], $help:literal) => {
        #[doc = $help]
        pub const $id: Definition = Definition { name: $name, help: $help, kind: Kind::$kind, labels: &[$($l),*] };
    };
}

def!(
    PROBE_SUCCESS,
    "loadagent_probe_success",
    Gauge,
    ["target", "backend"],
    "1 when the target's last probe passed (health: SERVING; a method probe: every check too), else 0."
);
def!(
    PROBE_DURATION,
    "loadagent_probe_duration_seconds",
    Gauge,
    ["target", "backend", "phase"],
    "Duration of each phase of the last probe (resolve, connect, check)."
);
def!(
    PROBE_HEALTH_STATUS,
    "loadagent_probe_healthcheck_status",
    Gauge,
    ["target", "backend", "serving_status"],
    "1 for the target's current grpc.health.v1 status, 0 for the others."
);
def!(
    PROBE_GRPC_STATUS,
    "loadagent_probe_grpc_status_code",
    Gauge,
    ["target", "backend"],
    "gRPC status code of the last health RPC (0 = OK; 14 when the target is unreachable); of the method call for a method probe with health = false."
);
def!(
    PROBE_CERT_EXPIRY,
    "loadagent_probe_ssl_earliest_cert_expiry",
    Gauge,
    ["target", "backend"],
    "Expiry of the target's TLS certificate, Unix seconds."
);
def!(
    PROBE_TLS_VERSION,
    "loadagent_probe_tls_version_info",
    Gauge,
    ["target", "backend", "version"],
    "1 for the TLS version negotiated with the target."
);
def!(
    PROBE_LATENCY,
    "loadagent_probe_latency_seconds",
    Histogram,
    ["target", "backend"],
    "Latency of probes (Check round trip, time to the first Watch status, or a method probe's call)."
);
def!(
    PROBES_TOTAL,
    "loadagent_probes_total",
    Counter,
    ["target", "backend", "result"],
    "Probes made, by result (success, failure)."
);
def!(
    PROBE_CHECK_FAILED,
    "loadagent_probe_check_failed",
    Gauge,
    ["target", "backend", "check"],
    "1 when this `expect` check of a method probe failed in its last call, else 0 (check = the check as written; `status == OK` when none is on status)."
);
def!(
    PROBE_BACKENDS,
    "loadagent_probe_backends",
    Gauge,
    ["target"],
    "Backends a target's name resolves to now (1 for a host:port target): each is probed, labelled backend=\"IP:PORT\"."
);
def!(
    PROBE_RESOLUTIONS,
    "loadagent_probe_resolutions_total",
    Counter,
    ["target", "result"],
    "Resolutions of a target's DNS name, by result (success; failure: the last known backends are still probed)."
);
def!(
    PROBE_ENDPOINT_PROBES,
    "loadagent_probe_endpoint_probes_total",
    Counter,
    ["module", "result"],
    "Probes made for /probe requests (Prometheus' own discovery), by module and result (success, failure)."
);
def!(
    PROBE_ENDPOINT_REFUSED,
    "loadagent_probe_endpoint_refused_total",
    Counter,
    ["reason"],
    "/probe requests answered without a probe, by reason: unknown_module and bad_target (400), not_allowed (403: outside [probe] allowed_targets), busy (503: [probe] max_concurrent probes in flight)."
);
def!(
    BUILD_INFO,
    "loadagent_build_info",
    Gauge,
    ["version", "arch", "rustc"],
    "Always 1: the agent's version, architecture and compiler."
);
def!(
    NODE_INFO,
    "loadagent_node_info",
    Gauge,
    [
        "node",
        "arch",
        "cpu_model",
        "cpu_vendor",
        "logical_cpus",
        "physical_cores",
        "cpu_mhz",
        "usable_cpus",
        "memory_bytes",
        "cgroup_cpu_limit",
        "cgroup_memory_limit_bytes",
        "kernel",
        "rust_target"
    ],
    "Always 1: the node the agent runs on and its fingerprint (empty where unknown or unlimited)."
);
def!(
    ERRORS_TOTAL,
    "loadagent_errors_total",
    Counter,
    ["component", "kind"],
    "Internal failures, by component and kind; they never stop the agent."
);
def!(
    HOST_CPU_USAGE,
    "loadagent_host_cpu_usage_ratio",
    Gauge,
    [],
    "Host CPU busy ratio (0 to 1) since the previous scrape."
);
def!(
    HOST_MEMORY_TOTAL,
    "loadagent_host_memory_total_bytes",
    Gauge,
    [],
    "Host memory."
);
def!(
    HOST_MEMORY_AVAILABLE,
    "loadagent_host_memory_available_bytes",
    Gauge,
    [],
    "Host memory available to new work."
);
def!(
    HOST_LOAD,
    "loadagent_host_load_average",
    Gauge,
    ["window"],
    "Host load average over 1m, 5m and 15m."
);
def!(
    HOST_NET_RX,
    "loadagent_host_network_receive_bytes_total",
    Counter,
    ["interface"],
    "Bytes received, per network interface."
);
def!(
    HOST_NET_TX,
    "loadagent_host_network_transmit_bytes_total",
    Counter,
    ["interface"],
    "Bytes sent, per network interface."
);
def!(
    PROCESS_CPU,
    "loadagent_process_cpu_seconds_total",
    Counter,
    ["process"],
    "CPU time used, per watched process (the agent itself is `loadagent`)."
);
def!(
    PROCESS_RSS,
    "loadagent_process_resident_memory_bytes",
    Gauge,
    ["process"],
    "Resident memory, per watched process."
);
def!(
    PROCESS_THREADS,
    "loadagent_process_threads",
    Gauge,
    ["process"],
    "Threads, per watched process."
);
def!(
    PERF_EVENTS,
    "loadagent_perf_events_total",
    Counter,
    ["process", "event"],
    "perf events counted per watched process (task_clock in nanoseconds)."
);
def!(
    PERF_SUPPORTED,
    "loadagent_perf_event_supported",
    Gauge,
    ["event"],
    "1 when the kernel or VM allows the perf event, 0 when it refuses it (hardware counters on many VMs)."
);
def!(
    RUN_REQUESTS,
    "loadagent_run_requests_total",
    Counter,
    ["scenario", "status"],
    "Requests (or streams, or handshakes) of scheduled runs, by gRPC status."
);
def!(
    RUN_LATENCY,
    "loadagent_run_latency_seconds",
    Histogram,
    ["scenario", "latency"],
    "Latency of scheduled runs' requests (latency = corrected or uncorrected), from their HDR histograms."
);
def!(
    RUN_RPS,
    "loadagent_run_rps",
    Gauge,
    ["scenario"],
    "Achieved requests per second of the last scheduled run."
);
def!(
    RUN_LAST,
    "loadagent_run_last_timestamp_seconds",
    Gauge,
    ["scenario"],
    "When the last scheduled run ended, Unix seconds."
);
def!(
    RUN_SUCCESS,
    "loadagent_run_success",
    Gauge,
    ["scenario"],
    "1 when the last scheduled run completed and met its thresholds, else 0."
);
def!(
    RUNS_TOTAL,
    "loadagent_runs_total",
    Counter,
    ["scenario", "outcome"],
    "Scheduled runs, by outcome (ok, thresholds_failed, failed)."
);
def!(
    PROBE_LATENESS,
    "loadagent_probe_lateness_seconds",
    Histogram,
    [],
    "How late Check probes start after their scheduled time (all targets together)."
);
def!(
    PROBE_LATENESS_PERCENTILE,
    "loadagent_probe_lateness_percentile_seconds",
    Gauge,
    ["percentile"],
    "How late probes started: exact percentiles (50, 90, 99, 99.9) over the last one to two minutes, from an HDR histogram (the lateness histogram's buckets only bound them)."
);
def!(
    RUN_HANDSHAKE_ERRORS,
    "loadagent_run_handshake_errors_total",
    Counter,
    ["scenario", "class"],
    "Failed TLS handshakes of scheduled handshake storms, by failure class."
);
def!(
    RUN_HANDSHAKES,
    "loadagent_run_handshakes_total",
    Counter,
    ["scenario"],
    "Completed TLS handshakes of scheduled handshake storms."
);
def!(
    RUN_ASKED_RPS,
    "loadagent_run_asked_rps",
    Gauge,
    ["scenario"],
    "Requests per second the last scheduled run asked for (open model)."
);
def!(
    RUN_CPU_PER_1K,
    "loadagent_run_cpu_seconds_per_1k_requests",
    Gauge,
    ["scenario"],
    "The generator's CPU seconds per 1,000 requests in the last scheduled run."
);
def!(
    RUN_TARGET_CPU_PER_1K,
    "loadagent_run_target_cpu_seconds_per_1k_requests",
    Gauge,
    ["scenario"],
    "The target's CPU seconds per 1,000 requests in the last scheduled run ([target] process or metrics_url)."
);
def!(
    RUN_TARGET_RSS,
    "loadagent_run_target_peak_resident_memory_bytes",
    Gauge,
    ["scenario"],
    "The target's peak resident memory during the last scheduled run ([target] process or metrics_url)."
);
def!(
    RUN_PHASE,
    "loadagent_run_phase_seconds",
    Gauge,
    ["scenario", "phase", "quantile"],
    "Handshake-storm phase latencies of the last scheduled run (dns, tcp_connect, tls_handshake, first_response, total) at quantiles 0.5 and 0.99."
);
def!(
    RUN_RESUMED_RATIO,
    "loadagent_run_tls_resumed_ratio",
    Gauge,
    ["scenario"],
    "Share of resumed TLS handshakes in the last scheduled storm."
);
def!(
    RUN_CAPACITY_RPS,
    "loadagent_run_capacity_rps",
    Gauge,
    ["scenario"],
    "The highest rate within its SLO the last scheduled capacity search ([capacity]) found, per second; absent when it found none (see loadagent_run_capacity_limited_by)."
);
def!(
    RUN_CAPACITY_PER_SERVER_CORE,
    "loadagent_run_capacity_rps_per_server_core",
    Gauge,
    ["scenario"],
    "The last capacity found per core the server used at that rate ([target] process or metrics_url watched)."
);
def!(
    RUN_CAPACITY_PER_USABLE_CORE,
    "loadagent_run_capacity_rps_per_usable_core",
    Gauge,
    ["scenario"],
    "The last capacity found per core the server may use (its affinity capped by its cgroup quota; [target] process watched on this node)."
);
def!(
    RUN_CAPACITY_LIMITED_BY,
    "loadagent_run_capacity_limited_by",
    Gauge,
    ["scenario", "limited_by"],
    "1 for what ended the last capacity search (slo, target_saturated, generator, target_failed, max_rate, max_duration, interrupted), 0 for the others."
);
def!(
    NODE_CPUS,
    "loadagent_node_cpus",
    Gauge,
    [],
    "CPUs the agent may use: the CPUs it may run on, capped by its cgroup quota (for per-core figures)."
);
def!(
    PROCESS_FDS,
    "loadagent_process_open_fds",
    Gauge,
    ["process"],
    "Open file descriptors, per watched process."
);

/// Every metric the agent exports.
pub const DEFINITIONS: &[Definition] = &[
    PROBE_SUCCESS,
    PROBE_DURATION,
    PROBE_HEALTH_STATUS,
    PROBE_GRPC_STATUS,
    PROBE_CERT_EXPIRY,
    PROBE_TLS_VERSION,
    PROBE_LATENCY,
    PROBES_TOTAL,
    PROBE_CHECK_FAILED,
    PROBE_BACKENDS,
    PROBE_RESOLUTIONS,
    PROBE_ENDPOINT_PROBES,
    PROBE_ENDPOINT_REFUSED,
    BUILD_INFO,
    NODE_INFO,
    ERRORS_TOTAL,
    HOST_CPU_USAGE,
    HOST_MEMORY_TOTAL,
    HOST_MEMORY_AVAILABLE,
    HOST_LOAD,
    HOST_NET_RX,
    HOST_NET_TX,
    PROCESS_CPU,
    PROCESS_RSS,
    PROCESS_THREADS,
    PROCESS_FDS,
    PERF_EVENTS,
    PERF_SUPPORTED,
    RUN_REQUESTS,
    RUN_LATENCY,
    RUN_RPS,
    RUN_LAST,
    RUN_SUCCESS,
    RUNS_TOTAL,
    PROBE_LATENESS,
    PROBE_LATENESS_PERCENTILE,
    RUN_HANDSHAKE_ERRORS,
    RUN_HANDSHAKES,
    RUN_ASKED_RPS,
    RUN_CPU_PER_1K,
    RUN_TARGET_CPU_PER_1K,
    RUN_TARGET_RSS,
    RUN_PHASE,
    RUN_RESUMED_RATIO,
    RUN_CAPACITY_RPS,
    RUN_CAPACITY_PER_SERVER_CORE,
    RUN_CAPACITY_PER_USABLE_CORE,
    RUN_CAPACITY_LIMITED_BY,
    NODE_CPUS,
];

/// `phase` values of `loadagent_probe_duration_seconds`.
pub const PROBE_PHASES: [&str; 5] = ["resolve", "connect", "tls", "check", "method"];
/// `serving_status` values of `loadagent_probe_healthcheck_status`.
pub const SERVING_STATUSES: [&str; 4] = ["SERVING", "NOT_SERVING", "UNKNOWN", "SERVICE_UNKNOWN"];
/// `reason` values of `loadagent_probe_endpoint_refused_total`.
pub const ENDPOINT_REFUSALS: [&str; 4] = ["unknown_module", "bad_target", "not_allowed", "busy"];
/// `version` values of `loadagent_probe_tls_version_info`.
pub const TLS_VERSIONS: [&str; 2] = ["TLSv1_2", "TLSv1_3"];

/// Latency buckets (seconds) of the probe latency histogram.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
