//! Checks on a response (issue 17's `expect`): `status == OK`, `message == "hello x"`,
//! `items.0.count >= 3`, `name matches "^a.*$"`. A check is parsed once, validated against
//! the response's message type (the path exists, the operator fits the field's type), then
//! evaluated on each decoded response. One syntax for `probe --expect` and the agent's method
//! probes.

use std::fmt;

use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value,
};

use crate::grpc::status::{code_name, CODE_NAMES};

/// Longest check written (a regex included): checks come from flags and config files.
const MAX_CHECK: usize = 4096;

/// One check, as written and parsed.
#[derive(Debug, Clone)]
pub struct Check {
    /// The check as written (the `check` label of its series).
    pub text: String,
    subject: Subject,
    op: Op,
    value: Literal,
}

#[derive(Debug, Clone, PartialEq)]
enum Subject {
    /// The call's gRPC status.
    Status,
    /// A field of the response by path: names, and list indices.
    Field(Vec<Step>),
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Name(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Matches,
}

#[derive(Debug, Clone)]
enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    /// A status code, by name.
    Code(u8),
    Regex(regex::Regex),
}

/// Why a check cannot be used, in words that say how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("check `{check}`: {reason}")]
pub struct CheckError {
    /// The check as written.
    pub check: String,
    /// Why it cannot be used, and how to write it.
    pub reason: String,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Matches => "matches",
        })
    }
}

impl Check {
    /// Parses `SUBJECT OP VALUE`: SUBJECT is `status` or a field path (`a.b.0.c`), OP one of
    /// `==` `!=` `<` `<=` `>` `>=` `matches`, VALUE a quoted string, a number, `true`/`false`,
    /// or (for `status`) a code name.
    pub fn parse(text: &str) -> Result<Self, CheckError> {
        let bad = |reason: String| CheckError {
            check: text.to_string(),
            reason,
        };
        if text.len() > MAX_CHECK {
            return Err(bad(format!("longer than {MAX_CHECK} bytes")));
        }
        let t = text.trim();
        let path_end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(t.len());
        let (path, rest) = t.split_at(path_end);
        if path.is_empty() {
            return Err(bad(
                "no field path or `status` first; write e.g. `message == \"hi\"` or `status == OK`"
                    .into(),
            ));
        }
        let rest = rest.trim_start();
        let ops = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
            ("matches", Op::Matches),
        ];
        let Some((op, value)) = ops
            .iter()
            .find_map(|(s, op)| rest.strip_prefix(s).map(|v| (*op, v.trim())))
        else {
            return Err(bad(format!(
                "no operator after `{path}`; use ==, !=, <, <=, >, >= or matches"
            )));
        };
        let subject = if path == "status" {
            Subject::Status
        } else {
            let mut steps = Vec::new();
            for seg in path.split('.') {
                if seg.is_empty() {
                    return Err(bad(format!("`{path}` has an empty step")));
                }
                steps.push(match seg.parse::<usize>() {
                    Ok(i) => Step::Index(i),
                    Err(_) => Step::Name(seg.to_string()),
                });
            }
            if matches!(steps.first(), Some(Step::Index(_))) {
                return Err(bad(format!(
                    "`{path}` starts with an index: name a field first"
                )));
            }
            Subject::Field(steps)
        };
        let value = literal(value, op, &subject).map_err(bad)?;
        Ok(Self {
            text: text.to_string(),
            subject,
            op,
            value,
        })
    }

    /// Whether this checks the call's status (rather than a field of the response).
    pub fn is_on_status(&self) -> bool {
        self.subject == Subject::Status
    }

    /// Checks the path and the operator against the response type, before any call.
    pub fn validate(&self, response: &MessageDescriptor) -> Result<(), CheckError> {
        let bad = |reason: String| CheckError {
            check: self.text.clone(),
            reason,
        };
        let Subject::Field(steps) = &self.subject else {
            return Ok(());
        };
        let kind = walk_type(response, steps).map_err(bad)?;
        let fits = match (&kind, &self.value) {
            (FieldType::Text, Literal::Str(_) | Literal::Regex(_)) => true,
            (FieldType::Number(name, Some((low, high))), Literal::Num(n)) => {
                // An integer field holds only what its type can: a literal outside that, or
                // one from 2^53 on (where the comparison, made in f64, is not exact), is
                // a mistake to say now rather than a check that can never pass.
                const EXACT: f64 = 9_007_199_254_740_992.0;
                if *n < *low || *n > *high || n.abs() >= EXACT {
                    return Err(bad(format!(
                        "{n} is out of range for this field ({name}: {} to {}{})",
                        low,
                        high.min(EXACT),
                        if *high > EXACT {
                            ", as far as a check compares exactly"
                        } else {
                            ""
                        }
                    )));
                }
                if matches!(self.op, Op::Eq | Op::Ne) && n.fract() != 0.0 {
                    return Err(bad(format!(
                        "{n} is not a whole number, and this field ({name}) holds only whole numbers"
                    )));
                }
                true
            }
            (FieldType::Number(..), Literal::Num(_)) => true,
            (FieldType::Bool, Literal::Bool(_)) => matches!(self.op, Op::Eq | Op::Ne),
            (FieldType::Enum(names), Literal::Str(s)) => {
                names.contains(s) && matches!(self.op, Op::Eq | Op::Ne)
            }
            (FieldType::Enum(_), Literal::Num(_)) => true,
            _ => false,
        };
        if fits {
            Ok(())
        } else {
            Err(bad(format!(
                "`{}` cannot be applied to this field ({}) with {}",
                self.op,
                kind.describe(),
                self.value.describe()
            )))
        }
    }

    /// Judges one call: its status and, when it returned one, its decoded response. `Err`
    /// says what was found instead.
    pub fn evaluate(&self, status: u8, response: Option<&DynamicMessage>) -> Result<(), String> {
        match &self.subject {
            Subject::Status => {
                let Literal::Code(want) = self.value else {
                    return Err("a status is compared with a code name".into());
                };
                let equal = status == want;
                if equal == (self.op == Op::Eq) {
                    Ok(())
                } else {
                    Err(format!("status is {}", code_name(status)))
                }
            }
            Subject::Field(steps) => {
                let Some(message) = response else {
                    return Err(format!("no response (status {})", code_name(status)));
                };
                let (value, field) = walk_value(message, steps)?;
                // An enum compared by name: the name of the number found.
                if let (Value::EnumNumber(n), Some(Kind::Enum(e))) =
                    (&value, field.as_ref().map(FieldDescriptor::kind))
                {
                    if let Literal::Str(want) = &self.value {
                        let name = e.get_value(*n).map(|v| v.name().to_string());
                        let found = name.clone().unwrap_or_else(|| n.to_string());
                        let equal = name.as_deref() == Some(want.as_str());
                        return if equal == (self.op == Op::Eq) {
                            Ok(())
                        } else {
                            Err(format!("found {found}"))
                        };
                    }
                }
                compare(&value, self.op, &self.value)
            }
        }
    }
}

