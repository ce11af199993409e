//! A capacity search as a scenario's `[capacity]` writes it: the SLO each step is judged on,
//! the rates and times the search may use. The search itself is `run::capacity_search`.

use std::time::Duration;

use super::conditions::Thresholds;

/// A capacity search, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    /// Conditions each step must meet, on the step's own figures.
    pub slo: Thresholds,
    /// The first step's rate.
    pub start_rate: f64,
    /// > 1: the factor between growing steps.
    pub growth: f64,
    /// Relative: bisection stops when (fail − pass) / pass ≤ precision.
    pub precision: f64,
    /// Time per step, and the part of it at its start left out of its figures.
    pub step: Duration,
    /// The part of each step at its start left out of its figures.
    pub settle: Duration,
    /// The highest rate a step may offer.
    pub max_rate: f64,
    /// The whole search at most.
    pub max_duration: Duration,
    /// Hold the rate found this long before answering (zero: no confirmation).
    pub confirm: Duration,
}
