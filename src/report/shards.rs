//! A set of shard reports (`run --shard I/N`), checked before they are merged: one report per
//! index 0..N-1, of one scenario and one start time. `merge --partial` merges an incomplete
//! set anyway, and the merged report names the missing indices.

use std::collections::BTreeMap;

use super::schema::Report;

/// Why shard reports do not make one distributed run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardSetError {
    #[error("{shard} is a shard report ({index}/{count}) but {other} is not: merge the shards of one distributed run, or reports that are not shards")]
    /// Shard reports and others together.
    Mixed {
        /// The shard report.
        shard: String,
        /// The shard's index.
        index: u32,
        /// How many shards the run has.
        count: u32,
        /// The report that is not a shard.
        other: String,
    },
    #[error(
        "{file} is a shard of {theirs}, {first} of {ours}: merge the shards of one distributed run"
    )]
    /// Shards of runs of different sizes.
    Counts {
        /// The first report.
        first: String,
        /// The first report's value.
        ours: u32,
        /// The report.
        file: String,
        /// This report's value.
        theirs: u32,
    },
    #[error("{file} started at {theirs}, {first} at {ours}: these shards are of different runs (each distributed run has one --start-at)")]
    /// Shards of runs started at different times.
    Starts {
        /// The first report.
        first: String,
        /// The first report's value.
        ours: String,
        /// The report.
        file: String,
        /// This report's value.
        theirs: String,
    },
    #[error(
        "shard {index} of {count} is given more than once: {files}; give each shard's report once"
    )]
    /// One shard given twice.
    Duplicate {
        /// The shard's index.
        index: u32,
        /// How many shards the run has.
        count: u32,
        /// The files.
        files: String,
    },
    #[error("{file} says it is shard {index} of {count}, which does not exist (indices run from 0 to {count} - 1)")]
    /// An index past the count.
    OutOfRange {
        /// The report.
        file: String,
        /// The shard's index.
        index: u32,
        /// How many shards the run has.
        count: u32,
    },
    #[error("{file} is a shard of {count}: more shards than merge takes at once ({max}); a run's shards are merged in one go")]
    /// More shards than a merge takes.
    TooMany {
        /// The report.
        file: String,
        /// How many shards the run has.
        count: u32,
        /// The most a merge takes.
        max: usize,
    },
    #[error("shards {missing:?} of {count} are missing; give every shard's report, or --partial to merge what there is (the merged report says which are missing)")]
    /// Shards are missing (without `--partial`).
    Missing {
        /// The missing indices.
        missing: Vec<u32>,
        /// How many shards the run has.
        count: u32,
    },
}

/// What a complete (or `--partial`) set of shards is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSet {
    /// How many shards the run has.
    pub count: u32,
    /// Those not given.
    pub missing: Vec<u32>,
}

