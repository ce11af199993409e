//! The machine a report was made on: its fingerprint, so reports from arm64 and amd64 nodes
//! (or a container and a bare host) can be told apart and compared fairly.

use serde::{Deserialize, Serialize};

use super::cgroup::CgroupLimits;
use super::procfs::Proc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// What a machine is, as reports record it and `compare` groups by.
pub struct Platform {
    /// As `std::env::consts::ARCH` ("x86_64", "aarch64").
    pub arch: String,
    /// As `std::env::consts::OS`.
    pub os: String,
    /// The CPU's model name.
    pub cpu_model: String,
    /// "GenuineIntel", "AuthenticAMD", "ARM" …, where the kernel says.
    #[serde(default)]
    pub cpu_vendor: String,
    /// The host's logical CPUs.
    pub logical_cpus: usize,
    #[serde(default)]
    /// Physical cores, where the kernel says.
    pub physical_cores: Option<usize>,
    /// The CPUs' frequency in MHz, where the kernel exposes it (not in every VM).
    #[serde(default)]
    pub cpu_mhz: Option<u64>,
    /// The cores this process may really use: the CPUs it may run on, capped by its cgroup's
    /// CPU quota (fractional: a 1.5-core quota is 1.5). Throughput per core divides by this.
    #[serde(default)]
    pub usable_cpus: f64,
    #[serde(default)]
    /// The machine's memory.
    pub memory_total_bytes: u64,
    /// The cgroup's CPU and memory limits (null outside any cgroup file system).
    #[serde(default)]
    pub cgroup: Option<CgroupLimits>,
    /// The kernel's release.
    pub kernel: String,
    /// The host's name.
    pub hostname: String,
    /// This build's version.
    pub loadagent_version: String,
    /// The Rust target loadagent was built for, e.g. "aarch64-unknown-linux-gnu".
    #[serde(default)]
    pub rust_target: String,
}

impl Platform {
    /// This process's machine: the fingerprint, with the cores this process may use.
    pub fn current() -> Self {
        Self::of(Proc::This)
    }

    /// This node's fingerprint, with the cores and cgroup limits of process `p` (the target's
    /// server, watched on this node: the platform its capacity was measured on).
    pub fn of(p: Proc) -> Self {
        use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_frequency())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let first = sys.cpus().first();
        let cpu_model = first
            .map(|c| c.brand().trim().to_string())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let cpu_vendor = first
            .map(|c| c.vendor_id().trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let cpu_mhz = first.map(|c| c.frequency()).filter(|&f| f > 0);
        let logical_cpus = sys.cpus().len().max(1);
        // The CPUs the process may run on (affinity, cpuset); the cgroup's quota is kept
        // fractional below.
        let allowed = super::procfs::allowed_cpus(p).unwrap_or(logical_cpus);
        let cgroup = super::cgroup::of(p);
        let quota = cgroup
            .as_ref()
            .and_then(|c| c.cpu_limit_cores)
            .unwrap_or(f64::INFINITY);
        let usable_cpus = (allowed.min(logical_cpus) as f64).max(1.0).min(quota);
        Self {
            arch: std::env::consts::ARCH.to_string(),
            os: std::env::consts::OS.to_string(),
            cpu_model,
            cpu_vendor,
            logical_cpus,
            physical_cores: System::physical_core_count(),
            cpu_mhz,
            usable_cpus: (usable_cpus * 1000.0).round() / 1000.0,
            memory_total_bytes: sys.total_memory(),
            cgroup,
            kernel: System::kernel_version().unwrap_or_else(|| "unknown".into()),
            hostname: System::host_name().unwrap_or_else(|| "unknown".into()),
            loadagent_version: env!("CARGO_PKG_VERSION").to_string(),
            rust_target: env!("LOADAGENT_TARGET").to_string(),
        }
    }

    /// Cores for "per core" figures: `usable_cpus`, or the logical CPUs for reports written
    /// before it was recorded.
    pub fn cores(&self) -> f64 {
        if self.usable_cpus > 0.0 {
            self.usable_cpus
        } else {
            self.logical_cpus.max(1) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_of_this_machine_is_sane() {
        let p = Platform::current();
        assert_eq!(p.arch, std::env::consts::ARCH);
        assert!(p.logical_cpus >= 1);
        assert!(p.usable_cpus > 0.0 && p.usable_cpus <= p.logical_cpus as f64);
        assert!(p
            .physical_cores
            .is_none_or(|c| c >= 1 && c <= p.logical_cpus));
        // /proc/meminfo's MemTotal, in bytes.
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        assert_eq!(p.memory_total_bytes, kib * 1024);
        assert!(
            p.rust_target.starts_with(std::env::consts::ARCH),
            "{}",
            p.rust_target
        );
        assert_ne!(p.kernel, "unknown");
    }

    #[test]
    fn another_process_is_read_as_this_one_reads_itself() {
        // The same process by pid: the same cores and cgroup as by /proc/self.
        let by_pid = Platform::of(Proc::Pid(std::process::id()));
        let own = Platform::current();
        assert_eq!(by_pid.usable_cpus, own.usable_cpus);
        assert_eq!(by_pid.cgroup, own.cgroup);
        // The affinity read from /proc agrees with the standard library's (which also
        // floors a cgroup quota, so it is never above it).
        let allowed = crate::host::procfs::allowed_cpus(Proc::This).unwrap();
        assert!(std::thread::available_parallelism().unwrap().get() <= allowed);
    }
}
