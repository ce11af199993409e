//! SLO rules, generated from the agent's config (`loadagent alerts --config agent.toml`): per
//! target objective, the error ratios over the SRE workbook's windows as recording rules, the
//! multi-window multi-burn-rate alerts (page: 14.4× over 1h and 5m, or 6× over 6h and 30m;
//! ticket: 3× over 1d and 2h, or 1× over 3d and 6h), the error budget left over the SLO's
//! window, and promtool unit tests that prove how the alerts behave.

use std::fmt::Write;

use super::alerts::RUNBOOK;
use crate::vocabulary::slo::{percent, Sli, Slo};

/// The windows error ratios are recorded over.
pub const WINDOWS: [&str; 7] = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];

/// The fast-burn alert (a page).
pub const FAST: &str = "LoadagentSloBurnRateFast";
/// The slow-burn alert (a ticket).
pub const SLOW: &str = "LoadagentSloBurnRateSlow";

/// One alert's conditions: (burn rate, long window, short window), any of which fires it.
const FAST_BURNS: [(f64, &str, &str); 2] = [(14.4, "1h", "5m"), (6.0, "6h", "30m")];
const SLOW_BURNS: [(f64, &str, &str); 2] = [(3.0, "1d", "2h"), (1.0, "3d", "6h")];

/// The recorded error ratio over `window`.
pub fn ratio_record(window: &str) -> String {
    format!("loadagent:probe_slo_error_ratio:rate{window}")
}

/// The recorded share of the error budget left over the SLO's window.
pub const BUDGET_REMAINING: &str = "loadagent:probe_slo_error_budget_remaining";
/// The recorded objective (a constant, for dashboards).
pub const OBJECTIVE: &str = "loadagent:probe_slo_objective";

/// One objective of one target.
#[derive(Debug, Clone)]
pub struct Objective {
    /// The target's name (its `target` label).
    pub target: String,
    /// Which objective.
    pub sli: Sli,
    /// The share that must be good.
    pub objective: f64,
    /// The SLO's window.
    pub window: std::time::Duration,
    /// The latency threshold, seconds (latency objectives).
    pub latency: Option<f64>,
}

/// Every objective of these targets' SLOs.
pub fn objectives<'a>(targets: impl IntoIterator<Item = (&'a str, &'a Slo)>) -> Vec<Objective> {
    let mut out = Vec::new();
    for (target, slo) in targets {
        for (sli, objective) in slo.objectives() {
            out.push(Objective {
                target: target.to_string(),
                sli,
                objective,
                window: slo.window,
                latency: (sli == Sli::Latency)
                    .then(|| slo.latency.map(|l| l.as_secs_f64()))
                    .flatten(),
            });
        }
    }
    out
}

