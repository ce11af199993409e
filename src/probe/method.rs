//! A method probe whose types the server gives by reflection: the one way to get them and
//! prepare the probe (the request encoded, every check resolved against the response type).

use std::time::Duration;

use crate::grpc::expect::Check;
use crate::grpc::method_probe::{DefinitionError, MethodProbe};
use crate::scenario::{HostPort, MethodName, RequestMessage};
use crate::tls::ClientTls;

/// Why a method probe could not be prepared by reflection.
#[derive(Debug, Clone)]
pub enum PrepareError {
    /// The server did not give the types (no reflection service, or not this method's).
    Reflection(String),
    /// The types came, and the request or a check does not fit them.
    Problems(Vec<DefinitionError>),
}

/// Asks `address` for the types of `name`'s service, then prepares the probe.
pub async fn by_reflection(
    address: &HostPort,
    name: &MethodName,
    messages: &[RequestMessage],
    checks: &[Check],
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<MethodProbe, PrepareError> {
    let pool = crate::grpc::descriptors::pool_by_reflection(address, &name.service, timeout, tls)
        .await
        .map_err(|e| PrepareError::Reflection(e.to_string()))?;
    MethodProbe::prepare(&pool, name, messages, checks).map_err(PrepareError::Problems)
}
