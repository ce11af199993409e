//! `loadagent probe`: one health check, grpc-health-probe's exit codes; or, with `--method`,
//! one call of any unary method judged by `--expect` checks (exit codes extended).

use crate::cli::ProbeArgs;
use crate::error::CommandError;
use crate::probe::expect::Check;
use crate::probe::method::{MethodProbe, PrepareError};
use crate::probe::once::{Module, ProbeVerdict, Target};
use crate::probe::verdict::Failure;
use crate::tls::ClientTls;
use crate::vocabulary::duration::parse_duration;
use crate::vocabulary::At;
use crate::vocabulary::HostPort;
use crate::vocabulary::{HttpVersion, Loc, Protocol, TlsOptions};
use crate::vocabulary::{MethodName, RequestMessage, Schema};

const BAD_ARGUMENTS: u8 = 1;
const CONNECTION_FAILED: u8 = 2;
const RPC_FAILED: u8 = 3;
const NOT_SERVING: u8 = 4;
/// `--method`: the call answered, but a check failed (or the response did not decode).
const CHECK_FAILED: u8 = 5;

/// TLS options from the probe's flags (the same model as a scenario's `[target.tls]`).
fn tls_options(a: &ProbeArgs) -> Option<TlsOptions> {
    a.tls.then(|| TlsOptions {
        ca: a.tls_ca.clone(),
        server_name: a.tls_server_name.clone(),
        insecure_skip_verify: a.tls_no_verify,
        cert: a.tls_cert.clone(),
        key: a.tls_key.clone(),
        ..TlsOptions::system_roots("h2")
    })
}

/// `--protocol grpc-web|grpc-web-text` (with `--http-version`): the method probe goes over
/// gRPC-Web.
fn web_of(a: &ProbeArgs) -> Option<(Protocol, HttpVersion)> {
    let version = if a.http_version == "2" {
        HttpVersion::Http2
    } else {
        HttpVersion::Http1
    };
    match a.protocol.as_str() {
        "grpc-web" => Some((Protocol::GrpcWeb, version)),
        "grpc-web-text" => Some((Protocol::GrpcWebText, version)),
        _ => None,
    }
}

/// `loadagent probe`, its arguments whole.
pub(super) async fn probe(a: ProbeArgs) -> Result<(), CommandError> {
    let bad = |m: String| CommandError::probe(BAD_ARGUMENTS, m);
    let timeout =
        parse_duration(&a.timeout).map_err(|e| bad(format!("--timeout \"{}\": {e}", a.timeout)))?;
    if let Ok(Some(name)) = crate::vocabulary::FleetName::parse(&a.address) {
        return Err(bad(format!(
            "\"{name}\" names a fleet; `probe` checks one address (\"host:port\"): probe each backend, or let the agent follow the name ([[targets]] address = \"{name}\")"
        )));
    }
    let address = HostPort::parse(&a.address).map_err(|e| bad(e.to_string()))?;
    // Checked here, so that the probe sends every pair it was given.
    let mut pairs = Vec::new();
    for kv in &a.metadata {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| bad(format!("-H {kv}: write key=value")))?;
        let key = tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(
            k.trim().to_ascii_lowercase().as_bytes(),
        )
        .map_err(|_| bad(format!("-H {kv}: `{k}` is not a header name")))?;
        v.trim()
            .parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>()
            .map_err(|_| bad(format!("-H {kv}: the value cannot be a header value")))?;
        pairs.push((key.as_str().to_string(), v.trim().to_string()));
    }
    let tls = match tls_options(&a) {
        None => None,
        Some(o) => {
            if o.insecure_skip_verify {
                eprintln!("warning: --tls-no-verify: the server's certificate is not verified");
            }
            Some(
                ClientTls::build(&o, address.host(), None)
                    .map_err(|e| bad(format!("--tls-{}: {e}", e.key.replace('_', "-"))))?,
            )
        }
    };
    let target = Target {
        address,
        tls,
        metadata: pairs,
        timeout,
    };
    let module = match &a.method {
        None => Module::Health {
            service: a.service.clone(),
            watch: a.watch,
        },
        Some(method) => {
            // Types from files are checked before connecting: a wrong method, request or
            // check is a bad argument whether or not the target is up.
            let probe = match method_probe_from_files(&a, method)? {
                Some(p) => p,
                None => method_probe_by_reflection(&a, method, &target).await?,
            };
            match web_of(&a) {
                None => Module::Method(probe),
                Some((protocol, http_version)) => {
                    let options = crate::grpc::web::WebOptions {
                        protocol,
                        http_version,
                        cors_origin: None,
                        connect_timeout: timeout,
                    };
                    Module::web(probe, &target, &a.address, &options)
                        .map_err(|e| bad(e.to_string()))?
                }
            }
        }
    };
    let verdict = crate::probe::once::once(&target, &module).await;
    print_verdict(&verdict);
    match verdict.failure {
        None => Ok(()),
        Some((kind, why)) => Err(CommandError::probe(exit_code(kind), why)),
    }
}

