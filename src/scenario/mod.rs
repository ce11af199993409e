//! Scenario files: TOML → a validated [`Scenario`] (the types are `crate::vocabulary`'s),
//! with every problem reported at once.

mod call;
pub mod capacity;
mod labels;
mod load;
pub mod mix;
pub mod reader;
pub mod schema;
mod stream;
mod target;
pub mod thresholds;
pub mod tracing;

use std::path::Path;

use toml::de::DeTable;

use crate::vocabulary::problems::{Problem, Problems};
use crate::vocabulary::*;
use reader::{quoted_list, Ctx, TableReader};

use call::read_call;
pub(crate) use call::{check_metadata, read_messages, read_schema, Templates};
use labels::read_labels;
use load::{read_load, read_load_defaults, search_sets_the_load};
use stream::read_stream;
pub(crate) use target::read_tls;
use target::{check_web, read_target};

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{0}")]
    /// The file could not be read.
    Read(#[from] crate::input::InputError),
    #[error("{0}")]
    /// The file was read and has problems (every one).
    Invalid(Problems),
}

/// Reads and validates a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = crate::input::read_text(path, crate::input::FileKind::Scenario)?;
    parse(&Source::new(path, text)).map_err(ScenarioError::Invalid)
}

/// Validates a scenario's text, reporting every problem.
pub fn parse(source: &Source) -> Result<Scenario, Problems> {
    let fail = |list: Vec<Problem>| Problems {
        path: source.path.clone(),
        list,
    };
    let (doc, syntax_errors) = DeTable::parse_recoverable(&source.text);
    if !syntax_errors.is_empty() {
        let list = syntax_errors
            .iter()
            .map(|e| Problem {
                loc: source.loc(e.span().map_or(0, |s| s.start)),
                key: String::new(),
                message: format!("TOML syntax error: {}", e.message().trim()),
            })
            .collect();
        return Err(fail(list));
    }
    let ctx = Ctx::new(source);
    let root = TableReader::root(&ctx, &doc);
    let scenario = read_scenario(&root);
    root.finish();
    let problems = ctx.into_problems();
    match scenario {
        Some(s) if problems.is_empty() => Ok(s),
        _ => Err(fail(problems)),
    }
}

/// Every key the reader asks for while reading `source` (the schema's test compares them
/// with the declared keys).
pub fn asked_keys(source: &Source) -> std::collections::BTreeSet<String> {
    let (doc, _) = DeTable::parse_recoverable(&source.text);
    let ctx = Ctx::new(source);
    let root = TableReader::root(&ctx, &doc);
    let _ = read_scenario(&root);
    ctx.asked_keys()
}

