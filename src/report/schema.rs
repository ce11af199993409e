//! The JSON report (`loadagent.report/v1`). Field names are a contract: later tools
//! (merge, compare, dashboards) read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::discovery::BackendHistory;
use crate::grpc::status::code_name;
use crate::host::platform::Platform;
use crate::host::process::ProcessUsage;
pub use crate::record::clients::{ConnectionsReport, RetriesReport};
use crate::record::{Aggregate, BackendTally, IntervalData, IntervalSummary, LatencySummary};
use crate::vocabulary::{Kind, Model, Scenario, Stage};

/// The `schema` of every report this build writes.
pub const SCHEMA: &str = "loadagent.report/v1";

/// One threshold's verdict, as the report and the summary show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// The metric, as written.
    pub metric: String,
    /// The condition, as written.
    pub condition: String,
    /// The metric's value; null when the report has none (e.g. no requests).
    pub actual: Option<f64>,
    /// "us" when the metric is a latency (the report's unit for latencies), else null.
    #[serde(default)]
    pub unit: Option<String>,
    /// Whether it held.
    pub passed: bool,
}

impl ThresholdResult {
    /// The actual value as people read it: latencies with a unit.
    pub fn actual_text(&self) -> String {
        match (self.actual, self.unit.as_deref()) {
            (None, _) => "none".into(),
            (Some(a), Some("us")) => super::units::human_us(a.round() as u64),
            (Some(a), _) => format!("{a}"),
        }
    }
}

/// One input of a merged report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedInput {
    /// The report's file.
    pub file: String,
    /// Its scenario's name.
    pub name: String,
    /// The machine it ran on.
    pub hostname: String,
    /// That machine's architecture.
    pub arch: String,
    /// When its measured part began.
    pub started_at: String,
    /// Its requests.
    pub requests: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// A run's report: what `run --out` writes and `report`, `merge` and `compare` read.
pub struct Report {
    /// `loadagent.report/v1`.
    pub schema: String,
    /// The scenario's name.
    pub name: String,
    /// The scenario's kind.
    pub kind: String,
    /// The scenario's target address ("embedded" or host:port).
    pub target: String,
    /// The method called, `package.Service/Method`.
    pub method: String,
    /// Where the method's types came from.
    pub schema_source: String,
    /// The wire protocol: "grpc", or "grpc-web"/"grpc-web-text" and the HTTP version
    /// ("grpc-web over HTTP/1.1"). Reports from before gRPC-Web read as "grpc".
    #[serde(default = "native_grpc")]
    pub protocol: String,
    /// Start of the measured part, RFC 3339.
    pub started_at: String,
    /// Length of the measured part (warm-up excluded).
    pub duration_seconds: f64,
    /// The run was stopped by a signal before its end.
    pub interrupted: bool,
    /// Generator threads that panicked (a bug; the process exits 70): what they had not
    /// handed over is missing from the figures. Absent when none did.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generator_panics: u64,
    /// The machine the run ran on.
    pub platform: Platform,
    /// What a person recorded about the run (`labels` in the scenario, `run --label`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The load as asked.
    pub load: LoadInfo,
    /// The whole run's counts and rates.
    pub totals: Totals,
    /// gRPC code name → count.
    pub status_codes: BTreeMap<String, u64>,
    /// Most frequent first.
    pub errors: Vec<ErrorCount>,
    /// The whole run's latency.
    pub latency: Latency,
    /// Streaming kinds: how streams opened and ended (`status_codes` says how they ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<StreamsInfo>,
    /// Streaming kinds: messages sent and received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<MessagesInfo>,
    /// Streaming kinds: from opening a stream to its first response message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_first_message: Option<LatencySummary>,
    /// Bidi: per-message round trip; server streams: the gap between consecutive messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_message: Option<LatencySummary>,
    /// Streams on a message schedule (`[stream] message_rate`): per-message latency from each
    /// message's intended send time (coordinated omission corrected, per message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_message_corrected: Option<LatencySummary>,
    /// Handshake storms: each phase's latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<Phases>,
    /// Handshake storms: what was negotiated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// The server's leaf certificate (first successful handshake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<crate::record::tls::CertInfo>,
    /// Handshake storms: failure class → count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_errors: Option<BTreeMap<String, u64>>,
    /// Certificates were not verified (`insecure_skip_verify = true`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// Each interval, in order.
    pub intervals: Vec<IntervalSummary>,
    /// loadagent's own CPU and memory over the measured part.
    pub process: ProcessUsage,
    /// The target's side (`[target] process` / `metrics_url`): its memory and CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_process: Option<crate::host::target_process::TargetProcess>,
    /// Each `[thresholds]` entry's verdict (empty when the scenario has none).
    #[serde(default)]
    pub thresholds: Vec<ThresholdResult>,
    /// The threshold that stopped the run early (`abort_on_fail`), if one did.
    #[serde(default)]
    pub aborted_by_threshold: Option<String>,
    /// For a merged report: the reports it holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedInput>,
    /// One shard of a distributed run (`run --shard I/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// A merged report of shards that lacked some (`merge --partial`): the missing indices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<u32>,
    /// A merged report whose inputs were of different scenarios (`merge --force`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub merge_forced: bool,
    /// Per backend (one for a `host:port` target; a fleet's every backend seen), in order of
    /// first appearance: what each got. The totals are exactly their sum.
    #[serde(default)]
    pub backends: Vec<BackendReport>,
    /// A mix of calls (`[[calls]]`): per entry, in the scenario's order, what it got. The
    /// totals are exactly their sum. Thresholds name one by index: `methods.0.latency.p99`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<MethodReport>,
    /// The worst backend's figures, for thresholds (`backend_worst.p99_us`).
    #[serde(default)]
    pub backend_worst: BackendWorst,
    /// A fleet's DNS name: what resolving it during the run did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<ResolutionInfo>,
    /// A capacity search (`[capacity]`): the rate found and how, step by step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityReport>,
    /// Unary load over the lean client: what its connections did (ageing, GOAWAY,
    /// keepalive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionsReport>,
    /// A retry policy's work (`[call.retry]`): the measured part's calls, like `totals`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetriesReport>,
}

