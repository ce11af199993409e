//! gRPC-Web: what browsers' gRPC speaks, through a proxy (Envoy's grpc_web filter) or a
//! server that serves it itself (sonora, …). The request is a gRPC message framed as in
//! native gRPC (base64 for `grpc-web-text`) in an HTTP/1.1 or HTTP/2 POST; the status comes
//! in a last frame of the body (flag 0x80) holding the trailers as HTTP/1 header lines, or —
//! trailers-only — in the response headers. Unary calls over HTTP/1.1, and their CORS
//! preflights, go on a lean connection of their own ([`http1`]); unary calls over HTTP/2 on
//! the lean HTTP/2 client under load; server streams, `transport = "h2"` and HTTP/2 calls
//! with a CORS origin go through hyper's client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

mod body;
mod http1;

pub use body::WebBodyReader;

use crate::grpc::channel::{open_transport_for, ConnectError, Endpoint};
use crate::grpc::status::{self, NO_ANSWER, WRONG_PROTOCOL};
use crate::grpc::unary::{Outcome, PerCall, TemplatedMetadata, UnaryCall};
use crate::vocabulary::{HttpVersion, Protocol, Target};

/// A gRPC-Web call, fixed before the load starts.
#[derive(Clone)]
pub struct WebCall {
    uri: Uri,
    headers: HeaderMap,
    text: bool,
    /// HTTP/1.1 or HTTP/2.
    pub version: HttpVersion,
    timeout: Option<Duration>,
    max_receive: u32,
    /// A server stream: every message is counted, and the run's end cancels it.
    pub streaming: bool,
    /// A server stream is cancelled after this many messages (`[stream] messages`; 0: when
    /// the server ends it).
    pub stream_messages: u64,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// TLS offering the ALPN protocol of `version`.
    pub tls: Option<crate::tls::ClientTls>,
    /// `cors_origin`: calls carry this Origin, and each new connection first makes the CORS
    /// preflight a browser would make.
    cors: Option<Cors>,
    /// Metadata rendered per call.
    templated: TemplatedMetadata,
    /// `[call] transport = "lean"`: unary calls over HTTP/2 go on the lean client under
    /// load, over HTTP/1.1 on a lean connection (`http1`).
    lean: bool,
    /// HTTP/1.1's request line and the headers every call sends but `traceparent`
    /// (prepared once; each call adds its own headers, its length and its body).
    http1_head: Bytes,
    /// The `traceparent` among the call's metadata: sent unless the call has one of its own.
    static_trace: Vec<HeaderValue>,
}

/// How gRPC-Web calls reach a target: a scenario's `[target]` keys, or a probe's.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// gRPC-Web, binary or text.
    pub protocol: Protocol,
    /// What it goes over.
    pub http_version: HttpVersion,
    /// Calls made as a page at this origin would (a preflight, the Origin header).
    pub cors_origin: Option<String>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
}

impl WebOptions {
    /// The options a scenario's `[target]` gives.
    pub fn of(target: &Target) -> Self {
        Self {
            protocol: target.protocol,
            http_version: target.http_version,
            cors_origin: target.cors_origin.clone(),
            connect_timeout: target.connect_timeout,
        }
    }
}

/// A browser's CORS exchange: the Origin header, and the preflight request's headers.
#[derive(Clone)]
struct Cors {
    origin: HeaderValue,
    preflight: HeaderMap,
}

impl std::fmt::Debug for WebCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebCall")
            .field("uri", &self.uri)
            .field("text", &self.text)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// What a call is given besides its request, and where its messages go.
struct CallIo<'a, F> {
    per_call: &'a PerCall,
    stop: Option<&'a CancellationToken>,
    on_message: &'a mut F,
    /// Keep the first response message here (a probe decodes it).
    keep: Option<&'a mut Option<Bytes>>,
}

/// A connection speaking HTTP/1.1 (one call at a time) or HTTP/2.
#[derive(Debug)]
pub struct WebSender {
    send: Sender,
    /// Why the connection ended, when it failed: a call that finds it closed reports this
    /// (an HTTP/2 server's preface read as HTTP/1.1 ends the connection before any call).
    ended: Arc<Mutex<Option<Outcome>>>,
}

#[derive(Debug)]
enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    /// The lean HTTP/1.1 connection (unary calls, `transport = "lean"`).
    Lean1(Box<http1::Http1Connection>),
}

