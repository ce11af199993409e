//! The scenario model: what a scenario file says, typed and validated.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::source::At;
use super::source::Loc;

/// What each iteration of the load does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStream,
    /// A stream of requests, one response.
    ClientStream,
    /// Streams both ways.
    BidiStream,
    /// A new TCP connection and TLS handshake per iteration, optionally one call over it.
    TlsHandshake,
}

impl Kind {
    /// Every kind's name, as a scenario writes it.
    pub const NAMES: &'static [&'static str] = &[
        "unary",
        "server_stream",
        "client_stream",
        "bidi_stream",
        "tls_handshake",
    ];

    /// The kind a scenario's `kind` names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unary" => Some(Self::Unary),
            "server_stream" => Some(Self::ServerStream),
            "client_stream" => Some(Self::ClientStream),
            "bidi_stream" => Some(Self::BidiStream),
            "tls_handshake" => Some(Self::TlsHandshake),
            _ => None,
        }
    }

    /// The kind's name, as a scenario writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unary => "unary",
            Self::ServerStream => "server_stream",
            Self::ClientStream => "client_stream",
            Self::BidiStream => "bidi_stream",
            Self::TlsHandshake => "tls_handshake",
        }
    }

    /// Whether calls of this kind are streams.
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            Self::ServerStream | Self::ClientStream | Self::BidiStream
        )
    }

    /// The gRPC method shape this kind calls (a handshake storm's optional call is unary).
    pub fn method_shape(self) -> &'static str {
        match self {
            Self::TlsHandshake => "unary",
            other => other.as_str(),
        }
    }
}

/// How a bidi stream measures message latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BidiMode {
    /// Send one message, wait for its reply: the round trip is the message latency.
    PingPong,
    /// Send on schedule and receive concurrently; replies are matched to messages by order.
    Pipelined,
}

/// `[stream]`: how each stream behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamOptions {
    /// Messages the client sends per stream (client, bidi), or after which it ends a server
    /// stream (0 = until the server closes it).
    pub messages: u64,
    /// Pause between the client's messages.
    pub message_interval: Duration,
    /// Messages per second per stream on the stream's own schedule (exclusive with
    /// `message_interval`): message i is due at the stream's opening + i / rate.
    pub message_rate: Option<f64>,
    /// The client ends each stream after this long.
    pub stream_duration: Option<Duration>,
    /// How a bidi stream's messages and replies alternate.
    pub mode: BidiMode,
}

/// Where the load goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// The built-in reference target, started in-process on a loopback port the OS picks.
    Embedded,
    /// `host:port`.
    Remote(super::HostPort),
    /// A name for a set of backends (`dns:///…`, `dns+srv://…`), resolved again every
    /// `resolve_every`.
    Fleet(super::FleetName),
}

impl Address {
    /// The address as reports and labels show it (`embedded`, `host:port`, the name).
    pub fn describe(&self) -> String {
        match self {
            Self::Embedded => "embedded".into(),
            Self::Remote(a) => a.to_string(),
            Self::Fleet(n) => n.to_string(),
        }
    }
}

/// How calls are spread over a fleet's backends (gRPC's load-balancing policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each call (stream, storm iteration) to the next backend in turn.
    #[default]
    RoundRobin,
    /// Every call to the first backend that connects, the next one only when it fails.
    PickFirst,
}

/// TLS session resumption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumption {
    /// Every handshake is full (the default: the worst case a storm can be).
    None,
    /// TLS 1.3 PSK and TLS 1.2 tickets.
    Tickets,
    /// TLS 1.2 session ids.
    SessionId,
}

/// `[target.tls]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsOptions {
    /// PEM file of trusted CAs; none = the system roots.
    pub ca: Option<PathBuf>,
    /// SNI and verification name; default: the address's host.
    pub server_name: Option<String>,
    /// Accept any server certificate (said loudly).
    pub insecure_skip_verify: bool,
    /// Client certificate and key (PEM) for mutual TLS.
    pub cert: Option<PathBuf>,
    /// The client certificate's key.
    pub key: Option<PathBuf>,
    /// "1.2", "1.3"; empty = both.
    pub versions: Vec<String>,
    /// rustls names, e.g. TLS13_AES_128_GCM_SHA256; empty = all.
    pub cipher_suites: Vec<String>,
    /// Key exchange groups, e.g. X25519, secp256r1; empty = all.
    pub groups: Vec<String>,
    /// Session resumption in handshake storms.
    pub resumption: Resumption,
    /// ALPN protocols offered (`h2` for gRPC).
    pub alpn: Vec<String>,
    /// Close each handshake-storm connection with RST instead of FIN.
    pub close_with_rst: bool,
    /// Where the table was written, for problems found when it is loaded.
    pub loc: Loc,
}

