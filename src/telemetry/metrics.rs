//! The agent's metrics: the registry that serves them, and the per-target probe families
//! beside it (`probe_series`). Every metric is defined in `definitions` (re-exported here).

use prometheus::{Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

pub use super::definitions::*;

use super::probe_series::ProbeSeries;

/// The registries and every metric in them.
#[derive(Debug)]
pub struct Metrics {
    /// The registry every metric but the per-target probe families is in.
    pub registry: Registry,
    /// The per-target probe families (`loadagent_probe_*` labelled by `target`): plain
    /// numbers per backend, written to the exposition straight from them (`probe_series`).
    pub probes: ProbeSeries,
    /// Exact probe lateness over the last minute or two (the histogram's buckets only bound it).
    lateness: std::sync::Mutex<LatenessWindow>,
    /// `loadagent_probe_lateness_percentile_seconds`.
    pub probe_lateness_percentile: GaugeVec,
    /// `loadagent_probe_endpoint_probes_total`.
    pub probe_endpoint_probes: IntCounterVec,
    /// `loadagent_probe_endpoint_refused_total`.
    pub probe_endpoint_refused: IntCounterVec,
    /// `loadagent_build_info`.
    pub build_info: GaugeVec,
    /// `loadagent_node_info`.
    pub node_info: GaugeVec,
    /// `loadagent_errors_total`.
    pub errors_total: IntCounterVec,
    /// `loadagent_host_cpu_usage_ratio`.
    pub host_cpu_usage: Gauge,
    /// `loadagent_host_memory_total_bytes`.
    pub host_memory_total: Gauge,
    /// `loadagent_host_memory_available_bytes`.
    pub host_memory_available: Gauge,
    /// `loadagent_host_load_average`.
    pub host_load: GaugeVec,
    /// `loadagent_host_network_receive_bytes_total`.
    pub host_net_rx: IntCounterVec,
    /// `loadagent_host_network_transmit_bytes_total`.
    pub host_net_tx: IntCounterVec,
    /// `loadagent_process_cpu_seconds_total`.
    pub process_cpu: prometheus::CounterVec,
    /// `loadagent_process_resident_memory_bytes`.
    pub process_rss: GaugeVec,
    /// `loadagent_process_threads`.
    pub process_threads: GaugeVec,
    /// `loadagent_process_open_fds`.
    pub process_fds: GaugeVec,
    /// `loadagent_perf_events_total`.
    pub perf_events: IntCounterVec,
    /// `loadagent_perf_event_supported`.
    pub perf_supported: GaugeVec,
    /// `loadagent_run_requests_total`.
    pub run_requests: IntCounterVec,
    /// `loadagent_run_latency_seconds`.
    pub run_latency: HistogramVec,
    /// `loadagent_run_rps`.
    pub run_rps: GaugeVec,
    /// `loadagent_run_last_timestamp_seconds`.
    pub run_last: GaugeVec,
    /// `loadagent_run_success`.
    pub run_success: GaugeVec,
    /// `loadagent_runs_total`.
    pub runs_total: IntCounterVec,
    /// `loadagent_probe_lateness_seconds`.
    pub probe_lateness: prometheus::Histogram,
    /// `loadagent_run_handshake_errors_total`.
    pub run_handshake_errors: IntCounterVec,
    /// `loadagent_run_handshakes_total`.
    pub run_handshakes: IntCounterVec,
    /// `loadagent_run_asked_rps`.
    pub run_asked_rps: GaugeVec,
    /// `loadagent_run_cpu_seconds_per_1k_requests`.
    pub run_cpu_per_1k: GaugeVec,
    /// `loadagent_run_target_cpu_seconds_per_1k_requests`.
    pub run_target_cpu_per_1k: GaugeVec,
    /// `loadagent_run_target_peak_resident_memory_bytes`.
    pub run_target_rss: GaugeVec,
    /// `loadagent_run_phase_seconds`.
    pub run_phase: GaugeVec,
    /// `loadagent_run_tls_resumed_ratio`.
    pub run_resumed_ratio: GaugeVec,
    /// `loadagent_run_capacity_rps`.
    pub run_capacity_rps: GaugeVec,
    /// `loadagent_run_capacity_rps_per_server_core`.
    pub run_capacity_per_server_core: GaugeVec,
    /// `loadagent_run_capacity_rps_per_usable_core`.
    pub run_capacity_per_usable_core: GaugeVec,
    /// `loadagent_run_capacity_limited_by`.
    pub run_capacity_limited_by: GaugeVec,
    /// `loadagent_node_cpus`.
    pub node_cpus: Gauge,
}

fn opts(d: &Definition) -> Opts {
    Opts::new(d.name, d.help)
}

/// Probe lateness in an HDR histogram, rotated each minute: quantiles over the last one to
/// two minutes, exact to 0.1%.
#[derive(Debug)]
struct LatenessWindow {
    current: hdrhistogram::Histogram<u64>,
    previous: hdrhistogram::Histogram<u64>,
    rotated: std::time::Instant,
}

const LATENESS_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// `percentile` values of `loadagent_probe_lateness_percentile_seconds`, and their quantiles.
/// (Not a `quantile` label: that one belongs to summaries, and promtool refuses it on gauges.)
pub const LATENESS_PERCENTILES: [(&str, f64); 4] =
    [("50", 0.5), ("90", 0.9), ("99", 0.99), ("99.9", 0.999)];

impl LatenessWindow {
    fn new() -> Self {
        Self {
            current: crate::record::histogram::new_histogram(),
            previous: crate::record::histogram::new_histogram(),
            rotated: std::time::Instant::now(),
        }
    }

    fn rotate_if_due(&mut self) {
        if self.rotated.elapsed() >= LATENESS_WINDOW {
            self.previous =
                std::mem::replace(&mut self.current, crate::record::histogram::new_histogram());
            self.rotated = std::time::Instant::now();
        }
    }

    fn record(&mut self, late: std::time::Duration) {
        self.rotate_if_due();
        crate::record::histogram::record(
            &mut self.current,
            u64::try_from(late.as_micros()).unwrap_or(u64::MAX),
        );
    }

    /// (percentile label, seconds) over both windows; none when nothing was recorded.
    fn quantiles(&mut self) -> Vec<(&'static str, f64)> {
        self.rotate_if_due();
        let mut both = self.previous.clone();
        let _ = both.add(&self.current);
        if both.is_empty() {
            return Vec::new();
        }
        LATENESS_PERCENTILES
            .iter()
            .map(|&(label, q)| (label, both.value_at_quantile(q) as f64 / 1e6))
            .collect()
    }
}

/// The probe latency histogram's buckets: `LATENCY_BUCKETS` and every SLO latency threshold
/// (seconds), so the share of probes faster than a threshold is read from a bucket exactly.
pub fn probe_latency_buckets(thresholds: &[f64]) -> Vec<f64> {
    let mut all: Vec<f64> = LATENCY_BUCKETS
        .iter()
        .copied()
        .chain(
            thresholds
                .iter()
                .copied()
                .filter(|t| t.is_finite() && *t > 0.0),
        )
        .collect();
    all.sort_by(f64::total_cmp);
    all.dedup();
    all
}

impl Metrics {
    /// Every metric, registered.
    pub fn new() -> Result<Self, prometheus::Error> {
        Self::with_probe_buckets(&probe_latency_buckets(&[]))
    }

    /// Every metric, the probe latency histogram with these buckets (`probe_latency_buckets`).
    pub fn with_probe_buckets(probe_buckets: &[f64]) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let gauge_vec = |d: &Definition| -> Result<GaugeVec, prometheus::Error> {
            let m = GaugeVec::new(opts(d), d.labels)?;
            registry.register(Box::new(m.clone()))?;
            Ok(m)
        };
        let gauge = |d: &Definition| -> Result<Gauge, prometheus::Error> {
            let m = Gauge::with_opts(opts(d))?;
            registry.register(Box::new(m.clone()))?;
            Ok(m)
        };
        let int_counter_vec = |d: &Definition| -> Result<IntCounterVec, prometheus::Error> {
            let m = IntCounterVec::new(opts(d), d.labels)?;
            registry.register(Box::new(m.clone()))?;
            Ok(m)
        };
        let run_latency = HistogramVec::new(
            HistogramOpts::new(RUN_LATENCY.name, RUN_LATENCY.help)
                .buckets(LATENCY_BUCKETS.to_vec()),
            RUN_LATENCY.labels,
        )?;
        registry.register(Box::new(run_latency.clone()))?;
        let probe_lateness = prometheus::Histogram::with_opts(
            HistogramOpts::new(PROBE_LATENESS.name, PROBE_LATENESS.help).buckets(vec![
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
            ]),
        )?;
        registry.register(Box::new(probe_lateness.clone()))?;
        let process_cpu = prometheus::CounterVec::new(opts(&PROCESS_CPU), PROCESS_CPU.labels)?;
        registry.register(Box::new(process_cpu.clone()))?;
        Ok(Self {
            probes: ProbeSeries::new(probe_buckets),
            probe_endpoint_probes: int_counter_vec(&PROBE_ENDPOINT_PROBES)?,
            probe_endpoint_refused: {
                let refused = int_counter_vec(&PROBE_ENDPOINT_REFUSED)?;
                // Every reason shown from the start, so `rate()` over a first refusal works.
                for reason in ENDPOINT_REFUSALS {
                    refused.with_label_values(&[reason]);
                }
                refused
            },
            build_info: gauge_vec(&BUILD_INFO)?,
            node_info: gauge_vec(&NODE_INFO)?,
            errors_total: int_counter_vec(&ERRORS_TOTAL)?,
            host_cpu_usage: gauge(&HOST_CPU_USAGE)?,
            host_memory_total: gauge(&HOST_MEMORY_TOTAL)?,
            host_memory_available: gauge(&HOST_MEMORY_AVAILABLE)?,
            host_load: gauge_vec(&HOST_LOAD)?,
            host_net_rx: int_counter_vec(&HOST_NET_RX)?,
            host_net_tx: int_counter_vec(&HOST_NET_TX)?,
            process_cpu,
            process_rss: gauge_vec(&PROCESS_RSS)?,
            process_threads: gauge_vec(&PROCESS_THREADS)?,
            process_fds: gauge_vec(&PROCESS_FDS)?,
            perf_events: int_counter_vec(&PERF_EVENTS)?,
            perf_supported: gauge_vec(&PERF_SUPPORTED)?,
            run_requests: int_counter_vec(&RUN_REQUESTS)?,
            run_latency,
            run_rps: gauge_vec(&RUN_RPS)?,
            run_last: gauge_vec(&RUN_LAST)?,
            run_success: gauge_vec(&RUN_SUCCESS)?,
            runs_total: int_counter_vec(&RUNS_TOTAL)?,
            probe_lateness,
            run_handshake_errors: int_counter_vec(&RUN_HANDSHAKE_ERRORS)?,
            run_handshakes: int_counter_vec(&RUN_HANDSHAKES)?,
            run_asked_rps: gauge_vec(&RUN_ASKED_RPS)?,
            run_cpu_per_1k: gauge_vec(&RUN_CPU_PER_1K)?,
            run_target_cpu_per_1k: gauge_vec(&RUN_TARGET_CPU_PER_1K)?,
            run_target_rss: gauge_vec(&RUN_TARGET_RSS)?,
            run_phase: gauge_vec(&RUN_PHASE)?,
            run_resumed_ratio: gauge_vec(&RUN_RESUMED_RATIO)?,
            run_capacity_rps: gauge_vec(&RUN_CAPACITY_RPS)?,
            run_capacity_per_server_core: gauge_vec(&RUN_CAPACITY_PER_SERVER_CORE)?,
            run_capacity_per_usable_core: gauge_vec(&RUN_CAPACITY_PER_USABLE_CORE)?,
            run_capacity_limited_by: gauge_vec(&RUN_CAPACITY_LIMITED_BY)?,
            node_cpus: gauge(&NODE_CPUS)?,
            probe_lateness_percentile: gauge_vec(&PROBE_LATENESS_PERCENTILE)?,
            registry,
            lateness: std::sync::Mutex::new(LatenessWindow::new()),
        })
    }

    /// Records how late a probe started, in the histogram and the exact window.
    pub fn observe_lateness(&self, late: std::time::Duration) {
        self.probe_lateness.observe(late.as_secs_f64());
        if let Ok(mut w) = self.lateness.lock() {
            w.record(late);
        }
    }

    /// Sets the lateness percentile gauges from the exact window.
    fn update_lateness_percentiles(&self) {
        let quantiles = self
            .lateness
            .lock()
            .map(|mut w| w.quantiles())
            .unwrap_or_default();
        for (label, seconds) in quantiles {
            self.probe_lateness_percentile
                .with_label_values(&[label])
                .set(seconds);
        }
    }

    /// The text exposition of every metric, whole (tests; `/metrics` streams `exposition`).
    pub fn render(&self) -> String {
        Self::exposition(self, false).collect()
    }

    /// The OpenMetrics exposition, whole (for scrapers that ask for it; Prometheus does).
    pub fn render_openmetrics(&self) -> String {
        Self::exposition(self, true).collect()
    }

    /// The exposition in chunks of about `EXPOSITION_CHUNK` bytes, each written when it is
    /// asked for: the per-target probe families (from the numbers, a lock held per chunk),
    /// then the rest of the registry, then OpenMetrics' `# EOF`. A scrape of 1,000 targets
    /// holds a chunk, not the 2.5 MB text.
    pub fn exposition<M: std::ops::Deref<Target = Metrics>>(
        metrics: M,
        openmetrics: bool,
    ) -> impl Iterator<Item = String> {
        metrics.update_lateness_percentiles();
        let mut cursor = crate::telemetry::probe_series::Cursor::default();
        let mut rest_written = false;
        std::iter::from_fn(move || {
            while !cursor.done() {
                let mut chunk = String::with_capacity(EXPOSITION_CHUNK + EXPOSITION_CHUNK / 4);
                metrics
                    .probes
                    .write_chunk(&mut cursor, openmetrics, &mut chunk, EXPOSITION_CHUNK);
                if !chunk.is_empty() {
                    return Some(chunk);
                }
            }
            if std::mem::replace(&mut rest_written, true) {
                return None;
            }
            let rest = encode(&metrics.registry);
            Some(match openmetrics {
                true => to_openmetrics(&rest),
                false => rest,
            })
        })
    }

    /// Drops every per-target series (on a config reload).
    pub fn reset_probe_series(&self) {
        self.probes.clear();
    }
}

