//! `[call]`: the method, where its types come from (`proto`, `protoset`, reflection), the
//! request (`data`, `data_file`, templates) and its metadata, timeout and compression.

use super::reader::{to_json, TableReader};
use crate::vocabulary::*;

pub(super) fn read_call(c: &TableReader<'_, '_, '_>) -> Option<Call> {
    let ctx = c.ctx();
    let method = c
        .required_string("method", "write `method = \"package.Service/Method\"`")
        .and_then(|m| match MethodName::parse(&m.value) {
            Some(name) => Some(At {
                value: name,
                loc: m.loc,
            }),
            None => {
                ctx.report_at(
                    m.loc,
                    &c.key_path("method"),
                    format!(
                        "\"{}\" is not a method name; write \"package.Service/Method\"",
                        m.value
                    ),
                );
                None
            }
        });
    let schema = read_schema(c);

    let messages = read_messages(c);
    let metadata = c
        .string_map("metadata")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| check_metadata(c, k, v, Templates::Rendered))
        .collect();
    // Unary calls (and a storm's calls) get DEFAULT_CALL_TIMEOUT when this is absent
    // (read_scenario); a stream has no deadline unless one is written.
    let timeout = c.duration("timeout", true).map(|d| d.value);
    let max_receive_message_size =
        c.integer("max_receive_message_size", 1)
            .and_then(|m| match u32::try_from(m.value) {
                Ok(n) if n <= MAX_RECEIVE_LIMIT => Some(n),
                _ => {
                    c.ctx().report_at(
                        m.loc,
                        &c.key_path("max_receive_message_size"),
                        format!(
                            "{} is too large (at most {MAX_RECEIVE_LIMIT} bytes, 1 GiB)",
                            m.value
                        ),
                    );
                    None
                }
            });
    let compression = c
        .choice("compression", &["gzip", "none"])
        .and_then(|s| (s.value == "gzip").then_some(Compression::Gzip));
    let transport = c
        .choice("transport", &["lean", "h2"])
        .map_or(UnaryTransport::Lean, |t| {
            if t.value == "h2" {
                UnaryTransport::H2
            } else {
                UnaryTransport::Lean
            }
        });
    let data_order = read_data_order(c);
    let retry = c.table("retry").and_then(|r| read_retry(&r));
    if retry.is_some() && transport == UnaryTransport::H2 {
        c.ctx().report_at(
            c.loc(),
            &c.key_path("retry"),
            "retries are the lean client's: remove `transport = \"h2\"` or the retry table",
        );
    }
    c.finish();
    Some(Call {
        method: method?,
        schema,
        messages: messages?,
        metadata,
        timeout,
        compression,
        max_receive_message_size: max_receive_message_size.unwrap_or(DEFAULT_MAX_RECEIVE_BYTES),
        transport,
        data_order,
        retry,
    })
}