/// grpc-health-probe's exit codes, extended by `CHECK_FAILED`.
fn exit_code(kind: Failure) -> u8 {
    match kind {
        Failure::Connect => CONNECTION_FAILED,
        Failure::Rpc => RPC_FAILED,
        Failure::NotServing => NOT_SERVING,
        Failure::Check => CHECK_FAILED,
    }
}

/// What the probe answered: the health status when SERVING (a failure is the error's
/// message), or a method's status, response and how each check went.
fn print_verdict(v: &ProbeVerdict) {
    if let Some(h) = &v.health {
        if v.failure.is_none() {
            println!("status: {}", h.status.unwrap_or("UNKNOWN"));
        }
    }
    if let Some(call) = &v.call {
        let name = crate::grpc::status::code_name(call.code);
        if call.status_message.is_empty() {
            println!("status: {name}");
        } else {
            println!("status: {name}: {}", call.status_message);
        }
        if let Some(r) = &call.response {
            if let Ok(json) = serde_json::to_string(r) {
                println!("response: {json}");
            }
        }
        for (check, why) in &call.checks {
            match why {
                None => println!("check `{check}`: passed"),
                Some(why) => println!("check `{check}`: FAILED: {why}"),
            }
        }
    }
}

fn bad_arguments(m: impl std::fmt::Display) -> CommandError {
    CommandError::probe(BAD_ARGUMENTS, m)
}

/// The method, request and checks as the flags give them.
fn method_parts(
    m: &ProbeArgs,
    method: &str,
) -> Result<(MethodName, Vec<RequestMessage>, Vec<Check>), CommandError> {
    let name = MethodName::parse(method).ok_or_else(|| {
        bad_arguments(format!(
            "--method \"{}\" is not a method name; write package.Service/Method",
            method
        ))
    })?;
    let text = m.data.as_deref().unwrap_or("{}");
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad_arguments(format!("--data is not JSON: {e}")))?;
    if !json.is_object() {
        return Err(bad_arguments(
            "--data must be a JSON object (the request message, e.g. '{\"name\": \"x\"}')",
        ));
    }
    let message = RequestMessage {
        json,
        file: "--data".into(),
        key: "--data".into(),
        locs: Vec::new(),
        from_data_file: false,
    };
    let mut checks = Vec::new();
    for e in &m.expect {
        checks.push(Check::parse(e).map_err(|e| bad_arguments(format!("--expect {e}")))?);
    }
    Ok((name, vec![message], checks))
}

fn prepare(
    m: &ProbeArgs,
    method: &str,
    pool: &prost_reflect::DescriptorPool,
) -> Result<MethodProbe, CommandError> {
    let (name, messages, checks) = method_parts(m, method)?;
    MethodProbe::prepare(pool, &name, &messages, &checks).map_err(|p| problems_as_flags(&p))
}

/// Problems of a method probe, each named by the flag it came from.
fn problems_as_flags(problems: &[crate::probe::method::DefinitionError]) -> CommandError {
    bad_arguments(
        problems
            .iter()
            .map(|p| format!("--{}: {}", flag_of(&p.key), p.message))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The flag a problem's key came from (`expect[1]` → `expect`, `data.a.b` → `data`).
fn flag_of(key: &str) -> &str {
    let key = key.trim_start_matches('-');
    key.split(['[', '.']).next().unwrap_or(key)
}

/// A method probe whose types come from `--proto`/`--protoset`; `None` when they come from
/// the server by reflection.
fn method_probe_from_files(
    m: &ProbeArgs,
    method: &str,
) -> Result<Option<MethodProbe>, CommandError> {
    let loc = Loc::default();
    let schema = if !m.proto.is_empty() {
        Schema::Protos {
            files: m
                .proto
                .iter()
                .map(|f| At {
                    value: f.clone(),
                    loc,
                })
                .collect(),
            import_paths: m.import_path.clone(),
        }
    } else if let Some(set) = &m.protoset {
        Schema::Protoset(At {
            value: set.clone(),
            loc,
        })
    } else {
        // The flags are still checked before connecting.
        method_parts(m, method)?;
        return Ok(None);
    };
    match crate::grpc::descriptors::pool_from_files(&schema) {
        Some(Ok((pool, _))) => prepare(m, method, &pool).map(Some),
        Some(Err(e)) => Err(bad_arguments(format!("--{}: {}", e.key, e.message))),
        None => Ok(None),
    }
}

async fn method_probe_by_reflection(
    m: &ProbeArgs,
    method: &str,
    target: &Target,
) -> Result<MethodProbe, CommandError> {
    let (name, messages, checks) = method_parts(m, method)?;
    let probe = crate::probe::method::by_reflection(
        &target.address,
        &name,
        &messages,
        &checks,
        target.timeout,
        target.tls.as_ref(),
    )
    .await;
    probe.map_err(|e| match e {
        PrepareError::Reflection(e) => bad_arguments(format!(
            "--method {}: the types could not be had by reflection: {e} (--proto FILE or --protoset FILE)",
            method
        )),
        PrepareError::Problems(problems) => problems_as_flags(&problems),
    })
}
