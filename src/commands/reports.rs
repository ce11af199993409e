//! `loadagent report` and `loadagent merge`: work on saved reports.

use std::path::{Path, PathBuf};

use crate::cli::{CompareArgs, CompareFormat};
use crate::error::CommandError;
use crate::report::compare::compare as compare_reports;
use crate::report::compare_format;
use crate::report::merge::merge as merge_reports;
use crate::report::outputs::{check_writable, write_outputs, Outputs};
use crate::report::summary::render;
use crate::report::write::write_output;
use crate::report::Report;

/// A saved report, its figures checked (`report::figures`): `report`, `merge` and `compare`
/// refuse a forged or damaged one naming the field.
fn load(path: &Path) -> Result<Report, CommandError> {
    let report = Report::load(path).map_err(CommandError::invalid)?;
    crate::report::figures::check(&report).map_err(|why| {
        CommandError::invalid(crate::report::schema::LoadError::Malformed(
            path.display().to_string(),
            why,
        ))
    })?;
    Ok(report)
}

pub(super) fn report(
    path: &Path,
    html: Option<PathBuf>,
    csv: Option<PathBuf>,
) -> Result<(), CommandError> {
    let outputs = Outputs {
        html,
        csv,
        ..Outputs::default()
    };
    for p in outputs.paths() {
        check_writable(p)?;
    }
    let report = load(path)?;
    super::say(&outputs, &render(&report));
    write_outputs(&outputs, &report, &[])?;
    super::say_written(&outputs);
    Ok(())
}

/// `loadagent compare`, its arguments whole; `--baseline` and `--fail-on` make it a
/// regression gate (exit 3).
pub(super) fn compare(args: &CompareArgs) -> Result<(), CommandError> {
    let CompareArgs {
        reports: paths,
        by,
        format,
        out,
        force,
        baseline,
        fail_on,
    } = args;
    let (format, force, out) = (*format, *force, out.as_deref());
    if let Some(o) = out {
        check_writable(o)?;
    }
    crate::report::compare::check_figures(fail_on).map_err(CommandError::invalid)?;
    let inputs = paths
        .iter()
        .map(|p| load(p).map(|r| (p.display().to_string(), r)))
        .collect::<Result<Vec<_>, _>>()?;
    let result =
        compare_reports(&inputs, by, force, baseline.as_deref()).map_err(CommandError::invalid)?;
    let text = match format {
        CompareFormat::Text => compare_format::text(&result),
        CompareFormat::Markdown => compare_format::markdown(&result),
        CompareFormat::Json => compare_format::json(&result),
        CompareFormat::Html => compare_format::html(&result),
    };
    match out {
        Some(o) => {
            write_output(o, text.as_bytes()).map_err(|e| {
                CommandError::run_failed(format!("cannot write {}: {e}", o.display()))
            })?;
            println!("  wrote     {}", o.display());
        }
        None => print!("{text}"),
    }
    let worse = crate::report::compare::regressions(&result, fail_on);
    if !worse.is_empty() {
        return Err(CommandError::thresholds_failed(format!(
            "regression beyond noise:\n  {}",
            worse.join("\n  ")
        )));
    }
    Ok(())
}

/// `loadagent merge`: exit 2 when the reports do not make one run, 3 when the merged figures
/// fail the scenario's thresholds.
pub(super) fn merge(
    paths: &[PathBuf],
    out: &Path,
    force: bool,
    partial: bool,
) -> Result<(), CommandError> {
    check_writable(out)?;
    let inputs = paths
        .iter()
        .map(|p| load(p).map(|r| (p.display().to_string(), r)))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = merge_reports(&inputs, force, partial).map_err(CommandError::invalid)?;
    let outputs = Outputs {
        json: Some(out.to_path_buf()),
        ..Outputs::default()
    };
    super::say(&outputs, &render(&merged));
    write_outputs(&outputs, &merged, &[])?;
    super::say(
        &outputs,
        &format!(
            "  merged    {} reports into {}{}\n",
            inputs.len(),
            out.display(),
            if merged.merge_forced {
                " (forced: different scenarios)"
            } else {
                ""
            }
        ),
    );
    let failed = merged.thresholds.iter().filter(|t| !t.passed).count();
    if failed > 0 {
        return Err(CommandError::thresholds_failed(format!(
            "{failed} of {} thresholds failed on the merged figures",
            merged.thresholds.len()
        )));
    }
    Ok(())
}
