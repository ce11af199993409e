//! The target's side of a run: the server process's memory and CPU, sampled on this node
//! (`[target] process`) and/or read from its own Prometheus endpoint (`[target] metrics_url`).

use serde::{Deserialize, Serialize};

/// The `target_process` block of a report. Every figure is optional: each source gives
/// what it can.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetProcess {
    /// What was sampled: the process name or pid file, and/or the metrics URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// The pids watched.
    pub pids: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The endpoint scraped.
    pub metrics_url: Option<String>,
    /// Highest resident memory seen during the measured part (summed over the pids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    /// CPU used during the measured part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// CPU per 1,000 requests.
    pub cpu_seconds_per_1k_requests: Option<f64>,
    /// From the endpoint: `process_resident_memory_bytes` at its highest scrape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_resident_memory_bytes: Option<f64>,
    /// From the endpoint: the increase of `process_cpu_seconds_total` over the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_cpu_seconds_total: Option<f64>,
    /// Runtime gauges the endpoint exposes (e.g. go_goroutines, go_threads,
    /// process_num_threads, python_gc_objects_collected_total), at the last scrape.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub runtime: std::collections::BTreeMap<String, f64>,
    /// The platform the server ran on, when its process was watched on this node: this
    /// node's fingerprint with the process's own usable cores and cgroup limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<crate::host::platform::Platform>,
    /// Problems reading the target's side (it never fails the run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::exposition::{parse, Exposition};
use super::procfs::{self, Proc};
pub use crate::vocabulary::watch::{check_metrics_url, is_pid_file, TargetSpec};

/// How often the process is read from /proc, and the endpoint scraped.
const PROC_EVERY: Duration = Duration::from_millis(100);
const SCRAPE_EVERY: Duration = Duration::from_secs(1);
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runtime gauges worth showing beside memory and CPU, where the endpoint has them.
const RUNTIME: &[&str] = &[
    "go_goroutines",
    "go_threads",
    "process_open_fds",
    "process_threads",
    "jvm_threads_current",
    "nodejs_active_handles_total",
    "python_gc_objects_collected_total",
    "dotnet_threadpool_num_threads",
];

#[derive(Debug, Clone, Copy)]
struct ProcSample {
    at: SystemTime,
    cpu_ticks: u64,
    rss_bytes: u64,
}

#[derive(Debug)]
struct Scrape {
    at: SystemTime,
    exposition: Exposition,
}

/// Watches the target while a run goes on.
#[derive(Debug)]
pub struct TargetWatch {
    spec: TargetSpec,
    pids: Vec<u32>,
    /// The node's fingerprint with the server process's own cores (watched by pid).
    platform: Option<crate::host::platform::Platform>,
    stop: CancellationToken,
    task: JoinHandle<(Vec<ProcSample>, Vec<Scrape>, Vec<String>)>,
}

/// The pids of `entry`: the pid in a pid file, or every process of that name (not this one).
pub fn resolve_pids(entry: &str) -> Result<Vec<u32>, String> {
    let mut system = sysinfo::System::new();
    if !is_pid_file(entry) {
        system.refresh_processes(sysinfo::ProcessesToUpdate::All, true);
    }
    super::watched::pids(&system, entry).map_err(|why| format!("[target] process: {why}"))
}

fn sample(pids: &[u32]) -> ProcSample {
    let mut s = ProcSample {
        at: SystemTime::now(),
        cpu_ticks: 0,
        rss_bytes: 0,
    };
    for &pid in pids {
        s.cpu_ticks += procfs::cpu_ticks(Proc::Pid(pid)).unwrap_or(0);
        s.rss_bytes += procfs::rss_bytes(Proc::Pid(pid)).unwrap_or(0);
    }
    s
}

/// The cores the sampled processes used on average from `from` to `to`: CPU ticks between
/// the last reading at or before `from` and the first at or after `to`, over that span.
/// Cores used on average over [from, to], from CPU readings (time, CPU seconds so far) in
/// time order: the CPU between the last reading at or before `from` and the first at or
/// after `to`, over the time between them.
fn cores_used(readings: &[(SystemTime, f64)], from: SystemTime, to: SystemTime) -> Option<f64> {
    let first = readings.iter().rev().find(|r| r.0 <= from)?;
    let last = readings.iter().find(|r| r.0 >= to)?;
    let span = last.0.duration_since(first.0).ok()?.as_secs_f64();
    (span > 0.0).then(|| round6((last.1 - first.1).max(0.0) / span))
}

