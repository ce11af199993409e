//! Reads a parsed TOML document key by key, collecting every problem instead of stopping
//! at the first (serde's `deny_unknown_fields` stops at the first). Each table remembers
//! the keys it was asked for, so an unknown key is reported with the list of valid ones.

use std::cell::RefCell;
use std::ops::Range;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::vocabulary::duration::parse_duration;
use crate::vocabulary::problems::Problem;
use crate::vocabulary::source::{At, Loc, Source};

/// Shared state of one file's reading: the source and the problems found so far.
#[derive(Debug)]
pub struct Ctx<'s> {
    /// The text being read.
    pub source: &'s Source,
    problems: RefCell<Vec<Problem>>,
    /// Every key asked for, as a dotted path without list indices (for the schema's test).
    asked: RefCell<std::collections::BTreeSet<String>>,
}

impl<'s> Ctx<'s> {
    /// A reading of `source`, with no problem found yet.
    pub fn new(source: &'s Source) -> Self {
        Self {
            source,
            problems: RefCell::new(Vec::new()),
            asked: RefCell::new(std::collections::BTreeSet::new()),
        }
    }

    /// A problem at the value spanning `span`, under `key`.
    pub fn report(&self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        self.report_at(self.source.loc(span.start), key, message);
    }

    /// A problem at `loc`, under `key`.
    pub fn report_at(&self, loc: Loc, key: &str, message: impl Into<String>) {
        self.problems.borrow_mut().push(Problem {
            loc,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// Every key the reading asked for (`load.stages.rate`), whether the file had it or not.
    pub fn asked_keys(&self) -> std::collections::BTreeSet<String> {
        self.asked.borrow().clone()
    }

    /// The problems found, in the order of the file.
    pub fn into_problems(self) -> Vec<Problem> {
        let mut list = self.problems.into_inner();
        list.sort_by_key(|p| (p.loc.line, p.loc.column));
        list
    }
}

/// One TOML table being read.
#[derive(Debug)]
pub struct TableReader<'c, 's, 'i> {
    ctx: &'c Ctx<'s>,
    table: &'c DeTable<'i>,
    span: Range<usize>,
    prefix: String,
    asked: RefCell<Vec<&'static str>>,
}

impl<'c, 's, 'i> TableReader<'c, 's, 'i> {
    /// The reader of the document's top-level table.
    pub fn root(ctx: &'c Ctx<'s>, table: &'c Spanned<DeTable<'i>>) -> Self {
        Self {
            ctx,
            table: table.get_ref(),
            span: table.span(),
            prefix: String::new(),
            asked: RefCell::new(Vec::new()),
        }
    }

    /// The reading this table is part of.
    pub fn ctx(&self) -> &'c Ctx<'s> {
        self.ctx
    }

    /// The dotted name of `key` in this table, as problems show it.
    pub fn key_path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// Where this table starts.
    pub fn loc(&self) -> Loc {
        self.ctx.source.loc(self.span.start)
    }

    /// Whether the table has `key`.
    pub fn has(&self, key: &'static str) -> bool {
        self.raw(key).is_some()
    }

    /// The raw value of `key`, marking the key as known.
    pub fn raw(&self, key: &'static str) -> Option<&'c Spanned<DeValue<'i>>> {
        self.asked.borrow_mut().push(key);
        let mut path = self.key_path(key);
        while let (Some(open), Some(close)) = (path.find('['), path.find(']')) {
            if close < open {
                break;
            }
            path.replace_range(open..=close, "");
        }
        self.ctx.asked.borrow_mut().insert(path);
        self.table.get(key)
    }

    fn wrong_type(&self, key: &str, v: &Spanned<DeValue<'_>>, expected: &str) {
        self.ctx.report(
            &v.span(),
            &self.key_path(key),
            format!("expected {expected}, found {}", v.get_ref().type_str()),
        );
    }

    fn at<T>(&self, v: &Spanned<DeValue<'_>>, value: T) -> At<T> {
        At {
            value,
            loc: self.ctx.source.loc(v.span().start),
        }
    }

    /// `key` as a string, with where it was written; a problem if it is another type.
    pub fn string(&self, key: &'static str) -> Option<At<String>> {
        let v = self.raw(key)?;
        match v.get_ref().as_str() {
            Some(s) => Some(self.at(v, s.to_string())),
            None => {
                self.wrong_type(key, v, "a string");
                None
            }
        }
    }

    /// A string that must be present.
    pub fn required_string(&self, key: &'static str, hint: &str) -> Option<At<String>> {
        let found = self.string(key);
        if found.is_none() && !self.table.contains_key(key) {
            self.ctx
                .report(&self.span, &self.key_path(key), format!("missing; {hint}"));
        }
        found
    }

    /// Every key of this table but `except`, with where it was written; each is marked
    /// known (for tables whose keys are names the user chooses, such as thresholds).
    pub fn keys_except(&self, except: &[&str]) -> Vec<(String, Loc)> {
        self.table
            .iter()
            .filter(|(k, _)| !except.contains(&k.get_ref().as_ref()))
            .map(|(k, _)| (k.get_ref().to_string(), self.ctx.source.loc(k.span().start)))
            .collect()
    }

    /// A string under a key chosen by the user (not a fixed name).
    pub fn string_dynamic(&self, key: &str) -> Option<At<String>> {
        let v = self.table.get(key)?;
        match v.get_ref().as_str() {
            Some(s) => Some(self.at(v, s.to_string())),
            None => {
                self.wrong_type(key, v, "a condition string such as \"< 250ms\"");
                None
            }
        }
    }

    /// `key` as a boolean; a problem if it is another type.
    pub fn boolean(&self, key: &'static str) -> Option<bool> {
        let v = self.raw(key)?;
        match v.get_ref().as_bool() {
            Some(b) => Some(b),
            None => {
                self.wrong_type(key, v, "true or false");
                None
            }
        }
    }

    /// A whole number of at least `min`.
    pub fn integer(&self, key: &'static str, min: u64) -> Option<At<u64>> {
        let v = self.raw(key)?;
        let parsed = v
            .get_ref()
            .as_integer()
            .map(|i| i64::from_str_radix(i.as_str(), i.radix()));
        match parsed {
            Some(Ok(n)) if n >= 0 && n as u64 >= min => Some(self.at(v, n as u64)),
            Some(Ok(n)) => {
                self.ctx.report(
                    &v.span(),
                    &self.key_path(key),
                    format!("{n} is too small: it must be at least {min}"),
                );
                None
            }
            Some(Err(_)) => {
                self.ctx
                    .report(&v.span(), &self.key_path(key), "integer out of range");
                None
            }
            None => {
                self.wrong_type(key, v, "a whole number");
                None
            }
        }
    }

    /// A number (integer or float) that must be greater than zero when `positive`,
    /// or at least zero otherwise.
    pub fn number(&self, key: &'static str, positive: bool) -> Option<At<f64>> {
        let v = self.raw(key)?;
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            _ => {
                self.wrong_type(key, v, "a number");
                return None;
            }
        };
        match n {
            Some(n) if n.is_finite() && (n > 0.0 || (!positive && n == 0.0)) => Some(self.at(v, n)),
            Some(n) => {
                let must = if positive {
                    "greater than zero"
                } else {
                    "zero or more"
                };
                self.ctx.report(
                    &v.span(),
                    &self.key_path(key),
                    format!("{n} is not valid: it must be a finite number {must}"),
                );
                None
            }
            None => {
                self.ctx
                    .report(&v.span(), &self.key_path(key), "number out of range");
                None
            }
        }
    }

    /// A duration string such as "250ms"; when `positive`, zero is rejected.
    pub fn duration(&self, key: &'static str, positive: bool) -> Option<At<Duration>> {
        let s = self.string(key)?;
        match parse_duration(&s.value) {
            Ok(d) if positive && d.is_zero() => {
                self.ctx.report_at(
                    s.loc,
                    &self.key_path(key),
                    "must be longer than zero, e.g. \"10s\"",
                );
                None
            }
            Ok(d) => Some(At {
                value: d,
                loc: s.loc,
            }),
            Err(why) => {
                self.ctx.report_at(
                    s.loc,
                    &self.key_path(key),
                    format!(
                        "\"{}\" is not a duration ({why}); write a number and a unit: \"250ms\", \"10s\", \"1m\", \"1m30s\" (units: ns, us, ms, s, m, h)",
                        s.value
                    ),
                );
                None
            }
        }
    }

    /// One of a fixed set of strings.
    pub fn choice(&self, key: &'static str, valid: &[&str]) -> Option<At<String>> {
        let s = self.string(key)?;
        if valid.contains(&s.value.as_str()) {
            Some(s)
        } else {
            self.ctx.report_at(
                s.loc,
                &self.key_path(key),
                format!(
                    "\"{}\" is not valid; valid values: {}",
                    s.value,
                    quoted_list(valid)
                ),
            );
            None
        }
    }

    /// A list of strings.
    pub fn string_list(&self, key: &'static str) -> Option<Vec<At<String>>> {
        let v = self.raw(key)?;
        let Some(items) = v.get_ref().as_array() else {
            self.wrong_type(key, v, "a list of strings");
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref().as_str() {
                Some(s) => out.push(self.at(item, s.to_string())),
                None => self.wrong_type(key, item, "a string in the list"),
            }
        }
        Some(out)
    }

    /// A table of string to string (request metadata).
    pub fn string_map(&self, key: &'static str) -> Option<Vec<(At<String>, String)>> {
        let v = self.raw(key)?;
        let Some(table) = v.get_ref().as_table() else {
            self.wrong_type(
                key,
                v,
                "a table of strings, e.g. { authorization = \"Bearer x\" }",
            );
            return None;
        };
        let mut out = Vec::new();
        for (k, val) in table.iter() {
            match val.get_ref().as_str() {
                Some(s) => out.push((
                    At {
                        value: k.get_ref().to_string(),
                        loc: self.ctx.source.loc(k.span().start),
                    },
                    s.to_string(),
                )),
                None => self.ctx.report(
                    &val.span(),
                    &format!("{}.{}", self.key_path(key), k.get_ref()),
                    format!("expected a string, found {}", val.get_ref().type_str()),
                ),
            }
        }
        Some(out)
    }

    /// A sub-table, read by its own reader.
    pub fn table(&self, key: &'static str) -> Option<TableReader<'c, 's, 'i>> {
        let v = self.raw(key)?;
        match v.get_ref().as_table() {
            Some(t) => Some(self.child(key, t, v.span())),
            None => {
                self.wrong_type(key, v, "a table");
                None
            }
        }
    }

    /// A sub-table under a key chosen by the user (`[modules.NAME]`); pair with
    /// `keys_except` on the parent.
    pub fn table_dynamic(&self, key: &str) -> Option<TableReader<'c, 's, 'i>> {
        let v = self.table.get(key)?;
        match v.get_ref().as_table() {
            Some(t) => Some(self.child(key, t, v.span())),
            None => {
                self.wrong_type(key, v, "a table");
                None
            }
        }
    }

    /// An array of tables (`[[load.stages]]`).
    pub fn tables(&self, key: &'static str) -> Vec<TableReader<'c, 's, 'i>> {
        let Some(v) = self.raw(key) else {
            return Vec::new();
        };
        let Some(items) = v.get_ref().as_array() else {
            self.wrong_type(key, v, "a list of tables ([[...]])");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.get_ref().as_table() {
                Some(t) => {
                    let mut child = self.child(key, t, item.span());
                    child.prefix = format!("{}[{i}]", self.key_path(key));
                    out.push(child);
                }
                None => self.wrong_type(key, item, "a table"),
            }
        }
        out
    }

    fn child(
        &self,
        key: &str,
        table: &'c DeTable<'i>,
        span: Range<usize>,
    ) -> TableReader<'c, 's, 'i> {
        TableReader {
            ctx: self.ctx,
            table,
            span,
            prefix: self.key_path(key),
            asked: RefCell::new(Vec::new()),
        }
    }

    /// Reports every key of this table that no one asked for. Call after all reads.
    pub fn finish(&self) {
        let asked = self.asked.borrow().clone();
        for (k, _) in self.table.iter() {
            let name = k.get_ref();
            if !asked.iter().any(|a| a == name) {
                let mut valid: Vec<&str> = asked.clone();
                valid.sort_unstable();
                valid.dedup();
                let close = valid
                    .iter()
                    .find(|v| edit_distance(v, name) <= 2)
                    .map(|v| format!("did you mean `{v}`? "))
                    .unwrap_or_default();
                self.ctx.report(
                    &k.span(),
                    &self.key_path(name),
                    format!("unknown key; {close}valid keys here: {}", valid.join(", ")),
                );
            }
        }
    }
}

/// `a`, `b` and `c` as messages list choices: `"a", "b", "c"`.
pub fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Levenshtein distance, for "did you mean" hints on short key names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Converts a TOML value to JSON (for request messages, which use the protobuf JSON
/// mapping), recording where each nested key was written so a field error can point at it.
pub fn to_json(
    ctx: &Ctx<'_>,
    v: &Spanned<DeValue<'_>>,
    path: &str,
    locs: &mut Vec<(String, Loc)>,
) -> serde_json::Value {
    use serde_json::Value;
    locs.push((path.to_string(), ctx.source.loc(v.span().start)));
    match v.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::from(n),
            Err(_) => Value::String(i.as_str().to_string()),
        },
        DeValue::Float(f) => f
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(f.as_str().to_string()), Value::Number),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, item)| to_json(ctx, item, &format!("{path}[{i}]"), locs))
                .collect(),
        ),
        DeValue::Table(t) => Value::Object(
            t.iter()
                .map(|(k, item)| {
                    let name = k.get_ref().to_string();
                    let child_path = format!("{path}.{name}");
                    let first = locs.len();
                    let child = to_json(ctx, item, &child_path, locs);
                    // A field is pointed at by its key, not its value.
                    locs[first].1 = ctx.source.loc(k.span().start);
                    (name, child)
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("rate", "rate"), 0);
        assert_eq!(edit_distance("rate", "rat"), 1);
        assert_eq!(edit_distance("concurrency", "concurency"), 1);
        assert_eq!(edit_distance("abc", "xyz"), 3);
    }
}
