//! A finished run's report: built here, where the load's outcome is known, so that
//! `report/` stays data (schema, outputs, merge, compare) and imports nothing from `load/`.

use crate::load::RunOutcome;
use crate::report::schema::{ConnectionsReport, ResolutionInfo};
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
    report.connections = outcome.connections.map(|c| ConnectionsReport {
        opened: c.opened,
        closed_by_age: c.closed_by_age,
        closed_by_server: c.closed_by_server,
        keepalive_failures: c.keepalive_failures,
        too_many_pings: c.too_many_pings,
        requests_per_connection: c.requests_per_connection(),
    });
    report.interrupted = outcome.interrupted;
    report.generator_panics = outcome.generator_panics;
    report.intervals = outcome.aggregate.intervals.clone();
    report.process = outcome.process.clone();
    report
}
