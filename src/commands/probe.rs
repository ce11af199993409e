//! `loadagent probe`: one health check, grpc-health-probe's exit codes; or, with `--method`,
//! one call of any unary method judged by `--expect` checks (exit codes extended).

use crate::error::CommandError;
use crate::grpc::expect::Check;
use crate::grpc::method_probe::{MethodProbe, IMPLICIT_STATUS_CHECK};
use crate::probe::health::{self, HealthAnswer};
use crate::probe::method::PrepareError;
use crate::scenario::duration::parse_duration;
use crate::scenario::reader::At;
use crate::scenario::HostPort;
use crate::scenario::{Loc, Resumption, TlsOptions};
use crate::scenario::{MethodName, RequestMessage, Schema};
use crate::tls::ClientTls;

const BAD_ARGUMENTS: u8 = 1;
const CONNECTION_FAILED: u8 = 2;
const RPC_FAILED: u8 = 3;
const NOT_SERVING: u8 = 4;
/// `--method`: the call answered, but a check failed (or the response did not decode).
const CHECK_FAILED: u8 = 5;

/// What `probe` was asked.
pub struct ProbeArgs {
    pub address: String,
    pub service: String,
    pub timeout: String,
    pub watch: bool,
    pub metadata: Vec<String>,
    pub tls: Option<TlsOptions>,
    /// `--method` and what goes with it: a method probe instead of a health check.
    pub method: Option<MethodArgs>,
    /// `--protocol grpc-web|grpc-web-text` (with `--http-version`): the method probe goes
    /// over gRPC-Web.
    pub web: Option<(crate::scenario::Protocol, crate::scenario::HttpVersion)>,
}

/// What `probe --method` was asked.
pub struct MethodArgs {
    pub method: String,
    /// The request, JSON in the protobuf mapping ("{}" when absent).
    pub data: Option<String>,
    pub expect: Vec<String>,
    pub proto: Vec<std::path::PathBuf>,
    pub import_paths: Vec<std::path::PathBuf>,
    pub protoset: Option<std::path::PathBuf>,
}

/// TLS options from the probe's flags (the same model as a scenario's `[target.tls]`).
#[allow(clippy::too_many_arguments)]
pub fn tls_options(
    tls: bool,
    ca: Option<std::path::PathBuf>,
    server_name: Option<String>,
    no_verify: bool,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
) -> Option<TlsOptions> {
    tls.then(|| TlsOptions {
        ca,
        server_name,
        insecure_skip_verify: no_verify,
        cert,
        key,
        versions: Vec::new(),
        cipher_suites: Vec::new(),
        groups: Vec::new(),
        resumption: Resumption::None,
        alpn: vec!["h2".into()],
        close_with_rst: false,
        loc: Loc::default(),
    })
}

