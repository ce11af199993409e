//! The per-target probe families (`loadagent_probe_*`, labelled by `target` first) kept as
//! plain numbers per backend and written to the exposition straight from them.
//!
//! Why not the prometheus crate's vectors: with 1,000 targets they were most of the agent's
//! heap (issue 28, massif): 12 series a target at ~750 bytes each (every child keeps its own
//! copy of its family's `Desc`, help text included), and a scrape went through `gather`'s
//! protobuf copies of all of them — so the text was rendered in the background and kept,
//! two renders alive while one replaced the other. Here a backend's series are one struct of
//! a few hundred bytes, and a scrape writes them in chunks (`write_chunk`) as the response
//! body is sent: no render is kept, none is whole in memory.
//!
//! The text is what the prometheus crate's `TextEncoder` writes for the same series (label
//! names sorted, values as Rust prints an `f64`, a family with no series left out), so
//! nothing that reads it changes; only the order of series within a family does (by target,
//! then backend, here), which the format leaves free.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Bound;
use std::sync::Mutex;
use std::time::Duration;

use super::definitions::{
    Definition, Kind, PROBES_TOTAL, PROBE_BACKENDS, PROBE_CERT_EXPIRY, PROBE_CHECK_FAILED,
    PROBE_DURATION, PROBE_GRPC_STATUS, PROBE_HEALTH_STATUS, PROBE_LATENCY, PROBE_PHASES,
    PROBE_RESOLUTIONS, PROBE_SUCCESS, PROBE_TLS_VERSION, SERVING_STATUSES, TLS_VERSIONS,
};

/// A phase of `loadagent_probe_duration_seconds` (its `phase` label: `PROBE_PHASES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Resolving the address.
    Resolve = 0,
    /// TCP connect (the TLS handshake apart).
    Connect = 1,
    /// The TLS handshake.
    Tls = 2,
    /// The health Check call.
    Check = 3,
    /// A method probe's call.
    Method = 4,
}

/// One backend's series. `None` is a series not made yet (it is not exported), as with a
/// prometheus vector's child before its first use.
#[derive(Debug, Default)]
pub struct BackendSeries {
    success: Option<bool>,
    grpc_status: Option<i32>,
    cert_expiry: Option<f64>,
    phases: [Option<f64>; PROBE_PHASES.len()],
    /// Which of `SERVING_STATUSES` is 1 (`Some(None)`: the four series, all 0).
    serving: Option<Option<u8>>,
    /// Which of `TLS_VERSIONS` is 1 (`Some(None)`: both series, 0).
    tls_version: Option<Option<u8>>,
    latency: Option<Latency>,
    /// `loadagent_probes_total` by result: success, failure.
    results: [Option<u64>; 2],
    /// `loadagent_probe_check_failed` by check, in the order first set.
    checks: Vec<(Box<str>, bool)>,
}

/// A latency histogram: the count in each bucket (not cumulative; the last is `+Inf`).
#[derive(Debug)]
struct Latency {
    counts: Box<[u64]>,
    sum: f64,
}

/// A target's own series (labelled by `target` alone, or with `result`).
#[derive(Debug, Default)]
struct TargetSeries {
    backends_now: Option<f64>,
    /// `loadagent_probe_resolutions_total` by result: success, failure.
    resolutions: [Option<u64>; 2],
    backends: Backends,
}

/// A target's backends' series, sorted by backend. Not a `BTreeMap`: almost every target has
/// one backend, and a map's first node holds eleven (2.4 KB a target, measured by massif).
#[derive(Debug, Default)]
struct Backends(Vec<(Box<str>, BackendSeries)>);

