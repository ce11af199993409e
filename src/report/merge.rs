//! Merging reports of the same scenario from several machines or runs: latency histograms
//! added exactly (HDR add), counts summed, rates summed, intervals aligned on wall-clock
//! seconds. The merged report lists the inputs it holds.

use std::collections::BTreeMap;

pub use super::schema::MergedInput;
use super::schema::{
    mark_slowest, BackendReport, BackendWorst, ConnectionsReport, ErrorCount, Latency,
    MethodReport, Report, RetriesReport,
};
use super::shards::{check as check_shards, ShardSetError};
use super::thresholds::judge;
use hdrhistogram::Histogram;

use crate::record::histogram::{decode, new_histogram};
use crate::record::{IntervalSummary, LatencySummary};
use crate::vocabulary::conditions::{parse_condition, Threshold, Thresholds};
use crate::vocabulary::At;
use crate::vocabulary::Loc;

#[derive(Debug, thiserror::Error)]
/// Why reports could not be merged.
pub enum MergeError {
    #[error("merge needs at least two reports; got {0}")]
    /// Fewer than two reports.
    TooFew(usize),
    #[error("merge takes at most {max} reports at once; got {0} (merge them in groups, then merge the results)", max = crate::report::schema::MAX_MERGED)]
    /// More than a merge takes.
    TooMany(usize),
    #[error(transparent)]
    /// Reports of different scenarios.
    Different(#[from] DifferentScenario),
    #[error(transparent)]
    /// Shard reports that are not one run.
    Shards(#[from] ShardSetError),
    #[error("the merged report would not be readable: {0}; merge fewer reports at once")]
    /// The merged report would not read back.
    Unreadable(String),
    #[error("{file}: shard of a run at `load.rate` {theirs}, where {first} ran at {ours}: shards of one run share its rate")]
    /// Shards of runs at different rates.
    ShardRates {
        /// The report.
        file: String,
        /// The first report.
        first: String,
        /// The first report's value.
        ours: String,
        /// This report's value.
        theirs: String,
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

fn unix(rfc3339: &str) -> f64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
        .unwrap_or(0.0)
}

fn merge_latency(
    inputs: &[(String, Report)],
    which: &'static str,
) -> Result<Option<LatencySummary>, MergeError> {
    let mut merged = new_histogram();
    let mut any = false;
    for (file, r) in inputs {
        let summary = if which == "corrected" {
            r.latency.corrected.as_ref()
        } else {
            Some(&r.latency.uncorrected)
        };
        let Some(s) = summary else { continue };
        let h = decode(&s.hdr).map_err(|why| MergeError::Histogram {
            file: file.clone(),
            which,
            why,
        })?;
        let _ = merged.add(&h);
        any = true;
    }
    Ok(any.then(|| LatencySummary::of(&merged)))
}

/// The inputs' `connections` added up (absent when none has them).
fn merge_connections(inputs: &[(String, Report)]) -> Option<ConnectionsReport> {
    let all = || inputs.iter().filter_map(|(_, r)| r.connections.as_ref());
    all().next()?;
    let opened: u64 = all().map(|c| c.opened).sum();
    // Requests over these connections: each input's figure times its own connections.
    let requests: f64 = all()
        .map(|c| c.requests_per_connection * c.opened as f64)
        .sum();
    Some(ConnectionsReport {
        opened,
        closed_by_age: all().map(|c| c.closed_by_age).sum(),
        closed_by_server: all().map(|c| c.closed_by_server).sum(),
        keepalive_failures: all().map(|c| c.keepalive_failures).sum(),
        too_many_pings: all().map(|c| c.too_many_pings).sum(),
        churned: all().map(|c| c.churned).sum(),
        keepalive_pings: all().map(|c| c.keepalive_pings).sum(),
        churn_failures: all().map(|c| c.churn_failures).sum(),
        socket_writes: all().map(|c| c.socket_writes).sum(),
        socket_reads: all().map(|c| c.socket_reads).sum(),
        requests_per_connection: if opened > 0 {
            (requests / opened as f64 * 10.0).round() / 10.0
        } else {
            0.0
        },
    })
}

/// The inputs' `retries` added up, attempt latencies merged (absent when none has them).
fn merge_retries(inputs: &[(String, Report)]) -> Result<Option<RetriesReport>, MergeError> {
    let mut merged: Option<(RetriesReport, Histogram<u64>)> = None;
    for (file, r) in inputs {
        let Some(x) = &r.retries else { continue };
        let h = decode(&x.attempt_latency.hdr).map_err(|why| MergeError::Histogram {
            file: file.clone(),
            which: "retries.attempt_latency",
            why,
        })?;
        match merged.as_mut() {
            None => merged = Some((x.clone(), h)),
            Some((m, hist)) => {
                m.attempts += x.attempts;
                m.retries += x.retries;
                m.succeeded_on_retry += x.succeeded_on_retry;
                m.stopped_by_throttling += x.stopped_by_throttling;
                m.stopped_by_pushback += x.stopped_by_pushback;
                m.exhausted += x.exhausted;
                let _ = hist.add(&h);
            }
        }
    }
    Ok(merged.map(|(mut m, h)| {
        m.attempt_latency = LatencySummary::of(&h);
        m
    }))
}

/// Every input's mix of calls, entry by entry (the same scenario has the same entries):
/// counts and rates summed (as `rps` is), histograms added.
fn merge_methods(inputs: &[(String, Report)]) -> Result<Vec<MethodReport>, MergeError> {
    let read = |file: &str, which: &'static str, hdr: &str| {
        decode(hdr).map_err(|why| MergeError::Histogram {
            file: file.to_string(),
            which,
            why,
        })
    };
    let mut out: Vec<(MethodReport, Option<Histogram<u64>>, Histogram<u64>)> = Vec::new();
    for (file, r) in inputs {
        for (i, m) in r.methods.iter().enumerate() {
            let uncorrected = read(
                file,
                "methods.latency.uncorrected",
                &m.latency.uncorrected.hdr,
            )?;
            let corrected = match &m.latency.corrected {
                Some(c) => Some(read(file, "methods.latency.corrected", &c.hdr)?),
                None => None,
            };
            match out.get_mut(i).filter(|(o, _, _)| o.method == m.method) {
                None => out.push((m.clone(), corrected, uncorrected)),
                Some((o, c, u)) => {
                    o.requests += m.requests;
                    o.ok += m.ok;
                    o.errors += m.errors;
                    o.rps += m.rps;
                    for (k, v) in &m.status_codes {
                        *o.status_codes.entry(k.clone()).or_default() += v;
                    }
                    let _ = u.add(&uncorrected);
                    *c = match (c.take(), corrected) {
                        (Some(mut a), Some(b)) => a.add(&b).ok().map(|_| a),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|(mut m, c, u)| {
            m.rps = (m.rps * 1000.0).round() / 1000.0;
            m.error_rate = if m.requests > 0 {
                m.errors as f64 / m.requests as f64
            } else {
                0.0
            };
            m.latency = Latency {
                corrected: c.as_ref().map(LatencySummary::of),
                uncorrected: LatencySummary::of(&u),
            };
            m
        })
        .collect())
}

/// Every input's backends, one entry per address: counts summed, histograms added, joined at
/// the earliest and left at the latest (on the merged report's clock), still there if it was
/// in any input at its end.
fn merge_backends(
    inputs: &[(String, Report)],
    starts: &[f64],
    base: f64,
) -> Result<Vec<BackendReport>, MergeError> {
    struct Sum {
        b: BackendReport,
        corrected: Option<Histogram<u64>>,
        uncorrected: Histogram<u64>,
    }
    let read = |file: &str, which: &'static str, hdr: &str| {
        decode(hdr).map_err(|why| MergeError::Histogram {
            file: file.to_string(),
            which,
            why,
        })
    };
    let mut order: Vec<String> = Vec::new();
    let mut sums: BTreeMap<String, Sum> = BTreeMap::new();
    for ((file, r), start) in inputs.iter().zip(starts) {
        let offset = start - base;
        for b in &r.backends {
            let uncorrected = read(
                file,
                "backends.latency.uncorrected",
                &b.latency.uncorrected.hdr,
            )?;
            let corrected = match &b.latency.corrected {
                Some(c) => Some(read(file, "backends.latency.corrected", &c.hdr)?),
                None => None,
            };
            let mut shifted = b.clone();
            shifted.joined_s = ((b.joined_s + offset) * 1000.0).round() / 1000.0;
            shifted.left_s = b.left_s.map(|l| ((l + offset) * 1000.0).round() / 1000.0);
            match sums.get_mut(&b.address) {
                None => {
                    order.push(b.address.clone());
                    sums.insert(
                        b.address.clone(),
                        Sum {
                            b: shifted,
                            corrected,
                            uncorrected,
                        },
                    );
                }
                Some(sum) => {
                    let m = &mut sum.b;
                    m.joined_s = m.joined_s.min(shifted.joined_s);
                    m.left_s = match (m.left_s, shifted.left_s) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                    m.stints = m.stints.max(b.stints);
                    m.connections += b.connections;
                    m.requests += b.requests;
                    m.ok += b.ok;
                    m.errors += b.errors;
                    for (k, v) in &b.status_codes {
                        *m.status_codes.entry(k.clone()).or_default() += v;
                    }
                    let _ = sum.uncorrected.add(&uncorrected);
                    sum.corrected = match (sum.corrected.take(), corrected) {
                        (Some(mut a), Some(c)) => a.add(&c).ok().map(|_| a),
                        (a, c) => a.or(c),
                    };
                }
            }
        }
    }
    let mut out: Vec<BackendReport> = order
        .iter()
        .filter_map(|a| sums.remove(a))
        .map(|mut s| {
            s.b.error_rate = if s.b.requests > 0 {
                s.b.errors as f64 / s.b.requests as f64
            } else {
                0.0
            };
            s.b.latency = Latency {
                corrected: s.corrected.as_ref().map(LatencySummary::of),
                uncorrected: LatencySummary::of(&s.uncorrected),
            };
            s.b
        })
        .collect();
    mark_slowest(&mut out);
    Ok(out)
}

/// A report of another scenario than the first input's, where one scenario was expected.
#[derive(Debug, thiserror::Error)]
#[error("{file} is of another scenario than {first} ({what}: {theirs} vs {ours}); use reports of one scenario, or pass --force")]
pub struct DifferentScenario {
    /// The report that differs.
    pub file: String,
    /// The first report.
    pub first: String,
    /// "name", "kind" or "method".
    pub what: &'static str,
    /// The first report's value.
    pub ours: String,
    /// This report's value.
    pub theirs: String,
}

/// Checks that every input is of the first one's scenario (name, kind, method). With
/// `force` a difference is allowed; the answer says whether there was one.
pub fn same_scenario(inputs: &[(String, Report)], force: bool) -> Result<bool, DifferentScenario> {
    let Some((first_file, first)) = inputs.first() else {
        return Ok(false);
    };
    let difference = inputs[1..].iter().find_map(|(file, r)| {
        [
            ("name", &first.name, &r.name),
            ("kind", &first.kind, &r.kind),
            ("method", &first.method, &r.method),
        ]
        .into_iter()
        .find(|(_, ours, theirs)| ours != theirs)
        .map(|(what, ours, theirs)| DifferentScenario {
            file: file.clone(),
            first: first_file.clone(),
            what,
            ours: ours.clone(),
            theirs: theirs.clone(),
        })
    });
    match difference {
        Some(d) if !force => Err(d),
        Some(_) => Ok(true),
        None => Ok(false),
    }
}

/// Merges `inputs` (file name, report). With `force`, reports of different scenarios merge
/// too, and the result says so.
pub fn merge(
    inputs: &[(String, Report)],
    force: bool,
    partial: bool,
) -> Result<Report, MergeError> {
    if inputs.len() < 2 {
        return Err(MergeError::TooFew(inputs.len()));
    }
    if inputs.len() > crate::report::schema::MAX_MERGED {
        return Err(MergeError::TooMany(inputs.len()));
    }
    let first = &inputs[0].1;
    let forced = same_scenario(inputs, force)?;
    let shards = check_shards(inputs, partial)?;
    let mut out = first.clone();
    let starts: Vec<f64> = inputs.iter().map(|(_, r)| unix(&r.started_at)).collect();
    let base = starts.iter().copied().fold(f64::INFINITY, f64::min);
    let end = inputs
        .iter()
        .zip(&starts)
        .map(|((_, r), s)| s + r.duration_seconds)
        .fold(0.0, f64::max);
    out.started_at = inputs
        .iter()
        .zip(&starts)
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|((_, r), _)| r.started_at.clone())
        .unwrap_or_default();
    out.duration_seconds = ((end - base) * 1000.0).round() / 1000.0;
    out.interrupted = inputs.iter().any(|(_, r)| r.interrupted);
    out.generator_panics = inputs.iter().map(|(_, r)| r.generator_panics).sum();

    let t = &mut out.totals;
    *t = Default::default();
    let mut status: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut intervals: BTreeMap<u64, IntervalSummary> = BTreeMap::new();
    let mut histograms: BTreeMap<u64, Option<Histogram<u64>>> = BTreeMap::new();
    for ((_, r), start) in inputs.iter().zip(&starts) {
        t.requests += r.totals.requests;
        t.ok += r.totals.ok;
        t.errors += r.totals.errors;
        t.sent_late += r.totals.sent_late;
        t.rps += r.totals.rps;
        for (k, v) in &r.status_codes {
            *status.entry(k.clone()).or_default() += v;
        }
        for e in &r.errors {
            *errors
                .entry((e.status.clone(), e.message.clone()))
                .or_default() += e.count;
        }
        let offset = (start - base).round().max(0.0) as u64;
        for i in &r.intervals {
            let at = i.t_seconds + offset;
            let m = intervals.entry(at).or_insert_with(|| IntervalSummary {
                t_seconds: at,
                requests: 0,
                ok: 0,
                errors: 0,
                p50_us: 0,
                p99_us: 0,
                max_us: 0,
                status_codes: BTreeMap::new(),
                messages_sent: 0,
                messages_received: 0,
                sent_late: 0,
                hdr: None,
            });
            // The interval's histograms add up exactly while every input kept one.
            let h = histograms
                .entry(at)
                .or_insert_with(|| Some(new_histogram()));
            *h = match (h.take(), i.hdr.as_deref().map(decode)) {
                (Some(mut sum), Some(Ok(one))) => sum.add(&one).ok().map(|_| sum),
                _ => None,
            };
            m.requests += i.requests;
            m.ok += i.ok;
            m.errors += i.errors;
            // Replaced by the merged histogram's below when every input kept one; without
            // them the highest input is an upper bound.
            m.p50_us = m.p50_us.max(i.p50_us);
            m.p99_us = m.p99_us.max(i.p99_us);
            m.max_us = m.max_us.max(i.max_us);
            m.messages_sent += i.messages_sent;
            m.messages_received += i.messages_received;
            m.sent_late += i.sent_late;
            for (k, v) in &i.status_codes {
                *m.status_codes.entry(k.clone()).or_default() += v;
            }
        }
        out.process.cpu_user_seconds += if std::ptr::eq(r, first) {
            0.0
        } else {
            r.process.cpu_user_seconds
        };
        out.process.cpu_system_seconds += if std::ptr::eq(r, first) {
            0.0
        } else {
            r.process.cpu_system_seconds
        };
        out.process.peak_rss_bytes = out.process.peak_rss_bytes.max(r.process.peak_rss_bytes);
    }
    t.rps = (t.rps * 1000.0).round() / 1000.0;
    t.error_rate = if t.requests > 0 {
        t.errors as f64 / t.requests as f64
    } else {
        0.0
    };
    out.status_codes = status;
    let mut errors: Vec<ErrorCount> = errors
        .into_iter()
        .map(|((status, message), count)| ErrorCount {
            status,
            message,
            count,
        })
        .collect();
    errors.sort_by_key(|e| std::cmp::Reverse(e.count));
    out.errors = errors;
    for (at, m) in intervals.iter_mut() {
        if let Some(Some(h)) = histograms.get(at) {
            let s = LatencySummary::of(h);
            (m.p50_us, m.p99_us, m.max_us) = (s.p50_us, s.p99_us, s.max_us);
            m.hdr = Some(s.hdr);
        }
    }
    out.intervals = intervals.into_values().collect();
    out.latency = Latency {
        corrected: merge_latency(inputs, "corrected")?,
        uncorrected: merge_latency(inputs, "uncorrected")?
            .unwrap_or_else(|| LatencySummary::of(&new_histogram())),
    };
    out.backends = merge_backends(inputs, &starts, base)?;
    out.methods = merge_methods(inputs)?;
    out.connections = merge_connections(inputs);
    out.retries = merge_retries(inputs)?;
    out.totals.attempts = out.retries.as_ref().map(|r| r.attempts);
    out.backend_worst = BackendWorst::of(&out.backends);
    if let Some(res) = out.resolution.as_mut() {
        res.resolutions = inputs
            .iter()
            .filter_map(|(_, r)| r.resolution.as_ref())
            .map(|r| r.resolutions)
            .sum();
        res.failures = inputs
            .iter()
            .filter_map(|(_, r)| r.resolution.as_ref())
            .map(|r| r.failures)
            .sum();
    }
    // Streams and their messages add up, as requests do (rates summed, as `rps` is).
    if let Some(s) = out.streams.as_mut() {
        let all = || inputs.iter().filter_map(|(_, r)| r.streams.as_ref());
        s.opened = all().map(|x| x.opened).sum();
        s.open_at_start = all().map(|x| x.open_at_start).sum();
        s.open_at_end = all().map(|x| x.open_at_end).sum();
        s.completed = all().map(|x| x.completed).sum();
        s.failed = all().map(|x| x.failed).sum();
    }
    if let Some(m) = out.messages.as_mut() {
        let all = || inputs.iter().filter_map(|(_, r)| r.messages.as_ref());
        m.sent = all().map(|x| x.sent).sum();
        m.received = all().map(|x| x.received).sum();
        m.sent_late = all().map(|x| x.sent_late).sum();
        m.sent_per_second = all().map(|x| x.sent_per_second).sum();
        m.received_per_second = all().map(|x| x.received_per_second).sum();
    }
    out.load.rate = inputs.iter().map(|(_, r)| r.load.rate).sum();
    // Sums of u32 fields in u64, then bounded: informational, never an overflow.
    let sum_u32 = |f: fn(&Report) -> u32| {
        let total: u64 = inputs.iter().map(|(_, r)| u64::from(f(r))).sum();
        u32::try_from(total).unwrap_or(u32::MAX)
    };
    out.load.concurrency = sum_u32(|r| r.load.concurrency);
    out.load.connections = sum_u32(|r| r.load.connections);
    out.load.asked_requests = inputs.iter().map(|(_, r)| r.load.asked_requests).sum();
    if let Some(set) = &shards {
        let shown =
            |r: Option<f64>| r.map_or_else(|| "none (closed model)".into(), |x| x.to_string());
        if let Some((file, r)) = inputs[1..]
            .iter()
            .find(|(_, r)| r.load.rate != first.load.rate)
        {
            return Err(MergeError::ShardRates {
                file: file.clone(),
                first: inputs[0].0.clone(),
                ours: shown(first.load.rate),
                theirs: shown(r.load.rate),
            });
        }
        // Each shard reports the scenario's load (the whole run's rate and concurrency).
        out.load.rate = first.load.rate;
        out.load.concurrency = first.load.concurrency;
        out.shard = None;
        out.missing_shards = set.missing.clone();
    }
    out.thresholds = Vec::new();
    out.aborted_by_threshold = None;
    out.merged_from = inputs
        .iter()
        .map(|(file, r)| MergedInput {
            file: file.clone(),
            name: r.name.clone(),
            hostname: r.platform.hostname.clone(),
            arch: r.platform.arch.clone(),
            started_at: r.started_at.clone(),
            requests: r.totals.requests,
        })
        .collect();
    out.merge_forced = forced;
    // A label the inputs agree on describes the merged run; one they differ on does not.
    out.labels = first
        .labels
        .iter()
        .filter(|(k, v)| inputs.iter().all(|(_, r)| r.labels.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // The scenario's thresholds, judged on the merged figures (percentiles from the merged
    // histograms): what the whole run did, not any one input.
    if !forced {
        out.thresholds = judge(&thresholds_of(first), &out, out.load.model);
    }
    // What is written must read back (`report`, `merge` again).
    super::figures::check(&out).map_err(MergeError::Unreadable)?;
    Ok(out)
}

/// The thresholds a report was judged against (metric and condition as written).
fn thresholds_of(r: &Report) -> Thresholds {
    Thresholds {
        list: r
            .thresholds
            .iter()
            .filter_map(|t| {
                let (op, limit) = parse_condition(&t.condition).ok()?;
                Some(Threshold {
                    metric: At {
                        value: t.metric.clone(),
                        loc: Loc::default(),
                    },
                    condition: t.condition.clone(),
                    op,
                    limit,
                })
            })
            .collect(),
        abort_on_fail: false,
    }
}
