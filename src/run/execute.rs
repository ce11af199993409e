//! Executing a prepared run: watch the target, open the run's span, drive the load (with
//! `abort_on_fail` checked as each interval closes), build the typed report, judge the
//! thresholds on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::span::RunSpan;
use super::{Prepared, RunError};
use crate::host::target_process::TargetWatch;
use crate::record::aggregator::IntervalHistograms;
use crate::record::{Aggregate, Progress};
use crate::report::schema::ShardInfo;
use crate::report::thresholds::judge;
use crate::report::Report;
use crate::telemetry::traces::Traces;
use crate::vocabulary::shard::rfc3339;
use crate::vocabulary::{Scenario, Shard};

/// Called each time intervals close, with the totals so far, the intervals (and their
/// histograms) that just closed, and the measured time.
pub type IntervalSink = Box<dyn FnMut(&Aggregate, Duration) + Send>;

/// What the caller of a run sees and controls while it goes on.
#[derive(Default)]
pub struct Hooks {
    /// Cancelling stops taking new requests; those in flight finish, then the report is built.
    pub cancel: CancellationToken,
    /// Live figures, about four times a second.
    pub progress: Option<watch::Sender<Progress>>,
    /// Each closed interval (after the `abort_on_fail` check).
    pub on_interval: Option<IntervalSink>,
    /// Where the run's span and its sampled calls go.
    pub traces: Option<Arc<Traces>>,
    /// Without it, a target process or metrics URL that cannot be watched fails the run (exit
    /// 2 for `loadagent run`); with it, the run goes on unwatched and the problem is handed
    /// here (the agent counts it).
    pub on_watch_error: Option<Box<dyn FnOnce(String) + Send>>,
    /// Told why the run stops before its end, when it does (a threshold failed with
    /// `abort_on_fail`, the server speaks another protocol): the library prints nothing,
    /// `loadagent run` says it on stderr.
    pub on_stop: Option<StopSink>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("cancel", &self.cancel)
            .field("progress", &self.progress.is_some())
            .field("on_interval", &self.on_interval.is_some())
            .field("traces", &self.traces.is_some())
            .field("on_watch_error", &self.on_watch_error.is_some())
            .field("on_stop", &self.on_stop.is_some())
            .finish()
    }
}

/// Receives why a run stops early (`Hooks::on_stop`).
pub type StopSink = Box<dyn FnMut(&str) + Send>;

/// A run that ran: the typed report (thresholds judged) and the interval histograms the hlog
/// output is written from.
#[derive(Debug)]
pub struct Finished {
    /// The report, thresholds judged.
    pub report: Report,
    /// Each interval's histograms, for the hlog output.
    pub histograms: Vec<IntervalHistograms>,
}

impl Finished {
    /// Thresholds that failed.
    pub fn failed_thresholds(&self) -> usize {
        self.report.thresholds.iter().filter(|t| !t.passed).count()
    }
}

/// Runs a prepared scenario to its end (or its cancellation).
pub async fn execute(prepared: Prepared, hooks: Hooks) -> Result<Finished, RunError> {
    let Prepared {
        scenario,
        schema_source,
        endpoint,
        mut plan,
        asked,
        embedded,
    } = prepared;
    let (shard, start_at) = (plan.shard, plan.start_at);
    let watch = match start_watch(&scenario).await {
        Ok(w) => w,
        Err(why) => match hooks.on_watch_error {
            Some(tell) => {
                tell(why);
                None
            }
            None => return Err(RunError::Invalid(why)),
        },
    };
    let span = hooks.traces.as_deref().map(|t| {
        let (span, sampler) = RunSpan::start(t, &scenario, &endpoint.address);
        plan.trace = Some(sampler);
        span
    });
    let aborted_by = Arc::new(Mutex::new(None));
    let wrong_protocol = Arc::new(Mutex::new(None));
    let capacity = match (&scenario.capacity, &plan.live) {
        (Some(config), Some(live)) => Some(super::capacity::CapacityRun::new(
            config.clone(),
            scenario.clone(),
            schema_source.clone(),
            live.clone(),
            crate::load::generator_threads(&plan.load),
        )),
        _ => None,
    };
    let check = interval_check(
        IntervalCheck {
            scenario: scenario.clone(),
            schema_source: schema_source.clone(),
            asked,
            cancel: hooks.cancel.clone(),
            aborted_by: aborted_by.clone(),
            wrong_protocol: wrong_protocol.clone(),
            capacity: capacity.clone(),
            on_stop: hooks.on_stop,
        },
        hooks.on_interval,
    );
    // Without a listener the progress goes nowhere; the driver always sends it.
    let progress = hooks
        .progress
        .unwrap_or_else(|| watch::channel(Progress::default()).0);
    let outcome = match crate::load::drive(plan, endpoint, hooks.cancel, progress, check).await {
        Ok(o) => o,
        Err(e) => {
            let why = format!("{e} (target {})", scenario.target.address.describe());
            if let Some(span) = span {
                span.failed(&why);
            }
            return Err(RunError::Unreachable(why));
        }
    };
    drop(embedded);
    // The server speaks another protocol: the run fails as one at a target that does not
    // speak HTTP/2 does, with the message that says which protocol to set.
    // So does a run in which no call succeeded and calls were left waiting for the server's
    // first answer: the target never answered.
    let stopped_for = wrong_protocol.lock().ok().and_then(|g| g.clone());
    let failed_for = stopped_for
        .or_else(|| wrong_protocol_of(&outcome.aggregate.totals))
        .or_else(|| {
            failure_marked(&outcome.aggregate.totals, crate::grpc::status::NO_ANSWER)
                .map(|why| format!("the target never answered: {why}"))
        });
    if let Some(why) = failed_for {
        let why = format!("{}: no call succeeded: {why}", scenario.path.display());
        if let Some(span) = span {
            span.failed(&why);
        }
        return Err(RunError::Unreachable(why));
    }
    let mut report = super::report::build(&scenario, &schema_source, &outcome, asked);
    let windows = capacity
        .as_ref()
        .map(|run| super::capacity::lock(run).windows(outcome.started_at))
        .unwrap_or_default();
    if shard != Shard::WHOLE || start_at.is_some() {
        report.shard = Some(ShardInfo {
            index: shard.index,
            count: shard.count,
            start_at: start_at.map(rfc3339),
            start_skew_ms: start_at.map(|at| match outcome.zero_at.duration_since(at) {
                Ok(late) => late.as_secs_f64() * 1e3,
                Err(early) => -early.duration().as_secs_f64() * 1e3,
            }),
        });
    }
    let mut server_cores = Vec::new();
    if let Some(w) = watch {
        let (target, cores) = w
            .finish(outcome.started_at, report.totals.requests, &windows)
            .await;
        report.target_process = Some(target);
        server_cores = cores;
    }
    if let Some(run) = &capacity {
        let mut run = super::capacity::lock(run);
        run.run_ended(outcome.interrupted);
        let usable = report
            .target_process
            .as_ref()
            .and_then(|t| t.platform.as_ref())
            .map(|p| p.cores());
        report.capacity = Some(run.report(&server_cores, usable));
        // The schedule asked for whatever the search set; no one figure to compare with.
        report.load.asked_requests = None;
    }
    report.thresholds = judge(&scenario.thresholds, &report, scenario.load.model());
    report.aborted_by_threshold = aborted_by.lock().ok().and_then(|g| g.clone());
    if let Some(span) = span {
        span.finish(&report);
    }
    Ok(Finished {
        report,
        histograms: outcome.aggregate.histograms,
    })
}