fn read_scenario(root: &TableReader<'_, '_, '_>) -> Option<Scenario> {
    let source = root.ctx().source;
    let name = root.string("name").map(|s| s.value);
    let kind = root
        .choice("kind", Kind::NAMES)
        .and_then(|k| Kind::parse(&k.value));
    if !root.has("kind") {
        root.ctx().report_at(
            root.loc(),
            "kind",
            format!("missing; valid values: {}", quoted_list(Kind::NAMES)),
        );
    }
    let target = section(
        root,
        "target",
        "add a [target] table with `address = \"embedded\"` or \"host:port\"",
    )
    .and_then(|t| read_target(&t));
    let calls = if root.has("calls") {
        mix::read_calls(root, kind)
    } else {
        Some(Vec::new())
    };
    let call = if let Some(first) = calls.as_ref().and_then(|c| c.first()) {
        Some(first.call.clone())
    } else if root.has("calls") || (kind == Some(Kind::TlsHandshake) && !root.has("call")) {
        None
    } else {
        section(
            root,
            "call",
            "add a [call] table with `method = \"package.Service/Method\"` (or `[[calls]]` entries for a mix)",
        )
        .and_then(|c| read_call(&c))
        .map(|mut c| {
            if matches!(kind, Some(Kind::Unary | Kind::TlsHandshake)) && c.timeout.is_none() {
                c.timeout = Some(DEFAULT_CALL_TIMEOUT);
            }
            c
        })
    };
    let stream = read_stream(
        root,
        kind,
        call.as_ref().map_or(1, |c: &Call| c.messages.len() as u64),
    );
    let thresholds = root
        .table("thresholds")
        .map(|t| thresholds::read(&t))
        .unwrap_or_default();
    let tracing = root
        .table("tracing")
        .map(|t| crate::scenario::tracing::read_config(&t))
        .unwrap_or_default();
    let labels = read_labels(root);
    let load = match root.table("load") {
        Some(l) => read_load(&l),
        None => read_load_defaults(),
    };
    let capacity = root.table("capacity").and_then(|t| capacity::read(&t));
    let load = load.map(|mut load| {
        if let Some(c) = &capacity {
            search_sets_the_load(root, &thresholds);
            load.rate = Some(c.start_rate);
            load.duration = Some(c.max_duration);
        }
        load
    });
    if let (Some(t), Some(kind)) = (&target, kind) {
        if t.protocol.is_web() {
            let mix = calls.as_deref().unwrap_or_default();
            // A mix's compression is checked entry by entry, below.
            check_web(
                root,
                t.protocol,
                kind,
                call.as_ref().filter(|_| mix.is_empty()),
            );
            for (i, w) in mix.iter().enumerate() {
                if w.call.compression.is_some() {
                    root.ctx().report_at(
                        root.loc(),
                        &format!("calls[{i}].compression"),
                        "gRPC-Web requests are sent uncompressed; remove `compression`",
                    );
                }
            }
        }
    }
    if let (Some(t), Some(kind)) = (&target, kind) {
        check_retry(
            root,
            kind,
            t.protocol.is_web(),
            call.as_ref(),
            calls.as_deref(),
        );
    }
    let name = name.unwrap_or_else(|| {
        source
            .path
            .file_stem()
            .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned())
    });
    Some(Scenario {
        path: source.path.clone(),
        name,
        kind: kind?,
        target: {
            let t = target?;
            if kind == Some(Kind::TlsHandshake) && t.tls.is_none() {
                root.ctx().report_at(root.loc(), "target.tls", "kind = \"tls_handshake\" needs a [target.tls] table (it may be empty: system roots, SNI from the address)");
                return None;
            }
            t
        },
        call: match (call, kind) {
            (None, Some(Kind::TlsHandshake)) if !root.has("call") && !root.has("calls") => None,
            (call, _) => Some(call?),
        },
        calls: calls?,
        load: load?,
        thresholds,
        stream: stream?,
        tracing,
        labels,
        capacity,
    })
}

/// `[call.retry]` is the lean client's: unary calls over native gRPC. Anywhere else it would
/// be ignored, and a run that seems to retry but does not is refused instead.
fn check_retry(
    root: &TableReader<'_, '_, '_>,
    kind: Kind,
    web: bool,
    call: Option<&Call>,
    calls: Option<&[crate::vocabulary::WeightedCall]>,
) {
    let why = if kind != Kind::Unary {
        "retries are for kind = \"unary\""
    } else if web {
        "retries are for native gRPC targets, not gRPC-Web"
    } else {
        return;
    };
    let mix = calls.unwrap_or_default();
    let with_retry: Vec<String> = if mix.is_empty() {
        call.filter(|c| c.retry.is_some())
            .map(|_| "call.retry".to_string())
            .into_iter()
            .collect()
    } else {
        mix.iter()
            .enumerate()
            .filter(|(_, w)| w.call.retry.is_some())
            .map(|(i, _)| format!("calls[{i}].retry"))
            .collect()
    };
    for key in with_retry {
        root.ctx()
            .report_at(root.loc(), &key, format!("{why}; remove the table"));
    }
}

/// A required table; a missing one is a problem, and so are its contents' problems.
fn section<'c, 's, 'i>(
    root: &TableReader<'c, 's, 'i>,
    key: &'static str,
    hint: &str,
) -> Option<TableReader<'c, 's, 'i>> {
    if !root.has(key) {
        root.ctx()
            .report_at(root.loc(), key, format!("missing; {hint}"));
        return None;
    }
    root.table(key)
}

/// An address to listen on: `host:port`, where port 0 asks the system for a free one.
pub fn valid_listen(s: &str) -> bool {
    HostPort::parse_listen(s).is_ok()
}
