//! `loadagent alerts --config agent.toml`: the SLO rule files of an agent config.

use std::path::{Path, PathBuf};

use crate::error::CommandError;
use crate::observe::slo;

/// The SLO rule files of the agent config at `path` (flag, path, text): its targets'
/// objectives as rules, their promtool tests, and with `kubernetes` a PrometheusRule.
pub(super) fn slo_files(
    path: &Path,
    out: &Path,
    kubernetes: Option<&Path>,
) -> Result<Vec<(&'static str, PathBuf, String)>, CommandError> {
    let config =
        crate::agent::config::load(path).map_err(|e| CommandError::invalid(e.to_string()))?;
    let objectives = slo::objectives(
        config
            .targets
            .iter()
            .filter_map(|t| Some((t.name.as_str(), t.slo.as_ref()?))),
    );
    if objectives.is_empty() {
        return Err(CommandError::invalid(format!(
            "--config {}: no [[targets]] entry has an `slo`; add e.g. slo = {{ objective = \"99.9%\", window = \"30d\" }} to a target",
            path.display()
        )));
    }
    let rules = "loadagent-slo.rules.yml";
    let mut files = vec![
        ("--out", out.join(rules), slo::render_rules(&objectives)),
        (
            "--out",
            out.join("loadagent-slo.test.yml"),
            slo::render_tests(rules, &objectives),
        ),
    ];
    if let Some(k) = kubernetes {
        files.push((
            "--kubernetes",
            k.join("prometheusrule-slo.yaml"),
            slo::render_prometheus_rule(&objectives),
        ));
    }
    Ok(files)
}
