//! The machine a report was made on.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    /// As `std::env::consts::ARCH` ("x86_64", "aarch64").
    pub arch: String,
    pub os: String,
    pub cpu_model: String,
    pub logical_cpus: usize,
    pub kernel: String,
    pub hostname: String,
    pub loadagent_version: String,
}

impl Platform {
    pub fn current() -> Self {
        use sysinfo::{CpuRefreshKind, RefreshKind, System};
        let sys =
            System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()));
        let cpu_model = sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "unknown".into());
        Self {
            arch: std::env::consts::ARCH.to_string(),
            os: std::env::consts::OS.to_string(),
            cpu_model,
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: System::kernel_version().unwrap_or_else(|| "unknown".into()),
            hostname: System::host_name().unwrap_or_else(|| "unknown".into()),
            loadagent_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}