impl Backends {
    fn find(&self, backend: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(b, _)| (**b).cmp(backend))
    }

    fn get_or_insert(&mut self, backend: &str) -> &mut BackendSeries {
        let i = match self.find(backend) {
            Ok(i) => i,
            Err(i) => {
                // Exactly one more while few (the common case: one), doubling beyond.
                if self.0.len() < 4 {
                    self.0.reserve_exact(1);
                }
                self.0.insert(i, (backend.into(), BackendSeries::default()));
                i
            }
        };
        &mut self.0[i].1
    }

    fn remove(&mut self, backend: &str) {
        if let Ok(i) = self.find(backend) {
            self.0.remove(i);
        }
    }

    /// The backends after `after` (all of them for `None`), in order.
    fn after(&self, after: Option<&str>) -> &[(Box<str>, BackendSeries)] {
        let start = after.map_or(0, |a| self.0.partition_point(|(b, _)| **b <= *a));
        &self.0[start..]
    }
}

/// The index of `value` among `labels`, for a one-hot family.
fn one_hot(labels: &[&str], value: Option<&str>) -> Option<u8> {
    let value = value?;
    labels
        .iter()
        .position(|l| *l == value)
        .and_then(|i| u8::try_from(i).ok())
}

impl BackendSeries {
    /// `loadagent_probe_success`.
    pub fn set_success(&mut self, success: bool) {
        self.success = Some(success);
    }

    /// `loadagent_probe_grpc_status_code`.
    pub fn set_grpc_status(&mut self, code: i32) {
        self.grpc_status = Some(code);
    }

    /// `loadagent_probe_ssl_earliest_cert_expiry` (Unix seconds).
    pub fn set_cert_expiry(&mut self, unix_seconds: f64) {
        self.cert_expiry = Some(unix_seconds);
    }

    /// `loadagent_probe_duration_seconds{phase}`.
    pub fn set_phase(&mut self, phase: Phase, took: Duration) {
        self.phases[phase as usize] = Some(took.as_secs_f64());
    }

    /// `loadagent_probe_healthcheck_status`: 1 for `status`, 0 for the others (all 0 for
    /// none, or for a status that is not one of `SERVING_STATUSES`).
    pub fn set_serving(&mut self, status: Option<&str>) {
        self.serving = Some(one_hot(&SERVING_STATUSES, status));
    }

    /// `loadagent_probe_tls_version_info`: 1 for the version negotiated, 0 for the other.
    pub fn set_tls_version(&mut self, version: &str) {
        self.tls_version = Some(one_hot(&TLS_VERSIONS, Some(version)));
    }

    /// `loadagent_probes_total{result}`: one more.
    pub fn count_result(&mut self, success: bool) {
        let n = &mut self.results[usize::from(!success)];
        *n = Some(n.unwrap_or(0).saturating_add(1));
    }

    /// `loadagent_probe_check_failed{check}`.
    pub fn set_check_failed(&mut self, check: &str, failed: bool) {
        match self.checks.iter_mut().find(|(c, _)| &**c == check) {
            Some((_, f)) => *f = failed,
            None => self.checks.push((check.into(), failed)),
        }
    }
}

/// Where a chunked write of the exposition is: the family, the last (target, backend)
/// written in it, and whether its `# HELP`/`# TYPE` lines are out.
#[derive(Debug, Default)]
pub struct Cursor {
    family: usize,
    after: Option<(String, String)>,
    header_written: bool,
}

impl Cursor {
    /// Whether every family has been written.
    pub fn done(&self) -> bool {
        self.family >= FAMILIES.len()
    }
}

/// One of the per-target probe families: which fields of the series it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Backends,
    CheckFailed,
    Duration,
    GrpcStatus,
    HealthStatus,
    Latency,
    Resolutions,
    CertExpiry,
    Success,
    TlsVersion,
    Totals,
}

/// The families, in name order (as the prometheus crate's registry writes them).
const FAMILIES: [Family; 11] = [
    Family::Backends,
    Family::CheckFailed,
    Family::Duration,
    Family::GrpcStatus,
    Family::HealthStatus,
    Family::Latency,
    Family::Resolutions,
    Family::CertExpiry,
    Family::Success,
    Family::TlsVersion,
    Family::Totals,
];