/// `None` when no input is a shard report; otherwise the set, checked.
pub fn check(
    inputs: &[(String, Report)],
    partial: bool,
) -> Result<Option<ShardSet>, ShardSetError> {
    let Some((first_file, first)) = inputs.iter().find(|(_, r)| r.shard.is_some()) else {
        return Ok(None);
    };
    let Some(first_shard) = &first.shard else {
        return Ok(None);
    };
    // Bounded before anything is listed: a report that claims 4 billion shards must not make
    // merge list 4 billion missing ones.
    if first_shard.count as usize > super::schema::MAX_MERGED {
        return Err(ShardSetError::TooMany {
            file: first_file.clone(),
            count: first_shard.count,
            max: super::schema::MAX_MERGED,
        });
    }
    let mut seen: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for (file, r) in inputs {
        let Some(s) = &r.shard else {
            return Err(ShardSetError::Mixed {
                shard: first_file.clone(),
                index: first_shard.index,
                count: first_shard.count,
                other: file.clone(),
            });
        };
        if s.count != first_shard.count {
            return Err(ShardSetError::Counts {
                first: first_file.clone(),
                ours: first_shard.count,
                file: file.clone(),
                theirs: s.count,
            });
        }
        if s.start_at != first_shard.start_at {
            let text = |t: &Option<String>| t.clone().unwrap_or_else(|| "no --start-at".into());
            return Err(ShardSetError::Starts {
                first: first_file.clone(),
                ours: text(&first_shard.start_at),
                file: file.clone(),
                theirs: text(&s.start_at),
            });
        }
        if s.index >= s.count {
            return Err(ShardSetError::OutOfRange {
                file: file.clone(),
                index: s.index,
                count: s.count,
            });
        }
        seen.entry(s.index).or_default().push(file);
    }
    if let Some((index, files)) = seen.iter().find(|(_, f)| f.len() > 1) {
        return Err(ShardSetError::Duplicate {
            index: *index,
            count: first_shard.count,
            files: files.join(", "),
        });
    }
    let missing: Vec<u32> = (0..first_shard.count)
        .filter(|i| !seen.contains_key(i))
        .collect();
    if !missing.is_empty() && !partial {
        return Err(ShardSetError::Missing {
            missing,
            count: first_shard.count,
        });
    }
    Ok(Some(ShardSet {
        count: first_shard.count,
        missing,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::schema::ShardInfo;

    fn report(index: u32, count: u32, start: &str) -> Report {
        let scenario = crate::scenario::parse(&crate::vocabulary::Source::new(
            std::path::Path::new("s.toml"),
            "kind = \"unary\"\n[target]\naddress = \"embedded\"\n[call]\nmethod = \"a.B/C\"\n",
        ))
        .unwrap();
        let mut r: Report = serde_json::from_value(Report::probe(&scenario)).unwrap();
        r.shard = Some(ShardInfo {
            index,
            count,
            start_at: Some(start.into()),
            start_skew_ms: Some(0.0),
        });
        r
    }

    fn set(shards: &[(u32, u32, &str)]) -> Vec<(String, Report)> {
        shards
            .iter()
            .map(|&(i, n, s)| (format!("shard-{i}.json"), report(i, n, s)))
            .collect()
    }

    #[test]
    fn a_set_is_one_whole_run_or_says_what_is_wrong() {
        let t = "2026-11-28T21:00:00Z";
        let whole = set(&[(0, 3, t), (1, 3, t), (2, 3, t)]);
        assert_eq!(
            check(&whole, false),
            Ok(Some(ShardSet {
                count: 3,
                missing: vec![]
            }))
        );
        let gap = set(&[(0, 3, t), (2, 3, t)]);
        assert!(
            matches!(check(&gap, false), Err(ShardSetError::Missing { ref missing, .. }) if *missing == vec![1])
        );
        assert_eq!(check(&gap, true).unwrap().unwrap().missing, vec![1]);
        let twice = set(&[(0, 2, t), (0, 2, t), (1, 2, t)]);
        assert!(matches!(
            check(&twice, false),
            Err(ShardSetError::Duplicate { index: 0, .. })
        ));
        let counts = set(&[(0, 2, t), (1, 3, t)]);
        assert!(matches!(
            check(&counts, false),
            Err(ShardSetError::Counts { .. })
        ));
        let starts = set(&[(0, 2, t), (1, 2, "2026-11-28T21:00:01Z")]);
        assert!(matches!(
            check(&starts, false),
            Err(ShardSetError::Starts { .. })
        ));
        let mut mixed = set(&[(0, 2, t), (1, 2, t)]);
        mixed[1].1.shard = None;
        assert!(matches!(
            check(&mixed, false),
            Err(ShardSetError::Mixed { .. })
        ));
        mixed[0].1.shard = None;
        assert_eq!(
            check(&mixed, false),
            Ok(None),
            "no shards: an ordinary merge"
        );
    }

    #[test]
    fn a_report_claiming_billions_of_shards_is_refused_without_listing_them() {
        let t = "2026-11-28T21:00:00Z";
        let huge = set(&[(0, u32::MAX, t), (1, u32::MAX, t)]);
        assert!(matches!(
            check(&huge, true),
            Err(ShardSetError::TooMany { .. })
        ));
        let beyond = set(&[(0, 2, t), (1, 2, t), (7, 2, t)]);
        assert!(matches!(
            check(&beyond, false),
            Err(ShardSetError::OutOfRange { index: 7, .. })
        ));
    }
}
