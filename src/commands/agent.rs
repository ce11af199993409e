//! `loadagent agent`: load the config, run the agent until SIGTERM/SIGINT.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::run::stop_on_signal;
use crate::agent::config::{self, AgentConfig, ConfigError};
use crate::error::CommandError;
use crate::http_server::web_config::WebConfig;

/// Logs via `tracing` to stderr; `RUST_LOG` filters (default `info`).
pub(super) fn init_logging(format: crate::cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        crate::cli::LogFormat::Json => builder.json().try_init(),
        crate::cli::LogFormat::Human => builder.try_init(),
    };
}

fn load(path: &Path) -> Result<AgentConfig, CommandError> {
    config::load(path).map_err(|e| match e {
        ConfigError::Invalid(p) => CommandError::invalid(p.to_string().trim_end()),
        other => CommandError::invalid(other),
    })
}

pub(super) async fn agent(
    config: Option<&Path>,
    listen: Option<String>,
    check: Option<&Path>,
    web_config: Option<&Path>,
) -> Result<(), CommandError> {
    if let Some(l) = &listen {
        if !crate::scenario::valid_listen(l) {
            return Err(CommandError::invalid(format!(
                "--listen: {}",
                config::bad_listen(l)
            )));
        }
    }
    let web = match web_config {
        Some(p) => WebConfig::load(p).map_err(CommandError::invalid)?,
        None => WebConfig::default(),
    };
    if let Some(path) = check {
        let c = load(path)?;
        println!(
            "{}: ok — {} target(s), listen {}",
            path.display(),
            c.targets.len(),
            c.listen
        );
        return Ok(());
    }
    let mut c = match config {
        Some(p) => load(p)?,
        None => AgentConfig::default(),
    };
    if let Some(l) = listen {
        c.listen = l;
    }
    let stop = CancellationToken::new();
    stop_on_signal(
        stop.clone(),
        "probes and schedules end, then the agent exits",
    );
    crate::agent::run(c, std::sync::Arc::new(web), stop, |addr| {
        // Tests and scripts read this line to learn the port when listening on port 0.
        println!("listening on {addr}");
    })
    .await
    .map_err(|e| match e {
        // A bad OTLP endpoint in the environment is bad input, like one in the file.
        crate::agent::AgentError::Tracing(_) => CommandError::invalid(e),
        other => CommandError::run_failed(other),
    })
}
