//! The per-interval series as CSV, one row per second of the measured part.

use std::fmt::Write;

use super::schema::Report;

/// The report's intervals as CSV.
pub fn render(report: &Report) -> String {
    let mut out = String::from("t_seconds,requests,ok,errors,rps,p50_us,p99_us,max_us\n");
    for i in &report.intervals {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            i.t_seconds, i.requests, i.ok, i.errors, i.requests, i.p50_us, i.p99_us, i.max_us
        );
    }
    out
}
