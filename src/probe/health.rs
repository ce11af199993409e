//! grpc.health.v1: one Check, or the first status a Watch sends, within a timeout — the
//! status as the server gave it, or why there is none, in the words a gRPC client uses.

use std::time::Duration;

use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// What a health RPC came to.
#[derive(Debug, Clone)]
pub enum HealthAnswer {
    /// The serving status the server sent (`ServingStatus` as a number: a server may send
    /// one this client does not know).
    Status(i32),
    /// The RPC failed, with the status its client sees.
    Failed(tonic::Status),
    /// A Watch stream ended (a first-answer Watch: before sending a status).
    Ended,
    /// Nothing within the timeout.
    NoAnswer(Duration),
}

impl HealthAnswer {
    /// Whether the answer is SERVING.
    pub fn is_serving(&self) -> bool {
        matches!(self, Self::Status(s) if *s == ServingStatus::Serving as i32)
    }
}

/// The name of a serving status ("SERVING", "NOT_SERVING", …; "UNKNOWN" for a number this
/// client does not know).
pub fn status_name(status: i32) -> &'static str {
    ServingStatus::try_from(status).map_or("UNKNOWN", |s| s.as_str_name())
}

/// A request for `service` (empty: the server as a whole) with `metadata` (pairs whose key
/// or value is not valid in a header are left out: callers check them first).
pub fn request<'a>(
    service: &str,
    metadata: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> tonic::Request<HealthCheckRequest> {
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: service.to_string(),
    });
    *req.metadata_mut() = super::metadata(metadata);
    req
}

/// One Check within `timeout`.
pub async fn check(
    channel: Channel,
    mut request: tonic::Request<HealthCheckRequest>,
    timeout: Duration,
) -> HealthAnswer {
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout, HealthClient::new(channel).check(request)).await {
        Ok(Ok(answer)) => HealthAnswer::Status(answer.into_inner().status),
        Ok(Err(s)) => HealthAnswer::Failed(crate::grpc::status::as_clients_report(s)),
        Err(_) => HealthAnswer::NoAnswer(timeout),
    }
}

/// Opens a Watch stream (the agent follows it for as long as it lasts); `Err` is the
/// status its client sees.
pub async fn watch(
    channel: Channel,
    request: tonic::Request<HealthCheckRequest>,
) -> Result<tonic::Streaming<HealthCheckResponse>, tonic::Status> {
    HealthClient::new(channel)
        .watch(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(crate::grpc::status::as_clients_report)
}

/// The first status a Watch sends, within `timeout` (opening included).
pub async fn watch_first(
    channel: Channel,
    request: tonic::Request<HealthCheckRequest>,
    timeout: Duration,
) -> HealthAnswer {
    let first = async {
        let mut stream = match watch(channel, request).await {
            Ok(s) => s,
            Err(s) => return HealthAnswer::Failed(s),
        };
        match stream.message().await {
            Ok(Some(r)) => HealthAnswer::Status(r.status),
            Ok(None) => HealthAnswer::Ended,
            Err(s) => HealthAnswer::Failed(crate::grpc::status::as_clients_report(s)),
        }
    };
    tokio::time::timeout(timeout, first)
        .await
        .unwrap_or(HealthAnswer::NoAnswer(timeout))
}