/// The type at the end of a path, as checks see it.
enum FieldType {
    Text,
    /// A number field: its type's name, and the integer range when it is an integer.
    Number(&'static str, Option<(f64, f64)>),
    Bool,
    Enum(Vec<String>),
    Other(String),
}

impl FieldType {
    fn describe(&self) -> String {
        match self {
            Self::Text => "a string".into(),
            Self::Number(name, _) => format!("a number ({name})"),
            Self::Bool => "a bool".into(),
            Self::Enum(names) => format!("an enum: {}", names.join(", ")),
            Self::Other(what) => what.clone(),
        }
    }
}

impl Literal {
    fn describe(&self) -> &'static str {
        match self {
            Literal::Str(_) => "a string",
            Literal::Num(_) => "a number",
            Literal::Bool(_) => "a bool",
            Literal::Code(_) => "a status code",
            Literal::Regex(_) => "a regex",
        }
    }
}

fn literal(value: &str, op: Op, subject: &Subject) -> Result<Literal, String> {
    if value.is_empty() {
        return Err("no value after the operator".into());
    }
    if *subject == Subject::Status {
        if !matches!(op, Op::Eq | Op::Ne) {
            return Err("`status` takes == or != and a code name (OK, NOT_FOUND, …)".into());
        }
        return CODE_NAMES
            .iter()
            .position(|n| *n == value)
            .map(|c| Literal::Code(c as u8))
            .ok_or_else(|| {
                format!(
                    "`{value}` is not a status code name; one of {}",
                    CODE_NAMES.join(", ")
                )
            });
    }
    if let Some(quoted) = value.strip_prefix('"') {
        let text = unquote(quoted)?;
        return if op == Op::Matches {
            regex::Regex::new(&text)
                .map(Literal::Regex)
                .map_err(|e| format!("not a regex: {e}"))
        } else if matches!(op, Op::Eq | Op::Ne) {
            Ok(Literal::Str(text))
        } else {
            Err(format!(
                "`{op}` compares numbers; a string takes ==, != or matches"
            ))
        };
    }
    if op == Op::Matches {
        return Err("`matches` takes a quoted regex, e.g. matches \"^ok\"".into());
    }
    match value {
        "true" => return bool_literal(true, op),
        "false" => return bool_literal(false, op),
        _ => {}
    }
    value
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .map(Literal::Num)
        .ok_or_else(|| {
            format!("`{value}` is not a value: write a quoted string, a number, true or false")
        })
}

