//! A capacity search as a scenario's `[capacity]` writes it: the SLO each step is judged on,
//! the rates and times the search may use. The search itself is `run::capacity_search`.

use std::time::Duration;

use super::conditions::Thresholds;

/// A capacity search, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    /// Conditions each step must meet, on the step's own figures.
    pub slo: Thresholds,
    pub start_rate: f64,
    pub growth: f64,
    pub precision: f64,
    /// Time per step, and the part of it at its start left out of its figures.
    pub step: Duration,
    pub settle: Duration,
    pub max_rate: f64,
    /// The whole search at most.
    pub max_duration: Duration,
    /// Hold the rate found this long before answering (zero: no confirmation).
    pub confirm: Duration,
}
