//! The CPU and memory limits of the cgroup this process runs in (a container's, a pod's, a
//! systemd slice's), from cgroup v2 (`cpu.max`, `memory.max`) or v1 (`cpu.cfs_quota_us` /
//! `cpu.cfs_period_us`, `memory.limit_in_bytes`). The effective limit is the tightest one on
//! the way from the process's cgroup up to the root.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::procfs::{self, Proc};

/// Limits found; `None` fields mean no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupLimits {
    /// "v1" or "v2".
    pub version: String,
    /// The process's cgroup, as /proc/self/cgroup names it.
    pub path: String,
    /// CPU quota in cores (quota / period), e.g. 1.5.
    pub cpu_limit_cores: Option<f64>,
    /// The memory limit, when there is one.
    pub memory_limit_bytes: Option<u64>,
}

/// v1 writes "no limit" as a page-rounded i64::MAX; anything this large is no limit.
const V1_UNLIMITED: u64 = 1 << 62;

/// The limits of this process, from the real /sys/fs/cgroup and /proc/self/cgroup.
pub fn current() -> Option<CgroupLimits> {
    of(Proc::This)
}

/// The limits of a process, from the real /sys/fs/cgroup and its /proc/PID/cgroup.
pub fn of(p: Proc) -> Option<CgroupLimits> {
    read(Path::new("/sys/fs/cgroup"), &procfs::cgroup(p)?)
}

/// The limits under the cgroup file system mounted at `root`, for a process whose
/// /proc/self/cgroup reads `own`.
pub fn read(root: &Path, own: &str) -> Option<CgroupLimits> {
    if root.join("cgroup.controllers").exists() {
        let path = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))?
            .trim()
            .to_string();
        let dirs = ancestors(root, &path);
        let cpu_limit_cores = tightest(&dirs, "cpu.max", parse_cpu_max);
        let memory_limit_bytes = tightest_u64(&dirs, "memory.max", |t| {
            let t = t.trim();
            (t != "max").then(|| t.parse().ok()).flatten()
        });
        return Some(CgroupLimits {
            version: "v2".into(),
            path,
            cpu_limit_cores,
            memory_limit_bytes,
        });
    }
    // v1: one hierarchy per controller, "N:cpu,cpuacct:/path" in /proc/self/cgroup.
    let controller_path = |name: &str| {
        own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == name)
                .then(|| (controllers.to_string(), path.trim().to_string()))
        })
    };
    let cpu = controller_path("cpu");
    let memory = controller_path("memory");
    if cpu.is_none() && memory.is_none() {
        return None;
    }
    let cpu_limit_cores = cpu.as_ref().and_then(|(controllers, path)| {
        let mount = mount_dir(root, controllers, "cpu")?;
        // Quota and period live in the same directory: the tightest pair on the way up.
        ancestors(&mount, path)
            .iter()
            .filter_map(|d| {
                let quota: i64 = read_trim(&d.join("cpu.cfs_quota_us"))?.parse().ok()?;
                let period: i64 = read_trim(&d.join("cpu.cfs_period_us"))?.parse().ok()?;
                (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
            })
            .reduce(f64::min)
    });
    let memory_limit_bytes = memory.as_ref().and_then(|(controllers, path)| {
        let mount = mount_dir(root, controllers, "memory")?;
        tightest_u64(&ancestors(&mount, path), "memory.limit_in_bytes", |t| {
            t.trim().parse().ok().filter(|&b| b < V1_UNLIMITED)
        })
    });
    Some(CgroupLimits {
        version: "v1".into(),
        path: cpu.or(memory).map(|(_, p)| p).unwrap_or_default(),
        cpu_limit_cores,
        memory_limit_bytes,
    })
}

/// `cpu.max`: "max 100000" (no limit) or "150000 100000" (1.5 cores).
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?;
    let period: f64 = parts.next().map_or(Some(100_000.0), |p| p.parse().ok())?;
    if quota == "max" || period <= 0.0 {
        return None;
    }
    let quota: f64 = quota.parse().ok()?;
    (quota > 0.0).then(|| quota / period)
}

/// The v1 mount of a controller: "cpu,cpuacct" as listed, else the controller's own name.
fn mount_dir(root: &Path, listed: &str, controller: &str) -> Option<PathBuf> {
    [listed, controller]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.is_dir())
}

