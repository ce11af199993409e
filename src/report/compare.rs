//! `loadagent compare`: reports grouped by a fingerprint field (`arch` by default), each
//! group's figures side by side, the ratio of every group to the first (the baseline), and
//! whether each difference is larger than the run-to-run noise.
//!
//! Noise: with at least two runs in both groups, a percentile bootstrap (10,000 resamples,
//! fixed seed so the verdict is reproducible) of the ratio of the groups' means gives a 95%
//! confidence interval; a difference is established when the interval excludes 1 (and called
//! negligible when the whole interval is within 2% of 1). With one
//! run in a group there is no noise estimate, and the comparison says the difference is not
//! established rather than guess.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::schema::Report;
use crate::record::histogram::{decode, new_histogram};

/// The `schema` of `compare --format json`.
pub const SCHEMA: &str = "loadagent.compare/v1";
const RESAMPLES: usize = 10_000;
const SEED: u64 = 0x10ad_a6e7;

#[derive(Debug, thiserror::Error)]
/// Why reports could not be compared.
pub enum CompareError {
    #[error("compare needs at least two reports; got {0}")]
    /// Fewer than two reports.
    TooFew(usize),
    #[error("`--by {0}` is not a platform field; valid: {1}; label:KEY for a run label; target:FIELD for the server's platform (its process watched)")]
    /// `--by` names no field: it, and the valid ones.
    UnknownField(String, String),
    #[error("--baseline {0}: no group has that value; the groups: {1}")]
    /// `--baseline` names no group: it, and the groups.
    UnknownBaseline(String, String),
    #[error("--fail-on {0}: not a figure compare gives; valid: {1}")]
    /// `--fail-on` names no figure: it, and the valid ones.
    UnknownFigure(String, String),
    #[error("no report has the label `{0}`; labels the reports have: {1}")]
    /// No report has the label: it, and the labels they have.
    NoLabel(String, String),
    #[error("all {count} reports have {by} = {value}: there is only one group; compare reports from another {by} or group --by another field")]
    /// Every report is in one group.
    OneGroup {
        /// How many reports.
        count: usize,
        /// What the groups are by.
        by: String,
        /// The group's value.
        value: String,
    },
    #[error(transparent)]
    /// Reports of different scenarios.
    Different(#[from] super::merge::DifferentScenario),
    #[error("group {by} = {value} has no successful requests ({files}): nothing to compare")]
    /// A group without a successful request.
    NoSuccess {
        /// What the groups are by.
        by: String,
        /// The group's value.
        value: String,
        /// The files.
        files: String,
    },
    #[error("{file}: its `{which}` histogram cannot be read: {why}")]
    /// A report's histogram cannot be read.
    Histogram {
        /// The report.
        file: String,
        /// Which histogram.
        which: &'static str,
        /// Why.
        why: String,
    },
}

/// Whether more of a metric is better (throughput) or worse (latency, CPU, memory, errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Higher is better.
    Higher,
    /// Lower is better.
    Lower,
}

