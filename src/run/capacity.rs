//! A capacity search run step by step inside one run (one prepare, connections kept): as
//! each one-second interval closes, the step in progress gathers it (after its settle
//! time); when a step's last interval closes, its own figures are judged on the SLO, the
//! search (`capacity_search`) says what comes next, and the live schedule's rate is set to
//! it — or to 0 when the search is done, which ends the run.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::capacity_search::{Answer, Limit, LimitedBy, Next, Search, SearchPolicy};
use crate::load::live_rate::LiveRate;
use crate::record::histogram::{decode, new_histogram};
use crate::record::{Aggregate, IntervalData, LatencySummary};
use crate::report::schema::{CapacityReport, CapacityStep};
use crate::report::thresholds::judge;
use crate::report::Report;
use crate::vocabulary::capacity::Capacity;
use crate::vocabulary::{Model, Scenario};

/// A step whose requests were sent late beyond this share — while the generator's process was
/// busy, or while the service answered as fast as at the first step (the generator's own
/// concurrency held the sends back) — measured the generator.
const GENERATOR_LATE_SHARE: f64 = 0.05;
/// "As fast as at the first step": the step's uncorrected p99 at most this many times the
/// first passing step's, plus a millisecond.
const SERVICE_UNCHANGED: f64 = 2.0;
/// Busy: CPU time per second of wall time, per generator thread.
const GENERATOR_BUSY: f64 = 0.9;
/// A shortfall of the achieved rate against the offered one beyond this share of the
/// requests expected in the judged part is a saturated target (its queue grew)…
const SATURATED_SHORTFALL: f64 = 0.02;
/// …when at least this many requests short; with fewer expected, a shortfall beyond this
/// share of them (one late completion at a window's edge is not a queue).
const SATURATED_MIN_REQUESTS: f64 = 10.0;
const SATURATED_SMALL_SHORTFALL: f64 = 0.05;
/// A step short by at most this many times the tolerance fell behind by little: a pause of
/// the machine (100 ms at 100/s is 10 requests) looks the same. It is run again once at the
/// same rate and the repeat counts: a saturated service falls behind both times.
const MARGINAL_SHORTFALL: f64 = 3.0;
/// A step that fell behind or failed leaves calls queued at the service (up to the
/// concurrency): the next step starts after a pause long enough for them to finish, so
/// each step starts from an empty queue, not from the last one's backlog.
const MAX_DRAIN_SECS: u64 = 10;

/// The step in progress: its rate and which intervals it judges.
#[derive(Debug)]
struct Step {
    rate: f64,
    /// Intervals (seconds from the measured start) judged: [first, end).
    first: u64,
    end: u64,
    data: IntervalData,
    /// Process CPU seconds when the judged part began, and when.
    cpu_at_first: Option<(f64, Duration)>,
    /// A confirmation (its length is `confirm`, not `step`).
    confirming: bool,
    /// The repeat of a step that fell behind by little (it is not repeated again).
    repeat: bool,
}

/// The search's state, shared by the interval check (which runs it) and the run (which
/// reads the result).
#[derive(Debug)]
pub struct CapacityRun {
    config: Capacity,
    scenario: Arc<Scenario>,
    schema_source: String,
    live: Arc<LiveRate>,
    /// The warm-up: the live schedule's times count from the run's start.
    warmup: Duration,
    threads: usize,
    search: Search,
    step: Option<Step>,
    steps: Vec<CapacityStep>,
    /// Each recorded step's judged intervals (seconds from the measured start), for the
    /// server's CPU in them.
    windows: Vec<(u64, u64)>,
    answer: Option<Answer>,
    /// The first passing step's uncorrected p99: how fast the service answers unloaded.
    unloaded_p99_us: Option<u64>,
}

impl CapacityRun {
    /// A search run by `config` on the run of `scenario`, setting the rate on `live`.
    pub fn new(
        config: Capacity,
        scenario: Arc<Scenario>,
        schema_source: String,
        live: Arc<LiveRate>,
        threads: usize,
    ) -> Arc<Mutex<Self>> {
        let (search, rate) = Search::start(SearchPolicy {
            start_rate: config.start_rate,
            growth: config.growth,
            precision: config.precision,
            max_rate: config.max_rate,
            confirm: !config.confirm.is_zero(),
        });
        let warmup = scenario.load.warmup;
        let step = Some(Step::at(rate, 0, config.settle, config.step, false));
        Arc::new(Mutex::new(Self {
            config,
            scenario,
            schema_source,
            live,
            warmup,
            threads: threads.max(1),
            search,
            step,
            steps: Vec::new(),
            windows: Vec::new(),
            answer: None,
            unloaded_p99_us: None,
        }))
    }

