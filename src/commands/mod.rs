//! The commands: each takes typed arguments and returns a result or a `CommandError`.

mod prepare;
mod progress;
mod run;
mod target;
mod validate;

use crate::cli::Command;
use crate::error::CommandError;

pub use prepare::{prepare, Prepared};

/// Runs one command to completion.
pub async fn execute(command: Command) -> Result<(), CommandError> {
    match command {
        Command::Run {
            scenario,
            out,
            quiet,
        } => run::run(&scenario, out.as_deref(), quiet).await,
        Command::Validate { scenario } => validate::validate(&scenario).await,
        Command::Target { listen } => target::target(&listen).await,
    }
}
