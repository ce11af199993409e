//! Scenario files: TOML → a validated [`Scenario`], with every problem reported at once.

pub mod address;
pub mod capacity;
pub mod defaults;
pub mod duration;
pub mod labels;
pub mod model;
pub mod naming;
pub mod problems;
pub mod reader;
pub mod schema;
pub mod shard;
pub mod source;
pub mod thresholds;
pub mod tracing;
pub mod url;
pub mod watch;

use std::path::Path;
use std::time::Duration;

use toml::de::DeTable;

pub use address::{AddressError, HostPort};
pub use defaults::*;
pub use model::*;
pub use naming::{FleetName, Lookup, NameError};
pub use problems::{Problem, Problems};
use reader::{quoted_list, to_json, At, Ctx, TableReader};
pub use shard::{Shard, ShardError};
pub use source::{Loc, Source};

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{0}")]
    Read(#[from] crate::input::InputError),
    #[error("{0}")]
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
    let call = if kind == Some(Kind::TlsHandshake) && !root.has("call") {
        None
    } else {
        section(
            root,
            "call",
            "add a [call] table with `method = \"package.Service/Method\"`",
        )
    }
    .and_then(|c| read_call(&c))
    .map(|mut c| {
        if matches!(kind, Some(Kind::Unary | Kind::TlsHandshake)) && c.timeout.is_none() {
            c.timeout = Some(DEFAULT_CALL_TIMEOUT);
        }
        c
    });
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
            check_web(root, t.protocol, kind, call.as_ref());
        }
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
            (None, Some(Kind::TlsHandshake)) if !root.has("call") => None,
            (call, _) => Some(call?),
        },
        load: load?,
        thresholds,
        stream: stream?,
        tracing,
        labels,
        capacity,
    })
}

/// With `[capacity]` the search sets the rate and the length of the run, and judges each
/// step on its SLO: what would set or judge them otherwise is refused.
fn search_sets_the_load(root: &TableReader<'_, '_, '_>, thresholds: &thresholds::Thresholds) {
    if let Some(l) = root.table("load") {
        for key in ["rate", "duration", "requests", "stages"] {
            if l.has(key) {
                root.ctx().report_at(
                    l.loc(),
                    &format!("load.{key}"),
                    "a capacity search sets the rate and the run's length itself ([capacity] start_rate, max_rate, max_duration): remove it",
                );
            }
        }
    }
    if !thresholds.list.is_empty() {
        root.ctx().report_at(
            root.loc(),
            "thresholds",
            "a capacity search judges each step on [capacity] slo; thresholds on the whole search would mix its steps: move the conditions to slo",
        );
    }
}

