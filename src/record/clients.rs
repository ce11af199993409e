//! What a run's clients did beyond their calls' figures: their connections (keepalive,
//! ageing, GOAWAY) and their retry policy. Counted by the load, shown by the report: the
//! report's types live here, below both, as `LatencySummary` does.

use serde::{Deserialize, Serialize};

use super::histogram::LatencySummary;

/// What the lean client's connections did (unary load over native gRPC).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionsReport {
    /// Connections made: the first ones and every replacement.
    pub opened: u64,
    /// Replaced because they reached `[load] connection_max_age`.
    pub closed_by_age: u64,
    /// Closed by the server with GOAWAY (its MAX_CONNECTION_AGE, a restart, …).
    pub closed_by_server: u64,
    /// Closed because a keepalive PING went unanswered.
    pub keepalive_failures: u64,
    /// Keepalive PINGs sent.
    #[serde(default)]
    pub keepalive_pings: u64,
    /// GOAWAYs that said ENHANCE_YOUR_CALM `too_many_pings` (the keepalive time then doubles).
    pub too_many_pings: u64,
    /// Measured requests over connections opened.
    pub requests_per_connection: f64,
    /// Of `opened`: made by `connection_churn` for one request each, closed after it.
    #[serde(default)]
    pub churned: u64,
    /// `connection_churn` connections that could not be made (no request was lost: the
    /// request it was for went on a pooled connection).
    #[serde(default)]
    pub churn_failures: u64,
    /// Writes the client made on its connections' sockets (for plain TCP, system calls;
    /// handshakes included): a wake-up's requests go to a connection in one write.
    #[serde(default)]
    pub socket_writes: u64,
    /// Reads that brought bytes from the connections' sockets.
    #[serde(default)]
    pub socket_reads: u64,
}

/// What a retry policy (`[call.retry]`) did: attempts kept apart from calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetriesReport {
    /// Attempts sent, first attempts included (calls are `totals.requests`).
    pub attempts: u64,
    /// Retries sent: attempts after a call's first.
    pub retries: u64,
    /// Calls that succeeded only on a retry.
    pub succeeded_on_retry: u64,
    /// Retryable failures not retried because the throttling bucket was at half or below.
    pub stopped_by_throttling: u64,
    /// Retryable failures not retried because the server's pushback said so.
    pub stopped_by_pushback: u64,
    /// Calls that failed on their last allowed attempt.
    pub exhausted: u64,
    /// Each attempt's latency, from its own send to its answer (the report's `latency` is
    /// the calls': from the first attempt to the final answer, what a user waits).
    pub attempt_latency: LatencySummary,
}
