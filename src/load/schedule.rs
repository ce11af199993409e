//! The open model's arrival schedule: when each request is meant to start.
//!
//! The rate is piecewise linear over time (a warm-up at the starting rate, then either one
//! constant-rate part or `[[load.stages]]` ramps). `N(t)`, the number of arrivals due by
//! time `t`, is the integral of the rate; request `i` (from 0) is due at the `t` where
//! `N(t) = i`. Within a segment whose rate goes linearly from `b` to `e` over `d` seconds,
//! `N(t0 + τ) = N(t0) + b·τ + (e − b)/(2d)·τ²`, inverted in closed form.

use std::time::Duration;

use crate::vocabulary::Load;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    /// Seconds from the start of the run.
    start: f64,
    /// Seconds; infinite for an open-ended constant rate.
    length: f64,
    rate_start: f64,
    rate_end: f64,
    /// Arrivals due before this segment.
    arrivals_before: f64,
}

impl Segment {
    fn slope(&self) -> f64 {
        if self.length.is_finite() && self.length > 0.0 {
            (self.rate_end - self.rate_start) / self.length
        } else {
            0.0
        }
    }

    fn arrivals(&self) -> f64 {
        if self.length.is_infinite() {
            if self.rate_start > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        } else {
            (self.rate_start + self.rate_end) / 2.0 * self.length
        }
    }

    /// Seconds into the segment at which `n` arrivals of it are due.
    fn time_of(&self, n: f64) -> f64 {
        let half_slope = self.slope() / 2.0;
        let b = self.rate_start;
        if n <= 0.0 {
            return 0.0;
        }
        // τ = 2n / (b + √(b² + 4·a·n)): the stable root of a·τ² + b·τ − n = 0.
        let disc = (b * b + 4.0 * half_slope * n).max(0.0);
        let denom = b + disc.sqrt();
        if denom <= 0.0 {
            return self.length;
        }
        (2.0 * n / denom).min(self.length)
    }

    fn arrivals_by(&self, tau: f64) -> f64 {
        let tau = tau.clamp(0.0, self.length);
        self.rate_start * tau + self.slope() / 2.0 * tau * tau
    }
}

/// When each request of an open-model run is due.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    segments: Vec<Segment>,
    /// Seconds of warm-up at the start.
    warmup: f64,
    /// Seconds from the start after which no request is due (warm-up + measured part).
    end: f64,
    /// Requests due in the warm-up (they are sent but not measured).
    warmup_requests: u64,
    /// The last request number + 1, when the run is bounded by a request count.
    request_limit: Option<u64>,
}

impl Schedule {
    /// The schedule of an open-model load; `None` for the closed model.
    pub fn for_load(load: &Load) -> Option<Self> {
        let start_rate = match (load.rate, load.stages.first()) {
            (Some(r), _) => r,
            (None, Some(_)) => 0.0,
            (None, None) => return None,
        };
        let warmup_rate = if start_rate > 0.0 {
            start_rate
        } else {
            load.stages.first().map_or(0.0, |s| s.rate)
        };
        let mut ramps = Vec::new();
        let warmup = load.warmup.as_secs_f64();
        if warmup > 0.0 {
            ramps.push((warmup, warmup_rate, warmup_rate));
        }
        if load.stages.is_empty() {
            let length = load.duration.map_or(f64::INFINITY, |d| d.as_secs_f64());
            ramps.push((length, start_rate, start_rate));
        } else {
            let mut from = start_rate;
            for st in &load.stages {
                ramps.push((st.duration.as_secs_f64(), from, st.rate));
                from = st.rate;
            }
        }
        Some(Self::from_ramps(&ramps, warmup, load.requests))
    }