/// `labels = { KEY = "VALUE" }`: each checked (`labels::problem`), at most `MAX_LABELS`.
fn read_labels(root: &TableReader<'_, '_, '_>) -> std::collections::BTreeMap<String, String> {
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

/// `[stream]`, for the streaming kinds only. `messages` defaults to the number of messages in
/// `data` for client and bidi streams (ghz's convention), and to 0 (until the server closes
/// the stream) for server streams.
fn read_stream(
    root: &TableReader<'_, '_, '_>,
    kind: Option<Kind>,
    data_messages: u64,
) -> Option<StreamOptions> {
    let kind = kind.unwrap_or(Kind::Unary);
    let default_messages = if kind == Kind::ServerStream {
        0
    } else {
        data_messages.max(1)
    };
    let mut options = StreamOptions {
        messages: default_messages,
        message_interval: Duration::ZERO,
        message_rate: None,
        stream_duration: None,
        mode: BidiMode::PingPong,
    };
    let Some(t) = root.table("stream") else {
        return Some(options);
    };
    if !kind.is_stream() {
        root.ctx().report_at(t.loc(), "stream", "[stream] applies to the streaming kinds (server_stream, client_stream, bidi_stream); remove it or change `kind`");
    }
    let min_messages = if kind == Kind::ServerStream { 0 } else { 1 };
    if let Some(m) = t.integer("messages", min_messages) {
        options.messages = m.value;
    }
    let interval = t.duration("message_interval", false);
    if let Some(d) = &interval {
        options.message_interval = d.value;
    }
    if let Some(r) = t.number("message_rate", true) {
        if interval.is_some() {
            root.ctx().report_at(
                r.loc,
                &t.key_path("message_rate"),
                "give `message_rate` (a schedule: messages per second per stream) or `message_interval` (a pause after each message), not both",
            );
        } else if kind == Kind::ServerStream {
            root.ctx().report_at(
                r.loc,
                &t.key_path("message_rate"),
                "a server stream sends one request; `message_rate` paces the client's messages (client_stream, bidi_stream)",
            );
        } else if 1.0 / r.value > duration::MAX_DURATION.as_secs_f64() {
            root.ctx().report_at(
                r.loc,
                &t.key_path("message_rate"),
                format!(
                    "{} is too slow: one message at most every {}",
                    r.value,
                    duration::MAX_DURATION_TEXT
                ),
            );
        } else {
            options.message_rate = Some(r.value);
        }
    }
    options.stream_duration = t.duration("stream_duration", true).map(|d| d.value);
    if let Some(mode) = t.choice("mode", &["ping_pong", "pipelined"]) {
        if kind != Kind::BidiStream {
            root.ctx().report_at(
                mode.loc,
                &t.key_path("mode"),
                "`mode` applies to bidi_stream only",
            );
        }
        options.mode = if mode.value == "pipelined" {
            BidiMode::Pipelined
        } else {
            BidiMode::PingPong
        };
    }
    t.finish();
    Some(options)
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

fn read_target(t: &TableReader<'_, '_, '_>) -> Option<Target> {
    let address = t.required_string(
        "address",
        "write \"embedded\", \"host:port\" or a DNS name (\"dns:///NAME:PORT\")",
    );
    let authority = t.string("authority").map(|a| a.value);
    let connect_timeout = t
        .duration("connect_timeout", true)
        .map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.value);
    let address = address.and_then(|a| {
        if a.value == "embedded" {
            return Some(Address::Embedded);
        }
        match FleetName::parse(&a.value) {
            Ok(Some(name)) => return Some(Address::Fleet(name)),
            Ok(None) => {}
            Err(e) => {
                t.ctx()
                    .report_at(a.loc, &t.key_path("address"), e.to_string());
                return None;
            }
        }
        match HostPort::parse(&a.value) {
            Ok(hp) => Some(Address::Remote(hp)),
            Err(e) => {
                t.ctx().report_at(
                    a.loc,
                    &t.key_path("address"),
                    format!("{e}, or \"embedded\""),
                );
                None
            }
        }
    });
    let resolve_every = t.duration("resolve_every", true);
    let balance = t.string("balance").and_then(|b| match b.value.as_str() {
        "round_robin" => Some(Balance::RoundRobin),
        "pick_first" => Some(Balance::PickFirst),
        other => {
            t.ctx().report_at(
                b.loc,
                &t.key_path("balance"),
                format!("\"{other}\" is not a balancing policy; write \"round_robin\" or \"pick_first\""),
            );
            None
        }
    });
    if let (Some(a), Some(Address::Remote(_) | Address::Embedded)) =
        (resolve_every.as_ref().map(|r| r.loc), address.as_ref())
    {
        t.ctx().report_at(
            a,
            &t.key_path("resolve_every"),
            "applies to a DNS name only (\"dns:///NAME:PORT\", \"dns+srv://…\"); remove it or name the target by DNS",
        );
    }
    if resolve_every
        .as_ref()
        .is_some_and(|r| r.value < MIN_RESOLVE_EVERY)
    {
        if let Some(r) = &resolve_every {
            t.ctx().report_at(
                r.loc,
                &t.key_path("resolve_every"),
                format!(
                    "at least {MIN_RESOLVE_EVERY:?}: more often would be a DNS load test; write e.g. \"5s\""
                ),
            );
        }
    }
    let protocol = t
        .choice("protocol", &["grpc", "grpc-web", "grpc-web-text"])
        .map_or(Protocol::Grpc, |p| match p.value.as_str() {
            "grpc-web" => Protocol::GrpcWeb,
            "grpc-web-text" => Protocol::GrpcWebText,
            _ => Protocol::Grpc,
        });
    let http_version = t.choice("http_version", &["1.1", "2"]);
    if let Some(v) = &http_version {
        if !protocol.is_web() {
            t.ctx().report_at(
                v.loc,
                &t.key_path("http_version"),
                "native gRPC is HTTP/2 only; `http_version` chooses what gRPC-Web goes over (with `protocol = \"grpc-web\"`)",
            );
        }
    }
    let cors_origin = t.string("cors_origin").and_then(|o| {
        let valid = (o.value.starts_with("http://") || o.value.starts_with("https://"))
            && http::HeaderValue::from_str(&o.value).is_ok()
            && !o.value.trim_end_matches('/').contains(|c: char| c.is_whitespace());
        if !protocol.is_web() {
            t.ctx().report_at(
                o.loc,
                &t.key_path("cors_origin"),
                "CORS is a browser's: `cors_origin` goes with `protocol = \"grpc-web\"`",
            );
            None
        } else if !valid {
            t.ctx().report_at(
                o.loc,
                &t.key_path("cors_origin"),
                format!("\"{}\" is not an origin; write the page's scheme and host, e.g. \"https://app.example.com\"", o.value),
            );
            None
        } else {
            Some(o.value)
        }
    });
    let http_version = match http_version.map(|v| v.value) {
        Some(v) if v == "2" => HttpVersion::Http2,
        _ => HttpVersion::Http1,
    };
    let tls = t.table("tls").map(|tt| read_tls(&tt));
    let process = t.string("process").and_then(|p| {
        if p.value.trim().is_empty() {
            t.ctx().report_at(
                p.loc,
                &t.key_path("process"),
                "empty; write the target's process name (as in /proc/PID/comm) or a pid file path",
            );
            return None;
        }
        // A relative pid file path is relative to the scenario, like every other path.
        Some(if watch::is_pid_file(&p.value) {
            t.ctx().source.resolve(&p.value).display().to_string()
        } else {
            p.value
        })
    });
    let metrics_url =
        t.string("metrics_url")
            .and_then(|u| match watch::check_metrics_url(&u.value) {
                Ok(()) => Some(u.value),
                Err(why) => {
                    t.ctx()
                        .report_at(u.loc, &t.key_path("metrics_url"), why.to_string());
                    None
                }
            });
    t.finish();
    Some(Target {
        watch: watch::TargetSpec {
            process,
            metrics_url,
        },
        tls: match tls {
            Some(None) => return None,
            Some(Some(o)) => Some(o),
            None => None,
        },
        address: address?,
        authority,
        connect_timeout,
        resolve_every: resolve_every.map_or(DEFAULT_RESOLVE_EVERY, |r| r.value),
        balance: balance.unwrap_or_default(),
        protocol,
        http_version,
        cors_origin,
    })
}

/// What gRPC-Web cannot carry: client and bidi streams (browsers cannot stream a request),
/// handshake storms (native connections), compressed requests.
fn check_web(root: &TableReader<'_, '_, '_>, protocol: Protocol, kind: Kind, call: Option<&Call>) {
    if !matches!(kind, Kind::Unary | Kind::ServerStream) {
        root.ctx().report_at(
            root.loc(),
            "target.protocol",
            format!(
                "\"{}\" carries unary and server_stream calls only, not kind = \"{}\"; use protocol = \"grpc\" for that kind",
                protocol.as_str(),
                kind.as_str()
            ),
        );
    }
    if call.is_some_and(|c| c.compression.is_some()) {
        root.ctx().report_at(
            root.loc(),
            "call.compression",
            "gRPC-Web requests are sent uncompressed; remove `compression`",
        );
    }
}

pub(crate) fn read_tls(t: &TableReader<'_, '_, '_>) -> Option<TlsOptions> {
    let source = t.ctx().source;
    let path = |k: &'static str| t.string(k).map(|p| source.resolve(&p.value));
    let list = |k: &'static str| {
        t.string_list(k)
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.value)
            .collect::<Vec<_>>()
    };
    let ca = path("ca");
    let server_name = t.string("server_name").map(|s| s.value);
    let insecure_skip_verify = t.boolean("insecure_skip_verify").unwrap_or(false);
    let cert = path("cert");
    let key = path("key");
    let versions = t.string_list("versions").unwrap_or_default();
    let mut ok = true;
    for v in &versions {
        if v.value != "1.2" && v.value != "1.3" {
            t.ctx().report_at(
                v.loc,
                &t.key_path("versions"),
                format!(
                    "\"{}\" is not a TLS version loadagent speaks; valid: \"1.2\", \"1.3\"",
                    v.value
                ),
            );
            ok = false;
        }
    }
    let resumption = match t
        .choice("resumption", &["none", "tickets", "session_id"])
        .map(|r| r.value)
    {
        Some(r) if r == "tickets" => Resumption::Tickets,
        Some(r) if r == "session_id" => Resumption::SessionId,
        _ => Resumption::None,
    };
    let alpn = t
        .string_list("alpn")
        .map(|l| l.into_iter().map(|v| v.value).collect())
        .unwrap_or_else(|| vec!["h2".to_string()]);
    let close_with_rst = t
        .choice("close", &["fin", "rst"])
        .is_some_and(|c| c.value == "rst");
    let options = TlsOptions {
        ca,
        server_name,
        insecure_skip_verify,
        cert,
        key,
        versions: versions.into_iter().map(|v| v.value).collect(),
        cipher_suites: list("cipher_suites"),
        groups: list("groups"),
        resumption,
        alpn,
        close_with_rst,
        loc: t.loc(),
    };
    t.finish();
    ok.then_some(options)
}

