//! `loadagent target`: the reference target on its own, until SIGINT or SIGTERM.

use tokio_util::sync::CancellationToken;

use super::run::stop_on_signal;
use crate::error::CommandError;
use crate::target;

pub async fn target(listen: &str) -> Result<(), CommandError> {
    let shutdown = CancellationToken::new();
    let running = target::serve(listen, shutdown.clone(), None)
        .await
        .map_err(CommandError::run_failed)?;
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("listening on {}", running.local_addr);
    stop_on_signal(shutdown.clone());
    match running.served.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CommandError::run_failed(e)),
        Err(e) => Err(CommandError::run_failed(format!(
            "the target task failed: {e}"
        ))),
    }
}
