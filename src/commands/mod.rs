//! The commands: each takes typed arguments and returns a result or a `CommandError`.

mod agent;
mod probe;
mod progress;
mod reports;
mod run;
mod slo;
mod target;
mod validate;

use crate::cli::Command;
use crate::error::CommandError;
use crate::report::outputs::Outputs;

/// Prints text meant for a person: on stderr when an output goes to stdout (`-`), so that
/// stdout holds that output alone.
fn say(outputs: &Outputs, text: &str) {
    if outputs.to_stdout() {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

/// Says which files were written.
fn say_written(outputs: &Outputs) {
    for p in outputs.paths().filter(|p| p.as_os_str() != "-") {
        say(outputs, &format!("  wrote     {}\n", p.display()));
    }
}

/// Runs one command to completion.
pub async fn execute(command: Command) -> Result<(), CommandError> {
    match command {
        Command::Run(args) => run::command(args).await,
        Command::Compare(args) => reports::compare(&args),
        Command::Report { report, html, csv } => reports::report(&report, html, csv),
        Command::Merge {
            reports,
            out,
            force,
            partial,
        } => reports::merge(&reports, &out, force, partial),
        Command::Agent {
            config,
            listen,
            check_config,
            log_format,
            web_config_file,
        } => {
            agent::init_logging(log_format);
            agent::agent(
                config.as_deref(),
                listen,
                check_config.as_deref(),
                web_config_file.as_deref(),
            )
            .await
        }
        Command::Dashboards { out } => {
            if !out.is_dir() {
                return Err(CommandError::invalid(format!(
                    "--out {}: not a folder that exists; create it first",
                    out.display()
                )));
            }
            for d in crate::observe::dashboards::all() {
                let path = out.join(format!("{}.json", d.uid));
                let json = serde_json::to_string_pretty(&crate::observe::dashboards::render(&d))
                    .unwrap_or_default()
                    + "\n";
                crate::report::write::write_output(&path, json.as_bytes()).map_err(|e| {
                    CommandError::invalid(format!("cannot write {}: {e}", path.display()))
                })?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Command::Alerts {
            out,
            kubernetes,
            config,
        } => {
            let mut files = vec![(
                "--out",
                out.join("loadagent.rules.yml"),
                crate::observe::alerts::render(),
            )];
            if let Some(k) = &kubernetes {
                files.push((
                    "--kubernetes",
                    k.join("prometheusrule.yaml"),
                    crate::observe::alerts::render_prometheus_rule(),
                ));
            }
            if let Some(path) = &config {
                files.extend(slo::slo_files(path, &out, kubernetes.as_deref())?);
            }
            for (flag, path, _) in &files {
                let dir = path.parent().unwrap_or(std::path::Path::new("."));
                if !dir.is_dir() {
                    return Err(CommandError::invalid(format!(
                        "{flag} {}: not a folder that exists; create it first",
                        dir.display()
                    )));
                }
            }
            for (_, path, text) in files {
                crate::report::write::write_output(&path, text.as_bytes()).map_err(|e| {
                    CommandError::invalid(format!("cannot write {}: {e}", path.display()))
                })?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Command::Probe(args) => probe::probe(args).await,
        Command::Validate { scenario } => validate::validate(&scenario).await,
        Command::Target {
            listen,
            tls,
            cert_out,
        } => target::target(&listen, tls, cert_out.as_deref()).await,
    }
}
