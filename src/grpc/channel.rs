//! Connections to the target: the transport (TCP, or TLS with h2 by ALPN) every kind of load
//! uses, and the pooled `h2` connections of stream workers. tonic's `Channel` puts every
//! request through a tower `Buffer` (a channel message per request); here each worker holds
//! a clone of its connection's `SendRequest` and sends on it directly. Unary calls have their
//! own leaner client on the same transport (`grpc::lean`).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::discovery::{Backend, Fleet, Membership};
use crate::vocabulary::Balance;

/// How to reach the target.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where to connect.
    pub address: crate::vocabulary::HostPort,
    /// How long a connection (and its handshakes) may take.
    pub connect_timeout: Duration,
    /// TLS, when the scenario has `[target.tls]`.
    pub tls: Option<crate::tls::ClientTls>,
}

/// Why a connection could not be made, in words a user can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("connection to {0} refused: nothing is listening there")]
    /// Nothing listens at the address.
    Refused(String),
    #[error("connection to {0} timed out after {1:?}: the target does not answer (not at all, or not in HTTP/2)")]
    /// No answer in time.
    Timeout(String, Duration),
    #[error("cannot connect to {0}: {1}")]
    /// Any other failure: the address and the reason.
    Other(String, String),
    #[error("{0} does not speak HTTP/2 (gRPC): {1}")]
    /// The server does not speak HTTP/2.
    Handshake(String, String),
    #[error("connection to {0} reset by the server before its HTTP/2 handshake finished: {1}")]
    /// The connection was reset before the HTTP/2 handshake finished.
    Lost(String, String),
    #[error("TLS handshake with {0} failed: {1}")]
    /// The TLS handshake failed.
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
#[derive(Debug)]
pub enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
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
    open_transport_for(endpoint, b"h2").await
}

/// Connects TCP and, when the scenario asks, TLS, which must negotiate `alpn` (`h2`, or
/// `http/1.1` for gRPC-Web over HTTP/1.1).
pub async fn open_transport_for(
    endpoint: &Endpoint,
    alpn: &[u8],
) -> Result<Transport, ConnectError> {
    connect_transport(endpoint, alpn, false)
        .await
        .map(|(transport, _)| transport)
}

/// `open_transport_for`, and what the TLS handshake negotiated (when the endpoint has TLS).
pub async fn open_transport_with_facts(
    endpoint: &Endpoint,
    alpn: &[u8],
) -> Result<(Transport, Option<super::control::TlsFacts>), ConnectError> {
    connect_transport(endpoint, alpn, true).await
}

/// Connects; `facts`: and reads what the handshake negotiated (certificates parsed: not for
/// the load's connections).
async fn connect_transport(
    endpoint: &Endpoint,
    alpn: &[u8],
    facts: bool,
) -> Result<(Transport, Option<super::control::TlsFacts>), ConnectError> {
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
        return Ok((Transport::Tcp(tcp), None));
    };
    let started = std::time::Instant::now();
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
    if stream.get_ref().1.alpn_protocol() != Some(alpn) {
        let selected = stream
            .get_ref()
            .1
            .alpn_protocol()
            .map_or("none".to_string(), |p| {
                String::from_utf8_lossy(p).into_owned()
            });
        let why = if alpn == b"h2" {
            format!("the server did not select h2 by ALPN (it selected {selected}): it does not serve gRPC over this TLS port")
        } else {
            format!(
                "the server did not select {} by ALPN (it selected {selected})",
                String::from_utf8_lossy(alpn)
            )
        };
        return Err(ConnectError::Tls(addr.clone(), why));
    }
    let facts = facts.then(|| super::control::TlsFacts::of(stream.get_ref().1, started.elapsed()));
    Ok((Transport::Tls(Box::new(stream)), facts))
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

/// A connection a worker uses: its backend, and its generation (bumped on each reconnect,
/// so many workers seeing one broken connection reconnect it once).
#[derive(Debug, Clone)]
pub struct Lease {
    /// The connection's request sender.
    pub send: SendRequest<Bytes>,
    /// Which connection of the slot this is.
    pub generation: u64,
    /// The backend's id (`discovery::Backend::id`), for its tally.
    pub backend: u32,
    /// The membership version it was leased under: a worker leases again when it changes.
    pub version: u64,
}

