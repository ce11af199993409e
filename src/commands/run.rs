//! `loadagent run`: arguments in, the run (`crate::run`) with a progress line and Ctrl-C,
//! then the summary, the outputs and the exit code of the thresholds.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::progress;
use crate::cli::RunArgs;
use crate::error::CommandError;
use crate::host::platform::Platform;
use crate::http_server::serve::Server;
use crate::http_server::web_config::WebConfig;
use crate::record::Progress;
use crate::report::outputs::{write_outputs, Outputs};
use crate::report::summary::render;
use crate::run::{check_outputs, execute, load, prepare, Hooks, IntervalSink, Prepared};
use crate::telemetry::live::LiveRun;
use crate::telemetry::node::node_info_labels;
use crate::telemetry::traces::Traces;
use crate::vocabulary::shard::{check_start_at, parse_start_at, rfc3339};
use crate::vocabulary::HostPort;
use crate::vocabulary::Shard;

/// The run's own options, read: `--shard`, `--start-at`, `--metrics-listen`, `--label`.
#[derive(Debug, Clone, Default)]
pub(super) struct Distribution {
    pub shard: Option<Shard>,
    pub start_at: Option<SystemTime>,
    /// `--metrics-listen`: where to serve the run's live metrics.
    pub metrics_listen: Option<String>,
    /// `--label KEY=VALUE`: recorded in the report over the scenario's `labels`.
    pub labels: Vec<String>,
    /// `--remote-write URL` and its headers and secrets, read.
    pub remote_write: Option<crate::telemetry::remote_write::Settings>,
}

impl Distribution {
    pub(super) fn parse(
        shard: Option<String>,
        start_at: Option<String>,
    ) -> Result<Self, CommandError> {
        let shard = shard
            .map(|s| s.parse::<Shard>())
            .transpose()
            .map_err(CommandError::invalid)?;
        let start_at = match start_at {
            Some(text) => {
                let at = parse_start_at(&text).map_err(CommandError::invalid)?;
                check_start_at(&text, at).map_err(CommandError::invalid)?;
                Some(at)
            }
            None => None,
        };
        Ok(Self {
            shard,
            start_at,
            ..Self::default()
        })
    }
}

/// `loadagent run`, its arguments whole: one run, or a series (`--repeat`).
pub(super) async fn command(args: RunArgs) -> Result<(), CommandError> {
    let outputs = Outputs {
        json: args.out,
        html: args.html,
        hlog: args.hlog,
        csv: args.csv,
    };
    match (args.repeat, args.out_dir) {
        (Some(times), Some(dir)) => {
            let series = Series {
                times,
                dir: &dir,
                pause: &args.pause,
                labels: &args.labels,
            };
            repeat(&args.scenario, outputs, args.quiet, series).await
        }
        _ => {
            let mut distribution = Distribution::parse(args.shard, args.start_at)?;
            distribution.metrics_listen = args.metrics_listen;
            distribution.labels = args.labels;
            // Read before anything is prepared: a bad URL or an unreadable token costs no
            // connection.
            if let Some(url) = &args.remote_write {
                let basic = args
                    .remote_write_user
                    .as_deref()
                    .zip(args.remote_write_password_file.as_deref());
                distribution.remote_write = Some(
                    crate::telemetry::remote_write::Settings::new(
                        url,
                        &args.remote_write_header,
                        args.remote_write_bearer_token_file.as_deref(),
                        basic,
                    )
                    .map_err(|e| CommandError::invalid(format!("--remote-write: {e}")))?
                    .with_labels(&[
                        ("job", "loadagent-run"),
                        ("instance", &crate::telemetry::node::node_name()),
                    ]),
                );
            }
            run(&args.scenario, outputs, args.quiet, distribution).await
        }
    }
}

