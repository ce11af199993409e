//! The run API (`loadagent::run`) driven in-process against the embedded reference target:
//! what `loadagent run`, `--repeat` and the agent's schedules call.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use loadagent::report::outputs::Outputs;
use loadagent::run::{check_outputs, execute, load, prepare, Hooks, RunError};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_run_in_process_gives_the_typed_report_with_thresholds_judged_and_hooks_called() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "api.toml",
        &bench_scenario(
            "embedded",
            "{ payload_size = 32 }",
            "rate = 200\nduration = \"3s\"\n\n[thresholds]\n\"requests\" = \">= 600\"\n\"latency.p99\" = \"< 1ms\"\n\"error_rate\" = \"< 0.01\"",
        ),
    );
    let intervals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = intervals.clone();
    let finished = runtime()
        .block_on(async {
            let prepared = prepare(load(&s)?).await?;
            let (tx, mut rx) = tokio::sync::watch::channel(Default::default());
            let watcher = tokio::spawn(async move {
                let mut updates = 0;
                while rx.changed().await.is_ok() {
                    updates += 1;
                }
                updates
            });
            let hooks = Hooks {
                progress: Some(tx),
                on_interval: Some(Box::new(move |aggregate, _| {
                    let mut seen = seen.lock().unwrap();
                    for i in &aggregate.intervals {
                        seen.push(i.t_seconds);
                    }
                    assert_eq!(aggregate.histograms.len(), aggregate.intervals.len());
                })),
                ..Hooks::default()
            };
            let f = execute(prepared, hooks).await;
            let updates = watcher.await.unwrap();
            Ok::<_, RunError>((f?, updates))
        })
        .unwrap();
    let (finished, progress_updates) = finished;
    let r = &finished.report;
    assert_eq!(r.load.asked_requests, Some(600));
    assert_eq!(
        r.totals.requests, 600,
        "every request the schedule asked for"
    );
    assert_eq!(r.totals.ok, 600);
    assert_eq!(r.status_codes.get("OK"), Some(&600));
    assert!(progress_updates >= 1, "the progress hook saw the run");
    // Each closed interval reaches the sink once, in order (the last ones close when the run
    // ends, after the sink's last call).
    let seen = intervals.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the interval sink was called");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "once each, in order: {seen:?}"
    );
    assert!(seen.len() <= r.intervals.len());
    // Judged on the typed report: the values are the report's own.
    let by_metric = |m: &str| r.thresholds.iter().find(|t| t.metric == m).unwrap();
    assert_eq!(by_metric("requests").actual, Some(600.0));
    assert!(by_metric("requests").passed);
    assert_eq!(by_metric("error_rate").actual, Some(0.0));
    let p99 = by_metric("latency.p99");
    let corrected = r.latency.corrected.as_ref().unwrap().p99_us;
    assert_eq!(p99.actual, Some(corrected as f64), "open model: corrected");
    assert_eq!(p99.unit.as_deref(), Some("us"));
    assert_eq!(p99.passed, corrected < 1000);
    assert_eq!(finished.failed_thresholds(), usize::from(!p99.passed));
    assert_eq!(
        finished.histograms.len(),
        r.intervals.len(),
        "the hlog output's histograms come with the report"
    );
}

#[test]
fn cancelling_through_the_hooks_ends_the_run_early_with_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "cancel.toml",
        &bench_scenario("embedded", "{}", "rate = 200\nduration = \"60s\""),
    );
    let rt = runtime();
    let started = Instant::now();
    let report = rt
        .block_on(async {
            let prepared = prepare(load(&s)?).await?;
            let hooks = Hooks::default();
            let cancel = hooks.cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                cancel.cancel();
            });
            execute(prepared, hooks).await
        })
        .unwrap()
        .report;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(report.interrupted);
    assert!(report.totals.requests > 0 && report.totals.requests < 12_000);
    assert_eq!(report.totals.ok, report.totals.requests);
}

#[test]
fn what_cannot_run_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = scenario(dir.path(), "bad.toml", "kind = \"unary\"\n");
    let port = free_port();
    let down = scenario(
        dir.path(),
        "down.toml",
        &bench_scenario(&format!("127.0.0.1:{port}"), "{}", "requests = 1"),
    );
    let unwritable = Outputs {
        json: Some("/proc/r.json".into()),
        ..Outputs::default()
    };
    let rt = runtime();
    rt.block_on(async {
        assert!(matches!(
            load(&bad),
            Err(RunError::Invalid(m)) if m.contains("bad.toml") && m.contains("target")
        ));
        assert!(matches!(
            check_outputs(&unwritable),
            Err(RunError::Invalid(m)) if m.contains("/proc/r.json")
        ));
        assert!(matches!(
            prepare(load(&down).unwrap()).await,
            Err(RunError::Unreachable(_))
        ));
    });
}

/// A scenario built in memory runs as one read from a file does: no file is needed, as
/// ghz's `runner.Run` needs none.
#[test]
fn a_scenario_built_in_memory_runs() {
    let text = bench_scenario(
        "embedded",
        "{ payload_size = 8 }",
        "requests = 50\nconcurrency = 2",
    );
    let source = loadagent::vocabulary::source::Source::new("in-memory.toml", text);
    let scenario = loadagent::scenario::parse(&source).unwrap();
    let report = runtime()
        .block_on(async { execute(prepare(scenario).await?, Hooks::default()).await })
        .unwrap()
        .report;
    assert_eq!(report.totals.requests, 50);
    assert_eq!(report.totals.ok, 50);
}
