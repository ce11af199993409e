//! `[capacity]`: search for the highest rate the service sustains within its SLO, instead of
//! running at one rate. Read and checked here; the search itself is `run::capacity_search`,
//! run step by step by `run::capacity`.

use std::time::Duration;

use super::reader::TableReader;
use crate::vocabulary::capacity::Capacity;
use crate::vocabulary::conditions::{parse_condition, Threshold, Thresholds};
use crate::vocabulary::defaults::*;
use crate::vocabulary::source::At;

/// Reads `[capacity]`; problems are reported on the reader's context.
pub fn read(t: &TableReader<'_, '_, '_>) -> Option<Capacity> {
    let ctx = t.ctx();
    let slo = read_slo(t);
    let start_rate = t
        .number("start_rate", true)
        .map_or(DEFAULT_START_RATE, |r| r.value);
    let growth = t.number("growth", true).map_or(Some(DEFAULT_GROWTH), |g| {
        in_range(
            t,
            "growth",
            g,
            1.05,
            10.0,
            "e.g. 2 (each passing step doubles the rate)",
        )
    });
    let precision = t
        .number("precision", true)
        .map_or(Some(DEFAULT_PRECISION), |p| {
            in_range(t, "precision", p, 0.001, 0.5, "a share, e.g. 0.02 for 2%")
        });
    let step = t.duration("step", true).map_or(DEFAULT_STEP, |d| d.value);
    let settle = t
        .duration("settle", false)
        .map_or(DEFAULT_SETTLE, |d| d.value);
    let max_rate = t
        .number("max_rate", true)
        .map_or(DEFAULT_MAX_RATE, |r| r.value);
    let max_duration = t
        .duration("max_duration", true)
        .map_or(DEFAULT_MAX_DURATION, |d| d.value);
    let confirm = t.duration("confirm", false).map_or(step, |d| d.value);
    let mut ok = true;
    let mut refuse = |key: &str, message: String| {
        ctx.report_at(t.loc(), &t.key_path(key), message);
        ok = false;
    };
    if step < Duration::from_secs(2) || step.subsec_nanos() != 0 {
        refuse("step", format!("{step:?}: a step is whole seconds, at least 2 (its figures are whole one-second intervals), e.g. \"10s\""));
    }
    if settle.subsec_nanos() != 0 || settle + Duration::from_secs(1) > step {
        refuse("settle", format!("{settle:?}: whole seconds, leaving at least 1 s of the step to judge, e.g. \"2s\" with step = \"10s\""));
    }
    if confirm.subsec_nanos() != 0 || (!confirm.is_zero() && confirm <= settle) {
        refuse(
            "confirm",
            format!(
                "{confirm:?}: whole seconds longer than `settle`, or \"0s\" for no confirmation"
            ),
        );
    }
    if max_rate < start_rate {
        refuse(
            "max_rate",
            format!("{max_rate} is below start_rate {start_rate}"),
        );
    }
    if max_duration < step * 2 {
        refuse("max_duration", format!("{max_duration:?} is shorter than two steps ({:?}): a search needs at least a passing and a failing step", step * 2));
    }
    (ok && !slo.list.is_empty()).then_some(Capacity {
        slo,
        start_rate,
        growth: growth?,
        precision: precision?,
        step,
        settle,
        max_rate,
        max_duration,
        confirm,
    })
}

fn in_range(
    t: &TableReader<'_, '_, '_>,
    key: &'static str,
    v: At<f64>,
    low: f64,
    high: f64,
    example: &str,
) -> Option<f64> {
    if (low..=high).contains(&v.value) {
        return Some(v.value);
    }
    t.ctx().report_at(
        v.loc,
        &t.key_path(key),
        format!(
            "{} is out of range: from {low} to {high}, {example}",
            v.value
        ),
    );
    None
}

/// `slo = ["latency.p99 < 50ms", "error_rate < 0.1%"]`: a metric and a condition each, in
/// the language of `[thresholds]`.
fn read_slo(t: &TableReader<'_, '_, '_>) -> Thresholds {
    let mut list = Vec::new();
    let Some(items) = t.string_list("slo") else {
        if !t.has("slo") {
            t.ctx().report_at(
                t.loc(),
                &t.key_path("slo"),
                "missing: the conditions each step must meet, e.g. slo = [\"latency.p99 < 50ms\", \"error_rate < 0.1%\"]".to_string(),
            );
        }
        return Thresholds::default();
    };
    if items.is_empty() {
        t.ctx().report_at(
            t.loc(),
            &t.key_path("slo"),
            "empty: give at least one condition, e.g. \"latency.p99 < 50ms\"".to_string(),
        );
    }
    for item in items {
        let text = item.value.trim();
        let Some((metric, condition)) = text.split_once(char::is_whitespace) else {
            t.ctx().report_at(
                item.loc,
                &t.key_path("slo"),
                format!("\"{text}\": write a metric and a condition, e.g. \"latency.p99 < 50ms\""),
            );
            continue;
        };
        match parse_condition(condition) {
            Ok((op, limit)) => list.push(Threshold {
                metric: At {
                    value: metric.to_string(),
                    loc: item.loc,
                },
                condition: condition.trim().to_string(),
                op,
                limit,
            }),
            Err(why) => t
                .ctx()
                .report_at(item.loc, &t.key_path("slo"), why.to_string()),
        }
    }
    Thresholds {
        list,
        abort_on_fail: false,
    }
}