async fn run(
    path: &Path,
    outputs: Outputs,
    quiet: bool,
    distribution: Distribution,
) -> Result<(), CommandError> {
    if distribution.shard.is_some() {
        let scenario = crate::scenario::load(path).map_err(CommandError::invalid)?;
        if scenario.capacity.is_some() {
            return Err(CommandError::invalid(format!(
                "{}: a capacity search runs whole (its rate is set step by step): run it without --shard",
                path.display()
            )));
        }
    }
    // Checked before anything is prepared: a bad label costs no connection.
    crate::vocabulary::labels::with_arguments(Default::default(), &distribution.labels)
        .map_err(CommandError::invalid)?;
    check_outputs(&outputs)?;
    let mut prepared = prepare(load(path)?).await?;
    if !distribution.labels.is_empty() {
        let labels = crate::vocabulary::labels::with_arguments(
            prepared.scenario.labels.clone(),
            &distribution.labels,
        )
        .map_err(CommandError::invalid)?;
        Arc::make_mut(&mut prepared.scenario).labels = labels;
    }
    if distribution.shard.is_some() || distribution.start_at.is_some() {
        prepared = prepared.distribute(
            distribution.shard.unwrap_or(Shard::WHOLE),
            distribution.start_at,
        )?;
        // Preparing (reflection, connections) may have taken past the start time.
        if let Some(at) = distribution.start_at {
            check_start_at(&rfc3339(at), at).map_err(|e| {
                CommandError::invalid(format!("{e} (it passed while this shard was preparing)"))
            })?;
        }
    }
    let traces = Traces::start(&prepared.scenario.tracing, None, |m| {
        eprintln!("warning: {m}")
    })
    .map_err(CommandError::invalid)?
    .map(Arc::new);
    let cancel = CancellationToken::new();
    stop_on_signal(
        cancel.clone(),
        "waiting for requests in flight, then writing the report",
    );
    let (progress_tx, progress_rx) = watch::channel(Progress::default());
    let shown = progress::show(quiet, progress_rx);
    let live = match (&distribution.metrics_listen, &distribution.remote_write) {
        (None, None) => None,
        _ => Some(live_run(&prepared, distribution.shard)?),
    };
    if let (Some(addr), Some(live)) = (&distribution.metrics_listen, &live) {
        serve_live(addr, live.clone(), cancel.child_token()).await?;
    }
    let pusher = match (&distribution.remote_write, &live) {
        (Some(settings), Some(live)) => Some(start_pushing(settings.clone(), live)),
        _ => None,
    };
    let on_interval = live.clone().map(|l| -> IntervalSink {
        let pusher = pusher.as_ref().map(|p| p.handle());
        Box::new(move |closed, _| {
            l.observe(closed);
            if let Some(p) = &pusher {
                p.push();
            }
        })
    });
    let hooks = Hooks {
        cancel,
        progress: Some(progress_tx),
        traces: traces.clone(),
        on_interval,
        on_stop: Some(Box::new(|why: &str| eprintln!("stopping: {why}"))),
        ..Hooks::default()
    };
    let finished = execute(prepared, hooks).await;
    if let Some(task) = shown {
        let _ = task.await;
    }
    if let (Ok(f), Some(live)) = (&finished, &live) {
        live.observe_rest(&f.report.intervals, &f.histograms);
    }
    let delivered = match pusher {
        Some(p) => Some(p.finish().await),
        None => None,
    };
    let finished = match finished {
        Ok(f) => f,
        Err(e) => {
            finish_traces(traces).await;
            return Err(e.into());
        }
    };
    let report = &finished.report;
    super::say(&outputs, &render(report));
    write_outputs(&outputs, report, &finished.histograms)?;
    super::say_written(&outputs);
    if let Some(line) = finish_traces(traces).await {
        println!("  traces    {line}");
    }
    if let (Some(d), Some(settings)) = (delivered, &distribution.remote_write) {
        println!(
            "  remote    {} pushes to {} ({} retried, {} refused, {} lost)",
            d.sent, settings.url, d.retries, d.rejected, d.lost
        );
    }
    if let Some(c) = &report.capacity {
        capacity_verdict(c)?;
    }
    let failed = finished.failed_thresholds();
    // One shard's figures are a part of the run: its verdicts are shown, and the run's are
    // given by `loadagent merge` (exit 3 there), so a shard's pod does not fail its Job.
    if failed > 0 && distribution.shard.is_some_and(|s| s.count > 1) {
        super::say(&outputs, &format!(
            "  note      {failed} of {} thresholds fail on this shard alone; the run's verdict is `loadagent merge`'s\n",
            report.thresholds.len()
        ));
        return Ok(());
    }
    if failed > 0 {
        return Err(CommandError::thresholds_failed(format!(
            "{failed} of {} thresholds failed",
            report.thresholds.len()
        )));
    }
    Ok(())
}

/// How a capacity search ends the command: the generator as the limit is its own code (4:
/// the figure is the generator's), a target that failed is a failed run (1), no step within
/// the SLO is a failed threshold (3).
fn capacity_verdict(c: &crate::report::schema::CapacityReport) -> Result<(), CommandError> {
    use crate::report::schema::CapacityVerdict;
    match c.verdict() {
        CapacityVerdict::GeneratorLimited => Err(CommandError::generator_limited(
            "capacity not measured: the generator was the limit (its sends fell behind while it was busy, or while the service answered as fast as unloaded); give it more concurrency or threads ([load] concurrency, threads), or cores",
        )),
        CapacityVerdict::TargetFailed => Err(CommandError::run_failed(
            "the capacity search stopped: no call succeeded in a step (the target failed)",
        )),
        CapacityVerdict::NoneWithinSlo => Err(CommandError::thresholds_failed(format!(
            "no step met the SLO{}: the capacity is below start_rate, or the rate never held",
            c.failed_condition
                .as_deref()
                .map(|f| format!(" ({f} failed)"))
                .unwrap_or_default()
        ))),
        // Ctrl-C writes the steps done and ends as an interrupted run does.
        CapacityVerdict::Found | CapacityVerdict::Interrupted => Ok(()),
    }
}