/// What a call leaves of its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Afterwards {
    /// It can carry the next call.
    Reusable,
    /// It cannot (failed, or an HTTP/1.1 answer left unread): make a new one.
    Spent,
    /// The server never processed the call — the connection was already closing (GOAWAY
    /// above the call's stream, or closed before it was sent): a client sends it again on a
    /// new connection, as browsers and gRPC clients do, and nothing is counted.
    NotProcessed,
}

impl Afterwards {
    fn reusable_if(yes: bool) -> Self {
        if yes {
            Self::Reusable
        } else {
            Self::Spent
        }
    }
}

/// Whether an HTTP/2 error says the server refused the stream unprocessed: a GOAWAY from the
/// server whose last stream id is below it.
fn refused_by_goaway(e: &hyper::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<h2::Error>())
        .is_some_and(|h| h.is_go_away() && h.is_remote())
}

impl WebSender {
    /// Sends the request through hyper; the error is the call's failure, and whether the
    /// call surely never reached the server.
    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
        version: HttpVersion,
    ) -> Result<http::Response<Incoming>, (Outcome, bool)> {
        let sent =
            match &mut self.send {
                Sender::Http1(s) => match s.ready().await {
                    Err(e) => Err((e, true)),
                    Ok(()) => s.send_request(request).await.map_err(|e| (e, false)),
                },
                Sender::Http2(s) => match s.ready().await {
                    Err(e) => Err((e, true)),
                    Ok(()) => s.send_request(request).await.map_err(|e| {
                        // Canceled: the connection closed while the request still waited to go.
                        let unsent = refused_by_goaway(&e) || e.is_canceled();
                        (e, unsent)
                    }),
                },
                // Its calls go through `WebCall::exchange_http1`; a request built for hyper is
                // not sent on it.
                Sender::Lean1(_) => return Err((
                    Outcome::failed(
                        status::INTERNAL,
                        "a request built for hyper's client was given a lean HTTP/1.1 connection",
                    ),
                    true,
                )),
            };
        sent.map_err(|(e, unsent)| (self.failure(&e, version), unsent))
    }

    /// A second handle on an HTTP/2 connection (it multiplexes calls); `None` for HTTP/1.1,
    /// which carries one call at a time.
    pub fn try_clone(&self) -> Option<Self> {
        match &self.send {
            Sender::Http1(_) | Sender::Lean1(_) => None,
            Sender::Http2(s) => Some(Self {
                send: Sender::Http2(s.clone()),
                ended: self.ended.clone(),
            }),
        }
    }

    /// Gives back what a lean HTTP/1.1 connection holds between calls (a probe's, idle
    /// until its next round); hyper's connections keep theirs.
    pub fn shrink_idle(&mut self) {
        if let Sender::Lean1(conn) = &mut self.send {
            conn.shrink_idle();
        }
    }

    /// Whether the connection can take no more calls.
    pub fn is_closed(&self) -> bool {
        match &self.send {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
            Sender::Lean1(c) => c.is_closed(),
        }
    }

    /// What a failed call means: the connection's own error when it had one.
    fn failure(&self, e: &hyper::Error, version: HttpVersion) -> Outcome {
        let ended = self.ended.lock().ok().and_then(|g| g.clone());
        match ended {
            Some(o) if e.is_closed() || e.is_canceled() => o,
            _ => outcome_of(e, version),
        }
    }
}

