//! Connections to the target: the transport (TCP, or TLS with h2 by ALPN) every kind of load
//! uses, and the pooled `h2` connections of stream workers. tonic's `Channel` puts every
//! request through a tower `Buffer` (a channel message per request); here each worker holds
//! a clone of its connection's `SendRequest` and sends on it directly. Unary calls have their
//! own leaner client on the same transport (`grpc::lean`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How to reach the target.
#[derive(Clone)]
pub struct Endpoint {
    /// Where to connect.
    pub address: crate::scenario::HostPort,
    pub connect_timeout: Duration,
    /// TLS, when the scenario has `[target.tls]`.
    pub tls: Option<crate::tls::ClientTls>,
}

/// Why a connection could not be made, in words a user can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("connection to {0} refused: nothing is listening there")]
    Refused(String),
    #[error("connection to {0} timed out after {1:?}: the target does not answer (not at all, or not in HTTP/2)")]
    Timeout(String, Duration),
    #[error("cannot connect to {0}: {1}")]
    Other(String, String),
    #[error("{0} does not speak HTTP/2 (gRPC): {1}")]
    Handshake(String, String),
    #[error("connection to {0} reset by the server before its HTTP/2 handshake finished: {1}")]
    Lost(String, String),
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(String, String),
}

impl ConnectError {
    /// The error of the first connection a run makes. A reset before any HTTP/2 answer
    /// there means the peer does not speak HTTP/2 (an HTTP/1 server answers the preface
    /// and closes); later in a run, once the target has spoken HTTP/2, the same reset is a
    /// target going away (`Lost`: UNAVAILABLE, "reset by the server").
    pub fn first_contact(self) -> Self {
        match self {
            Self::Lost(addr, why) => Self::Handshake(
                addr,
                format!("{why} (the connection was closed before any HTTP/2 answer)"),
            ),
            other => other,
        }
    }
}

/// A connected byte stream to the target: TCP, or TLS over TCP with h2 negotiated.
pub enum Transport {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Transport {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Transport {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_flush(cx),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connects TCP and, when the scenario asks, TLS (which must negotiate h2 by ALPN).
pub async fn open_transport(endpoint: &Endpoint) -> Result<Transport, ConnectError> {
    let addr = endpoint.address.to_string();
    let dial = TcpStream::connect(endpoint.address.dial());
    let tcp = match tokio::time::timeout(endpoint.connect_timeout, dial).await {
        Err(_) => {
            return Err(ConnectError::Timeout(
                addr.clone(),
                endpoint.connect_timeout,
            ))
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(ConnectError::Refused(addr.clone()))
        }
        Ok(Err(e)) => return Err(ConnectError::Other(addr.clone(), e.to_string())),
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &endpoint.tls else {
        return Ok(Transport::Tcp(tcp));
    };
    let handshake = tls.connector().connect(tls.server_name.clone(), tcp);
    let stream = match tokio::time::timeout(endpoint.connect_timeout, handshake).await {
        Err(_) => {
            return Err(ConnectError::Timeout(
                addr.clone(),
                endpoint.connect_timeout,
            ))
        }
        Ok(Err(e)) => {
            return Err(ConnectError::Tls(
                addr.clone(),
                crate::tls::diagnose::describe(&e),
            ))
        }
        Ok(Ok(s)) => s,
    };
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(ConnectError::Tls(
            addr.clone(),
            "the server did not select h2 by ALPN: it does not serve gRPC over this TLS port"
                .into(),
        ));
    }
    Ok(Transport::Tls(Box::new(stream)))
}

/// Opens one HTTP/2 connection; its driver runs as a task until the connection ends.
pub async fn connect(endpoint: &Endpoint) -> Result<SendRequest<Bytes>, ConnectError> {
    let transport = open_transport(endpoint).await?;
    h2_over(transport, endpoint).await
}

/// The HTTP/2 handshake over an established byte stream (TCP or TLS).
async fn h2_over<T>(io: T, endpoint: &Endpoint) -> Result<SendRequest<Bytes>, ConnectError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let addr = endpoint.address.to_string();
    let handshake = h2::client::Builder::new()
        // Large windows: a load generator should not be flow-controlled by its own defaults.
        .initial_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .max_concurrent_reset_streams(4096)
        .handshake::<_, Bytes>(io);
    let (send, mut connection) =
        match tokio::time::timeout(endpoint.connect_timeout, handshake).await {
            Err(_) => {
                return Err(ConnectError::Timeout(
                    addr.clone(),
                    endpoint.connect_timeout,
                ))
            }
            Ok(Err(e)) if e.is_io() => return Err(ConnectError::Lost(addr.clone(), e.to_string())),
            Ok(Err(e)) => return Err(ConnectError::Handshake(addr.clone(), e.to_string())),
            Ok(Ok(pair)) => pair,
        };
    let ping_pong = connection.ping_pong();
    tokio::spawn(async move {
        // The connection's end is seen by its streams; nothing more to do with the error.
        let _ = connection.await;
    });
    // The handshake only writes our preface; a PING answered proves the peer reads HTTP/2
    // and is alive, so a port that accepts TCP but never speaks fails here, not mid-run.
    let Some(mut ping_pong) = ping_pong else {
        return Ok(send);
    };
    match tokio::time::timeout(endpoint.connect_timeout, ping_pong.ping(h2::Ping::opaque())).await {
        Err(_) => Err(ConnectError::Timeout(
            addr.clone(),
            endpoint.connect_timeout,
        )),
        Ok(Err(e)) if e.is_io() => Err(ConnectError::Lost(addr.clone(), e.to_string())),
        Ok(Err(e)) => Err(ConnectError::Handshake(addr.clone(), e.to_string())),
        Ok(Ok(_)) => Ok(send),
    }
}

/// A connection a worker uses, and its generation (bumped on each reconnect, so many
/// workers seeing one broken connection reconnect it once).
#[derive(Clone)]
pub struct Lease {
    pub send: SendRequest<Bytes>,
    pub generation: u64,
}

struct SlotState {
    current: Option<Lease>,
    generation: u64,
    reconnect: Reconnect,
}

/// The one reconnect policy, for the pooled h2 connections and the unary dispatcher's lean
/// ones: after a failed attempt the next waits a backoff that doubles from `MIN_BACKOFF` to
/// `MAX_BACKOFF`; a success resets it; the last error is kept for the requests that find
/// the connection down meanwhile.
#[derive(Debug, Clone)]
pub struct Reconnect {
    next_attempt: Instant,
    backoff: Duration,
    last_error: Option<ConnectError>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            next_attempt: Instant::now(),
            backoff: MIN_BACKOFF,
            last_error: None,
        }
    }
}

