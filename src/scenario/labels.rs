//! `labels`: what the tool cannot see (the target's architecture, a price), recorded in
//! the report; checked by `vocabulary::labels`.

use super::reader::TableReader;
use crate::vocabulary::*;

/// `labels = { KEY = "VALUE" }`: each checked (`labels::problem`), at most `MAX_LABELS`.
pub(super) fn read_labels(
    root: &TableReader<'_, '_, '_>,
) -> std::collections::BTreeMap<String, String> {
    let written = root.string_map("labels").unwrap_or_default();
    if written.len() > labels::MAX_LABELS {
        root.ctx().report_at(
            root.loc(),
            "labels",
            format!(
                "{} labels: a run carries at most {}",
                written.len(),
                labels::MAX_LABELS
            ),
        );
    }
    written
        .into_iter()
        .filter_map(|(k, v)| match labels::problem(&k.value, &v) {
            Some(why) => {
                root.ctx()
                    .report_at(k.loc, &format!("labels.{}", k.value), why);
                None
            }
            None => Some((k.value, v)),
        })
        .collect()
}
