//! The human summary printed at the end of a run.

use std::fmt::Write;

use super::schema::Report;
pub use super::units::human_us;
use crate::record::LatencySummary;
use crate::vocabulary::Model;

/// How many distinct error messages the summary lists.
const TOP_ERRORS: usize = 5;

/// `{"a": 1, "b": 2}` as "a 1, b 2".
pub fn counts(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The summary a person reads after a run.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = write_summary(&mut out, r);
    out
}

fn write_summary(o: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(
        o,
        "{} ({}) → {}{}",
        r.name,
        r.kind,
        r.target,
        if r.interrupted { "  [INTERRUPTED]" } else { "" }
    )?;
    if r.generator_panics > 0 {
        writeln!(
            o,
            "  BUG       {} generator thread(s) panicked: the figures miss what they had not handed over",
            r.generator_panics
        )?;
    }
    if r.insecure_skip_verify {
        writeln!(o, "  !!! TLS CERTIFICATES WERE NOT VERIFIED (insecure_skip_verify = true): these handshakes prove nothing about trust !!!")?;
    }
    if r.method.is_empty() {
        writeln!(o, "  method    none: handshakes only")?;
    } else if r.methods.len() > 1 {
        writeln!(
            o,
            "  method    a mix of {} (below; the first's types from {})",
            r.methods.len(),
            r.schema_source
        )?;
    } else {
        writeln!(
            o,
            "  method    {} (types from {}){}",
            r.method,
            r.schema_source,
            if r.protocol == "grpc" {
                String::new()
            } else {
                format!(", {}", r.protocol)
            }
        )?;
    }
    let l = &r.load;
    let model = match (l.model, l.rate) {
        (Model::Open, Some(rate)) if l.stages.is_empty() => {
            format!("open model, {rate} req/s asked")
        }
        (Model::Open, _) => format!("open model, {} stages", l.stages.len()),
        (Model::Closed, _) => "closed model".to_string(),
    };
    writeln!(
        o,
        "  load      {model}, concurrency {}, {} connection{}{}",
        l.concurrency,
        l.connections,
        if l.connections == 1 { "" } else { "s" },
        if l.warmup_seconds > 0.0 {
            format!(", {}s warm-up (excluded)", l.warmup_seconds)
        } else {
            String::new()
        }
    )?;
    if let Some(s) = &r.shard {
        writeln!(
            o,
            "  shard     {} of {} (sends k with k mod {} == {}){}",
            s.index,
            s.count,
            s.count,
            s.index,
            match (&s.start_at, s.start_skew_ms) {
                (Some(at), Some(skew)) => format!(", started {skew:+.1} ms from --start-at {at}"),
                _ => String::new(),
            }
        )?;
    }
    if !r.missing_shards.is_empty() {
        writeln!(
            o,
            "  PARTIAL   shards {:?} are missing (merge --partial): the figures are not the whole run's",
            r.missing_shards
        )?;
    }
    if let Some(c) = &r.capacity {
        capacity(o, c)?;
    }
    if !r.labels.is_empty() {
        let shown: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(o, "  labels    {}", shown.join(", "))?;
    }
    let t = &r.totals;
    write!(
        o,
        "  result    {} requests in {:.2}s: {:.1} req/s achieved",
        t.requests, r.duration_seconds, t.rps
    )?;
    if let (Some(asked), true) = (l.asked_requests, r.duration_seconds > 0.0) {
        if asked > 0 {
            write!(
                o,
                " ({:.1}% of the {asked} asked)",
                t.requests as f64 * 100.0 / asked as f64
            )?;
        }
    }
    writeln!(o)?;
    writeln!(
        o,
        "            {} ok, {} errors, {} sent late",
        t.ok, t.errors, t.sent_late
    )?;
    let codes: Vec<String> = r
        .status_codes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    writeln!(
        o,
        "  status    {}",
        if codes.is_empty() {
            "none".into()
        } else {
            codes.join(", ")
        }
    )?;
    if !r.errors.is_empty() {
        writeln!(o, "  errors    (most frequent first)")?;
        for e in r.errors.iter().take(TOP_ERRORS) {
            writeln!(o, "    {:>8} × {}: {}", e.count, e.status, e.message)?;
        }
        if r.errors.len() > TOP_ERRORS {
            writeln!(
                o,
                "    … {} more kinds in the JSON report",
                r.errors.len() - TOP_ERRORS
            )?;
        }
    }
    if let Some(t) = &r.tls {
        writeln!(
            o,
            "  tls       {:.1} handshakes/s; {}; {}; groups {}; alpn {}; resumed {} ({:.1}%)",
            r.totals.handshakes_per_second.unwrap_or(0.0),
            counts(&t.versions),
            counts(&t.cipher_suites),
            counts(&t.groups),
            counts(&t.alpn),
            t.resumed,
            t.resumed_ratio * 100.0
        )?;
        if !t.after_handshake.is_empty() {
            writeln!(
                o,
                "  after handshake (not in time; the handshakes count)  {}",
                counts(&t.after_handshake)
            )?;
        }
        if let Some(errors) = r.handshake_errors.as_ref().filter(|e| !e.is_empty()) {
            writeln!(o, "  failures  {}", counts(errors))?;
            for (class, message) in &t.first_errors {
                writeln!(o, "    first {class}: {message}")?;
            }
        }
    }
    if let Some(c) = &r.server_certificate {
        writeln!(
            o,
            "  server cert  {} (issuer {}), expires {} ({} days), sha256 {}",
            c.subject, c.issuer, c.not_after, c.days_to_expiry, c.sha256_fingerprint
        )?;
    }
    if let (Some(s), Some(m)) = (&r.streams, &r.messages) {
        writeln!(
            o,
            "  streams   {} opened, {} completed, {} failed",
            s.opened, s.completed, s.failed
        )?;
        writeln!(
            o,
            "  messages  {} sent ({:.1}/s), {} received ({:.1}/s){}",
            m.sent,
            m.sent_per_second,
            m.received,
            m.received_per_second,
            if m.sent_late > 0 {
                format!(", {} sent late", m.sent_late)
            } else {
                String::new()
            }
        )?;
    }
    writeln!(
        o,
        "  latency       {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"
    )?;
    if let Some(c) = &r.latency.corrected {
        latency_row(o, "corrected", c)?;
    }
    latency_row(o, "uncorrected", &r.latency.uncorrected)?;
    if let Some(p) = &r.phases {
        latency_row(o, "dns", &p.dns)?;
        latency_row(o, "tcp connect", &p.tcp_connect)?;
        latency_row(o, "tls hshake", &p.tls_handshake)?;
        if let Some(f) = &p.first_response {
            latency_row(o, "first resp", f)?;
        }
        latency_row(o, "total", &p.total)?;
    }
    if let Some(f) = &r.latency_first_message {
        latency_row(o, "first msg", f)?;
    }
    if let Some(m) = &r.latency_message {
        let label = if r.kind == "server_stream" {
            "msg gap"
        } else {
            "message"
        };
        latency_row(o, label, m)?;
    }
    if let Some(m) = &r.latency_message_corrected {
        latency_row(o, "msg corr", m)?;
        writeln!(o, "            msg corr: each message from its intended send time on the stream's schedule (message_rate)")?;
    }
    if let Some(x) = &r.retries {
        latency_row(o, "attempt", &x.attempt_latency)?;
    }
    if r.latency.corrected.is_some() {
        writeln!(o, "            corrected: from each request's intended start (coordinated omission); uncorrected: from its send")?;
    }
    write_clients(o, r)?;
    write_methods(o, r)?;
    write_backends(o, r)?;
    if !r.thresholds.is_empty() {
        writeln!(o, "  thresholds")?;
        for t in &r.thresholds {
            let actual = t.actual_text();
            let verdict = if t.passed { "passed" } else { "FAILED" };
            writeln!(
                o,
                "    {verdict:<7} {} {}  (actual {actual})",
                t.metric, t.condition
            )?;
        }
    }
    if let Some(by) = &r.aborted_by_threshold {
        writeln!(o, "  stopped early: threshold {by} failed (abort_on_fail)")?;
    }
    let p = &r.process;
    writeln!(
        o,
        "  process   cpu {:.2}s user + {:.2}s system, peak RSS {:.1} MiB",
        p.cpu_user_seconds,
        p.cpu_system_seconds,
        p.peak_rss_bytes as f64 / (1024.0 * 1024.0)
    )?;
    if let Some(t) = &r.target_process {
        let mut parts = Vec::new();
        if let Some(c) = t.cpu_seconds {
            parts.push(format!("cpu {c:.2}s"));
        }
        if let Some(c) = t.cpu_seconds_per_1k_requests {
            parts.push(format!("{:.1} ms per 1,000 requests", c * 1000.0));
        }
        if let Some(m) = t.peak_rss_bytes {
            parts.push(format!("peak RSS {:.1} MiB", m as f64 / 1048576.0));
        }
        for (k, v) in &t.runtime {
            parts.push(format!("{k} {v}"));
        }
        let what = t
            .process
            .iter()
            .chain(t.metrics_url.iter())
            .cloned()
            .collect::<Vec<_>>()
            .join(" + ");
        writeln!(o, "  target    {what}: {}", parts.join(", "))?;
        for e in &t.errors {
            writeln!(o, "            ({e})")?;
        }
    }
    Ok(())
}

