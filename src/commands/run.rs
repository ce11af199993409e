//! `loadagent run`: prepare, drive the load, summarise, write the report and other outputs,
//! judge the thresholds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{prepare, progress};
use crate::error::CommandError;
use crate::host::target_process::TargetWatch;
use crate::load::{drive, RunOutcome};
use crate::record::Progress;
use crate::report::outputs::{check_writable, write_outputs, Outputs};
use crate::report::summary::render;
use crate::report::thresholds::evaluate;
use crate::report::Report;
use crate::scenario::Scenario;
use crate::telemetry::run_span::RunSpan;
use crate::telemetry::traces::Traces;

/// Files a run writes besides the summary.
#[derive(Debug, Clone, Default)]
pub struct RunOutputs {
    pub json: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub hlog: Option<PathBuf>,
    pub csv: Option<PathBuf>,
}

pub async fn run(path: &Path, outputs: RunOutputs, quiet: bool) -> Result<(), CommandError> {
    let outputs = Outputs {
        json: outputs.json,
        html: outputs.html,
        hlog: outputs.hlog,
        csv: outputs.csv,
    };
    for p in outputs.paths() {
        check_writable(p)?;
    }
    let mut ready = prepare(path).await?.ready();
    let scenario = ready.scenario.clone();
    let watch = watch_target(&scenario).await?;
    let traces = Traces::start(&scenario.tracing, None, |m| eprintln!("warning: {m}"))
        .map_err(CommandError::invalid)?;
    let run_span = traces.as_ref().map(|t| {
        let (span, sampler) = RunSpan::start(t, &scenario, &ready.endpoint.address);
        ready.plan.trace = Some(sampler);
        span
    });
    let asked = ready.asked;
    let cancel = CancellationToken::new();
    stop_on_signal(
        cancel.clone(),
        "waiting for requests in flight, then writing the report",
    );
    let aborted_by = Arc::new(Mutex::new(None));
    let check = abort_check(
        &scenario,
        &ready.schema_source,
        asked,
        cancel.clone(),
        aborted_by.clone(),
    );
    let (progress_tx, progress_rx) = watch::channel(Progress::default());
    let shown = progress::show(quiet, progress_rx);
    let driven = drive(ready.plan, ready.endpoint, cancel, progress_tx, check).await;
    let outcome = match driven {
        Ok(o) => o,
        Err(e) => {
            let why = format!("{e} (target {})", scenario.target.address.describe());
            if let Some(span) = run_span {
                span.failed(&why);
            }
            finish_traces(traces).await;
            return Err(CommandError::run_failed(why));
        }
    };
    if let Some(task) = shown {
        let _ = task.await;
    }
    drop(ready.embedded);

    let mut report = Report::build(&scenario, &ready.schema_source, &outcome, asked);
    if let Some(w) = watch {
        report.target_process = Some(w.finish(outcome.started_at, report.totals.requests).await);
    }
    let json = serde_json::to_value(&report).unwrap_or_default();
    report.thresholds = evaluate(&scenario.thresholds, &json, scenario.load.model());
    report.aborted_by_threshold = aborted_by.lock().ok().and_then(|g| g.clone());
    outputs.say(&render(&report));
    write_outputs(&outputs, &report, &outcome.aggregate.histograms)?;
    outputs.say_written();
    if let Some(span) = run_span {
        span.finish(&report);
    }
    if let Some(line) = finish_traces(traces).await {
        println!("  traces    {line}");
    }
    let failed = report.thresholds.iter().filter(|t| !t.passed).count();
    if failed > 0 {
        return Err(CommandError::thresholds_failed(format!(
            "{failed} of {} thresholds failed",
            report.thresholds.len()
        )));
    }
    Ok(())
}

