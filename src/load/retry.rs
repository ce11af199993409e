//! Retries by gRPC's retry policy (gRFC A6) for the lean client's unary calls: which failed
//! attempt is tried again and after how long (exponential backoff with full jitter, or the
//! server's `grpc-retry-pushback-ms`), retry throttling (one token bucket for the run), and
//! the counts the report keeps apart from the calls'.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::Rng;

use crate::grpc::lean::Pushback;
use crate::grpc::status;
use crate::record::clients::RetriesReport;
use crate::record::histogram::{new_histogram, record, LatencySummary};
use crate::vocabulary::{RetryPolicy, RetryThrottling};

/// Tokens are kept in thousandths, so the bucket is one atomic integer.
const MILLI: f64 = 1000.0;

/// The run's retry counters and its throttling bucket.
#[derive(Debug)]
pub struct RetryStats {
    attempts: AtomicU64,
    retried: AtomicU64,
    succeeded_on_retry: AtomicU64,
    stopped_by_throttling: AtomicU64,
    stopped_by_pushback: AtomicU64,
    exhausted: AtomicU64,
    throttling: Option<RetryThrottling>,
    tokens_milli: AtomicI64,
    /// Each measured attempt's own latency (the calls' latency runs from the first).
    attempt_latency: Mutex<Histogram<u64>>,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Its status code.
    pub code: u8,
    /// The server's `grpc-retry-pushback-ms`.
    pub pushback: Option<Pushback>,
    /// Which attempt it was (1: the first).
    pub tried: u8,
}

/// Why a failed attempt was not tried again (`None` from `decide`: it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again after this long.
    RetryAfter(Duration),
    /// The call ends with this attempt's outcome.
    End,
}

impl RetryStats {
    /// Counters for a run whose bucket (if any) is `throttling`, full at the start.
    pub fn new(throttling: Option<RetryThrottling>) -> Self {
        Self {
            attempts: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            succeeded_on_retry: AtomicU64::new(0),
            stopped_by_throttling: AtomicU64::new(0),
            stopped_by_pushback: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            throttling,
            tokens_milli: AtomicI64::new(throttling.map_or(0, |t| (t.max_tokens * MILLI) as i64)),
            attempt_latency: Mutex::new(new_histogram()),
        }
    }

