//! The loadagent binary: parse the command line, build the runtime, run the command,
//! turn its error into an exit code.

use std::process::ExitCode;

use clap::Parser;
use loadagent::cli::Cli;

/// Raises the open-file soft limit to the hard limit: a handshake storm holds many sockets.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::SUCCESS; // --help, --version
            }
            // `probe` keeps grpc-health-probe's exit code for bad arguments (1); every other
            // command exits 2 on usage errors.
            let probe = std::env::args().nth(1).as_deref() == Some("probe");
            return ExitCode::from(if probe { 1 } else { 2 });
        }
    };
    raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(loadagent::commands::execute(cli.command));
    // Do not wait for stray tasks (connection drivers) once the command is done.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.code.number())
        }
    }
}