/// `run --repeat N --out-dir DIR`: the scenario N times with `pause` between runs, one JSON
/// report each, named SCENARIO-HOST-N.json so the folders of several nodes can be pooled.
/// A run that cannot run stops the series; failed thresholds do not (exit 3 at the end).
/// `--repeat N --out-dir DIR --pause D` and the labels every run of the series records.
struct Series<'a> {
    times: u32,
    dir: &'a Path,
    pause: &'a str,
    labels: &'a [String],
}

async fn repeat(
    path: &Path,
    outputs: Outputs,
    quiet: bool,
    series: Series<'_>,
) -> Result<(), CommandError> {
    let Series {
        times,
        dir,
        pause,
        labels,
    } = series;
    let pause = crate::vocabulary::duration::parse_duration(pause)
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
        let once = Outputs {
            json: Some(file),
            ..outputs.clone()
        };
        let distribution = Distribution {
            labels: labels.to_vec(),
            ..Distribution::default()
        };
        match run(path, once, quiet, distribution).await {
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

/// How long the end of a run waits for its last spans to be exported.
const TRACE_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Exports the spans still queued (waiting at most `TRACE_FLUSH`) and says what went out.
async fn finish_traces(traces: Option<Arc<Traces>>) -> Option<String> {
    let traces = traces?;
    tokio::task::spawn_blocking(move || {
        traces.shutdown(TRACE_FLUSH);
        traces.describe()
    })
    .await
    .ok()
}

/// `--metrics-listen`: serves the run's live metrics (with the agent's HTTP server: its
/// timeouts and connection cap) until `stop`.
/// The run's live series (`--metrics-listen`, `--remote-write`), labelled with its shard and
/// this node.
fn live_run(prepared: &Prepared, shard: Option<Shard>) -> Result<Arc<LiveRun>, CommandError> {
    let scenario = &prepared.scenario;
    let node = node_info_labels(&Platform::current());
    let live = LiveRun::new(
        &scenario.name,
        shard.map(|s| s.to_string()).unwrap_or_default(),
        &node,
    )
    .map_err(|e| CommandError::run_failed(format!("metrics: {e}")))?;
    if let Some(rate) = scenario.load.rate {
        let count = shard.map_or(1, |s| s.count);
        live.set_asked_rps(rate / f64::from(count));
    }
    Ok(Arc::new(live))
}

/// `--remote-write`: pushes the live series after each interval and at the end; trouble is
/// counted in the run's `loadagent_errors_total` and said once on stderr.
fn start_pushing(
    settings: crate::telemetry::remote_write::Settings,
    live: &Arc<LiveRun>,
) -> crate::telemetry::remote_write::Pusher {
    use crate::telemetry::remote_write::{PushSource, Pusher};
    let (gather, errors) = (live.clone(), live.errors());
    Pusher::start(
        settings,
        PushSource {
            gather: Box::new(move || gather.gather()),
            count: Box::new(move |kind, n| {
                errors.with_label_values(&["remote_write", kind]).inc_by(n)
            }),
            say_once: Box::new(|m| eprintln!("warning: {m}")),
        },
    )
}

async fn serve_live(
    addr: &str,
    live: Arc<LiveRun>,
    stop: CancellationToken,
) -> Result<(), CommandError> {
    let bad = |why: String| CommandError::invalid(format!("--metrics-listen {addr}: {why}"));
    let hp = HostPort::parse_listen(addr).map_err(|e| bad(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(hp.dial())
        .await
        .map_err(|e| bad(format!("cannot listen there: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| bad(format!("cannot listen there: {e}")))?;
    let page = live.clone();
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let page = page.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    page.render(),
                )
            }
        }),
    );
    let server = Server::new(router, Arc::new(WebConfig::default()), live.errors());
    tokio::spawn(server.run(listener, stop));
    eprintln!("serving the run's metrics on http://{local}/metrics");
    Ok(())
}

/// Cancels `token` on SIGINT (Ctrl-C) or SIGTERM, printing what stopping means.
pub(super) fn stop_on_signal(token: CancellationToken, stopping: &'static str) {
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
