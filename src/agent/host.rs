//! Host and process metrics, refreshed when Prometheus scrapes (sysinfo, /proc).
//! Counters are advanced by the difference since the previous refresh.

use std::collections::HashMap;
use std::sync::Mutex;

use sysinfo::{Networks, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System};

use crate::host::procfs::{self, Proc};
use crate::telemetry::Metrics;

#[derive(Debug)]
/// The host's and the watched processes' metrics, refreshed when scraped.
pub struct HostCollector {
    state: Mutex<State>,
    /// `[host] processes`, as written.
    watched: Vec<String>,
}

#[derive(Debug)]
struct State {
    system: System,
    networks: Networks,
    /// Last totals seen, per interface: (received, transmitted).
    net_seen: HashMap<String, (u64, u64)>,
    /// The agent's own CPU seconds at the last refresh.
    self_cpu_seen: f64,
    /// CPU seconds last seen per watched process label.
    cpu_seen: HashMap<String, f64>,
    /// perf counters, opened on first refresh (it probes which events are allowed).
    perf: Option<super::perf::PerfCollector>,
}

/// What one watched entry adds up to right now.
#[derive(Default)]
struct Usage {
    cpu_seconds: f64,
    rss: u64,
    threads: f64,
    fds: f64,
    found: bool,
    pids: Vec<u32>,
}

fn proc_threads(pid: u32) -> f64 {
    procfs::threads(Proc::Pid(pid)).map_or(0.0, |n| n as f64)
}

fn proc_fds(pid: u32) -> f64 {
    procfs::open_fds(Proc::Pid(pid)).map_or(0.0, |n| n as f64)
}

/// The label of a watched entry: its name, or a pid file's stem.
fn label(entry: &str) -> String {
    if entry.contains('/') {
        std::path::Path::new(entry)
            .file_stem()
            .map_or_else(|| entry.to_string(), |s| s.to_string_lossy().into_owned())
    } else {
        entry.to_string()
    }
}

fn open_fds() -> Option<usize> {
    procfs::open_fds(Proc::This)
}

fn threads() -> Option<f64> {
    procfs::threads(Proc::This).map(|n| n as f64)
}

impl Default for HostCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl HostCollector {
    /// A collector of this host, watching no process yet.
    pub fn new() -> Self {
        Self::watching(Vec::new())
    }

    /// A collector that also watches `processes` (names, or pid files).
    pub fn watching(processes: Vec<String>) -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(sysinfo::CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(sysinfo::MemoryRefreshKind::everything()),
        );
        Self {
            state: Mutex::new(State {
                system,
                networks: Networks::new_with_refreshed_list(),
                net_seen: HashMap::new(),
                self_cpu_seen: 0.0,
                cpu_seen: HashMap::new(),
                perf: None,
            }),
            watched: processes,
        }
    }

    /// Updates the host and process metrics. One scrape at a time refreshes; a concurrent
    /// scrape serves the values the other one is setting.
    pub fn refresh(&self, m: &Metrics) {
        let Ok(mut st) = self.state.try_lock() else {
            return;
        };
        let st = &mut *st;
        st.system.refresh_cpu_usage();
        st.system.refresh_memory();
        m.host_cpu_usage
            .set(f64::from(st.system.global_cpu_usage()) / 100.0);
        m.host_memory_total.set(st.system.total_memory() as f64);
        m.host_memory_available
            .set(st.system.available_memory() as f64);
        let load = System::load_average();
        for (w, v) in [("1m", load.one), ("5m", load.five), ("15m", load.fifteen)] {
            m.host_load.with_label_values(&[w]).set(v);
        }
        st.networks.refresh(true);
        for (name, data) in st.networks.iter() {
            let (rx, tx) = (data.total_received(), data.total_transmitted());
            let (seen_rx, seen_tx) = st.net_seen.get(name).copied().unwrap_or((0, 0));
            m.host_net_rx
                .with_label_values(&[name])
                .inc_by(rx.saturating_sub(seen_rx));
            m.host_net_tx
                .with_label_values(&[name])
                .inc_by(tx.saturating_sub(seen_tx));
            st.net_seen.insert(name.clone(), (rx, tx));
        }
        // The agent itself, as process "loadagent".
        let pid = sysinfo::get_current_pid().ok();
        if let Some(pid) = pid {
            st.system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                true,
                ProcessRefreshKind::nothing().with_memory(),
            );
            if let Some(p) = st.system.process(pid) {
                m.process_rss
                    .with_label_values(&["loadagent"])
                    .set(p.memory() as f64);
            }
        }
        let cpu = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
            .map(|u| {
                let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
                s(u.user_time()) + s(u.system_time())
            })
            .unwrap_or(0.0);
        m.process_cpu
            .with_label_values(&["loadagent"])
            .inc_by((cpu - st.self_cpu_seen).max(0.0));
        st.self_cpu_seen = st.self_cpu_seen.max(cpu);
        if let Some(t) = threads() {
            m.process_threads.with_label_values(&["loadagent"]).set(t);
        }
        if let Some(n) = open_fds() {
            m.process_fds
                .with_label_values(&["loadagent"])
                .set(n as f64);
        }
        let perf = st
            .perf
            .get_or_insert_with(|| super::perf::PerfCollector::new(m));
        perf.refresh(m, "loadagent", std::process::id());
        if !self.watched.is_empty() {
            st.system.refresh_processes_specifics(
                ProcessesToUpdate::All,
                true,
                ProcessRefreshKind::nothing().with_memory().with_cpu(),
            );
            for entry in &self.watched {
                let usage = usage_of(&st.system, entry);
                let name = label(entry);
                if !usage.found {
                    m.errors_total
                        .with_label_values(&["host", "process_not_found"])
                        .inc();
                    continue;
                }
                let seen = st.cpu_seen.get(&name).copied().unwrap_or(0.0);
                // A restarted process starts again from zero: count it as a counter reset.
                let delta = if usage.cpu_seconds >= seen {
                    usage.cpu_seconds - seen
                } else {
                    usage.cpu_seconds
                };
                m.process_cpu.with_label_values(&[&name]).inc_by(delta);
                st.cpu_seen.insert(name.clone(), usage.cpu_seconds);
                m.process_rss
                    .with_label_values(&[&name])
                    .set(usage.rss as f64);
                m.process_threads
                    .with_label_values(&[&name])
                    .set(usage.threads);
                m.process_fds.with_label_values(&[&name]).set(usage.fds);
                if let Some(perf) = st.perf.as_mut() {
                    for pid in &usage.pids {
                        perf.refresh(m, &name, *pid);
                    }
                }
            }
        }
    }
}

/// The usage of one watched entry: the process in its pid file, or every process of its name.
fn usage_of(system: &System, entry: &str) -> Usage {
    // None found is a usage with `found` false: the agent says so in its own metrics.
    let pids: Vec<sysinfo::Pid> = crate::host::watched::pids(system, entry)
        .unwrap_or_default()
        .into_iter()
        .map(sysinfo::Pid::from_u32)
        .collect();
    let mut u = Usage::default();
    for pid in pids {
        if let Some(p) = system.process(pid) {
            u.found = true;
            u.cpu_seconds += p.accumulated_cpu_time() as f64 / 1000.0;
            u.rss += p.memory();
            u.threads += proc_threads(pid.as_u32());
            u.fds += proc_fds(pid.as_u32());
            u.pids.push(pid.as_u32());
        }
    }
    u
}