    /// The intervals that just closed (`aggregate.intervals` and their histograms),
    /// `elapsed` into the measured part.
    pub fn on_intervals(&mut self, aggregate: &Aggregate, elapsed: Duration) {
        for (summary, histograms) in aggregate.intervals.iter().zip(&aggregate.histograms) {
            let Some(step) = self.step.as_mut() else {
                return;
            };
            let t = summary.t_seconds;
            if t < step.first || t >= step.end {
                continue;
            }
            if step.cpu_at_first.is_none() {
                step.cpu_at_first = Some((crate::host::process::cpu_seconds(), elapsed));
            }
            let add = |h: &mut hdrhistogram::Histogram<u64>, text: &str| {
                if let Ok(d) = decode(text) {
                    let _ = h.add(&d);
                }
            };
            add(&mut step.data.corrected, &histograms.corrected);
            add(&mut step.data.uncorrected, &histograms.uncorrected);
            step.data.sent_late += summary.sent_late;
            for (name, n) in &summary.status_codes {
                if let Some(code) = crate::grpc::status::CODE_NAMES
                    .iter()
                    .position(|c| c == name)
                {
                    step.data.status[code] += n;
                }
            }
            if t + 1 == step.end {
                self.step_ended(elapsed);
            }
        }
    }

    /// The run ended before the search did: Ctrl-C (`interrupted`), or `max_duration` —
    /// then the answer is the search's so far.
    pub fn run_ended(&mut self, interrupted: bool) {
        if self.answer.is_some() {
            return;
        }
        self.answer = Some(if interrupted {
            Answer {
                rps: None,
                limited_by: LimitedBy::Interrupted,
            }
        } else {
            Answer {
                limited_by: LimitedBy::MaxDuration,
                ..self.search.so_far()
            }
        });
    }

    /// The search's answer, once it has one.
    pub fn answer(&self) -> Option<&Answer> {
        self.answer.as_ref()
    }