/// CPU readings of the watched process (from /proc, every 100 ms) or, without one, of the
/// endpoint's `process_cpu_seconds_total` (every second).
fn cpu_readings(procs: &[ProcSample], scrapes: &[Scrape]) -> Vec<(SystemTime, f64)> {
    if !procs.is_empty() {
        let per_second = procfs::clock_ticks_per_second();
        return procs
            .iter()
            .map(|s| (s.at, s.cpu_ticks as f64 / per_second))
            .collect();
    }
    scrapes
        .iter()
        .filter_map(|s| Some((s.at, s.exposition.sum("process_cpu_seconds_total")?)))
        .collect()
}

/// Why the target's endpoint could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct ScrapeError {
    /// The endpoint.
    pub url: String,
    /// Why it could not be read.
    pub reason: String,
}

/// Why the target cannot be watched: the process or the endpoint named in the scenario.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WatchError {
    /// The message names `[target] process` and what was not found.
    #[error("{0}")]
    Process(String),
    #[error("[target] metrics_url: {0}")]
    /// The endpoint could not be read.
    MetricsUrl(ScrapeError),
}

/// One GET of the endpoint, parsed.
pub async fn scrape(url: &str) -> Result<Exposition, ScrapeError> {
    let body = tokio::time::timeout(SCRAPE_TIMEOUT, get(url))
        .await
        .map_err(|_| ScrapeError {
            url: url.to_string(),
            reason: format!("no answer within {SCRAPE_TIMEOUT:?}"),
        })??;
    parse(&body).map_err(|e| ScrapeError {
        url: url.to_string(),
        reason: format!("not the Prometheus text format: {e}"),
    })
}

async fn get(url: &str) -> Result<String, ScrapeError> {
    let fail = |reason: String| ScrapeError {
        url: url.to_string(),
        reason,
    };
    use http_body_util::BodyExt;
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| fail(e.to_string()))?;
    let host = uri.host().ok_or_else(|| fail("no host".into()))?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| fail(format!("cannot connect: {e}")))?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(conn);
    let request = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            http::header::HOST,
            uri.authority().map_or(host, |a| a.as_str()),
        )
        .header(http::header::ACCEPT, "text/plain;version=0.0.4")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| fail(e.to_string()))?;
    let response = send
        .send_request(request)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("HTTP status {}", response.status())));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| fail("the body is not UTF-8".into()))
}

