//! The capacity search (issue 24), as a pure state machine: which rate to try next, given
//! whether each step met the SLO, and when the search is over with what answer. No clock,
//! no I/O: the run feeds it each step's verdict, so the whole policy is property-tested here.
//!
//! Growth multiplies the rate while steps pass (from `start_rate`, capped at `max_rate`);
//! the first failure starts a bisection between the last passing and the first failing rate,
//! down to `precision` (relative); the rate found is then held for `confirm` — if that fails,
//! the search backs off by `precision` and confirms again, a few times at most. A failing
//! step says why (`Limit`): the search's answer names the reason of the failure that bounds
//! it. A step limited by the generator ends the search at once without a capacity: that
//! figure would be the generator's, not the service's.

/// Why a step failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    /// An SLO condition failed (named as written).
    Slo(String),
    /// Achieved below offered while the generator kept up.
    TargetSaturated,
    /// The generator could not send on time: the step measured the generator.
    Generator,
    /// No call succeeded: the target is gone.
    TargetFailed,
}

impl Limit {
    /// In words, for the step's record.
    pub fn describe(&self) -> String {
        match self {
            Self::Slo(c) => format!("slo: {c}"),
            Self::TargetSaturated => {
                "target_saturated: achieved fell short of offered beyond noise (its queue grew)"
                    .into()
            }
            Self::Generator => "generator: sends fell behind while the generator was busy or the service answered as fast as unloaded".into(),
            Self::TargetFailed => "target_failed: no call succeeded".into(),
        }
    }
}

/// What the search was told to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchPolicy {
    /// The first step's rate.
    pub start_rate: f64,
    /// > 1: the factor between growing steps.
    pub growth: f64,
    /// Relative: bisection stops when (fail − pass) / pass ≤ precision.
    pub precision: f64,
    /// The highest rate a step may offer.
    pub max_rate: f64,
    /// Hold the found rate once more before answering.
    pub confirm: bool,
}

/// Confirmations that fail before the search gives up.
const MAX_CONFIRM_BACKOFFS: u32 = 3;

/// The search's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The highest rate that met the SLO; `None` when none did or the generator was the limit.
    pub rps: Option<f64>,
    /// What ended the search.
    pub limited_by: LimitedBy,
}

/// What bounded the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum LimitedBy {
    /// A step failed for this reason just above the answer.
    Step(Limit),
    /// Every step passed up to `max_rate`.
    MaxRate,
    /// The search's `max_duration` ran out first (the answer is the best so far).
    MaxDuration,
    /// The run was stopped (Ctrl-C) before the search ended.
    Interrupted,
}

/// Every `limited_by` a search can end with (`LimitedBy::name`), for series that give each.
pub const LIMITED_BY_NAMES: [&str; 7] = [
    "slo",
    "target_saturated",
    "generator",
    "target_failed",
    "max_rate",
    "max_duration",
    "interrupted",
];

impl LimitedBy {
    /// The report's `limited_by`: `slo`, `target_saturated`, `generator`, `max_rate`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Step(Limit::Slo(_)) => "slo",
            Self::Step(Limit::TargetSaturated) => "target_saturated",
            Self::Step(Limit::Generator) => "generator",
            Self::Step(Limit::TargetFailed) => "target_failed",
            Self::MaxRate => "max_rate",
            Self::MaxDuration => "max_duration",
            Self::Interrupted => "interrupted",
        }
    }

    /// The SLO condition that failed, when that is the limit.
    pub fn failed_condition(&self) -> Option<&str> {
        match self {
            Self::Step(Limit::Slo(c)) => Some(c),
            _ => None,
        }
    }
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Run a step at this rate (`confirming`: the longer hold of a found rate).
    Step {
        /// The rate offered.
        rate: f64,
        /// Whether this step confirms a found rate.
        confirming: bool,
    },
    /// The search is over.
    Done(Answer),
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Growing,
    Bisecting,
    Confirming { backoffs: u32 },
}

/// The search's state between steps.
#[derive(Debug, Clone)]
pub struct Search {
    policy: SearchPolicy,
    phase: Phase,
    /// The rate of the step in progress.
    current: f64,
    /// The highest rate that passed, and the lowest that failed (with why).
    pass: Option<f64>,
    fail: Option<(f64, Limit)>,
}