/// A mix of calls: one row per entry, with its share of the requests beside its weight's.
/// What the connections and the retry policy did, when the run has them.
fn write_clients(o: &mut String, r: &Report) -> std::fmt::Result {
    if let Some(x) = &r.retries {
        writeln!(
            o,
            "  retries   {} attempts for {} calls: {} retries, {} succeeded on a retry, {} exhausted, {} throttled, {} stopped by pushback",
            x.attempts,
            r.totals.requests,
            x.retries,
            x.succeeded_on_retry,
            x.exhausted,
            x.stopped_by_throttling,
            x.stopped_by_pushback
        )?;
    }
    let replaced = |c: &&super::schema::ConnectionsReport| {
        c.closed_by_age + c.closed_by_server + c.keepalive_failures + c.churned > 0
    };
    if let Some(c) = r.connections.as_ref().filter(replaced) {
        // Only when a connection was replaced: otherwise `load.connections` says it all.
        writeln!(
            o,
            "  connections {} opened ({} requests each, {} churned for one): {} aged out, {} closed by the server ({} too_many_pings), {} keepalive failures",
            c.opened,
            c.requests_per_connection,
            c.churned,
            c.closed_by_age,
            c.closed_by_server,
            c.too_many_pings,
            c.keepalive_failures
        )?;
    }
    Ok(())
}

