//! HdrHistogram interval logs (format 1.3, as HdrHistogram's own tools write and read them):
//! one V2-compressed histogram per interval, tagged `corrected` or `uncorrected`.

use std::fmt::Write;

use crate::record::aggregator::IntervalHistograms;
use crate::record::INTERVAL;

/// The log's text. `start_unix` is the start of the measured part in seconds since the epoch;
/// interval timestamps are relative to it (it is also the log's BaseTime).
pub fn render(start_unix: f64, start_rfc3339: &str, intervals: &[IntervalHistograms]) -> String {
    let mut out = String::new();
    let length = INTERVAL.as_secs_f64();
    let _ = writeln!(out, "#[Histogram log format version 1.3]");
    let _ = writeln!(
        out,
        "#[StartTime: {start_unix:.3} (seconds since epoch), {start_rfc3339}]"
    );
    let _ = writeln!(out, "#[BaseTime: {start_unix:.3} (seconds since epoch)]");
    let _ = writeln!(
        out,
        "#[Values are latencies in microseconds; Interval_Max is in seconds]"
    );
    let _ = writeln!(
        out,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    );
    for h in intervals {
        let t = h.t_seconds as f64 * length;
        if !h.corrected.is_empty() {
            let _ = writeln!(
                out,
                "Tag=corrected,{t:.3},{length:.3},{:.6},{}",
                h.corrected_max_us as f64 / 1e6,
                h.corrected
            );
        }
        let _ = writeln!(
            out,
            "Tag=uncorrected,{t:.3},{length:.3},{:.6},{}",
            h.uncorrected_max_us as f64 / 1e6,
            h.uncorrected
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_tagged_lines() {
        let h = IntervalHistograms {
            t_seconds: 2,
            corrected: "HISTc".into(),
            uncorrected: "HISTu".into(),
            corrected_max_us: 1500,
            uncorrected_max_us: 900,
        };
        let text = render(1700000000.5, "2023-11-14T22:13:20.5Z", &[h]);
        assert!(
            text.starts_with("#[Histogram log format version 1.3]\n#[StartTime: 1700000000.500 ")
        );
        assert!(text.contains("\nTag=corrected,2.000,1.000,0.001500,HISTc\n"));
        assert!(text.contains("\nTag=uncorrected,2.000,1.000,0.000900,HISTu\n"));
    }
}
