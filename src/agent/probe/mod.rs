//! Health probing, one task per target — per backend, for a target named by DNS — so a slow
//! or hanging target never delays another. A DNS-named target's supervisor (`follow`)
//! resolves the name every `resolve_every`, starts a prober for each new backend and stops
//! (and forgets the series of) each one that left; a failed resolution keeps the last known
//! backends probed.
//! Check mode calls grpc.health.v1 Check every interval over a kept connection; Watch mode
//! keeps a Watch stream open and follows its statuses, reconnecting with exponential backoff
//! (except after UNIMPLEMENTED, which is reported and not retried).
//!
//! By job: `supervise` (tasks, fleet following), `cadence` (when), `connection` (the kept
//! connection), `rounds` (one probe, through `crate::probe`), `publish` (series, results,
//! spans, logs).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::channels::Channels;
use super::config::ProbeTarget;
use crate::grpc::web::{WebCall, WebSender};
use crate::probe::method::MethodProbe;
use crate::probe::verdict::CheckOutcome;
use crate::telemetry::traces::Traces;
use crate::telemetry::Metrics;
use crate::tls::ClientTls;
use crate::vocabulary::HostPort;

mod cadence;
mod connection;
mod publish;
mod rounds;
mod supervise;

pub use supervise::spawn;
pub(crate) use supervise::LogLimit;

/// A target's last probe, for `/api/v1/targets`.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// The target's name.
    pub name: String,
    /// As configured (a DNS name for a fleet).
    pub address: String,
    /// The instance probed: `IP:PORT` for a DNS name's backend, else the address.
    pub backend: String,
    /// `check` or `watch`.
    pub mode: &'static str,
    /// Whether the probe passed.
    pub success: bool,
    /// The grpc.health.v1 status, when the RPC answered.
    pub status: Option<String>,
    /// The gRPC status code of the probe's call.
    pub grpc_status_code: Option<i32>,
    /// How long the probe took.
    pub duration_seconds: f64,
    /// Why it failed.
    pub error: Option<String>,
    /// A method probe's checks and how each went in the last call.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckOutcome>,
    /// Unix seconds of the probe.
    pub at: f64,
}

/// The last result of each (target, backend).
pub type Results = Arc<Mutex<BTreeMap<(String, String), ProbeResult>>>;

/// Shared by every prober.
#[derive(Debug, Clone)]
pub struct ProbeContext {
    /// The agent's metrics.
    pub metrics: Arc<Metrics>,
    /// Each target's last result.
    pub results: Results,
    /// Counts targets whose first probe round is done (`/readyz`).
    pub first_round: Arc<std::sync::atomic::AtomicUsize>,
    /// Stops every prober with the agent.
    pub stop: CancellationToken,
    /// A span per probe when tracing is on.
    pub traces: Option<Arc<Traces>>,
    /// Lean connections shared by probers that reach one address the same way (checks and
    /// method probes).
    pub connections: Arc<Channels<crate::grpc::lean::SharedConnection>>,
    /// Tonic channels shared the same way (Watch streams).
    pub watch_channels: Arc<Channels<Channel>>,
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

struct Prober {
    target: Arc<ProbeTarget>,
    /// Where this prober connects: the address, or one backend of the name.
    address: HostPort,
    /// The `backend` label.
    backend: String,
    /// Set by the target's first published result, whichever backend's (`/readyz`).
    first: Arc<AtomicBool>,
    /// Stops this prober alone (its backend left the name), or with the agent.
    stop: CancellationToken,
    tls: Option<ClientTls>,
    ctx: ProbeContext,
    /// The shared lean connection in use, and its generation.
    connection: Option<(crate::grpc::lean::SharedConnection, u64)>,
    /// The shared tonic channel in use (Watch), and its generation.
    watch_channel: Option<(Channel, u64)>,
    /// The target's Check, made at its first probe.
    check: Option<crate::probe::health::Check>,
    /// The method probe's request headers, made at its first call.
    method_headers: Option<Arc<crate::grpc::lean::RequestHeaders>>,
    /// The target's log limit, shared by every backend's prober: a name whose 1,024
    /// backends all fail logs one line a minute, not 1,024.
    log: LogLimit,
    /// The span of the probe in progress (tracing on), ended when its result is published.
    span: Option<opentelemetry::Context>,
    /// The method probe, prepared (from files when the config was read, else by reflection
    /// at the first probe that reaches the target).
    method: Option<MethodProbe>,
    /// Renders a method probe's templates; `calls` numbers its requests.
    renderer: crate::grpc::request::Renderer,
    calls: u64,
    /// A gRPC-Web target: its call (made once the method is known) and its connection.
    web: Option<Box<(WebCall, Option<WebSender>)>>,
}