impl Reconnect {
    /// Whether an attempt may start at `now`.
    pub fn may_try(&self, now: Instant) -> bool {
        now >= self.next_attempt
    }

    /// Earliest time of the next attempt.
    pub fn next_attempt(&self) -> Instant {
        self.next_attempt
    }

    /// The error of the last failed attempt, while the connection is down.
    pub fn last_error(&self) -> Option<&ConnectError> {
        self.last_error.as_ref()
    }

    pub fn succeeded(&mut self) {
        self.backoff = MIN_BACKOFF;
        self.last_error = None;
    }

    pub fn failed(&mut self, e: ConnectError) {
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.last_error = Some(e);
    }
}

/// `connections` HTTP/2 connections; worker `i` uses slot `i % connections`.
/// The mutex is taken only to lease a connection or to replace a broken one, never per request.
pub struct Pool {
    endpoint: Endpoint,
    slots: Vec<Arc<Mutex<SlotState>>>,
}

/// Reconnect backoff while the target is down (`Reconnect`).
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Pool {
    /// Opens every connection up front, so a target that is down fails the run at once.
    pub async fn open(endpoint: Endpoint, connections: usize) -> Result<Self, ConnectError> {
        let mut slots = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let send = connect(&endpoint).await?;
            slots.push(Arc::new(Mutex::new(SlotState {
                current: Some(Lease {
                    send,
                    generation: 1,
                }),
                generation: 1,
                reconnect: Reconnect::default(),
            })));
        }
        Ok(Self { endpoint, slots })
    }

    /// The connection for `slot`; when the one a worker holds (`broken`) has failed, a new
    /// one is made, at most once per generation and with backoff while the target is down.
    pub async fn lease(&self, slot: usize, broken: Option<u64>) -> Result<Lease, ConnectError> {
        let mut state = self.slots[slot % self.slots.len()].lock().await;
        if let Some(gen) = broken {
            if state.current.as_ref().is_some_and(|l| l.generation == gen) {
                state.current = None;
            }
        }
        if let Some(lease) = &state.current {
            return Ok(lease.clone());
        }
        if !state.reconnect.may_try(Instant::now()) {
            return Err(state.reconnect.last_error().cloned().unwrap_or_else(|| {
                ConnectError::Other(self.endpoint.address.to_string(), "reconnecting".into())
            }));
        }
        match connect(&self.endpoint).await {
            Ok(send) => {
                state.generation += 1;
                state.reconnect.succeeded();
                let lease = Lease {
                    send,
                    generation: state.generation,
                };
                state.current = Some(lease.clone());
                Ok(lease)
            }
            Err(e) => {
                state.reconnect.failed(e.clone());
                Err(e)
            }
        }
    }

    /// When the slot's next connection attempt is allowed (for workers to wait, not spin).
    pub async fn next_attempt(&self, slot: usize) -> Instant {
        self.slots[slot % self.slots.len()]
            .lock()
            .await
            .reconnect
            .next_attempt()
    }
}
