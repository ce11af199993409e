//! A finished run's report: built here, where the load's outcome is known, so that
//! `report/` stays data (schema, outputs, merge, compare) and imports nothing from `load/`.

use crate::load::RunOutcome;
use crate::report::schema::ResolutionInfo;
use crate::report::Report;
use crate::vocabulary::Scenario;

/// The report of a finished run: the figures the load kept, turned into the report's
/// data (the report layer knows nothing of the load).
pub(super) fn build(
    scenario: &Scenario,
    schema_source: &str,
    outcome: &RunOutcome,
    asked_requests: Option<u64>,
) -> Report {
    let mut report = Report::of_figures(
        scenario,
        schema_source,
        &outcome.aggregate.totals,
        outcome.started_at,
        outcome.measured,
        asked_requests,
        &outcome.backends,
    );
    report.resolution = outcome.resolution.as_ref().map(|r| ResolutionInfo {
        name: scenario.target.address.describe(),
        resolve_every_seconds: scenario.target.resolve_every.as_secs_f64(),
        resolutions: r.resolutions,
        failures: r.failures,
        last_failure: r.last_failure.clone(),
        incomplete: r.incomplete,
        last_left_out: r.last_left_out.clone(),
    });
    if let Some(s) = report.streams.as_mut() {
        s.open_at_start = outcome.streams_open_at_start;
        s.open_at_end = outcome.streams_open_at_end;
    }
    report.connections = outcome.connections.clone();
    report.retries = outcome.retries.clone();
    if let Some(r) = &outcome.retries {
        report.totals.attempts = Some(r.attempts);
    }
    report.interrupted = outcome.interrupted;
    report.generator_panics = outcome.generator_panics;
    report.intervals = outcome.aggregate.intervals.clone();
    report.process = outcome.process.clone();
    report
}
