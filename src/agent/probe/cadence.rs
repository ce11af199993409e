//! When a prober probes: checks at a fixed phase of each interval (spread by a hash of
//! target and backend, never piling up after an overrun), Watch streams followed and opened
//! again with exponential backoff.

use std::time::{Duration, Instant};

use super::Prober;

impl Prober {
    /// Where this prober's checks fall: the first within the first second (or interval, if
    /// shorter), the rest at a fixed phase of each interval — both from a hash of target and
    /// backend, so 1,000 targets probed every 5 s are spread over the interval instead of
    /// all starting in the same millisecond (what made probes late), and a restarted agent
    /// probes each target at the same phase again.
    pub(super) fn phases(&self) -> (Duration, Duration) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&self.target.name, &self.backend).hash(&mut h);
        let h = h.finish();
        let within = |span: Duration| {
            let nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX).max(1);
            Duration::from_nanos(h % nanos)
        };
        let interval = self.target.interval;
        (
            within(interval.min(Duration::from_secs(1))),
            within(interval),
        )
    }

    /// Checks at `when`'s time, measuring how late each started.
    pub(super) async fn check_at(&mut self, when: tokio::time::Instant) -> bool {
        tokio::select! {
            _ = tokio::time::sleep_until(when) => {}
            _ = self.stop.cancelled() => return false,
        }
        let late = tokio::time::Instant::now().saturating_duration_since(when);
        self.ctx.metrics.observe_lateness(late);
        Box::pin(self.check_once()).await;
        true
    }

    pub(super) async fn run_check(mut self: Box<Self>) {
        let (first, steady) = self.phases();
        let start = tokio::time::Instant::now();
        let mut next = start + steady;
        if next <= start + first {
            next += self.target.interval;
        }
        if !self.check_at(start + first).await {
            return;
        }
        loop {
            if !self.check_at(next).await {
                return;
            }
            // A check that overran its interval does not make the next ones pile up: the
            // next is the first of this phase still ahead (arithmetic, not a loop: a 1 ns
            // interval must not spin).
            next = next_at_phase(next, self.target.interval, tokio::time::Instant::now());
        }
    }

    pub(super) async fn run_watch(mut self: Box<Self>) {
        let min = Duration::from_millis(100);
        let max = self.target.interval.max(min);
        let mut backoff = min;
        loop {
            let t = Instant::now();
            match self.watch_once().await {
                None => {
                    // Reported and not retried; wait for the agent to stop.
                    self.stop.cancelled().await;
                    return;
                }
                Some(_) => {
                    // A stream that lasted a while earns a fresh backoff.
                    if t.elapsed() > max {
                        backoff = min;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(max);
                }
            }
        }
    }
}

/// The first time after `now` that is `last` plus a whole number (at least one) of `interval`s.
fn next_at_phase(
    last: tokio::time::Instant,
    interval: Duration,
    now: tokio::time::Instant,
) -> tokio::time::Instant {
    let step = interval.as_nanos().max(1);
    let behind = now.saturating_duration_since(last).as_nanos();
    let periods = behind / step + 1;
    let ahead = u64::try_from(periods.saturating_mul(step)).unwrap_or(u64::MAX);
    last.checked_add(Duration::from_nanos(ahead))
        .unwrap_or_else(|| now + interval.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod phase_tests {
    use super::*;

    #[test]
    fn the_next_check_keeps_its_phase_and_never_spins() {
        let t0 = tokio::time::Instant::now();
        let s = Duration::from_secs(1);
        // On time: one interval later.
        assert_eq!(next_at_phase(t0, s, t0), t0 + s);
        // 3.5 intervals late: the 4th.
        assert_eq!(next_at_phase(t0, s, t0 + s * 3 + s / 2), t0 + s * 4);
        // A 1 ns interval a second behind: computed, not stepped through.
        let next = next_at_phase(t0, Duration::from_nanos(1), t0 + s);
        assert!(next > t0 + s && next <= t0 + s + Duration::from_nanos(1));
    }
}
