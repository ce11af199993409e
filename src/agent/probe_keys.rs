//! The keys that say how to probe a target — `service`, `timeout`, `mode`, `metadata`,
//! `tls`, the method probe's and gRPC-Web's — read by one reader for a `[[targets]]` entry
//! and a `[modules.NAME]` table alike.

use std::time::Duration;

use crate::probe::expect::Check;
use crate::probe::method::MethodProbe;
use crate::scenario::reader::TableReader;
use crate::scenario::{check_metadata, read_messages, read_schema, read_tls, Templates};
use crate::vocabulary::{HttpVersion, MethodName, Protocol, RequestMessage, Schema, TlsOptions};

/// How a target is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeMode {
    /// grpc.health.v1 Check every interval, over a kept connection.
    Check,
    /// A Watch stream kept open: the current status at once, then every change.
    Watch,
}

/// How a target is probed: the keys `[[targets]]` entries and `[modules.NAME]` tables share,
/// read by one reader (`read_probe_keys`).
#[derive(Debug, Clone)]
pub struct ProbeKeys {
    /// The health service name ("" = the whole server).
    pub service: String,
    /// How long one probe may take.
    pub timeout: Duration,
    /// Check every interval, or follow a Watch stream.
    pub mode: ProbeMode,
    /// Metadata sent with every probe.
    pub metadata: Vec<(String, String)>,
    /// TLS, when the target speaks it. Boxed, as `method` is: most targets have neither, and
    /// inline the two made every target's keys 576 bytes, twice (the config and the probers'
    /// copy): 1.5 MB of an agent with 1,000 targets (massif).
    pub tls: Option<Box<TlsOptions>>,
    /// `method` and what goes with it: a probe of that method beside (or, with
    /// `health = false`, instead of) the health check.
    pub method: Option<Box<MethodSpec>>,
    /// `protocol` and `http_version`: a gRPC-Web target is probed by its method over
    /// gRPC-Web (no health check: grpc.health.v1 is native gRPC).
    pub web: Option<(Protocol, HttpVersion)>,
}

/// A target's method probe as configured.
#[derive(Debug, Clone)]
pub struct MethodSpec {
    /// The method (`package.Service/Method`).
    pub name: MethodName,
    /// Where its types come from.
    pub schema: Schema,
    /// The requests (`data` or `data_file`).
    pub messages: Vec<RequestMessage>,
    /// The `expect` checks.
    pub checks: Vec<Check>,
    /// Prepared when the config is read if the types come from files; else by reflection
    /// at the first probe.
    pub prepared: Option<MethodProbe>,
    /// Whether the health service is checked too (`health`, default true).
    pub health: bool,
}

/// The keys that say how to probe (`service`, `timeout`, `mode`, `metadata`, `tls`, the method
/// probe's and gRPC-Web's), for a `[[targets]]` entry and a `[modules.NAME]` table alike.
/// `host` is the TLS name checked when the files are read (`None`: a module, whose host is
/// the probed target's). `None` when something is wrong (reported).
pub(super) fn read_probe_keys(
    t: &TableReader<'_, '_, '_>,
    host: Option<&str>,
) -> Option<ProbeKeys> {
    let service = t.string("service").map(|s| s.value).unwrap_or_default();
    let timeout = t
        .duration("timeout", true)
        .map_or(Duration::from_secs(1), |d| d.value);
    let mode = match t.choice("mode", &["check", "watch"]).map(|m| m.value) {
        Some(m) if m == "watch" => ProbeMode::Watch,
        _ => ProbeMode::Check,
    };
    let metadata: Vec<(String, String)> = t
        .string_map("metadata")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| check_metadata(t, k, v, Templates::Literal))
        .collect();
    let tls = t.table("tls").map(|tt| read_tls(&tt));
    let web = read_web(t);
    let method = read_method(t, mode, web.is_some());
    // `tls`: absent, present and valid, or present with problems (already reported). Files
    // (CA, client certificate) are read now, so an unreadable one fails the config.
    let tls = match tls {
        None => Some(None),
        Some(Some(o)) => {
            match crate::tls::ClientTls::build(&o, host.unwrap_or("localhost"), None) {
                Ok(_) => Some(Some(o)),
                Err(e) => {
                    t.ctx()
                        .report_at(o.loc, &t.key_path(&format!("tls.{}", e.key)), e.message);
                    None
                }
            }
        }
        Some(None) => None,
    };
    Some(ProbeKeys {
        service,
        timeout,
        mode,
        metadata,
        tls: tls?.map(Box::new),
        method: method?.map(Box::new),
        web,
    })
}

/// Reads `[modules.NAME]` tables: each takes the keys of a `[[targets]]` entry that say how
/// to probe (not `name`, `address`, `interval`, `resolve_every`: the target comes from the
/// request, the cadence from Prometheus).
pub(super) fn read_modules(
    t: &TableReader<'_, '_, '_>,
) -> std::collections::BTreeMap<String, ProbeKeys> {
    let mut out = std::collections::BTreeMap::new();
    for (name, loc) in t.keys_except(&[]) {
        if !valid_module_name(&name) {
            t.ctx().report_at(
                loc,
                &t.key_path(&name),
                "a module name is letters, digits, `_` and `-` (it is the `module` parameter of /probe)",
            );
        }
        let Some(m) = t.table_dynamic(&name) else {
            continue;
        };
        let keys = read_probe_keys(&m, None);
        m.finish();
        if let Some(keys) = keys {
            out.insert(name, keys);
        }
    }
    out
}

fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl MethodSpec {
    /// The `check` label of each check, in order: the implicit `status == OK` first when no
    /// check is on the status (as `MethodProbe` judges).
    pub fn check_labels(&self) -> Vec<String> {
        let mut out: Vec<String> = self.checks.iter().map(|c| c.text.clone()).collect();
        if !self.checks.iter().any(Check::is_on_status) {
            out.insert(0, crate::probe::method::IMPLICIT_STATUS_CHECK.to_string());
        }
        out
    }
}

/// `method`, `data`/`data_file`, `proto`/`import_paths`/`protoset`, `expect` and `health`:
/// `Some(None)` without a method, `None` when something is wrong (reported). With types from
/// files, the method, the request and every check are validated now.
fn read_method(
    t: &TableReader<'_, '_, '_>,
    mode: ProbeMode,
    web: bool,
) -> Option<Option<MethodSpec>> {
    let ctx = t.ctx();
    let health = t.boolean("health");
    let expect = t.string_list("expect");
    if web && health == Some(true) {
        ctx.report_at(
            t.loc(),
            &t.key_path("health"),
            "grpc.health.v1 is native gRPC: a gRPC-Web target is probed by its method alone; remove `health`",
        );
    }
    let Some(method) = t.string("method") else {
        if web {
            ctx.report_at(
                t.loc(),
                &t.key_path("method"),
                "a gRPC-Web target is probed by calling a method: add `method = \"package.Service/Method\"` (and `data`, `expect`)",
            );
            return None;
        }
        for key in [
            "data",
            "data_file",
            "proto",
            "import_paths",
            "protoset",
            "expect",
            "health",
        ] {
            if t.has(key) {
                ctx.report_at(
                    t.loc(),
                    &t.key_path(key),
                    "belongs to a method probe; add `method = \"package.Service/Method\"` or remove it",
                );
            }
        }
        return Some(None);
    };
    let name = MethodName::parse(&method.value);
    if name.is_none() {
        ctx.report_at(
            method.loc,
            &t.key_path("method"),
            format!(
                "\"{}\" is not a method name; write \"package.Service/Method\"",
                method.value
            ),
        );
    }
    if mode == ProbeMode::Watch {
        ctx.report_at(
            method.loc,
            &t.key_path("method"),
            "a method probe calls the method every interval; remove `mode = \"watch\"`",
        );
    }
    let schema = read_schema(t);
    let messages = read_messages(t);
    let mut checks = Vec::new();
    // Where each parsed check was written (its index in `expect`), so a problem found when
    // validating names the right one even after a check that did not parse.
    let mut written_at = Vec::new();
    let mut checks_ok = true;
    for (i, e) in expect.iter().flatten().enumerate() {
        match Check::parse(&e.value) {
            Ok(c) => {
                checks.push(c);
                written_at.push(i);
            }
            Err(err) => {
                checks_ok = false;
                ctx.report_at(e.loc, &t.key_path(&format!("expect[{i}]")), err.to_string());
            }
        }
    }
    let (name, messages) = (name?, messages?);
    let prepared = match crate::grpc::descriptors::pool_from_files(&schema) {
        None => None,
        Some(Err(e)) => {
            ctx.report_at(
                e.loc,
                &t.key_path(e.key),
                e.message.replace("the scenario file", "the config file"),
            );
            return None;
        }
        Some(Ok((pool, _))) => match MethodProbe::prepare(&pool, &name, &messages, &checks) {
            Ok(p) => Some(p),
            Err(problems) => {
                for mut p in problems {
                    let loc = if p.key == "method" {
                        method.loc
                    } else if let Some(i) = p
                        .key
                        .strip_prefix("expect[")
                        .and_then(|r| r.strip_suffix(']'))
                        .and_then(|i| i.parse::<usize>().ok())
                        .and_then(|i| written_at.get(i).copied())
                    {
                        p.key = format!("expect[{i}]");
                        expect
                            .as_ref()
                            .and_then(|e| e.get(i))
                            .map_or(t.loc(), |e| e.loc)
                    } else {
                        messages
                            .iter()
                            .flat_map(|m| m.locs.iter())
                            .find(|(k, _)| p.key.starts_with(k.as_str()))
                            .map_or(t.loc(), |(_, l)| *l)
                    };
                    ctx.report_at(loc, &t.key_path(&p.key), p.message);
                }
                return None;
            }
        },
    };
    if !checks_ok {
        return None;
    }
    Some(Some(MethodSpec {
        name,
        schema,
        messages,
        checks,
        prepared,
        health: !web && health.unwrap_or(true),
    }))
}

/// `protocol` and `http_version`: `None` for native gRPC.
fn read_web(t: &TableReader<'_, '_, '_>) -> Option<(Protocol, HttpVersion)> {
    let protocol = match t
        .choice("protocol", &["grpc", "grpc-web", "grpc-web-text"])
        .map(|p| p.value)
        .as_deref()
    {
        Some("grpc-web") => Protocol::GrpcWeb,
        Some("grpc-web-text") => Protocol::GrpcWebText,
        _ => Protocol::Grpc,
    };
    let version = t.choice("http_version", &["1.1", "2"]);
    if let (Some(v), false) = (&version, protocol.is_web()) {
        t.ctx().report_at(
            v.loc,
            &t.key_path("http_version"),
            "`http_version` chooses what gRPC-Web goes over; add `protocol = \"grpc-web\"` or remove it",
        );
    }
    let version = match version.map(|v| v.value).as_deref() {
        Some("2") => HttpVersion::Http2,
        _ => HttpVersion::Http1,
    };
    protocol.is_web().then_some((protocol, version))
}