/// One metric of one group: the group's figure and each run's.
#[derive(Debug, Clone, Serialize)]
pub struct GroupMetric {
    /// The group's figure (the mean of its runs).
    pub value: f64,
    /// Each run's.
    pub runs: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
/// One group of reports (one value of `--by`).
pub struct Group {
    /// The value.
    pub value: String,
    /// Its reports.
    pub files: Vec<String>,
    /// Their CPU model.
    pub cpu_model: String,
    /// Their usable CPUs.
    pub usable_cpus: f64,
    /// Each figure.
    pub metrics: BTreeMap<String, GroupMetric>,
    /// The group's capacity searches, for the overlaid curves of the HTML output (each
    /// report's own file keeps them; the comparison's JSON does not repeat them).
    #[serde(skip)]
    pub capacity: Vec<super::schema::CapacityReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
/// A difference, judged against the noise.
pub enum Verdict {
    /// The interval excludes 1 and the group is better.
    Better,
    /// The interval excludes 1 and the group is worse.
    Worse,
    /// The interval includes 1.
    WithinNoise,
    /// The interval excludes 1 but lies within ±2% of it: real, too small to matter.
    Negligible,
    /// A group has one run: no noise estimate.
    NotEstablished,
}

#[derive(Debug, Clone, Serialize)]
/// One figure of one group against the baseline.
pub struct MetricComparison {
    /// group / baseline.
    pub ratio: Option<f64>,
    /// 95% bootstrap interval of the ratio of means (with two runs or more per group).
    pub ci95: Option<[f64; 2]>,
    /// What the difference is.
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Serialize)]
/// One group against the baseline.
pub struct Comparison {
    /// The group.
    pub group: String,
    /// The baseline.
    pub against: String,
    /// Each figure.
    pub metrics: BTreeMap<String, MetricComparison>,
}

#[derive(Debug, Clone, Serialize)]
/// What `compare` says.
pub struct CompareResult {
    /// `loadagent.compare/v1`.
    pub schema: String,
    /// What the groups are by.
    pub by: String,
    /// The scenario.
    pub scenario: String,
    /// Its kind.
    pub kind: String,
    /// Whether reports of different scenarios were compared anyway (`--force`).
    pub forced: bool,
    /// The groups.
    pub groups: Vec<Group>,
    /// Each group against the baseline.
    pub comparisons: Vec<Comparison>,
}

/// Metrics in display order: key, label, unit, which way is better.
pub const METRICS: &[(&str, &str, &str, Better)] = &[
    (
        "capacity_rps",
        "capacity (highest rate within the SLO)",
        "/s",
        Better::Higher,
    ),
    (
        "capacity_per_server_core",
        "capacity per server core",
        "/s",
        Better::Higher,
    ),
    (
        "capacity_per_usable_core",
        "capacity per usable server core",
        "/s",
        Better::Higher,
    ),
    (
        "capacity_requests_per_currency",
        "requests per currency unit at capacity (label price_per_hour)",
        "n",
        Better::Higher,
    ),
    ("rps", "throughput", "/s", Better::Higher),
    (
        "rps_per_core",
        "throughput per usable core",
        "/s",
        Better::Higher,
    ),
    ("latency_p50_us", "latency p50", "us", Better::Lower),
    ("latency_p99_us", "latency p99", "us", Better::Lower),
    ("latency_p999_us", "latency p99.9", "us", Better::Lower),
    ("cpu_seconds_per_1k", "CPU per 1,000", "s", Better::Lower),
    ("peak_rss_bytes", "peak RSS", "B", Better::Lower),
    (
        "handshakes_per_second_per_core",
        "TLS handshakes/s per core",
        "/s",
        Better::Higher,
    ),
    ("error_ratio", "error ratio", "", Better::Lower),
    (
        "target_peak_rss_bytes",
        "target peak RSS",
        "B",
        Better::Lower,
    ),
    (
        "target_cpu_seconds_per_1k",
        "target CPU per 1,000",
        "s",
        Better::Lower,
    ),
];

/// What "per 1,000" counts for a report: handshakes for storms, messages for streams,
/// requests otherwise.
pub fn units(r: &Report) -> f64 {
    // A storm's requests are its handshake iterations.
    match &r.messages {
        Some(m) if r.kind != "tls_handshake" => (m.sent + m.received) as f64,
        _ => r.totals.requests as f64,
    }
}

/// The value of a platform field, or of a run label (`label:KEY`), as text, for grouping. A
/// report without the label is in the group "none".
fn field(r: &Report, by: &str) -> Result<String, CompareError> {
    if let Some(key) = by.strip_prefix("label:") {
        return Ok(r.labels.get(key).cloned().unwrap_or_else(|| "none".into()));
    }
    // `target:arch`: the server's platform, known when its process was watched (else
    // "unknown"; the field's name is checked on the generator's platform, of the same kind).
    let (platform, name, known) = match by.strip_prefix("target:") {
        Some(field) => match r.target_process.as_ref().and_then(|t| t.platform.as_ref()) {
            Some(p) => (p, field, true),
            None => (&r.platform, field, false),
        },
        None => (&r.platform, by, true),
    };
    let v = serde_json::to_value(platform).unwrap_or_default();
    let obj = v.as_object().cloned().unwrap_or_default();
    match obj.get(name) {
        Some(_) if !known => Ok("unknown".into()),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(serde_json::Value::Null) | None if obj.contains_key(name) => Ok("unknown".into()),
        Some(other) => Ok(other.to_string()),
        None => Err(CompareError::UnknownField(
            by.to_string(),
            obj.keys().cloned().collect::<Vec<_>>().join(", "),
        )),
    }
}

/// The run label `price_per_hour` (what an hour of the server costs), when it is a positive
/// number.
fn price_per_hour(r: &Report) -> Option<f64> {
    r.labels
        .get(PRICE_LABEL)?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|p| p.is_finite() && *p > 0.0)
}

/// The run label with the server's price per hour, in any currency (the same in both groups).
pub const PRICE_LABEL: &str = "price_per_hour";

