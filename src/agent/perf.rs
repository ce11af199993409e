//! perf events for watched processes (the perf-event crate wraps perf_event_open; its unsafe
//! stays inside the crate). A perf counter counts one thread, so a process is counted as the
//! sum over its threads (/proc/PID/task), picking up new threads at each refresh. Events the
//! kernel or the VM refuses are reported as unsupported, once, not as errors.

use std::collections::HashMap;

use perf_event::events::{Event, Hardware, Software};
use perf_event::{Builder, Counter};

use crate::host::procfs;
use crate::telemetry::Metrics;

/// The events, by the names the metrics use.
fn events() -> Vec<(&'static str, Event)> {
    vec![
        ("task_clock", Software::TASK_CLOCK.into()),
        ("context_switches", Software::CONTEXT_SWITCHES.into()),
        ("page_faults", Software::PAGE_FAULTS.into()),
        ("cpu_migrations", Software::CPU_MIGRATIONS.into()),
        ("cycles", Hardware::CPU_CYCLES.into()),
        ("instructions", Hardware::INSTRUCTIONS.into()),
        ("cache_misses", Hardware::CACHE_MISSES.into()),
        ("branch_misses", Hardware::BRANCH_MISSES.into()),
    ]
}

fn open(event: Event, tid: i32) -> std::io::Result<Counter> {
    let mut c = Builder::new().kind(event).observe_pid(tid).build()?;
    c.enable()?;
    Ok(c)
}

/// Counters for one process: per thread, per event.
#[derive(Debug)]
struct Process {
    threads: HashMap<i32, Vec<(usize, Counter)>>,
    /// Totals already added to the metric, per event index.
    reported: Vec<u64>,
}

#[derive(Debug)]
/// Hardware and software perf counters of the agent and the watched processes, where the
/// kernel allows them.
pub struct PerfCollector {
    supported: Vec<(&'static str, Event, bool)>,
    processes: HashMap<String, Process>,
}

impl PerfCollector {
    /// Probes which events this kernel/VM allows, on the agent's own thread.
    pub fn new(m: &Metrics) -> Self {
        let me = nix::unistd::gettid().as_raw();
        let supported: Vec<_> = events()
            .into_iter()
            .map(|(name, ev)| {
                let ok = open(ev.clone(), me).is_ok();
                m.perf_supported
                    .with_label_values(&[name])
                    .set(if ok { 1.0 } else { 0.0 });
                (name, ev, ok)
            })
            .collect();
        Self {
            supported,
            processes: HashMap::new(),
        }
    }

    /// Refreshes the counters of process `label` (pid `pid`), adding the change to the metric.
    pub fn refresh(&mut self, m: &Metrics, label: &str, pid: u32) {
        let n = self.supported.len();
        let p = self
            .processes
            .entry(label.to_string())
            .or_insert_with(|| Process {
                threads: HashMap::new(),
                reported: vec![0; n],
            });
        for tid in procfs::thread_ids(procfs::Proc::Pid(pid))
            .into_iter()
            .filter_map(|t| i32::try_from(t).ok())
        {
            if p.threads.contains_key(&tid) {
                continue;
            }
            let counters = self
                .supported
                .iter()
                .enumerate()
                .filter(|(_, (_, _, ok))| *ok)
                .filter_map(|(i, (_, ev, _))| open(ev.clone(), tid).ok().map(|c| (i, c)))
                .collect();
            p.threads.insert(tid, counters);
        }
        let mut totals = vec![0u64; n];
        for counters in p.threads.values_mut() {
            for (i, c) in counters.iter_mut() {
                // A counter of a thread that exited keeps its final value.
                totals[*i] += c.read().unwrap_or(0);
            }
        }
        for (i, (name, _, ok)) in self.supported.iter().enumerate() {
            if *ok && totals[i] > p.reported[i] {
                m.perf_events
                    .with_label_values(&[label, name])
                    .inc_by(totals[i] - p.reported[i]);
                p.reported[i] = totals[i];
            }
        }
    }
}