    fn step_ended(&mut self, elapsed: Duration) {
        let Some(step) = self.step.take() else {
            return;
        };
        let judged_secs = (step.end - step.first) as f64;
        let requests = step.data.requests();
        let ok = step.data.ok();
        let achieved = requests as f64 / judged_secs;
        let late_share = if requests > 0 {
            step.data.sent_late as f64 / requests as f64
        } else {
            0.0
        };
        let busy = step.cpu_at_first.map_or(0.0, |(cpu, at)| {
            let wall = elapsed.saturating_sub(at).as_secs_f64();
            if wall > 0.0 {
                (crate::host::process::cpu_seconds() - cpu) / wall / self.threads as f64
            } else {
                0.0
            }
        });
        let aggregate = Aggregate {
            totals: step.data.clone(),
            intervals: Vec::new(),
            histograms: Vec::new(),
        };
        let figures = Report::so_far(
            &self.scenario,
            &self.schema_source,
            &aggregate,
            Duration::from_secs_f64(judged_secs),
            None,
            &[],
        );
        let verdicts = judge(&self.config.slo, &figures, Model::Open);
        let failed_condition = verdicts
            .iter()
            .find(|v| !v.passed)
            .map(|v| format!("{} {}", v.metric, v.condition));
        let served_p99 = LatencySummary::of(&step.data.uncorrected).p99_us;
        let service_unchanged = self.unloaded_p99_us.is_some_and(|unloaded| {
            served_p99 as f64 <= unloaded as f64 * SERVICE_UNCHANGED + 1000.0
        });
        let limit =
            if late_share > GENERATOR_LATE_SHARE && (busy >= GENERATOR_BUSY || service_unchanged) {
                Some(Limit::Generator)
            } else if requests > 0 && ok == 0 {
                Some(Limit::TargetFailed)
            } else if let Some(c) = failed_condition {
                Some(Limit::Slo(c))
            } else if shortfall(step.rate, achieved, judged_secs) > 1.0 {
                Some(Limit::TargetSaturated)
            } else {
                None
            };
        let repeat = matches!(limit, Some(Limit::TargetSaturated))
            && !step.repeat
            && shortfall(step.rate, achieved, judged_secs) <= MARGINAL_SHORTFALL;
        if limit.is_none() && self.unloaded_p99_us.is_none() {
            self.unloaded_p99_us = Some(served_p99);
        }
        // A step that fell behind (or failed) leaves a queue behind it.
        let drain = if limit.is_some() || achieved < step.rate * (1.0 - SATURATED_SHORTFALL) {
            self.drain_secs(achieved)
        } else {
            0
        };
        let corrected = LatencySummary::of(&step.data.corrected);
        self.steps.push(CapacityStep {
            rate: round3(step.rate),
            achieved_rps: round3(achieved),
            p50_us: corrected.p50_us,
            p99_us: corrected.p99_us,
            error_ratio: if requests > 0 {
                (requests - ok) as f64 / requests as f64
            } else {
                0.0
            },
            late_ratio: late_share,
            passed: limit.is_none(),
            failed: limit.as_ref().map(Limit::describe),
            repeated: repeat,
            server_cores: None,
        });
        self.windows.push((step.first, step.end));
        if repeat {
            let rate = step.rate;
            let start = elapsed.as_secs_f64().ceil() as u64 + drain;
            self.live.pause(
                self.warmup + elapsed,
                self.warmup + Duration::from_secs(start),
                rate,
            );
            self.step = Some(Step {
                repeat: true,
                ..self.step_at(rate, start, step.confirming)
            });
            return;
        }
        match self.search.step_ended(limit) {
            Next::Step { rate, confirming } => {
                // The next step starts at the next whole second: the load changes now, and
                // the part of this second at the old rate is in the settle time. After a
                // pause to drain, it starts at the whole second the pause ends.
                let start = elapsed.as_secs_f64().ceil() as u64 + drain;
                if drain > 0 {
                    let resume = self.warmup + Duration::from_secs(start);
                    self.live.pause(self.warmup + elapsed, resume, rate);
                } else {
                    self.live.set(self.warmup + elapsed, rate);
                }
                self.step = Some(self.step_at(rate, start, confirming));
            }
            Next::Done(answer) => self.finish(answer, elapsed),
        }
    }

    /// A step at `rate` from `start` (whole seconds from the measured start), as long as a
    /// step or a confirmation.
    fn step_at(&self, rate: f64, start: u64, confirming: bool) -> Step {
        let length = if confirming {
            self.config.confirm
        } else {
            self.config.step
        };
        Step::at(rate, start, self.config.settle, length, confirming)
    }

    /// Whole seconds for the calls a step left queued (at most the concurrency) to finish
    /// at the rate the service achieved, or to time out: at least one, at most
    /// `MAX_DRAIN_SECS`.
    fn drain_secs(&self, achieved: f64) -> u64 {
        let queued = f64::from(self.scenario.load.concurrency);
        let to_finish = queued / achieved.max(1.0);
        let timeout = self
            .scenario
            .call
            .as_ref()
            .and_then(|c| c.timeout)
            .map_or(f64::INFINITY, |t| t.as_secs_f64());
        (to_finish.min(timeout).ceil() as u64).clamp(1, MAX_DRAIN_SECS)
    }

    fn finish(&mut self, answer: Answer, elapsed: Duration) {
        self.answer = Some(answer);
        self.step = None;
        // Rate 0: nothing more is due, the workers finish, the run ends.
        self.live.set(self.warmup + elapsed, 0.0);
    }

    /// Each step's judged part on the wall clock, the measured part having begun at `origin`.
    pub fn windows(
        &self,
        origin: std::time::SystemTime,
    ) -> Vec<(std::time::SystemTime, std::time::SystemTime)> {
        self.windows
            .iter()
            .map(|&(first, end)| {
                (
                    origin + Duration::from_secs(first),
                    origin + Duration::from_secs(end),
                )
            })
            .collect()
    }

