//! The commands' errors and the one mapping from the layers' typed errors to exit codes.

use std::fmt;

/// Exit codes: 0 ok, 1 the run failed at run time, 2 invalid input or usage,
/// 3 thresholds not met. `loadagent probe` uses grpc-health-probe's instead (see `Probe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// 1: the run failed at run time (the target unreachable, nothing answered).
    RunFailed,
    /// 2: invalid input or usage.
    InvalidInput,
    /// 3: thresholds not met.
    ThresholdsFailed,
    /// A capacity search whose limit was the generator: it measured the generator, not the
    /// service, and reports no capacity.
    GeneratorLimited,
    /// A code of grpc-health-probe's (`loadagent probe`).
    Probe(u8),
}

impl ExitCode {
    /// The process's exit status.
    pub fn number(self) -> u8 {
        match self {
            Self::RunFailed => 1,
            Self::InvalidInput => 2,
            Self::ThresholdsFailed => 3,
            Self::GeneratorLimited => 4,
            Self::Probe(n) => n,
        }
    }
}

/// An error a command ends with: what to print and which code to exit with.
#[derive(Debug)]
pub struct CommandError {
    /// The code to exit with.
    pub code: ExitCode,
    /// What to print on stderr.
    pub message: String,
}

impl CommandError {
    /// Bad input or usage (exit 2).
    pub fn invalid(message: impl fmt::Display) -> Self {
        Self {
            code: ExitCode::InvalidInput,
            message: message.to_string(),
        }
    }

    /// Thresholds not met (exit 3).
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

    /// A capacity search that measured the generator (exit 4).
    pub fn generator_limited(message: impl fmt::Display) -> Self {
        Self {
            code: ExitCode::GeneratorLimited,
            message: message.to_string(),
        }
    }

    /// The run failed at run time (exit 1).
    pub fn run_failed(message: impl fmt::Display) -> Self {
        Self {
            code: ExitCode::RunFailed,
            message: message.to_string(),
        }
    }
}

/// The one mapping from a run's errors to exit codes: input 2, everything else 1.
impl From<crate::run::RunError> for CommandError {
    fn from(e: crate::run::RunError) -> Self {
        use crate::run::RunError;
        match e {
            RunError::Invalid(m) => Self::invalid(m),
            RunError::Unreachable(m) | RunError::Failed(m) => Self::run_failed(m),
        }
    }
}

impl From<crate::report::outputs::OutputError> for CommandError {
    fn from(e: crate::report::outputs::OutputError) -> Self {
        use crate::report::outputs::OutputError;
        match e {
            OutputError::NotWritable(_) => Self::invalid(e),
            OutputError::WriteFailed(_) => Self::run_failed(e),
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CommandError {}