/// Per-run figures of one report.
fn run_metrics(r: &Report) -> BTreeMap<&'static str, f64> {
    let mut m = BTreeMap::new();
    let cores = r.platform.cores();
    // A capacity search's answer: the figure the architectures' comparison is about.
    if let Some(rps) = r.capacity.as_ref().and_then(|c| c.rps) {
        m.insert("capacity_rps", rps);
    }
    if let Some(c) = &r.capacity {
        if let Some(per_core) = c.per_server_core {
            m.insert("capacity_per_server_core", per_core);
        }
        if let Some(per_core) = c.per_usable_core {
            m.insert("capacity_per_usable_core", per_core);
        }
        // What an hour of the server costs (a label only a person can give) buys this many
        // requests at the capacity found.
        if let (Some(rps), Some(price)) = (c.rps, price_per_hour(r)) {
            m.insert("capacity_requests_per_currency", rps * 3600.0 / price);
        }
    }
    m.insert("rps", r.totals.rps);
    m.insert("rps_per_core", r.totals.rps / cores);
    let lat = r
        .latency
        .corrected
        .as_ref()
        .unwrap_or(&r.latency.uncorrected);
    m.insert("latency_p50_us", lat.p50_us as f64);
    m.insert("latency_p99_us", lat.p99_us as f64);
    m.insert("latency_p999_us", lat.p999_us as f64);
    let units = units(r);
    if units > 0.0 {
        let cpu = r.process.cpu_user_seconds + r.process.cpu_system_seconds;
        m.insert("cpu_seconds_per_1k", cpu / units * 1000.0);
    }
    if r.process.peak_rss_bytes > 0 {
        m.insert("peak_rss_bytes", r.process.peak_rss_bytes as f64);
    }
    if let Some(h) = r.totals.handshakes_per_second {
        m.insert("handshakes_per_second_per_core", h / cores);
    }
    m.insert(
        "error_ratio",
        if r.totals.requests > 0 {
            r.totals.errors as f64 / r.totals.requests as f64
        } else {
            0.0
        },
    );
    if let Some(t) = &r.target_process {
        if let Some(rss) = t.peak_rss_bytes {
            m.insert("target_peak_rss_bytes", rss as f64);
        }
        if let Some(c) = t.cpu_seconds_per_1k_requests {
            m.insert("target_cpu_seconds_per_1k", c);
        }
    }
    m
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The ratio of means `b / a` and its 95% percentile-bootstrap interval.
pub fn bootstrap_ratio(a: &[f64], b: &[f64], rng: &mut StdRng) -> Option<(f64, [f64; 2])> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let ma = mean(a);
    if ma == 0.0 {
        return None;
    }
    let ratio = mean(b) / ma;
    let mut draws = Vec::with_capacity(RESAMPLES);
    let resample = |v: &[f64], rng: &mut StdRng| {
        (0..v.len())
            .map(|_| v[rng.random_range(0..v.len())])
            .sum::<f64>()
            / v.len() as f64
    };
    for _ in 0..RESAMPLES {
        let ra = resample(a, rng);
        let rb = resample(b, rng);
        if ra != 0.0 {
            draws.push(rb / ra);
        }
    }
    if draws.is_empty() {
        return None;
    }
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((draws.len() - 1) as f64 * q).round() as usize];
    Some((ratio, [at(0.025), at(0.975)]))
}

/// A difference whose whole interval lies within this of 1 is real but too small to act on.
pub const NEGLIGIBLE: f64 = 0.02;

fn verdict(ratio: f64, ci: Option<[f64; 2]>, better: Better) -> Verdict {
    match ci {
        None => Verdict::NotEstablished,
        Some([lo, hi]) if lo <= 1.0 && 1.0 <= hi => Verdict::WithinNoise,
        Some([lo, hi]) if lo >= 1.0 - NEGLIGIBLE && hi <= 1.0 + NEGLIGIBLE => Verdict::Negligible,
        Some(_) => match (ratio > 1.0, better) {
            (true, Better::Higher) | (false, Better::Lower) => Verdict::Better,
            _ => Verdict::Worse,
        },
    }
}

/// Checks `--fail-on` figure names against the figures compare gives.
pub fn check_figures(names: &[String]) -> Result<(), CompareError> {
    match names
        .iter()
        .find(|n| !METRICS.iter().any(|(key, ..)| key == n))
    {
        Some(bad) => Err(CompareError::UnknownFigure(
            bad.clone(),
            METRICS
                .iter()
                .map(|(key, ..)| *key)
                .collect::<Vec<_>>()
                .join(", "),
        )),
        None => Ok(()),
    }
}

