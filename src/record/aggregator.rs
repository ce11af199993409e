//! Merges the workers' interval data: the run's totals and one summary per interval, both
//! exact. An interval is summarised a grace period after it ends (for the live progress
//! line); data that arrives later is merged into its histograms and its summary redone.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::time::Instant;

use super::histogram::{decode, encode};
use super::interval::IntervalData;
use super::recorder::{Flush, INTERVAL};
use crate::grpc::status::code_name;

/// How long after an interval ends its data is waited for before it is summarised.
const CLOSE_GRACE: Duration = Duration::from_millis(1500);

/// One interval of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalSummary {
    /// Seconds from the start of the measured part to the start of this interval.
    pub t_seconds: u64,
    /// Requests completed in the interval.
    pub requests: u64,
    /// Of them, OK.
    pub ok: u64,
    /// Of them, not OK.
    pub errors: u64,
    /// Median latency (corrected in the open model).
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// The slowest.
    pub max_us: u64,
    /// gRPC code name → count, for the codes seen in this interval.
    #[serde(default)]
    pub status_codes: BTreeMap<String, u64>,
    /// Streaming kinds: messages sent and received in this interval.
    #[serde(default)]
    pub messages_sent: u64,
    #[serde(default)]
    /// Streaming kinds: messages received in this interval.
    pub messages_received: u64,
    /// Requests sent more than 1 ms after their intended time in this interval (open model).
    #[serde(default)]
    pub sent_late: u64,
    /// The interval's (uncorrected) histogram, compressed, that its percentiles come from:
    /// merged reports compute their interval percentiles from it (absent in reports written
    /// before it was kept; those merge to the inputs' highest percentile, an upper bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdr: Option<String>,
}

impl IntervalSummary {
    fn of(t: u64, d: &IntervalData) -> Self {
        let h = &d.uncorrected;
        let q = |p| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(p)
            }
        };
        Self {
            t_seconds: t,
            requests: d.requests(),
            ok: d.ok(),
            errors: d.errors_count(),
            p50_us: q(0.5),
            p99_us: q(0.99),
            max_us: if h.is_empty() { 0 } else { h.max() },
            status_codes: d
                .status
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(code, n)| (code_name(code as u8).to_string(), *n))
                .collect(),
            messages_sent: d.messages_sent,
            sent_late: d.sent_late,
            hdr: None,
            messages_received: d.messages_received,
        }
    }

    pub(crate) fn empty(t: u64) -> Self {
        Self::of(t, &IntervalData::default())
    }
}

/// An interval's histograms, kept encoded (a few hundred bytes each) so a long run's
/// intervals cost little memory; for interval logs and plots.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IntervalHistograms {
    /// Seconds from the start of the measured part.
    pub t_seconds: u64,
    /// Empty in the closed model.
    pub corrected: String,
    /// From each request's send.
    pub uncorrected: String,
    /// The corrected histogram's highest value.
    pub corrected_max_us: u64,
    /// The uncorrected histogram's highest value.
    pub uncorrected_max_us: u64,
}

/// What the live progress line shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Time since the measured part began.
    pub elapsed: Duration,
    /// Requests completed so far.
    pub requests: u64,
    /// Of them, not OK.
    pub errors: u64,
    /// Completed requests per second in the last closed interval.
    pub rps: f64,
    /// The last closed interval's p99.
    pub p99_us: u64,
}

/// The merged result of a run.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// The whole run.
    pub totals: IntervalData,
    /// Each interval, as the report shows it.
    pub intervals: Vec<IntervalSummary>,
    /// Each interval's histograms.
    pub histograms: Vec<IntervalHistograms>,
}

/// A closed interval: its merged data, encoded.
#[derive(Debug)]
struct Closed {
    summary: IntervalSummary,
    histograms: IntervalHistograms,
}

