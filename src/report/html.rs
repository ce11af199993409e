//! The HTML report: one self-contained file (inline SVG and CSS, no scripts, nothing fetched)
//! with the plots a performance engineer expects and the run's facts as tables.

use std::fmt::Write;

use super::schema::Report;
use super::summary::{counts, human_us, latency_cells};
use super::svg::{self, Chart, Series, XAxis, BLUE, GREEN, ORANGE, RED};
use crate::record::histogram::decode;
use crate::record::LatencySummary;

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}h1{margin-bottom:4px}\
         h2{margin-top:28px;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:8px 0}\
         th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}th{color:#555;font-weight:600}\
         .fail{color:#c62828;font-weight:bold}.pass{color:#2e7d32}.note{color:#666}svg{margin:10px 0;max-width:100%;height:auto}";

/// A series drawn over the intervals: name, colour, and the value it takes from each.
type IntervalSeries = (
    &'static str,
    &'static str,
    fn(&crate::record::IntervalSummary) -> f64,
);

const PALETTE: [&str; 8] = [
    GREEN, RED, ORANGE, "#6a1b9a", "#00838f", "#5d4037", "#ad1457", "#546e7a",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Points of a latency distribution on HdrHistogram's percentile axis (ms on y).
fn distribution(summary: &LatencySummary) -> Vec<(f64, f64)> {
    let Ok(h) = decode(&summary.hdr) else {
        return Vec::new();
    };
    if h.is_empty() {
        return Vec::new();
    }
    // The last point (quantile 1.0) is drawn where the sample count's resolution ends.
    let q_cap = 1.0 - 1.0 / h.len().max(2) as f64;
    let mut pts: Vec<(f64, f64)> = h
        .iter_quantiles(5)
        .map(|v| {
            let q = v.quantile_iterated_to().min(q_cap);
            (
                (1.0 / (1.0 - q)).log10(),
                h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0,
            )
        })
        .collect();
    pts.dedup_by(|a, b| (a.0 - b.0).abs() < 1e-9);
    pts
}

fn percentile_chart(r: &Report) -> String {
    let mut series = Vec::new();
    if let Some(c) = &r.latency.corrected {
        series.push(Series {
            name: "corrected".into(),
            color: RED,
            points: distribution(c),
        });
    }
    series.push(Series {
        name: "uncorrected".into(),
        color: BLUE,
        points: distribution(&r.latency.uncorrected),
    });
    svg::render(&Chart {
        title: "Latency by percentile".into(),
        x_label: "percentile".into(),
        y_label: "latency (ms)".into(),
        x_axis: XAxis::Percentile,
        series,
        marks: Vec::new(),
        dots: false,
    })
}

/// The intervals the time plots show: a trailing interval shorter than half a second (the
/// few requests that finished just after the end) would read as a collapse, so it is left
/// out of the plots; it stays in the JSON, the CSV and the totals.
fn plotted(r: &Report) -> &[crate::record::IntervalSummary] {
    match r.intervals.last() {
        Some(last)
            if (last.t_seconds as f64) + 0.5 > r.duration_seconds && r.intervals.len() > 1 =>
        {
            &r.intervals[..r.intervals.len() - 1]
        }
        _ => &r.intervals,
    }
}

fn over_time(r: &Report, title: &str, y_label: &str, series: Vec<IntervalSeries>) -> String {
    let series = series
        .into_iter()
        .map(|(name, color, f)| Series {
            name: name.into(),
            color,
            points: plotted(r)
                .iter()
                .map(|i| (i.t_seconds as f64, f(i)))
                .collect(),
        })
        .collect();
    svg::render(&Chart {
        title: title.into(),
        x_label: "seconds into the measured part".into(),
        y_label: y_label.into(),
        x_axis: XAxis::Linear,
        series,
        marks: Vec::new(),
        dots: false,
    })
}

fn status_chart(r: &Report) -> String {
    let codes: Vec<&String> = r.status_codes.keys().collect();
    let series = codes
        .iter()
        .enumerate()
        .map(|(i, code)| Series {
            name: (*code).clone(),
            color: if code.as_str() == "OK" {
                GREEN
            } else {
                PALETTE[1 + i % (PALETTE.len() - 1)]
            },
            points: plotted(r)
                .iter()
                .map(|iv| {
                    (
                        iv.t_seconds as f64,
                        iv.status_codes.get(*code).copied().unwrap_or(0) as f64,
                    )
                })
                .collect(),
        })
        .collect();
    svg::render(&Chart {
        title: "Status codes over time".into(),
        x_label: "seconds into the measured part".into(),
        y_label: "calls per second".into(),
        x_axis: XAxis::Linear,
        series,
        marks: Vec::new(),
        dots: false,
    })
}

fn table(o: &mut String, title: &str, rows: &[(&str, String)]) {
    let _ = write!(o, "<h2>{}</h2><table>", esc(title));
    for (k, v) in rows {
        let _ = write!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    o.push_str("</table>");
}

/// What the retry policy and the connections did, when the run has them.
fn clients_tables(o: &mut String, r: &Report) {
    if let Some(x) = &r.retries {
        table(
            o,
            "Retries",
            &[
                ("calls", r.totals.requests.to_string()),
                ("attempts", x.attempts.to_string()),
                ("retries sent", x.retries.to_string()),
                ("succeeded on a retry", x.succeeded_on_retry.to_string()),
                ("failed on their last attempt", x.exhausted.to_string()),
                (
                    "not retried: throttled",
                    x.stopped_by_throttling.to_string(),
                ),
                (
                    "not retried: the server's pushback",
                    x.stopped_by_pushback.to_string(),
                ),
                ("attempt latency p50", human_us(x.attempt_latency.p50_us)),
                ("attempt latency p99", human_us(x.attempt_latency.p99_us)),
            ],
        );
    }
    if let Some(c) = &r.connections {
        table(
            o,
            "Connections",
            &[
                ("opened", c.opened.to_string()),
                (
                    "requests per connection",
                    c.requests_per_connection.to_string(),
                ),
                ("churned (one request each)", c.churned.to_string()),
                ("closed by age", c.closed_by_age.to_string()),
                (
                    "closed by the server (GOAWAY)",
                    c.closed_by_server.to_string(),
                ),
                ("keepalive PINGs sent", c.keepalive_pings.to_string()),
                ("keepalive failures", c.keepalive_failures.to_string()),
                ("too_many_pings", c.too_many_pings.to_string()),
                ("socket writes", c.socket_writes.to_string()),
                ("socket reads", c.socket_reads.to_string()),
            ],
        );
    }
}

/// A mix of calls: each entry's weight, share of the requests, errors and latency.
fn methods_table(o: &mut String, r: &Report) {
    if r.methods.is_empty() {
        return;
    }
    let which = if r.latency.corrected.is_some() {
        "corrected"
    } else {
        "uncorrected"
    };
    let weights: f64 = r.methods.iter().map(|m| m.weight).sum();
    let _ = write!(
        o,
        "<h2>Methods</h2><p class=\"note\">a mix of calls; latency {which}</p><table><tr><th>method</th><th>weight</th><th>share</th><th>requests</th><th>errors</th><th>status codes</th><th>p50</th><th>p99</th><th>p99.9</th></tr>"
    );
    for m in &r.methods {
        let l = m
            .latency
            .corrected
            .as_ref()
            .unwrap_or(&m.latency.uncorrected);
        let codes: Vec<String> = m
            .status_codes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let share = if r.totals.requests > 0 {
            100.0 * m.requests as f64 / r.totals.requests as f64
        } else {
            0.0
        };
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{:.1}%</td><td>{share:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.method),
            100.0 * m.weight / weights,
            m.requests,
            m.errors,
            esc(&codes.join(", ")),
            human_us(l.p50_us),
            human_us(l.p99_us),
            human_us(l.p999_us),
        );
    }
    o.push_str("</table>");
}

/// A fleet's backends, every one (the JSON has the same), the slowest marked.
fn backends_table(o: &mut String, r: &Report) {
    if r.backends.len() < 2 && r.resolution.is_none() {
        return;
    }
    let which = if r.latency.corrected.is_some() {
        "corrected"
    } else {
        "uncorrected"
    };
    let _ = write!(
        o,
        "<h2>Backends</h2><p class=\"note\">latency {which}; the slowest (highest p99) in bold red</p><table><tr><th>address</th><th>joined</th><th>left</th><th>connections</th><th>requests</th><th>errors</th><th>status codes</th><th>p50</th><th>p99</th><th>p99.9</th></tr>"
    );
    for b in &r.backends {
        let l = b
            .latency
            .corrected
            .as_ref()
            .unwrap_or(&b.latency.uncorrected);
        let codes: Vec<String> = b
            .status_codes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = write!(
            o,
            "<tr{}><td>{}</td><td>{:.1} s</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if b.slowest { " class=\"fail\"" } else { "" },
            esc(&b.address),
            b.joined_s,
            b.left_s.map_or_else(|| "–".to_string(), |s| format!("{s:.1} s")),
            b.connections,
            b.requests,
            b.errors,
            esc(&codes.join(", ")),
            human_us(l.p50_us),
            human_us(l.p99_us),
            human_us(l.p999_us),
        );
    }
    o.push_str("</table>");
    if let Some(res) = &r.resolution {
        let _ = write!(
            o,
            "<p class=\"note\">{} resolved {} times (every {} s), {} failed{}</p>",
            esc(&res.name),
            res.resolutions,
            res.resolve_every_seconds,
            res.failures,
            res.last_failure
                .as_ref()
                .map_or_else(String::new, |w| format!(" (last: {})", esc(w)))
        );
    }
}

fn latency_table(o: &mut String, r: &Report) {
    o.push_str("<h2>Latency</h2><table><tr><th></th><th>count</th><th>min</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>p99.99</th><th>max</th><th>mean</th></tr>");
    let mut row = |name: &str, s: &LatencySummary| {
        let cells: String = latency_cells(s)
            .iter()
            .map(|c| format!("<td>{c}</td>"))
            .collect();
        let _ = write!(
            o,
            "<tr><th>{name}</th><td>{}</td><td>{}</td>{cells}</tr>",
            s.count,
            human_us(s.min_us)
        );
    };
    if let Some(c) = &r.latency.corrected {
        row("corrected", c);
    }
    row("uncorrected", &r.latency.uncorrected);
    if let Some(f) = &r.latency_first_message {
        row("first message", f);
    }
    if let Some(m) = &r.latency_message {
        row(
            if r.kind == "server_stream" {
                "message gap"
            } else {
                "message"
            },
            m,
        );
    }
    if let Some(m) = &r.latency_message_corrected {
        row("message (corrected)", m);
    }
    if let Some(p) = &r.phases {
        row("dns", &p.dns);
        row("tcp connect", &p.tcp_connect);
        row("tls handshake", &p.tls_handshake);
        if let Some(f) = &p.first_response {
            row("first response", f);
        }
        row("iteration total", &p.total);
    }
    o.push_str("</table>");
}

/// The report as a self-contained HTML page with its plots.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>loadagent: {}</title><style>{}</style></head><body>",
        esc(&r.name),
        STYLE
    );
    let _ = write!(
        o,
        "<h1>{} <small class=\"note\">({})</small></h1>",
        esc(&r.name),
        esc(&r.kind)
    );
    let _ = write!(
        o,
        "<p class=\"note\">{} → {} · started {} · {:.2} s measured{}</p>",
        esc(&r.method),
        esc(&r.target),
        esc(&r.started_at),
        r.duration_seconds,
        if r.interrupted {
            " · <span class=\"fail\">interrupted</span>"
        } else {
            ""
        }
    );
    if !r.thresholds.is_empty() {
        o.push_str("<h2>Thresholds</h2><table><tr><th>metric</th><th>condition</th><th>actual</th><th>verdict</th></tr>");
        for t in &r.thresholds {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                esc(&t.metric),
                esc(&t.condition),
                t.actual_text(),
                if t.passed { "pass" } else { "fail" },
                if t.passed { "passed" } else { "FAILED" }
            );
        }
        o.push_str("</table>");
    }
    if let Some(c) = &r.capacity {
        capacity_section(&mut o, c);
    }
    o.push_str(&percentile_chart(r));
    o.push_str(&over_time(
        r,
        "Latency over time (uncorrected)",
        "latency (ms)",
        vec![
            ("p50", BLUE, |i| i.p50_us as f64 / 1000.0),
            ("p99", ORANGE, |i| i.p99_us as f64 / 1000.0),
            ("max", RED, |i| i.max_us as f64 / 1000.0),
        ],
    ));
    o.push_str(&over_time(
        r,
        "Throughput over time",
        "calls per second",
        vec![
            ("completed", BLUE, |i| i.requests as f64),
            ("errors", RED, |i| i.errors as f64),
        ],
    ));
    o.push_str(&status_chart(r));
    if let Some(p) = &r.phases {
        let mut series = vec![
            Series {
                name: "tcp connect".into(),
                color: BLUE,
                points: distribution(&p.tcp_connect),
            },
            Series {
                name: "tls handshake".into(),
                color: RED,
                points: distribution(&p.tls_handshake),
            },
        ];
        if let Some(f) = &p.first_response {
            series.push(Series {
                name: "first response".into(),
                color: ORANGE,
                points: distribution(f),
            });
        }
        series.push(Series {
            name: "total".into(),
            color: GREEN,
            points: distribution(&p.total),
        });
        o.push_str(&svg::render(&Chart {
            title: "Handshake phases by percentile".into(),
            x_label: "percentile".into(),
            y_label: "latency (ms)".into(),
            x_axis: XAxis::Percentile,
            series,
            marks: Vec::new(),
            dots: false,
        }));
    }
    if r.messages.is_some() {
        o.push_str(&over_time(
            r,
            "Stream messages over time",
            "messages per second",
            vec![
                ("sent", BLUE, |i| i.messages_sent as f64),
                ("received", GREEN, |i| i.messages_received as f64),
            ],
        ));
    }
    latency_table(&mut o, r);
    if let Some(t) = &r.tls {
        let mut rows = vec![
            (
                "handshakes per second",
                format!("{:.1}", r.totals.handshakes_per_second.unwrap_or(0.0)),
            ),
            ("versions", counts(&t.versions)),
            ("cipher suites", counts(&t.cipher_suites)),
            ("groups", counts(&t.groups)),
            ("alpn", counts(&t.alpn)),
            (
                "resumed",
                format!("{} ({:.1}%)", t.resumed, t.resumed_ratio * 100.0),
            ),
            (
                "failures",
                r.handshake_errors.as_ref().map(counts).unwrap_or_default(),
            ),
        ];
        if r.insecure_skip_verify {
            rows.push((
                "CERTIFICATES",
                "NOT VERIFIED (insecure_skip_verify = true)".into(),
            ));
        }
        if let Some(c) = &r.server_certificate {
            rows.push((
                "server certificate",
                format!("{} (issuer {})", c.subject, c.issuer),
            ));
            rows.push((
                "expires",
                format!("{} ({} days)", c.not_after, c.days_to_expiry),
            ));
            rows.push(("sha256", c.sha256_fingerprint.clone()));
        }
        let first: Vec<String> = t
            .first_errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        if !first.is_empty() {
            rows.push(("first errors", first.join(" | ")));
        }
        table(&mut o, "TLS", &rows);
    }
    let t = &r.totals;
    table(
        &mut o,
        "Totals",
        &[
            ("requests", t.requests.to_string()),
            ("ok", t.ok.to_string()),
            (
                "errors",
                format!("{} ({:.3}%)", t.errors, t.error_rate * 100.0),
            ),
            ("sent late", t.sent_late.to_string()),
            ("achieved rate", format!("{:.1} req/s", t.rps)),
            (
                "status codes",
                r.status_codes
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ],
    );
    methods_table(&mut o, r);
    clients_tables(&mut o, r);
    backends_table(&mut o, r);
    if !r.errors.is_empty() {
        o.push_str("<h2>Errors</h2><table><tr><th>count</th><th>status</th><th>message</th></tr>");
        for e in &r.errors {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.count,
                esc(&e.status),
                esc(&e.message)
            );
        }
        o.push_str("</table>");
    }
    let l = &r.load;
    table(
        &mut o,
        "Scenario",
        &[
            ("name", r.name.clone()),
            ("kind", r.kind.clone()),
            ("target", r.target.clone()),
            ("method", r.method.clone()),
            ("types from", r.schema_source.clone()),
            ("model", format!("{:?}", l.model).to_lowercase()),
            ("rate", l.rate.map_or("—".into(), |x| format!("{x} req/s"))),
            (
                "stages",
                if l.stages.is_empty() {
                    "—".into()
                } else {
                    l.stages
                        .iter()
                        .map(|s| format!("{}s→{}/s", s.duration_seconds, s.rate))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
            ("concurrency", l.concurrency.to_string()),
            ("connections", l.connections.to_string()),
            ("warm-up", format!("{} s", l.warmup_seconds)),
        ],
    );
    let p = &r.platform;
    table(
        &mut o,
        "Platform",
        &[
            ("arch", p.arch.clone()),
            ("os", p.os.clone()),
            ("cpu", format!("{} ({})", p.cpu_model, p.cpu_vendor)),
            (
                "cores",
                format!(
                    "{} logical, {} physical, {} usable",
                    p.logical_cpus,
                    p.physical_cores.map_or("?".into(), |c| c.to_string()),
                    p.cores()
                ),
            ),
            (
                "memory",
                format!("{:.1} GiB", p.memory_total_bytes as f64 / 1073741824.0),
            ),
            (
                "cgroup limits",
                match &p.cgroup {
                    Some(c) => format!(
                        "{} {}: cpu {}, memory {}",
                        c.version,
                        c.path,
                        c.cpu_limit_cores
                            .map_or("none".into(), |n| format!("{n} cores")),
                        c.memory_limit_bytes.map_or("none".into(), |m| format!(
                            "{:.1} GiB",
                            m as f64 / 1073741824.0
                        ))
                    ),
                    None => "none found".into(),
                },
            ),
            ("kernel", p.kernel.clone()),
            ("host", p.hostname.clone()),
            (
                "loadagent",
                format!("{} ({})", p.loadagent_version, p.rust_target),
            ),
            (
                "generator cpu",
                format!(
                    "{:.2} s user + {:.2} s system",
                    r.process.cpu_user_seconds, r.process.cpu_system_seconds
                ),
            ),
            (
                "generator peak RSS",
                format!("{:.1} MiB", r.process.peak_rss_bytes as f64 / 1048576.0),
            ),
        ],
    );
    if let Some(t) = &r.target_process {
        target_table(&mut o, t);
    }
    o.push_str("</body></html>\n");
    o
}

/// The target's side: what was watched and what it used.
/// A capacity search: its answer and the curve it was read from.
fn capacity_section(o: &mut String, c: &super::schema::CapacityReport) {
    let mut rows = vec![
        (
            "capacity",
            c.rps
                .map_or_else(|| "none found".to_string(), |r| format!("{r:.1}/s")),
        ),
        (
            "limited by",
            match &c.failed_condition {
                Some(f) => format!("{} ({f})", c.limited_by),
                None => c.limited_by.clone(),
            },
        ),
        ("SLO", c.slo.join(", ")),
    ];
    if let Some(p) = c.per_server_core {
        rows.push(("per server core used", format!("{p:.1}/s")));
    }
    if let Some(p) = c.per_usable_core {
        rows.push(("per usable server core", format!("{p:.1}/s")));
    }
    table(o, "Capacity", &rows);
    o.push_str(&super::capacity_chart::charts(c));
}

fn target_table(o: &mut String, t: &crate::host::target_process::TargetProcess) {
    let mut rows: Vec<(&str, String)> = Vec::new();
    if let Some(p) = &t.process {
        rows.push(("process", format!("{p} (pids {:?})", t.pids)));
    }
    if let Some(u) = &t.metrics_url {
        rows.push(("metrics endpoint", u.clone()));
    }
    if let Some(c) = t.cpu_seconds {
        rows.push(("cpu", format!("{c:.3} s")));
    }
    if let Some(c) = t.cpu_seconds_per_1k_requests {
        rows.push(("cpu per 1,000 requests", format!("{:.2} ms", c * 1000.0)));
    }
    if let Some(m) = t.peak_rss_bytes {
        rows.push(("peak RSS", format!("{:.1} MiB", m as f64 / 1048576.0)));
    }
    if let Some(m) = t.process_resident_memory_bytes {
        rows.push((
            "process_resident_memory_bytes",
            format!("{:.1} MiB", m / 1048576.0),
        ));
    }
    if let Some(c) = t.process_cpu_seconds_total {
        rows.push(("process_cpu_seconds_total (increase)", format!("{c:.3} s")));
    }
    for (k, v) in &t.runtime {
        rows.push((k.as_str(), v.to_string()));
    }
    for e in &t.errors {
        rows.push(("error", e.clone()));
    }
    table(o, "Target", &rows);
}
