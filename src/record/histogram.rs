//! HDR histograms of latency in microseconds, and their summaries for reports.

use base64::Engine;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies above this (one hour) are recorded as this: a clamp, not a loss.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A histogram that grows as values need (an idle worker's stays small).
pub fn new_histogram() -> Histogram<u64> {
    // 3 significant figures: 0.1% resolution, HdrHistogram's usual setting.
    let mut h = Histogram::new(3).expect("3 significant figures is a valid setting");
    h.auto(true);
    h
}

/// Records one latency; never fails (auto-resizing, clamped to the maximum).
#[inline]
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    // With auto-resize on and a clamp, `record` has no error left to return.
    let _ = h.record(micros.min(MAX_LATENCY_US));
}

/// A latency block as reports show it (microseconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub stddev_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
    /// The histogram, HdrHistogram V2 compressed (deflate), base64: readable by any HDR tool.
    pub hdr: String,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        let empty = h.is_empty();
        let q = |p: f64| if empty { 0 } else { h.value_at_quantile(p) };
        Self {
            count: h.len(),
            min_us: if empty { 0 } else { h.min() },
            mean_us: round2(if empty { 0.0 } else { h.mean() }),
            stddev_us: round2(if empty { 0.0 } else { h.stdev() }),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            p9999_us: q(0.9999),
            max_us: if empty { 0 } else { h.max() },
            hdr: encode(h),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// HdrHistogram V2 deflate encoding, base64 (the form hlog files and other tools read).
pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    // Serialising into a Vec cannot fail for a valid histogram.
    if V2DeflateSerializer::new().serialize(h, &mut buf).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes `encode`'s output.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("not base64: {e}"))?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("not an HdrHistogram: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn merged_percentiles_equal_those_of_one_histogram_of_all_values(
            parts in prop::collection::vec(prop::collection::vec(0u64..10_000_000, 0..300), 1..8),
        ) {
            let mut merged = new_histogram();
            let mut all = new_histogram();
            for part in &parts {
                let mut h = new_histogram();
                for &v in part {
                    record(&mut h, v);
                    record(&mut all, v);
                }
                merged.add(&h).unwrap();
            }
            // The encoded form may differ (the trackable range each grew to); every
            // statistic, and the statistics of the decoded histogram, may not.
            let stats = |h: &Histogram<u64>| LatencySummary { hdr: String::new(), ..LatencySummary::of(h) };
            prop_assert_eq!(stats(&merged), stats(&all));
            prop_assert_eq!(stats(&decode(&encode(&merged)).unwrap()), stats(&all));
        }

        #[test]
        fn encoding_round_trips(values in prop::collection::vec(0u64..100_000_000, 0..500)) {
            let mut h = new_histogram();
            for v in values { record(&mut h, v); }
            let back = decode(&encode(&h)).unwrap();
            prop_assert_eq!(LatencySummary::of(&back), LatencySummary::of(&h));
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_histogram();
        for v in 1..=1000 {
            record(&mut h, v);
        }
        let s = LatencySummary::of(&h);
        assert_eq!((s.count, s.min_us, s.max_us), (1000, 1, 1000));
        assert_eq!(s.p50_us, 500);
        assert_eq!(s.p99_us, 990);
        assert!((s.mean_us - 500.5).abs() < 0.01);
    }

    #[test]
    fn huge_values_are_clamped_not_lost() {
        let mut h = new_histogram();
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 1);
        assert!(h.max() >= MAX_LATENCY_US - MAX_LATENCY_US / 1000);
    }
}
