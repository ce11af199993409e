//! `[load]`: the schedule — open model (rate, stages) or closed (concurrency, requests),
//! duration, connections, balance — and how `[capacity]` sets it.

use std::time::Duration;

use super::reader::TableReader;
use crate::vocabulary::*;

/// With `[capacity]` the search sets the rate and the length of the run, and judges each
/// step on its SLO: what would set or judge them otherwise is refused.
pub(super) fn search_sets_the_load(
    root: &TableReader<'_, '_, '_>,
    thresholds: &crate::vocabulary::conditions::Thresholds,
) {
    if let Some(l) = root.table("load") {
        for key in ["rate", "duration", "requests", "stages"] {
            if l.has(key) {
                root.ctx().report_at(
                    l.loc(),
                    &format!("load.{key}"),
                    "a capacity search sets the rate and the run's length itself ([capacity] start_rate, max_rate, max_duration): remove it",
                );
            }
        }
    }
    if !thresholds.list.is_empty() {
        root.ctx().report_at(
            root.loc(),
            "thresholds",
            "a capacity search judges each step on [capacity] slo; thresholds on the whole search would mix its steps: move the conditions to slo",
        );
    }
}

pub(super) fn read_load(l: &TableReader<'_, '_, '_>) -> Option<Load> {
    let ctx = l.ctx();
    let rate = l.number("rate", true).map(|r| r.value);
    let concurrency = l.integer("concurrency", 1).map(|c| c.value);
    let connections = l.integer("connections", 1).map(|c| c.value);
    let duration = l.duration("duration", true);
    let requests = l.integer("requests", 1).map(|r| r.value);
    let warmup = l.duration("warmup", false).map(|w| w.value);
    let threads = l
        .integer("threads", 1)
        .and_then(|t| u32::try_from(t.value).ok());
    let mut stages = Vec::new();
    let stage_tables = l.tables("stages");
    for st in &stage_tables {
        let d = st.duration("duration", true);
        let r = st.number("rate", false);
        if !st.has("duration") {
            ctx.report_at(
                st.loc(),
                &st.key_path("duration"),
                "missing; each stage needs `duration` and `rate`",
            );
        }
        if !st.has("rate") {
            ctx.report_at(
                st.loc(),
                &st.key_path("rate"),
                "missing; each stage needs `duration` and `rate` (the rate reached at its end)",
            );
        }
        if let (Some(d), Some(r)) = (d, r) {
            stages.push(Stage {
                duration: d.value,
                rate: r.value,
            });
        }
    }
    for st in &stage_tables {
        st.finish();
    }
    if let (Some(d), false) = (&duration, stages.is_empty()) {
        ctx.report_at(
            d.loc,
            &l.key_path("duration"),
            "cannot be given with [[load.stages]]: the stages' durations add up to the run's length; remove one",
        );
    }
    // Each duration is bounded when read; their sum is bounded too, so the run's end is an
    // instant that exists.
    let length = stages
        .iter()
        .map(|s| s.duration)
        .chain(duration.as_ref().map(|d| d.value))
        .chain(warmup)
        .try_fold(Duration::ZERO, Duration::checked_add);
    if length.is_none_or(|t| t > duration::MAX_DURATION) {
        ctx.report_at(
            l.loc(),
            &l.key_path(if stages.is_empty() {
                "duration"
            } else {
                "stages"
            }),
            format!(
                "the run (warm-up, duration and stages together) is longer than the maximum, {}",
                duration::MAX_DURATION_TEXT
            ),
        );
    }
    let concurrency = concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    let connections = connections.unwrap_or(DEFAULT_CONNECTIONS);
    let bound = |v: u64, key: &str| -> Option<u32> {
        match u32::try_from(v) {
            Ok(n) if n <= MAX_SLOTS => Some(n),
            _ => {
                ctx.report_at(
                    l.loc(),
                    &l.key_path(key),
                    format!("{v} is too large (at most {MAX_SLOTS})"),
                );
                None
            }
        }
    };
    let concurrency = bound(concurrency, "concurrency");
    let connections = bound(connections, "connections");
    let keepalive = l.table("keepalive").map(|k| read_keepalive(&k));
    let connection_max_age = l.duration("connection_max_age", true).and_then(|a| {
        if a.value < Duration::from_secs(1) {
            ctx.report_at(
                a.loc,
                &l.key_path("connection_max_age"),
                "below 1s a connection would be replaced before it carried much; write at least \"1s\" (gRPC servers use minutes)",
            );
            return None;
        }
        Some(a.value)
    });
    let connection_churn = l.number("connection_churn", true).and_then(|c| {
        if c.value < MIN_CHURN {
            ctx.report_at(
                c.loc,
                &l.key_path("connection_churn"),
                format!("at least {MIN_CHURN} new connections a second (less would wait past any run for its first); remove the key for none"),
            );
            return None;
        }
        if c.value > MAX_CHURN {
            ctx.report_at(
                c.loc,
                &l.key_path("connection_churn"),
                format!("at most {MAX_CHURN} new connections a second (each leaves a socket in TIME_WAIT for a minute); spread more over shards"),
            );
            return None;
        }
        if rate.is_some_and(|r| c.value > r) {
            ctx.report_at(
                c.loc,
                &l.key_path("connection_churn"),
                "more than `rate`: churned connections carry a share of the requests, not more of them; write at most the rate",
            );
            return None;
        }
        Some(c.value)
    });
    l.finish();
    let duration = duration.map(|d| d.value);
    let duration = if duration.is_none() && requests.is_none() && stages.is_empty() {
        Some(DEFAULT_DURATION)
    } else {
        duration
    };
    Some(Load {
        rate,
        stages,
        concurrency: concurrency?,
        connections: connections?,
        duration,
        requests,
        warmup: warmup.unwrap_or(Duration::ZERO),
        threads,
        keepalive: keepalive.flatten(),
        connection_max_age,
        connection_churn,
    })
}

