//! `loadagent probe`: one health check, grpc-health-probe's exit codes.

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::error::CommandError;
use crate::scenario::duration::parse_duration;
use crate::scenario::HostPort;
use crate::scenario::{Loc, Resumption, TlsOptions};
use crate::tls::ClientTls;

const BAD_ARGUMENTS: u8 = 1;
const CONNECTION_FAILED: u8 = 2;
const RPC_FAILED: u8 = 3;
const NOT_SERVING: u8 = 4;

/// What `probe` was asked.
pub struct ProbeArgs {
    pub address: String,
    pub service: String,
    pub timeout: String,
    pub watch: bool,
    pub metadata: Vec<String>,
    pub tls: Option<TlsOptions>,
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
    let mut metadata = Vec::new();
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
        metadata.push((key, value));
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
    let channel = crate::grpc::control::channel(&address, None, timeout, tls.as_ref())
        .await
        .map_err(|e| {
            CommandError::probe(
                CONNECTION_FAILED,
                format!("cannot connect to {}: {e}", a.address),
            )
        })?;
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: a.service.clone(),
    });
    request.set_timeout(timeout);
    for (k, v) in metadata {
        request.metadata_mut().insert(k, v);
    }
    let rpc_failed = |s: tonic::Status| {
        CommandError::probe(
            RPC_FAILED,
            format!("health rpc failed: {}: {}", s.code(), s.message()),
        )
    };
    let status = if a.watch {
        let mut stream = client
            .watch(request)
            .await
            .map_err(rpc_failed)?
            .into_inner();
        match tokio::time::timeout(timeout, stream.message()).await {
            Ok(Ok(Some(r))) => r.status,
            Ok(Ok(None)) => {
                return Err(CommandError::probe(
                    RPC_FAILED,
                    "health watch ended without a status",
                ))
            }
            Ok(Err(s)) => return Err(rpc_failed(s)),
            Err(_) => {
                return Err(CommandError::probe(
                    RPC_FAILED,
                    format!("no health status within {timeout:?}"),
                ))
            }
        }
    } else {
        client
            .check(request)
            .await
            .map_err(rpc_failed)?
            .into_inner()
            .status
    };
    let name = ServingStatus::try_from(status).map_or("UNKNOWN", |s| s.as_str_name());
    if status == ServingStatus::Serving as i32 {
        println!("status: {name}");
        Ok(())
    } else {
        Err(CommandError::probe(
            NOT_SERVING,
            format!("service unhealthy (responded with \"{name}\")"),
        ))
    }
}
