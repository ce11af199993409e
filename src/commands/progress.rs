//! The live progress line, on a terminal only.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

use crate::record::Progress;
use crate::report::summary::human_us;

/// Shows progress until the sender is dropped; returns `None` (and shows nothing) when
/// stdout is not a terminal or the user asked for quiet.
pub(super) fn show(
    quiet: bool,
    mut rx: watch::Receiver<Progress>,
) -> Option<tokio::task::JoinHandle<()>> {
    if quiet || !std::io::stdout().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    Some(tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let p = rx.borrow_and_update().clone();
            bar.set_message(format!(
                "{:>6.1}s  {:>9.1} req/s  {} requests  {} errors  p99 {}",
                p.elapsed.as_secs_f64(),
                p.rps,
                p.requests,
                p.errors,
                human_us(p.p99_us)
            ));
        }
        bar.finish_and_clear();
    }))
}
