//! Admission: the one way a request is taken — from the open model's schedule (its number,
//! intended start, whether it is measured, whether it is late) or, in the closed model, for a
//! free slot until the time or the count is reached — shared by the unary dispatcher and the
//! stream and storm workers, with the run's clock and the release timing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::plan::Plan;
use super::timing::{Clock, LATE_AFTER};

/// State shared by all workers of one run. Only atomics are written on the hot path.
pub(super) struct Shared {
    pub plan: Plan,
    /// The next request number. Relaxed is enough: it only has to hand out each number
    /// once, which fetch_add guarantees at any ordering; no other memory hangs on it.
    pub next: AtomicU64,
    /// Numbers requests in the closed model when they differ by number (lists, templates).
    /// Relaxed, like `next`: only uniqueness matters.
    pub sequence: AtomicU64,
    /// Set when the run is being stopped. Relaxed: it carries no data, and a worker that
    /// sees it one request late sends one more request, which the drain then waits for.
    pub stop: AtomicBool,
    /// The same stop, for streams to await (each registers once per stream, never per message).
    pub stop_token: CancellationToken,
    /// Streams open now, whenever they were opened (warm-up included): read when the
    /// measured part begins and when the run stops, for the report.
    pub open_streams: AtomicU64,
    /// What the lean client's connections did (every thread counts here).
    pub connections: super::connections::ConnectionStats,
    /// What retry policies did, and the run's throttling bucket.
    pub retries: super::retry::RetryStats,
}

/// A request taken, not yet sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    /// The request number (`{{request_number}}`): the schedule's index in the open model.
    pub number: u64,
    /// Open model: the intended start.
    pub intended: Option<Instant>,
    /// False during the warm-up.
    pub measured: bool,
    /// Taken more than `LATE_AFTER` after its intended start: no slot was free in time
    /// (judged when taken, not after the timer: timer granularity is not lateness).
    pub late: bool,
}

/// How far ahead of its time a request of a live schedule (a capacity search) may be taken:
/// a rate set now reaches the requests sent after this, not after the concurrency's worth
/// of requests already taken at the old rate.
const LIVE_TAKE_AHEAD: std::time::Duration = std::time::Duration::from_millis(20);

impl Shared {
    /// With a live schedule, when the next request may be taken, if not now: it is due more
    /// than `LIVE_TAKE_AHEAD` from `now`. `None`: take it now (or find the schedule over).
    pub(super) fn not_before(&self, clock: &Clock, now: Instant) -> Option<Instant> {
        let live = self.plan.live.as_ref()?;
        // A step's backlog is dropped (a capacity search runs whole, never as a shard).
        self.next
            .fetch_max(live.first_of_current(), Ordering::Relaxed);
        let n = self.plan.shard.global(self.next.load(Ordering::Relaxed));
        let at = clock.start + live.due(n)?;
        let from = at.checked_sub(LIVE_TAKE_AHEAD)?;
        (from > now).then_some(from)
    }

    /// Takes the next request at `now`; `None` when no more will be taken (the schedule is
    /// exhausted, the time or the count is reached).
    pub(super) fn take(&self, clock: &Clock, now: Instant) -> Option<Ticket> {
        match &self.plan.schedule {
            Some(schedule) => {
                // This shard's n-th send is the global schedule's k-th (interleaved).
                let n = self
                    .plan
                    .shard
                    .global(self.next.fetch_add(1, Ordering::Relaxed));
                // A capacity search sets the rate as it goes; the schedule keeps the warm-up.
                let due = match &self.plan.live {
                    Some(live) => live.due(n)?,
                    None => schedule.due(n)?,
                };
                let at = clock.start + due;
                Some(Ticket {
                    number: n,
                    intended: Some(at),
                    measured: n >= schedule.warmup_requests(),
                    late: now > at + LATE_AFTER,
                })
            }
            None => {
                if clock.end.is_some_and(|end| now >= end) {
                    return None;
                }
                let measured = now >= clock.origin;
                if measured {
                    if let Some(limit) = self.plan.load.requests {
                        if self.next.fetch_add(1, Ordering::Relaxed) >= limit {
                            return None;
                        }
                    }
                }
                let number = if self.plan.numbers_requests() {
                    self.plan
                        .shard
                        .global(self.sequence.fetch_add(1, Ordering::Relaxed))
                } else {
                    0
                };
                Some(Ticket {
                    number,
                    intended: None,
                    measured,
                    late: false,
                })
            }
        }
    }
}
