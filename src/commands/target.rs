//! `loadagent target`: the reference target on its own, until SIGINT or SIGTERM.

use tokio_util::sync::CancellationToken;

use super::run::stop_on_signal;
use crate::error::CommandError;
use crate::reference;

pub(super) async fn target(
    listen: &str,
    tls: bool,
    cert_out: Option<&std::path::Path>,
) -> Result<(), CommandError> {
    let shutdown = CancellationToken::new();
    let server_tls = if tls {
        let generated = crate::tls::server::generate().map_err(CommandError::run_failed)?;
        if let Some(path) = cert_out {
            crate::report::write::write_output(path, generated.cert_pem.as_bytes()).map_err(
                |e| CommandError::invalid(format!("--cert-out {}: {e}", path.display())),
            )?;
        }
        Some(crate::tls::server::server_config(&generated).map_err(CommandError::run_failed)?)
    } else {
        None
    };
    let running = reference::serve(listen, shutdown.clone(), server_tls)
        .await
        .map_err(CommandError::run_failed)?;
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("listening on {}", running.local_addr);
    stop_on_signal(shutdown.clone(), "closing connections");
    match running.served.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CommandError::run_failed(e)),
        Err(e) => Err(CommandError::run_failed(format!(
            "the target task failed: {e}"
        ))),
    }
}