/// `run --repeat N --out-dir DIR`: the scenario N times with `pause` between runs, one JSON
/// report each, named SCENARIO-HOST-N.json so the folders of several nodes can be pooled.
/// A run that cannot run stops the series; failed thresholds do not (exit 3 at the end).
pub async fn repeat(
    path: &Path,
    outputs: RunOutputs,
    quiet: bool,
    times: u32,
    dir: &Path,
    pause: &str,
) -> Result<(), CommandError> {
    let pause = crate::scenario::duration::parse_duration(pause)
        .map_err(|e| CommandError::invalid(format!("--pause {pause}: {e}")))?;
    let scenario = crate::scenario::load(path).map_err(CommandError::invalid)?;
    if !dir.is_dir() {
        std::fs::create_dir(dir).map_err(|e| {
            CommandError::invalid(format!(
                "--out-dir {}: cannot create it ({e}); create its parent folder first",
                dir.display()
            ))
        })?;
    }
    let host = crate::host::platform::Platform::current().hostname;
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    // Ctrl-C or SIGTERM ends the series: the run in progress drains and writes its report.
    let stop = CancellationToken::new();
    stop_on_signal(stop.clone(), "the series ends after this run");
    let mut failed_thresholds = 0;
    for i in 1..=times {
        let file = dir.join(format!(
            "{}-{}-{i:02}.json",
            safe(&scenario.name),
            safe(&host)
        ));
        println!("run {i} of {times} -> {}", file.display());
        let once = RunOutputs {
            json: Some(file),
            ..outputs.clone()
        };
        match run(path, once, quiet).await {
            Ok(()) => {}
            Err(e) if e.code == crate::error::ExitCode::ThresholdsFailed => {
                eprintln!("run {i}: {e}");
                failed_thresholds += 1;
            }
            Err(e) => return Err(e),
        }
        if i < times {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => {}
            }
            if stop.is_cancelled() {
                return Err(CommandError::run_failed(format!(
                    "stopped after {i} of {times} runs"
                )));
            }
        }
    }
    if failed_thresholds > 0 {
        return Err(CommandError::thresholds_failed(format!(
            "thresholds failed in {failed_thresholds} of {times} runs"
        )));
    }
    Ok(())
}

/// Starts watching the target's process and metrics endpoint, when the scenario names them.
pub async fn watch_target(scenario: &Scenario) -> Result<Option<TargetWatch>, CommandError> {
    if scenario.target.watch.is_empty() {
        return Ok(None);
    }
    TargetWatch::start(scenario.target.watch.clone())
        .await
        .map(Some)
        .map_err(|e| CommandError::invalid(format!("{}: {e}", scenario.path.display())))
}

/// How long the end of a run waits for its last spans to be exported.
const TRACE_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Exports the spans still queued (waiting at most `TRACE_FLUSH`) and says what went out.
async fn finish_traces(traces: Option<Traces>) -> Option<String> {
    let traces = traces?;
    tokio::task::spawn_blocking(move || {
        traces.shutdown(TRACE_FLUSH);
        traces.describe()
    })
    .await
    .ok()
}

/// With `abort_on_fail`, thresholds are checked on the data so far each time an interval
/// closes; the first failure stops the run (and is named in the report).
fn abort_check(
    scenario: &Arc<Scenario>,
    schema_source: &str,
    asked: Option<u64>,
    cancel: CancellationToken,
    aborted_by: Arc<Mutex<Option<String>>>,
) -> impl FnMut(&crate::record::Aggregate, std::time::Duration) + Send + 'static {
    let scenario = scenario.clone();
    let schema_source = schema_source.to_string();
    move |aggregate, elapsed| {
        if !scenario.thresholds.abort_on_fail || cancel.is_cancelled() {
            return;
        }
        let outcome = RunOutcome {
            aggregate: aggregate.clone(),
            started_at: std::time::SystemTime::now(),
            measured: elapsed,
            interrupted: false,
            process: Default::default(),
            threads: 1,
            generator_panics: 0,
        };
        let report = Report::build(&scenario, &schema_source, &outcome, asked);
        let json = serde_json::to_value(&report).unwrap_or_default();
        if let Some(failed) = evaluate(&scenario.thresholds, &json, scenario.load.model())
            .into_iter()
            .find(|t| !t.passed)
        {
            if let Ok(mut slot) = aborted_by.lock() {
                *slot = Some(format!("{} {}", failed.metric, failed.condition));
            }
            eprintln!(
                "stopping: threshold {} {} failed (abort_on_fail)",
                failed.metric, failed.condition
            );
            cancel.cancel();
        }
    }
}

/// Cancels `token` on SIGINT (Ctrl-C) or SIGTERM, printing what stopping means.
pub fn stop_on_signal(token: CancellationToken, stopping: &'static str) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("stopping: {stopping}");
        token.cancel();
    });
}