/// The directories from the process's cgroup up to the mount root. Inside a container the
/// mount root often *is* the process's cgroup and the path does not exist below it: then
/// the root alone.
fn ancestors(mount: &Path, path: &str) -> Vec<PathBuf> {
    // Another process's cgroup outside this one's cgroup namespace reads "/../..": it is not
    // under this mount, and the mount's own limits are not its limits.
    if Path::new(path)
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Vec::new();
    }
    let mut dirs = Vec::new();
    let mut rel = PathBuf::from(path.trim_start_matches('/'));
    loop {
        let dir = mount.join(&rel);
        if dir.is_dir() {
            dirs.push(dir);
        }
        if !rel.pop() {
            break;
        }
    }
    if dirs.is_empty() && mount.is_dir() {
        dirs.push(mount.to_path_buf());
    }
    dirs
}

fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_string())
}

fn tightest(dirs: &[PathBuf], file: &str, parse: impl Fn(&str) -> Option<f64>) -> Option<f64> {
    dirs.iter()
        .filter_map(|d| read_trim(&d.join(file)).and_then(|t| parse(&t)))
        .reduce(f64::min)
}

fn tightest_u64(dirs: &[PathBuf], file: &str, parse: impl Fn(&str) -> Option<u64>) -> Option<u64> {
    dirs.iter()
        .filter_map(|d| read_trim(&d.join(file)).and_then(|t| parse(&t)))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn v2_limits_are_the_tightest_on_the_way_up() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "cgroup.controllers", "cpu memory io\n");
        write(root, "kubepods.slice/cpu.max", "400000 100000\n");
        write(root, "kubepods.slice/memory.max", "8589934592\n");
        write(root, "kubepods.slice/pod1/cpu.max", "150000 100000\n");
        write(root, "kubepods.slice/pod1/memory.max", "max\n");
        let own = "0::/kubepods.slice/pod1\n";
        let l = read(root, own).unwrap();
        assert_eq!(l.version, "v2");
        assert_eq!(l.path, "/kubepods.slice/pod1");
        assert_eq!(l.cpu_limit_cores, Some(1.5));
        assert_eq!(
            l.memory_limit_bytes,
            Some(8 << 30),
            "the parent's limit binds"
        );
    }

    #[test]
    fn v2_without_limits_and_inside_a_container_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "cgroup.controllers", "cpu memory\n");
        write(root, "cpu.max", "max 100000\n");
        write(root, "memory.max", "max\n");
        let l = read(root, "0::/\n").unwrap();
        assert_eq!((l.cpu_limit_cores, l.memory_limit_bytes), (None, None));
        // A path that does not exist under the mount (cgroup namespace): the root's files.
        write(root, "cpu.max", "50000 100000\n");
        let l = read(root, "0::/docker/abc\n").unwrap();
        assert_eq!(l.cpu_limit_cores, Some(0.5));
        // Another process outside this cgroup namespace: its limits are not the mount's.
        let l = read(root, "0::/../../kubepods/pod2\n").unwrap();
        assert_eq!((l.cpu_limit_cores, l.memory_limit_bytes), (None, None));
    }

    #[test]
    fn v1_quota_period_and_memory_limit() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "200000\n");
        write(root, "cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
        write(root, "cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
        write(root, "cpu,cpuacct/cpu.cfs_period_us", "100000\n");
        write(
            root,
            "memory/docker/abc/memory.limit_in_bytes",
            "536870912\n",
        );
        write(
            root,
            "memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        let own = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n";
        let l = read(root, own).unwrap();
        assert_eq!(l.version, "v1");
        assert_eq!(l.cpu_limit_cores, Some(2.0));
        assert_eq!(l.memory_limit_bytes, Some(512 << 20));
    }

    #[test]
    fn v1_unlimited_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "cpu/cpu.cfs_quota_us", "-1\n");
        write(root, "cpu/cpu.cfs_period_us", "100000\n");
        write(
            root,
            "memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        let l = read(root, "3:cpu:/\n2:memory:/\n").unwrap();
        assert_eq!((l.cpu_limit_cores, l.memory_limit_bytes), (None, None));
    }

    #[test]
    fn cpu_max_forms() {
        assert_eq!(parse_cpu_max("max 100000"), None);
        assert_eq!(parse_cpu_max("250000 100000"), Some(2.5));
        assert_eq!(parse_cpu_max("garbage"), None);
    }

    #[test]
    fn this_machine_reads_without_error() {
        // Every Linux machine these tests run on has a cgroup file system; whatever its
        // limits, the reading is sane: a known version, the process's own path, positive limits.
        let l = current().expect("/proc/self/cgroup and /sys/fs/cgroup are readable");
        assert!(l.version == "v1" || l.version == "v2", "{l:?}");
        assert!(l.path.starts_with('/'), "{l:?}");
        assert!(l.cpu_limit_cores.is_none_or(|c| c > 0.0));
        assert!(l.memory_limit_bytes.is_none_or(|m| m > 0));
    }
}
