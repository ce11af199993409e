//! Conditions on report figures — k6-style `"< 250ms"`, `"> 900"`, `"< 1%"` — as
//! `[thresholds]` and a capacity search's `slo` write them: their syntax and how they judge
//! a number. Which metric names exist is checked against the report's real shape in
//! `report::thresholds`.

use super::source::At;

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    const ALL: [(&'static str, Op); 6] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];

    /// Whether `actual` compares to `limit` so.
    pub fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Op::Lt => actual < limit,
            Op::Le => actual <= limit,
            Op::Gt => actual > limit,
            Op::Ge => actual >= limit,
            Op::Eq => (actual - limit).abs() < 1e-9,
            Op::Ne => (actual - limit).abs() >= 1e-9,
        }
    }
}

/// The limit of a condition, as written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// A duration, in microseconds (the unit of every latency in a report).
    Micros(f64),
    /// A plain number (a `%` suffix divides by 100).
    Number(f64),
}

/// One threshold: `"latency.p99" = "< 250ms"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The metric as written (`latency.p99`, `error_rate`, `totals.rps`).
    pub metric: At<String>,
    /// The condition as written (`< 250ms`).
    pub condition: String,
    /// Its comparison.
    pub op: Op,
    /// Its limit.
    pub limit: Limit,
}

#[derive(Debug, Clone, PartialEq, Default)]
/// A scenario's `[thresholds]` (or a capacity search's `slo`).
pub struct Thresholds {
    /// Every threshold, in the order written.
    pub list: Vec<Threshold>,
    /// Check at every interval and stop the run at the first failure.
    pub abort_on_fail: bool,
}

const VALID: &str = "write an operator (<, <=, >, >=, ==, !=) and a number, with a unit for latencies: \"< 250ms\", \"< 0.01\", \"> 900\", \"< 1%\"";

/// Why a threshold's condition was refused: the condition as written, and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditionError {
    #[error("\"{input}\" has no comparison; {VALID}")]
    /// No comparison operator.
    NoComparison {
        /// The condition as written.
        input: String,
    },
    #[error("\"{input}\": `{value}` is not a number; {VALID}")]
    /// The limit is not a number.
    NotANumber {
        /// The condition as written.
        input: String,
        /// The part that is not a number.
        value: String,
    },
    #[error("\"{input}\": the limit must be finite")]
    /// The limit is infinite or not a number.
    NotFinite {
        /// The condition as written.
        input: String,
    },
    #[error("\"{input}\": unknown unit `{unit}`; units: ns, us, ms, s, m, or % for ratios")]
    /// A unit this language does not have.
    UnknownUnit {
        /// The condition as written.
        input: String,
        /// The unit.
        unit: String,
    },
}

/// Parses a condition such as "< 250ms", "> 900" or "< 1%".
pub fn parse_condition(text: &str) -> Result<(Op, Limit), ConditionError> {
    let input = || text.to_string();
    let t = text.trim();
    let (op, rest) = Op::ALL
        .iter()
        .find_map(|(sym, op)| t.strip_prefix(sym).map(|rest| (*op, rest.trim())))
        .ok_or_else(|| ConditionError::NoComparison { input: input() })?;
    let split = rest
        .find(|c: char| {
            !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E')
        })
        .unwrap_or(rest.len());
    let (number, unit) = (&rest[..split], rest[split..].trim());
    let value: f64 = number.parse().map_err(|_| ConditionError::NotANumber {
        input: input(),
        value: if number.is_empty() { rest } else { number }.to_string(),
    })?;
    if !value.is_finite() {
        return Err(ConditionError::NotFinite { input: input() });
    }
    let micros_per = match unit {
        "" => return Ok((op, Limit::Number(value))),
        "%" => return Ok((op, Limit::Number(value / 100.0))),
        "ns" => 1e-3,
        "us" | "µs" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        other => {
            return Err(ConditionError::UnknownUnit {
                input: input(),
                unit: other.to_string(),
            })
        }
    };
    Ok((op, Limit::Micros(value * micros_per)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_with_and_without_units() {
        assert_eq!(
            parse_condition("< 250ms"),
            Ok((Op::Lt, Limit::Micros(250_000.0)))
        );
        assert_eq!(
            parse_condition(">= 900"),
            Ok((Op::Ge, Limit::Number(900.0)))
        );
        assert_eq!(parse_condition("<1%"), Ok((Op::Lt, Limit::Number(0.01))));
        assert_eq!(parse_condition("< 1s"), Ok((Op::Lt, Limit::Micros(1e6))));
        assert_eq!(parse_condition("!= 0"), Ok((Op::Ne, Limit::Number(0.0))));
    }

    #[test]
    fn bad_conditions_say_what_is_valid() {
        for bad in ["<< 5ms", "< 5 parsecs", "5ms", "< fast", ""] {
            let err = parse_condition(bad).unwrap_err().to_string();
            assert!(err.contains(bad.trim()) || bad.is_empty(), "{bad}: {err}");
        }
        assert_eq!(
            parse_condition("< 5 parsecs"),
            Err(ConditionError::UnknownUnit {
                input: "< 5 parsecs".into(),
                unit: "parsecs".into()
            })
        );
        assert!(matches!(
            parse_condition("<< 5ms"),
            Err(ConditionError::NotANumber { .. })
        ));
    }

    #[test]
    fn operators_compare() {
        assert!(Op::Lt.holds(1.0, 2.0) && !Op::Lt.holds(2.0, 2.0));
        assert!(Op::Le.holds(2.0, 2.0) && Op::Ge.holds(2.0, 2.0) && Op::Gt.holds(3.0, 2.0));
        assert!(Op::Eq.holds(2.0, 2.0) && Op::Ne.holds(1.0, 2.0));
    }
}