/// About how many bytes of the exposition are written at a time (`Metrics::exposition`).
const EXPOSITION_CHUNK: usize = 64 * 1024;

/// Converts the Prometheus text format to OpenMetrics 1.0: a counter family is named without
/// its `_total` suffix (its samples keep it), and the exposition ends with `# EOF`.
pub fn to_openmetrics(text: &str) -> String {
    let mut out = openmetrics_body(text);
    out.push_str("# EOF\n");
    out
}

/// The text format of one registry, rendered.
fn encode(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    if prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .is_err()
    {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// `to_openmetrics` without the closing `# EOF` (parts are joined, then closed once).
fn openmetrics_body(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        if !line.starts_with('#') {
            // A sample: the same in both formats.
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            let counter = DEFINITIONS
                .iter()
                .any(|d| d.kind == Kind::Counter && d.name == name);
            let base = if counter {
                name.strip_suffix("_total").unwrap_or(name)
            } else {
                name
            };
            Some(format!("{prefix}{base} {tail}"))
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_percentiles_are_exact_and_the_window_moves() {
        let mut w = LatenessWindow::new();
        assert!(w.quantiles().is_empty());
        for ms in 1..=1000u64 {
            w.record(std::time::Duration::from_millis(ms));
        }
        let q: std::collections::HashMap<_, _> = w.quantiles().into_iter().collect();
        // HDR at 3 significant figures: within 0.1%.
        assert!((q["50"] - 0.500).abs() <= 0.0006, "{q:?}");
        assert!((q["99"] - 0.990).abs() <= 0.001, "{q:?}");
        // Two rotations later, the old values are gone.
        w.rotated -= LATENESS_WINDOW;
        w.record(std::time::Duration::from_millis(2));
        w.rotated -= LATENESS_WINDOW;
        w.record(std::time::Duration::from_millis(2));
        let q: std::collections::HashMap<_, _> = w.quantiles().into_iter().collect();
        assert!((q["99"] - 0.002).abs() < 0.0001, "{q:?}");
    }

    #[test]
    fn probe_families_come_first_then_the_rest_and_a_change_shows_at_once() {
        let m = Metrics::new().unwrap();
        m.probes.backend("t", "10.0.0.1:1", |s| s.set_success(true));
        m.build_info.with_label_values(&["v", "a", "r"]).set(1.0);
        let text = m.render();
        let probe = text
            .find("loadagent_probe_success{backend=\"10.0.0.1:1\",target=\"t\"} 1\n")
            .expect("the probe series");
        assert!(probe < text.find("loadagent_build_info{").expect("the rest"));
        // Nothing is cached: the next scrape shows a change.
        m.probes.backend("t", "10.0.0.1:1", |s| {
            s.set_success(false);
            s.count_result(true);
        });
        assert!(m.render().contains("target=\"t\"} 0\n"));
        let om = m.render_openmetrics();
        assert!(om.ends_with("# EOF\n") && om.matches("# EOF").count() == 1);
        assert!(om.contains("# TYPE loadagent_probes counter"), "{om}");
        assert!(om.contains("loadagent_probes_total{"), "{om}");
        // In chunks, the same text.
        let chunks: Vec<String> = Metrics::exposition(&m, false).collect();
        assert!(chunks.iter().all(|c| !c.is_empty()));
        assert_eq!(chunks.concat(), m.render());
    }

    #[test]
    fn every_definition_is_registered_once_with_its_name() {
        let m = Metrics::new().unwrap();
        m.build_info.with_label_values(&["v", "a", "r"]).set(1.0);
        let mut names: Vec<&str> = DEFINITIONS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DEFINITIONS.len(), "no duplicate names");
        for d in DEFINITIONS {
            assert!(d.name.starts_with("loadagent_"), "{}", d.name);
            if d.kind == Kind::Counter {
                assert!(d.name.ends_with("_total"), "{}", d.name);
            }
        }
        assert!(m
            .render()
            .contains("loadagent_build_info{arch=\"a\",rustc=\"r\",version=\"v\"} 1"));
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let m = Metrics::new().unwrap();
        m.errors_total.with_label_values(&["probe", "failed"]).inc();
        let text = m.render_openmetrics();
        assert!(text.contains("# TYPE loadagent_errors counter\n"), "{text}");
        assert!(text.contains("loadagent_errors_total{component=\"probe\",kind=\"failed\"} 1\n"));
        assert!(text.ends_with("# EOF\n"));
    }
}