impl TlsOptions {
    /// TLS as a plain client does it: the system's roots, every version, suite and group, no
    /// client certificate, offering `alpn`.
    pub fn system_roots(alpn: &str) -> Self {
        Self {
            ca: None,
            server_name: None,
            insecure_skip_verify: false,
            cert: None,
            key: None,
            versions: Vec::new(),
            cipher_suites: Vec::new(),
            groups: Vec::new(),
            resumption: Resumption::None,
            alpn: vec![alpn.to_string()],
            close_with_rst: false,
            loc: Loc::default(),
        }
    }
}

#[derive(Debug, Clone)]
/// `[target]`: where the load goes and how it talks.
pub struct Target {
    /// TLS to the target, when `[target.tls]` is present.
    pub tls: Option<TlsOptions>,
    /// Where it is.
    pub address: Address,
    /// `:authority` override (virtual hosting, proxies).
    pub authority: Option<String>,
    /// How long to wait for a TCP connection before the run fails.
    pub connect_timeout: Duration,
    /// How often a fleet's name is resolved again (`Address::Fleet` only).
    pub resolve_every: Duration,
    /// How calls spread over a fleet's backends.
    pub balance: Balance,
    /// `protocol`: native gRPC, or gRPC-Web (binary or text) as browsers speak it.
    pub protocol: Protocol,
    /// `http_version`: what gRPC-Web goes over (native gRPC is HTTP/2 only).
    pub http_version: HttpVersion,
    /// `cors_origin`: gRPC-Web calls made as a page at this origin would (a preflight per
    /// connection, the Origin header on each call).
    pub cors_origin: Option<String>,
    /// `process` and `metrics_url`: the target's side, sampled during the run.
    pub watch: super::watch::TargetSpec,
}

/// The wire protocol of the calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "grpc")]
    /// `application/grpc` over HTTP/2.
    Grpc,
    /// `application/grpc-web+proto`.
    #[serde(rename = "grpc-web")]
    GrpcWeb,
    /// `application/grpc-web-text`: the frames in base64.
    #[serde(rename = "grpc-web-text")]
    GrpcWebText,
}

impl Protocol {
    /// Whether this is gRPC-Web (either form).
    pub fn is_web(self) -> bool {
        self != Self::Grpc
    }

    /// The name a scenario writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::GrpcWeb => "grpc-web",
            Self::GrpcWebText => "grpc-web-text",
        }
    }
}

/// The HTTP version gRPC-Web goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum HttpVersion {
    /// What browsers mostly use through a proxy, and where gRPC-Web differs most from gRPC.
    #[default]
    #[serde(rename = "1.1")]
    Http1,
    #[serde(rename = "2")]
    /// HTTP/2.
    Http2,
}

/// The HTTP/2 client unary calls go through: the lean one (the default, cheapest per call)
/// or `h2` (the general client streams use), for a peer that misbehaves with the lean one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnaryTransport {
    #[default]
    /// The lean client.
    Lean,
    /// The `h2` crate's client.
    H2,
}

/// Request compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// gzip.
    Gzip,
}

/// A gRPC method named as `package.Service/Method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodName {
    /// `package.Service`.
    pub service: String,
    /// `Method`.
    pub method: String,
}

impl MethodName {
    /// Accepts `package.Service/Method`, `/package.Service/Method` and `package.Service.Method`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix('/').unwrap_or(s);
        let (service, method) = match s.split_once('/') {
            Some(parts) => parts,
            None => s.rsplit_once('.')?,
        };
        let valid = |p: &str| {
            !p.is_empty()
                && p.split('.').all(|seg| {
                    !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
        };
        (valid(service) && valid(method) && !method.contains('.')).then(|| Self {
            service: service.to_string(),
            method: method.to_string(),
        })
    }

    /// The HTTP/2 path of the method: `/package.Service/Method`.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.service, self.method)
    }
}