fn bool_literal(b: bool, op: Op) -> Result<Literal, String> {
    if matches!(op, Op::Eq | Op::Ne) {
        Ok(Literal::Bool(b))
    } else {
        Err(format!("`{op}` does not compare bools; use == or !="))
    }
}

/// The text of a quoted string (after its opening quote): `\"` and `\\` escapes, nothing after
/// the closing quote.
fn unquote(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                return if chars.as_str().trim().is_empty() {
                    Ok(out)
                } else {
                    Err(format!(
                        "`{}` after the closing quote",
                        chars.as_str().trim()
                    ))
                }
            }
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\')) => out.push(e),
                Some('n') => out.push('\n'),
                Some(other) => {
                    out.push('\\');
                    out.push(other)
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("the string has no closing quote".into())
}

fn walk_type(message: &MessageDescriptor, steps: &[Step]) -> Result<FieldType, String> {
    let mut current = message.clone();
    let mut i = 0;
    while i < steps.len() {
        let Step::Name(name) = &steps[i] else {
            return Err(format!(
                "an index where a field name was expected (step {})",
                i + 1
            ));
        };
        let field = current.get_field_by_name(name).ok_or_else(|| {
            let names: Vec<String> = current.fields().map(|f| f.name().to_string()).collect();
            format!(
                "`{}` has no field `{name}`; it has: {}",
                current.full_name(),
                names.join(", ")
            )
        })?;
        i += 1;
        if field.is_list() {
            match steps.get(i) {
                Some(Step::Index(_)) => i += 1,
                _ => return Err(format!("`{name}` is a list: name an element (`{name}.0`)")),
            }
        } else if field.is_map() {
            return Err(format!("`{name}` is a map: checks do not index maps"));
        }
        let last = i >= steps.len();
        match field.kind() {
            Kind::Message(m) if !last => current = m,
            kind if last => return Ok(type_of(&field, &kind)),
            _ => return Err(format!("`{name}` is not a message: the path cannot go on")),
        }
    }
    Ok(FieldType::Other("the whole message".into()))
}

fn type_of(_field: &FieldDescriptor, kind: &Kind) -> FieldType {
    match kind {
        Kind::String => FieldType::Text,
        Kind::Bool => FieldType::Bool,
        Kind::Enum(e) => FieldType::Enum(e.values().map(|v| v.name().to_string()).collect()),
        Kind::Message(m) => FieldType::Other(format!("a message ({})", m.full_name())),
        Kind::Bytes => FieldType::Other("bytes".into()),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            FieldType::Number("int32", Some((f64::from(i32::MIN), f64::from(i32::MAX))))
        }
        Kind::Uint32 | Kind::Fixed32 => {
            FieldType::Number("uint32", Some((0.0, f64::from(u32::MAX))))
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            FieldType::Number("int64", Some((i64::MIN as f64, i64::MAX as f64)))
        }
        Kind::Uint64 | Kind::Fixed64 => FieldType::Number("uint64", Some((0.0, u64::MAX as f64))),
        Kind::Float => FieldType::Number("float", None),
        _ => FieldType::Number("double", None),
    }
}

