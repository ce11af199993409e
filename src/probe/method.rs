//! A probe of any unary method: one call with a request written in the scenario's syntax
//! (templates included), the response decoded with the method's types and judged by
//! `expect` checks. Shared by `loadagent probe --method` and the agent's method probes, so
//! both judge a response the same way. The types come from files or, the one way to have
//! them from the server, by reflection (`by_reflection`).

use std::time::{Duration, Instant};

use std::sync::Arc;

use bytes::Bytes;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};

use super::expect::Check;
use crate::grpc::lean::{RequestHeaders, SharedConnection};
use crate::grpc::request::{Renderer, Requests};
use crate::grpc::status;
use crate::grpc::unary::UnaryCall;
use crate::grpc::web::{Afterwards, WebCall, WebOptions, WebSender};
use crate::tls::ClientTls;
use crate::vocabulary::{HostPort, MethodName, RequestMessage};

/// The check every method probe makes unless one on `status` is written.
pub const IMPLICIT_STATUS_CHECK: &str = "status == OK";

/// A method, its requests and its checks, validated against its types.
#[derive(Debug, Clone)]
pub struct MethodProbe {
    /// The method called.
    pub descriptor: MethodDescriptor,
    path: http::uri::PathAndQuery,
    requests: Requests,
    checks: Vec<Check>,
}

/// A problem with a probe's definition: which key (`method`, `data`, `expect`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    /// The key the problem is in (`method`, `data.a.b`, `expect[1]`).
    pub key: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

/// How one probe call went.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The gRPC status (UNAVAILABLE when no connection could be used).
    pub code: u8,
    /// The status message the server sent (or the client's words for what failed).
    pub status_message: String,
    /// How long the call took.
    pub took: Duration,
    /// Every check in order, with why it failed (`None`: it passed).
    pub checks: Vec<(String, Option<String>)>,
    /// The decoded response, when the call returned one.
    pub response: Option<DynamicMessage>,
    /// A response that did not decode, with the reason.
    pub decode_error: Option<String>,
    /// Whether the connection can carry another call (gRPC-Web over HTTP/1.1 may not).
    pub reusable: bool,
    /// The server never processed the call (its connection was closing): send it again on a
    /// new connection.
    pub not_processed: bool,
}

impl Verdict {
    /// Whether the response decoded and every check passed.
    pub fn passed(&self) -> bool {
        self.decode_error.is_none() && self.checks.iter().all(|(_, why)| why.is_none())
    }

    /// The reasons the probe failed, on one line.
    pub fn failures(&self) -> Option<String> {
        let mut out: Vec<String> = self.decode_error.iter().cloned().collect();
        for (check, why) in &self.checks {
            if let Some(why) = why {
                out.push(format!("check `{check}` failed: {why}"));
            }
        }
        (!out.is_empty()).then(|| out.join("; "))
    }
}

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

impl MethodProbe {
    /// Finds `name` in `pool` (a unary method), builds its requests from `messages` and
    /// validates `checks` against its response type. Every problem is returned at once.
    pub fn prepare(
        pool: &DescriptorPool,
        name: &MethodName,
        messages: &[RequestMessage],
        checks: &[Check],
    ) -> Result<Self, Vec<DefinitionError>> {
        let err = |key: &str, message: String| DefinitionError {
            key: key.to_string(),
            message,
        };
        let descriptor = crate::grpc::descriptors::find_method(pool, name)
            .map_err(|m| vec![err("method", m)])?;
        if descriptor.is_client_streaming() || descriptor.is_server_streaming() {
            return Err(vec![err(
                "method",
                format!(
                    "`{}` is a {} method; a probe calls a unary method",
                    descriptor.full_name(),
                    crate::grpc::descriptors::shape(&descriptor)
                ),
            )]);
        }
        let mut problems = Vec::new();
        let requests = match Requests::from_messages(messages, None, &descriptor) {
            Ok(r) => Some(r),
            Err(p) => {
                // The request's problems are keyed as a scenario's (`call.data…`); here the
                // caller names the table.
                problems.extend(
                    p.list
                        .into_iter()
                        .map(|p| err(p.key.strip_prefix("call.").unwrap_or(&p.key), p.message)),
                );
                None
            }
        };
        let output = descriptor.output();
        for (i, check) in checks.iter().enumerate() {
            if let Err(e) = check.validate(&output) {
                problems.push(err(&format!("expect[{i}]"), e.to_string()));
            }
        }
        let path = name.path().parse().map_err(|e: http::uri::InvalidUri| {
            vec![err("method", format!("not a request path: {e}"))]
        })?;
        match requests {
            Some(requests) if problems.is_empty() => {
                let mut checks = checks.to_vec();
                if !checks.iter().any(Check::is_on_status) {
                    if let Ok(ok) = Check::parse(IMPLICIT_STATUS_CHECK) {
                        checks.insert(0, ok);
                    }
                }
                Ok(Self {
                    descriptor,
                    path,
                    requests,
                    checks,
                })
            }
            _ => Err(problems),
        }
    }

