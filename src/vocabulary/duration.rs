//! Durations written as strings: "250ms", "10s", "1m30s", "1.5h".

use std::time::Duration;

/// The longest duration anything accepts: a run, a stage, a timeout, an interval. Far above
/// any real one, and small enough that adding it (or a whole run's worth of them) to an
/// instant cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// How [`MAX_DURATION`] is written in messages.
pub const MAX_DURATION_TEXT: &str = "8760h (365 days)";

/// Why a string is not a duration (the reader adds the file, line, key and value).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    /// Nothing written.
    Empty,
    #[error("expected a number at `{0}`")]
    /// No number before the unit.
    NoNumber(String),
    #[error("`{0}` is not a number")]
    /// The number does not parse.
    NotANumber(String),
    #[error("`{0}` has no unit")]
    /// A number without a unit.
    NoUnit(f64),
    #[error("unknown unit `{0}`")]
    /// A unit this parser does not know.
    UnknownUnit(String),
    #[error("longer than the maximum, {MAX_DURATION_TEXT}")]
    /// Longer than `MAX_DURATION`.
    TooLong,
}

/// Parses a duration such as "250ms", "10s", "1m", "1m30s" or "1.5s".
/// Units: ns, us (or µs), ms, s, m, h. A number needs a unit, so "10" is rejected
/// rather than guessed.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(DurationError::NoNumber(rest.to_string()));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| DurationError::NotANumber(rest[..num_len].to_string()))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let seconds_per_unit = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            // Days, as Prometheus writes them: SLO windows ("30d").
            "d" => 86_400.0,
            "" => return Err(DurationError::NoUnit(number)),
            other => return Err(DurationError::UnknownUnit(other.to_string())),
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    match Duration::try_from_secs_f64(total) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(DurationError::TooLong),
    }
}

/// Writes a duration back in the form it is read ("250ms", "10s").
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        "0s".into()
    } else if ns % 1_000_000_000 == 0 {
        format!("{}s", ns / 1_000_000_000)
    } else if ns % 1_000_000 == 0 {
        format!("{}ms", ns / 1_000_000)
    } else if ns % 1_000 == 0 {
        format!("{}us", ns / 1_000)
    } else {
        format!("{ns}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        for bad in [
            "",
            "10",
            "ms",
            "10 parsecs",
            "1.2.3s",
            "-5s",
            "5x",
            "3000000000000000h",
            "8761h",
            "1e400s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn the_maximum_is_accepted_and_named() {
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        let why = parse_duration("3000000000000000h").unwrap_err();
        assert_eq!(why, DurationError::TooLong);
        assert!(why.to_string().contains(MAX_DURATION_TEXT), "{why}");
    }

    #[test]
    fn formats_round_trip() {
        for text in ["250ms", "10s", "0s", "15us"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