/// Opens a connection for gRPC-Web calls over `version` (TLS negotiating its ALPN protocol).
pub async fn connect(endpoint: &Endpoint, version: HttpVersion) -> Result<WebSender, ConnectError> {
    let alpn: &[u8] = match version {
        HttpVersion::Http1 => b"http/1.1",
        HttpVersion::Http2 => b"h2",
    };
    let transport = open_transport_for(endpoint, alpn).await?;
    let io = hyper_util::rt::TokioIo::new(transport);
    let addr = endpoint.address.to_string();
    let failed = |e: hyper::Error| ConnectError::Handshake(addr.clone(), e.to_string());
    let ended: Arc<Mutex<Option<Outcome>>> = Arc::default();
    let keep = |slot: Arc<Mutex<Option<Outcome>>>| {
        move |r: Result<(), hyper::Error>| {
            if let (Err(e), Ok(mut g)) = (r, slot.lock()) {
                *g = Some(outcome_of(&e, version));
            }
        }
    };
    let handshake = async {
        match version {
            HttpVersion::Http1 => {
                let (send, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(failed)?;
                let keep = keep(ended.clone());
                tokio::spawn(async move { keep(conn.await) });
                Ok(WebSender {
                    send: Sender::Http1(send),
                    ended: ended.clone(),
                })
            }
            HttpVersion::Http2 => {
                let (send, conn) =
                    hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .initial_stream_window_size(1 << 20)
                        .initial_connection_window_size(16 << 20)
                        .handshake(io)
                        .await
                        .map_err(failed)?;
                let keep = keep(ended.clone());
                tokio::spawn(async move { keep(conn.await) });
                Ok(WebSender {
                    send: Sender::Http2(send),
                    ended: ended.clone(),
                })
            }
        }
    };
    tokio::time::timeout(endpoint.connect_timeout, handshake)
        .await
        .unwrap_or_else(|_| {
            Err(ConnectError::Timeout(
                endpoint.address.to_string(),
                endpoint.connect_timeout,
            ))
        })
}

impl WebCall {
    /// The gRPC-Web form of a call prepared for native gRPC: the same path, authority,
    /// deadline and metadata, gRPC-Web's content type and headers.
    pub fn new(
        native: &UnaryCall,
        target: &WebOptions,
        tls: Option<&crate::tls::ClientTls>,
    ) -> Self {
        let version = target.http_version;
        let text = target.protocol == Protocol::GrpcWebText;
        let content_type = HeaderValue::from_static(if text {
            "application/grpc-web-text"
        } else {
            "application/grpc-web+proto"
        });
        let mut headers = HeaderMap::new();
        for (name, value) in native.headers() {
            // Native gRPC's own transport headers have no place in gRPC-Web.
            if !matches!(
                name.as_str(),
                "content-type" | "te" | "grpc-accept-encoding" | "grpc-encoding"
            ) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert("content-type", content_type.clone());
        headers.insert("accept", content_type);
        headers.insert("x-grpc-web", HeaderValue::from_static("1"));
        headers.insert(
            "x-user-agent",
            HeaderValue::from_static(concat!("loadagent/", env!("CARGO_PKG_VERSION"))),
        );
        let native_uri = native.uri();
        let authority = native_uri
            .authority()
            .map_or_else(String::new, |a| a.to_string());
        if version == HttpVersion::Http1 {
            if let Ok(host) = HeaderValue::from_str(&authority) {
                headers.insert("host", host);
            }
        }
        let path = native_uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        // HTTP/2 takes the scheme and authority from an absolute URI; HTTP/1.1 is sent the
        // path (origin form) and the Host header.
        let uri = match version {
            HttpVersion::Http2 => {
                let scheme = if tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{authority}{path}")
                    .parse()
                    .unwrap_or_else(|_| native_uri.clone())
            }
            HttpVersion::Http1 => path.parse().unwrap_or_else(|_| native_uri.clone()),
        };
        let cors = target
            .cors_origin
            .as_deref()
            .and_then(|o| HeaderValue::from_str(o).ok())
            .map(|origin| {
                let mut preflight = HeaderMap::new();
                preflight.insert("origin", origin.clone());
                preflight.insert(
                    "access-control-request-method",
                    HeaderValue::from_static("POST"),
                );
                // What the call will carry beyond the CORS-safelisted headers, as browsers
                // list them: lower case, sorted, comma-separated.
                let mut names: Vec<&str> = headers
                    .keys()
                    .map(http::HeaderName::as_str)
                    .filter(|n| !matches!(*n, "host" | "user-agent" | "accept"))
                    .collect();
                names.sort_unstable();
                names.dedup();
                if let Ok(v) = HeaderValue::from_str(&names.join(",")) {
                    preflight.insert("access-control-request-headers", v);
                }
                if let Some(host) = headers.get("host") {
                    preflight.insert("host", host.clone());
                }
                headers.insert("origin", origin.clone());
                Cors { origin, preflight }
            });
        let tls = tls.map(|t| {
            t.with_alpn(&[match version {
                HttpVersion::Http1 => "http/1.1",
                HttpVersion::Http2 => "h2",
            }])
        });
        let (http1_head, static_trace) = if version == HttpVersion::Http1 {
            http1_head(&path, &headers)
        } else {
            (Bytes::new(), Vec::new())
        };
        Self {
            uri,
            headers,
            text,
            version,
            timeout: native.timeout(),
            max_receive: native.max_receive(),
            streaming: false,
            stream_messages: 0,
            connect_timeout: target.connect_timeout,
            tls,
            cors,
            templated: native.templated().clone(),
            lean: native.lean(),
            http1_head,
            static_trace,
        }
    }

    /// Opens a connection for this call to `endpoint`: a lean one for unary calls over
    /// HTTP/1.1 (`transport = "lean"`), hyper's client otherwise.
    pub async fn connect(&self, endpoint: &Endpoint) -> Result<WebSender, ConnectError> {
        if !(self.lean && self.version == HttpVersion::Http1 && !self.streaming) {
            return connect(endpoint, self.version).await;
        }
        let transport = open_transport_for(endpoint, b"http/1.1").await?;
        Ok(WebSender {
            send: Sender::Lean1(Box::new(http1::Http1Connection::new(transport))),
            ended: Arc::default(),
        })
    }

    /// Appends the whole HTTP/1.1 request of one call to `out`: the prepared head, the
    /// call's own headers, its length and its body (base64 for `grpc-web-text`).
    fn write_http1_request(&self, out: &mut Vec<u8>, per_call: &PerCall, framed: &[u8]) {
        use std::io::Write;
        out.extend_from_slice(&self.http1_head);
        match &per_call.trace {
            Some(t) => http1::put_header(out, b"traceparent", t.as_bytes()),
            None => {
                for t in &self.static_trace {
                    http1::put_header(out, b"traceparent", t.as_bytes());
                }
            }
        }
        for (name, value) in &per_call.metadata {
            http1::put_header(out, name.as_str().as_bytes(), value.as_bytes());
        }
        let engine = &base64::engine::general_purpose::STANDARD;
        let length = if self.text {
            // No slice is long enough to overflow it; were one, the body would be empty
            // (and refused by the server), not a panic.
            base64::encoded_len(framed.len(), true).unwrap_or(0)
        } else {
            framed.len()
        };
        let _ = write!(out, "content-length: {length}\r\n\r\n");
        if self.text {
            let at = out.len();
            out.resize(at + length, 0);
            let written = engine.encode_slice(framed, &mut out[at..]).unwrap_or(0);
            out.truncate(at + written);
        } else {
            out.extend_from_slice(framed);
        }
    }

    /// Whether the load's calls go over the lean HTTP/2 client (the dispatcher's), as native
    /// unary calls do: unary, over HTTP/2, with no CORS preflight per connection, and the
    /// call's `transport` lean. Otherwise each goes through hyper's client.
    pub fn goes_lean(&self) -> bool {
        self.lean && self.version == HttpVersion::Http2 && !self.streaming && self.cors.is_none()
    }

    /// The request's URI (absolute over HTTP/2, the path alone over HTTP/1.1).
    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The headers every call sends (content type, deadline, metadata, …).
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// `grpc-web-text`: bodies are base64.
    pub fn text(&self) -> bool {
        self.text
    }

    /// The largest response message taken.
    pub fn max_receive(&self) -> u32 {
        self.max_receive
    }

    /// The content type the calls send (named when a server refuses it).
    pub fn content_type_sent(&self) -> String {
        content_type_sent(&self.headers)
    }

    /// The metadata rendered per call.
    pub fn templated(&self) -> &TemplatedMetadata {
        &self.templated
    }

    /// The same call as a server stream, ended after `messages` messages (0: by the server).
    pub fn server_stream(mut self, messages: u64) -> Self {
        self.streaming = true;
        self.stream_messages = messages;
        self
    }

    /// The endpoint of one backend, with this call's TLS and connect deadline.
    pub fn endpoint(&self, address: crate::vocabulary::HostPort) -> Endpoint {
        Endpoint {
            address,
            connect_timeout: self.connect_timeout,
            tls: self.tls.clone(),
        }
    }

    /// A unary call that keeps its response message (a probe decodes it): the outcome, the
    /// message when there was one, and whether the connection can carry another call.
    pub async fn unary(
        &self,
        sender: &mut WebSender,
        framed: Bytes,
    ) -> (Outcome, Option<Bytes>, Afterwards) {
        let mut kept = None;
        let io = CallIo {
            per_call: &PerCall::default(),
            stop: None,
            on_message: &mut || {},
            keep: Some(&mut kept),
        };
        let (outcome, reusable) = self.run(sender, framed, io).await;
        (outcome, kept, reusable)
    }

    /// A call under its deadline: on a lean HTTP/1.1 connection in place; through hyper's
    /// client boxed — its futures are large, and a lean call's state (moved a few times a
    /// call, and boxed by its worker) should not carry their room.
    async fn run<F: FnMut()>(
        &self,
        sender: &mut WebSender,
        framed: Bytes,
        io: CallIo<'_, F>,
    ) -> (Outcome, Afterwards) {
        if let Sender::Lean1(conn) = &mut sender.send {
            return self
                .within_deadline(self.exchange_http1(conn, framed, io))
                .await;
        }
        Box::pin(self.within_deadline(self.exchange(sender, framed, io))).await
    }

    /// A call under the call's deadline (`[call] timeout`), when it has one.
    async fn within_deadline(
        &self,
        exchange: impl std::future::Future<Output = (Outcome, Afterwards)>,
    ) -> (Outcome, Afterwards) {
        match self.timeout {
            None => exchange.await,
            Some(t) => tokio::time::timeout(t, exchange).await.unwrap_or_else(|_| {
                (
                    Outcome::failed(status::DEADLINE_EXCEEDED, "deadline exceeded (client side)"),
                    Afterwards::reusable_if(self.version == HttpVersion::Http2),
                )
            }),
        }
    }

    /// The CORS preflight a browser makes before its first call (when `cors_origin` is set):
    /// `Err` says why a browser would refuse to make the call.
    pub async fn preflight(&self, sender: &mut WebSender) -> Result<(), Outcome> {
        let Some(cors) = &self.cors else {
            return Ok(());
        };
        // A server that answers slowly, or never ends its answer, cannot hold a worker.
        tokio::time::timeout(self.connect_timeout, self.preflight_exchange(sender, cors))
            .await
            .unwrap_or_else(|_| {
                Err(Outcome::failed(
                    status::UNAVAILABLE,
                    format!(
                        "CORS preflight: no whole answer within {:?} (the connect timeout)",
                        self.connect_timeout
                    ),
                ))
            })
    }

    async fn preflight_exchange(&self, sender: &mut WebSender, cors: &Cors) -> Result<(), Outcome> {
        if let Sender::Lean1(conn) = &mut sender.send {
            return self.preflight_http1(conn, cors).await;
        }
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.method_mut() = Method::OPTIONS;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = cors.preflight.clone();
        let response = match sender.send(request, self.version).await {
            Ok(r) => r,
            Err((o, _)) => return Err(o),
        };
        let (head, body) = response.into_parts();
        // Read the (empty) body so an HTTP/1.1 connection can carry the call; bounded.
        let _ = http_body_util::Limited::new(body, 64 * 1024)
            .collect()
            .await;
        judge_preflight(
            head.status.as_u16(),
            head.headers
                .get("access-control-allow-origin")
                .map(HeaderValue::as_bytes),
            &cors.origin,
        )
    }

    /// The preflight on a lean HTTP/1.1 connection.
    async fn preflight_http1(
        &self,
        conn: &mut http1::Http1Connection,
        cors: &Cors,
    ) -> Result<(), Outcome> {
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let write = |out: &mut Vec<u8>| {
            out.extend_from_slice(b"OPTIONS ");
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(b" HTTP/1.1\r\n");
            for (name, value) in &cors.preflight {
                http1::put_header(out, name.as_str().as_bytes(), value.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        };
        let judge = |status: u16, fields: &[httparse::Header<'_>]| {
            let allowed = http1::response::header(fields, "access-control-allow-origin");
            judge_preflight(status, allowed, &cors.origin).err()
        };
        // The answer's body (there should be none) is read and dropped, so that the
        // connection can carry the call; the preflight's deadline bounds it.
        match conn.exchange(write, &judge, &mut |_| Ok(())).await {
            Ok(http1::Answer {
                verdict: Some(refused),
                ..
            }) => Err(refused),
            Ok(_) => Ok(()),
            Err(failure) => Err(failure.outcome),
        }
    }

    /// The call's deadline.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// One call: `framed` is the request as native gRPC frames it. `on_message` is told of
    /// each response message as it arrives; a server stream ends after `stream_messages`
    /// messages (0: when the server ends it) or when `stop` fires. The second value says
    /// whether the connection can carry another call (an HTTP/1.1 response left unread
    /// cannot).
    pub async fn call<F: FnMut()>(
        &self,
        sender: &mut WebSender,
        framed: Bytes,
        per_call: &PerCall,
        stop: Option<&CancellationToken>,
        on_message: &mut F,
    ) -> (Outcome, Afterwards) {
        let io = CallIo {
            per_call,
            stop,
            on_message,
            keep: None,
        };
        self.run(sender, framed, io).await
    }

    async fn exchange<F: FnMut()>(
        &self,
        sender: &mut WebSender,
        framed: Bytes,
        io: CallIo<'_, F>,
    ) -> (Outcome, Afterwards) {
        let CallIo {
            per_call,
            stop,
            on_message,
            keep,
        } = io;
        let limit = self.stream_messages;
        let body = if self.text {
            Bytes::from(base64::engine::general_purpose::STANDARD.encode(&framed))
        } else {
            framed
        };
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        per_call.apply(request.headers_mut());
        // Unary calls have no stop of their own: no token made per call for them.
        let stopped = async {
            match stop {
                Some(s) => s.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stopped);
        let answered = tokio::select! {
            r = sender.send(request, self.version) => r,
            // A server stream the server never answered: the run's end cancels it, and it
            // counts as failed with the reason (it measured nothing).
            _ = &mut stopped => return (
                Outcome::failed(
                    status::CANCELLED,
                    format!("{NO_ANSWER}the run ended before the server answered the call (no response head)"),
                ),
                Afterwards::Spent,
            ),
        };
        let response = match answered {
            Ok(r) => r,
            Err((o, unsent)) => {
                let after = if unsent {
                    Afterwards::NotProcessed
                } else {
                    Afterwards::reusable_if(!o.connection_failed)
                };
                return (o, after);
            }
        };
        let (head, mut body) = response.into_parts();
        let header = |name: &str| head.headers.get(name).map(HeaderValue::as_bytes);
        // Named only when refused: no copy per call.
        let sent = if head.status == http::StatusCode::OK {
            String::new()
        } else {
            content_type_sent(&self.headers)
        };
        if let Some(outcome) = judge_web_head(
            head.status.as_u16(),
            header("content-type"),
            header("grpc-status"),
            header("grpc-message"),
            &sent,
        ) {
            // The body is not read: an HTTP/1.1 connection cannot carry another call.
            return (
                outcome,
                Afterwards::reusable_if(self.version == HttpVersion::Http2),
            );
        }
        let mut reader = WebBodyReader::new(self.text, self.max_receive);
        reader.keep_first = keep.is_some();
        let mut trailers = None;
        let mut got = 0u64;
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = &mut stopped => return (Outcome::OK, Afterwards::reusable_if(self.version == HttpVersion::Http2)),
            };
            let frame = match frame {
                None => break,
                Some(Ok(f)) => f,
                Some(Err(e)) => return (sender.failure(&e, self.version), Afterwards::Spent),
            };
            match frame.into_data() {
                Ok(data) => match reader.feed(&data) {
                    Ok(new) => {
                        for _ in 0..new {
                            on_message();
                        }
                        got += new;
                        if self.streaming && limit > 0 && got >= limit {
                            return (
                                Outcome::OK,
                                Afterwards::reusable_if(self.version == HttpVersion::Http2),
                            );
                        }
                    }
                    Err(o) => return (o, Afterwards::Spent),
                },
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        let outcome = reader.finish(trailers.as_ref(), !self.streaming);
        if let Some(slot) = keep {
            *slot = reader.take_first().map(Bytes::from);
        }
        (outcome, Afterwards::Reusable)
    }
}

/// Whether a browser would make the call after this CORS preflight answer: `Err` says why not.
fn judge_preflight(
    http_status: u16,
    allowed: Option<&[u8]>,
    origin: &HeaderValue,
) -> Result<(), Outcome> {
    let refused = |why: String| {
        Outcome::failed(
            status::UNAVAILABLE,
            format!("CORS preflight: {why}; a browser at this origin would not make the call"),
        )
    };
    if !(200..300).contains(&http_status) {
        return Err(refused(format!("HTTP status {http_status}")));
    }
    match allowed {
        Some(a) if a == b"*" || a == origin.as_bytes() => Ok(()),
        Some(a) => Err(refused(format!(
            "the server allows origin {}, not {}",
            String::from_utf8_lossy(a),
            String::from_utf8_lossy(origin.as_bytes())
        ))),
        None => Err(refused(
            "no Access-Control-Allow-Origin in the answer".into(),
        )),
    }
}

/// HTTP/1.1's request line and the headers every call sends, `traceparent` apart (a call's
/// own replaces it).
fn http1_head(path: &str, headers: &HeaderMap) -> (Bytes, Vec<HeaderValue>) {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"POST ");
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    let mut trace = Vec::new();
    for (name, value) in headers {
        if name == "traceparent" {
            trace.push(value.clone());
            continue;
        }
        http1::put_header(&mut head, name.as_str().as_bytes(), value.as_bytes());
    }
    (Bytes::from(head), trace)
}

impl WebCall {
    /// A unary call on a lean HTTP/1.1 connection.
    async fn exchange_http1<F: FnMut()>(
        &self,
        conn: &mut http1::Http1Connection,
        framed: Bytes,
        io: CallIo<'_, F>,
    ) -> (Outcome, Afterwards) {
        let CallIo {
            per_call,
            on_message,
            keep,
            ..
        } = io;
        let mut reader = WebBodyReader::new(self.text, self.max_receive);
        reader.keep_first = keep.is_some();
        let judge = |http_status: u16, fields: &[httparse::Header<'_>]| {
            let header = |name| http1::response::header(fields, name);
            // Named only when refused: no copy per call.
            let sent = if http_status == 200 {
                String::new()
            } else {
                self.content_type_sent()
            };
            judge_web_head(
                http_status,
                header("content-type"),
                header("grpc-status"),
                header("grpc-message"),
                &sent,
            )
        };
        let answer = {
            let mut sink = |data: &[u8]| {
                for _ in 0..reader.feed(data)? {
                    on_message();
                }
                Ok(())
            };
            conn.exchange(
                |out| self.write_http1_request(out, per_call, &framed),
                &judge,
                &mut sink,
            )
            .await
        };
        match answer {
            Err(failure) if failure.unsent => (failure.outcome, Afterwards::NotProcessed),
            Err(failure) => (failure.outcome, Afterwards::Spent),
            Ok(http1::Answer {
                verdict: Some(ended),
                ..
            }) => (ended, Afterwards::reusable_if(!conn.is_closed())),
            Ok(http1::Answer { framing, .. }) => {
                let outcome = framing.with_trailers(|t| reader.finish_with(t, !self.streaming));
                if let Some(slot) = keep {
                    *slot = reader.take_first().map(Bytes::from);
                }
                (outcome, Afterwards::reusable_if(!conn.is_closed()))
            }
        }
    }
}

/// What a hyper error means for the call, in words that say what to change.
fn outcome_of(e: &hyper::Error, version: HttpVersion) -> Outcome {
    let reset = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<h2::Error>())
        .filter(|h| h.is_reset() && h.is_remote())
        .and_then(h2::Error::reason);
    if let Some(reason) = reset {
        return reset_outcome(u32::from(reason));
    }
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_parse_too_large() {
        // Endless headers, or a header line of megabytes: the answer is HTTP/1.1, too big.
        let mut o = Outcome::failed(
            status::UNAVAILABLE,
            format!("the server's response head is too large ({chain}): more header bytes or lines than the client takes (hyper's limits: about 400 KiB, 100 headers)"),
        );
        o.connection_failed = true;
        return o;
    }
    // An HTTP/1.1 server's answer to the HTTP/2 preface ("HTTP/1.1 400 …") read as an
    // HTTP/2 frame header is a frame of millions of bytes.
    if version == HttpVersion::Http2 && chain.contains("frame with invalid size") {
        let mut o = Outcome::failed(
            status::UNAVAILABLE,
            format!("{WRONG_PROTOCOL}the server does not speak HTTP/2 ({chain}): it may speak HTTP/1.1 only; set `http_version = \"1.1\"`"),
        );
        o.connection_failed = true;
        return o;
    }
    // An HTTP/2 server's first bytes (its SETTINGS) reach an HTTP/1.1 client before any
    // request (hyper: "unexpected message") or as the answer (a parse error).
    let not_http1 = e.is_parse() || chain.contains("unexpected message");
    let mut o = if not_http1 && version == HttpVersion::Http1 {
        Outcome::failed(status::UNAVAILABLE, status::not_http1(&chain))
    } else if e.is_timeout() {
        Outcome::failed(status::DEADLINE_EXCEEDED, chain)
    } else {
        Outcome::failed(status::UNAVAILABLE, format!("connection failed: {chain}"))
    };
    o.connection_failed = true;
    o
}

/// A gRPC-Web call's stream reset by the server before any answer. The call's stream alone
/// was refused; the connection goes on.
pub(crate) fn reset_outcome(reason: u32) -> Outcome {
    Outcome::failed(
        crate::grpc::unary::code_of_reset(reason).unwrap_or(status::INTERNAL),
        format!("{WRONG_PROTOCOL}the server reset the call's stream ({:?}) without answering: native gRPC servers (grpcio) refuse gRPC-Web's content type so; if this one speaks native gRPC, set `protocol = \"grpc\"`", h2::Reason::from(reason)),
    )
}

/// What a gRPC-Web response's headers say: `Some` when they end the call (an HTTP error, a
/// body that is not gRPC-Web, a trailers-only status), `None` when frames follow.
pub(crate) fn judge_web_head(
    http_status: u16,
    content_type: Option<&[u8]>,
    grpc_status: Option<&[u8]>,
    message: Option<&[u8]>,
    sent: &str,
) -> Option<Outcome> {
    // Only the failures show it: an answered call allocates nothing here.
    let shown = || {
        content_type.map_or_else(
            || "none".to_string(),
            |c| String::from_utf8_lossy(c).into_owned(),
        )
    };
    let native = content_type.is_some_and(|c| {
        c == b"application/grpc"
            || c.starts_with(b"application/grpc+")
            || c.starts_with(b"application/grpc;")
    });
    if http_status != 200 {
        let other = if sent.starts_with("application/grpc-web-text") {
            "; or it is a gRPC-Web server that takes binary only: set `protocol = \"grpc-web\"`"
        } else {
            "; or it is a gRPC-Web server that takes text only: set `protocol = \"grpc-web-text\"`"
        };
        let (prefix, hint) = if http_status == 415 {
            (
                WRONG_PROTOCOL,
                format!(": the server refused the content type sent ({sent}): a native gRPC server refuses gRPC-Web's content types (set `protocol = \"grpc\"` in [target]){other}"),
            )
        } else if native {
            (WRONG_PROTOCOL, ": the server does not take gRPC-Web (a native gRPC server refuses its content type); set `protocol = \"grpc\"` in [target] for native gRPC".to_string())
        } else {
            ("", String::new())
        };
        return Some(Outcome::failed(
            status::from_http_status(http_status),
            format!(
                "{prefix}HTTP status {http_status} from the server (content-type {}){hint}",
                shown()
            ),
        ));
    }
    let web = content_type.is_some_and(|c| c.starts_with(b"application/grpc-web"));
    if let Some(code) = grpc_status.filter(|_| web || content_type.is_none()) {
        return Some(Outcome::from_status(status::parse_code(code), message));
    }
    if web {
        return None;
    }
    if native {
        return Some(Outcome::failed(
            status::UNKNOWN,
            format!("{WRONG_PROTOCOL}the server answered with content-type {}: it speaks native gRPC, not gRPC-Web; set `protocol = \"grpc\"` in [target]", shown()),
        ));
    }
    Some(Outcome::failed(
        status::UNKNOWN,
        format!("the server answered HTTP 200 with content-type {}, not gRPC-Web (application/grpc-web)", shown()),
    ))
}

/// The content type a call sends (named when a server refuses it).
fn content_type_sent(headers: &HeaderMap) -> String {
    headers
        .get("content-type")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_judged_and_name_the_protocol_the_server_speaks() {
        let judge = |http, ct: Option<&str>, st: Option<&str>| {
            judge_web_head(
                http,
                ct.map(str::as_bytes),
                st.map(str::as_bytes),
                None,
                "application/grpc-web+proto",
            )
        };
        assert!(judge(200, Some("application/grpc-web+proto"), None).is_none());
        assert!(judge(200, Some("application/grpc-web-text"), None).is_none());
        assert_eq!(
            judge(200, Some("application/grpc-web+proto"), Some("5"))
                .unwrap()
                .code,
            5
        );
        let native = judge(200, Some("application/grpc"), None).unwrap();
        assert!(native.message.unwrap().contains("protocol = \"grpc\""));
        let refused = judge(415, Some("application/grpc"), None).unwrap();
        let said = refused.message.unwrap();
        assert!(
            said.contains("native gRPC") && said.contains("grpc-web+proto"),
            "{said}"
        );
        assert!(said.contains("takes text only"), "{said}");
        // Text refused by a server that takes binary only (Connect for Node): both said.
        let text = judge_web_head(
            415,
            Some(b"text/plain"),
            None,
            None,
            "application/grpc-web-text",
        )
        .unwrap()
        .message
        .unwrap();
        assert!(
            text.contains("refused the content type sent (application/grpc-web-text)")
                && text.contains("protocol = \"grpc\"")
                && text.contains("protocol = \"grpc-web\""),
            "{text}"
        );
        assert_eq!(
            judge(404, Some("text/html"), None).unwrap().code,
            status::UNIMPLEMENTED
        );
        assert_eq!(
            judge(200, Some("text/html"), Some("0")).unwrap().code,
            status::UNKNOWN
        );
    }
}
