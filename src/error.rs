//! Top-level errors and the exit codes they map to.

use std::fmt;

/// Exit codes: 0 ok, 1 the run failed at run time, 2 invalid input or usage,
/// 3 thresholds not met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    RunFailed = 1,
    InvalidInput = 2,
    ThresholdsFailed = 3,
}

/// An error a command ends with: what to print and which code to exit with.
#[derive(Debug)]
pub struct CommandError {
    pub code: ExitCode,
    pub message: String,
}

impl CommandError {
    pub fn invalid(message: impl fmt::Display) -> Self {
        Self {
            code: ExitCode::InvalidInput,
            message: message.to_string(),
        }
    }

    pub fn thresholds_failed(message: impl fmt::Display) -> Self {
        Self {
            code: ExitCode::ThresholdsFailed,
            message: message.to_string(),
        }
    }

    pub fn run_failed(message: impl fmt::Display) -> Self {
        Self {
            code: ExitCode::RunFailed,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CommandError {}
