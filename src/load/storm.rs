//! One handshake-storm iteration: resolve, connect, TLS handshake, optionally one gRPC call,
//! close — each phase timed; what was negotiated and how it failed, classified.

use std::net::SocketAddr;
use std::time::Duration;

use opentelemetry::KeyValue;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::grpc::request::{Renderer, Requests};
use crate::grpc::status;
use crate::grpc::unary::{Outcome, UnaryCall};
use crate::record::recorder::Handshake;
use crate::record::SharedRecorder;
use crate::telemetry::traces::CallSpan;
use crate::tls::diagnose::{cert_info, classify_connect, classify_tls, describe, micros};
use crate::tls::ClientTls;
use crate::vocabulary::HostPort;

/// The HTTP/2 client preface and an empty SETTINGS frame: what a gRPC client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// A handshake-storm iteration, prepared once.
#[derive(Debug, Clone)]
pub struct HandshakeCall {
    /// The client's TLS configuration.
    pub tls: ClientTls,
    /// How long a connection and its handshake may take.
    pub connect_timeout: Duration,
    /// One gRPC call over each connection, when the scenario has `[call]`.
    pub call: Option<UnaryCall>,
}

/// A sampled handshake's phases and parameters, as span attributes.
fn describe_in_span(hs: &Handshake, span: &mut CallSpan) {
    let phases = [
        ("loadagent.tls.dns_us", hs.dns_us),
        ("loadagent.tls.tcp_connect_us", hs.tcp_us),
        ("loadagent.tls.handshake_us", hs.tls_us),
        ("loadagent.tls.first_response_us", hs.first_response_us),
    ];
    for (key, value) in phases {
        if let Some(us) = value {
            span.set_attribute(KeyValue::new(key, i64::try_from(us).unwrap_or(i64::MAX)));
        }
    }
    if let Some(v) = &hs.version {
        span.set_attribute(KeyValue::new("tls.protocol.version", v.clone()));
    }
    if let Some(c) = &hs.cipher_suite {
        span.set_attribute(KeyValue::new("tls.cipher", c.clone()));
    }
    span.set_attribute(KeyValue::new("tls.resumed", hs.resumed));
    if let Some((class, _)) = &hs.error {
        span.set_attribute(KeyValue::new("error.type", class.clone()));
    }
}

impl HandshakeCall {
    /// Runs one iteration. Phases are recorded in `rec` when given (the iteration is
    /// measured); the outcome is the call's
    /// status (OK when there is no call), or UNAVAILABLE with the failure's class.
    pub async fn run(
        &self,
        address: &HostPort,
        requests: &Requests,
        number: u64,
        renderer: &mut Renderer,
        rec: Option<&SharedRecorder>,
        span: Option<&mut CallSpan>,
    ) -> Outcome {
        let mut hs = Handshake::default();
        let trace = span.as_ref().and_then(|s| s.traceparent.clone());
        let outcome = self
            .iterate(address, requests, number, renderer, &mut hs, trace.as_ref())
            .await;
        if let Some(span) = span {
            describe_in_span(&hs, span);
        }
        if let Some(rec) = rec {
            rec.borrow_mut().handshake(Instant::now(), hs);
        }
        outcome
    }