impl TargetWatch {
    /// Finds the process and scrapes the endpoint once (both must work: a name that matches
    /// nothing or an endpoint that does not answer is a scenario mistake), then samples in
    /// the background until `finish`.
    pub async fn start(spec: TargetSpec) -> Result<Self, WatchError> {
        let pids = match &spec.process {
            Some(entry) => resolve_pids(entry).map_err(WatchError::Process)?,
            None => Vec::new(),
        };
        let first = match &spec.metrics_url {
            Some(url) => Some(scrape(url).await.map_err(WatchError::MetricsUrl)?),
            None => None,
        };
        let stop = CancellationToken::new();
        let (task_pids, url, token) = (pids.clone(), spec.metrics_url.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut procs = Vec::new();
            let mut scrapes: Vec<Scrape> = first
                .into_iter()
                .map(|exposition| Scrape {
                    at: SystemTime::now(),
                    exposition,
                })
                .collect();
            let mut errors = Vec::new();
            let mut tick = tokio::time::interval(PROC_EVERY);
            let mut next_scrape = tokio::time::Instant::now() + SCRAPE_EVERY;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = token.cancelled() => break,
                }
                if !task_pids.is_empty() {
                    procs.push(sample(&task_pids));
                }
                if let Some(url) = url.as_deref() {
                    if tokio::time::Instant::now() >= next_scrape {
                        next_scrape += SCRAPE_EVERY;
                        match scrape(url).await {
                            Ok(exposition) => scrapes.push(Scrape {
                                at: SystemTime::now(),
                                exposition,
                            }),
                            Err(e) if errors.len() < 5 => errors.push(e.to_string()),
                            Err(_) => {}
                        }
                    }
                }
            }
            // The closing readings, after the run.
            if !task_pids.is_empty() {
                procs.push(sample(&task_pids));
            }
            if let Some(url) = url.as_deref() {
                match scrape(url).await {
                    Ok(exposition) => scrapes.push(Scrape {
                        at: SystemTime::now(),
                        exposition,
                    }),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (procs, scrapes, errors)
        });
        // The server's cores and cgroup: its first process's (a server's processes share
        // one cgroup, a container's or a systemd unit's).
        let platform = pids
            .first()
            .map(|&pid| crate::host::platform::Platform::of(Proc::Pid(pid)));
        Ok(Self {
            spec,
            pids,
            platform,
            stop,
            task,
        })
    }

    /// Stops sampling and sums up the measured part (from `started_at`, `measured` long);
    /// with the cores the process used on average in each of `windows` (wall-clock spans:
    /// a capacity search's steps), `None` where its readings do not cover one.
    pub async fn finish(
        self,
        started_at: SystemTime,
        requests: u64,
        windows: &[(SystemTime, SystemTime)],
    ) -> (TargetProcess, Vec<Option<f64>>) {
        self.stop.cancel();
        let (procs, scrapes, mut errors) = self
            .task
            .await
            .unwrap_or_else(|e| (Vec::new(), Vec::new(), vec![format!("sampler failed: {e}")]));
        let mut out = TargetProcess {
            process: self.spec.process.clone(),
            pids: self.pids.clone(),
            metrics_url: self.spec.metrics_url.clone(),
            platform: self.platform.clone(),
            ..Default::default()
        };
        let readings = cpu_readings(&procs, &scrapes);
        let cores: Vec<Option<f64>> = windows
            .iter()
            .map(|&(from, to)| cores_used(&readings, from, to))
            .collect();
        let per_1k = |cpu: f64| (requests > 0).then(|| round6(cpu / requests as f64 * 1000.0));
        // The process: CPU from the last reading before the measured part to the closing
        // one; peak memory over the readings from the start of the measured part.
        if let (Some(first), Some(last)) = (
            procs
                .iter()
                .rev()
                .find(|s| s.at <= started_at)
                .or(procs.first()),
            procs.last(),
        ) {
            let cpu = last.cpu_ticks.saturating_sub(first.cpu_ticks) as f64
                / procfs::clock_ticks_per_second();
            out.cpu_seconds = Some(round6(cpu));
            out.cpu_seconds_per_1k_requests = per_1k(cpu);
            out.peak_rss_bytes = procs
                .iter()
                .filter(|s| s.at >= first.at)
                .map(|s| s.rss_bytes)
                .max();
        }
        // The endpoint: the same, from its own process_* metrics.
        let before = scrapes
            .iter()
            .rev()
            .find(|s| s.at <= started_at)
            .or(scrapes.first());
        if let (Some(before), Some(last)) = (before, scrapes.last()) {
            out.process_resident_memory_bytes = scrapes
                .iter()
                .filter(|s| s.at >= before.at)
                .filter_map(|s| s.exposition.sum("process_resident_memory_bytes"))
                .reduce(f64::max);
            if let (Some(a), Some(b)) = (
                before.exposition.sum("process_cpu_seconds_total"),
                last.exposition.sum("process_cpu_seconds_total"),
            ) {
                out.process_cpu_seconds_total = Some(round6(b - a));
                if out.cpu_seconds.is_none() {
                    out.cpu_seconds = Some(round6(b - a));
                    out.cpu_seconds_per_1k_requests = per_1k(b - a);
                }
            }
            if out.peak_rss_bytes.is_none() {
                out.peak_rss_bytes = out.process_resident_memory_bytes.map(|b| b as u64);
            }
            for name in RUNTIME {
                if let Some(v) = last.exposition.sum(name) {
                    out.runtime.insert((*name).to_string(), v);
                }
            }
        }
        errors.truncate(5);
        out.errors = errors;
        (out, cores)
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(at_secs: u64, cpu: f64) -> Scrape {
        Scrape {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(at_secs),
            exposition: parse(&format!("process_cpu_seconds_total {cpu}\n")).unwrap(),
        }
    }

    #[test]
    fn cores_per_window_come_from_the_endpoint_without_a_process() {
        // 0.5 CPU s/s, then 1.5 CPU s/s from t = 4.
        let scrapes: Vec<Scrape> = (0..=8)
            .map(|t| {
                scrape(
                    t,
                    if t <= 4 {
                        t as f64 * 0.5
                    } else {
                        2.0 + (t - 4) as f64 * 1.5
                    },
                )
            })
            .collect();
        let readings = cpu_readings(&[], &scrapes);
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(cores_used(&readings, at(1), at(3)), Some(0.5));
        assert_eq!(cores_used(&readings, at(5), at(8)), Some(1.5));
        // A window the readings do not cover has no figure.
        assert_eq!(cores_used(&readings, at(5), at(9)), None);
        // A counter that went back (the server restarted) is not negative CPU.
        let restarted = [scrape(0, 5.0), scrape(2, 1.0)];
        assert_eq!(
            cores_used(&cpu_readings(&[], &restarted), at(0), at(2)),
            Some(0.0)
        );
    }
}
