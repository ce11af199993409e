//! Thresholds against a report: metric names resolved on the report's real JSON shape (so
//! any numeric field can be named, and a misspelt one fails before the run), then evaluated.

use serde_json::Value;

use super::metric::number_at;
use super::schema::Report;
pub use super::schema::ThresholdResult;
use crate::vocabulary::conditions::{Limit, Threshold, Thresholds};
use crate::vocabulary::problems::{Problem, Problems};
use crate::vocabulary::{Model, Scenario};

const LATENCY_STATS: &[&str] = &[
    "p50", "p90", "p99", "p999", "p9999", "max", "min", "mean", "stddev",
];

/// The report path a metric name stands for. Shorthands: `rps`, `error_rate`, `requests`
/// (any `totals` field); `latency.p99` (the corrected histogram in the open model, the
/// uncorrected one in the closed); a latency statistic without its `_us`. `is_number` says
/// whether the report has a number at a path (the typed report when judging, the JSON of a
/// probe report when checking the scenario).
fn expand(
    metric: &str,
    model: Model,
    is_number: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>, String> {
    let mut path: Vec<String> = metric.split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(format!(
            "`{metric}` is not a metric path; write dotted names such as latency.p99"
        ));
    }
    if path.len() == 1 && !is_number(&path) {
        let in_totals = vec!["totals".to_string(), path[0].clone()];
        if is_number(&in_totals) {
            path = in_totals;
        }
    }
    // `latency.p99`, and a method's `methods.0.latency.p99`: the latency users wait.
    let n = path.len();
    if n >= 2 && path[n - 2] == "latency" {
        let which = if model == Model::Open {
            "corrected"
        } else {
            "uncorrected"
        };
        path.insert(n - 1, which.into());
    }
    if let Some(last) = path.last_mut() {
        if LATENCY_STATS.contains(&last.as_str()) {
            last.push_str("_us");
        }
    }
    Ok(path)
}

/// The path a metric stands for in the report `probe` (JSON, before a run), or why there is
/// none: what the report has where the name goes astray.
pub fn resolve(metric: &str, probe: &Value, model: Model) -> Result<Vec<String>, String> {
    let path = expand(metric, model, |p| {
        p.iter()
            .try_fold(probe, |cur, seg| member(cur, seg))
            .is_some_and(Value::is_number)
    })?;
    let mut cur = probe;
    for (i, seg) in path.iter().enumerate() {
        cur =
            match member(cur, seg) {
                Some(v) if v.is_null() && seg == "corrected" => return Err(
                    "the closed model has no corrected latency; name latency.uncorrected.… instead"
                        .into(),
                ),
                Some(v) => v,
                None => {
                    let here = if i == 0 {
                        "the report".to_string()
                    } else {
                        path[..i].join(".")
                    };
                    let mut keys: Vec<&str> = cur
                        .as_object()
                        .map(|o| o.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    keys.sort_unstable();
                    return Err(format!(
                        "`{metric}` is not in the report: {here} has no `{seg}`; it has: {}",
                        keys.join(", ")
                    ));
                }
            };
    }
    if !cur.is_number() {
        return Err(format!(
            "`{metric}` names {}, not a number",
            if cur.is_object() {
                "a group of metrics"
            } else {
                "a value that is not a number"
            }
        ));
    }
    Ok(path)
}

/// `seg` of `v`: a key of an object, or an index of a list (`methods.0`).
fn member<'v>(v: &'v Value, seg: &str) -> Option<&'v Value> {
    match v {
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => v.get(seg),
    }
}

fn is_latency(path: &[String]) -> bool {
    path.last().is_some_and(|s| s.ends_with("_us"))
}