/// A lease that failed: the error, and the backend it was for (its tally gets the failure).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct LeaseError {
    /// Why.
    pub error: ConnectError,
    /// The backend's id.
    pub backend: u32,
}

#[derive(Debug)]
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

    /// A connection was made: the backoff starts again.
    pub fn succeeded(&mut self) {
        self.backoff = MIN_BACKOFF;
        self.last_error = None;
    }

    /// A connection failed: the next attempt waits twice as long (up to a cap).
    pub fn failed(&mut self, e: ConnectError) {
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.last_error = Some(e);
    }
}

/// `connections` HTTP/2 connections per backend; worker `i` uses slot `i % connections` of
/// the backend it is given: the next in turn for each call (`round_robin`), or the first that
/// is not failing (`pick_first`). Backends follow the fleet's membership: a new one is
/// connected on first use; one that left is dropped from the pool, and its connections
/// close once the calls still on them end (h2 closes when its last handle goes).
/// The mutexes are taken only to lease a connection or to replace a broken one.
#[derive(Debug)]
pub struct Pool {
    endpoint: Endpoint,
    per_backend: usize,
    fleet: Arc<Fleet>,
    balance: Balance,
    groups: std::sync::Mutex<Groups>,
    next: AtomicUsize,
}

#[derive(Debug, Default)]
struct Groups {
    version: u64,
    by_backend: Vec<PoolGroup>,
}

#[derive(Debug)]
struct PoolGroup {
    backend: Arc<Backend>,
    endpoint: Endpoint,
    slots: Vec<Arc<Mutex<SlotState>>>,
}

impl PoolGroup {
    fn new(backend: Arc<Backend>, template: &Endpoint, per_backend: usize) -> Self {
        Self {
            endpoint: Endpoint {
                address: backend.address.clone(),
                ..template.clone()
            },
            backend,
            slots: (0..per_backend.max(1))
                .map(|_| {
                    Arc::new(Mutex::new(SlotState {
                        current: None,
                        generation: 0,
                        reconnect: Reconnect::default(),
                    }))
                })
                .collect(),
        }
    }
}

