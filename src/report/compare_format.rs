//! Writing a comparison: text (terminal), markdown (a PR comment), JSON, or a self-contained
//! HTML page.

use super::compare::{CompareResult, Verdict, METRICS};

fn figure(value: f64, unit: &str) -> String {
    match unit {
        "us" => {
            if value >= 1000.0 {
                format!("{:.2} ms", value / 1000.0)
            } else {
                format!("{value:.0} us")
            }
        }
        "/s" => format!("{value:.1}/s"),
        "s" => format!("{:.2} ms", value * 1000.0),
        "B" => format!("{:.1} MiB", value / 1_048_576.0),
        "n" => format!("{value:.0}"),
        _ => format!("{:.3}%", value * 100.0),
    }
}

fn verdict_text(v: &Verdict) -> &'static str {
    match v {
        Verdict::Better => "better, beyond noise",
        Verdict::Worse => "worse, beyond noise",
        Verdict::WithinNoise => "within noise",
        Verdict::Negligible => "beyond noise but under 2%",
        Verdict::NotEstablished => "not established (one run per group)",
    }
}

/// Rows: metric label, each group's figure, then per comparison ratio, CI and verdict.
fn rows(c: &CompareResult) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["metric".to_string()];
    for g in &c.groups {
        let n = g.files.len();
        header.push(format!(
            "{} ({n} run{})",
            g.value,
            if n == 1 { "" } else { "s" }
        ));
    }
    for cmp in &c.comparisons {
        header.push(format!("{} / {}", cmp.group, cmp.against));
        header.push("95% CI".into());
        header.push("verdict".into());
    }
    let mut out = Vec::new();
    for (key, label, unit, _) in METRICS {
        if c.groups.iter().all(|g| !g.metrics.contains_key(*key)) {
            continue;
        }
        let mut row = vec![label.to_string()];
        for g in &c.groups {
            row.push(
                g.metrics
                    .get(*key)
                    .map_or("-".into(), |m| figure(m.value, unit)),
            );
        }
        for cmp in &c.comparisons {
            match cmp.metrics.get(*key) {
                Some(m) => {
                    row.push(m.ratio.map_or("-".into(), |r| format!("{r:.3}x")));
                    row.push(
                        m.ci95
                            .map_or("-".into(), |[lo, hi]| format!("{lo:.3}-{hi:.3}")),
                    );
                    row.push(verdict_text(&m.verdict).into());
                }
                None => row.extend(["-".into(), "-".into(), "-".into()]),
            }
        }
        out.push(row);
    }
    (header, out)
}

fn title(c: &CompareResult) -> String {
    let runs: usize = c.groups.iter().map(|g| g.files.len()).sum();
    format!(
        "compare: {} ({}), {runs} reports grouped by {}; baseline {} = {}{}",
        c.scenario,
        c.kind,
        c.by,
        c.by,
        c.groups[0].value,
        if c.forced {
            " (forced: different scenarios)"
        } else {
            ""
        }
    )
}

fn platforms(c: &CompareResult) -> Vec<String> {
    c.groups
        .iter()
        .map(|g| {
            format!(
                "{} = {}: {} ({} usable cores)",
                c.by, g.value, g.cpu_model, g.usable_cpus
            )
        })
        .collect()
}

/// A comparison as a text table.
pub fn text(c: &CompareResult) -> String {
    let (header, body) = rows(c);
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            body.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut o = format!("{}\n", title(c));
    for p in platforms(c) {
        o.push_str(&format!("  {p}\n"));
    }
    o.push('\n');
    o.push_str(&line(&header));
    o.push('\n');
    for r in &body {
        o.push_str(&line(r));
        o.push('\n');
    }
    o.push_str("\nLatency is the corrected histogram (open model), else the uncorrected one; each group's percentiles come from its runs' histograms added together. Verdicts: 95% bootstrap interval of the ratio of means over runs.\n");
    o
}

/// As Markdown.
pub fn markdown(c: &CompareResult) -> String {
    let (header, body) = rows(c);
    let mut o = format!("### {}\n\n", title(c));
    for p in platforms(c) {
        o.push_str(&format!("- {p}\n"));
    }
    o.push('\n');
    o.push_str(&format!("| {} |\n", header.join(" | ")));
    o.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for r in &body {
        o.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    o
}

/// As JSON (`loadagent.compare/v1`).
pub fn json(c: &CompareResult) -> String {
    serde_json::to_string_pretty(c).unwrap_or_default() + "\n"
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// As a self-contained HTML page.
pub fn html(c: &CompareResult) -> String {
    let (header, body) = rows(c);
    let mut o = String::from("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>loadagent compare</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}.better{background:#e3f6e3}.worse{background:#fbe3e3}</style></head><body>\n");
    o.push_str(&format!("<h1>{}</h1>\n<ul>\n", escape(&title(c))));
    for p in platforms(c) {
        o.push_str(&format!("<li>{}</li>\n", escape(&p)));
    }
    o.push_str("</ul>\n<table>\n<tr>");
    for h in &header {
        o.push_str(&format!("<th>{}</th>", escape(h)));
    }
    o.push_str("</tr>\n");
    for r in &body {
        o.push_str("<tr>");
        for cell in r {
            let class = if cell.starts_with("better") {
                " class=\"better\""
            } else if cell.starts_with("worse") {
                " class=\"worse\""
            } else {
                ""
            };
            o.push_str(&format!("<td{class}>{}</td>", escape(cell)));
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n");
    // Capacity searches: the groups' curves on one pair of charts.
    let searches: Vec<(&str, Vec<&super::schema::CapacityReport>)> = c
        .groups
        .iter()
        .filter(|g| !g.capacity.is_empty())
        .map(|g| (g.value.as_str(), g.capacity.iter().collect()))
        .collect();
    if !searches.is_empty() {
        o.push_str("<h2>Capacity searches</h2>\n");
        o.push_str(&super::capacity_chart::overlay(&searches));
        o.push('\n');
    }
    o.push_str("</body></html>\n");
    o
}