pub async fn probe(a: ProbeArgs) -> Result<(), CommandError> {
    let bad = |m: String| CommandError::probe(BAD_ARGUMENTS, m);
    let timeout =
        parse_duration(&a.timeout).map_err(|e| bad(format!("--timeout \"{}\": {e}", a.timeout)))?;
    if let Ok(Some(name)) = crate::scenario::FleetName::parse(&a.address) {
        return Err(bad(format!(
            "\"{name}\" names a fleet; `probe` checks one address (\"host:port\"): probe each backend, or let the agent follow the name ([[targets]] address = \"{name}\")"
        )));
    }
    let address = HostPort::parse(&a.address).map_err(|e| bad(e.to_string()))?;
    let mut metadata = tonic::metadata::MetadataMap::new();
    let mut pairs = Vec::new();
    for kv in &a.metadata {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| bad(format!("-H {kv}: write key=value")))?;
        let key =
            tonic::metadata::MetadataKey::from_bytes(k.trim().to_ascii_lowercase().as_bytes())
                .map_err(|_| bad(format!("-H {kv}: `{k}` is not a header name")))?;
        let value = v
            .trim()
            .parse()
            .map_err(|_| bad(format!("-H {kv}: the value cannot be a header value")))?;
        pairs.push((key.as_str().to_string(), v.trim().to_string()));
        metadata.insert(key, value);
    }
    let tls = match &a.tls {
        None => None,
        Some(o) => {
            if o.insecure_skip_verify {
                eprintln!("warning: --tls-no-verify: the server's certificate is not verified");
            }
            Some(
                ClientTls::build(o, address.host(), None)
                    .map_err(|e| bad(format!("--tls-{}: {e}", e.key.replace('_', "-"))))?,
            )
        }
    };
    // Types from files are checked before connecting: a wrong method, request or check is a
    // bad argument whether or not the target is up.
    let prepared = match &a.method {
        Some(m) => method_probe_from_files(m)?,
        None => None,
    };
    if let (Some((protocol, http_version)), Some(m)) = (a.web, &a.method) {
        let probe = match prepared {
            Some(p) => p,
            None => method_probe_by_reflection(m, &address, timeout, tls.as_ref()).await?,
        };
        let options = crate::grpc::web::WebOptions {
            protocol,
            http_version,
            cors_origin: None,
            connect_timeout: timeout,
        };
        let call = probe
            .web_call(&a.address, &pairs, timeout, &options, tls.as_ref())
            .map_err(|e| bad(e.to_string()))?;
        let mut sender = crate::grpc::web::connect(&call.endpoint(address.clone()), http_version)
            .await
            .map_err(|e| cannot_connect(&a.address, e))?;
        let mut renderer = crate::grpc::request::Renderer::new(0);
        let verdict = probe.call_web(&call, &mut sender, 0, &mut renderer).await;
        return judged(verdict);
    }
    // One HTTP/2 connection proven first (our preface, the server's PING answer): a server
    // that does not speak HTTP/2 is a failed connection (exit 2, as `run` says it and as
    // grpc-health-probe counts it), not an RPC whose status changes from run to run.
    let proof = crate::grpc::channel::Endpoint {
        address: address.clone(),
        connect_timeout: timeout,
        tls: tls.clone(),
    };
    crate::grpc::channel::connect(&proof)
        .await
        .map_err(|e| cannot_connect(&a.address, e.first_contact()))?;
    let channel = crate::grpc::control::channel(&address, None, timeout, tls.as_ref())
        .await
        .map_err(|e| cannot_connect(&a.address, e))?;
    if let Some(m) = &a.method {
        let probe = match prepared {
            Some(p) => p,
            None => method_probe_by_reflection(m, &address, timeout, tls.as_ref()).await?,
        };
        return call_method(&probe, channel, &metadata, timeout).await;
    }
    let pairs = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let request = health::request(&a.service, pairs);
    let answer = if a.watch {
        health::watch_first(channel, request, timeout).await
    } else {
        health::check(channel, request, timeout).await
    };
    let status = match answer {
        HealthAnswer::Status(s) => s,
        HealthAnswer::Failed(s) => {
            return Err(CommandError::probe(
                RPC_FAILED,
                format!("health rpc failed: {}: {}", s.code(), s.message()),
            ))
        }
        HealthAnswer::Ended => {
            return Err(CommandError::probe(
                RPC_FAILED,
                "health watch ended without a status",
            ))
        }
        HealthAnswer::NoAnswer(t) => {
            return Err(CommandError::probe(
                RPC_FAILED,
                format!("no health status within {t:?}"),
            ))
        }
    };
    let name = health::status_name(status);
    if answer_is_serving(status) {
        println!("status: {name}");
        Ok(())
    } else {
        Err(CommandError::probe(
            NOT_SERVING,
            format!("service unhealthy (responded with \"{name}\")"),
        ))
    }
}

fn answer_is_serving(status: i32) -> bool {
    HealthAnswer::Status(status).is_serving()
}

fn cannot_connect(address: &str, e: impl std::fmt::Display) -> CommandError {
    CommandError::probe(
        CONNECTION_FAILED,
        format!("cannot connect to {address}: {e}"),
    )
}

fn bad_arguments(m: impl std::fmt::Display) -> CommandError {
    CommandError::probe(BAD_ARGUMENTS, m)
}