impl std::fmt::Display for MethodName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.service, self.method)
    }
}

/// Where the method's types come from, in order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    /// .proto files compiled at run time.
    Protos {
        /// The files, and where each was written.
        files: Vec<At<PathBuf>>,
        /// Where their imports are looked for.
        import_paths: Vec<PathBuf>,
    },
    /// A serialized FileDescriptorSet (`protoc -o`).
    Protoset(At<PathBuf>),
    /// Server reflection (grpc.reflection.v1, then v1alpha).
    Reflection,
}

#[derive(Debug, Clone)]
/// `[call]`: the method and what each call sends.
pub struct Call {
    /// The method, and where it was written.
    pub method: At<MethodName>,
    /// Where its types come from.
    pub schema: Schema,
    /// The request messages, sent round-robin (one for a plain `data` table).
    pub messages: Vec<RequestMessage>,
    /// Metadata sent with each call.
    pub metadata: Vec<(String, String)>,
    /// The gRPC deadline of each call.
    pub timeout: Option<Duration>,
    /// Request compression.
    pub compression: Option<Compression>,
    /// The largest response message accepted, unary and streams alike (gRPC's default:
    /// 4 MiB); a larger one fails its call as RESOURCE_EXHAUSTED.
    pub max_receive_message_size: u32,
    /// `transport`: the client unary calls go through.
    pub transport: UnaryTransport,
    /// `data_order` (and `seed`): how each request's message is picked from the list.
    pub data_order: DataOrder,
    /// `[call.retry]`: gRPC's retry policy (gRFC A6), for unary calls over the lean client.
    pub retry: Option<RetryPolicy>,
}

/// `[call.retry]`: how a failed call is tried again, as gRPC's retry policy (gRFC A6) says.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (2 to 5: gRPC takes more as 5).
    pub max_attempts: u8,
    /// The first backoff's bound; each retry waits a random time below the bound.
    pub initial_backoff: Duration,
    /// The bound's ceiling.
    pub max_backoff: Duration,
    /// The bound grows by this factor per retry.
    pub backoff_multiplier: f64,
    /// The gRPC codes that are retried (others end the call).
    pub retryable_codes: Vec<u8>,
    /// Retry throttling: a token bucket of `max_tokens`, refilled by `token_ratio` per
    /// success; retries only while more than half is left.
    pub throttling: Option<RetryThrottling>,
}

/// gRPC's retry throttling (gRFC A6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryThrottling {
    /// The bucket's size (1 to 1000).
    pub max_tokens: f64,
    /// Tokens a success gives back (above 0).
    pub token_ratio: f64,
}

/// One entry of a mix (`[[calls]]`).
#[derive(Debug, Clone)]
pub struct WeightedCall {
    /// `method` as written: the report's `methods[].method`.
    pub name: String,
    /// `weight`: its share of the requests is its weight over the sum of the weights.
    pub weight: f64,
    /// The call, read as `[call]` is.
    pub call: Call,
}

/// `data_order`: which message of a `data` list (or `data_file`) a request sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataOrder {
    /// Request n sends message n mod the list's length.
    #[default]
    RoundRobin,
    /// A pseudo-random pick per request, a function of the seed and the request's number:
    /// the same seed gives the same sequence, whatever the workers' timing. No seed: one is
    /// drawn at the start of the run.
    Random {
        /// `seed`.
        seed: Option<u64>,
    },
}

/// One request message, in the protobuf JSON mapping, and where it was written.
#[derive(Debug, Clone)]
pub struct RequestMessage {
    /// The message.
    pub json: serde_json::Value,
    /// The file it was written in: the scenario, or its `data_file`.
    pub file: PathBuf,
    /// Its name in problems: `data`, `data[2]`, or `data_file line 7`.
    pub key: String,
    /// Where it and each key inside it were written (`data.a.b` → line, column).
    pub locs: Vec<(String, Loc)>,
    /// Whether it came from a `data_file`.
    pub from_data_file: bool,
}

/// One step of an open-model ramp: from the previous rate to `rate` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// How long the ramp to `rate` lasts.
    pub duration: Duration,
    /// The rate at its end.
    pub rate: f64,
}