/// The regression gate: each of `figures` that a group compares worse than the baseline
/// beyond noise (verdict `worse`: the 95% interval of the ratio excludes 1, beyond ±2%),
/// in words.
pub fn regressions(result: &CompareResult, figures: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for c in &result.comparisons {
        for f in figures {
            if let Some(m) = c.metrics.get(f).filter(|m| m.verdict == Verdict::Worse) {
                let ratio = m.ratio.map_or_else(|| "–".into(), |r| format!("{r:.3}"));
                let ci = m.ci95.map_or_else(String::new, |[lo, hi]| {
                    format!(", 95% interval {lo:.3}–{hi:.3}")
                });
                out.push(format!(
                    "{f}: {} = {} is worse than {} = {} beyond noise (ratio {ratio}{ci})",
                    result.by, c.group, result.by, c.against
                ));
            }
        }
    }
    out
}

/// Compares `inputs` (file, report) grouped by the platform field `by`; the group whose
/// value is `baseline` (else the first seen) is the one the others are compared with.
pub fn compare(
    inputs: &[(String, Report)],
    by: &str,
    force: bool,
    baseline: Option<&str>,
) -> Result<CompareResult, CompareError> {
    if inputs.len() < 2 {
        return Err(CompareError::TooFew(inputs.len()));
    }
    let first = &inputs[0].1;
    let forced = super::merge::same_scenario(inputs, force)?;
    // Groups in order of first appearance: the first is the baseline.
    let mut order: Vec<String> = Vec::new();
    let mut members: BTreeMap<String, Vec<&(String, Report)>> = BTreeMap::new();
    for input in inputs {
        let value = field(&input.1, by)?;
        if !members.contains_key(&value) {
            order.push(value.clone());
        }
        members.entry(value).or_default().push(input);
    }
    if let Some(key) = by.strip_prefix("label:") {
        if inputs.iter().all(|(_, r)| !r.labels.contains_key(key)) {
            let known: std::collections::BTreeSet<&String> =
                inputs.iter().flat_map(|(_, r)| r.labels.keys()).collect();
            return Err(CompareError::NoLabel(
                key.to_string(),
                if known.is_empty() {
                    "none (record one with `run --label KEY=VALUE` or the scenario's `labels`)"
                        .into()
                } else {
                    known.into_iter().cloned().collect::<Vec<_>>().join(", ")
                },
            ));
        }
    }
    if order.len() < 2 {
        return Err(CompareError::OneGroup {
            count: inputs.len(),
            by: by.to_string(),
            value: order.first().cloned().unwrap_or_default(),
        });
    }
    if let Some(wanted) = baseline {
        let Some(i) = order.iter().position(|v| v == wanted) else {
            return Err(CompareError::UnknownBaseline(
                wanted.to_string(),
                order.join(", "),
            ));
        };
        let first = order.remove(i);
        order.insert(0, first);
    }
    let mut groups = Vec::new();
    for value in &order {
        let runs = &members[value];
        let files: Vec<String> = runs.iter().map(|(f, _)| f.clone()).collect();
        if runs.iter().all(|(_, r)| r.totals.ok == 0) {
            return Err(CompareError::NoSuccess {
                by: by.to_string(),
                value: value.clone(),
                files: files.join(", "),
            });
        }
        let per_run: Vec<BTreeMap<&str, f64>> = runs.iter().map(|(_, r)| run_metrics(r)).collect();
        let mut metrics = BTreeMap::new();
        for (key, _, _, _) in METRICS {
            let values: Vec<f64> = per_run.iter().filter_map(|m| m.get(key).copied()).collect();
            if values.len() == runs.len() {
                metrics.insert(
                    key.to_string(),
                    GroupMetric {
                        value: mean(&values),
                        runs: values,
                    },
                );
            }
        }
        // The group's latency percentiles come from its runs' histograms added together.
        let merged = merged_percentiles(runs)?;
        for (key, v) in merged {
            if let Some(m) = metrics.get_mut(key) {
                m.value = v;
            }
        }
        let first = &runs[0].1.platform;
        groups.push(Group {
            value: value.clone(),
            files,
            cpu_model: first.cpu_model.clone(),
            usable_cpus: first.cores(),
            metrics,
            capacity: runs
                .iter()
                .filter_map(|(_, r)| r.capacity.clone())
                .collect(),
        });
    }
    let mut rng = StdRng::seed_from_u64(SEED);
    let baseline = &groups[0];
    let mut comparisons = Vec::new();
    for g in &groups[1..] {
        let mut metrics = BTreeMap::new();
        for (key, _, _, better) in METRICS {
            let (Some(a), Some(b)) = (baseline.metrics.get(*key), g.metrics.get(*key)) else {
                continue;
            };
            let ratio = (a.value != 0.0).then(|| b.value / a.value);
            let ci = bootstrap_ratio(&a.runs, &b.runs, &mut rng).map(|(_, ci)| ci);
            let verdict = match ratio {
                Some(r) => verdict(r, ci, *better),
                None if a.value == b.value => Verdict::WithinNoise,
                None => Verdict::NotEstablished,
            };
            metrics.insert(
                key.to_string(),
                MetricComparison {
                    ratio,
                    ci95: ci,
                    verdict,
                },
            );
        }
        comparisons.push(Comparison {
            group: g.value.clone(),
            against: baseline.value.clone(),
            metrics,
        });
    }
    let mut names: Vec<&str> = inputs.iter().map(|(_, r)| r.name.as_str()).collect();
    names.dedup();
    Ok(CompareResult {
        schema: SCHEMA.into(),
        by: by.to_string(),
        scenario: names.join(" + "),
        kind: first.kind.clone(),
        forced,
        groups,
        comparisons,
    })
}