    async fn iterate(
        &self,
        address: &HostPort,
        requests: &Requests,
        number: u64,
        renderer: &mut Renderer,
        hs: &mut Handshake,
        trace: Option<&http::HeaderValue>,
    ) -> Outcome {
        let start = Instant::now();
        let fail = |hs: &mut Handshake, class: String, message: String| {
            let mut outcome = Outcome::failed(status::UNAVAILABLE, format!("{class}: {message}"));
            // Out of ports or descriptors: the worker should let some free up first.
            outcome.connection_failed = class == "address_unavailable";
            hs.error = Some((class, message));
            outcome
        };
        // Resolve.
        let addr: SocketAddr = match tokio::net::lookup_host(address.dial())
            .await
            .map(|mut a| a.next())
        {
            Ok(Some(a)) => a,
            Ok(None) => {
                return fail(
                    hs,
                    "other".into(),
                    format!("{} resolves to no address", address),
                )
            }
            Err(e) => {
                return fail(
                    hs,
                    "other".into(),
                    format!("cannot resolve {}: {e}", address),
                )
            }
        };
        let resolved = Instant::now();
        hs.dns_us = Some(micros(resolved - start));
        // Connect.
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return fail(
                    hs,
                    "connect_timeout".into(),
                    format!(
                        "no TCP connection to {addr} within {:?}",
                        self.connect_timeout
                    ),
                )
            }
            Ok(Err(e)) => return fail(hs, classify_connect(&e).into(), e.to_string()),
            Ok(Ok(s)) => s,
        };
        let _ = tcp.set_nodelay(true);
        let connected = Instant::now();
        hs.tcp_us = Some(micros(connected - resolved));
        // Handshake.
        let handshake = self
            .tls
            .connector()
            .connect(self.tls.server_name.clone(), tcp);
        let mut stream = match tokio::time::timeout(self.connect_timeout, handshake).await {
            Err(_) => {
                return fail(
                    hs,
                    "handshake_timeout".into(),
                    format!("no TLS handshake within {:?}", self.connect_timeout),
                )
            }
            Ok(Err(e)) => return fail(hs, classify_tls(&e), describe(&e)),
            Ok(Ok(s)) => s,
        };
        let done = Instant::now();
        hs.tls_us = Some(micros(done - connected));
        {
            let conn = stream.get_ref().1;
            hs.version = conn.protocol_version().map(|v| format!("{v:?}"));
            hs.cipher_suite = conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()));
            hs.group = conn
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()));
            hs.resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            hs.alpn = conn
                .alpn_protocol()
                .map(|a| String::from_utf8_lossy(a).into_owned());
            hs.certificate = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| cert_info(c));
        }
        let rst = self.tls.close_with_rst;
        let outcome = match &self.call {
            None => {
                // The handshake completed: it counts, whatever follows. What follows is a
                // phase of its own, bounded and classified apart (`tls.after_handshake`).
                let h2 = hs.alpn.as_deref() == Some("h2");
                let tls13 = hs.version.as_deref() == Some("TLSv1_3");
                hs.after_handshake = self.after_handshake(&mut stream, h2, tls13).await;
                Outcome::OK
            }
            Some(call) => {
                if hs.alpn.as_deref() != Some("h2") {
                    return fail(
                        hs,
                        "other".into(),
                        "the server did not select h2 by ALPN: no gRPC call is possible".into(),
                    );
                }
                let (mut send, connection) = match h2::client::handshake(stream).await {
                    Ok(pair) => pair,
                    Err(e) => {
                        return fail(hs, "other".into(), format!("HTTP/2 handshake failed: {e}"))
                    }
                };
                let driver = tokio::spawn(async move {
                    let _ = connection.await;
                });
                let body = requests.body(number, renderer);
                let per_call = call.templated().per_call(number, renderer, trace.cloned());
                let (outcome, headers_at) = call.call_timed(&mut send, body, &per_call).await;
                hs.first_response_us = headers_at.map(|t| micros(t - done));
                drop(send);
                driver.abort();
                hs.total_us = Some(micros(Instant::now() - start));
                return outcome;
            }
        };
        if rst {
            let tcp = stream.get_ref().0;
            let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
        } else {
            let _ = stream.shutdown().await;
        }
        drop(stream);
        hs.total_us = Some(micros(Instant::now() - start));
        outcome
    }
}

/// The longest wait for what follows a completed handshake.
const AFTER_HANDSHAKE_WAIT: Duration = Duration::from_secs(1);

impl HandshakeCall {
    /// After a handshake without a call: an HTTP/2 server is sent the preface and answers
    /// with SETTINGS; on TLS 1.3 with `resumption = "tickets"`, the server's session tickets
    /// follow the handshake (whatever the server speaks) and are waited for, so that the
    /// next handshake can resume. Bounded by the connect timeout and one second; `None`
    /// when everything expected arrived, or what did not.
    async fn after_handshake<S>(&self, stream: &mut S, h2: bool, tls13: bool) -> Option<String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use std::sync::atomic::Ordering;
        let tickets = self.tls.tickets.as_deref().filter(|_| tls13);
        let before = tickets.map_or(0, |t| t.received.load(Ordering::Acquire));
        if h2 {
            let _ = stream.write_all(H2_PREFACE).await;
            let _ = stream.flush().await;
        }
        let mut settings_seen = !h2;
        let wait = async {
            let mut buf = [0u8; 256];
            loop {
                let notified = tickets.map(|t| t.arrived.notified());
                tokio::pin!(notified);
                if let Some(n) = notified.as_mut().as_pin_mut() {
                    n.enable();
                }
                let ticket_seen =
                    tickets.is_none_or(|t| t.received.load(Ordering::Acquire) > before);
                if settings_seen && ticket_seen {
                    return None;
                }
                tokio::select! {
                    r = tokio::io::AsyncReadExt::read(stream, &mut buf) => match r {
                        Ok(0) => return Some("closed".to_string()),
                        Ok(_) => settings_seen = true,
                        Err(_) => return Some("read_error".to_string()),
                    },
                    _ = async {
                        match notified.as_mut().as_pin_mut() {
                            Some(n) => n.await,
                            None => std::future::pending().await,
                        }
                    } => {}
                }
            }
        };
        let limit = self.connect_timeout.min(AFTER_HANDSHAKE_WAIT);
        match tokio::time::timeout(limit, wait).await {
            Ok(done) => done,
            Err(_) if !settings_seen => Some("no_settings".into()),
            Err(_) => Some("no_session_ticket".into()),
        }
    }
}