#[derive(Debug, Clone, PartialEq)]
/// `[load]`: the schedule.
pub struct Load {
    /// Requests per second (open model); `None` = closed model.
    pub rate: Option<f64>,
    /// Open-model stages (a ramp), instead of one `rate`.
    pub stages: Vec<Stage>,
    /// Workers (closed model) or the most calls in flight (open model).
    pub concurrency: u32,
    /// Connections to each backend.
    pub connections: u32,
    /// The measured part's length; for stages, their sum.
    pub duration: Option<Duration>,
    /// Stop after this many measured requests.
    pub requests: Option<u64>,
    /// Time before the measured part (its calls are not counted).
    pub warmup: Duration,
    /// Generator threads; `None` = chosen from the rate, the cores and the connections.
    pub threads: Option<u32>,
    /// `keepalive`: HTTP/2 PINGs on quiet connections, as gRPC clients send them.
    pub keepalive: Option<Keepalive>,
    /// `connection_max_age`: a connection older than this (±10%, as gRPC servers jitter
    /// MAX_CONNECTION_AGE) takes no new calls, finishes its own and is replaced.
    pub connection_max_age: Option<Duration>,
    /// `connection_churn`: this many requests a second each go on a new connection of
    /// their own, closed after it (short-lived clients beside the long-lived ones).
    pub connection_churn: Option<f64>,
}

/// `[load] keepalive`: gRPC's client keepalive (gRFC A8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// `time`: a PING after this long without hearing from the server.
    pub time: Duration,
    /// `timeout`: a PING not answered within this closes the connection.
    pub timeout: Duration,
    /// `without_calls`: ping connections with no call in flight too.
    pub without_calls: bool,
}

/// Open model: arrivals on a schedule. Closed model: each worker sends when the last is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// Arrivals on a schedule, whatever the answers' pace.
    Open,
    /// Each worker sends when its last call is done.
    Closed,
}

impl Model {
    /// `open` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

impl Load {
    /// Which model the load follows.
    pub fn model(&self) -> Model {
        if self.rate.is_some() || !self.stages.is_empty() {
            Model::Open
        } else {
            Model::Closed
        }
    }

    /// The length of the measured part, when it is bounded by time.
    pub fn measured_duration(&self) -> Option<Duration> {
        if self.stages.is_empty() {
            self.duration
        } else {
            Some(self.stages.iter().map(|s| s.duration).sum())
        }
    }
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The scenario file (paths in it are relative to its folder).
    pub path: PathBuf,
    /// `name`.
    pub name: String,
    /// `kind`.
    pub kind: Kind,
    /// `[target]`.
    pub target: Target,
    /// Absent only for handshake storms without a call. With a mix (`[[calls]]`), its first
    /// entry: what every entry shares (transport, largest response) is read from it.
    pub call: Option<Call>,
    /// `[[calls]]`: a weighted mix of calls, each request one of them (empty: `[call]`).
    pub calls: Vec<WeightedCall>,
    /// `[load]`.
    pub load: Load,
    /// `[thresholds]`.
    pub thresholds: super::conditions::Thresholds,
    /// For the streaming kinds.
    pub stream: StreamOptions,
    /// `[tracing]`: where spans go and which fraction of calls get one.
    pub tracing: crate::vocabulary::tracing::TracingConfig,
    /// `labels`: what a person records about the run (`run --label` adds or overrides).
    pub labels: std::collections::BTreeMap<String, String>,
    /// `[capacity]`: search for the highest rate within an SLO instead of one rate.
    pub capacity: Option<super::capacity::Capacity>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_in_every_accepted_form() {
        let want = MethodName {
            service: "pkg.v1.Svc".into(),
            method: "Call".into(),
        };
        for s in ["pkg.v1.Svc/Call", "/pkg.v1.Svc/Call", "pkg.v1.Svc.Call"] {
            assert_eq!(MethodName::parse(s).as_ref(), Some(&want), "{s}");
        }
        assert_eq!(want.path(), "/pkg.v1.Svc/Call");
        for bad in ["", "Svc", "pkg.Svc/", "/Call", "pkg Svc/Call", "a/b/c"] {
            assert_eq!(MethodName::parse(bad), None, "{bad}");
        }
    }
}
