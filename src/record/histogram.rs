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
    /// Values recorded.
    pub count: u64,
    /// The smallest.
    pub min_us: u64,
    /// The mean.
    pub mean_us: f64,
    /// The standard deviation.
    pub stddev_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// 99.99th percentile.
    pub p9999_us: u64,
    /// The largest.
    pub max_us: u64,
    /// The histogram, HdrHistogram V2 compressed (deflate), base64: readable by any HDR tool.
    pub hdr: String,
}

impl LatencySummary {
    /// The summary of `h`.
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

/// HdrHistogram V2 cookies (uncompressed, deflate) and the uncompressed header's size.
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;
const V2_HEADER_LEN: usize = 40;
/// The most a histogram may inflate to. One of 3 significant figures up to an hour is under
/// 1 MB even with every bucket counted.
const MAX_INFLATED: u64 = 16 * 1024 * 1024;

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Decodes `encode`'s output (or any HdrHistogram V2 histogram, compressed or not).
///
/// The declared lengths are checked against the bytes present before anything is
/// allocated: the hdrhistogram crate trusts them, so a 52-character value could make it
/// allocate 4 GB. Inflating is bounded too.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("not base64: {e}"))?;
    let cookie = be_u32(&bytes, 0).ok_or("too short for an HdrHistogram")?;
    let plain = match cookie {
        V2_COOKIE => bytes,
        V2_COMPRESSED_COOKIE => {
            let declared = be_u32(&bytes, 4).ok_or("too short for an HdrHistogram")? as usize;
            let present = bytes.len() - 8;
            if declared > present {
                return Err(format!(
                    "declares {declared} compressed bytes but holds {present}"
                ));
            }
            let mut plain = Vec::new();
            let inflater = flate2::read::ZlibDecoder::new(&bytes[8..8 + declared]);
            std::io::Read::read_to_end(
                &mut std::io::Read::take(inflater, MAX_INFLATED + 1),
                &mut plain,
            )
            .map_err(|e| format!("not deflate data: {e}"))?;
            if plain.len() as u64 > MAX_INFLATED {
                return Err(format!("inflates to more than {MAX_INFLATED} bytes"));
            }
            plain
        }
        other => return Err(format!("not an HdrHistogram V2 (cookie {other:#x})")),
    };
    if be_u32(&plain, 0) != Some(V2_COOKIE) || plain.len() < V2_HEADER_LEN {
        return Err("not an HdrHistogram V2: bad inner header".into());
    }
    let declared = be_u32(&plain, 4).unwrap_or(u32::MAX) as usize;
    let present = plain.len() - V2_HEADER_LEN;
    if declared > present {
        return Err(format!(
            "declares {declared} bytes of counts but holds {present}"
        ));
    }
    let mut h: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut plain.as_slice())
        .map_err(|e| format!("not an HdrHistogram: {e:?}"))?;
    // A decoded histogram covers only the values it holds; merges add others into it, and
    // one that cannot grow refuses them (a merge lost an input's latencies that way).
    h.auto(true);
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_decoded_histogram_takes_values_beyond_its_own() {
        let encoded = |values: &[u64]| {
            let mut h = new_histogram();
            for &v in values {
                record(&mut h, v);
            }
            LatencySummary::of(&h).hdr
        };
        let mut small = decode(&encoded(&[1_000, 2_000])).unwrap();
        let large = decode(&encoded(&[5_000_000, 900_000_000])).unwrap();
        small.add(&large).expect("a decoded histogram grows");
        assert_eq!(small.len(), 4);
        assert!(small.max() >= 899_000_000);
    }

    #[test]
    fn declared_lengths_beyond_the_bytes_are_refused_before_allocating() {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        // The 52 characters: a compressed cookie claiming 4 GB.
        let mut bomb = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
        bomb.extend_from_slice(&u32::MAX.to_be_bytes());
        bomb.extend_from_slice(&[0x78, 0x9c]);
        assert!(decode(&b64(&bomb)).unwrap_err().contains("declares"));
        // An uncompressed header claiming 4 GB of counts.
        let mut plain = V2_COOKIE.to_be_bytes().to_vec();
        plain.extend_from_slice(&u32::MAX.to_be_bytes());
        plain.extend_from_slice(&[0; 4]);
        plain.extend_from_slice(&3u32.to_be_bytes());
        plain.extend_from_slice(&1u64.to_be_bytes());
        plain.extend_from_slice(&3_600_000_000u64.to_be_bytes());
        plain.extend_from_slice(&1f64.to_be_bytes());
        assert!(decode(&b64(&plain)).unwrap_err().contains("declares"));
        for short in [&b""[..], &[0x1c], &V2_COMPRESSED_COOKIE.to_be_bytes()] {
            assert!(decode(&b64(short)).is_err());
        }
        // An honest histogram still decodes, compressed or not.
        let mut h = new_histogram();
        record(&mut h, 1234);
        assert_eq!(decode(&encode(&h)).unwrap().len(), 1);
        let mut raw = Vec::new();
        hdrhistogram::serialization::V2Serializer::new()
            .serialize(&h, &mut raw)
            .unwrap();
        assert_eq!(decode(&b64(&raw)).unwrap().len(), 1);
    }

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