/// An address to listen on: `host:port`, where port 0 asks the system for a free one.
pub fn valid_listen(s: &str) -> bool {
    HostPort::parse_listen(s).is_ok()
}

fn read_call(c: &TableReader<'_, '_, '_>) -> Option<Call> {
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
        .filter_map(|(k, v)| check_metadata(c, k, v))
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
    })
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
fn read_data_file(c: &TableReader<'_, '_, '_>, f: &At<String>) -> Option<Vec<RequestMessage>> {
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
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "te",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
    "user-agent",
    "host",
    "connection",
];

pub(crate) fn check_metadata(
    c: &TableReader<'_, '_, '_>,
    key: At<String>,
    value: String,
) -> Option<(String, String)> {
    let path = c.key_path(&format!("metadata.{}", key.value));
    let name = key.value.to_ascii_lowercase();
    let problem = if http::HeaderName::from_bytes(name.as_bytes()).is_err() || name.starts_with(':')
    {
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

fn read_load(l: &TableReader<'_, '_, '_>) -> Option<Load> {
    let ctx = l.ctx();
    let rate = l.number("rate", true).map(|r| r.value);
    let concurrency = l.integer("concurrency", 1).map(|c| c.value);
    let connections = l.integer("connections", 1).map(|c| c.value);
    let duration = l.duration("duration", true);
    let requests = l.integer("requests", 1).map(|r| r.value);
    let warmup = l.duration("warmup", false).map(|w| w.value);
    let threads = l
        .integer("threads", 1)
        .and_then(|t| u32::try_from(t.value).ok());
    let mut stages = Vec::new();
    let stage_tables = l.tables("stages");
    for st in &stage_tables {
        let d = st.duration("duration", true);
        let r = st.number("rate", false);
        if !st.has("duration") {
            ctx.report_at(
                st.loc(),
                &st.key_path("duration"),
                "missing; each stage needs `duration` and `rate`",
            );
        }
        if !st.has("rate") {
            ctx.report_at(
                st.loc(),
                &st.key_path("rate"),
                "missing; each stage needs `duration` and `rate` (the rate reached at its end)",
            );
        }
        if let (Some(d), Some(r)) = (d, r) {
            stages.push(Stage {
                duration: d.value,
                rate: r.value,
            });
        }
    }
    for st in &stage_tables {
        st.finish();
    }
    if let (Some(d), false) = (&duration, stages.is_empty()) {
        ctx.report_at(
            d.loc,
            &l.key_path("duration"),
            "cannot be given with [[load.stages]]: the stages' durations add up to the run's length; remove one",
        );
    }
    // Each duration is bounded when read; their sum is bounded too, so the run's end is an
    // instant that exists.
    let length = stages
        .iter()
        .map(|s| s.duration)
        .chain(duration.as_ref().map(|d| d.value))
        .chain(warmup)
        .try_fold(Duration::ZERO, Duration::checked_add);
    if length.is_none_or(|t| t > duration::MAX_DURATION) {
        ctx.report_at(
            l.loc(),
            &l.key_path(if stages.is_empty() {
                "duration"
            } else {
                "stages"
            }),
            format!(
                "the run (warm-up, duration and stages together) is longer than the maximum, {}",
                duration::MAX_DURATION_TEXT
            ),
        );
    }
    let concurrency = concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    let connections = connections.unwrap_or(DEFAULT_CONNECTIONS);
    let bound = |v: u64, key: &str| -> Option<u32> {
        match u32::try_from(v) {
            Ok(n) if n <= MAX_SLOTS => Some(n),
            _ => {
                ctx.report_at(
                    l.loc(),
                    &l.key_path(key),
                    format!("{v} is too large (at most {MAX_SLOTS})"),
                );
                None
            }
        }
    };
    let concurrency = bound(concurrency, "concurrency");
    let connections = bound(connections, "connections");
    l.finish();
    let duration = duration.map(|d| d.value);
    let duration = if duration.is_none() && requests.is_none() && stages.is_empty() {
        Some(DEFAULT_DURATION)
    } else {
        duration
    };
    Some(Load {
        rate,
        stages,
        concurrency: concurrency?,
        connections: connections?,
        duration,
        requests,
        warmup: warmup.unwrap_or(Duration::ZERO),
        threads,
    })
}

fn read_load_defaults() -> Option<Load> {
    Some(Load {
        rate: None,
        stages: Vec::new(),
        concurrency: DEFAULT_CONCURRENCY as u32,
        connections: DEFAULT_CONNECTIONS as u32,
        duration: Some(DEFAULT_DURATION),
        requests: None,
        warmup: Duration::ZERO,
        threads: None,
    })
}