impl Closed {
    fn of(t: u64, d: &IntervalData) -> Self {
        let uncorrected = encode(&d.uncorrected);
        let mut summary = IntervalSummary::of(t, d);
        summary.hdr = Some(uncorrected.clone());
        Self {
            summary,
            histograms: IntervalHistograms {
                t_seconds: t,
                corrected: if d.corrected.is_empty() {
                    String::new()
                } else {
                    encode(&d.corrected)
                },
                uncorrected,
                corrected_max_us: if d.corrected.is_empty() {
                    0
                } else {
                    d.corrected.max()
                },
                uncorrected_max_us: if d.uncorrected.is_empty() {
                    0
                } else {
                    d.uncorrected.max()
                },
            },
        }
    }

    /// Re-opens the interval's data to merge late arrivals (rare: a request that finished
    /// more than the grace period before its worker handed it over).
    fn reopen(&self) -> IntervalData {
        let restore = |text: &str| -> Histogram<u64> {
            let mut h = super::histogram::new_histogram();
            if let Ok(d) = decode(text) {
                let _ = h.add(&d);
            }
            h
        };
        let s = &self.summary;
        let mut data = IntervalData {
            corrected: restore(&self.histograms.corrected),
            uncorrected: restore(&self.histograms.uncorrected),
            sent_late: s.sent_late,
            ..IntervalData::default()
        };
        for (name, n) in &s.status_codes {
            if let Some(code) = crate::grpc::status::CODE_NAMES
                .iter()
                .position(|c| c == name)
            {
                data.status[code] = *n;
            }
        }
        data
    }
}

#[derive(Debug)]
/// Merges the generator threads' flushes into the run's totals and intervals, closing an
/// interval once every thread has flushed it (or after a grace).
pub struct Aggregator {
    origin: Instant,
    open: BTreeMap<u64, IntervalData>,
    closed: BTreeMap<u64, Closed>,
    totals: IntervalData,
}

