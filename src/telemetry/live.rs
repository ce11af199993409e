//! A run's own metrics while it runs (`run --metrics-listen`): the agent's scheduled-run
//! metrics — same names, help and labels — plus `shard`, and `loadagent_node_info`, so a
//! PodMonitor scrapes every shard of a distributed run and the load-runs dashboard (which
//! joins on the node info and sums over series) shows the run as one while it goes on.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use super::metrics::{
    Definition, ERRORS_TOTAL, LATENCY_BUCKETS, NODE_INFO, RUN_ASKED_RPS, RUN_LATENCY, RUN_REQUESTS,
    RUN_RPS,
};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::record::aggregator::IntervalHistograms;
use crate::record::histogram::decode;
use crate::record::{Aggregate, IntervalSummary};

/// Observes every value of an HDR histogram (microseconds) into a Prometheus histogram
/// (seconds): the one way run latencies become metrics, live and at a run's end.
pub fn observe_hdr(into: &prometheus::Histogram, h: &hdrhistogram::Histogram<u64>) {
    for v in h.iter_recorded() {
        let seconds = h.highest_equivalent(v.value_iterated_to()) as f64 / 1e6;
        for _ in 0..v.count_at_value() {
            into.observe(seconds);
        }
    }
}

/// The definition's labels and `shard`.
fn with_shard(d: &Definition) -> Vec<&'static str> {
    let mut labels = d.labels.to_vec();
    labels.push("shard");
    labels
}

/// The live metrics of one run.
#[derive(Debug)]
pub struct LiveRun {
    registry: Registry,
    errors: IntCounterVec,
    requests: IntCounterVec,
    latency: HistogramVec,
    rps: GaugeVec,
    asked_rps: GaugeVec,
    scenario: String,
    /// `I/N`, or empty for a run that is not a shard.
    shard: String,
    /// Intervals observed so far.
    observed: AtomicUsize,
}

impl LiveRun {
    /// The live series of a run of `scenario`, labelled with its shard and this node.
    pub fn new(
        scenario: &str,
        shard: String,
        node_info: &[String],
    ) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(RUN_REQUESTS.name, RUN_REQUESTS.help),
            &with_shard(&RUN_REQUESTS),
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(RUN_LATENCY.name, RUN_LATENCY.help)
                .buckets(LATENCY_BUCKETS.to_vec()),
            &with_shard(&RUN_LATENCY),
        )?;
        let rps = GaugeVec::new(Opts::new(RUN_RPS.name, RUN_RPS.help), &with_shard(&RUN_RPS))?;
        let asked_rps = GaugeVec::new(
            Opts::new(RUN_ASKED_RPS.name, RUN_ASKED_RPS.help),
            &with_shard(&RUN_ASKED_RPS),
        )?;
        let node = GaugeVec::new(Opts::new(NODE_INFO.name, NODE_INFO.help), NODE_INFO.labels)?;
        let errors = IntCounterVec::new(
            Opts::new(ERRORS_TOTAL.name, ERRORS_TOTAL.help),
            ERRORS_TOTAL.labels,
        )?;
        let labels: Vec<&str> = node_info.iter().map(String::as_str).collect();
        node.with_label_values(&labels).set(1.0);
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(rps.clone()),
            Box::new(asked_rps.clone()),
            Box::new(node),
            Box::new(errors.clone()),
        ] {
            registry.register(m)?;
        }
        Ok(Self {
            registry,
            errors,
            requests,
            latency,
            rps,
            asked_rps,
            scenario: scenario.to_string(),
            shard,
            observed: AtomicUsize::new(0),
        })
    }

    /// `loadagent_errors_total`, for the HTTP server to count what it sheds and times out.
    pub fn errors(&self) -> IntCounterVec {
        self.errors.clone()
    }

    /// The open model's asked rate (the shard's share of it).
    pub fn set_asked_rps(&self, rate: f64) {
        self.asked_rps
            .with_label_values(&[&self.scenario, &self.shard])
            .set(rate);
    }

    /// Adds the intervals that just closed: requests by status, latencies (corrected when
    /// the run has them, and uncorrected), and the last interval's rate.
    pub fn observe(&self, closed: &Aggregate) {
        self.observe_intervals(&closed.intervals, &closed.histograms);
    }

    /// Adds the intervals of a finished run not observed yet (those its end closed: they
    /// reach no interval hook), so the last figures served and pushed are the report's.
    pub fn observe_rest(&self, intervals: &[IntervalSummary], histograms: &[IntervalHistograms]) {
        let seen = self.observed.load(Ordering::Relaxed).min(intervals.len());
        self.observe_intervals(
            &intervals[seen..],
            histograms.get(seen..).unwrap_or_default(),
        );
    }

    fn observe_intervals(&self, intervals: &[IntervalSummary], histograms: &[IntervalHistograms]) {
        let (scenario, shard) = (self.scenario.as_str(), self.shard.as_str());
        self.observed.fetch_add(intervals.len(), Ordering::Relaxed);
        for (i, interval) in intervals.iter().enumerate() {
            for (status, n) in &interval.status_codes {
                self.requests
                    .with_label_values(&[scenario, status, shard])
                    .inc_by(*n);
            }
            self.rps
                .with_label_values(&[scenario, shard])
                .set(interval.requests as f64);
            let Some(h) = histograms.get(i) else {
                continue;
            };
            for (which, text) in [("corrected", &h.corrected), ("uncorrected", &h.uncorrected)] {
                if let Ok(hist) = decode(text) {
                    observe_hdr(
                        &self.latency.with_label_values(&[scenario, which, shard]),
                        &hist,
                    );
                }
            }
        }
    }

    /// Every series as it is now (what `render` writes, and remote write sends).
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
