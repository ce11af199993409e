//! The curve people read capacity from: for each rate a search judged, the rate it achieved
//! and its corrected p50/p99, with the SLO's latency limit and the rate found marked — for
//! one search (the HTML report) or several groups' searches overlaid (`compare --format
//! html`).

use super::schema::{CapacityReport, CapacityStep};
use super::svg::{self, Chart, Mark, Series, XAxis, BLUE, GRAY, GREEN, ORANGE, PALETTE, RED};
use crate::vocabulary::conditions::{parse_condition, Limit, Op};

/// A search's steps by offered rate; a rate judged twice (a confirmation) shows its last
/// judgment.
pub fn curve(c: &CapacityReport) -> Vec<&CapacityStep> {
    let mut steps: Vec<&CapacityStep> = Vec::new();
    for s in &c.steps {
        match steps.iter().position(|t| t.rate == s.rate) {
            Some(i) => steps[i] = s,
            None => steps.push(s),
        }
    }
    steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    steps
}

/// The SLO's bound on a latency, in ms, when a condition bounds one from above
/// ("latency.p99 < 50ms").
fn latency_limit_ms(c: &CapacityReport) -> Option<(&str, f64)> {
    c.slo.iter().find_map(|text| {
        let (metric, condition) = text.split_once(char::is_whitespace)?;
        match (
            metric.starts_with("latency"),
            parse_condition(condition).ok()?,
        ) {
            (true, (Op::Lt | Op::Le, Limit::Micros(us))) => Some((text.as_str(), us / 1000.0)),
            _ => None,
        }
    })
}

fn found_mark(c: &CapacityReport, color: &'static str, prefix: &str) -> Option<Mark> {
    c.rps.map(|rps| Mark {
        vertical: true,
        at: rps,
        label: format!("{prefix}capacity {rps:.0}/s"),
        color,
    })
}

/// The SLO's latency bound across the latency chart.
fn slo_mark((text, limit): (&str, f64)) -> Mark {
    Mark {
        vertical: false,
        at: limit,
        label: format!("SLO {text}"),
        color: RED,
    }
}

