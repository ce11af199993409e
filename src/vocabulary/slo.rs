//! A target's service level objectives (`[[targets]] slo = { … }`): the share of probes that
//! must pass, and optionally the share that must be faster than a latency, over a window.

use std::time::Duration;

/// The shortest SLO window: the longest alert window (3 days, the slow ticket's) must fit in it.
pub const MIN_WINDOW: Duration = Duration::from_secs(3 * 86_400);
/// The longest SLO window taken (a year).
pub const MAX_WINDOW: Duration = Duration::from_secs(365 * 86_400);
/// The longest latency threshold taken (the probe latency histogram's last bucket is 5 s;
/// a threshold past a probe's timeout measures nothing).
pub const MAX_LATENCY: Duration = Duration::from_secs(60);

/// One target's objectives.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// `objective`: the share of probes that must pass (0.999 for "99.9%").
    pub objective: f64,
    /// `window`: the period the objective is met over (the error budget's period).
    pub window: Duration,
    /// `latency`: probes must also be faster than this, for `latency_objective` of them.
    pub latency: Option<Duration>,
    /// `latency_objective`: the share of probes faster than `latency` (default: `objective`).
    pub latency_objective: f64,
}

/// Which objective a rule is about: the `slo` label of the generated series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sli {
    /// The share of probes that passed.
    Availability,
    /// The share of probes faster than the latency threshold.
    Latency,
}

impl Sli {
    /// The `slo` label's value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Availability => "availability",
            Self::Latency => "latency",
        }
    }
}

impl Slo {
    /// Each objective with its target share: availability always, latency when set.
    pub fn objectives(&self) -> Vec<(Sli, f64)> {
        let mut out = vec![(Sli::Availability, self.objective)];
        if self.latency.is_some() {
            out.push((Sli::Latency, self.latency_objective));
        }
        out
    }
}

/// Reads an objective: `"99.9%"` (or a fraction, `0.999`), strictly between 0 and 100%: an
/// objective of 100% leaves no error budget to burn.
pub fn parse_objective(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    };
    // Rounded to 12 decimals: "99.9%" is 0.999, not 99.9 / 100 = 0.9990000000000001.
    let value = value.map(|v| (v * 1e12).round() / 1e12);
    match value {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1.0 => Ok(v),
        Ok(_) => Err(format!(
            "\"{text}\" is not between 0% and 100% (exclusive): an objective of 100% has no error budget; write e.g. \"99.9%\""
        )),
        Err(_) => Err(format!("\"{text}\" is not a share; write e.g. \"99.9%\"")),
    }
}

/// The objective as people write it: `99.9%`.
pub fn percent(objective: f64) -> String {
    let p = objective * 100.0;
    // Up to 4 decimals, without trailing zeros: 99.9, 99.95, 99.
    let text = format!("{p:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objectives_read_as_shares() {
        assert_eq!(parse_objective("99.9%"), Ok(0.999));
        assert_eq!(parse_objective(" 95 % "), Ok(0.95));
        assert_eq!(parse_objective("0.99"), Ok(0.99));
        for bad in ["100%", "0%", "1", "150%", "-1%", "NaN", "inf%", "x", ""] {
            assert!(parse_objective(bad).is_err(), "{bad}");
        }
        assert_eq!(percent(0.999), "99.9%");
        assert_eq!(percent(0.9995), "99.95%");
        assert_eq!(percent(0.99), "99%");
    }
}