/// `[call.retry]`: gRPC's retry policy (gRFC A6), checked as gRPC checks a service config.
fn read_retry(r: &TableReader<'_, '_, '_>) -> Option<RetryPolicy> {
    let ctx = r.ctx();
    let attempts = r.integer("max_attempts", 0);
    let initial = r.duration("initial_backoff", true);
    let max = r.duration("max_backoff", true);
    let multiplier = r.number("backoff_multiplier", true);
    let codes = r.string_list("retryable_status_codes");
    let throttling = r.table("throttling").and_then(|t| {
        let max_tokens = t.number("max_tokens", true);
        let ratio = t.number("token_ratio", true);
        for (key, present) in [
            ("max_tokens", max_tokens.is_some()),
            ("token_ratio", ratio.is_some()),
        ] {
            if !present && !t.has(key) {
                ctx.report_at(
                    t.loc(),
                    &t.key_path(key),
                    "missing; throttling needs `max_tokens` (e.g. 10) and `token_ratio` (e.g. 0.1)",
                );
            }
        }
        t.finish();
        let (max_tokens, ratio) = (max_tokens?, ratio?);
        if max_tokens.value > 1000.0 {
            ctx.report_at(
                max_tokens.loc,
                &t.key_path("max_tokens"),
                "at most 1000 (gRPC's bound)",
            );
            return None;
        }
        Some(RetryThrottling {
            max_tokens: max_tokens.value,
            token_ratio: ratio.value,
        })
    });
    r.finish();
    for key in [
        "max_attempts",
        "initial_backoff",
        "max_backoff",
        "backoff_multiplier",
        "retryable_status_codes",
    ] {
        if !r.has(key) {
            ctx.report_at(
                r.loc(),
                &r.key_path(key),
                "missing; a retry policy names all five: max_attempts, initial_backoff, max_backoff, backoff_multiplier, retryable_status_codes",
            );
        }
    }
    let attempts = attempts?;
    let max_attempts = match attempts.value {
        0 | 1 => {
            ctx.report_at(
                attempts.loc,
                &r.key_path("max_attempts"),
                "must be at least 2 (the first attempt and a retry); gRPC refuses less",
            );
            return None;
        }
        // gRPC takes more than 5 as 5: a scenario asking for more would silently get less.
        n if n > 5 => {
            ctx.report_at(
                attempts.loc,
                &r.key_path("max_attempts"),
                format!("{n} is more than gRPC allows: it takes any value above 5 as 5; write 5 at most"),
            );
            return None;
        }
        n => n as u8,
    };
    let mut retryable_codes = Vec::new();
    let mut bad = false;
    for c in codes? {
        let name = c.value.to_ascii_uppercase();
        match crate::grpc::status::CODE_NAMES
            .iter()
            .position(|n| *n == name)
        {
            Some(0) => {
                ctx.report_at(
                    c.loc,
                    &r.key_path("retryable_status_codes"),
                    "OK is not a failure: list failure codes such as \"UNAVAILABLE\"",
                );
                bad = true;
            }
            Some(code) => retryable_codes.push(code as u8),
            None => {
                ctx.report_at(
                    c.loc,
                    &r.key_path("retryable_status_codes"),
                    format!(
                        "\"{}\" is not a gRPC code name; valid: {}",
                        c.value,
                        crate::grpc::status::CODE_NAMES[1..].join(", ")
                    ),
                );
                bad = true;
            }
        }
    }
    if retryable_codes.is_empty() && !bad {
        ctx.report_at(
            r.loc(),
            &r.key_path("retryable_status_codes"),
            "an empty list retries nothing; list codes such as [\"UNAVAILABLE\"]",
        );
        bad = true;
    }
    let (initial, max, multiplier) = (initial?, max?, multiplier?);
    if bad {
        return None;
    }
    Some(RetryPolicy {
        max_attempts,
        initial_backoff: initial.value,
        max_backoff: max.value,
        backoff_multiplier: multiplier.value,
        retryable_codes,
        throttling,
    })
}

/// `data_order = "round_robin" | "random"` and `seed` (the random order's only).
fn read_data_order(c: &TableReader<'_, '_, '_>) -> DataOrder {
    let order = c.choice("data_order", &["round_robin", "random"]);
    let seed = c.integer("seed", 0);
    match (order.as_ref().map(|o| o.value.as_str()), seed) {
        (Some("random"), seed) => DataOrder::Random {
            seed: seed.map(|s| s.value),
        },
        (_, Some(s)) => {
            c.ctx().report_at(
                s.loc,
                &c.key_path("seed"),
                "picks the random order's sequence: add data_order = \"random\" or remove `seed`",
            );
            DataOrder::RoundRobin
        }
        _ => DataOrder::RoundRobin,
    }
}

/// Where a method's types come from: `proto` (with `import_paths`), `protoset`, or else server
/// reflection. Shared by `[call]` and the agent's method probes.
pub(crate) fn read_schema(c: &TableReader<'_, '_, '_>) -> Schema {
    let source = c.ctx().source;
    let protos = c.string_list("proto").unwrap_or_default();
    let import_paths = c.string_list("import_paths").unwrap_or_default();
    let protoset = c.string("protoset");
    if !protos.is_empty() {
        let files = protos
            .into_iter()
            .map(|p| At {
                value: source.resolve(&p.value),
                loc: p.loc,
            })
            .collect();
        let import_paths = import_paths
            .iter()
            .map(|p| source.resolve(&p.value))
            .collect();
        Schema::Protos {
            files,
            import_paths,
        }
    } else if let Some(set) = protoset {
        Schema::Protoset(At {
            value: source.resolve(&set.value),
            loc: set.loc,
        })
    } else {
        Schema::Reflection
    }
}

