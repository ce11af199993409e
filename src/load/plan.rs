//! What a run is given (the plan: call, requests, schedule) and what it gives back.

use std::time::{Duration, SystemTime};

use super::schedule::Schedule;
use super::storm::HandshakeCall;
use super::stream::StreamCall;
use crate::grpc::request::Requests;
use crate::grpc::unary::UnaryCall;
use crate::host::process::ProcessUsage;
use crate::record::Aggregate;
use crate::vocabulary::{Load, Shard};

/// Everything the workers need, fixed before the load starts.
#[derive(Debug)]
pub struct Plan {
    /// The schedule's settings.
    pub load: Load,
    /// What each request is.
    pub call: CallPlan,
    /// The request messages, encoded once.
    pub requests: Requests,
    /// `[[calls]]`: a weighted mix of unary calls, each request one of its entries (`call`
    /// and `requests` are then its first entry's).
    pub mix: Option<super::mix::Mix>,
    /// `None` for the closed model.
    pub schedule: Option<Schedule>,
    /// Gives a sampled fraction of calls a span (when tracing is on).
    pub trace: Option<crate::telemetry::traces::CallSampler>,
    /// This run's share of a distributed run (`Shard::WHOLE` when it is not one): the open
    /// model's sends k with k mod count == index; ids and request numbers made global.
    pub shard: Shard,
    /// When the schedule's time zero is (the warm-up starts then), on the wall clock.
    pub start_at: Option<SystemTime>,
    /// The target's backends (one, for a `host:port`), followed as they change.
    pub fleet: std::sync::Arc<crate::discovery::Fleet>,
    /// How calls are spread over the fleet's backends.
    pub balance: crate::vocabulary::Balance,
    /// A capacity search: the rate, set step by step while the run goes on (the open-model
    /// schedule's warm-up and length still apply).
    pub live: Option<std::sync::Arc<super::live_rate::LiveRate>>,
}

/// What each iteration does.
#[derive(Debug)]
pub enum CallPlan {
    /// Unary calls.
    Unary(UnaryCall),
    /// Streams of any direction.
    Stream(StreamCall),
    /// A new connection and TLS handshake per iteration (no pooled connection).
    Handshake(HandshakeCall),
    /// gRPC-Web (unary or a server stream), each worker on its own connection.
    Web(crate::grpc::web::WebCall),
}

impl Plan {
    /// A span for this call when it is in the trace sample. Boxed: a span is large and rare
    /// (1% of calls by default), and held across a call inline it would size every worker's
    /// task.
    pub(super) fn sampled_span(&self) -> Option<Box<crate::telemetry::traces::CallSpan>> {
        self.trace.as_ref().and_then(|t| t.sample()).map(Box::new)
    }

    /// The unary calls this plan sends (a mix's entries, or its one call).
    pub fn unary_calls(&self) -> Vec<&UnaryCall> {
        match (&self.mix, &self.call) {
            (Some(mix), _) => mix.entries.iter().map(|e| &e.call).collect(),
            (None, CallPlan::Unary(call)) => vec![call],
            _ => Vec::new(),
        }
    }

    /// The call request `method` (a mix's entry; 0 without a mix) is.
    pub fn unary_call(&self, method: u16) -> Option<&UnaryCall> {
        match (&self.mix, &self.call) {
            (Some(mix), _) => mix.entries.get(usize::from(method)).map(|e| &e.call),
            (None, CallPlan::Unary(call)) => Some(call),
            _ => None,
        }
    }

    /// Whether the unary calls go on the lean client (the dispatcher's connections): native
    /// calls with `transport = "lean"` (a mix's entries all say the same), gRPC-Web calls that
    /// `WebCall::goes_lean`.
    pub fn on_lean_client(&self) -> bool {
        let web_lean = |w: Option<&crate::grpc::web::WebCall>| {
            w.is_some_and(crate::grpc::web::WebCall::goes_lean)
        };
        match (&self.call, &self.mix) {
            (CallPlan::Unary(_), Some(mix)) => mix.entries.iter().all(|e| e.call.lean()),
            (CallPlan::Unary(call), None) => call.lean(),
            (CallPlan::Web(_), Some(mix)) => mix.entries.iter().all(|e| web_lean(e.web.as_ref())),
            (CallPlan::Web(call), None) => call.goes_lean(),
            _ => false,
        }
    }

    /// Whether requests must be numbered (lists, templates, a mix: what request n sends
    /// depends on n).
    pub fn numbers_requests(&self) -> bool {
        let templated = match &self.call {
            CallPlan::Unary(c) => !c.templated().is_empty(),
            CallPlan::Stream(c) => !c.head().templated().is_empty(),
            CallPlan::Web(c) => !c.templated().is_empty(),
            CallPlan::Handshake(h) => h.call.as_ref().is_some_and(|c| !c.templated().is_empty()),
        };
        self.requests.varies() || self.mix.is_some() || templated
    }
}

impl CallPlan {
    /// The call's deadline, when it has one.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            Self::Unary(c) => c.timeout(),
            Self::Stream(c) => c.timeout(),
            Self::Web(c) => c.timeout(),
            Self::Handshake(h) => h
                .call
                .as_ref()
                .and_then(UnaryCall::timeout)
                .or(Some(h.connect_timeout * 2)),
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The figures, whole and per interval.
    pub aggregate: Aggregate,
    /// Wall-clock time at which the measured part began.
    pub started_at: SystemTime,
    /// Length of the measured part (to the last completion, or to the interruption).
    pub measured: Duration,
    /// Whether the run was stopped before its end.
    pub interrupted: bool,
    /// This process's CPU and memory over the run.
    pub process: ProcessUsage,
    /// Generator threads the load ran on.
    pub threads: usize,
    /// Generator threads that panicked (a bug): what they had not yet handed over is lost,
    /// the rest of the run is reported, and the process exits 70.
    pub generator_panics: u64,
    /// Wall-clock time of the schedule's time zero (the start of the warm-up).
    pub zero_at: SystemTime,
    /// Every backend the run saw, with when it joined and left.
    pub backends: Vec<crate::discovery::BackendHistory>,
    /// A fleet's DNS name: what re-resolving it did (`None` for a fixed address).
    pub resolution: Option<crate::discovery::ResolveStats>,
    /// Streams open when the measured part began (opened in the warm-up) and when the run
    /// stopped (then ended by the client).
    pub streams_open_at_start: u64,
    /// Streams still open when the run stopped.
    pub streams_open_at_end: u64,
    /// Unary load over the lean client: what its connections did.
    pub connections: Option<crate::record::clients::ConnectionsReport>,
    /// A retry policy's work (`[call.retry]`).
    pub retries: Option<crate::record::clients::RetriesReport>,
}
