//! `[thresholds]`: k6-style pass/fail conditions on report metrics, checked at the end of a
//! run (and every interval with `abort_on_fail = true`), read here into the vocabulary's
//! conditions (`vocabulary::conditions`).

use super::reader::TableReader;
use crate::vocabulary::conditions::{parse_condition, Threshold, Thresholds};
use crate::vocabulary::source::At;

/// Reads the `[thresholds]` table: metric = condition, plus `abort_on_fail`.
pub fn read(t: &TableReader<'_, '_, '_>) -> Thresholds {
    let abort_on_fail = t.boolean("abort_on_fail").unwrap_or(false);
    let mut list = Vec::new();
    for (key, loc) in t.keys_except(&["abort_on_fail"]) {
        let Some(cond) = t.string_dynamic(&key) else {
            continue;
        };
        match parse_condition(&cond.value) {
            Ok((op, limit)) => list.push(Threshold {
                metric: At { value: key, loc },
                condition: cond.value,
                op,
                limit,
            }),
            Err(why) => t
                .ctx()
                .report_at(cond.loc, &t.key_path(&key), why.to_string()),
        }
    }
    Thresholds {
        list,
        abort_on_fail,
    }
}
