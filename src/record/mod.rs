//! Latency recording: per-thread HDR histograms, handed over once per interval and merged.

pub mod aggregator;
pub mod clients;
pub mod histogram;
pub mod interval;
pub mod recorder;
pub mod tls;

pub use aggregator::{Aggregate, Aggregator, IntervalSummary, Progress};
pub use histogram::LatencySummary;
pub use interval::{BackendTally, Finished, IntervalData, Tallies};
pub use recorder::{Flush, SharedRecorder, ThreadRecorder, INTERVAL};