/// New connections a second `connection_churn` may ask: each closed one waits a minute in
/// TIME_WAIT, and loopback's ephemeral ports (about 28,000) are shared by every run.
const MAX_CHURN: f64 = 200.0;

/// The fewest: one a hundred seconds (a smaller rate's period does not fit a `Duration`).
const MIN_CHURN: f64 = 0.01;

/// gRPC's defaults: no keepalive unless asked; a PING's answer awaited 20 s.
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// `keepalive = { time, timeout, without_calls }`.
fn read_keepalive(k: &TableReader<'_, '_, '_>) -> Option<Keepalive> {
    let ctx = k.ctx();
    let time = k.duration("time", true);
    if !k.has("time") {
        ctx.report_at(
            k.loc(),
            &k.key_path("time"),
            "missing; write how long a connection may be quiet before a PING, e.g. time = \"10s\"",
        );
    }
    let timeout = k.duration("timeout", true);
    let without_calls = k.boolean("without_calls").unwrap_or(false);
    k.finish();
    let time = time?;
    if time.value < Duration::from_secs(1) {
        ctx.report_at(
            time.loc,
            &k.key_path("time"),
            "below 1s; gRPC clients ping at most every 10s (servers answer more with GOAWAY too_many_pings): write at least \"1s\"",
        );
        return None;
    }
    Some(Keepalive {
        time: time.value,
        timeout: timeout.map_or(DEFAULT_KEEPALIVE_TIMEOUT, |t| t.value),
        without_calls,
    })
}

pub(super) fn read_load_defaults() -> Option<Load> {
    Some(Load {
        rate: None,
        stages: Vec::new(),
        concurrency: DEFAULT_CONCURRENCY as u32,
        connections: DEFAULT_CONNECTIONS as u32,
        duration: Some(DEFAULT_DURATION),
        requests: None,
        warmup: Duration::ZERO,
        threads: None,
        keepalive: None,
        connection_max_age: None,
        connection_churn: None,
    })
}
