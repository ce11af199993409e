//! One unary call over HTTP/2: send the pre-framed request, drain the response, read the
//! status. The response message is not decoded: the load needs only its status.

use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};

use super::status;
use crate::vocabulary::Compression;

/// Everything fixed about a call, built once before the load starts.
#[derive(Debug, Clone)]
pub struct UnaryCall {
    uri: Uri,
    headers: HeaderMap,
    timeout: Option<Duration>,
    /// The largest response message accepted (`[call] max_receive_message_size`).
    max_receive: u32,
    /// Unary load goes through the lean client unless `[call] transport = "h2"`.
    transport: crate::vocabulary::UnaryTransport,
    /// Metadata whose values are templates: rendered per call, never in `headers`.
    templated: TemplatedMetadata,
    /// `[call.retry]`: how a failed call is tried again (the lean client's load).
    retry: Option<crate::vocabulary::RetryPolicy>,
}

/// Metadata whose values are templates (`{{uuid}}`, …), rendered per call.
#[derive(Debug, Clone, Default)]
pub struct TemplatedMetadata(Vec<(http::HeaderName, super::template::Template)>);

impl TemplatedMetadata {
    /// No metadata is templated.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, in the order `render_into` renders them.
    pub fn names(&self) -> impl Iterator<Item = &http::HeaderName> {
        self.0.iter().map(|(name, _)| name)
    }

    /// Renders the values for request `number` into `values` (one per name, in order; the
    /// strings are reused: the lean client's path, which allocates nothing per call).
    pub fn render_into(
        &self,
        number: u64,
        renderer: &mut super::request::Renderer,
        values: &mut Vec<String>,
    ) {
        values.resize_with(self.0.len(), String::new);
        for ((_, t), out) in self.0.iter().zip(values.iter_mut()) {
            renderer.render(t, number, out);
        }
    }

    /// The per-call headers of request `number`: these, rendered, and `trace`. Allocates
    /// only when there is templated metadata (the h2 and gRPC-Web paths, which allocate per
    /// call anyway).
    pub fn per_call(
        &self,
        number: u64,
        renderer: &mut super::request::Renderer,
        trace: Option<HeaderValue>,
    ) -> PerCall {
        let mut per_call = PerCall::traced(trace);
        let mut text = String::new();
        for (name, t) in &self.0 {
            renderer.render(t, number, &mut text);
            // Every template function renders visible ASCII, and the reader checked the
            // text around it: a value that still is not a header value is left out.
            if let Ok(v) = HeaderValue::from_str(&text) {
                per_call.metadata.push((name.clone(), v));
            }
        }
        per_call
    }
}

/// The headers that differ per call: a sampled call's W3C `traceparent`, and the metadata
/// whose values are templates, rendered for it.
#[derive(Debug, Clone, Default)]
pub struct PerCall {
    /// The call's `traceparent`, when it is sampled.
    pub trace: Option<HeaderValue>,
    /// Templated metadata, rendered.
    pub metadata: Vec<(http::HeaderName, HeaderValue)>,
}

impl PerCall {
    /// Only a `traceparent` (or nothing).
    pub fn traced(trace: Option<HeaderValue>) -> Self {
        Self {
            trace,
            metadata: Vec::new(),
        }
    }

    /// Adds them to a request's headers.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.metadata {
            headers.append(name.clone(), value.clone());
        }
        if let Some(t) = &self.trace {
            headers.insert("traceparent", t.clone());
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The gRPC code.
    pub code: u8,
    /// The status message (only for failures).
    pub message: Option<String>,
    /// The connection failed: the worker should lease a new one.
    pub connection_failed: bool,
}

impl Outcome {
    pub(crate) const OK: Self = Self {
        code: status::OK,
        message: None,
        connection_failed: false,
    };

    pub(crate) fn failed(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: Some(message.into()),
            connection_failed: false,
        }
    }

    /// A call that ended with gRPC status `code` and its raw (percent-encoded) message.
    pub(crate) fn from_status(code: u8, message: Option<&[u8]>) -> Self {
        if code == status::OK {
            return Self::OK;
        }
        Self::failed(
            code,
            message.map_or_else(String::new, status::decode_message),
        )
    }

    pub(crate) fn from_h2(e: &h2::Error) -> Self {
        let connection_failed = e.is_io() || e.is_go_away() || e.is_library();
        let code = match e.reason().map(u32::from).and_then(code_of_reset) {
            Some(code) => code,
            None if connection_failed => status::UNAVAILABLE,
            None => status::INTERNAL,
        };
        let what = if e.is_go_away() {
            "connection closed by the server (GOAWAY)"
        } else if e.is_reset() {
            "stream reset by the server"
        } else if e.is_io() {
            "connection lost"
        } else {
            "HTTP/2 error"
        };
        Self {
            code,
            message: Some(format!("{what}: {e}")),
            connection_failed,
        }
    }
}