impl Family {
    /// Its name, help text, kind and labels.
    fn definition(self) -> &'static Definition {
        match self {
            Self::Backends => &PROBE_BACKENDS,
            Self::CheckFailed => &PROBE_CHECK_FAILED,
            Self::Duration => &PROBE_DURATION,
            Self::GrpcStatus => &PROBE_GRPC_STATUS,
            Self::HealthStatus => &PROBE_HEALTH_STATUS,
            Self::Latency => &PROBE_LATENCY,
            Self::Resolutions => &PROBE_RESOLUTIONS,
            Self::CertExpiry => &PROBE_CERT_EXPIRY,
            Self::Success => &PROBE_SUCCESS,
            Self::TlsVersion => &PROBE_TLS_VERSION,
            Self::Totals => &PROBES_TOTAL,
        }
    }

    /// Whether its series are a backend's (else a target's own).
    fn per_backend(self) -> bool {
        !matches!(self, Self::Backends | Self::Resolutions)
    }
}

/// Every per-target probe series, under one lock (a prober holds it for one update; a scrape
/// for one chunk).
#[derive(Debug)]
pub struct ProbeSeries {
    buckets: Box<[f64]>,
    /// The `le` label of each bucket, `+Inf` last (written once, not per scrape).
    le: Box<[Box<str>]>,
    targets: Mutex<BTreeMap<String, TargetSeries>>,
}

impl ProbeSeries {
    /// No series yet; the latency histogram with these upper bounds (sorted, finite).
    pub fn new(buckets: &[f64]) -> Self {
        let le = buckets
            .iter()
            .map(|upper| upper.to_string().into_boxed_str())
            .chain(std::iter::once("+Inf".into()))
            .collect();
        Self {
            buckets: buckets.into(),
            le,
            targets: Mutex::default(),
        }
    }