/// The method, request and checks as the flags give them.
fn method_parts(
    m: &MethodArgs,
) -> Result<(MethodName, Vec<RequestMessage>, Vec<Check>), CommandError> {
    let name = MethodName::parse(&m.method).ok_or_else(|| {
        bad_arguments(format!(
            "--method \"{}\" is not a method name; write package.Service/Method",
            m.method
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
    m: &MethodArgs,
    pool: &prost_reflect::DescriptorPool,
) -> Result<MethodProbe, CommandError> {
    let (name, messages, checks) = method_parts(m)?;
    MethodProbe::prepare(pool, &name, &messages, &checks).map_err(|p| problems_as_flags(&p))
}

/// Problems of a method probe, each named by the flag it came from.
fn problems_as_flags(problems: &[crate::grpc::method_probe::DefinitionError]) -> CommandError {
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
fn method_probe_from_files(m: &MethodArgs) -> Result<Option<MethodProbe>, CommandError> {
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
            import_paths: m.import_paths.clone(),
        }
    } else if let Some(set) = &m.protoset {
        Schema::Protoset(At {
            value: set.clone(),
            loc,
        })
    } else {
        // The flags are still checked before connecting.
        method_parts(m)?;
        return Ok(None);
    };
    match crate::grpc::descriptors::pool_from_files(&schema) {
        Some(Ok((pool, _))) => prepare(m, &pool).map(Some),
        Some(Err(e)) => Err(bad_arguments(format!("--{}: {}", e.key, e.message))),
        None => Ok(None),
    }
}

async fn method_probe_by_reflection(
    m: &MethodArgs,
    address: &HostPort,
    timeout: std::time::Duration,
    tls: Option<&ClientTls>,
) -> Result<MethodProbe, CommandError> {
    let (name, messages, checks) = method_parts(m)?;
    crate::probe::method::by_reflection(address, &name, &messages, &checks, timeout, tls)
        .await
        .map_err(|e| match e {
            PrepareError::Reflection(e) => bad_arguments(format!(
                "--method {}: the types could not be had by reflection: {e} (--proto FILE or --protoset FILE)",
                m.method
            )),
            PrepareError::Problems(problems) => problems_as_flags(&problems),
        })
}

/// Calls the method once and prints what it answered and how each check went.
async fn call_method(
    probe: &MethodProbe,
    channel: tonic::transport::Channel,
    metadata: &tonic::metadata::MetadataMap,
    timeout: std::time::Duration,
) -> Result<(), CommandError> {
    let mut renderer = crate::grpc::request::Renderer::new(0);
    let verdict = probe
        .call(channel, 0, &mut renderer, metadata, timeout)
        .await;
    judged(verdict)
}

/// Prints what the call answered and how each check went; the exit code.
fn judged(verdict: crate::grpc::method_probe::Verdict) -> Result<(), CommandError> {
    let name = crate::grpc::status::code_name(verdict.code);
    if verdict.status_message.is_empty() {
        println!("status: {name}");
    } else {
        println!("status: {name}: {}", verdict.status_message);
    }
    if let Some(r) = &verdict.response {
        if let Ok(json) = serde_json::to_string(r) {
            println!("response: {json}");
        }
    }
    for (check, why) in &verdict.checks {
        match why {
            None => println!("check `{check}`: passed"),
            Some(why) => println!("check `{check}`: FAILED: {why}"),
        }
    }
    if verdict.passed() {
        return Ok(());
    }
    let failures = verdict.failures().unwrap_or_default();
    // A failed call that only the implicit `status == OK` caught is an RPC failure, as
    // grpc-health-probe reports one; anything the user's checks caught is a failed check.
    let only_implicit = verdict.decode_error.is_none()
        && verdict
            .checks
            .iter()
            .all(|(c, why)| why.is_none() || c == IMPLICIT_STATUS_CHECK);
    let code = if only_implicit && verdict.code != crate::grpc::status::OK {
        RPC_FAILED
    } else {
        CHECK_FAILED
    };
    Err(CommandError::probe(
        code,
        format!("method probe failed: {failures}"),
    ))
}
