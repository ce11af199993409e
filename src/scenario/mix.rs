//! `[[calls]]`: a weighted mix of calls in one scenario. Each entry is read as `[call]` is
//! (its own method, types, data, metadata, timeout), plus its `weight`.

use super::call::read_call;
use super::reader::TableReader;
use crate::vocabulary::*;

/// Entries a mix may have: each has its own request headers on every connection.
pub const MAX_CALLS: usize = 64;

/// The mix, when the scenario has `[[calls]]`: `None` when it has not (or it is invalid,
/// every problem reported).
pub(super) fn read_calls(
    root: &TableReader<'_, '_, '_>,
    kind: Option<Kind>,
) -> Option<Vec<WeightedCall>> {
    let ctx = root.ctx();
    let tables = root.tables("calls");
    if root.has("call") {
        ctx.report_at(
            root.loc(),
            "calls",
            "give `[call]` (one method) or `[[calls]]` entries (a weighted mix), not both",
        );
        return None;
    }
    if tables.is_empty() {
        ctx.report_at(
            root.loc(),
            "calls",
            "an empty mix sends nothing; add `[[calls]]` entries with `method` and `weight`",
        );
        return None;
    }
    if let Some(kind) = kind.filter(|k| *k != Kind::Unary) {
        ctx.report_at(
            root.loc(),
            "calls",
            format!(
                "a mix of calls is for kind = \"unary\" (this scenario is \"{}\"); write one `[call]`",
                kind.as_str()
            ),
        );
        return None;
    }
    if tables.len() > MAX_CALLS {
        ctx.report_at(
            tables[MAX_CALLS].loc(),
            "calls",
            format!(
                "{} entries; a mix has at most {MAX_CALLS} (give the rare ones a small weight in fewer entries)",
                tables.len()
            ),
        );
        return None;
    }
    let mut mix = Vec::new();
    let mut valid = true;
    for t in &tables {
        let name = t.string("method").map(|m| m.value);
        let weight = if t.has("weight") {
            t.number("weight", true).map(|w| w.value)
        } else {
            Some(1.0)
        };
        let call = read_call(t).map(|mut c| {
            if c.timeout.is_none() {
                c.timeout = Some(DEFAULT_CALL_TIMEOUT);
            }
            c
        });
        match (name, weight, call) {
            (Some(name), Some(weight), Some(call)) => {
                mix.push((t, WeightedCall { name, weight, call }))
            }
            _ => valid = false,
        }
    }
    if !valid {
        return None;
    }
    // What travels per connection is the first entry's: the others must agree.
    let first = &mix[0].1.call;

    for (t, w) in &mix[1..] {
        if w.call.transport != first.transport {
            ctx.report_at(
                t.loc(),
                &t.key_path("transport"),
                "every entry of a mix goes over one client: write the same `transport` in each",
            );
            valid = false;
        }
        if w.call.max_receive_message_size != first.max_receive_message_size {
            ctx.report_at(
                t.loc(),
                &t.key_path("max_receive_message_size"),
                "a connection takes one largest response: write the same `max_receive_message_size` in each entry",
            );
            valid = false;
        }
    }
    valid.then(|| mix.into_iter().map(|(_, w)| w).collect())
}
