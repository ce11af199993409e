//! `loadagent run`: prepare, drive the load, summarise, write the report.

use std::path::Path;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{prepare, progress};
use crate::error::CommandError;
use crate::grpc::channel::Endpoint;
use crate::load::{drive, Plan, Schedule};
use crate::record::Progress;
use crate::report::summary::render;
use crate::report::write::write_atomically;
use crate::report::Report;

pub async fn run(path: &Path, out: Option<&Path>, quiet: bool) -> Result<(), CommandError> {
    if let Some(out) = out {
        check_writable(out)?;
    }
    let prepared = prepare(path).await?;
    let scenario = prepared.scenario;
    let endpoint = Endpoint {
        address: prepared.address.clone(),
        connect_timeout: scenario.target.connect_timeout,
    };

    let schedule = Schedule::for_load(&scenario.load);
    let asked = schedule.as_ref().and_then(|s| {
        let measured = scenario.load.measured_duration()?;
        let warm = s.warmup().as_secs_f64();
        let due = s.arrivals_by(warm + measured.as_secs_f64()) - s.arrivals_by(warm);
        Some(
            scenario
                .load
                .requests
                .map_or(due.round() as u64, |r| r.min(due.round() as u64)),
        )
    });
    let plan = Plan {
        load: scenario.load.clone(),
        call: prepared.call,
        schedule,
    };
    let cancel = CancellationToken::new();
    stop_on_signal(cancel.clone());
    let (progress_tx, progress_rx) = watch::channel(Progress::default());
    let shown = progress::show(quiet, progress_rx);
    let outcome = drive(plan, endpoint, cancel, progress_tx)
        .await
        .map_err(|e| {
            CommandError::run_failed(format!(
                "{e} (target {})",
                scenario.target.address.describe()
            ))
        })?;
    if let Some(task) = shown {
        let _ = task.await;
    }
    drop(prepared.embedded);

    let report = Report::build(&scenario, &prepared.schema_source, &outcome, asked);
    print!("{}", render(&report));
    if let Some(out) = out {
        let json = serde_json::to_vec_pretty(&report)
            .map_err(|e| CommandError::run_failed(format!("cannot serialise the report: {e}")))?;
        write_atomically(out, &json).map_err(|e| {
            CommandError::run_failed(format!("cannot write the report to {}: {e}", out.display()))
        })?;
        println!("  report    {}", out.display());
    }
    Ok(())
}

/// Fails before the run, not after it, when the report could not be written.
fn check_writable(out: &Path) -> Result<(), CommandError> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(CommandError::invalid(format!(
            "--out {}: the folder {} does not exist; create it or choose another path",
            out.display(),
            dir.display()
        )));
    }
    if out.is_dir() {
        return Err(CommandError::invalid(format!(
            "--out {}: is a folder; give a file name",
            out.display()
        )));
    }
    Ok(())
}

/// Cancels `token` on SIGINT (Ctrl-C) or SIGTERM.
pub fn stop_on_signal(token: CancellationToken) {
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
        eprintln!("stopping: waiting for requests in flight, then writing the report");
        token.cancel();
    });
}
