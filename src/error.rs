//! Top-level errors and the exit codes they map to.

use std::fmt;

/// Exit codes: 0 ok, 1 the run failed at run time, 2 invalid input or usage,
/// 3 thresholds not met. `loadagent probe` uses grpc-health-probe's instead (see `Probe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    RunFailed,
    InvalidInput,
    ThresholdsFailed,
    /// A code of grpc-health-probe's (`loadagent probe`).
    Probe(u8),
}

impl ExitCode {
    pub fn number(self) -> u8 {
        match self {
            Self::RunFailed => 1,
            Self::InvalidInput => 2,
            Self::ThresholdsFailed => 3,
            Self::Probe(n) => n,
        }
    }
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

    /// grpc-health-probe's codes: 1 bad arguments, 2 connection failed, 3 RPC failed,
    /// 4 not SERVING.
    pub fn probe(code: u8, message: impl fmt::Display) -> Self {
        Self {
            code: ExitCode::Probe(code),
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
