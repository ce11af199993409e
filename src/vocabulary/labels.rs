//! Run labels: what the tool cannot see, recorded by a person in the scenario (`labels = {
//! target_arch = "arm64" }`) or on the command line (`run --label KEY=VALUE`), kept in the
//! report and grouped by in `compare --by label:KEY`. Names follow Prometheus' label names
//! so they can become series labels as they are.

use std::collections::BTreeMap;

/// Labels a run carries at most.
pub const MAX_LABELS: usize = 32;
/// Characters a label's value has at most.
pub const MAX_VALUE_CHARS: usize = 256;

/// What is wrong with one label, in words that say what to write; `None` when it is fine.
pub fn problem(name: &str, value: &str) -> Option<String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || name.len() > 64 {
        return Some(format!(
            "\"{}\" is not a label name: a letter or `_`, then letters, digits and `_` (at most 64), e.g. target_arch",
            name.chars().take(80).collect::<String>()
        ));
    }
    if name.starts_with("__") {
        return Some(format!(
            "\"{name}\": names starting with `__` are reserved (as in Prometheus)"
        ));
    }
    if value.chars().count() > MAX_VALUE_CHARS || value.chars().any(char::is_control) {
        return Some(format!(
            "the value of \"{name}\" must be at most {MAX_VALUE_CHARS} characters, without control characters"
        ));
    }
    None
}

/// `--label KEY=VALUE` arguments over the scenario's labels (the command line wins); `Err`
/// names the argument and what to write.
pub fn with_arguments(
    mut labels: BTreeMap<String, String>,
    arguments: &[String],
) -> Result<BTreeMap<String, String>, String> {
    for a in arguments {
        let Some((k, v)) = a.split_once('=') else {
            return Err(format!(
                "--label {a}: write KEY=VALUE, e.g. --label target_arch=arm64"
            ));
        };
        if let Some(why) = problem(k, v) {
            return Err(format!("--label {a}: {why}"));
        }
        labels.insert(k.to_string(), v.to_string());
    }
    if labels.len() > MAX_LABELS {
        return Err(format!(
            "{} labels: a run carries at most {MAX_LABELS}",
            labels.len()
        ));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_checked_and_arguments_win() {
        assert_eq!(problem("target_arch", "arm64"), None);
        assert_eq!(problem("_x1", ""), None);
        for bad in ["1x", "a-b", "", "__reserved", "é"] {
            assert!(problem(bad, "v").is_some(), "{bad}");
        }
        assert!(problem("k", &"v".repeat(300)).is_some());
        assert!(problem("k", "a\nb").is_some());
        let base = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let got = with_arguments(base.clone(), &["a=2".into(), "b=x=y".into()]).unwrap();
        assert_eq!(got["a"], "2");
        assert_eq!(got["b"], "x=y");
        assert!(with_arguments(base.clone(), &["nope".into()])
            .unwrap_err()
            .contains("KEY=VALUE"));
        let many: Vec<String> = (0..40).map(|i| format!("k{i}=v")).collect();
        assert!(with_arguments(base, &many)
            .unwrap_err()
            .contains("at most 32"));
    }
}
