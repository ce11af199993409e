//! An open-model schedule whose rate is set while the run goes on (the capacity search's
//! steps, issue 24): constant-rate segments appended at the moment a new rate is set, so
//! connections stay open across steps and every request keeps an intended time — the
//! coordinated-omission correction holds across rate changes as within a step.
//!
//! Request n is due where the arrivals of the segments before it reach n. A segment set at
//! time `at` begins at `at` with the arrivals due by then under the previous rate; requests
//! already taken keep the times they were given (a step's settle time covers the change).

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    /// Seconds from the schedule's start.
    start: f64,
    /// Arrivals due before it.
    before: f64,
    /// Requests per second; 0 stops the schedule.
    rate: f64,
}

/// A schedule of constant-rate segments, appended as the rate changes; read by every
/// generator thread for each request it takes.
#[derive(Debug)]
pub struct LiveRate {
    segments: RwLock<Vec<Segment>>,
    /// Seconds from the start after which nothing is due.
    end: f64,
}

impl LiveRate {
    /// Starts at `rate` (requests per second) and lasts `length` at most.
    pub fn new(rate: f64, length: Duration) -> Self {
        Self {
            segments: RwLock::new(vec![Segment {
                start: 0.0,
                before: 0.0,
                rate: rate.max(0.0),
            }]),
            end: length.as_secs_f64(),
        }
    }

    /// From `at` (since the start) on, `rate` requests per second; 0 ends the schedule.
    /// A time before the last change is taken as that change's time.
    pub fn set(&self, at: Duration, rate: f64) {
        let mut segments = self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        append(&mut segments, at, rate);
    }

    /// From `at`, nothing; from `resume` (later), `rate`. Both segments are appended under
    /// one lock: a worker that asked between them would find rate 0 — the schedule's end —
    /// and stop for good.
    pub fn pause(&self, at: Duration, resume: Duration, rate: f64) {
        let mut segments = self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        append(&mut segments, at, 0.0);
        append(&mut segments, resume.max(at), rate);
    }

    /// The first request of the rate in force: requests before it not yet taken when the rate
    /// changed are dropped (never sent, never counted), so one step's backlog — a service
    /// that fell behind — does not flood the next.
    pub fn first_of_current(&self) -> u64 {
        self.segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .map_or(0, |s| s.before.ceil() as u64)
    }

    /// The rate in force now (the last one set).
    pub fn rate(&self) -> f64 {
        self.segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .map_or(0.0, |s| s.rate)
    }

    /// When request `n` (from 0) is due, from the start; `None` when it never is (the
    /// schedule ended, or its rate is 0).
    pub fn due(&self, n: u64) -> Option<Duration> {
        let segments = self.segments.read().unwrap_or_else(PoisonError::into_inner);
        let n = n as f64;
        // The last segment whose arrivals began at or before n.
        let i = segments.partition_point(|s| s.before <= n).checked_sub(1)?;
        let s = segments[i];
        if s.rate <= 0.0 {
            return None;
        }
        let t = s.start + (n - s.before) / s.rate;
        // A later segment began before this request's time: the rate changed under it.
        let t = match segments.get(i + 1) {
            Some(next) if t >= next.start => next.start,
            _ => t,
        };
        (t < self.end).then(|| Duration::from_secs_f64(t))
    }
}

/// Appends a segment of `rate` from `at` (a time before the last change is taken as that
/// change's time).
fn append(segments: &mut Vec<Segment>, at: Duration, rate: f64) {
    let last = *segments.last().expect("a schedule has a segment");
    let at = at.as_secs_f64().max(last.start);
    segments.push(Segment {
        start: at,
        before: last.before + (at - last.start) * last.rate,
        rate: if rate.is_finite() { rate.max(0.0) } else { 0.0 },
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(d: Option<Duration>) -> f64 {
        d.unwrap().as_secs_f64()
    }

    #[test]
    fn requests_follow_each_rate_from_the_moment_it_is_set() {
        let live = LiveRate::new(100.0, Duration::from_secs(60));
        assert_eq!(secs(live.due(0)), 0.0);
        assert!((secs(live.due(50)) - 0.5).abs() < 1e-9);
        // At 2 s (200 due), the rate doubles: request 200 + 400 is due 2 s later.
        live.set(Duration::from_secs(2), 200.0);
        assert!((secs(live.due(600)) - 4.0).abs() < 1e-9);
        assert!(
            (secs(live.due(150)) - 1.5).abs() < 1e-9,
            "earlier requests keep their times"
        );
        assert_eq!(live.rate(), 200.0);
        // Rate 0 ends it; past the length nothing is due.
        live.set(Duration::from_secs(5), 0.0);
        assert_eq!(live.due(800), None);
        let short = LiveRate::new(10.0, Duration::from_secs(1));
        assert!(short.due(9).is_some());
        assert_eq!(short.due(10), None);
    }

    #[test]
    fn a_pause_is_never_the_end_of_the_schedule() {
        let live = LiveRate::new(100.0, Duration::from_secs(60));
        // At 2 s (200 due), nothing until 3 s, then 50/s.
        live.pause(Duration::from_secs(2), Duration::from_secs(3), 50.0);
        assert!(
            (secs(live.due(200)) - 3.0).abs() < 1e-9,
            "the first after the pause"
        );
        assert!((secs(live.due(250)) - 4.0).abs() < 1e-9);
        assert!((secs(live.due(150)) - 1.5).abs() < 1e-9);
        assert_eq!(live.first_of_current(), 200);
        assert_eq!(live.rate(), 50.0);
    }

    proptest! {
        /// Whatever rates are set when, due times never go backwards as n grows, and each
        /// segment's requests come at its rate.
        #[test]
        fn due_times_are_monotone(changes in proptest::collection::vec((0.0f64..5.0, 1.0f64..5000.0), 0..8)) {
            let live = LiveRate::new(500.0, Duration::from_secs(10_000_000));
            let mut at = 0.0;
            for (gap, rate) in &changes {
                at += gap;
                live.set(Duration::from_secs_f64(at), *rate);
            }
            let mut last = 0.0;
            for n in (0..20_000).step_by(7) {
                let t = secs(live.due(n));
                prop_assert!(t >= last, "request {n} at {t} before {last}");
                last = t;
            }
        }
    }
}