/// The request messages: `data` (a table, or a list of tables sent round-robin) or
/// `data_file` (JSON lines), not both; none means one empty message.
pub(crate) fn read_messages(c: &TableReader<'_, '_, '_>) -> Option<Vec<RequestMessage>> {
    let ctx = c.ctx();
    let source = ctx.source;
    let scenario_message = |json, key: String, locs| RequestMessage {
        json,
        file: source.path.clone(),
        key,
        locs,
        from_data_file: false,
    };
    let data = c.raw("data");
    let data_file = c.string("data_file");
    match (data, data_file) {
        (Some(_), Some(f)) => {
            ctx.report_at(
                f.loc,
                &c.key_path("data_file"),
                "give `data` or `data_file`, not both",
            );
            None
        }
        (Some(v), None) if v.get_ref().is_table() => {
            let mut locs = Vec::new();
            let json = to_json(ctx, v, "data", &mut locs);
            Some(vec![scenario_message(json, "data".into(), locs)])
        }
        (Some(v), None) if v.get_ref().is_array() => {
            let items = v
                .get_ref()
                .as_array()
                .map(|a| a.iter().collect::<Vec<_>>())
                .unwrap_or_default();
            if items.is_empty() {
                ctx.report(
                    &v.span(),
                    &c.key_path("data"),
                    "an empty list sends nothing; give at least one message",
                );
                return None;
            }
            let mut out = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let key = format!("data[{i}]");
                if !item.get_ref().is_table() {
                    ctx.report(
                        &item.span(),
                        &c.key_path(&key),
                        format!(
                            "expected a table (a request message), found {}",
                            item.get_ref().type_str()
                        ),
                    );
                    continue;
                }
                let mut locs = Vec::new();
                let json = to_json(ctx, item, &key, &mut locs);
                out.push(scenario_message(json, key, locs));
            }
            Some(out)
        }
        (Some(v), None) => {
            ctx.report(
                &v.span(),
                &c.key_path("data"),
                format!(
                    "expected a table (the request message, e.g. {{ payload_size = 64 }}) or a list of them, found {}",
                    v.get_ref().type_str()
                ),
            );
            None
        }
        (None, Some(f)) => read_data_file(c, &f),
        (None, None) => Some(vec![scenario_message(
            serde_json::json!({}),
            "data".into(),
            Vec::new(),
        )]),
    }
}

/// Reads a JSON-lines file of request messages; blank lines are skipped.
pub(super) fn read_data_file(
    c: &TableReader<'_, '_, '_>,
    f: &At<String>,
) -> Option<Vec<RequestMessage>> {
    let ctx = c.ctx();
    let path = ctx.source.resolve(&f.value);
    let text = match crate::input::read_text(&path, crate::input::FileKind::DataFile) {
        Ok(t) => t,
        Err(e) => {
            ctx.report_at(
                f.loc,
                &c.key_path("data_file"),
                format!("{e} (a relative path is read from the folder of the file that names it)"),
            );
            return None;
        }
    };
    let mut out = Vec::new();
    let mut bad = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let loc = Loc {
            line: i + 1,
            column: 1,
        };
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(json) if json.is_object() => out.push(RequestMessage {
                json,
                file: path.clone(),
                key: format!("line {}", i + 1),
                locs: vec![(format!("line {}", i + 1), loc)],
                from_data_file: true,
            }),
            Ok(_) | Err(_) => {
                bad += 1;
                if bad <= 5 {
                    ctx.report_at(
                        f.loc,
                        &c.key_path("data_file"),
                        format!(
                            "{}:{}: not a JSON object (one request message per line)",
                            path.display(),
                            i + 1
                        ),
                    );
                }
            }
        }
    }
    if out.is_empty() && bad == 0 {
        ctx.report_at(
            f.loc,
            &c.key_path("data_file"),
            format!("{} has no messages", path.display()),
        );
        return None;
    }
    (bad == 0).then_some(out)
}

/// Headers the transport sets itself; a scenario may not override them.
pub(super) const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "te",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
    "user-agent",
    "host",
    "connection",
];

/// Whether `{{…}}` in a metadata value is a template rendered per call (a scenario's calls)
/// or text sent as written (probes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Templates {
    Rendered,
    Literal,
}

pub(crate) fn check_metadata(
    c: &TableReader<'_, '_, '_>,
    key: At<String>,
    value: String,
    templates: Templates,
) -> Option<(String, String)> {
    let path = c.key_path(&format!("metadata.{}", key.value));
    let name = key.value.to_ascii_lowercase();
    let template = match templates {
        Templates::Rendered => crate::grpc::template::Template::parse(&value),
        Templates::Literal => Ok(None),
    };
    let problem = if let Err(why) = &template {
        Some(why.clone())
    } else if name.ends_with("-bin") && matches!(template, Ok(Some(_))) {
        Some("a \"-bin\" value is base64 sent as written; templates fill text values (a key without \"-bin\")".into())
    } else if http::HeaderName::from_bytes(name.as_bytes()).is_err() || name.starts_with(':') {
        Some(format!(
            "\"{}\" is not a valid header name: use letters, digits and '-'",
            key.value
        ))
    } else if RESERVED_HEADERS.contains(&name.as_str()) {
        Some(format!("\"{name}\" is set by loadagent itself; use `timeout`, `compression` or `[target] authority` instead"))
    } else if !name.ends_with("-bin") && http::HeaderValue::from_str(&value).is_err() {
        Some("the value has characters a header cannot carry; use printable ASCII, or a key ending in \"-bin\" with base64".into())
    } else {
        None
    };
    match problem {
        Some(msg) => {
            c.ctx().report_at(key.loc, &path, msg);
            None
        }
        None => Some((name, value)),
    }
}
