//! Merges the workers' interval data: the run's totals (exact) and one summary per interval.
//! An interval is closed a grace period after it ends; data that arrives later still counts
//! in the totals and in the interval's counts, but not in its percentiles.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::time::Instant;

use super::interval::IntervalData;
use super::recorder::{Flush, INTERVAL};

/// How long after an interval ends its data is waited for before it is summarised.
const CLOSE_GRACE: Duration = Duration::from_millis(1500);

/// One interval of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalSummary {
    /// Seconds from the start of the measured part to the start of this interval.
    pub t_seconds: u64,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
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
        }
    }
}

/// What the live progress line shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub elapsed: Duration,
    pub requests: u64,
    pub errors: u64,
    /// Completed requests per second in the last closed interval.
    pub rps: f64,
    pub p99_us: u64,
}

/// The merged result of a run.
#[derive(Debug, Clone)]
pub struct Aggregate {
    pub totals: IntervalData,
    pub intervals: Vec<IntervalSummary>,
}

pub struct Aggregator {
    origin: Instant,
    open: BTreeMap<u64, IntervalData>,
    closed: BTreeMap<u64, IntervalSummary>,
    totals: IntervalData,
}

impl Aggregator {
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            totals: IntervalData::default(),
        }
    }

    pub fn accept(&mut self, f: Flush) {
        self.totals.merge(&f.data);
        if let Some(summary) = self.closed.get_mut(&f.interval) {
            summary.requests += f.data.requests();
            summary.ok += f.data.ok();
            summary.errors += f.data.errors_count();
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
            self.closed.insert(idx, IntervalSummary::of(idx, &data));
        }
    }

    pub fn progress(&self, now: Instant) -> Progress {
        let last = self.closed.last_key_value().map(|(_, s)| s);
        Progress {
            elapsed: now.saturating_duration_since(self.origin),
            requests: self.totals.requests(),
            errors: self.totals.errors_count(),
            rps: last.map_or(0.0, |s| s.requests as f64 / INTERVAL.as_secs_f64()),
            p99_us: last.map_or(0, |s| s.p99_us),
        }
    }

    /// Closes every interval and returns the result. Intervals with no requests between
    /// the first and the last are kept (as zeros): a stall is a fact worth plotting.
    pub fn finish(mut self) -> Aggregate {
        while !self.open.is_empty() {
            self.close_first();
        }
        let last = self.closed.last_key_value().map_or(0, |(k, _)| *k + 1);
        let intervals = (0..last)
            .map(|i| {
                self.closed.remove(&i).unwrap_or(IntervalSummary {
                    t_seconds: i,
                    requests: 0,
                    ok: 0,
                    errors: 0,
                    p50_us: 0,
                    p99_us: 0,
                    max_us: 0,
                })
            })
            .collect();
        Aggregate {
            totals: self.totals,
            intervals,
        }
    }

    /// Runs until every worker's sender is dropped, publishing progress each interval.
    pub async fn run(
        mut self,
        mut rx: UnboundedReceiver<Flush>,
        progress: watch::Sender<Progress>,
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
                    self.close_due(now);
                    let _ = progress.send(self.progress(now));
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
            data.record(Some(v), v, 0, None, false);
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
        assert_eq!(out.intervals[1].requests, 0);
        assert_eq!(out.intervals[2].p50_us, 100);
    }

    #[test]
    fn late_data_counts_in_totals_and_interval_counts() {
        let origin = Instant::now();
        let mut a = Aggregator::new(origin);
        a.accept(flush(0, &[10]));
        a.close_due(origin + Duration::from_secs(5));
        a.accept(flush(0, &[1_000_000]));
        let out = a.finish();
        assert_eq!(out.totals.requests(), 2);
        assert_eq!(
            out.totals.uncorrected.max(),
            out.totals.uncorrected.highest_equivalent(1_000_000)
        );
        assert_eq!(out.intervals[0].requests, 2);
        assert_eq!(
            out.intervals[0].max_us, 10,
            "closed percentiles are not reopened"
        );
    }
}
