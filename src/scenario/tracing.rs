//! `[tracing]` in a scenario or the agent's config, read into `vocabulary::tracing`.

use super::reader::TableReader;
use crate::vocabulary::tracing::{check_endpoint, TracingConfig};

/// Reads `[tracing]`: `otlp_endpoint` (an http:// or https:// URL) and `sample_ratio`.
pub fn read_config(t: &TableReader<'_, '_, '_>) -> TracingConfig {
    let mut config = TracingConfig::default();
    if let Some(e) = t.string("otlp_endpoint") {
        match check_endpoint(&e.value) {
            Ok(()) => config.otlp_endpoint = Some(e.value),
            Err(why) => t
                .ctx()
                .report_at(e.loc, &t.key_path("otlp_endpoint"), why.to_string()),
        }
    }
    if let Some(r) = t.number("sample_ratio", false) {
        if r.value > 1.0 {
            t.ctx().report_at(
                r.loc,
                &t.key_path("sample_ratio"),
                format!(
                    "{} is not valid: it is a fraction from 0 (no call spans) to 1 (every call)",
                    r.value
                ),
            );
        } else {
            config.sample_ratio = Some(r.value);
        }
    }
    t.finish();
    config
}