fn write_methods(o: &mut String, r: &Report) -> std::fmt::Result {
    if r.methods.is_empty() {
        return Ok(());
    }
    let which = if r.latency.corrected.is_some() {
        "corrected"
    } else {
        "uncorrected"
    };
    let weights: f64 = r.methods.iter().map(|m| m.weight).sum();
    writeln!(
        o,
        "  methods   a mix of {}; latency {which}",
        r.methods.len()
    )?;
    writeln!(
        o,
        "    {:<40} {:>7} {:>7} {:>9} {:>7} {:>9} {:>9}",
        "method", "weight", "share", "requests", "errors", "p50", "p99"
    )?;
    for m in &r.methods {
        let l = m
            .latency
            .corrected
            .as_ref()
            .unwrap_or(&m.latency.uncorrected);
        let share = if r.totals.requests > 0 {
            100.0 * m.requests as f64 / r.totals.requests as f64
        } else {
            0.0
        };
        writeln!(
            o,
            "    {:<40} {:>6.1}% {:>6.1}% {:>9} {:>7} {:>9} {:>9}",
            m.method,
            100.0 * m.weight / weights,
            share,
            m.requests,
            m.errors,
            human_us(l.p50_us),
            human_us(l.p99_us),
        )?;
    }
    Ok(())
}

/// Backends listed in full up to this many; beyond, the slowest (by p99) and a count.
const BACKEND_ROWS: usize = 12;