/// The value at the end of a path, and the field it came from.
fn walk_value(
    message: &DynamicMessage,
    steps: &[Step],
) -> Result<(Value, Option<FieldDescriptor>), String> {
    let mut current = Value::Message(message.clone());
    let mut last_field = None;
    let mut path = String::new();
    for step in steps {
        current = match (step, &current) {
            (Step::Name(name), Value::Message(m)) => {
                let field = m.descriptor().get_field_by_name(name).ok_or_else(|| {
                    format!("`{}` has no field `{name}`", m.descriptor().full_name())
                })?;
                let value = m.get_field(&field).into_owned();
                last_field = Some(field);
                value
            }
            (Step::Index(i), Value::List(items)) => items
                .get(*i)
                .cloned()
                .ok_or_else(|| format!("`{path}` has {} elements, not {}", items.len(), i + 1))?,
            _ => return Err(format!("`{path}` does not lead on")),
        };
        if !path.is_empty() {
            path.push('.');
        }
        match step {
            Step::Name(n) => path.push_str(n),
            Step::Index(i) => path.push_str(&i.to_string()),
        }
    }
    Ok((current, last_field))
}

fn compare(found: &Value, op: Op, want: &Literal) -> Result<(), String> {
    let shown = show(found);
    let number = |v: &Value| -> Option<f64> {
        match v {
            Value::I32(n) | Value::EnumNumber(n) => Some(f64::from(*n)),
            Value::I64(n) => Some(*n as f64),
            Value::U32(n) => Some(f64::from(*n)),
            Value::U64(n) => Some(*n as f64),
            Value::F32(n) => Some(f64::from(*n)),
            Value::F64(n) => Some(*n),
            _ => None,
        }
    };
    let holds = match (found, want) {
        (Value::String(s), Literal::Str(w)) => (s == w) == (op == Op::Eq),
        (Value::String(s), Literal::Regex(r)) => r.is_match(s),
        (Value::Bool(b), Literal::Bool(w)) => (b == w) == (op == Op::Eq),
        (v, Literal::Num(w)) => match number(v) {
            Some(n) => match op {
                Op::Eq => n == *w,
                Op::Ne => n != *w,
                Op::Lt => n < *w,
                Op::Le => n <= *w,
                Op::Gt => n > *w,
                Op::Ge => n >= *w,
                Op::Matches => false,
            },
            None => return Err(format!("found {shown}, not a number")),
        },
        _ => {
            return Err(format!(
                "found {shown}, which {} cannot be compared with",
                want.describe()
            ))
        }
    };
    if holds {
        Ok(())
    } else {
        Err(format!("found {shown}"))
    }
}