/// Reconnect backoff while the target is down (`Reconnect`).
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Pool {
    /// Opens every connection to every backend up front, so a target that is down fails the
    /// run at once (a fleet's: when no backend can be connected to).
    pub async fn open(
        endpoint: Endpoint,
        connections: usize,
        fleet: Arc<Fleet>,
        balance: Balance,
    ) -> Result<Self, ConnectError> {
        let membership = fleet.current();
        let pool = Self {
            endpoint,
            per_backend: connections.max(1),
            fleet,
            balance,
            groups: std::sync::Mutex::new(Groups::default()),
            next: AtomicUsize::new(0),
        };
        let mut first_error = None;
        let mut up = 0;
        for backend in &membership.backends {
            for slot in 0..pool.per_backend {
                match pool.lease_on(backend, slot, None, membership.version).await {
                    Ok(_) => up += 1,
                    Err(e) => {
                        first_error.get_or_insert(e.error);
                        break;
                    }
                }
            }
        }
        match first_error {
            Some(e) if up == 0 => Err(e),
            _ => Ok(pool),
        }
    }

    /// The backend the next call goes to.
    fn pick(&self, membership: &Membership, slot: usize) -> Option<Arc<Backend>> {
        let n = membership.backends.len();
        match self.balance {
            Balance::RoundRobin => {
                let i = self.next.fetch_add(1, Ordering::Relaxed);
                membership.backends.get(i % n.max(1)).cloned()
            }
            Balance::PickFirst => {
                let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
                let failing = |b: &Backend| {
                    groups.by_backend.iter().any(|g| {
                        g.backend.id == b.id
                            && g.slots[slot % g.slots.len()].try_lock().is_ok_and(|s| {
                                s.current.is_none() && s.reconnect.last_error().is_some()
                            })
                    })
                };
                membership
                    .backends
                    .iter()
                    .find(|b| !failing(b))
                    .or(membership.backends.first())
                    .cloned()
            }
        }
    }

    /// Whether a worker holding a lease under `version` should lease again for its next call:
    /// the membership changed, or calls rotate over several backends.
    pub fn lease_is_stale(&self, lease: &Lease) -> bool {
        let m = self.fleet.current();
        m.version != lease.version || (self.balance == Balance::RoundRobin && m.backends.len() > 1)
    }

    /// A connection for the next call from worker slot `slot` (a slot whose connection
    /// was `forget`-ed reconnects, with backoff while its backend is down).
    pub async fn lease(&self, slot: usize) -> Result<Lease, LeaseError> {
        let membership = self.fleet.current();
        let Some(backend) = self.pick(&membership, slot) else {
            return Err(LeaseError {
                error: ConnectError::Other(
                    self.endpoint.address.to_string(),
                    "the target has no backend".into(),
                ),
                backend: 0,
            });
        };
        self.lease_on(&backend, slot, None, membership.version)
            .await
    }

    /// Marks `broken`'s connection as gone, so the next lease reconnects it (at most once
    /// per generation: a lease of an older one changes nothing).
    pub fn forget(&self, broken: &Lease, slot: usize) {
        if let Some(state) = self.slot_of(broken.backend, slot) {
            if let Ok(mut s) = state.try_lock() {
                if s.current
                    .as_ref()
                    .is_some_and(|l| l.generation == broken.generation)
                {
                    s.current = None;
                }
            }
        }
    }

    fn slot_of(&self, backend: u32, slot: usize) -> Option<Arc<Mutex<SlotState>>> {
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups
            .by_backend
            .iter()
            .find(|g| g.backend.id == backend)
            .map(|g| g.slots[slot % g.slots.len()].clone())
    }

    /// The slot state of `backend`, made when the backend is new; backends that left the
    /// membership are dropped first.
    fn group_slot(
        &self,
        backend: &Arc<Backend>,
        slot: usize,
        version: u64,
    ) -> (Arc<Mutex<SlotState>>, Endpoint) {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if groups.version != version {
            let current = self.fleet.current();
            groups
                .by_backend
                .retain(|g| current.backends.iter().any(|b| Arc::ptr_eq(b, &g.backend)));
            groups.version = version;
        }
        let i = match groups
            .by_backend
            .iter()
            .position(|g| Arc::ptr_eq(&g.backend, backend))
        {
            Some(i) => i,
            None => {
                groups.by_backend.push(PoolGroup::new(
                    backend.clone(),
                    &self.endpoint,
                    self.per_backend,
                ));
                groups.by_backend.len() - 1
            }
        };
        let g = &groups.by_backend[i];
        (g.slots[slot % g.slots.len()].clone(), g.endpoint.clone())
    }

    async fn lease_on(
        &self,
        backend: &Arc<Backend>,
        slot: usize,
        broken: Option<u64>,
        version: u64,
    ) -> Result<Lease, LeaseError> {
        let (state, endpoint) = self.group_slot(backend, slot, version);
        let fail = |error: ConnectError| LeaseError {
            error,
            backend: backend.id,
        };
        let mut state = state.lock().await;
        if let Some(gen) = broken {
            if state.current.as_ref().is_some_and(|l| l.generation == gen) {
                state.current = None;
            }
        }
        if let Some(lease) = &state.current {
            let mut lease = lease.clone();
            lease.version = version;
            return Ok(lease);
        }
        if !state.reconnect.may_try(Instant::now()) {
            return Err(fail(state.reconnect.last_error().cloned().unwrap_or_else(
                || ConnectError::Other(endpoint.address.to_string(), "reconnecting".into()),
            )));
        }
        match connect(&endpoint).await {
            Ok(send) => {
                state.generation += 1;
                state.reconnect.succeeded();
                backend.connections.fetch_add(1, Ordering::Relaxed);
                let lease = Lease {
                    send,
                    generation: state.generation,
                    backend: backend.id,
                    version,
                };
                state.current = Some(lease.clone());
                Ok(lease)
            }
            Err(e) => {
                state.reconnect.failed(e.clone());
                Err(fail(e))
            }
        }
    }

    /// When the next connection attempt of `backend`'s slot is allowed (for workers to
    /// wait, not spin).
    pub async fn next_attempt(&self, backend: u32, slot: usize) -> Instant {
        match self.slot_of(backend, slot) {
            Some(state) => state.lock().await.reconnect.next_attempt(),
            None => Instant::now(),
        }
    }
}