/// A fleet's backends, one row each, the slowest marked (`*`); and what resolving did.
fn write_backends(o: &mut String, r: &Report) -> std::fmt::Result {
    if r.backends.len() < 2 && r.resolution.is_none() {
        return Ok(());
    }
    let which = if r.latency.corrected.is_some() {
        "corrected"
    } else {
        "uncorrected"
    };
    writeln!(
        o,
        "  backends  {} seen; latency {which}; * the slowest (highest p99)",
        r.backends.len()
    )?;
    writeln!(
        o,
        "    {:<40} {:>7} {:>7} {:>5} {:>9} {:>7} {:>9} {:>9}",
        "address", "joined", "left", "conns", "requests", "errors", "p50", "p99"
    )?;
    let mut rows: Vec<&super::schema::BackendReport> = r.backends.iter().collect();
    if rows.len() > BACKEND_ROWS {
        let p99 = |b: &super::schema::BackendReport| {
            b.latency
                .corrected
                .as_ref()
                .unwrap_or(&b.latency.uncorrected)
                .p99_us
        };
        rows.sort_by_key(|b| std::cmp::Reverse(p99(b)));
        rows.truncate(BACKEND_ROWS - 2);
    }
    for b in &rows {
        let l = b
            .latency
            .corrected
            .as_ref()
            .unwrap_or(&b.latency.uncorrected);
        writeln!(
            o,
            "  {} {:<40} {:>6.1}s {:>7} {:>5} {:>9} {:>7} {:>9} {:>9}",
            if b.slowest { "*" } else { " " },
            b.address,
            b.joined_s,
            b.left_s
                .map_or_else(|| "-".to_string(), |s| format!("{s:.1}s")),
            b.connections,
            b.requests,
            b.errors,
            human_us(l.p50_us),
            human_us(l.p99_us),
        )?;
    }
    if rows.len() < r.backends.len() {
        writeln!(
            o,
            "    … {} more in the JSON report (the {} slowest are shown)",
            r.backends.len() - rows.len(),
            rows.len()
        )?;
    }
    if let Some(res) = &r.resolution {
        write!(
            o,
            "  resolve   {} resolved {} times (every {}s), {} failed",
            res.name, res.resolutions, res.resolve_every_seconds, res.failures
        )?;
        match &res.last_failure {
            Some(why) => writeln!(o, " (the last good set was kept; last: {why})")?,
            None => writeln!(o)?,
        }
    }
    Ok(())
}

/// p50, p90, p99, p99.9, p99.99, max and mean, as people read them.
pub fn latency_cells(s: &LatencySummary) -> [String; 7] {
    [
        s.p50_us,
        s.p90_us,
        s.p99_us,
        s.p999_us,
        s.p9999_us,
        s.max_us,
        s.mean_us.round() as u64,
    ]
    .map(human_us)
}

fn latency_row(o: &mut String, label: &str, s: &LatencySummary) -> std::fmt::Result {
    let cells: String = latency_cells(s)
        .iter()
        .map(|c| format!(" {c:>9}"))
        .collect();
    writeln!(o, "  {label:<12}{cells}")
}

/// A capacity search: the answer, what limited it, and each step.
fn capacity(o: &mut String, c: &super::schema::CapacityReport) -> std::fmt::Result {
    let limit = match &c.failed_condition {
        Some(f) => format!("{} ({f})", c.limited_by),
        None => c.limited_by.clone(),
    };
    match c.rps {
        Some(rps) => writeln!(
            o,
            "  capacity  {rps:.1}/s within the SLO ({}), limited by {limit}",
            c.slo.join(", ")
        )?,
        None => writeln!(o, "  capacity  none found, limited by {limit}")?,
    }
    if let Some(per_core) = c.per_server_core {
        writeln!(
            o,
            "            {per_core:.1}/s per core the server used at that rate"
        )?;
    }
    if let Some(per_core) = c.per_usable_core {
        writeln!(
            o,
            "            {per_core:.1}/s per core the server may use (affinity and cgroup quota)"
        )?;
    }
    writeln!(
        o,
        "            step  offered/s  achieved/s   p50 (corr.)   p99 (corr.)  errors  late"
    )?;
    for (i, s) in c.steps.iter().enumerate() {
        writeln!(
            o,
            "            {:>4}  {:>9.1}  {:>10.1}  {:>12}  {:>12}  {:>5.1}%  {:>3.0}%  {}",
            i + 1,
            s.rate,
            s.achieved_rps,
            super::units::human_us(s.p50_us),
            super::units::human_us(s.p99_us),
            s.error_ratio * 100.0,
            s.late_ratio * 100.0,
            if s.passed {
                "pass".to_string()
            } else if s.repeated {
                format!(
                    "FAIL {} (by little: run again)",
                    s.failed.as_deref().unwrap_or("")
                )
            } else {
                format!("FAIL {}", s.failed.as_deref().unwrap_or(""))
            }
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::human_us;

    #[test]
    fn latency_units() {
        assert_eq!(human_us(850), "850us");
        assert_eq!(human_us(12_340), "12.34ms");
        assert_eq!(human_us(1_500_000), "1.50s");
    }
}
