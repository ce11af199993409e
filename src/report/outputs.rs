//! Writing a run's files: the JSON report, HTML, HdrHistogram interval log and CSV series.
//! Each is written whole or not at all (see [`super::write`]), and every path is proven
//! writable before the run starts.

use std::path::{Path, PathBuf};

use super::schema::Report;
use super::write::{prove_writable, write_fallback, write_output};
use super::{csv, hlog, html};
use crate::record::aggregator::IntervalHistograms;

#[derive(Debug, Clone, Default)]
/// The files a run (or `report`) writes besides the summary; `-` is stdout.
pub struct Outputs {
    /// The JSON report.
    pub json: Option<PathBuf>,
    /// The HTML report.
    pub html: Option<PathBuf>,
    /// The HdrHistogram interval log.
    pub hlog: Option<PathBuf>,
    /// The per-interval CSV.
    pub csv: Option<PathBuf>,
}

impl Outputs {
    /// Every path asked for.
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.json, &self.html, &self.hlog, &self.csv]
            .into_iter()
            .flatten()
    }

    /// Whether an output goes to stdout (`-`): then text meant for a person goes to stderr,
    /// so that stdout holds that output alone.
    pub fn to_stdout(&self) -> bool {
        self.paths().any(|p| p.as_os_str() == "-")
    }
}

/// Why outputs were not written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Found before anything ran: the path cannot be written (an input problem).
    #[error("cannot write {0}")]
    NotWritable(std::io::Error),
    /// The final writes failed (each output says where its bytes went instead).
    #[error("{0}")]
    WriteFailed(String),
}

/// Fails before the run, not after it, when an output could not be written.
pub fn check_writable(out: &Path) -> Result<(), OutputError> {
    prove_writable(out).map_err(OutputError::NotWritable)
}

/// Writes one output; when that fails the bytes go to a file in the temporary folder
/// instead, and the message says where.
fn write(path: &Path, bytes: &[u8], failures: &mut Vec<String>) {
    if let Err(e) = write_output(path, bytes) {
        let saved = match write_fallback(path, bytes) {
            Ok(kept) => format!("written to {} instead", kept.display()),
            Err(e2) => format!("and not to the temporary folder either: {e2}"),
        };
        failures.push(format!("cannot write {}: {e}; {saved}", path.display()));
    }
}

/// Writes every output asked for. `histograms` are the run's interval histograms (for the
/// interval log); a saved report has none, so `--hlog` needs a run.
pub fn write_outputs(
    outputs: &Outputs,
    report: &Report,
    histograms: &[IntervalHistograms],
) -> Result<(), OutputError> {
    let mut failures = Vec::new();
    if let Some(p) = &outputs.json {
        let json = serde_json::to_vec_pretty(report)
            .map_err(|e| OutputError::WriteFailed(format!("cannot serialise the report: {e}")))?;
        write(p, &json, &mut failures);
    }
    if let Some(p) = &outputs.html {
        write(p, html::render(report).as_bytes(), &mut failures);
    }
    if let Some(p) = &outputs.hlog {
        let start = time::OffsetDateTime::parse(
            &report.started_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
        .unwrap_or(0.0);
        let text = hlog::render(start, &report.started_at, histograms);
        write(p, text.as_bytes(), &mut failures);
    }
    if let Some(p) = &outputs.csv {
        write(p, csv::render(report).as_bytes(), &mut failures);
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(OutputError::WriteFailed(failures.join("\n")))
    }
}
