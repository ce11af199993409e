//! One run, as a library: `prepare` a scenario (outputs proven writable, the target started
//! or reached, the method's types resolved, the request encoded), then `execute` it with
//! hooks (progress, an interval sink, cancellation, traces) and get the typed report back,
//! thresholds judged. `loadagent run`, `--repeat`, `validate`, the agent's schedules and the
//! tests all go through here; `commands/` only parses arguments and prints.

pub mod capacity;
pub mod capacity_search;
mod embedded;
mod execute;
mod prepare;
mod report;
pub mod span;

pub use embedded::EmbeddedTarget;
pub use execute::{execute, Finished, Hooks, IntervalSink, StopSink};
pub use prepare::{check_outputs, load, prepare, Prepared};

/// Why a run could not run (its thresholds failing is not an error: see `Finished`).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario, a file it names or an output is wrong: the message names the file, the
    /// key and what to write instead.
    #[error("{0}")]
    Invalid(String),
    /// The target could not be reached, or refused what a run needs (HTTP/2, reflection).
    #[error("{0}")]
    Unreachable(String),
    /// Something on this machine failed (a thread, a runtime, a certificate generated).
    #[error("{0}")]
    Failed(String),
}