impl Search {
    /// A search and its first step's rate.
    pub fn start(policy: SearchPolicy) -> (Self, f64) {
        let first = policy.start_rate.min(policy.max_rate);
        (
            Self {
                policy,
                phase: Phase::Growing,
                current: first,
                pass: None,
                fail: None,
            },
            first,
        )
    }

    /// The step at the current rate ended: `None` when it met the SLO, else why it failed.
    pub fn step_ended(&mut self, failed: Option<Limit>) -> Next {
        if let Some(limit @ (Limit::Generator | Limit::TargetFailed)) = &failed {
            return Next::Done(Answer {
                rps: None,
                limited_by: LimitedBy::Step(limit.clone()),
            });
        }
        let rate = self.current;
        match (&self.phase, failed) {
            (Phase::Confirming { .. }, None) => self.done(Some(rate)),
            (Phase::Confirming { backoffs }, Some(why)) => {
                let backoffs = backoffs + 1;
                self.fail = Some((rate, why));
                if backoffs > MAX_CONFIRM_BACKOFFS {
                    // The rate never held: no capacity to report.
                    return self.done(None);
                }
                let lower = rate / (1.0 + self.policy.precision);
                if lower < self.policy.start_rate / (1.0 + self.policy.precision) {
                    return self.done(None);
                }
                self.phase = Phase::Confirming { backoffs };
                self.run(lower, true)
            }
            (Phase::Growing, None) => {
                self.pass = Some(rate);
                if rate >= self.policy.max_rate {
                    return self.done_at_max(rate);
                }
                let next = (rate * self.policy.growth).min(self.policy.max_rate);
                self.run(next, false)
            }
            (Phase::Growing | Phase::Bisecting, Some(why)) => {
                self.fail = Some((rate, why));
                match self.pass {
                    None => self.done(None),
                    Some(_) => {
                        self.phase = Phase::Bisecting;
                        self.bisect()
                    }
                }
            }
            (Phase::Bisecting, None) => {
                self.pass = Some(rate);
                self.bisect()
            }
        }
    }

    /// The middle of the bracket, or — once it is narrow enough — the passing rate held.
    fn bisect(&mut self) -> Next {
        let (Some(low), Some((high, _))) = (self.pass, self.fail.as_ref()) else {
            return self.done(self.pass);
        };
        if (high - low) / low <= self.policy.precision {
            if self.policy.confirm {
                self.phase = Phase::Confirming { backoffs: 0 };
                return self.run(low, true);
            }
            return self.done(Some(low));
        }
        let mid = (low + high) / 2.0;
        self.run(mid, false)
    }

    fn run(&mut self, rate: f64, confirming: bool) -> Next {
        self.current = rate;
        Next::Step { rate, confirming }
    }

    fn done_at_max(&self, rate: f64) -> Next {
        Next::Done(Answer {
            rps: Some(rate),
            limited_by: LimitedBy::MaxRate,
        })
    }

    fn done(&self, rps: Option<f64>) -> Next {
        let limited_by = match &self.fail {
            Some((_, why)) => LimitedBy::Step(why.clone()),
            None => LimitedBy::MaxRate,
        };
        Next::Done(Answer { rps, limited_by })
    }

