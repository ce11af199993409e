//! `[target]` and `[target.tls]`: where the load goes (embedded, an address, a DNS name),
//! how (protocol, HTTP version, TLS options), and what of it is watched.

use super::reader::TableReader;
use crate::vocabulary::*;

pub(super) fn read_target(t: &TableReader<'_, '_, '_>) -> Option<Target> {
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
pub(super) fn check_web(
    root: &TableReader<'_, '_, '_>,
    protocol: Protocol,
    kind: Kind,
    call: Option<&Call>,
) {
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