    /// Builds a schedule from `(length, rate_start, rate_end)` ramps laid end to end.
    fn from_ramps(ramps: &[(f64, f64, f64)], warmup: f64, requests: Option<u64>) -> Self {
        let mut segments = Vec::with_capacity(ramps.len());
        let (mut start, mut before) = (0.0, 0.0);
        for &(length, rate_start, rate_end) in ramps {
            let seg = Segment {
                start,
                length,
                rate_start,
                rate_end,
                arrivals_before: before,
            };
            before += seg.arrivals();
            start += length;
            segments.push(seg);
        }
        let mut schedule = Self {
            segments,
            warmup,
            end: start,
            warmup_requests: 0,
            request_limit: None,
        };
        schedule.warmup_requests = schedule.arrivals_by(warmup).ceil() as u64;
        schedule.request_limit = requests.map(|r| schedule.warmup_requests + r);
        schedule
    }

    /// A constant rate for `length` seconds (no warm-up).
    pub fn constant(rate: f64, length: f64) -> Self {
        Self::from_ramps(&[(length, rate, rate)], 0.0, None)
    }

    /// Ramps laid end to end (no warm-up): for tests and tools.
    pub fn ramps(ramps: &[(f64, f64, f64)]) -> Self {
        Self::from_ramps(ramps, 0.0, None)
    }

    /// Arrivals due by `t` seconds, `N(t)`.
    pub fn arrivals_by(&self, t: f64) -> f64 {
        let t = t.min(self.end);
        let mut total = 0.0;
        for seg in &self.segments {
            if t <= seg.start {
                break;
            }
            total = seg.arrivals_before + seg.arrivals_by(t - seg.start);
        }
        total
    }

    /// When request `n` (from 0) is due, from the start of the run; `None` when the run has
    /// ended before it.
    pub fn due(&self, n: u64) -> Option<Duration> {
        if self.request_limit.is_some_and(|limit| n >= limit) {
            return None;
        }
        let target = n as f64;
        let seg = self
            .segments
            .iter()
            .find(|s| target < s.arrivals_before + s.arrivals())?;
        let t = seg.start + seg.time_of(target - seg.arrivals_before);
        // A request due past the longest run anything accepts (`requests` at a tiny rate)
        // is never due: every instant a run adds a due time to then exists.
        (t < self.end)
            .then(|| Duration::try_from_secs_f64(t).ok())
            .flatten()
            .filter(|d| *d <= crate::vocabulary::duration::MAX_DURATION)
    }

    /// Requests `0..warmup_requests()` are warm-up: sent, not measured.
    pub fn warmup_requests(&self) -> u64 {
        self.warmup_requests
    }

    /// How long the warm-up lasts.
    pub fn warmup(&self) -> Duration {
        Duration::try_from_secs_f64(self.warmup)
            .unwrap_or(crate::vocabulary::duration::MAX_DURATION)
    }

