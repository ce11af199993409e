//! A set of shard reports (`run --shard I/N`), checked before they are merged: one report per
//! index 0..N-1, of one scenario and one start time. `merge --partial` merges an incomplete
//! set anyway, and the merged report names the missing indices.

use std::collections::BTreeMap;

use super::schema::Report;

/// Why shard reports do not make one distributed run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardSetError {
    #[error("{shard} is a shard report ({index}/{count}) but {other} is not: merge the shards of one distributed run, or reports that are not shards")]
    Mixed {
        shard: String,
        index: u32,
        count: u32,
        other: String,
    },
    #[error(
        "{file} is a shard of {theirs}, {first} of {ours}: merge the shards of one distributed run"
    )]
    Counts {
        first: String,
        ours: u32,
        file: String,
        theirs: u32,
    },
    #[error("{file} started at {theirs}, {first} at {ours}: these shards are of different runs (each distributed run has one --start-at)")]
    Starts {
        first: String,
        ours: String,
        file: String,
        theirs: String,
    },
    #[error(
        "shard {index} of {count} is given more than once: {files}; give each shard's report once"
    )]
    Duplicate {
        index: u32,
        count: u32,
        files: String,
    },
    #[error("shards {missing:?} of {count} are missing; give every shard's report, or --partial to merge what there is (the merged report says which are missing)")]
    Missing { missing: Vec<u32>, count: u32 },
}

/// What a complete (or `--partial`) set of shards is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSet {
    pub count: u32,
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
