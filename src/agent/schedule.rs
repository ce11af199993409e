//! Scheduled scenarios: each `[[schedules]]` entry runs its scenario every `every` (plus
//! jitter) through the same run API as `loadagent run` (`crate::run`); results become metrics and are kept for
//! `/api/v1/runs`. Two schedules never overlap on one node unless one allows it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::config::ScheduleConfig;
use crate::record::histogram::decode;
use crate::report::schema::{CapacityReport, CapacityVerdict};
use crate::report::Report;
use crate::run::capacity_search::LIMITED_BY_NAMES;
use crate::run::{execute, load, prepare, Hooks};
use crate::telemetry::live::observe_hdr;
use crate::telemetry::traces::Traces;
use crate::telemetry::Metrics;

/// Reports kept for `/api/v1/runs`.
const KEPT_RUNS: usize = 20;

/// The last reports of scheduled runs, newest last.
pub type Runs = Arc<Mutex<VecDeque<Report>>>;

#[derive(Debug, Clone)]
/// What every scheduled run shares.
pub struct ScheduleContext {
    /// The agent's metrics.
    pub metrics: Arc<Metrics>,
    /// The reports kept for `/api/v1/runs`.
    pub runs: Runs,
    /// Held while a run that must not overlap is in progress.
    pub exclusive: Arc<tokio::sync::Mutex<()>>,
    /// Stops the schedules with the agent.
    pub stop: CancellationToken,
    /// Where runs' spans go, when tracing is on.
    pub traces: Option<Arc<Traces>>,
    /// `[remote_write]`: pushes the run series after each run.
    pub push: Option<crate::telemetry::remote_write::PushHandle>,
}

fn jittered(base: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return base;
    }
    base + jitter.mul_f64(rand::rng().random::<f64>())
}

/// Exports a run's results as metrics.
fn export(m: &Metrics, name: &str, report: &Report, ok: bool) {
    for (status, n) in &report.status_codes {
        m.run_requests.with_label_values(&[name, status]).inc_by(*n);
    }
    for (which, summary) in [
        ("corrected", report.latency.corrected.as_ref()),
        ("uncorrected", Some(&report.latency.uncorrected)),
    ] {
        let Some(h) = summary.and_then(|s| decode(&s.hdr).ok()) else {
            continue;
        };
        observe_hdr(&m.run_latency.with_label_values(&[name, which]), &h);
    }
    if let Some(errors) = &report.handshake_errors {
        for (class, n) in errors {
            m.run_handshake_errors
                .with_label_values(&[name, class])
                .inc_by(*n);
        }
        let done = report.phases.as_ref().map_or(0, |p| p.tls_handshake.count);
        m.run_handshakes.with_label_values(&[name]).inc_by(done);
    }
    m.run_rps.with_label_values(&[name]).set(report.totals.rps);
    if let (Some(asked), true) = (report.load.asked_requests, report.duration_seconds > 0.0) {
        m.run_asked_rps
            .with_label_values(&[name])
            .set(asked as f64 / report.duration_seconds);
    }
    if report.totals.ok > 0 {
        let cpu = report.process.cpu_user_seconds + report.process.cpu_system_seconds;
        m.run_cpu_per_1k
            .with_label_values(&[name])
            .set(cpu / report.totals.requests as f64 * 1000.0);
    }
    if let Some(t) = &report.target_process {
        if let Some(c) = t.cpu_seconds_per_1k_requests {
            m.run_target_cpu_per_1k.with_label_values(&[name]).set(c);
        }
        if let Some(b) = t.peak_rss_bytes {
            m.run_target_rss.with_label_values(&[name]).set(b as f64);
        }
    }
    if let Some(p) = &report.phases {
        let mut phases = vec![
            ("dns", &p.dns),
            ("tcp_connect", &p.tcp_connect),
            ("tls_handshake", &p.tls_handshake),
            ("total", &p.total),
        ];
        if let Some(f) = &p.first_response {
            phases.push(("first_response", f));
        }
        for (phase, s) in phases {
            m.run_phase
                .with_label_values(&[name, phase, "0.5"])
                .set(s.p50_us as f64 / 1e6);
            m.run_phase
                .with_label_values(&[name, phase, "0.99"])
                .set(s.p99_us as f64 / 1e6);
        }
    }
    if let Some(t) = &report.tls {
        m.run_resumed_ratio
            .with_label_values(&[name])
            .set(t.resumed_ratio);
    }
    if let Some(c) = &report.capacity {
        export_capacity(m, name, c);
    }
    m.run_last.with_label_values(&[name]).set(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    );
    m.run_success
        .with_label_values(&[name])
        .set(if ok { 1.0 } else { 0.0 });
}