/// p50/p99/p99.9 of a group's runs' histograms added together (corrected when every run
/// has one, else uncorrected).
fn merged_percentiles(
    runs: &[&(String, Report)],
) -> Result<Vec<(&'static str, f64)>, CompareError> {
    let corrected = runs.iter().all(|(_, r)| r.latency.corrected.is_some());
    let mut h = new_histogram();
    for (file, r) in runs {
        let (which, summary) = match (&r.latency.corrected, corrected) {
            (Some(c), true) => ("corrected", c),
            _ => ("uncorrected", &r.latency.uncorrected),
        };
        let one = decode(&summary.hdr).map_err(|why| CompareError::Histogram {
            file: file.clone(),
            which,
            why,
        })?;
        let _ = h.add(&one);
    }
    if h.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![
        ("latency_p50_us", h.value_at_quantile(0.5) as f64),
        ("latency_p99_us", h.value_at_quantile(0.99) as f64),
        ("latency_p999_us", h.value_at_quantile(0.999) as f64),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(SEED)
    }

    #[test]
    fn one_run_per_group_is_not_established() {
        assert!(bootstrap_ratio(&[1.0], &[2.0, 2.1], &mut rng()).is_none());
        assert_eq!(verdict(2.0, None, Better::Higher), Verdict::NotEstablished);
        assert_eq!(
            verdict(0.998, Some([0.996, 0.999]), Better::Higher),
            Verdict::Negligible
        );
    }

    #[test]
    fn the_same_sample_is_within_noise_and_a_doubling_is_not() {
        let a = [100.0, 104.0, 97.0, 101.0, 99.0];
        let shuffled = [99.0, 97.0, 104.0, 100.0, 101.0];
        let (r, ci) = bootstrap_ratio(&a, &shuffled, &mut rng()).unwrap();
        assert!((r - 1.0).abs() < 1e-12);
        assert_eq!(verdict(r, Some(ci), Better::Higher), Verdict::WithinNoise);
        let doubled: Vec<f64> = a.iter().map(|x| x * 2.0).collect();
        let (r, ci) = bootstrap_ratio(&a, &doubled, &mut rng()).unwrap();
        assert!((r - 2.0).abs() < 1e-12);
        assert!(ci[0] > 1.5 && ci[1] < 2.6, "{ci:?}");
        assert_eq!(verdict(r, Some(ci), Better::Higher), Verdict::Better);
        assert_eq!(verdict(r, Some(ci), Better::Lower), Verdict::Worse);
    }

    #[test]
    fn draws_from_one_distribution_are_within_noise() {
        // Two samples of ten from the same normal distribution (seeded, so fixed).
        let mut g = StdRng::seed_from_u64(7);
        let mut normal = || {
            let (u1, u2): (f64, f64) = (g.random(), g.random());
            1000.0 + 50.0 * (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        };
        let a: Vec<f64> = (0..10).map(|_| normal()).collect();
        let b: Vec<f64> = (0..10).map(|_| normal()).collect();
        let (r, ci) = bootstrap_ratio(&a, &b, &mut rng()).unwrap();
        assert_eq!(
            verdict(r, Some(ci), Better::Higher),
            Verdict::WithinNoise,
            "{r} {ci:?}"
        );
    }
}
