//! Every default of a scenario, defined once: the reader applies them, the schema documents
//! them (`schema.rs` renders these values into the README's tables).

use std::time::Duration;

/// `[load] duration` when neither `duration`, `requests` nor stages are given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// `[load] concurrency`: calls (streams, storm iterations) in flight at most.
pub const DEFAULT_CONCURRENCY: u64 = 64;
/// `[load] connections`.
pub const DEFAULT_CONNECTIONS: u64 = 1;
/// `[target] resolve_every`: how often a fleet's DNS name is resolved again.
pub const DEFAULT_RESOLVE_EVERY: Duration = Duration::from_secs(30);
/// `[target] resolve_every` at least: more often would load the DNS server, not the target.
pub const MIN_RESOLVE_EVERY: Duration = Duration::from_millis(100);
/// `[target] connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `[call] timeout` for unary calls (and a storm's calls): every call has a deadline (ghz's
/// default), so a target that stops answering cannot hang a run. Streams have none unless
/// one is written.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// gRPC's default limit on a received message (grpc-go, grpc-java, grpcio): 4 MiB.
pub const DEFAULT_MAX_RECEIVE_BYTES: u32 = 4 << 20;
/// The most `max_receive_message_size` may be: 1 GiB.
pub const MAX_RECEIVE_LIMIT: u32 = 1 << 30;
/// `[load] concurrency` and `connections` at most.
pub const MAX_SLOTS: u32 = 1_000_000;
/// `[tracing] sample_ratio`: 1% of 10,000 rps is 100 spans/s.
pub const DEFAULT_SAMPLE_RATIO: f64 = 0.01;

/// `[capacity]`: the first step's rate, the growth per passing step, the bisection's
/// precision, each step's length and settle time, the highest rate and the whole search.
pub const DEFAULT_START_RATE: f64 = 100.0;
/// `growth`.
pub const DEFAULT_GROWTH: f64 = 2.0;
/// `precision`.
pub const DEFAULT_PRECISION: f64 = 0.02;
/// `step`.
pub const DEFAULT_STEP: Duration = Duration::from_secs(10);
/// `settle`.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);
/// `max_rate`.
pub const DEFAULT_MAX_RATE: f64 = 1_000_000.0;
/// `max_duration`.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(600);
