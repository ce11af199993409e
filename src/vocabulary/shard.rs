//! A distributed run's share of a scenario: `--shard I/N` (I from 0) and `--start-at TIME`.
//!
//! The scenario's one global schedule is split by interleaving: shard I makes the intended
//! sends k with k mod N == I, so the union of the shards' sends is exactly the single-machine
//! schedule (coordinated-omission correction stays exact) and `{{request_number}}` is k,
//! unique across shards. Counts (closed-model `concurrency` and `requests`) are split with the
//! remainders going to the lowest indices.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// From 0 to `count` − 1.
    pub index: u32,
    /// How many shards the run has.
    pub count: u32,
}

/// Why `--shard` or `--start-at` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("--shard {input}: {reason}; write INDEX/COUNT with INDEX from 0 to COUNT-1, e.g. 0/4 (in a Kubernetes Indexed Job: $(JOB_COMPLETION_INDEX)/4)")]
    /// `--shard` was refused.
    Shard {
        /// As written.
        input: String,
        /// Why.
        reason: &'static str,
    },
    #[error("--start-at {input}: {reason}; write an RFC 3339 time in UTC (2026-11-28T21:30:00Z) or Unix seconds (1795901400)")]
    /// `--start-at` was refused.
    StartAt {
        /// As written.
        input: String,
        /// Why.
        reason: String,
    },
}

impl FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, ShardError> {
        let bad = |reason| ShardError::Shard {
            input: s.to_string(),
            reason,
        };
        let (i, n) = s.split_once('/').ok_or_else(|| bad("no '/'"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| bad("the index is not a whole number"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| bad("the count is not a whole number"))?;
        if count == 0 {
            return Err(bad("the count must be at least 1"));
        }
        if index >= count {
            return Err(bad("the index must be below the count"));
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The one shard of a run that is not distributed.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// The global number of this shard's `n`-th send: `n·count + index`.
    pub fn global(self, n: u64) -> u64 {
        n.saturating_mul(u64::from(self.count))
            .saturating_add(u64::from(self.index))
    }

    /// How many of the global numbers `0..end` are this shard's.
    pub fn owned_below(self, end: u64) -> u64 {
        let (i, n) = (u64::from(self.index), u64::from(self.count));
        if end <= i {
            0
        } else {
            (end - i).div_ceil(n)
        }
    }

    /// This shard's part of a count split over the shards, remainders to the lowest indices.
    pub fn share(self, total: u64) -> u64 {
        let n = u64::from(self.count);
        total / n + u64::from(u64::from(self.index) < total % n)
    }
}

/// `--start-at`: RFC 3339 (with an offset or Z) or Unix seconds (a fraction allowed).
pub fn parse_start_at(s: &str) -> Result<SystemTime, ShardError> {
    let bad = |reason: String| ShardError::StartAt {
        input: s.to_string(),
        reason,
    };
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(bad("not a time".into()));
        }
        let d = Duration::try_from_secs_f64(secs).map_err(|_| bad("too far away".into()))?;
        return UNIX_EPOCH
            .checked_add(d)
            .ok_or_else(|| bad("too far away".into()));
    }
    let parsed = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map_err(|e| bad(format!("not RFC 3339 ({e})")))?;
    let nanos = parsed.unix_timestamp_nanos();
    if nanos < 0 {
        return Err(bad("before 1970".into()));
    }
    let nanos = u64::try_from(nanos).map_err(|_| bad("too far away".into()))?;
    UNIX_EPOCH
        .checked_add(Duration::from_nanos(nanos))
        .ok_or_else(|| bad("too far away".into()))
}

/// A start time already past by more than this is refused: the shards would not start
/// together.
pub const START_AT_TOLERANCE: Duration = Duration::from_secs(1);

/// The furthest ahead a start time may be: a distributed run is started when it is created,
/// and a shard waiting days for a typo'd time would look like a hang.
pub const START_AT_HORIZON: Duration = Duration::from_secs(24 * 3600);

/// Refuses a start time that has passed (by more than [`START_AT_TOLERANCE`]) or is more
/// than [`START_AT_HORIZON`] ahead.
pub fn check_start_at(input: &str, at: SystemTime) -> Result<(), ShardError> {
    if at
        .duration_since(SystemTime::now())
        .is_ok_and(|ahead| ahead > START_AT_HORIZON)
    {
        return Err(ShardError::StartAt {
            input: input.to_string(),
            reason: "more than 24 h ahead".into(),
        });
    }
    match SystemTime::now().duration_since(at) {
        Ok(late) if late > START_AT_TOLERANCE => Err(ShardError::StartAt {
            input: input.to_string(),
            reason: format!(
                "{:.1} s ago; give a time far enough ahead for every shard to prepare",
                late.as_secs_f64()
            ),
        }),
        _ => Ok(()),
    }
}

/// RFC 3339 in UTC with milliseconds, as reports write times.
pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shards_parse_and_bad_ones_say_how_to_write_them() {
        assert_eq!("2/4".parse(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["4/4", "1/0", "x/2", "1", "-1/2", "1/2/3", ""] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.to_string().contains("INDEX/COUNT"), "{bad}: {e}");
        }
    }

    #[test]
    fn start_times_parse_in_both_forms() {
        let a = parse_start_at("2026-11-28T21:30:00Z").unwrap();
        let b = parse_start_at("1795901400").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            parse_start_at("2026-11-28T22:30:00.250+01:00").unwrap(),
            a + Duration::from_millis(250)
        );
        for bad in ["tomorrow", "-5", "1e400", "2026-13-01T00:00:00Z", "NaN"] {
            assert!(parse_start_at(bad).is_err(), "{bad}");
        }
        let far = parse_start_at("2600-01-01T00:00:00Z")
            .unwrap_err()
            .to_string();
        assert!(far.contains("too far away"), "{far}");
        let early = parse_start_at("1969-12-31T23:59:59Z")
            .unwrap_err()
            .to_string();
        assert!(early.contains("before 1970"), "{early}");
        assert!(check_start_at("x", SystemTime::now() - Duration::from_secs(5)).is_err());
        assert!(check_start_at("x", SystemTime::now() + Duration::from_secs(5)).is_ok());
        assert!(check_start_at("x", SystemTime::now() + Duration::from_secs(90_000)).is_err());
    }

    proptest! {
        #[test]
        fn shares_add_up_and_differ_by_at_most_one(total in 0u64..1_000_000, count in 1u32..64) {
            let shares: Vec<u64> = (0..count).map(|index| Shard { index, count }.share(total)).collect();
            prop_assert_eq!(shares.iter().sum::<u64>(), total);
            let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            prop_assert!(hi - lo <= 1);
            prop_assert!(shares.windows(2).all(|w| w[0] >= w[1]), "remainders to the lowest");
        }

        #[test]
        fn every_number_belongs_to_exactly_one_shard(end in 0u64..100_000, count in 1u32..64) {
            let mut total = 0;
            for index in 0..count {
                let s = Shard { index, count };
                let owned = s.owned_below(end);
                prop_assert_eq!(owned, (0..end).filter(|k| k % u64::from(count) == u64::from(index)).count() as u64);
                if owned > 0 {
                    prop_assert!(s.global(owned - 1) < end);
                }
                prop_assert!(s.global(owned) >= end);
                total += owned;
            }
            prop_assert_eq!(total, end);
        }
    }
}