    /// The report's `capacity`: the answer (or, when the run ended before the search did,
    /// what it had: `interrupted`), and every step, with the cores the server used in each
    /// when it was watched (`server_cores`, in the order of `windows`), and per core the
    /// server may use (`usable_cores`: its affinity capped by its cgroup quota).
    pub fn report(
        &self,
        server_cores: &[Option<f64>],
        usable_cores: Option<f64>,
    ) -> CapacityReport {
        let answer = self.answer.clone().unwrap_or(Answer {
            rps: None,
            limited_by: LimitedBy::Interrupted,
        });
        let mut steps = self.steps.clone();
        for (step, cores) in steps.iter_mut().zip(server_cores) {
            step.server_cores = *cores;
        }
        let per_server_core = answer.rps.and_then(|rps| {
            passed_at(&steps, rps)
                .and_then(|s| s.server_cores)
                .filter(|&c| c > 0.0)
                .map(|c| round3(rps / c))
        });
        let per_usable_core = answer
            .rps
            .zip(usable_cores.filter(|&c| c > 0.0))
            .map(|(rps, cores)| round3(rps / cores));
        CapacityReport {
            per_server_core,
            per_usable_core,
            rps: answer.rps.map(round3),
            limited_by: answer.limited_by.name().to_string(),
            failed_condition: answer.limited_by.failed_condition().map(str::to_string),
            slo: self
                .config
                .slo
                .list
                .iter()
                .map(|t| format!("{} {}", t.metric.value, t.condition))
                .collect(),
            precision: self.config.precision,
            steps,
        }
    }
}

impl Step {
    fn at(rate: f64, start: u64, settle: Duration, length: Duration, confirming: bool) -> Self {
        Self {
            rate,
            first: start + settle.as_secs(),
            end: start + length.as_secs().max(settle.as_secs() + 1),
            data: IntervalData {
                corrected: new_histogram(),
                ..IntervalData::default()
            },
            cpu_at_first: None,
            confirming,
            repeat: false,
        }
    }
}

/// How far a step at `rate` that achieved `achieved` over `secs` judged seconds fell behind,
/// in multiples of noise (above 1: saturated). Noise is 2% of the requests expected and at
/// least 10 of them, or, with fewer than 200 expected, 5% of them.
fn shortfall(rate: f64, achieved: f64, secs: f64) -> f64 {
    let expected = rate * secs;
    let short = (rate - achieved) * secs;
    let tolerance = (SATURATED_SHORTFALL * expected)
        .max((SATURATED_SMALL_SHORTFALL * expected).min(SATURATED_MIN_REQUESTS));
    if tolerance > 0.0 {
        short / tolerance
    } else {
        0.0
    }
}

#[cfg(test)]
fn saturated(rate: f64, achieved: f64, secs: f64) -> bool {
    shortfall(rate, achieved, secs) > 1.0
}

