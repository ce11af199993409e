//! The probe library, one for every caller — `loadagent probe` (flags, printing, exit codes),
//! the agent's prober (scheduling, publishing, fleet following) and, next, `/probe`: the
//! health check (grpc.health.v1 Check, or the first answer of Watch), the method probe
//! (types from files or by reflection, `expect` checks, native or gRPC-Web), every answer
//! judged once (`verdict`), and a whole probe from nothing (`once`).

pub mod expect;
pub mod health;
pub mod method;
pub mod once;
pub mod verdict;

use std::sync::Arc;
use std::time::Duration;

use crate::grpc::lean::RequestHeaders;
use crate::grpc::unary::{HeadError, UnaryCall};

/// The request headers of a probe's call to `path` at `authority` on a lean connection
/// (`grpc::lean::SharedConnection`), made once and sent with every probe: `metadata`, the
/// deadline, and no compressed answers (the response is decoded as it comes).
pub fn lean_headers(
    authority: &str,
    path: &str,
    metadata: &[(String, String)],
    timeout: Duration,
    tls: bool,
) -> Result<Arc<RequestHeaders>, HeadError> {
    let call = UnaryCall::new(authority, path, metadata, Some(timeout), None)?
        .without_compressed_answers();
    Ok(Arc::new(RequestHeaders::for_call(&call, tls)))
}

/// A call the server never processed (refused, or sent as its connection closed): send it
/// again on a new connection, as gRPC clients do.
#[derive(Debug, Clone)]
pub struct NotProcessed(pub String);

/// Metadata from `pairs`; a pair whose key or value is not valid in a header is left out
/// (whoever builds a probe checks them first, naming the bad one).
pub fn metadata<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> tonic::metadata::MetadataMap {
    let mut map = tonic::metadata::MetadataMap::new();
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (k.parse::<tonic::metadata::MetadataKey<_>>(), v.parse()) {
            map.insert(k, v);
        }
    }
    map
}