    /// The latency histogram's upper bounds (fixed for the agent's life).
    pub fn buckets(&self) -> &[f64] {
        &self.buckets
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TargetSeries>> {
        // The map is consistent after any update that panicked (each is a few stores).
        self.targets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with_target<R>(&self, target: &str, f: impl FnOnce(&mut TargetSeries) -> R) -> R {
        let mut targets = self.lock();
        if let Some(t) = targets.get_mut(target) {
            return f(t);
        }
        f(targets.entry(target.to_string()).or_default())
    }

    /// Changes one backend's series (made at the first change).
    pub fn backend<R>(
        &self,
        target: &str,
        backend: &str,
        f: impl FnOnce(&mut BackendSeries) -> R,
    ) -> R {
        self.with_target(target, |t| f(t.backends.get_or_insert(backend)))
    }

    /// `loadagent_probe_latency_seconds`: one observation, in seconds.
    pub fn observe_latency(&self, target: &str, backend: &str, seconds: f64) {
        let bucket = self
            .buckets
            .iter()
            .position(|&upper| seconds <= upper)
            .unwrap_or(self.buckets.len());
        let buckets = self.buckets.len();
        self.backend(target, backend, |b| {
            let latency = b.latency.get_or_insert_with(|| Latency {
                counts: vec![0; buckets + 1].into(),
                sum: 0.0,
            });
            latency.counts[bucket] += 1;
            latency.sum += seconds;
        });
    }

    /// `loadagent_probe_backends`.
    pub fn set_backends(&self, target: &str, backends: usize) {
        self.with_target(target, |t| t.backends_now = Some(backends as f64));
    }

    /// `loadagent_probe_resolutions_total{result}`: one more.
    pub fn count_resolution(&self, target: &str, success: bool) {
        self.with_target(target, |t| {
            let n = &mut t.resolutions[usize::from(!success)];
            *n = Some(n.unwrap_or(0).saturating_add(1));
        });
    }

    /// Forgets one backend's series (it left its target's DNS name).
    pub fn remove_backend(&self, target: &str, backend: &str) {
        if let Some(t) = self.lock().get_mut(target) {
            t.backends.remove(backend);
        }
    }

    /// Forgets every series (a config reload: counters restart, which Prometheus reads as a
    /// reset).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Writes the exposition on from `cursor` until `out` holds `budget` bytes or more (a
    /// backend's series are never split) or every family is written. `openmetrics` names a
    /// counter family without its `_total` in `# HELP` and `# TYPE`, as OpenMetrics does.
    pub fn write_chunk(
        &self,
        cursor: &mut Cursor,
        openmetrics: bool,
        out: &mut String,
        budget: usize,
    ) {
        let targets = self.lock();
        while let Some(&family) = FAMILIES.get(cursor.family) {
            let per_backend = family.per_backend();
            let (from_target, from_backend) = match &cursor.after {
                Some((t, b)) if per_backend => (Bound::Included(t.as_str()), Some(b.as_str())),
                Some((t, _)) => (Bound::Excluded(t.as_str()), None),
                None => (Bound::Unbounded, None),
            };
            let mut last: Option<(&str, &str)> = None;
            let mut full = false;
            'targets: for (name, t) in targets.range::<str, _>((from_target, Bound::Unbounded)) {
                if !per_backend {
                    let mut lines =
                        Lines::new(out, family, openmetrics, &mut cursor.header_written);
                    write_target(&mut lines, family, name, t);
                    last = Some((name, ""));
                    if out.len() >= budget {
                        full = true;
                        break;
                    }
                    continue;
                }
                let start = match from_backend {
                    Some(b) if cursor.after.as_ref().is_some_and(|(ct, _)| ct == name) => Some(b),
                    _ => None,
                };
                for (backend, b) in t.backends.after(start) {
                    let mut lines =
                        Lines::new(out, family, openmetrics, &mut cursor.header_written);
                    lines.write_backend(&self.le, name, backend, b);
                    last = Some((name, backend));
                    if out.len() >= budget {
                        full = true;
                        break 'targets;
                    }
                }
            }
            if full {
                if let Some((t, b)) = last {
                    cursor.after = Some((t.to_string(), b.to_string()));
                }
                return;
            }
            cursor.family += 1;
            cursor.after = None;
            cursor.header_written = false;
        }
    }

    /// The whole exposition of the probe families (tests, and callers that want one string).
    pub fn render(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        let mut cursor = Cursor::default();
        while !cursor.done() {
            self.write_chunk(&mut cursor, openmetrics, &mut out, usize::MAX);
        }
        out
    }
}

/// A target's own series of `family`.
fn write_target(lines: &mut Lines<'_>, family: Family, name: &str, t: &TargetSeries) {
    match family {
        Family::Backends => {
            if let Some(v) = t.backends_now {
                lines.sample("", &[("target", name)], v);
            }
        }
        Family::Resolutions => {
            for (result, n) in RESULTS.iter().zip(t.resolutions) {
                if let Some(n) = n {
                    lines.sample("", &[("result", result), ("target", name)], n as f64);
                }
            }
        }
        _ => {}
    }
}

/// `result` values, in the order the counters are kept.
const RESULTS: [&str; 2] = ["success", "failure"];

/// Writes the samples of one family, its `# HELP` and `# TYPE` lines before the first.
struct Lines<'a> {
    out: &'a mut String,
    family: Family,
    def: &'static Definition,
    openmetrics: bool,
    header_written: &'a mut bool,
}

impl<'a> Lines<'a> {
    fn new(
        out: &'a mut String,
        family: Family,
        openmetrics: bool,
        header_written: &'a mut bool,
    ) -> Self {
        Self {
            out,
            family,
            def: family.definition(),
            openmetrics,
            header_written,
        }
    }

