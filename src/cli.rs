//! Command-line definitions, turned into a typed command before any work starts.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "loadagent",
    version,
    about = "gRPC load generator and node observability agent"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario's load and print a summary.
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Write the JSON report here (written whole or not at all).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// No live progress line.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Check a scenario without sending load: the file, the method and the request.
    Validate {
        /// The scenario file (TOML).
        scenario: PathBuf,
    },
    /// Serve the built-in reference target (loadagent.bench.v1.Bench, health, reflection).
    Target {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: String,
    },
}