/// What a capacity search found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityReport {
    /// The highest rate that met the SLO (requests, streams or handshakes per second); null
    /// when none did, or when the generator was the limit.
    pub rps: Option<f64>,
    /// `slo`, `target_saturated`, `generator`, `target_failed`, `max_rate`, `max_duration`,
    /// `interrupted`.
    pub limited_by: String,
    /// The SLO condition that failed, when `limited_by` is `slo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_condition: Option<String>,
    /// The conditions, as written.
    pub slo: Vec<String>,
    /// The bisection's relative precision.
    pub precision: f64,
    /// The found rate per core the server used at it (its process watched: `[target]
    /// process`), the figure architectures are compared by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_server_core: Option<f64>,
    /// The found rate per core the server may use (its CPU affinity capped by its cgroup's
    /// quota: what a node of that size offers), when its process was watched on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_usable_core: Option<f64>,
    /// Every step, in order.
    pub steps: Vec<CapacityStep>,
}

/// How a capacity search ends a run: its answer is the service's capacity (`Found`), or why
/// there is none to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityVerdict {
    /// A capacity was found.
    Found,
    /// The generator fell behind: the figure would be the generator's, not the service's.
    GeneratorLimited,
    /// A step in which no call succeeded.
    TargetFailed,
    /// No step met the SLO (the capacity is below `start_rate`).
    NoneWithinSlo,
    /// Stopped (Ctrl-C, the agent stopping) before the search ended.
    Interrupted,
}

impl CapacityReport {
    /// What the search's end means for the run's exit.
    pub fn verdict(&self) -> CapacityVerdict {
        match (self.limited_by.as_str(), self.rps) {
            ("generator", _) => CapacityVerdict::GeneratorLimited,
            ("target_failed", _) => CapacityVerdict::TargetFailed,
            ("interrupted", _) => CapacityVerdict::Interrupted,
            (_, None) => CapacityVerdict::NoneWithinSlo,
            (_, Some(_)) => CapacityVerdict::Found,
        }
    }
}

/// One step of a search, judged on its own figures (after its settle time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityStep {
    /// Offered, per second.
    pub rate: f64,
    /// Completed per second.
    pub achieved_rps: f64,
    /// Corrected latency.
    pub p50_us: u64,
    /// Corrected p99.
    pub p99_us: u64,
    /// Errors / requests.
    pub error_ratio: f64,
    /// Requests sent more than 1 ms late.
    pub late_ratio: f64,
    /// Whether it met the SLO.
    pub passed: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// It fell behind by little (a pause of the machine looks the same) and was run again
    /// at the same rate: the next step's result counts, not this one's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
    /// Cores the server's process used on average in the step's judged part (watched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cores: Option<f64>,
}