    /// Attempt `tried` (1: the first) of a call in the measured part was sent. Retries are
    /// counted here, when sent, not when decided: one given up at a stop was never sent.
    pub fn attempt_sent(&self, measured: bool, tried: u8) {
        if measured {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            if tried > 1 {
                self.retried.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// An attempt of a call in the measured part was answered after `micros`.
    pub fn attempt_answered(&self, measured: bool, micros: u64) {
        if measured {
            if let Ok(mut h) = self.attempt_latency.lock() {
                record(&mut h, micros);
            }
        }
    }

    /// A call ended with `code` after `tried` attempts.
    pub fn call_ended(&self, code: u8, tried: u8, measured: bool) {
        if measured && code == status::OK && tried > 1 {
            self.succeeded_on_retry.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Attempt `tried` (1: the first) of a call under `policy` ended with `code` (and the
    /// server's `pushback`): whether and when it is tried again. Updates the bucket: a
    /// retryable failure takes a token, a success gives back `token_ratio`. Counts only
    /// what a `measured` call did.
    pub fn decide(
        &self,
        policy: &RetryPolicy,
        attempt: Attempt,
        measured: bool,
        rng: &mut impl Rng,
    ) -> Verdict {
        let Attempt {
            code,
            pushback,
            tried,
        } = attempt;
        let count = |a: &AtomicU64| {
            if measured {
                a.fetch_add(1, Ordering::Relaxed);
            }
        };
        let retryable = policy.retryable_codes.contains(&code);
        if let Some(t) = self.throttling {
            let max = (t.max_tokens * MILLI) as i64;
            let delta = if code == status::OK {
                (t.token_ratio * MILLI) as i64
            } else if retryable {
                -(MILLI as i64)
            } else {
                0
            };
            if delta != 0 {
                let _ = self
                    .tokens_milli
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        Some((v + delta).clamp(0, max))
                    });
            }
        }
        if code == status::OK || !retryable {
            return Verdict::End;
        }
        if tried >= policy.max_attempts {
            count(&self.exhausted);
            return Verdict::End;
        }
        let delay = match pushback {
            Some(Pushback::Stop) => {
                count(&self.stopped_by_pushback);
                return Verdict::End;
            }
            Some(Pushback::After(d)) => d,
            None => {
                // Full jitter below the bound: initial × multiplier^(retries so far), capped.
                let bound = policy.initial_backoff.as_secs_f64()
                    * policy.backoff_multiplier.powi(i32::from(tried) - 1);
                let bound = bound.min(policy.max_backoff.as_secs_f64());
                Duration::from_secs_f64(rng.random_range(0.0..=bound.max(0.0)))
            }
        };
        if let Some(t) = self.throttling {
            // Retries only while more than half the bucket is left.
            if self.tokens_milli.load(Ordering::Relaxed) as f64 <= t.max_tokens * MILLI / 2.0 {
                count(&self.stopped_by_throttling);
                return Verdict::End;
            }
        }
        Verdict::RetryAfter(delay)
    }

    /// The report's `retries`: the measured part's calls, as every count of the report.
    pub fn report(&self) -> RetriesReport {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RetriesReport {
            attempts: get(&self.attempts),
            retries: get(&self.retried),
            succeeded_on_retry: get(&self.succeeded_on_retry),
            stopped_by_throttling: get(&self.stopped_by_throttling),
            stopped_by_pushback: get(&self.stopped_by_pushback),
            exhausted: get(&self.exhausted),
            attempt_latency: self
                .attempt_latency
                .lock()
                .map(|h| LatencySummary::of(&h))
                .unwrap_or_else(|_| LatencySummary::of(&new_histogram())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn at(code: u8, pushback: Option<Pushback>, tried: u8) -> Attempt {
        Attempt {
            code,
            pushback,
            tried,
        }
    }

    fn policy(throttling: Option<RetryThrottling>) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(150),
            backoff_multiplier: 2.0,
            retryable_codes: vec![status::UNAVAILABLE],
            throttling,
        }
    }

    #[test]
    fn backoff_jitters_below_a_growing_capped_bound_and_attempts_run_out() {
        let s = RetryStats::new(None);
        let p = policy(None);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let Verdict::RetryAfter(d) =
                s.decide(&p, at(status::UNAVAILABLE, None, 1), true, &mut rng)
            else {
                panic!("the first failure is retried");
            };
            assert!(d <= Duration::from_millis(100));
            let Verdict::RetryAfter(d) =
                s.decide(&p, at(status::UNAVAILABLE, None, 2), true, &mut rng)
            else {
                panic!("the second too");
            };
            assert!(
                d <= Duration::from_millis(150),
                "capped by max_backoff: {d:?}"
            );
        }
        assert_eq!(
            s.decide(&p, at(status::UNAVAILABLE, None, 3), true, &mut rng),
            Verdict::End
        );
        assert_eq!(
            s.decide(&p, at(status::INTERNAL, None, 1), true, &mut rng),
            Verdict::End,
            "not retryable"
        );
        assert_eq!(
            s.decide(&p, at(status::OK, None, 1), true, &mut rng),
            Verdict::End
        );
    }

    #[test]
    fn pushback_sets_the_delay_or_stops_the_retries() {
        let s = RetryStats::new(None);
        let p = policy(None);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let after = Some(Pushback::After(Duration::from_millis(700)));
        assert_eq!(
            s.decide(&p, at(status::UNAVAILABLE, after, 1), true, &mut rng),
            Verdict::RetryAfter(Duration::from_millis(700)),
            "the server's pushback, even above max_backoff"
        );
        assert_eq!(
            s.decide(
                &p,
                at(status::UNAVAILABLE, Some(Pushback::Stop), 1),
                true,
                &mut rng
            ),
            Verdict::End
        );
        assert_eq!(s.report().stopped_by_pushback, 1);
        assert_eq!(Pushback::parse(b"-1"), Pushback::Stop);
        assert_eq!(Pushback::parse(b"soon"), Pushback::Stop);
        assert_eq!(
            Pushback::parse(b"25"),
            Pushback::After(Duration::from_millis(25))
        );
    }

    #[test]
    fn throttling_stops_retries_at_half_the_bucket_and_successes_refill_it() {
        let t = RetryThrottling {
            max_tokens: 10.0,
            token_ratio: 0.5,
        };
        let s = RetryStats::new(Some(t));
        let p = policy(Some(t));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        // 10 tokens: failures take one each; at 5 or fewer, no retry.
        let verdicts: Vec<bool> = (0..8)
            .map(|_| {
                matches!(
                    s.decide(&p, at(status::UNAVAILABLE, None, 1), true, &mut rng),
                    Verdict::RetryAfter(_)
                )
            })
            .collect();
        assert_eq!(
            verdicts,
            [true, true, true, true, false, false, false, false]
        );
        assert_eq!(s.report().stopped_by_throttling, 4);
        // Four successes give back two tokens (2 → 4): still not above half.
        for _ in 0..4 {
            s.decide(&p, at(status::OK, None, 1), true, &mut rng);
        }
        assert_eq!(
            s.decide(&p, at(status::UNAVAILABLE, None, 1), true, &mut rng),
            Verdict::End
        );
        for _ in 0..10 {
            s.decide(&p, at(status::OK, None, 1), true, &mut rng);
        }
        assert!(matches!(
            s.decide(&p, at(status::UNAVAILABLE, None, 1), true, &mut rng),
            Verdict::RetryAfter(_)
        ));
    }
}