/// The last passing step at the found rate `rps` (steps hold their rates rounded as the
/// report gives them; a bisection's rates have more digits).
fn passed_at(steps: &[CapacityStep], rps: f64) -> Option<&CapacityStep> {
    let rps = round3(rps);
    steps.iter().rev().find(|s| s.passed && s.rate == rps)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The shared search, locked (a poisoned lock still holds the steps done).
pub fn lock(run: &Mutex<CapacityRun>) -> std::sync::MutexGuard<'_, CapacityRun> {
    run.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::IntervalSummary;

    #[test]
    fn a_shortfall_is_saturation_beyond_noise_only() {
        // grpcio near its capacity: 393.8/s offered, 380.7/s achieved over 3 s (39 short,
        // the queue growing) — but 387.5 offered and 387.0 achieved is noise.
        assert!(saturated(393.8, 380.7, 3.0));
        assert!(!saturated(387.5, 387.0, 3.0));
        // 20/s over one second: one call completing after the window's edge is not a queue.
        assert!(!saturated(20.0, 19.0, 1.0));
        assert!(saturated(20.0, 18.0, 1.0));
        // Large rates: 2% of what was expected.
        assert!(!saturated(45_000.0, 44_200.0, 3.0));
        assert!(saturated(45_000.0, 44_000.0, 3.0));
    }

    /// A search at 100/s (steps of 3 s judged after 1 s), fed whole intervals.
    fn search_at_100() -> (Arc<Mutex<CapacityRun>>, Arc<LiveRate>) {
        let scenario = crate::scenario::parse(&crate::vocabulary::Source::new(
            std::path::Path::new("s.toml"),
            "kind = \"unary\"\n[target]\naddress = \"embedded\"\n[call]\nmethod = \"a.B/C\"\n\
             [load]\nconcurrency = 20\n[capacity]\nslo = [\"error_rate < 1%\"]\n\
             start_rate = 100\nstep = \"3s\"\nsettle = \"1s\"\nconfirm = \"0s\"\n",
        ))
        .unwrap();
        let config = scenario.capacity.clone().unwrap();
        let live = Arc::new(LiveRate::new(config.start_rate, Duration::from_secs(60)));
        let run = CapacityRun::new(config, Arc::new(scenario), String::new(), live.clone(), 1);
        (run, live)
    }

    /// Second `t` of the measured part: `ok` calls of 1 ms completed.
    fn second(run: &Mutex<CapacityRun>, t: u64, ok: u64) {
        let mut h = new_histogram();
        h.record_n(1000, ok).unwrap();
        let hdr = crate::record::histogram::encode(&h);
        let aggregate = Aggregate {
            totals: IntervalData::default(),
            intervals: vec![IntervalSummary {
                status_codes: [("OK".to_string(), ok)].into(),
                ..IntervalSummary::empty(t)
            }],
            histograms: vec![crate::record::aggregator::IntervalHistograms {
                t_seconds: t,
                corrected: hdr.clone(),
                uncorrected: hdr,
                corrected_max_us: 1000,
                uncorrected_max_us: 1000,
            }],
        };
        lock(run).on_intervals(&aggregate, Duration::from_secs(t + 1));
    }

    #[test]
    fn a_step_short_by_little_is_run_again_and_the_repeat_counts() {
        let (run, live) = search_at_100();
        // 11 short of 200 (noise is 10): a pause of the machine looks the same.
        second(&run, 0, 100);
        second(&run, 1, 94);
        second(&run, 2, 95);
        let again = lock(&run)
            .step
            .as_ref()
            .map(|s| (s.rate, s.repeat, s.first));
        // The same rate, after a second's pause for the calls left queued to finish.
        assert_eq!(again, Some((100.0, true, 5)));
        assert_eq!(live.rate(), 100.0);
        for t in 3..7 {
            second(&run, t, 100);
        }
        let r = lock(&run);
        let steps: Vec<(f64, bool, bool)> = r
            .steps
            .iter()
            .map(|s| (s.rate, s.passed, s.repeated))
            .collect();
        assert_eq!(steps, vec![(100.0, false, true), (100.0, true, false)]);
        // The repeat passed: the search grows.
        assert_eq!(r.step.as_ref().map(|s| s.rate), Some(200.0));
    }

    #[test]
    fn a_step_short_by_much_or_twice_counts_at_once() {
        // Half the calls: a saturated service, not a pause.
        let (run, _) = search_at_100();
        for (t, ok) in [(0, 100), (1, 50), (2, 50)] {
            second(&run, t, ok);
        }
        let r = lock(&run);
        assert!(!r.steps[0].repeated);
        assert_ne!(r.step.as_ref().map(|s| s.rate), Some(100.0));
        drop(r);
        // Short by little twice: the repeat counts, and it failed.
        let (run, _) = search_at_100();
        for (t, ok) in [(0, 100), (1, 94), (2, 95), (3, 0), (4, 0), (5, 94), (6, 95)] {
            second(&run, t, ok);
        }
        let r = lock(&run);
        let steps: Vec<(bool, bool)> = r.steps.iter().map(|s| (s.passed, s.repeated)).collect();
        assert_eq!(steps, vec![(false, true), (false, false)]);
        assert!(r.step.as_ref().is_none_or(|s| s.rate < 100.0));
    }

    #[test]
    fn the_step_at_a_bisected_rate_is_found_though_the_report_rounds_it() {
        let step = |rate: f64, passed: bool, cores: f64| CapacityStep {
            rate: round3(rate),
            achieved_rps: rate,
            p50_us: 1,
            p99_us: 2,
            error_ratio: 0.0,
            late_ratio: 0.0,
            passed,
            failed: None,
            repeated: false,
            server_cores: Some(cores),
        };
        // 32000 passed, 64000 failed, then bisection: 48000 failed, 40000 passed, …
        let found = 38_447.265_625;
        let steps = [
            step(32_000.0, true, 0.8),
            step(found, false, 1.0),
            step(found, true, 0.97),
            step(40_000.0, false, 1.0),
        ];
        assert_eq!(
            passed_at(&steps, found).and_then(|s| s.server_cores),
            Some(0.97)
        );
        assert!(passed_at(&steps, 39_000.0).is_none());
    }
}
