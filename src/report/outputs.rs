//! Writing a run's files: the JSON report, HTML, HdrHistogram interval log and CSV series.
//! Each is written whole or not at all, and every path is checked before the run starts.

use std::path::{Path, PathBuf};

use super::schema::Report;
use super::write::write_atomically;
use super::{csv, hlog, html};
use crate::error::CommandError;
use crate::record::aggregator::IntervalHistograms;

#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub json: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub hlog: Option<PathBuf>,
    pub csv: Option<PathBuf>,
}

impl Outputs {
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.json, &self.html, &self.hlog, &self.csv]
            .into_iter()
            .flatten()
    }
}

/// Fails before the run, not after it, when an output could not be written.
pub fn check_writable(out: &Path) -> Result<(), CommandError> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(CommandError::invalid(format!(
            "{}: the folder {} does not exist; create it or choose another path",
            out.display(),
            dir.display()
        )));
    }
    if out.is_dir() {
        return Err(CommandError::invalid(format!(
            "{}: is a folder; give a file name",
            out.display()
        )));
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CommandError> {
    write_atomically(path, bytes)
        .map_err(|e| CommandError::run_failed(format!("cannot write {}: {e}", path.display())))
}

/// Writes every output asked for. `histograms` are the run's interval histograms (for the
/// interval log); a saved report has none, so `--hlog` needs a run.
pub fn write_outputs(
    outputs: &Outputs,
    report: &Report,
    histograms: &[IntervalHistograms],
) -> Result<(), CommandError> {
    if let Some(p) = &outputs.json {
        let json = serde_json::to_vec_pretty(report)
            .map_err(|e| CommandError::run_failed(format!("cannot serialise the report: {e}")))?;
        write(p, &json)?;
    }
    if let Some(p) = &outputs.html {
        write(p, html::render(report).as_bytes())?;
    }
    if let Some(p) = &outputs.hlog {
        let start = time::OffsetDateTime::parse(
            &report.started_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
        .unwrap_or(0.0);
        write(
            p,
            hlog::render(start, &report.started_at, histograms).as_bytes(),
        )?;
    }
    if let Some(p) = &outputs.csv {
        write(p, csv::render(report).as_bytes())?;
    }
    Ok(())
}
