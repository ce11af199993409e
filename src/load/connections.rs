//! What the lean client's connections did in a run: opened, replaced by age, closed by the
//! server (GOAWAY), lost to keepalive, told `too_many_pings`. Counted by every generator
//! thread into one set of atomics, read once at the end for the report's `connections`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The run's connection counters.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    opened: AtomicU64,
    closed_by_age: AtomicU64,
    closed_by_server: AtomicU64,
    keepalive_failures: AtomicU64,
    too_many_pings: AtomicU64,
}

/// The counters as read at the end of a run (the report's `connections` is made of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    /// Connections made: the first ones and every replacement.
    pub opened: u64,
    /// Replaced at `connection_max_age`.
    pub closed_by_age: u64,
    /// Closed by a GOAWAY from the server.
    pub closed_by_server: u64,
    /// Closed because a keepalive PING went unanswered.
    pub keepalive_failures: u64,
    /// GOAWAYs with ENHANCE_YOUR_CALM `too_many_pings`.
    pub too_many_pings: u64,
    /// Measured requests made over these connections.
    pub requests: u64,
}

impl ConnectionCounts {
    /// Measured requests over connections opened, to one decimal (0 when none opened).
    pub fn requests_per_connection(&self) -> f64 {
        if self.opened == 0 {
            return 0.0;
        }
        (self.requests as f64 / self.opened as f64 * 10.0).round() / 10.0
    }
}

/// One thing that happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// Made (the first ones and every replacement).
    Opened,
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
            ConnectionEvent::ClosedByAge => &self.closed_by_age,
            ConnectionEvent::ClosedByServer => &self.closed_by_server,
            ConnectionEvent::KeepaliveFailed => &self.keepalive_failures,
            ConnectionEvent::TooManyPings => &self.too_many_pings,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now, `requests` having been made over them.
    pub fn counts(&self, requests: u64) -> ConnectionCounts {
        ConnectionCounts {
            opened: self.opened.load(Ordering::Relaxed),
            closed_by_age: self.closed_by_age.load(Ordering::Relaxed),
            closed_by_server: self.closed_by_server.load(Ordering::Relaxed),
            keepalive_failures: self.keepalive_failures.load(Ordering::Relaxed),
            too_many_pings: self.too_many_pings.load(Ordering::Relaxed),
            requests,
        }
    }
}