/// A share as PromQL and YAML read it: `0.999`, without float noise.
fn share(v: f64) -> String {
    let text = format!("{v:.9}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A PromQL string literal's contents.
fn promql_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// YAML single-quoted scalar.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The window as Prometheus writes a range (`30d`).
fn prom_range(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else {
        format!("{}m", s.div_ceil(60))
    }
}

impl Objective {
    fn selector(&self) -> String {
        format!(
            "target=\"{}\",slo=\"{}\"",
            promql_escape(&self.target),
            self.sli.label()
        )
    }

    /// The bucket label of the latency threshold, as the agent's exposition writes it.
    fn le(&self) -> String {
        self.latency.map(|l| format!("{l}")).unwrap_or_default()
    }

    /// The error ratio over `range` (a PromQL range: `5m`, `30d`).
    fn error_ratio(&self, range: &str) -> String {
        let t = promql_escape(&self.target);
        match self.sli {
            // Probes that failed among all probes; no failure series yet is a ratio of 0.
            Sli::Availability => format!(
                "(sum by (target) (rate(loadagent_probes_total{{target=\"{t}\",result=\"failure\"}}[{range}])) or 0 * sum by (target) (rate(loadagent_probes_total{{target=\"{t}\"}}[{range}]))) / sum by (target) (rate(loadagent_probes_total{{target=\"{t}\"}}[{range}]))"
            ),
            // Probes not faster than the threshold among all timed probes.
            Sli::Latency => format!(
                "1 - sum by (target) (rate(loadagent_probe_latency_seconds_bucket{{target=\"{t}\",le=\"{}\"}}[{range}])) / sum by (target) (rate(loadagent_probe_latency_seconds_count{{target=\"{t}\"}}[{range}]))",
                self.le()
            ),
        }
    }

    fn what(&self) -> String {
        match self.sli {
            Sli::Availability => format!(
                "{} of probes passing over {}",
                percent(self.objective),
                prom_range(self.window)
            ),
            Sli::Latency => format!(
                "{} of probes faster than {}s over {}",
                percent(self.objective),
                self.le(),
                prom_range(self.window)
            ),
        }
    }

    fn alert_expr(&self, burns: &[(f64, &str, &str)]) -> String {
        let budget = share(1.0 - self.objective);
        burns
            .iter()
            .map(|(rate, long, short)| {
                format!(
                    "({long_r}{{{sel}}} > ({rate} * {budget}) and {short_r}{{{sel}}} > ({rate} * {budget}))",
                    long_r = ratio_record(long),
                    short_r = ratio_record(short),
                    sel = self.selector()
                )
            })
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// An alert's annotations (the unit tests expect exactly these).
    fn annotations(&self, alert: &str) -> [(&'static str, String); 3] {
        let (summary, description) = if alert == FAST {
            (
                format!(
                    "{} is burning its {} error budget fast",
                    self.target,
                    self.sli.label()
                ),
                format!(
                    "At this rate the error budget of {} ({}) is gone within days: 2% of it in an hour, or 5% in six. Page: look now.",
                    self.target,
                    self.what()
                ),
            )
        } else {
            (
                format!(
                    "{} is burning its {} error budget",
                    self.target,
                    self.sli.label()
                ),
                format!(
                    "The error budget of {} ({}) is being spent faster than it is earned: 10% of it in a day, or in three. Ticket: look today.",
                    self.target,
                    self.what()
                ),
            )
        };
        [
            ("summary", summary),
            ("description", description),
            ("runbook_url", format!("{RUNBOOK}#{}", alert.to_lowercase())),
        ]
    }
}

/// The rule file: recordings and alerts of every objective.
pub fn render_rules(objectives: &[Objective]) -> String {
    let mut o = String::from(
        "# Generated by `loadagent alerts --config agent.toml` from the targets' `slo`: do not edit.\n",
    );
    o.push_str(&groups(objectives));
    o
}

/// The same rules as a prometheus-operator PrometheusRule.
pub fn render_prometheus_rule(objectives: &[Objective]) -> String {
    let mut o = String::from(
        "# Generated by `loadagent alerts --config agent.toml --kubernetes DIR`: do not edit.\n\
         apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: loadagent-slo\n  namespace: loadagent\n  labels:\n    app.kubernetes.io/name: loadagent\n    app.kubernetes.io/component: rules\nspec:\n",
    );
    for line in groups(objectives).lines() {
        let _ = writeln!(o, "  {line}");
    }
    o
}

fn groups(objectives: &[Objective]) -> String {
    let mut o = String::from("groups:\n");
    let _ = writeln!(o, "  - name: loadagent-slo-recording\n    rules:");
    for obj in objectives {
        // The target as a static label too: rules of different targets then differ to
        // promtool's duplicate check, not only by their expressions.
        let labels = format!(
            "        labels:\n          slo: {}\n          target: {}\n",
            obj.sli.label(),
            q(&obj.target)
        );
        for w in WINDOWS {
            let _ = writeln!(
                o,
                "      - record: {}\n        expr: {}",
                ratio_record(w),
                q(&obj.error_ratio(w))
            );
            o.push_str(&labels);
        }
        let _ = writeln!(
            o,
            "      - record: {BUDGET_REMAINING}\n        expr: {}",
            q(&format!(
                "1 - ({}) / {}",
                obj.error_ratio(&prom_range(obj.window)),
                share(1.0 - obj.objective)
            ))
        );
        o.push_str(&labels);
        let _ = writeln!(
            o,
            "      - record: {OBJECTIVE}\n        expr: {}",
            q(&format!(
                "label_replace(vector({}), \"target\", \"{}\", \"\", \"\")",
                share(obj.objective),
                promql_escape(&obj.target).replace('$', "$$")
            ))
        );
        o.push_str(&labels);
    }
    let _ = writeln!(o, "  - name: loadagent-slo-alerts\n    rules:");
    for obj in objectives {
        for (alert, burns, for_, severity) in [
            (FAST, &FAST_BURNS, "2m", "critical"),
            (SLOW, &SLOW_BURNS, "15m", "warning"),
        ] {
            let _ = writeln!(
                o,
                "      - alert: {alert}\n        expr: {}\n        for: {for_}",
                q(&obj.alert_expr(burns))
            );
            let _ = writeln!(
                o,
                "        labels:\n          severity: {severity}\n          slo: {}\n          target: {}",
                obj.sli.label(),
                q(&obj.target)
            );
            let _ = writeln!(o, "        annotations:");
            for (k, v) in obj.annotations(alert) {
                let _ = writeln!(o, "          {k}: {}", q(&v));
            }
        }
    }
    o
}

/// The input series of a test: phases of (good, bad) probes per minute, each for some
/// minutes. Availability: the success and failure counters; latency: the threshold's bucket
/// (good) and the count (good and bad).
fn input(obj: &Objective, phases: &[(f64, f64, u32)]) -> String {
    let t = promql_escape(&obj.target);
    let good: Vec<(f64, u32)> = phases.iter().map(|&(g, _, m)| (g, m)).collect();
    let bad: Vec<(f64, u32)> = phases.iter().map(|&(_, b, m)| (b, m)).collect();
    let all: Vec<(f64, u32)> = phases.iter().map(|&(g, b, m)| (g + b, m)).collect();
    match obj.sli {
        Sli::Availability => {
            segments(
                &format!(
                    "loadagent_probes_total{{target=\"{t}\",backend=\"b\",result=\"success\"}}"
                ),
                &good,
            ) + &segments(
                &format!(
                    "loadagent_probes_total{{target=\"{t}\",backend=\"b\",result=\"failure\"}}"
                ),
                &bad,
            )
        }
        Sli::Latency => {
            segments(
                &format!(
                "loadagent_probe_latency_seconds_bucket{{target=\"{t}\",backend=\"b\",le=\"{}\"}}",
                obj.le()
            ),
                &good,
            ) + &segments(
                &format!("loadagent_probe_latency_seconds_count{{target=\"{t}\",backend=\"b\"}}"),
                &all,
            )
        }
    }
}

/// A series that changes pace: `segments` of (per minute, minutes).
fn segments(series_name: &str, segments: &[(f64, u32)]) -> String {
    let mut values = String::new();
    let mut start = 0.0;
    for (i, (per_min, minutes)) in segments.iter().enumerate() {
        if i > 0 {
            values.push(' ');
        }
        let _ = write!(values, "{}+{}x{minutes}", share(start), share(*per_min));
        start += per_min * f64::from(*minutes);
    }
    format!(
        "      - series: {}\n        values: '{values}'\n",
        q(series_name)
    )
}

fn expect(obj: &Objective, eval: &str, alert: &str, fires: bool) -> String {
    let mut o = format!("      - eval_time: {eval}\n        alertname: {alert}\n");
    if !fires {
        o.push_str("        exp_alerts: []\n");
        return o;
    }
    let severity = if alert == FAST { "critical" } else { "warning" };
    let _ = writeln!(
        o,
        "        exp_alerts:\n          - exp_labels:\n              severity: {severity}\n              target: {}\n              slo: {}\n            exp_annotations:",
        q(&obj.target),
        obj.sli.label()
    );
    for (k, v) in obj.annotations(alert) {
        let _ = writeln!(o, "              {k}: {}", q(&v));
    }
    o
}

/// One generated test: its name, its phases of (good, bad) per minute for minutes, and what
/// must hold (evaluation time, alert, whether it fires).
type TestCase = (
    &'static str,
    Vec<(f64, f64, u32)>,
    Vec<(&'static str, &'static str, bool)>,
);

/// promtool unit tests of the rules in `rules_file`, per objective: a total outage pages
/// within 5 minutes; a 2× burn opens a ticket and does not page; a burn that stopped clears
/// the page; an objective met raises nothing.
pub fn render_tests(rules_file: &str, objectives: &[Objective]) -> String {
    const PER_MIN: f64 = 1_000_000.0;
    let mut o = format!(
        "# Generated by `loadagent alerts --config agent.toml`: promtool test rules {}\nrule_files:\n  - {rules_file}\nevaluation_interval: 1m\ntests:\n",
        "loadagent-slo.test.yml"
    );
    for obj in objectives {
        let budget = 1.0 - obj.objective;
        let cases: [TestCase; 4] = [
            // Every probe fails (or is slow).
            (
                "a total outage pages within 5 minutes",
                vec![(0.0, PER_MIN, 90)],
                vec![("5m", FAST, true)],
            ),
            // Twice the budget's pace: a ticket within the hour, never a page.
            (
                "a 2x burn opens a ticket and does not page",
                vec![(PER_MIN * (1.0 - 2.0 * budget), PER_MIN * 2.0 * budget, 90)],
                vec![("1h", SLOW, true), ("1h", FAST, false)],
            ),
            // Ten minutes of outage, then none: the page fires, then clears once both its
            // short windows (5m, 30m) hold no failure.
            (
                "a burn that stopped clears the page",
                vec![(0.0, PER_MIN, 10), (PER_MIN, 0.0, 80)],
                vec![("5m", FAST, true), ("45m", FAST, false)],
            ),
            // Half the budget's pace: nothing.
            (
                "an objective met raises nothing",
                vec![(PER_MIN * (1.0 - 0.5 * budget), PER_MIN * 0.5 * budget, 90)],
                vec![("1h", FAST, false), ("1h", SLOW, false)],
            ),
        ];
        for (what, phases, expectations) in cases {
            let _ = writeln!(
                o,
                "  - name: {}\n    interval: 1m\n    input_series:",
                q(&format!("{} {}: {what}", obj.target, obj.sli.label()))
            );
            o.push_str(&input(obj, &phases));
            o.push_str("    alert_rule_test:\n");
            for (eval, alert, fires) in expectations {
                o.push_str(&expect(obj, eval, alert, fires));
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn slo(latency: Option<u64>) -> Slo {
        Slo {
            objective: 0.999,
            window: Duration::from_secs(30 * 86_400),
            latency: latency.map(Duration::from_millis),
            latency_objective: 0.99,
        }
    }

    #[test]
    fn every_objective_gets_every_window_and_both_alerts() {
        let a = slo(None);
        let b = slo(Some(300));
        let objs = objectives([("a", &a), ("b\"q", &b)]);
        assert_eq!(objs.len(), 3);
        let rules = render_rules(&objs);
        for w in WINDOWS {
            assert_eq!(
                rules
                    .matches(&format!("record: {}\n", ratio_record(w)))
                    .count(),
                3
            );
        }
        assert_eq!(rules.matches("alert: LoadagentSloBurnRateFast").count(), 3);
        assert_eq!(rules.matches("alert: LoadagentSloBurnRateSlow").count(), 3);
        assert!(rules.contains("le=\"0.3\""), "{rules}");
        assert!(
            rules.contains("target=\"b\\\"q\""),
            "quotes escaped: {rules}"
        );
        assert!(rules.contains("(14.4 * 0.001)") && rules.contains("(14.4 * 0.01)"));
        assert!(rules.contains("[30d]"));
    }

    #[test]
    fn shares_print_without_noise() {
        assert_eq!(share(1.0 - 0.999), "0.001");
        assert_eq!(share(0.9995), "0.9995");
        assert_eq!(share(14.4), "14.4");
        assert_eq!(prom_range(Duration::from_secs(7 * 86_400)), "7d");
    }
}