    /// The answer so far, when the search must stop before it is done (its time ran out):
    /// the highest passing rate, bounded by the last failure when there was one.
    pub fn so_far(&self) -> Answer {
        match self.done(self.pass) {
            Next::Done(a) => a,
            Next::Step { .. } => unreachable!("done() always answers"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(confirm: bool) -> SearchPolicy {
        SearchPolicy {
            start_rate: 100.0,
            growth: 2.0,
            precision: 0.02,
            max_rate: 1e6,
            confirm,
        }
    }

    /// Runs a search against a service of capacity `cap` (a step passes iff rate ≤ cap).
    fn against(cap: f64, p: SearchPolicy) -> (Answer, Vec<f64>) {
        let (mut s, mut rate) = Search::start(p);
        let mut tried = vec![rate];
        for _ in 0..200 {
            let verdict = (rate > cap).then(|| Limit::Slo("latency.p99 < 50ms".into()));
            match s.step_ended(verdict) {
                Next::Step { rate: r, .. } => {
                    rate = r;
                    tried.push(r);
                }
                Next::Done(a) => return (a, tried),
            }
        }
        panic!("the search did not end: {tried:?}");
    }

    proptest! {
        /// Whatever the capacity, the answer is within `precision` below it, reached in a
        /// number of steps logarithmic in the range, and every tried rate stays within
        /// [start_rate, max_rate].
        #[test]
        fn the_search_finds_a_capacity_within_its_precision(
            cap in 100.0f64..500_000.0,
            growth in 1.2f64..4.0,
            precision in 0.005f64..0.2,
            confirm in any::<bool>(),
        ) {
            let p = SearchPolicy { growth, precision, confirm, ..policy(false) };
            let (a, tried) = against(cap, p);
            let found = a.rps.unwrap();
            prop_assert!(found <= cap, "{found} above {cap}");
            prop_assert!(found >= cap / (1.0 + precision) / (1.0 + 1e-9), "{found} too far below {cap}");
            prop_assert_eq!(a.limited_by.name(), "slo");
            prop_assert!(tried.len() < 80, "{} steps", tried.len());
            prop_assert!(tried.iter().all(|&r| (100.0..=1e6).contains(&r)));
        }
    }

    #[test]
    fn every_end_says_what_limited_it() {
        // Below the start rate: no capacity, the SLO named.
        let (a, _) = against(50.0, policy(true));
        assert_eq!(a.rps, None);
        assert_eq!(a.limited_by.failed_condition(), Some("latency.p99 < 50ms"));
        // Never failing: max_rate, reached exactly.
        let (a, tried) = against(
            1e9,
            SearchPolicy {
                max_rate: 1000.0,
                ..policy(true)
            },
        );
        assert_eq!((a.rps, a.limited_by.name()), (Some(1000.0), "max_rate"));
        assert_eq!(tried, [100.0, 200.0, 400.0, 800.0, 1000.0]);
        // The generator: the search ends at once, with no capacity.
        let (mut s, _) = Search::start(policy(true));
        assert!(matches!(s.step_ended(None), Next::Step { .. }));
        let Next::Done(a) = s.step_ended(Some(Limit::Generator)) else {
            panic!("the generator ends the search");
        };
        assert_eq!((a.rps, a.limited_by.name()), (None, "generator"));
        // Saturation is named as such.
        let (mut s, _) = Search::start(policy(false));
        s.step_ended(None);
        let next = s.step_ended(Some(Limit::TargetSaturated));
        assert!(
            matches!(next, Next::Step { rate, .. } if rate == 150.0),
            "{next:?}"
        );
        assert_eq!(s.so_far().limited_by.name(), "target_saturated");
        assert_eq!(s.so_far().rps, Some(100.0));
    }

    #[test]
    fn a_confirmation_that_fails_backs_off_and_confirms_again() {
        let (mut s, _) = Search::start(SearchPolicy {
            precision: 0.1,
            ..policy(true)
        });
        // 100 passes; 200, 150, 125, 112.5 and 106.25 fail: the bracket is within 10%.
        s.step_ended(None);
        for _ in 0..4 {
            s.step_ended(Some(Limit::TargetSaturated));
        }
        let Next::Step { rate, confirming } = s.step_ended(Some(Limit::TargetSaturated)) else {
            panic!("a confirmation follows");
        };
        assert!(confirming && rate == 100.0, "{rate}");
        // The hold fails: back off by the precision and hold again.
        let Next::Step { rate, confirming } = s.step_ended(Some(Limit::TargetSaturated)) else {
            panic!("backs off");
        };
        assert!(confirming && (rate - 100.0 / 1.1).abs() < 1e-9, "{rate}");
        assert_eq!(
            s.step_ended(None),
            Next::Done(Answer {
                rps: Some(rate),
                limited_by: LimitedBy::Step(Limit::TargetSaturated),
            })
        );
    }
}
