//! Latency recording: per-worker HDR histograms, handed over once per interval and merged.

pub mod aggregator;
pub mod histogram;
pub mod interval;
pub mod recorder;

pub use aggregator::{Aggregate, Aggregator, IntervalSummary, Progress};
pub use histogram::LatencySummary;
pub use interval::IntervalData;
pub use recorder::{Flush, WorkerRecorder, INTERVAL};