/// A found value as a message shows it (strings quoted, long ones cut).
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let cut: String = s.chars().take(80).collect();
            if cut.len() < s.len() {
                format!("{cut:?}…")
            } else {
                format!("{cut:?}")
            }
        }
        Value::Message(m) => format!("a message ({})", m.descriptor().full_name()),
        Value::List(l) => format!("a list of {}", l.len()),
        Value::I32(n) | Value::EnumNumber(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::U32(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::F32(n) => n.to_string(),
        Value::F64(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Bytes(b) => format!("{} bytes", b.len()),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// No check text panics the parser, the validator or the judge.
        #[test]
        fn any_text_parses_or_is_refused(text in "[a-z0-9_. =!<>\"\\\\^$*()\\[\\]]{0,40}|(status|message|items\\.0\\.count|mood|ready|ratio) (==|!=|<|<=|>|>=|matches) .{0,12}") {
            if let Ok(check) = Check::parse(&text) {
                let t = reply_type();
                let _ = check.validate(&t);
                let r = reply(r#"{"message": "m", "items": [{"count": 1}]}"#);
                let _ = check.evaluate(0, Some(&r));
                let _ = check.evaluate(14, None);
            }
        }
    }

    const PROTO: &str = r#"
syntax = "proto3";
package t;
enum Mood { MOOD_UNSPECIFIED = 0; HAPPY = 1; }
message Item { uint32 count = 1; }
message Reply {
  string message = 1;
  repeated Item items = 2;
  bool ready = 3;
  double ratio = 4;
  Mood mood = 5;
  map<string, string> tags = 6;
  bytes blob = 7;
  int64 big = 8;
}
"#;

    fn reply_type() -> MessageDescriptor {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.proto"), PROTO).unwrap();
        let files = protox::compile(["t.proto"], [dir.path()]).unwrap();
        let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(files).unwrap();
        pool.get_message_by_name("t.Reply").unwrap()
    }

    fn reply(json: &str) -> DynamicMessage {
        let mut de = serde_json::Deserializer::from_str(json);
        DynamicMessage::deserialize(reply_type(), &mut de).unwrap()
    }

    #[test]
    fn checks_parse_and_bad_ones_say_how_to_write_them() {
        for ok in [
            "status == OK",
            "status != NOT_FOUND",
            "message == \"hello \\\"x\\\"\"",
            "items.0.count >= 3",
            "name matches \"^a.*$\"",
            "ready == true",
            "ratio < 0.5",
        ] {
            Check::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, says) in [
            ("== 3", "no field path"),
            ("count 3", "no operator"),
            ("count ==", "no value"),
            ("status == FINE", "not a status code name"),
            ("status < OK", "`status` takes == or !="),
            ("name matches \"(\"", "not a regex"),
            ("name matches abc", "quoted regex"),
            ("name == \"open", "no closing quote"),
            ("name == \"a\" b", "after the closing quote"),
            ("name < \"a\"", "compares numbers"),
            ("ok > true", "does not compare bools"),
            ("count == NaN", "not a value"),
            ("0.count == 1", "starts with an index"),
            ("a..b == 1", "empty step"),
        ] {
            let e = Check::parse(bad).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
        assert!(Check::parse(&"a".repeat(5000)).is_err());
    }

    #[test]
    fn checks_are_validated_against_the_type_and_judge_responses() {
        let t = reply_type();
        let fits = |c: &str| Check::parse(c).unwrap().validate(&t);
        for ok in [
            "message == \"hello x\"",
            "message matches \"^hello\"",
            "items.0.count >= 3",
            "ready == true",
            "ratio < 0.5",
            "mood == \"HAPPY\"",
            "mood == 1",
            "items.0.count < 2.5",
            "big >= -9007199254740991",
        ] {
            fits(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, says) in [
            (
                "nope == 1",
                "has no field `nope`; it has: message, items, ready",
            ),
            ("items == 1", "is a list: name an element"),
            ("items.0.nope == 1", "`t.Item` has no field `nope`"),
            ("tags.a == \"b\"", "is a map"),
            ("message.x == 1", "not a message"),
            ("message >= 3", "cannot be applied"),
            ("ready matches \"t\"", "cannot be applied"),
            ("mood == \"SAD\"", "an enum: MOOD_UNSPECIFIED, HAPPY"),
            ("blob == \"x\"", "bytes"),
            ("items.0 == 1", "a message (t.Item)"),
            ("items.0.count == -1", "out of range for this field (uint32"),
            (
                "items.0.count < 99999999999",
                "out of range for this field (uint32",
            ),
            ("items.0.count == 2.5", "not a whole number"),
            (
                "big == 99999999999999999999",
                "out of range for this field (int64",
            ),
            ("big == 9007199254740993", "compares exactly"),
        ] {
            let e = fits(bad).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }

        let r = reply(
            r#"{"message": "hello x", "items": [{"count": 2}, {"count": 5}], "ready": true, "ratio": 0.25, "mood": "HAPPY"}"#,
        );
        let judge = |c: &str| Check::parse(c).unwrap().evaluate(0, Some(&r));
        assert_eq!(judge("message == \"hello x\""), Ok(()));
        assert_eq!(
            judge("message != \"hello x\""),
            Err("found \"hello x\"".into())
        );
        assert_eq!(judge("message matches \"^hel+o\""), Ok(()));
        assert_eq!(judge("items.1.count >= 3"), Ok(()));
        assert_eq!(judge("items.0.count >= 3"), Err("found 2".into()));
        assert!(judge("items.5.count >= 3")
            .unwrap_err()
            .contains("has 2 elements"));
        assert_eq!(judge("ready == true"), Ok(()));
        assert_eq!(judge("ratio < 0.5"), Ok(()));
        assert_eq!(judge("mood == 1"), Ok(()));
        assert_eq!(judge("mood == \"HAPPY\""), Ok(()));
        assert_eq!(judge("mood != \"HAPPY\""), Err("found HAPPY".into()));
        // Status checks need no response; a failed call fails a field check with its status.
        assert!(Check::parse("status == OK")
            .unwrap()
            .evaluate(0, None)
            .is_ok());
        assert_eq!(
            Check::parse("status == OK").unwrap().evaluate(14, None),
            Err("status is UNAVAILABLE".into())
        );
        assert_eq!(
            Check::parse("status != OK").unwrap().evaluate(14, None),
            Ok(())
        );
        let e = Check::parse("message == \"x\"")
            .unwrap()
            .evaluate(14, None)
            .unwrap_err();
        assert!(e.contains("no response (status UNAVAILABLE)"), "{e}");
    }
}
