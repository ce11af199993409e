//! The figures of a report read from a file, checked: a report is an input like any other,
//! and a forged or damaged one (a start time that is not a time, a negative duration, counts
//! past what JSON holds exactly, an interval whose histogram counts other calls than its
//! own) is refused naming the field, rather than merged into figures nobody can read back.
//! `merge` checks what it made by the same rules before writing it.

use super::schema::Report;
use crate::record::histogram::decode;

/// Counts a report holds exactly: JSON numbers are doubles.
const MAX_COUNT: u64 = 1 << 53;

/// The longest run a report can describe (a merged one included): ten years.
const MAX_DURATION_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;

/// `Err` names the first field that cannot be so, and why.
pub fn check(r: &Report) -> Result<(), String> {
    let started = time::OffsetDateTime::parse(
        &r.started_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|e| {
        format!(
            "`started_at` \"{}\" is not an RFC 3339 time ({e})",
            cut(&r.started_at)
        )
    })?;
    if started.year() < 1970 {
        return Err(format!("`started_at` {} is before 1970", r.started_at));
    }
    if !(r.duration_seconds.is_finite()
        && (0.0..=MAX_DURATION_SECONDS).contains(&r.duration_seconds))
    {
        return Err(format!(
            "`duration_seconds` {} is not a duration from 0 to ten years",
            r.duration_seconds
        ));
    }
    let t = &r.totals;
    for (field, n) in [
        ("totals.requests", t.requests),
        ("totals.ok", t.ok),
        ("totals.errors", t.errors),
        ("totals.sent_late", t.sent_late),
    ] {
        count(field, n)?;
    }
    if t.ok.checked_add(t.errors) != Some(t.requests) {
        return Err(format!(
            "`totals.ok` {} and `totals.errors` {} do not add up to `totals.requests` {}",
            t.ok, t.errors, t.requests
        ));
    }
    rate("totals.rps", t.rps)?;
    rate("totals.error_rate", t.error_rate)?;
    if t.error_rate > 1.0 {
        return Err(format!("`totals.error_rate` {} is above 1", t.error_rate));
    }
    if let Some(rps) = r.load.rate {
        rate("load.rate", rps)?;
    }
    for (i, interval) in r.intervals.iter().enumerate() {
        count(&format!("intervals[{i}].requests"), interval.requests)?;
        if let Some(hdr) = &interval.hdr {
            let h = decode(hdr).map_err(|why| format!("`intervals[{i}].hdr`: {why}"))?;
            if h.len() != interval.requests {
                return Err(format!(
                    "`intervals[{i}].hdr` counts {} calls but the interval has {} requests",
                    h.len(),
                    interval.requests
                ));
            }
        }
    }
    let backends = r.backends.iter().map(|b| (b.requests, b.ok, b.errors));
    parts_add_up("backends", backends)?;
    let methods = r.methods.iter().map(|m| (m.requests, m.ok, m.errors));
    let in_methods = parts_add_up("methods", methods)?;
    if !r.methods.is_empty() && in_methods != r.totals.requests {
        return Err(format!(
            "`methods` add up to {in_methods} requests but `totals.requests` is {}",
            r.totals.requests
        ));
    }
    Ok(())
}

/// Each part's (requests, ok, errors) of `list` checked: ok and errors add up to requests.
/// Their requests summed.
fn parts_add_up(list: &str, parts: impl Iterator<Item = (u64, u64, u64)>) -> Result<u64, String> {
    let mut sum = 0u64;
    for (i, (requests, ok, errors)) in parts.enumerate() {
        count(&format!("{list}[{i}].requests"), requests)?;
        if ok.checked_add(errors) != Some(requests) {
            return Err(format!(
                "`{list}[{i}]`: ok {ok} and errors {errors} do not add up to requests {requests}"
            ));
        }
        sum = sum.saturating_add(requests);
    }
    Ok(sum)
}

fn count(field: &str, n: u64) -> Result<(), String> {
    if n >= MAX_COUNT {
        return Err(format!(
            "`{field}` {n} is more than a report holds exactly (2^53)"
        ));
    }
    Ok(())
}

fn rate(field: &str, x: f64) -> Result<(), String> {
    if !(x.is_finite() && x >= 0.0) {
        return Err(format!("`{field}` {x} is not a finite number of 0 or more"));
    }
    Ok(())
}

fn cut(s: &str) -> String {
    s.chars().take(40).collect()
}
