//! CPU time and peak memory of this process over the measured part of a run.

use serde::{Deserialize, Serialize};

use super::procfs::{self, Proc};

/// The `process` block of a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessUsage {
    /// Highest resident memory over the measured part.
    pub peak_rss_bytes: u64,
    /// CPU time in user mode.
    pub cpu_user_seconds: f64,
    /// CPU time in the kernel.
    pub cpu_system_seconds: f64,
}

/// Samples usage at the start of the measured part; `finish` gives the difference.
#[derive(Debug)]
pub struct ProcessSampler {
    user: f64,
    system: f64,
}

/// This process's CPU time so far (user + system), in seconds.
pub fn cpu_seconds() -> f64 {
    let (user, system) = cpu_times();
    user + system
}

fn cpu_times() -> (f64, f64) {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            (secs(u.user_time()), secs(u.system_time()))
        }
        Err(_) => (0.0, 0.0),
    }
}

/// Peak resident memory (VmHWM) in bytes.
pub fn peak_rss_bytes() -> u64 {
    procfs::peak_rss_bytes(Proc::This).unwrap_or(0)
}

/// Current resident memory (VmRSS) in bytes.
pub fn rss_bytes() -> u64 {
    procfs::rss_bytes(Proc::This).unwrap_or(0)
}

impl ProcessSampler {
    /// Starts measuring this process.
    pub fn start() -> Self {
        // Writing 5 to clear_refs resets the peak-RSS mark (Linux ≥ 4.0), so the peak read
        // at the end is the measured part's, not the start-up's. Where it is refused, the
        // peak is the process's whole life: an upper bound, still true.
        procfs::reset_peak_rss();
        let (user, system) = cpu_times();
        Self { user, system }
    }

    /// What this process used since `start`.
    pub fn finish(self) -> ProcessUsage {
        let (user, system) = cpu_times();
        ProcessUsage {
            peak_rss_bytes: peak_rss_bytes(),
            cpu_user_seconds: round6(user - self.user),
            cpu_system_seconds: round6(system - self.system),
        }
    }
}

fn round6(x: f64) -> f64 {
    (x.max(0.0) * 1e6).round() / 1e6
}
