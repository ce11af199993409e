//! grpc.health.v1: one Check (on a lean connection, `Check`), or the first status a Watch
//! sends (a tonic stream), within a timeout — the status as the server gave it, or why there
//! is none, in the words a gRPC client uses.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
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

/// The path of grpc.health.v1's Check.
const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// A Check of one service, made once and sent on a lean connection every probe: its request
/// headers (authority, metadata, deadline) and its framed request.
#[derive(Debug, Clone)]
pub struct Check {
    headers: Arc<crate::grpc::lean::RequestHeaders>,
    body: Bytes,
}

impl Check {
    /// A Check of `service` ("" is the server as a whole) at `authority` with `metadata` and
    /// a deadline of `timeout`; `Err` when the metadata cannot be sent as headers.
    pub fn new(
        authority: &str,
        service: &str,
        metadata: &[(String, String)],
        timeout: Duration,
        tls: bool,
    ) -> Result<Self, String> {
        let headers = super::lean_headers(authority, CHECK_PATH, metadata, timeout, tls)
            .map_err(|e| e.to_string())?;
        let message = HealthCheckRequest {
            service: service.to_string(),
        }
        .encode_to_vec();
        let body = crate::grpc::frame::frame(&message, None).map_err(|e| e.to_string())?;
        Ok(Self { headers, body })
    }

    /// One Check on `conn` (with a `traceparent`) within `timeout`.
    pub async fn on(
        &self,
        conn: &crate::grpc::lean::SharedConnection,
        trace: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<HealthAnswer, super::NotProcessed> {
        let answer = conn
            .call(&self.headers, self.body.clone(), trace, timeout)
            .await;
        if answer.not_processed {
            return Err(super::NotProcessed(
                answer.outcome.message.unwrap_or_default(),
            ));
        }
        if answer.timed_out {
            return Ok(HealthAnswer::NoAnswer(timeout));
        }
        let failed = |code: u8, message: String| {
            HealthAnswer::Failed(tonic::Status::new(
                tonic::Code::from_i32(i32::from(code)),
                message,
            ))
        };
        let outcome = answer.outcome;
        if outcome.code != crate::grpc::status::OK {
            return Ok(failed(outcome.code, outcome.message.unwrap_or_default()));
        }
        let message = answer.message.unwrap_or_default();
        Ok(match HealthCheckResponse::decode(&message[..]) {
            Ok(r) => HealthAnswer::Status(r.status),
            Err(e) => failed(
                crate::grpc::status::INTERNAL,
                format!("the response does not decode as grpc.health.v1.HealthCheckResponse: {e}"),
            ),
        })
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