    fn header(&mut self) {
        if std::mem::replace(self.header_written, true) {
            return;
        }
        let name = match (self.openmetrics, self.def.kind) {
            (true, Kind::Counter) => self
                .def
                .name
                .strip_suffix("_total")
                .unwrap_or(self.def.name),
            _ => self.def.name,
        };
        let kind = match self.def.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        };
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_into(self.out, self.def.help, false);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind);
        self.out.push('\n');
    }

    /// One sample: `labels` in name order (as the text encoder sorts them).
    fn sample(&mut self, suffix: &str, labels: &[(&str, &str)], value: f64) {
        self.header();
        self.out.push_str(self.def.name);
        self.out.push_str(suffix);
        for (i, (name, v)) in labels.iter().enumerate() {
            self.out.push(if i == 0 { '{' } else { ',' });
            self.out.push_str(name);
            self.out.push_str("=\"");
            escape_into(self.out, v, true);
            self.out.push('"');
        }
        if !labels.is_empty() {
            self.out.push('}');
        }
        self.out.push(' ');
        push_value(self.out, value);
        self.out.push('\n');
    }

    /// `family`'s series of one backend.
    fn write_backend(&mut self, le: &[Box<str>], target: &str, backend: &str, b: &BackendSeries) {
        let pair = [("backend", backend), ("target", target)];
        let bit = |on: bool| if on { 1.0 } else { 0.0 };
        match self.family {
            Family::Success => {
                if let Some(s) = b.success {
                    self.sample("", &pair, bit(s));
                }
            }
            Family::GrpcStatus => {
                if let Some(c) = b.grpc_status {
                    self.sample("", &pair, f64::from(c));
                }
            }
            Family::CertExpiry => {
                if let Some(e) = b.cert_expiry {
                    self.sample("", &pair, e);
                }
            }
            Family::Duration => {
                for (phase, v) in PROBE_PHASES.iter().zip(b.phases) {
                    if let Some(v) = v {
                        let labels = [("backend", backend), ("phase", phase), ("target", target)];
                        self.sample("", &labels, v);
                    }
                }
            }
            Family::HealthStatus => self.one_hot(b.serving, &SERVING_STATUSES, |status| {
                [
                    ("backend", backend),
                    ("serving_status", status),
                    ("target", target),
                ]
            }),
            Family::TlsVersion => self.one_hot(b.tls_version, &TLS_VERSIONS, |version| {
                [
                    ("backend", backend),
                    ("target", target),
                    ("version", version),
                ]
            }),
            Family::Totals => {
                for (result, n) in RESULTS.iter().zip(b.results) {
                    if let Some(n) = n {
                        let labels = [("backend", backend), ("result", result), ("target", target)];
                        self.sample("", &labels, n as f64);
                    }
                }
            }
            Family::CheckFailed => {
                for (check, failed) in &b.checks {
                    let labels = [("backend", backend), ("check", check), ("target", target)];
                    self.sample("", &labels, bit(*failed));
                }
            }
            Family::Latency => {
                if let Some(l) = &b.latency {
                    self.histogram(le, &pair, l);
                }
            }
            Family::Backends | Family::Resolutions => {}
        }
    }

    /// A one-hot family's series (when set): 1 for value `on` of `values`, 0 for the others;
    /// `labels` names a value's series, its labels in name order.
    fn one_hot<'l>(
        &mut self,
        on: Option<Option<u8>>,
        values: &[&'l str],
        labels: impl Fn(&'l str) -> [(&'l str, &'l str); 3],
    ) {
        let Some(on) = on else {
            return;
        };
        for (i, value) in values.iter().enumerate() {
            let one = on.map(usize::from) == Some(i);
            self.sample("", &labels(value), if one { 1.0 } else { 0.0 });
        }
    }

    /// A histogram's samples; `le` has a label per count (`+Inf` last).
    fn histogram(&mut self, le: &[Box<str>], pair: &[(&str, &str); 2], l: &Latency) {
        let mut cumulative = 0u64;
        for (count, le) in l.counts.iter().zip(le) {
            cumulative += count;
            let labels = [pair[0], pair[1], ("le", le)];
            self.sample("_bucket", &labels, cumulative as f64);
        }
        self.sample("_sum", pair, l.sum);
        self.sample("_count", pair, cumulative as f64);
    }
}