/// A capacity search's answer: the rate and its per-core figures where the search found
/// one (else no series, so an alert on a drop never compares with a search that measured
/// nothing), and what ended it as a state set.
fn export_capacity(m: &Metrics, name: &str, c: &CapacityReport) {
    let found = c.verdict() == CapacityVerdict::Found;
    for (vec, value) in [
        (&m.run_capacity_rps, c.rps),
        (&m.run_capacity_per_server_core, c.per_server_core),
        (&m.run_capacity_per_usable_core, c.per_usable_core),
    ] {
        match value.filter(|_| found) {
            Some(v) => vec.with_label_values(&[name]).set(v),
            None => {
                let _ = vec.remove_label_values(&[name]);
            }
        }
    }
    for limit in LIMITED_BY_NAMES {
        m.run_capacity_limited_by
            .with_label_values(&[name, limit])
            .set(if c.limited_by == limit { 1.0 } else { 0.0 });
    }
}

/// Whether a run passed: its thresholds met and, for a capacity search, a capacity found.
fn passed(report: &Report) -> bool {
    report.thresholds.iter().all(|t| t.passed)
        && report
            .capacity
            .as_ref()
            .is_none_or(|c| c.verdict() == CapacityVerdict::Found)
}

/// Runs a scenario once; `None` with the failure counted when it could not run.
async fn run_once(s: &ScheduleConfig, ctx: &ScheduleContext) -> Option<Report> {
    let failed = |metrics: &Metrics, kind: &str, why: &str| {
        metrics
            .errors_total
            .with_label_values(&["schedule", kind])
            .inc();
        tracing::warn!(scenario = %s.scenario.display(), error = %why, "scheduled run failed");
    };
    let prepared = match async { prepare(load(&s.scenario)?).await }.await {
        Ok(p) => p,
        Err(e) => {
            failed(&ctx.metrics, "prepare", &e.to_string());
            return None;
        }
    };
    let name = prepared.scenario.name.clone();
    let (metrics, scenario) = (ctx.metrics.clone(), s.scenario.clone());
    let stopping = scenario.clone();
    let hooks = Hooks {
        cancel: ctx.stop.child_token(),
        traces: ctx.traces.clone(),
        on_watch_error: Some(Box::new(move |why: String| {
            metrics
                .errors_total
                .with_label_values(&["schedule", "target_process"])
                .inc();
            tracing::warn!(scenario = %scenario.display(), error = %why, "scheduled run not watching its target");
        })),
        on_stop: Some(Box::new(move |why: &str| {
            tracing::info!(scenario = %stopping.display(), "scheduled run stopping early: {why}");
        })),
        ..Hooks::default()
    };
    let report = match execute(prepared, hooks).await {
        Ok(f) => f.report,
        Err(e) => {
            failed(&ctx.metrics, "connect", &e.to_string());
            ctx.metrics
                .runs_total
                .with_label_values(&[name.as_str(), "failed"])
                .inc();
            ctx.metrics
                .run_success
                .with_label_values(&[name.as_str()])
                .set(0.0);
            return None;
        }
    };
    let passed = passed(&report);
    export(&ctx.metrics, &name, &report, passed);
    if let Some(p) = &ctx.push {
        p.push();
    }
    ctx.metrics
        .runs_total
        .with_label_values(&[
            name.as_str(),
            if passed { "ok" } else { "thresholds_failed" },
        ])
        .inc();
    Some(report)
}

/// Runs a scenario once in a task of its own, so that a bug that panics is counted
/// (`loadagent_errors_total{component="schedule",kind="panic"}`) and the schedule runs again
/// at its next time instead of dying silently.
async fn run_guarded(s: &ScheduleConfig, ctx: &ScheduleContext) -> Option<Report> {
    let (s, ctx) = (s.clone(), ctx.clone());
    let scenario = s.scenario.clone();
    let metrics = ctx.metrics.clone();
    match tokio::spawn(async move { run_once(&s, &ctx).await }).await {
        Ok(report) => report,
        Err(e) => {
            metrics
                .errors_total
                .with_label_values(&["schedule", "panic"])
                .inc();
            tracing::error!(scenario = %scenario.display(), error = %e, "scheduled run panicked (a bug: please report it)");
            None
        }
    }
}

/// Runs one schedule until the agent stops.
pub fn spawn(s: ScheduleConfig, ctx: ScheduleContext) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut wait = jittered(Duration::ZERO, s.jitter);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = ctx.stop.cancelled() => return,
            }
            let report = if s.allow_overlap {
                run_guarded(&s, &ctx).await
            } else {
                let _turn = tokio::select! {
                    g = ctx.exclusive.lock() => g,
                    _ = ctx.stop.cancelled() => return,
                };
                run_guarded(&s, &ctx).await
            };
            if let Some(r) = report {
                if let Ok(mut runs) = ctx.runs.lock() {
                    if runs.len() == KEPT_RUNS {
                        runs.pop_front();
                    }
                    runs.push_back(r);
                }
            }
            wait = jittered(s.every, s.jitter);
        }
    })
}