fn points(c: &CapacityReport, f: impl Fn(&CapacityStep) -> f64) -> Vec<(f64, f64)> {
    curve(c).into_iter().map(|s| (s.rate, f(s))).collect()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// One search: achieved against offered (with the line where they are equal), and the
/// corrected latency by offered rate (with the SLO's latency bound).
pub fn charts(c: &CapacityReport) -> String {
    let top = curve(c).last().map_or(0.0, |s| s.rate);
    let mut throughput = Chart {
        title: "Capacity search: achieved vs offered rate".into(),
        x_label: "offered rate (per second)".into(),
        y_label: "achieved (per second)".into(),
        x_axis: XAxis::Linear,
        series: vec![
            Series {
                name: "achieved".into(),
                color: BLUE,
                points: points(c, |s| s.achieved_rps),
            },
            Series {
                name: "= offered".into(),
                color: GRAY,
                points: vec![(0.0, 0.0), (top, top)],
            },
        ],
        marks: Vec::new(),
        dots: true,
    };
    throughput.marks.extend(found_mark(c, GREEN, ""));
    let mut latency = Chart {
        title: "Capacity search: corrected latency by offered rate".into(),
        x_label: "offered rate (per second)".into(),
        y_label: "latency (ms)".into(),
        x_axis: XAxis::Linear,
        series: vec![
            Series {
                name: "p50".into(),
                color: BLUE,
                points: points(c, |s| ms(s.p50_us)),
            },
            Series {
                name: "p99".into(),
                color: ORANGE,
                points: points(c, |s| ms(s.p99_us)),
            },
        ],
        marks: Vec::new(),
        dots: true,
    };
    latency.marks.extend(found_mark(c, GREEN, ""));
    latency.marks.extend(latency_limit_ms(c).map(slo_mark));
    svg::render(&throughput) + &svg::render(&latency)
}

/// Several groups' searches on one pair of charts: each group's runs in its color, its
/// found rates marked.
pub fn overlay(groups: &[(&str, Vec<&CapacityReport>)]) -> String {
    let mut throughput = Chart {
        title: "Capacity searches: achieved vs offered rate".into(),
        x_label: "offered rate (per second)".into(),
        y_label: "achieved (per second)".into(),
        x_axis: XAxis::Linear,
        series: Vec::new(),
        marks: Vec::new(),
        dots: true,
    };
    let mut latency = Chart {
        title: "Capacity searches: corrected p99 by offered rate".into(),
        x_label: "offered rate (per second)".into(),
        y_label: "latency (ms)".into(),
        x_axis: XAxis::Linear,
        series: Vec::new(),
        marks: Vec::new(),
        dots: true,
    };
    let mut slo = None;
    for (i, (name, searches)) in groups.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        for (run, c) in searches.iter().enumerate() {
            let label = if searches.len() > 1 {
                format!("{name} #{}", run + 1)
            } else {
                name.to_string()
            };
            throughput.series.push(Series {
                name: label.clone(),
                color,
                points: points(c, |s| s.achieved_rps),
            });
            latency.series.push(Series {
                name: label,
                color,
                points: points(c, |s| ms(s.p99_us)),
            });
            let prefix = format!("{name}: ");
            throughput.marks.extend(found_mark(c, color, &prefix));
            slo = slo.or_else(|| latency_limit_ms(c));
        }
    }
    latency.marks.extend(slo.map(slo_mark));
    svg::render(&throughput) + &svg::render(&latency)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: f64, achieved: f64, p99_us: u64, passed: bool) -> CapacityStep {
        CapacityStep {
            rate,
            achieved_rps: achieved,
            p50_us: p99_us / 2,
            p99_us,
            error_ratio: 0.0,
            late_ratio: 0.0,
            passed,
            failed: None,
            repeated: false,
            server_cores: None,
        }
    }

    fn search() -> CapacityReport {
        CapacityReport {
            rps: Some(300.0),
            limited_by: "slo".into(),
            failed_condition: Some("latency.p99 < 50ms".into()),
            slo: vec!["error_rate < 1%".into(), "latency.p99 < 50ms".into()],
            precision: 0.05,
            per_server_core: None,
            per_usable_core: None,
            // Growth, then bisection, then a confirmation of 300 that passed.
            steps: vec![
                step(100.0, 100.0, 5_000, true),
                step(200.0, 200.0, 8_000, true),
                step(400.0, 310.0, 900_000, false),
                step(300.0, 299.0, 30_000, false),
                step(300.0, 300.0, 20_000, true),
            ],
        }
    }

    #[test]
    fn the_curve_is_by_rate_with_a_rate_judged_twice_at_its_last_judgment() {
        let c = search();
        let rates: Vec<(f64, bool)> = curve(&c).iter().map(|s| (s.rate, s.passed)).collect();
        assert_eq!(
            rates,
            vec![(100.0, true), (200.0, true), (300.0, true), (400.0, false)]
        );
        assert_eq!(latency_limit_ms(&c), Some(("latency.p99 < 50ms", 50.0)));
    }

    #[test]
    fn the_charts_mark_the_capacity_and_the_slo() {
        let svg = charts(&search());
        assert_eq!(svg.matches("<svg").count(), 2);
        assert!(svg.contains("capacity 300/s"), "{svg}");
        assert!(svg.contains("SLO latency.p99 &lt; 50ms"), "{svg}");
        // Four steps: a dot each on achieved, p50 and p99; two on the "= offered" line.
        assert_eq!(svg.matches("<circle").count(), 4 * 3 + 2, "{svg}");
        let none = CapacityReport {
            rps: None,
            slo: vec!["error_rate < 1%".into()],
            ..search()
        };
        let svg = charts(&none);
        assert!(!svg.contains("capacity ") && !svg.contains("SLO "), "{svg}");
        let both = overlay(&[
            ("x86_64", vec![&search()]),
            ("aarch64", vec![&search(), &search()]),
        ]);
        assert!(both.contains("aarch64 #2") && both.contains("x86_64: capacity 300/s"));
    }
}