/// Checks every threshold's metric and unit against the report this scenario will produce.
/// A capacity search's SLO conditions are checked the same way (each step's figures have the
/// report's shape).
pub fn check(scenario: &Scenario, probe: &Value) -> Result<(), Problems> {
    let mut list = Vec::new();
    let slo = scenario.capacity.iter().flat_map(|c| &c.slo.list);
    let keyed = scenario
        .thresholds
        .list
        .iter()
        .map(|th| (format!("thresholds.\"{}\"", th.metric.value), th))
        .chain(slo.map(|th| (format!("capacity.slo \"{}\"", th.metric.value), th)));
    for (key, th) in keyed {
        let problem = match resolve(&th.metric.value, probe, scenario.load.model()) {
            Err(why) => Some(why),
            Ok(path) => match (is_latency(&path), th.limit) {
                (true, Limit::Number(_)) => Some(format!(
                    "{} is a latency: give the limit a unit, e.g. \"< 250ms\"",
                    th.metric.value
                )),
                (false, Limit::Micros(_)) => Some(format!(
                    "{} is not a latency: give a plain number, e.g. \"< 0.01\" or \"> 900\"",
                    th.metric.value
                )),
                _ => None,
            },
        };
        if let Some(message) = problem {
            list.push(Problem {
                loc: th.metric.loc,
                key,
                message,
            });
        }
    }
    if list.is_empty() {
        Ok(())
    } else {
        Err(Problems {
            path: scenario.path.clone(),
            list,
        })
    }
}

/// Judges thresholds on the typed report: each metric's value is read from the report
/// itself (`metric::number_at`), never from a JSON copy of it.
pub fn judge(thresholds: &Thresholds, report: &Report, model: Model) -> Vec<ThresholdResult> {
    thresholds
        .list
        .iter()
        .map(|th| judge_one(th, report, model))
        .collect()
}

fn judge_one(th: &Threshold, report: &Report, model: Model) -> ThresholdResult {
    let path = expand(&th.metric.value, model, |p| number_at(report, p).is_some()).ok();
    let actual = path.as_ref().and_then(|p| number_at(report, p));
    let unit = path
        .as_deref()
        .filter(|p| is_latency(p))
        .map(|_| "us".to_string());
    let limit = match th.limit {
        Limit::Micros(v) | Limit::Number(v) => v,
    };
    ThresholdResult {
        metric: th.metric.value.clone(),
        condition: th.condition.clone(),
        actual,
        unit,
        passed: actual.is_some_and(|a| th.op.holds(a, limit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe() -> Value {
        json!({
            "totals": {"requests": 10, "rps": 5.0, "error_rate": 0.1},
            "latency": {"corrected": {"p99_us": 900, "max_us": 1000}, "uncorrected": {"p99_us": 500}},
            "platform": {"arch": "x86_64"}
        })
    }

    #[test]
    fn shorthands_resolve_to_report_fields() {
        let p = probe();
        assert_eq!(resolve("rps", &p, Model::Open).unwrap(), ["totals", "rps"]);
        assert_eq!(
            resolve("error_rate", &p, Model::Open).unwrap(),
            ["totals", "error_rate"]
        );
        assert_eq!(
            resolve("latency.p99", &p, Model::Open).unwrap(),
            ["latency", "corrected", "p99_us"]
        );
        assert_eq!(
            resolve("latency.p99", &p, Model::Closed).unwrap(),
            ["latency", "uncorrected", "p99_us"]
        );
        assert_eq!(
            resolve("latency.corrected.max", &p, Model::Open).unwrap(),
            ["latency", "corrected", "max_us"]
        );
    }

    #[test]
    fn unknown_or_non_numeric_metrics_are_explained() {
        let p = probe();
        assert!(resolve("latency.p42", &p, Model::Open)
            .unwrap_err()
            .contains("has no `p42`"));
        assert!(resolve("platform.arch", &p, Model::Open)
            .unwrap_err()
            .contains("not a number"));
        assert!(resolve("latency", &p, Model::Open)
            .unwrap_err()
            .contains("group"));
        assert!(resolve("phases.tls_handshake.p99", &p, Model::Open)
            .unwrap_err()
            .contains("the report has no `phases`"));
    }
}