impl Aggregator {
    /// An aggregator whose interval 0 starts at `origin`.
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            totals: IntervalData::default(),
        }
    }

    /// Takes one thread's data for one interval.
    pub fn accept(&mut self, f: Flush) {
        self.totals.merge(&f.data);
        if let Some(closed) = self.closed.get(&f.interval) {
            let mut data = closed.reopen();
            data.merge(&f.data);
            self.closed
                .insert(f.interval, Closed::of(f.interval, &data));
        } else {
            self.open.entry(f.interval).or_default().merge(&f.data);
        }
    }

    /// Summarises every open interval that ended more than the grace period before `now`.
    pub fn close_due(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.origin);
        while let Some((&idx, _)) = self.open.first_key_value() {
            let end = INTERVAL * (idx as u32 + 1) + CLOSE_GRACE;
            if elapsed < end {
                break;
            }
            self.close_first();
        }
    }

    fn close_first(&mut self) {
        if let Some((idx, data)) = self.open.pop_first() {
            self.closed.insert(idx, Closed::of(idx, &data));
        }
    }

    /// What the progress line shows at `now`.
    pub fn progress(&self, now: Instant) -> Progress {
        let last = self.closed.last_key_value().map(|(_, c)| &c.summary);
        Progress {
            elapsed: now.saturating_duration_since(self.origin),
            requests: self.totals.requests(),
            errors: self.totals.errors_count(),
            rps: last.map_or(0.0, |s| s.requests as f64 / INTERVAL.as_secs_f64()),
            p99_us: last.map_or(0, |s| s.p99_us),
        }
    }

    /// The totals so far and the closed intervals (for thresholds checked during a run).
    /// The totals so far and the intervals closed after the first `seen` (what a check has
    /// not been given yet): a check per interval costs the same in the first minute of a run
    /// as in its 24th hour.
    pub fn snapshot(&self, seen: usize) -> Aggregate {
        let new = || self.closed.values().skip(seen);
        Aggregate {
            totals: self.totals.clone(),
            intervals: new().map(|c| c.summary.clone()).collect(),
            histograms: new().map(|c| c.histograms.clone()).collect(),
        }
    }

    /// Closes every interval and returns the result. Intervals with no requests between
    /// the first and the last are kept (as zeros): a stall is a fact worth plotting.
    pub fn finish(mut self) -> Aggregate {
        while !self.open.is_empty() {
            self.close_first();
        }
        let last = self.closed.last_key_value().map_or(0, |(k, _)| *k + 1);
        let (mut intervals, mut histograms) = (Vec::new(), Vec::new());
        for i in 0..last {
            match self.closed.remove(&i) {
                Some(c) => {
                    intervals.push(c.summary);
                    histograms.push(c.histograms);
                }
                None => intervals.push(IntervalSummary::empty(i)),
            }
        }
        Aggregate {
            totals: self.totals,
            intervals,
            histograms,
        }
    }

    /// Runs until every worker's sender is dropped, publishing progress each quarter
    /// interval and calling `check` each time intervals close, with the totals so far and the
    /// intervals (and their histograms) that just closed.
    pub async fn run(
        mut self,
        mut rx: UnboundedReceiver<Flush>,
        progress: watch::Sender<Progress>,
        mut check: impl FnMut(&Aggregate, Duration) + Send,
    ) -> Aggregate {
        let mut tick = tokio::time::interval_at(self.origin + INTERVAL, INTERVAL / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(f) => self.accept(f),
                    None => break,
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    let closed_before = self.closed.len();
                    self.close_due(now);
                    let _ = progress.send(self.progress(now));
                    if self.closed.len() != closed_before {
                        check(
                            &self.snapshot(closed_before),
                            now.saturating_duration_since(self.origin),
                        );
                    }
                }
            }
        }
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flush(interval: u64, values: &[u64]) -> Flush {
        let mut data = IntervalData::default();
        for &v in values {
            data.record(
                &crate::record::Finished {
                    corrected_us: Some(v),
                    uncorrected_us: v,
                    code: 0,
                    message: None,
                    late: false,
                    backend: 0,
                    method: 0,
                },
                crate::record::Tallies {
                    by_backend: true,
                    by_method: false,
                },
            );
        }
        Flush { interval, data }
    }

    #[test]
    fn intervals_are_summarised_and_gaps_kept() {
        let origin = Instant::now();
        let mut a = Aggregator::new(origin);
        a.accept(flush(0, &[10, 20, 30]));
        a.accept(flush(0, &[40]));
        a.accept(flush(2, &[100]));
        let out = a.finish();
        assert_eq!(out.totals.requests(), 5);
        assert_eq!(out.intervals.len(), 3);
        assert_eq!(
            (out.intervals[0].requests, out.intervals[0].max_us),
            (4, 40)
        );
        assert_eq!(out.intervals[0].status_codes.get("OK"), Some(&4));
        assert_eq!(out.intervals[1].requests, 0);
        assert_eq!(out.intervals[2].p50_us, 100);
        assert_eq!(
            out.histograms.len(),
            2,
            "histograms for the intervals that had data"
        );
        assert_eq!(decode(&out.histograms[0].uncorrected).unwrap().len(), 4);
    }

    #[test]
    fn late_data_is_merged_into_its_closed_interval() {
        let origin = Instant::now();
        let mut a = Aggregator::new(origin);
        a.accept(flush(0, &[10]));
        a.close_due(origin + Duration::from_secs(5));
        a.accept(flush(0, &[1_000_000]));
        let out = a.finish();
        assert_eq!(out.totals.requests(), 2);
        assert_eq!(out.intervals[0].requests, 2);
        assert_eq!(
            out.intervals[0].max_us,
            out.totals.uncorrected.highest_equivalent(1_000_000)
        );
        assert_eq!(decode(&out.histograms[0].corrected).unwrap().len(), 2);
    }
}