/// One backend's share of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendReport {
    /// `IP:PORT` (as resolved), or the `host:port` written.
    pub address: String,
    /// Seconds from the measured start to when it joined (0: there from the start, or it
    /// joined in the warm-up), and to when it left (null: it stayed to the end).
    pub joined_s: f64,
    /// When it last left (null: it stayed).
    pub left_s: Option<f64>,
    /// Times it joined: more than 1 when it left and came back (one entry per address,
    /// `joined_s` its first join, `left_s` its last leave).
    #[serde(default = "one_stint")]
    pub stints: u32,
    /// SRV weight and priority (0 for A/AAAA records).
    #[serde(default)]
    pub weight: u16,
    #[serde(default)]
    /// SRV priority.
    pub priority: u16,
    /// Connections opened to it (reconnects included).
    pub connections: u64,
    /// Requests it got.
    pub requests: u64,
    /// Of them, OK.
    pub ok: u64,
    /// Of them, not OK.
    pub errors: u64,
    /// errors / requests.
    pub error_rate: f64,
    /// gRPC code name → count.
    pub status_codes: BTreeMap<String, u64>,
    /// Its latency.
    pub latency: Latency,
    /// The backend with the highest p99 (corrected in the open model) among those with calls.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub slowest: bool,
}

/// One entry of a mix of calls: what it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodReport {
    /// `method` as the scenario writes it.
    pub method: String,
    /// Its weight in the mix.
    pub weight: f64,
    /// Requests completed.
    pub requests: u64,
    /// Of them, OK.
    pub ok: u64,
    /// Of them, not OK.
    pub errors: u64,
    /// errors / requests.
    pub error_rate: f64,
    /// Completed per second of the measured part.
    pub rps: f64,
    /// gRPC code name → count.
    pub status_codes: BTreeMap<String, u64>,
    /// Its latency.
    pub latency: Latency,
}

impl MethodReport {
    /// The figures of a tally over `secs` seconds.
    pub(crate) fn of(
        method: String,
        weight: f64,
        t: &BackendTally,
        secs: f64,
        model: Model,
    ) -> Self {
        let requests = t.requests();
        let ok = t.status[usize::from(crate::grpc::status::OK)];
        Self {
            method,
            weight,
            requests,
            ok,
            errors: requests - ok,
            error_rate: if requests > 0 {
                (requests - ok) as f64 / requests as f64
            } else {
                0.0
            },
            rps: if secs > 0.0 {
                round3(requests as f64 / secs)
            } else {
                0.0
            },
            status_codes: status_names(&t.status),
            latency: Latency {
                corrected: (model == Model::Open).then(|| LatencySummary::of(&t.corrected)),
                uncorrected: LatencySummary::of(&t.uncorrected),
            },
        }
    }
}

fn one_stint() -> u32 {
    1
}

/// The worst of the backends with calls: the highest p50/p99/p99.9 (corrected in the open
/// model, as users wait it) and error rate, each over every backend, and which was slowest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendWorst {
    /// The highest p50.
    pub p50_us: u64,
    /// The highest p99.
    pub p99_us: u64,
    /// The highest p99.9.
    pub p999_us: u64,
    /// The highest error rate.
    pub error_rate: f64,
    /// The address of the backend with the highest p99.
    pub slowest: String,
}

/// What resolving a fleet's name did during the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolutionInfo {
    /// The name.
    pub name: String,
    /// How often it was resolved again.
    pub resolve_every_seconds: f64,
    /// Resolutions made.
    pub resolutions: u64,
    /// Resolutions that failed or found nothing (the last good set was kept).
    pub failures: u64,
    /// Why the last failure failed.
    pub last_failure: Option<String>,
    /// Resolutions that used some records and left others out (an SRV target that did not
    /// resolve, a record with port 0), and what the last one left out.
    #[serde(default)]
    pub incomplete: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// What the last incomplete resolution left out.
    pub last_left_out: Option<String>,
}

/// Which shard of a distributed run a report is, and when it was told to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// From 0.
    pub index: u32,
    /// How many shards the run has.
    pub count: u32,
    /// `--start-at`, RFC 3339; absent when the shard started as soon as it was ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    /// How late the schedule's time zero was against `start_at`, milliseconds (this
    /// machine's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_skew_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// What load was asked.