/// Appends `value` as Rust prints an `f64` (what the prometheus crate writes): a whole
/// number through `itoa`, the same digits at a fraction of the cost — most samples are
/// 0, 1 or a count, and a scrape of 1,000 targets writes 35,000 of them.
fn push_value(out: &mut String, value: f64) {
    // Below 2^53 every whole f64 is exact as an i64, and both print it the same way
    // (except -0, left to the general path).
    let whole = value.fract() == 0.0 && value.abs() < 9.0e15;
    if whole && (value != 0.0 || value.is_sign_positive()) {
        out.push_str(itoa::Buffer::new().format(value as i64));
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Appends `text` escaped as the text format asks: `\` and newline always, `"` in a label
/// value.
fn escape_into(out: &mut String, text: &str, quote: bool) {
    if !text
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"'))
    {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts};

    /// The same series made in the prometheus crate's vectors, encoded by its TextEncoder:
    /// the exposition this module replaced.
    struct Reference {
        registry: prometheus::Registry,
    }

    impl Reference {
        fn text(&self) -> String {
            let mut out = Vec::new();
            prometheus::TextEncoder::new()
                .encode(&self.registry.gather(), &mut out)
                .unwrap();
            String::from_utf8(out).unwrap()
        }
    }

    /// Sorts each family's samples, so two orders of series compare equal.
    fn normalized(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut family: Vec<String> = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                family.sort();
                out.append(&mut family);
                out.push(line.to_string());
            } else {
                family.push(line.to_string());
            }
        }
        family.sort();
        out.append(&mut family);
        out
    }

    fn gauge(r: &prometheus::Registry, d: &Definition) -> GaugeVec {
        let g = GaugeVec::new(Opts::new(d.name, d.help), d.labels).unwrap();
        r.register(Box::new(g.clone())).unwrap();
        g
    }

    fn counter(r: &prometheus::Registry, d: &Definition) -> IntCounterVec {
        let c = IntCounterVec::new(Opts::new(d.name, d.help), d.labels).unwrap();
        r.register(Box::new(c.clone())).unwrap();
        c
    }

    #[test]
    fn the_text_is_what_the_prometheus_text_encoder_writes_for_the_same_series() {
        let buckets = crate::telemetry::metrics::probe_latency_buckets(&[0.3]);
        let ours = ProbeSeries::new(&buckets);
        let registry = prometheus::Registry::new();
        let success = gauge(&registry, &PROBE_SUCCESS);
        let duration = gauge(&registry, &PROBE_DURATION);
        let health = gauge(&registry, &PROBE_HEALTH_STATUS);
        let code = gauge(&registry, &PROBE_GRPC_STATUS);
        let expiry = gauge(&registry, &PROBE_CERT_EXPIRY);
        let tls = gauge(&registry, &PROBE_TLS_VERSION);
        let checks = gauge(&registry, &PROBE_CHECK_FAILED);
        let backends = gauge(&registry, &PROBE_BACKENDS);
        let totals = counter(&registry, &PROBES_TOTAL);
        let resolutions = counter(&registry, &PROBE_RESOLUTIONS);
        let latency = HistogramVec::new(
            HistogramOpts::new(PROBE_LATENCY.name, PROBE_LATENCY.help).buckets(buckets.clone()),
            PROBE_LATENCY.labels,
        )
        .unwrap();
        registry.register(Box::new(latency.clone())).unwrap();
        let reference = Reference { registry };

        // Names that need escaping, several backends and targets, every family.
        for (t, b) in [
            ("api", "10.0.0.1:443"),
            ("api", "10.0.0.2:443"),
            ("db \"main\"\\x", "db:1"),
            ("zeta\nline", "z:2"),
        ] {
            let ok = b.ends_with(":443");
            ours.backend(t, b, |s| {
                s.set_success(ok);
                s.set_grpc_status(if ok { 0 } else { 14 });
                s.set_phase(Phase::Connect, Duration::from_micros(1234));
                s.set_phase(Phase::Check, Duration::from_nanos(7));
                s.set_serving(ok.then_some("SERVING"));
                s.count_result(ok);
                s.count_result(true);
                s.set_check_failed("status == OK", !ok);
                s.set_check_failed("a.b == \"c\"", ok);
            });
            success
                .with_label_values(&[t, b])
                .set(if ok { 1.0 } else { 0.0 });
            code.with_label_values(&[t, b])
                .set(if ok { 0.0 } else { 14.0 });
            duration.with_label_values(&[t, b, "connect"]).set(0.001234);
            duration.with_label_values(&[t, b, "check"]).set(7e-9);
            for s in SERVING_STATUSES {
                let v = if ok && s == "SERVING" { 1.0 } else { 0.0 };
                health.with_label_values(&[t, b, s]).set(v);
            }
            totals
                .with_label_values(&[t, b, if ok { "success" } else { "failure" }])
                .inc();
            totals.with_label_values(&[t, b, "success"]).inc();
            checks
                .with_label_values(&[t, b, "status == OK"])
                .set(if ok { 0.0 } else { 1.0 });
            checks
                .with_label_values(&[t, b, "a.b == \"c\""])
                .set(if ok { 1.0 } else { 0.0 });
            for seconds in [0.0001, 0.3, 0.31, 99.0] {
                ours.observe_latency(t, b, seconds);
                latency.with_label_values(&[t, b]).observe(seconds);
            }
        }
        ours.backend("api", "10.0.0.1:443", |s| {
            s.set_cert_expiry(1.8e9);
            s.set_tls_version("TLSv1_3");
        });
        expiry
            .with_label_values(&["api", "10.0.0.1:443"])
            .set(1.8e9);
        tls.with_label_values(&["api", "10.0.0.1:443", "TLSv1_2"])
            .set(0.0);
        tls.with_label_values(&["api", "10.0.0.1:443", "TLSv1_3"])
            .set(1.0);
        ours.set_backends("api", 2);
        backends.with_label_values(&["api"]).set(2.0);
        ours.count_resolution("api", true);
        ours.count_resolution("api", false);
        ours.count_resolution("api", true);
        resolutions.with_label_values(&["api", "success"]).inc_by(2);
        resolutions.with_label_values(&["api", "failure"]).inc();

        let text = ours.render(false);
        assert_eq!(normalized(&text), normalized(&reference.text()), "{text}");

        // Chunked at every size, the same text.
        for budget in [1, 100, 1000, 4096] {
            let mut chunked = String::new();
            let mut cursor = Cursor::default();
            let mut chunks = 0;
            while !cursor.done() {
                let mut chunk = String::new();
                ours.write_chunk(&mut cursor, false, &mut chunk, budget);
                chunked.push_str(&chunk);
                chunks += 1;
                assert!(chunks < 10_000, "a chunked write ends");
            }
            assert_eq!(chunked, text, "budget {budget}");
        }

        // Forgetting a backend forgets all its series; a reload, all.
        ours.remove_backend("api", "10.0.0.2:443");
        assert!(!ours.render(false).contains("10.0.0.2:443"));
        assert!(ours.render(false).contains("10.0.0.1:443"));
        ours.clear();
        assert_eq!(ours.render(false), "");
    }

    #[test]
    fn a_fleets_backends_come_in_order_and_chunks_resume_between_them() {
        let ours = ProbeSeries::new(&[0.1]);
        // Joined in any order, some twice; two left.
        for i in (0..60).rev().chain(10..20) {
            ours.backend("fleet", &format!("10.0.0.{i}:80"), |s| {
                s.set_success(i % 2 == 0)
            });
        }
        ours.remove_backend("fleet", "10.0.0.7:80");
        ours.remove_backend("fleet", "10.0.0.70:80");
        let text = ours.render(false);
        let backends: Vec<&str> = text
            .lines()
            .filter_map(|l| {
                l.split_once("backend=\"")?
                    .1
                    .split_once('"')
                    .map(|(b, _)| b)
            })
            .collect();
        let mut expected: Vec<String> = (0..60)
            .filter(|i| *i != 7)
            .map(|i| format!("10.0.0.{i}:80"))
            .collect();
        expected.sort();
        assert_eq!(backends, expected);
        for budget in [1, 300] {
            let mut cursor = Cursor::default();
            let mut chunked = String::new();
            while !cursor.done() {
                // A backend that leaves between chunks does not lose the place.
                let until = chunked.len() + budget;
                ours.write_chunk(&mut cursor, false, &mut chunked, until);
                if let Some((_, b)) = &cursor.after {
                    if b == "10.0.0.30:80" {
                        ours.remove_backend("fleet", b);
                    }
                }
            }
            assert_eq!(chunked, text, "budget {budget}");
            ours.backend("fleet", "10.0.0.30:80", |s| s.set_success(true));
        }
    }

    #[test]
    fn values_are_written_as_rust_prints_an_f64() {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            14.0,
            0.5,
            7e-9,
            1.8e9,
            9.0e15 - 1.0,
            9.0e15,
            2f64.powi(53),
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        // And any bits at all, whole numbers of every size among them.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(f64::from_bits(x));
            values.push((x >> (i % 64)) as f64);
            values.push(-((x >> (i % 60)) as f64));
        }
        for v in values {
            let mut out = String::new();
            push_value(&mut out, v);
            assert_eq!(out, v.to_string(), "{v:e}");
        }
    }

    #[test]
    fn openmetrics_names_the_counter_families_without_total() {
        let ours = ProbeSeries::new(&[0.1]);
        ours.backend("t", "b", |s| s.count_result(true));
        ours.count_resolution("t", false);
        let om = ours.render(true);
        assert!(om.contains("# TYPE loadagent_probes counter\n"), "{om}");
        assert!(om.contains("# HELP loadagent_probe_resolutions "), "{om}");
        assert!(om
            .contains("loadagent_probes_total{backend=\"b\",result=\"success\",target=\"t\"} 1\n"));
        assert!(!ours
            .render(false)
            .contains("# TYPE loadagent_probes counter"));
    }

    #[test]
    fn the_families_are_the_per_target_definitions_in_name_order() {
        let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.definition().name).collect();
        let per_target: Vec<&str> = crate::telemetry::DEFINITIONS
            .iter()
            .filter(|d| d.labels.first() == Some(&"target"))
            .map(|d| d.name)
            .collect();
        assert!(names.is_sorted(), "{names:?}");
        names.sort_unstable();
        let mut expected = per_target.clone();
        expected.sort_unstable();
        assert_eq!(names, expected);
        // `write_chunk` writes a family per backend, or per target for these two: the
        // labels say which.
        for f in FAMILIES {
            let labelled_by_backend = f.definition().labels.get(1) == Some(&"backend");
            assert_eq!(f.per_backend(), labelled_by_backend, "{f:?}");
        }
        let per_target_only: Vec<&str> = FAMILIES
            .iter()
            .filter(|f| !f.per_backend())
            .map(|f| f.definition().name)
            .collect();
        assert_eq!(
            per_target_only,
            [PROBE_BACKENDS.name, PROBE_RESOLUTIONS.name]
        );
    }
}