    /// The checks' texts, as the `check` label names them (the implicit status check first
    /// when no check on `status` was written).
    pub fn check_texts(&self) -> impl Iterator<Item = &str> {
        self.checks.iter().map(|c| c.text.as_str())
    }

    /// The request headers of this probe's call at `authority` on a lean connection, with
    /// `metadata` and a deadline of `timeout`.
    pub fn lean_headers(
        &self,
        authority: &str,
        metadata: &[(String, String)],
        timeout: Duration,
        tls: bool,
    ) -> Result<Arc<RequestHeaders>, crate::grpc::unary::HeadError> {
        super::lean_headers(authority, self.path.as_str(), metadata, timeout, tls)
    }

    /// Calls the method once on `conn` (request `n`, its templates rendered by `renderer`;
    /// `headers` from `lean_headers`, plus a `traceparent`) and judges the answer.
    pub async fn call(
        &self,
        conn: &SharedConnection,
        headers: &Arc<RequestHeaders>,
        n: u64,
        renderer: &mut Renderer,
        trace: Option<&[u8]>,
        timeout: Duration,
    ) -> Verdict {
        let started = Instant::now();
        let body = self.requests.body(n, renderer);
        let answer = conn.call(headers, body, trace, timeout).await;
        let took = started.elapsed();
        let outcome = answer.outcome;
        let body =
            (outcome.code == status::OK).then(|| Bytes::from(answer.message.unwrap_or_default()));
        // A connection that did not answer in time is not trusted with the next call (a
        // server that stopped reading would otherwise collect every probe's request).
        let mut verdict = self.judge(
            outcome.code,
            outcome.message.unwrap_or_default(),
            body,
            took,
            !outcome.connection_failed && !answer.timed_out,
        );
        verdict.not_processed = answer.not_processed;
        verdict
    }

    /// The gRPC-Web form of this probe's call to `authority`, with `metadata` and a deadline.
    pub fn web_call(
        &self,
        authority: &str,
        metadata: &[(String, String)],
        timeout: Duration,
        options: &WebOptions,
        tls: Option<&crate::tls::ClientTls>,
    ) -> Result<WebCall, crate::grpc::unary::HeadError> {
        let native = UnaryCall::new(authority, self.path.as_str(), metadata, Some(timeout), None)?;
        Ok(WebCall::new(&native, options, tls))
    }

    /// Calls the method once over gRPC-Web (`web`, from `web_call`) and judges the answer.
    pub async fn call_web(
        &self,
        web: &WebCall,
        sender: &mut WebSender,
        n: u64,
        renderer: &mut Renderer,
    ) -> Verdict {
        let started = Instant::now();
        let framed = self.requests.body(n, renderer);
        let (outcome, message, after) = web.unary(sender, framed).await;
        let took = started.elapsed();
        let body = (outcome.code == status::OK).then(|| message.unwrap_or_default());
        let mut verdict = self.judge(
            outcome.code,
            outcome.message.unwrap_or_default(),
            body,
            took,
            after == Afterwards::Reusable && !outcome.connection_failed,
        );
        verdict.not_processed = after == Afterwards::NotProcessed;
        verdict
    }

    /// Decodes the response (when the call returned one) and runs every check on it.
    fn judge(
        &self,
        code: u8,
        status_message: String,
        body: Option<Bytes>,
        took: Duration,
        reusable: bool,
    ) -> Verdict {
        let output = self.descriptor.output();
        let decoded = body.map(|bytes| {
            // What decoding would cost is bounded first: a small answer can hold millions
            // of values.
            crate::grpc::decode_budget::within(
                &bytes,
                &output,
                crate::grpc::decode_budget::MAX_DECODED_VALUES,
            )?;
            DynamicMessage::decode(output.clone(), bytes).map_err(|e| {
                format!(
                    "the response does not decode as {}: {e}",
                    output.full_name()
                )
            })
        });
        let (response, decode_error) = match decoded {
            Some(Ok(m)) => (Some(m), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let checks = self
            .checks
            .iter()
            .map(|c| (c.text.clone(), c.evaluate(code, response.as_ref()).err()))
            .collect();
        Verdict {
            code,
            status_message,
            took,
            checks,
            response,
            decode_error,
            reusable,
            not_processed: false,
        }
    }
}
