//! What the lean client's connections did in a run: opened, replaced by age, closed by the
//! server (GOAWAY), lost to keepalive, told `too_many_pings`. Counted by every generator
//! thread into one set of atomics, read once at the end for the report's `connections`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::grpc::lean::IoTally;

use crate::record::clients::ConnectionsReport;

/// The run's connection counters.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    opened: AtomicU64,
    churned: AtomicU64,
    keepalive_pings: AtomicU64,
    churn_failures: AtomicU64,
    closed_by_age: AtomicU64,
    closed_by_server: AtomicU64,
    keepalive_failures: AtomicU64,
    too_many_pings: AtomicU64,
    io: Arc<IoTally>,
}

/// One thing that happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// Made (the first ones and every replacement).
    Opened,
    /// A keepalive PING was sent.
    KeepalivePing,
    /// Made by `connection_churn` for one request (also counted as opened).
    Churned,
    /// A `connection_churn` connection that could not be made.
    ChurnFailed,
    /// Older than `connection_max_age`: drained and replaced.
    ClosedByAge,
    /// The server sent GOAWAY.
    ClosedByServer,
    /// A keepalive PING went unanswered within its timeout.
    KeepaliveFailed,
    /// The server's GOAWAY said ENHANCE_YOUR_CALM `too_many_pings`.
    TooManyPings,
}

impl ConnectionStats {
    /// Counts `event` once. Relaxed: counters only, read after the threads are done.
    pub fn count(&self, event: ConnectionEvent) {
        let counter = match event {
            ConnectionEvent::Opened => &self.opened,
            ConnectionEvent::Churned => &self.churned,
            ConnectionEvent::KeepalivePing => &self.keepalive_pings,
            ConnectionEvent::ChurnFailed => &self.churn_failures,
            ConnectionEvent::ClosedByAge => &self.closed_by_age,
            ConnectionEvent::ClosedByServer => &self.closed_by_server,
            ConnectionEvent::KeepaliveFailed => &self.keepalive_failures,
            ConnectionEvent::TooManyPings => &self.too_many_pings,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Where the lean connections count their socket writes and reads.
    pub fn io_tally(&self) -> Arc<IoTally> {
        self.io.clone()
    }

    /// The report's `connections`, `requests` (measured) having been made over them.
    pub fn report(&self, requests: u64) -> ConnectionsReport {
        let opened = self.opened.load(Ordering::Relaxed);
        ConnectionsReport {
            opened,
            closed_by_age: self.closed_by_age.load(Ordering::Relaxed),
            closed_by_server: self.closed_by_server.load(Ordering::Relaxed),
            keepalive_failures: self.keepalive_failures.load(Ordering::Relaxed),
            too_many_pings: self.too_many_pings.load(Ordering::Relaxed),
            churned: self.churned.load(Ordering::Relaxed),
            keepalive_pings: self.keepalive_pings.load(Ordering::Relaxed),
            churn_failures: self.churn_failures.load(Ordering::Relaxed),
            socket_writes: self.io.writes.load(Ordering::Relaxed),
            socket_reads: self.io.reads.load(Ordering::Relaxed),
            requests_per_connection: if opened > 0 {
                (requests as f64 / opened as f64 * 10.0).round() / 10.0
            } else {
                0.0
            },
        }
    }
}