    /// The asked rate at `t` seconds.
    pub fn rate_at(&self, t: f64) -> f64 {
        self.segments
            .iter()
            .rev()
            .find(|s| t >= s.start)
            .map_or(0.0, |s| {
                s.rate_start + s.slope() * (t - s.start).min(s.length)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let s = Schedule::constant(1000.0, 1.0);
        assert_eq!(s.due(0), Some(Duration::ZERO));
        assert_eq!(s.due(1), Some(Duration::from_millis(1)));
        assert_eq!(s.due(999), Some(Duration::from_millis(999)));
        assert_eq!(s.due(1000), None);
    }

    #[test]
    fn linear_ramp_from_zero_follows_the_square_root() {
        // Rate 0 → 100/s over 10 s: N(t) = 5·t², so request n is due at √(n/5).
        let s = Schedule::ramps(&[(10.0, 0.0, 100.0)]);
        for n in [1u64, 5, 20, 125, 499] {
            let want = (n as f64 / 5.0).sqrt();
            let got = s.due(n).unwrap().as_secs_f64();
            assert!((got - want).abs() < 1e-6, "n={n} want {want} got {got}");
        }
        assert_eq!(s.due(500), None, "the ramp holds 500 requests");
    }

    proptest! {
        #[test]
        fn due_times_never_go_backwards(
            ramps in prop::collection::vec((0.1f64..5.0, 0.0f64..2000.0, 0.0f64..2000.0), 1..5),
        ) {
            let ramps: Vec<_> = ramps.into_iter().collect();
            let s = Schedule::ramps(&ramps);
            let mut last = Duration::ZERO;
            let mut n = 0;
            while let Some(t) = s.due(n) {
                prop_assert!(t >= last, "request {} due at {:?} before {:?}", n, t, last);
                last = t;
                n += 1;
                if n > 50_000 { break; }
            }
        }

        #[test]
        fn requests_due_by_t_match_the_integral_of_the_rate(
            ramps in prop::collection::vec((0.1f64..3.0, 0.0f64..1000.0, 0.0f64..1000.0), 1..4),
            frac in 0.0f64..1.0,
        ) {
            let s = Schedule::ramps(&ramps);
            let total: f64 = ramps.iter().map(|(d, a, b)| (a + b) / 2.0 * d).sum();
            let length: f64 = ramps.iter().map(|r| r.0).sum();
            let t = length * frac;
            // Count requests due strictly before t; it must equal ceil(N(t)).
            let mut count = 0u64;
            while s.due(count).is_some_and(|d| d.as_secs_f64() < t) { count += 1; }
            let expected = s.arrivals_by(t);
            prop_assert!((count as f64 - expected.ceil()).abs() <= 1.0,
                "{} requests before {}s, N(t) = {}", count, t, expected);
            prop_assert!(s.arrivals_by(length) <= total + 1e-6);
        }

        #[test]
        fn constant_rate_due_times_are_n_over_rate(rate in 1.0f64..100_000.0, n in 0u64..1_000_000) {
            let s = Schedule::constant(rate, f64::INFINITY);
            let got = s.due(n).unwrap().as_secs_f64();
            prop_assert!((got - n as f64 / rate).abs() < 1e-6);
        }

        #[test]
        fn warmup_requests_are_those_due_before_the_warmup_ends(rate in 1.0f64..5000.0, warm_ms in 0u64..3000) {
            let load = Load {
                rate: Some(rate),
                stages: vec![],
                concurrency: 1,
                connections: 1,
                duration: Some(Duration::from_secs(1)),
                requests: None,
                warmup: Duration::from_millis(warm_ms),
                threads: None,
                keepalive: None,
                connection_max_age: None,
                connection_churn: None,
            };
            let s = Schedule::for_load(&load).unwrap();
            let w = s.warmup_requests();
            if w > 0 {
                prop_assert!(s.due(w - 1).unwrap() < s.warmup());
            }
            if let Some(first_measured) = s.due(w) {
                prop_assert!(first_measured >= s.warmup().saturating_sub(Duration::from_nanos(1)));
            }
        }
    }

    proptest! {
        /// `--shard I/N`: shard I sends the global schedule's k with k mod N == I, so the
        /// union of the shards' intended times is the single schedule's, and their counts
        /// differ by at most one.
        #[test]
        fn shards_split_the_schedule_exactly(
            ramps in proptest::collection::vec((0.1f64..3.0, 0.0f64..400.0, 0.0f64..400.0), 1..4),
            count in 1u32..9,
        ) {
            let s = Schedule::ramps(&ramps);
            let single: Vec<Duration> = (0..).map_while(|k| s.due(k)).collect();
            let mut union = Vec::new();
            let mut sizes = Vec::new();
            for index in 0..count {
                let shard = crate::vocabulary::Shard { index, count };
                let mine: Vec<Duration> = (0..).map_while(|n| s.due(shard.global(n))).collect();
                sizes.push(mine.len());
                union.extend(mine);
            }
            union.sort();
            prop_assert_eq!(&union, &single);
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "{:?}", sizes);
        }
    }
}
