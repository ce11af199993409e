//! The one reader of /proc: status fields, CPU ticks, descriptors and threads of this process
//! or any other. Every figure is optional: a process may end between two reads.

use std::fmt;

/// Which process to read: this one (`/proc/self`) or another by pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    /// This process.
    This,
    /// Another, by pid.
    Pid(u32),
}

impl fmt::Display for Proc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::This => f.write_str("self"),
            Self::Pid(p) => write!(f, "{p}"),
        }
    }
}

fn path(p: Proc, leaf: &str) -> String {
    format!("/proc/{p}/{leaf}")
}

/// Whether the process exists.
pub fn exists(p: Proc) -> bool {
    std::path::Path::new(&path(p, "")).exists()
}

/// A numeric field of /proc/PID/status (`VmRSS:`, `VmHWM:`, `Threads:`), with a `kB` unit
/// turned into bytes.
pub fn status_field(p: Proc, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path(p, "status")).ok()?;
    parse_status_field(&text, field)
}

fn parse_status_field(text: &str, field: &str) -> Option<u64> {
    let value = text.lines().find_map(|l| l.strip_prefix(field))?.trim();
    match value.strip_suffix("kB") {
        Some(kib) => kib.trim().parse::<u64>().ok()?.checked_mul(1024),
        None => value.parse().ok(),
    }
}

/// Resident memory now (VmRSS), bytes.
pub fn rss_bytes(p: Proc) -> Option<u64> {
    status_field(p, "VmRSS:")
}

/// Peak resident memory (VmHWM), bytes.
pub fn peak_rss_bytes(p: Proc) -> Option<u64> {
    status_field(p, "VmHWM:")
}

/// Threads of the process.
pub fn threads(p: Proc) -> Option<u64> {
    status_field(p, "Threads:")
}

/// Open file descriptors.
pub fn open_fds(p: Proc) -> Option<usize> {
    std::fs::read_dir(path(p, "fd")).ok().map(|d| d.count())
}

/// The ids of the process's threads (/proc/PID/task).
pub fn thread_ids(p: Proc) -> Vec<u32> {
    std::fs::read_dir(path(p, "task")).map_or_else(
        |_| Vec::new(),
        |d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        },
    )
}

/// utime + stime in clock ticks (fields 14 and 15 of /proc/PID/stat, counted after the
/// parenthesised command name, which may hold spaces and parentheses).
pub fn cpu_ticks(p: Proc) -> Option<u64> {
    let stat = std::fs::read_to_string(path(p, "stat")).ok()?;
    parse_cpu_ticks(&stat)
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields
        .get(11)?
        .parse::<u64>()
        .ok()?
        .checked_add(fields.get(12)?.parse::<u64>().ok()?)
}

/// How many CPUs the process may run on (`Cpus_allowed_list:` of /proc/PID/status: its
/// affinity and cpuset).
pub fn allowed_cpus(p: Proc) -> Option<usize> {
    let text = std::fs::read_to_string(path(p, "status")).ok()?;
    let list = text
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    count_cpu_list(list)
}

/// Counts a kernel CPU list, "0-3,8,10-11" (7); `None` when it is not one.
fn count_cpu_list(list: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in list.trim().split(',') {
        let (from, to) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ),
            None => {
                let one = part.trim().parse::<usize>().ok()?;
                (one, one)
            }
        };
        n = n.checked_add(to.checked_sub(from)? + 1)?;
    }
    (n > 0).then_some(n)
}

/// The process's /proc/PID/cgroup, as text.
pub fn cgroup(p: Proc) -> Option<String> {
    std::fs::read_to_string(path(p, "cgroup")).ok()
}

/// Resets this process's peak-RSS mark (writing 5 to clear_refs, Linux ≥ 4.0); false where
/// refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write(path(Proc::This, "clear_refs"), "5").is_ok()
}

/// Clock ticks per second (for `cpu_ticks`).
pub fn clock_ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_in_kb_become_bytes_and_counts_stay_counts() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\nThreads:\t7\n";
        assert_eq!(parse_status_field(text, "VmHWM:"), Some(2048 * 1024));
        assert_eq!(parse_status_field(text, "Threads:"), Some(7));
        assert_eq!(parse_status_field(text, "VmSwap:"), None);
        assert_eq!(
            parse_status_field("VmRSS: 99999999999999999999 kB", "VmRSS:"),
            None
        );
    }

    #[test]
    fn cpu_ticks_are_counted_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 120 30 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(150));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn cpu_lists_are_counted_and_nonsense_is_none() {
        assert_eq!(count_cpu_list("0-3,8,10-11\n"), Some(7));
        assert_eq!(count_cpu_list("5"), Some(1));
        for bad in ["", "3-1", "a", "0-", "1,,2"] {
            assert_eq!(count_cpu_list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn this_process_is_readable() {
        assert!(exists(Proc::This));
        assert!(rss_bytes(Proc::This).unwrap() > 0);
        assert!(threads(Proc::This).unwrap() >= 1);
        assert!(open_fds(Proc::This).unwrap() >= 3);
        assert!(!thread_ids(Proc::Pid(std::process::id())).is_empty());
        assert!(cpu_ticks(Proc::This).is_some());
    }
}