/// Starts watching the target's process and metrics endpoint, when the scenario names them.
async fn start_watch(scenario: &Scenario) -> Result<Option<TargetWatch>, String> {
    if scenario.target.watch.is_empty() {
        return Ok(None);
    }
    TargetWatch::start(scenario.target.watch.clone())
        .await
        .map(Some)
        .map_err(|e| format!("{}: {e}", scenario.path.display()))
}

/// The message of a run whose calls all failed because the server speaks another protocol.
fn wrong_protocol_of(totals: &crate::record::IntervalData) -> Option<String> {
    failure_marked(totals, crate::grpc::status::WRONG_PROTOCOL)
}

/// The first error message that begins with `marker`, when no call succeeded.
fn failure_marked(totals: &crate::record::IntervalData, marker: &str) -> Option<String> {
    if totals.ok() > 0 {
        return None;
    }
    totals
        .errors
        .iter()
        .find(|(_, message, _)| message.starts_with(marker))
        .map(|(_, message, _)| message.clone())
}

/// What the check made as each interval closes needs.
struct IntervalCheck {
    scenario: Arc<Scenario>,
    schema_source: String,
    asked: Option<u64>,
    cancel: CancellationToken,
    /// The threshold that stopped the run (`abort_on_fail`).
    aborted_by: Arc<Mutex<Option<String>>>,
    /// The message that stopped the run: no call succeeded, the server speaks another protocol.
    wrong_protocol: Arc<Mutex<Option<String>>>,
    /// A capacity search, run as intervals close.
    capacity: Option<Arc<Mutex<super::capacity::CapacityRun>>>,
    on_stop: Option<StopSink>,
}

/// As each interval closes: a run in which no call has succeeded and the server answered in
/// another protocol stops; with `abort_on_fail`, the thresholds are judged on the figures so
/// far and the first failure stops the run (and is named in the report); then the caller's
/// sink gets the interval.
fn interval_check(
    c: IntervalCheck,
    mut sink: Option<IntervalSink>,
) -> impl FnMut(&Aggregate, Duration) + Send + 'static {
    let IntervalCheck {
        scenario,
        schema_source,
        asked,
        cancel,
        aborted_by,
        wrong_protocol,
        capacity,
        mut on_stop,
    } = c;
    let mut stopping = move |why: &str| {
        if let Some(tell) = on_stop.as_mut() {
            tell(why);
        }
    };
    move |aggregate, elapsed| {
        if let Some(run) = &capacity {
            super::capacity::lock(run).on_intervals(aggregate, elapsed);
        }
        if !cancel.is_cancelled() {
            if let Some(why) = wrong_protocol_of(&aggregate.totals) {
                stopping(&why);
                if let Ok(mut slot) = wrong_protocol.lock() {
                    *slot = Some(why);
                }
                cancel.cancel();
            }
        }
        if scenario.thresholds.abort_on_fail && !cancel.is_cancelled() {
            let so_far = Report::so_far(&scenario, &schema_source, aggregate, elapsed, asked, &[]);
            if let Some(failed) = judge(&scenario.thresholds, &so_far, scenario.load.model())
                .into_iter()
                .find(|t| !t.passed)
            {
                if let Ok(mut slot) = aborted_by.lock() {
                    *slot = Some(format!("{} {}", failed.metric, failed.condition));
                }
                stopping(&format!(
                    "threshold {} {} failed (abort_on_fail)",
                    failed.metric, failed.condition
                ));
                cancel.cancel();
            }
        }
        if let Some(sink) = sink.as_mut() {
            sink(aggregate, elapsed);
        }
    }
}