/// Why a call's request head could not be made (the scenario's reader checks metadata first,
/// so this is the last guard): the part, the value, and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("cannot make a request URI from authority `{authority}` and path `{path}`: {reason}")]
    /// The URI cannot be made.
    Uri {
        /// The authority.
        authority: String,
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    #[error("metadata key {key}: {reason}")]
    /// A metadata key is not a header name.
    MetadataKey {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    #[error("metadata value of {key}: {reason}")]
    /// A metadata value cannot be a header value.
    MetadataValue {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

impl UnaryCall {
    /// A unary call to `path` at `authority` with `metadata`, a deadline and compression.
    pub fn new(
        authority: &str,
        path: &str,
        metadata: &[(String, String)],
        timeout: Option<Duration>,
        compression: Option<Compression>,
    ) -> Result<Self, HeadError> {
        let uri: Uri =
            format!("http://{authority}{path}")
                .parse()
                .map_err(|e: http::uri::InvalidUri| HeadError::Uri {
                    authority: authority.to_string(),
                    path: path.to_string(),
                    reason: e.to_string(),
                })?;
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert(
            "user-agent",
            HeaderValue::from_static(concat!("loadagent/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(
            "grpc-accept-encoding",
            HeaderValue::from_static("identity,gzip"),
        );
        if compression == Some(Compression::Gzip) {
            headers.insert("grpc-encoding", HeaderValue::from_static("gzip"));
        }
        if let Some(t) = timeout {
            headers.insert("grpc-timeout", grpc_timeout(t));
        }
        for (k, v) in metadata {
            let name =
                http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| HeadError::MetadataKey {
                    key: k.clone(),
                    reason: e.to_string(),
                })?;
            let value = HeaderValue::from_str(v).map_err(|e| HeadError::MetadataValue {
                key: k.clone(),
                reason: e.to_string(),
            })?;
            headers.append(name, value);
        }
        Ok(Self {
            uri,
            headers,
            timeout,
            max_receive: super::frame::DEFAULT_MAX_RECEIVE_BYTES,
            transport: crate::vocabulary::UnaryTransport::Lean,
            templated: TemplatedMetadata::default(),
            retry: None,
        })
    }

    /// Sends `metadata` too, each value a template rendered per call. Keys that are not
    /// header names are left out (the scenario's reader refused them first).
    pub fn with_templated_metadata(
        mut self,
        metadata: Vec<(String, super::template::Template)>,
    ) -> Self {
        self.templated = TemplatedMetadata(
            metadata
                .into_iter()
                .filter_map(|(k, t)| Some((http::HeaderName::from_bytes(k.as_bytes()).ok()?, t)))
                .collect(),
        );
        self
    }

    /// The metadata rendered per call.
    pub fn templated(&self) -> &TemplatedMetadata {
        &self.templated
    }

    /// Tries failed calls again by `policy` (`[call.retry]`).
    pub fn with_retry(mut self, policy: Option<crate::vocabulary::RetryPolicy>) -> Self {
        self.retry = policy;
        self
    }

    /// The retry policy, when there is one.
    pub fn retry(&self) -> Option<&crate::vocabulary::RetryPolicy> {
        self.retry.as_ref()
    }

    /// Sets the client unary load goes through.
    pub fn with_transport(mut self, transport: crate::vocabulary::UnaryTransport) -> Self {
        self.transport = transport;
        self
    }

    /// Whether unary load goes through the lean client.
    pub fn lean(&self) -> bool {
        self.transport == crate::vocabulary::UnaryTransport::Lean
    }

    /// Sets the largest response message accepted (gRPC's default: 4 MiB).
    pub fn with_max_receive(mut self, bytes: u32) -> Self {
        self.max_receive = bytes;
        self
    }

    /// Asks for uncompressed answers (no `grpc-accept-encoding`): a probe decodes the
    /// response message as it comes.
    pub fn without_compressed_answers(mut self) -> Self {
        self.headers.remove("grpc-accept-encoding");
        self
    }

    /// The largest response message taken.
    pub fn max_receive(&self) -> u32 {
        self.max_receive
    }

    /// The gRPC deadline of each call, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The request's URI (`http://AUTHORITY/package.Service/Method`).
    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The request headers prepared once (content type, deadline, metadata, …).
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The request head: method, URI and headers, from the ones prepared once, plus the
    /// call's own (`traceparent`, templated metadata).
    pub(crate) fn request(&self, per_call: &PerCall) -> Request<()> {
        let mut request = Request::new(());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        per_call.apply(request.headers_mut());
        request
    }

    /// `call`, also returning when the response headers arrived (handshake storms time the
    /// first response).
    pub async fn call_timed(
        &self,
        send: &mut SendRequest<Bytes>,
        body: Bytes,
        per_call: &PerCall,
    ) -> (Outcome, Option<tokio::time::Instant>) {
        let mut headers_at = None;
        let exchange = self.exchange_timed(send, body, per_call, &mut headers_at);
        let outcome = match self.timeout {
            None => exchange.await,
            Some(t) => tokio::time::timeout(t, exchange).await.unwrap_or_else(|_| {
                Outcome::failed(status::DEADLINE_EXCEEDED, "deadline exceeded (client side)")
            }),
        };
        (outcome, headers_at)
    }

    async fn exchange_timed(
        &self,
        send: &mut SendRequest<Bytes>,
        body: Bytes,
        per_call: &PerCall,
        headers_at: &mut Option<tokio::time::Instant>,
    ) -> Outcome {
        if let Err(e) = std::future::poll_fn(|cx| send.poll_ready(cx)).await {
            return Outcome::from_h2(&e);
        }
        let (response, mut stream) = match send.send_request(self.request(per_call), false) {
            Ok(pair) => pair,
            Err(e) => return Outcome::from_h2(&e),
        };
        if let Err(e) = stream.send_data(body, true) {
            return Outcome::from_h2(&e);
        }
        let response = match response.await {
            Ok(r) => r,
            Err(e) => return Outcome::from_h2(&e),
        };
        *headers_at = Some(tokio::time::Instant::now());
        let (head, mut body) = response.into_parts();
        let header = |name: &str| head.headers.get(name).map(HeaderValue::as_bytes);
        if let Some(outcome) = judge_response_head(
            Some(head.status.as_u16()),
            header("content-type"),
            header("grpc-status"),
            header("grpc-message"),
        ) {
            return outcome;
        }
        let encoded = header("grpc-encoding").is_some_and(|e| e != b"identity");
        let mut reader = super::frame::MessageReader::new(self.max_receive, encoded);
        while let Some(chunk) = body.data().await {
            match chunk {
                Ok(data) => {
                    let _ = body.flow_control().release_capacity(data.len());
                    if let Err(e) = reader.feed(&data) {
                        return Outcome::failed(e.code, e.message);
                    }
                }
                Err(e) => return Outcome::from_h2(&e),
            }
        }
        let outcome = match body.trailers().await {
            Ok(Some(trailers)) => match trailers.get("grpc-status") {
                Some(code) => status_of(code.as_bytes(), trailers.get("grpc-message")),
                None => Outcome::failed(status::INTERNAL, "response trailers have no grpc-status"),
            },
            Ok(None) => Outcome::failed(
                status::INTERNAL,
                "response ended without trailers (no grpc-status)",
            ),
            Err(e) => Outcome::from_h2(&e),
        };
        match reader.unary_end() {
            Err(e) if outcome.code == status::OK => Outcome::failed(e.code, e.message),
            _ => outcome,
        }
    }
}

/// The gRPC code an HTTP/2 error code maps to, for the codes gRPC names
/// (grpc/doc/PROTOCOL-HTTP2.md, "Errors").
pub(crate) fn code_of_reset(reason: u32) -> Option<u8> {
    match reason {
        0x7 => Some(status::UNAVAILABLE),       // REFUSED_STREAM
        0x8 => Some(status::CANCELLED),         // CANCEL
        0xb => Some(8),                         // ENHANCE_YOUR_CALM: RESOURCE_EXHAUSTED
        0xc => Some(status::PERMISSION_DENIED), // INADEQUATE_SECURITY
        _ => None,
    }
}

/// What a response's first HEADERS say, judged as gRPC clients judge them
/// (grpc/doc/http-grpc-status-mapping.md): `Some` when they end the call (an HTTP error, a
/// body that is not gRPC, a trailers-only status), `None` when messages and trailers follow.
pub(crate) fn judge_response_head(
    http_status: Option<u16>,
    content_type: Option<&[u8]>,
    grpc_status: Option<&[u8]>,
    message: Option<&[u8]>,
) -> Option<Outcome> {
    let Some(http_status) = http_status else {
        return Some(Outcome::failed(
            status::INTERNAL,
            "response without :status",
        ));
    };
    // Only the failures show it: an answered call allocates nothing here.
    let shown = || {
        content_type.map_or_else(
            || "none".to_string(),
            |c| String::from_utf8_lossy(c).into_owned(),
        )
    };
    if http_status != 200 {
        return Some(Outcome::failed(
            status::from_http_status(http_status),
            format!(
                "HTTP status {http_status} from the server (content-type {})",
                shown()
            ),
        ));
    }
    let is_grpc = content_type.is_some_and(|c| {
        c == b"application/grpc"
            || c.starts_with(b"application/grpc+")
            || c.starts_with(b"application/grpc;")
    });
    // A status in the headers (trailers-only) ends the call; it is trusted even when the
    // server omitted the content-type, not when it named another one.
    if let Some(code) = grpc_status.filter(|_| is_grpc || content_type.is_none()) {
        return Some(Outcome::from_status(status::parse_code(code), message));
    }
    if is_grpc {
        return None;
    }
    if content_type.is_some_and(|c| c.starts_with(b"application/grpc-web")) {
        return Some(Outcome::failed(
            status::UNKNOWN,
            format!(
                "{}the server answered with content-type {}: it speaks gRPC-Web, not native gRPC; set `protocol = \"grpc-web\"` in [target]",
                status::WRONG_PROTOCOL,
                shown()
            ),
        ));
    }
    Some(Outcome::failed(
        status::UNKNOWN,
        format!(
            "the server answered HTTP 200 with content-type {}, not gRPC (application/grpc)",
            shown()
        ),
    ))
}

pub(crate) fn status_of(code: &[u8], message: Option<&HeaderValue>) -> Outcome {
    Outcome::from_status(status::parse_code(code), message.map(HeaderValue::as_bytes))
}

/// The `grpc-timeout` header: at most 8 digits and a unit.
fn grpc_timeout(t: Duration) -> HeaderValue {
    let micros = t.as_micros();
    let value = if micros < 100_000_000 {
        format!("{micros}u")
    } else if t.as_millis() < 100_000_000 {
        format!("{}m", t.as_millis())
    } else {
        format!("{}S", t.as_secs().min(99_999_999))
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("99999999S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_are_judged_as_grpc_clients_do() {
        let judge = |http, ct: Option<&str>, st: Option<&str>| {
            judge_response_head(http, ct.map(str::as_bytes), st.map(str::as_bytes), None)
                .map(|o| o.code)
        };
        assert_eq!(judge(Some(200), Some("application/grpc"), None), None);
        assert_eq!(judge(Some(200), Some("application/grpc+proto"), None), None);
        assert_eq!(
            judge(Some(200), Some("application/grpc"), Some("5")),
            Some(5)
        );
        assert_eq!(judge(Some(200), None, Some("0")), Some(status::OK));
        assert_eq!(
            judge(Some(200), Some("text/html"), None),
            Some(status::UNKNOWN)
        );
        assert_eq!(
            judge(Some(200), Some("text/html"), Some("0")),
            Some(status::UNKNOWN)
        );
        assert_eq!(
            judge(Some(200), Some("application/grpc-web"), None),
            Some(status::UNKNOWN)
        );
        let o = judge_response_head(Some(200), Some(b"application/grpc-web+proto"), None, None);
        assert!(o
            .unwrap()
            .message
            .unwrap()
            .contains("protocol = \"grpc-web\""));
        assert_eq!(judge(Some(200), None, None), Some(status::UNKNOWN));
        assert_eq!(
            judge(Some(404), Some("text/html"), None),
            Some(status::UNIMPLEMENTED)
        );
        assert_eq!(judge(Some(503), None, None), Some(status::UNAVAILABLE));
        assert_eq!(judge(Some(500), None, None), Some(status::UNKNOWN));
        assert_eq!(judge(None, None, None), Some(status::INTERNAL));
        let o = judge_response_head(Some(200), Some(b"text/html"), None, None).unwrap();
        assert!(o.message.unwrap().contains("text/html"));
    }

    #[test]
    fn grpc_timeout_fits_eight_digits() {
        assert_eq!(grpc_timeout(Duration::from_millis(250)), "250000u");
        assert_eq!(grpc_timeout(Duration::from_secs(1000)), "1000000m");
        assert_eq!(grpc_timeout(Duration::from_secs(10_000_000)), "10000000S");
    }
}
