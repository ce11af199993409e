//! When a request or a stream message is released and when it counts as late: shared by the
//! dispatcher, the workers and the streams' message schedules.

use std::time::Duration;

use tokio::time::Instant;

/// A request picked up more than this after its intended start counts as sent late.
/// Below it is timer and scheduling jitter, not a generator that fell behind.
pub(super) const LATE_AFTER: Duration = Duration::from_millis(1);

/// tokio's timer fires on 1 ms ticks, rounding a deadline up. Sleeping until half a tick
/// before the intended start releases each request within ±0.5 ms of it, instead of
/// always up to 1 ms after; the corrected latency is measured from the earlier of the
/// intended start and the send, so it is never below the uncorrected one.
pub(super) const HALF_TICK: Duration = Duration::from_micros(500);

/// Longest single sleep, so a stop is noticed quickly without a select per request.
pub(super) const MAX_NAP: Duration = Duration::from_millis(50);

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// When a request due `at` is released: half a tick early, so that with tokio rounding
/// timers up to its next tick each request goes within ±0.5 ms of its time.
pub(super) fn release_time(at: Instant) -> Instant {
    at.checked_sub(HALF_TICK).unwrap_or(at)
}

/// The run's time line, fixed once every generator thread is connected.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    /// Time 0 of the schedule, start of the warm-up.
    pub start: Instant,
    /// Start of the measured part (start + warm-up).
    pub origin: Instant,
    /// Closed model: when to stop sending.
    pub end: Option<Instant>,
    /// End of the measured part, when the run is time-bounded (either model): stream
    /// messages count inside [origin, measured_end), and streams stop sending there.
    pub measured_end: Option<Instant>,
}