pub struct LoadInfo {
    /// Open or closed.
    pub model: Model,
    /// Asked requests per second (the start rate when there are stages); null when closed.
    pub rate: Option<f64>,
    /// Workers (closed) or the most calls in flight (open).
    pub concurrency: u32,
    /// Connections per backend.
    pub connections: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// The open model's ramp.
    pub stages: Vec<StageInfo>,
    /// The warm-up's length.
    pub warmup_seconds: f64,
    /// Requests the schedule asked for in the measured part (open model, time-bounded).
    pub asked_requests: Option<u64>,
}

/// One ramp of the open model: to `rate` over `duration_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageInfo {
    /// How long it lasts.
    pub duration_seconds: f64,
    /// The rate at its end.
    pub rate: f64,
}

impl From<&Stage> for StageInfo {
    fn from(s: &Stage) -> Self {
        Self {
            duration_seconds: s.duration.as_secs_f64(),
            rate: s.rate,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
/// The whole run's counts.
pub struct Totals {
    /// Requests completed in the measured part.
    pub requests: u64,
    /// Of them, OK.
    pub ok: u64,
    /// Of them, not OK.
    pub errors: u64,
    /// Requests that started more than 1 ms after their intended time (open model).
    pub sent_late: u64,
    /// Completed requests per second of the measured part.
    pub rps: f64,
    /// errors / requests (0 when there were none).
    #[serde(default)]
    pub error_rate: f64,
    /// Handshake storms: completed handshakes per second of the measured part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshakes_per_second: Option<f64>,
    /// With a retry policy: attempts sent, retries included (each call is one request
    /// however many attempts it took).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// A handshake storm's phases.
pub struct Phases {
    /// Name resolution.
    pub dns: LatencySummary,
    /// TCP connect.
    pub tcp_connect: LatencySummary,
    /// The TLS handshake.
    pub tls_handshake: LatencySummary,
    /// Handshake done → first response headers (when each iteration makes a call).
    pub first_response: Option<LatencySummary>,
    /// The whole iteration.
    pub total: LatencySummary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// What handshake storms negotiated.
pub struct TlsInfo {
    /// Handshakes by TLS version.
    pub versions: BTreeMap<String, u64>,
    /// By cipher suite.
    pub cipher_suites: BTreeMap<String, u64>,
    /// By key exchange group.
    pub groups: BTreeMap<String, u64>,
    /// Resumed handshakes.
    pub resumed: u64,
    /// resumed / handshakes.
    pub resumed_ratio: f64,
    /// By ALPN protocol.
    pub alpn: BTreeMap<String, u64>,
    /// Completed handshakes after which something did not arrive in time: `no_settings`
    /// (an h2 server's SETTINGS), `no_session_ticket` (TLS 1.3 tickets), `closed`,
    /// `read_error`. They count as handshakes; this says why resumption may be low.
    #[serde(default)]
    pub after_handshake: BTreeMap<String, u64>,
    /// The first message seen for each failure class.
    #[serde(default)]
    pub first_errors: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// How streams opened and ended.
pub struct StreamsInfo {
    /// Opened in the measured part.
    pub opened: u64,
    /// Open when the measured part began (opened in the warm-up; their messages count,
    /// their ends do not), and still open when the run stopped (then ended by the client:
    /// counted completed when measured).
    #[serde(default)]
    pub open_at_start: u64,
    #[serde(default)]
    /// Still open when the run stopped.
    pub open_at_end: u64,
    /// Ended with OK (including streams the client ended by design).
    pub completed: u64,
    /// Ended with any other status (resets, GOAWAY, deadlines, server errors).
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// Stream messages.
pub struct MessagesInfo {
    /// Sent.
    pub sent: u64,
    /// Received.
    pub received: u64,
    /// Sent per second of the measured part.
    pub sent_per_second: f64,
    /// Received per second.
    pub received_per_second: f64,
    /// Messages sent more than 1 ms after their intended time (`message_rate`): the stream
    /// was behind its schedule (a late reply in ping-pong, a full window), and sent at once.
    #[serde(default)]
    pub sent_late: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// One distinct error and how often it came.
pub struct ErrorCount {
    /// Its gRPC code's name.
    pub status: String,
    /// Its message.
    pub message: String,
    /// How many times.
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// Corrected and uncorrected latency.
pub struct Latency {
    /// From each request's intended start (coordinated omission corrected); null when closed.
    pub corrected: Option<LatencySummary>,
    /// From each request's actual send.
    pub uncorrected: LatencySummary,
}

/// Why a file could not be read as a report.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    /// The file could not be read.
    Read(crate::input::InputError),
    #[error("{0} is not JSON ({1}); give a report written by `loadagent run --out`")]
    /// Not JSON: the file, and why.
    NotJson(String, String),
    #[error("{0} is not a loadagent report of schema {SCHEMA} (its schema: {1}); give a report written by `loadagent run --out`")]
    /// Another schema: the file, and its schema.
    OtherSchema(String, String),
    #[error("{0} claims schema {SCHEMA} but does not fit it: {1}")]
    /// It does not fit the schema: the file, and where.
    Malformed(String, String),
}

/// Counts by status code, named, the zeros left out.
fn status_names(status: &[u64]) -> BTreeMap<String, u64> {
    status
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(code, &n)| (code_name(code as u8).to_string(), n))
        .collect()
}

/// Each backend's figures from its tally, with its history; a backend's tally is found by
/// its id. Tallies of ids the history does not know (a report so far, before the history
/// is read) are still listed, as `backend N`, so the sum stays whole.
fn backend_reports(
    totals: &IntervalData,
    history: &[BackendHistory],
    started_at: std::time::SystemTime,
    model: Model,
) -> Vec<BackendReport> {
    let empty = BackendTally::default();
    // A fixed address's run keeps no tally per backend: its one backend's figures are the
    // totals.
    let whole;
    let totals_as_one = if totals.backends.is_empty() && history.len() == 1 {
        whole = BackendTally {
            corrected: totals.corrected.clone(),
            uncorrected: totals.uncorrected.clone(),
            status: totals.status,
        };
        Some(&whole)
    } else {
        None
    };
    let since = |t: std::time::SystemTime| {
        round3(
            t.duration_since(started_at)
                .map_or(0.0, |d| d.as_secs_f64()),
        )
    };
    let mut out: Vec<BackendReport> = Vec::new();
    let known = |id: usize| history.iter().any(|h| h.backend.id as usize == id);
    let mut add = |id: usize, h: Option<&BackendHistory>| {
        let t = totals_as_one.or(totals.backends.get(id)).unwrap_or(&empty);
        let requests = t.requests();
        let ok = t.status[usize::from(crate::grpc::status::OK)];
        out.push(BackendReport {
            address: h.map_or_else(
                || {
                    if id == crate::discovery::fleet::OTHER_ADDRESSES as usize {
                        format!(
                            "other addresses (past the {} kept apart)",
                            crate::discovery::fleet::MAX_ADDRESSES_KEPT
                        )
                    } else {
                        format!("backend {id}")
                    }
                },
                |h| h.backend.address.to_string(),
            ),
            joined_s: h.map_or(0.0, |h| since(h.joined)),
            left_s: h.and_then(|h| h.left).map(since),
            stints: h.map_or(1, |h| h.stints),
            weight: h.map_or(0, |h| h.backend.weight),
            priority: h.map_or(0, |h| h.backend.priority),
            connections: h.map_or(0, |h| {
                h.backend
                    .connections
                    .load(std::sync::atomic::Ordering::Relaxed)
            }),
            requests,
            ok,
            errors: requests - ok,
            error_rate: if requests > 0 {
                (requests - ok) as f64 / requests as f64
            } else {
                0.0
            },
            status_codes: status_names(&t.status),
            latency: Latency {
                corrected: (model == Model::Open).then(|| LatencySummary::of(&t.corrected)),
                uncorrected: LatencySummary::of(&t.uncorrected),
            },
            slowest: false,
        });
    };
    // One entry per address: one that left and came back keeps its tally.
    for h in history {
        add(h.backend.id as usize, Some(h));
    }
    for id in 0..totals.backends.len() {
        if !known(id) && totals.backends[id].requests() > 0 {
            add(id, None);
        }
    }
    mark_slowest(&mut out);
    out
}

/// The latency a backend's users waited: corrected in the open model.
fn experienced(l: &Latency) -> &LatencySummary {
    l.corrected.as_ref().unwrap_or(&l.uncorrected)
}

/// Marks the backend with the highest p99 among those with calls (when there are two or more).
pub(crate) fn mark_slowest(backends: &mut [BackendReport]) {
    for b in backends.iter_mut() {
        b.slowest = false;
    }
    let with_calls = backends.iter().filter(|b| b.requests > 0).count();
    if with_calls < 2 {
        return;
    }
    let slowest = backends
        .iter_mut()
        .filter(|b| b.requests > 0)
        .max_by_key(|b| experienced(&b.latency).p99_us);
    if let Some(b) = slowest {
        b.slowest = true;
    }
}

impl BackendWorst {
    pub(crate) fn of(backends: &[BackendReport]) -> Self {
        let mut worst = Self::default();
        let mut top = None;
        for b in backends.iter().filter(|b| b.requests > 0) {
            let l = experienced(&b.latency);
            worst.p50_us = worst.p50_us.max(l.p50_us);
            worst.p999_us = worst.p999_us.max(l.p999_us);
            worst.error_rate = worst.error_rate.max(b.error_rate);
            if top.is_none_or(|p| l.p99_us > p) {
                top = Some(l.p99_us);
                worst.p99_us = l.p99_us;
                worst.slowest = b.address.clone();
            }
        }
        worst
    }
}

impl Report {
    /// Reads a report file, checking its schema first so the error says what was expected.
    pub fn load(path: &std::path::Path) -> Result<Self, LoadError> {
        let name = path.display().to_string();
        let text = crate::input::read_text(path, crate::input::FileKind::Report)
            .map_err(LoadError::Read)?;
        Self::parse(name, &text)
    }

    /// Reads a report's text; `name` is how errors call it.
    pub fn parse(name: String, text: &str) -> Result<Self, LoadError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| LoadError::NotJson(name.clone(), e.to_string()))?;
        let schema = value
            .get("schema")
            .and_then(|s| s.as_str())
            .unwrap_or("none");
        if schema != SCHEMA {
            return Err(LoadError::OtherSchema(name, schema.to_string()));
        }
        let mut at = Vec::new();
        check_histograms(&value, &mut at).map_err(|why| LoadError::Malformed(name.clone(), why))?;
        serde_json::from_value(value).map_err(|e| LoadError::Malformed(name, e.to_string()))
    }

    /// The figures of a run still going on, `measured` into it, for judging thresholds as
    /// intervals close (`abort_on_fail`): no intervals, no process figures.
    pub fn so_far(
        scenario: &Scenario,
        schema_source: &str,
        aggregate: &Aggregate,
        measured: std::time::Duration,
        asked_requests: Option<u64>,
        backends: &[BackendHistory],
    ) -> Self {
        Self::of_figures(
            scenario,
            schema_source,
            &aggregate.totals,
            std::time::SystemTime::now(),
            measured,
            asked_requests,
            backends,
        )
    }

    /// A report of `totals` (and the backends' `history`) over `measured` from
    /// `started_at`: what every report is built from (`run` adds intervals, process figures
    /// and what the load saw).
    pub fn of_figures(
        scenario: &Scenario,
        schema_source: &str,
        totals: &IntervalData,
        started_at: std::time::SystemTime,
        measured: std::time::Duration,
        asked_requests: Option<u64>,
        history: &[BackendHistory],
    ) -> Self {
        let model = scenario.load.model();
        let backends = backend_reports(totals, history, started_at, model);
        let secs = measured.as_secs_f64();
        let status_codes = status_names(&totals.status);
        let mut errors: Vec<ErrorCount> = totals
            .errors
            .iter()
            .map(|(code, message, count)| ErrorCount {
                status: code_name(*code).to_string(),
                message: message.clone(),
                count: *count,
            })
            .collect();
        errors.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.status.cmp(&b.status)));
        let started_at = time::OffsetDateTime::from(started_at)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Self {
            schema: SCHEMA.to_string(),
            name: scenario.name.clone(),
            kind: scenario.kind.as_str().to_string(),
            target: scenario.target.address.describe(),
            method: scenario
                .call
                .as_ref()
                .map_or_else(String::new, |c| c.method.value.to_string()),
            schema_source: schema_source.to_string(),
            protocol: match scenario.target.protocol {
                crate::vocabulary::Protocol::Grpc => "grpc".to_string(),
                web => format!(
                    "{} over HTTP/{}",
                    web.as_str(),
                    match scenario.target.http_version {
                        crate::vocabulary::HttpVersion::Http1 => "1.1",
                        crate::vocabulary::HttpVersion::Http2 => "2",
                    }
                ),
            },
            started_at,
            duration_seconds: round3(secs),
            interrupted: false,
            generator_panics: 0,
            platform: Platform::current(),
            labels: scenario.labels.clone(),
            load: LoadInfo {
                model,
                rate: scenario.load.rate,
                concurrency: scenario.load.concurrency,
                // gRPC-Web over HTTP/1.1 (a call at a time): each worker has its own.
                connections: if scenario.target.protocol.is_web()
                    && scenario.target.http_version == crate::vocabulary::HttpVersion::Http1
                {
                    scenario.load.concurrency
                } else {
                    scenario.load.connections
                },
                stages: scenario.load.stages.iter().map(StageInfo::from).collect(),
                warmup_seconds: scenario.load.warmup.as_secs_f64(),
                asked_requests,
            },
            totals: Totals {
                requests: totals.requests(),
                ok: totals.ok(),
                errors: totals.errors_count(),
                sent_late: totals.sent_late,
                rps: if secs > 0.0 {
                    round3(totals.requests() as f64 / secs)
                } else {
                    0.0
                },
                handshakes_per_second: (scenario.kind == Kind::TlsHandshake).then(|| {
                    let n = totals.tls.as_ref().map_or(0, |t| t.handshakes);
                    if secs > 0.0 {
                        round3(n as f64 / secs)
                    } else {
                        0.0
                    }
                }),
                attempts: None,
                error_rate: if totals.requests() > 0 {
                    totals.errors_count() as f64 / totals.requests() as f64
                } else {
                    0.0
                },
            },
            status_codes,
            errors,
            latency: Latency {
                corrected: (model == Model::Open).then(|| LatencySummary::of(&totals.corrected)),
                uncorrected: LatencySummary::of(&totals.uncorrected),
            },
            streams: scenario.kind.is_stream().then(|| StreamsInfo {
                opened: totals.streams_opened,
                open_at_start: 0,
                open_at_end: 0,
                completed: totals.ok(),
                failed: totals.errors_count(),
            }),
            messages: scenario.kind.is_stream().then(|| MessagesInfo {
                sent: totals.messages_sent,
                received: totals.messages_received,
                sent_per_second: if secs > 0.0 {
                    round3(totals.messages_sent as f64 / secs)
                } else {
                    0.0
                },
                received_per_second: if secs > 0.0 {
                    round3(totals.messages_received as f64 / secs)
                } else {
                    0.0
                },
                sent_late: totals.messages_sent_late,
            }),
            latency_first_message: scenario
                .kind
                .is_stream()
                .then(|| LatencySummary::of(&totals.first_message)),
            // Client streams get one response: there is no per-message latency to show.
            latency_message: matches!(scenario.kind, Kind::BidiStream | Kind::ServerStream)
                .then(|| LatencySummary::of(&totals.message)),
            latency_message_corrected: (scenario.kind == Kind::BidiStream
                && scenario.stream.message_rate.is_some())
            .then(|| LatencySummary::of(&totals.message_corrected)),
            phases: (scenario.kind == Kind::TlsHandshake).then(|| {
                let empty = crate::record::tls::TlsData::default();
                let t = totals.tls.as_deref().unwrap_or(&empty);
                Phases {
                    dns: LatencySummary::of(&t.dns),
                    tcp_connect: LatencySummary::of(&t.tcp_connect),
                    tls_handshake: LatencySummary::of(&t.tls_handshake),
                    first_response: scenario
                        .call
                        .is_some()
                        .then(|| LatencySummary::of(&t.first_response)),
                    total: LatencySummary::of(&t.total),
                }
            }),
            tls: (scenario.kind == Kind::TlsHandshake).then(|| {
                let empty = crate::record::tls::TlsData::default();
                let t = totals.tls.as_deref().unwrap_or(&empty);
                TlsInfo {
                    versions: t.versions.clone(),
                    cipher_suites: t.cipher_suites.clone(),
                    groups: t.groups.clone(),
                    resumed: t.resumed,
                    resumed_ratio: if t.handshakes > 0 {
                        round3(t.resumed as f64 / t.handshakes as f64)
                    } else {
                        0.0
                    },
                    alpn: t.alpn.clone(),
                    after_handshake: t.after_handshake.clone(),
                    first_errors: t.first_errors.clone(),
                }
            }),
            server_certificate: totals.tls.as_ref().and_then(|t| t.certificate.clone()),
            handshake_errors: (scenario.kind == Kind::TlsHandshake).then(|| {
                totals
                    .tls
                    .as_ref()
                    .map(|t| t.handshake_errors.clone())
                    .unwrap_or_default()
            }),
            insecure_skip_verify: scenario
                .target
                .tls
                .as_ref()
                .is_some_and(|t| t.insecure_skip_verify),
            intervals: Vec::new(),
            process: ProcessUsage::default(),
            target_process: None,
            thresholds: Vec::new(),
            aborted_by_threshold: None,
            merged_from: Vec::new(),
            shard: None,
            missing_shards: Vec::new(),
            merge_forced: false,
            methods: {
                let empty = BackendTally::default();
                scenario
                    .calls
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        let t = totals.methods.get(i).unwrap_or(&empty);
                        MethodReport::of(w.name.clone(), w.weight, t, secs, model)
                    })
                    .collect()
            },
            backend_worst: BackendWorst::of(&backends),
            backends,
            resolution: None,
            capacity: None,
            connections: None,
            retries: None,
        }
    }

    /// The report a scenario would produce, with every figure zero: its JSON shape is what
    /// threshold metric names are checked against before a run.
    pub fn probe(scenario: &Scenario) -> serde_json::Value {
        let mut report = Self::of_figures(
            scenario,
            "",
            &IntervalData::default(),
            std::time::SystemTime::now(),
            std::time::Duration::ZERO,
            None,
            &[],
        );
        // The target's side has figures when the scenario watches it, so thresholds may
        // name them (`"target_process.peak_rss_bytes" = "< 512000000"`).
        let watch = &scenario.target.watch;
        if !watch.is_empty() {
            let endpoint = watch.metrics_url.is_some().then_some(0.0);
            report.target_process = Some(crate::host::target_process::TargetProcess {
                peak_rss_bytes: Some(0),
                cpu_seconds: Some(0.0),
                cpu_seconds_per_1k_requests: Some(0.0),
                process_resident_memory_bytes: endpoint,
                process_cpu_seconds_total: endpoint,
                ..Default::default()
            });
        }
        serde_json::to_value(report).unwrap_or_default()
    }
}

fn native_grpc() -> String {
    "grpc".into()
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The most values a histogram in a report may count, and the largest whole number a
/// report may hold: beyond 2^53 counts are not exact in the floating point that
/// percentiles and charts are computed in.
const MAX_HISTOGRAM_COUNT: u64 = 1 << 53;
/// The most reports one merge takes: with every count at most 2^53, their sums fit in u64.
pub const MAX_MERGED: usize = 1024;

/// Decodes every `hdr` field of a report (nested anywhere) and checks it against its
/// sibling `count`, and bounds every number (whole or not), so that `merge`, `compare` and `report`
/// never work from a histogram they cannot read, and never add or chart counts that
/// overflow. The error names the field.
fn check_histograms(v: &serde_json::Value, at: &mut Vec<String>) -> Result<(), String> {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            if let Some(hdr) = map.get("hdr") {
                at.push("hdr".into());
                let field = at.join(".");
                at.pop();
                let text = hdr
                    .as_str()
                    .ok_or_else(|| format!("`{field}` is not a string"))?;
                let h = crate::record::histogram::decode(text)
                    .map_err(|why| format!("`{field}` cannot be decoded: {why}"))?;
                if h.len() >= MAX_HISTOGRAM_COUNT {
                    return Err(format!(
                        "`{field}` counts {} values, more than a report can hold exactly (2^53)",
                        h.len()
                    ));
                }
                if let Some(count) = map.get("count").and_then(Value::as_u64) {
                    if count != h.len() {
                        return Err(format!(
                            "`{field}` holds {} values but `count` says {count}",
                            h.len()
                        ));
                    }
                }
            }
            for (key, child) in map {
                at.push(key.clone());
                let result = check_histograms(child, at);
                at.pop();
                result?;
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                at.push(i.to_string());
                let result = check_histograms(child, at);
                at.pop();
                result?;
            }
        }
        // Floats by magnitude too: a sum of 1e308 and 1e308 is infinite, which JSON writes
        // as null, so a merge of two such reports could not be read back.
        Value::Number(n)
            if n.as_u64().is_some_and(|v| v > MAX_HISTOGRAM_COUNT)
                || n.as_f64()
                    .is_some_and(|x| x.abs() > MAX_HISTOGRAM_COUNT as f64) =>
        {
            return Err(format!(
                "`{}` is {n}, more than a report's numbers may be (2^53: exact in floating point, and a sum of {MAX_MERGED} of them cannot overflow)",
                at.join(".")
            ));
        }
        _ => {}
    }
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
