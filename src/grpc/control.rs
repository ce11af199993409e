//! Control-plane channels (reflection, health checks): tonic clients over our own connector,
//! so they reach a target exactly as the load does (plain TCP, or TLS with the scenario's
//! configuration). Not the hot path: the load itself talks to h2 directly.

use std::time::Duration;

use crate::vocabulary::HostPort;

use tonic::transport::Channel;

use crate::tls::ClientTls;

/// A byte stream a channel can run over: TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Connects a tonic channel to `address` (`host:port`), with `authority` as `:authority`.
/// Errors are one line, causes included (transport errors hide the useful part in a source).
pub async fn channel(
    address: &HostPort,
    authority: Option<&str>,
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<Channel, ChannelError> {
    channel_with_facts(address, authority, timeout, tls, None).await
}

/// Why a control channel (reflection, health) could not be opened: the address and the
/// transport's reason with its causes, on one line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct ChannelError {
    /// The address.
    pub address: String,
    /// Why, with its causes.
    pub reason: String,
}

/// What the last TLS handshake of a channel negotiated (for probes' TLS metrics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFacts {
    /// How long the handshake took.
    pub handshake: Duration,
    /// The TLS version (`TLSv1.3`).
    pub version: String,
    /// The earliest `not_after` of the certificates the server presented, Unix seconds.
    pub earliest_expiry: Option<i64>,
}

impl TlsFacts {
    /// What `conn`'s handshake, which took `handshake`, negotiated.
    pub fn of(conn: &rustls::ClientConnection, handshake: Duration) -> Self {
        Self {
            handshake,
            version: conn
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            earliest_expiry: conn
                .peer_certificates()
                .unwrap_or_default()
                .iter()
                .filter_map(|c| crate::tls::diagnose::not_after_unix(c))
                .min(),
        }
    }
}

/// Where a channel writes what its last handshake negotiated.
pub type TlsFactsSlot = std::sync::Arc<std::sync::Mutex<Option<TlsFacts>>>;

/// `channel`, recording what each TLS handshake negotiated into `facts`.
pub async fn channel_with_facts(
    address: &HostPort,
    authority: Option<&str>,
    timeout: Duration,
    tls: Option<&ClientTls>,
    facts: Option<TlsFactsSlot>,
) -> Result<Channel, ChannelError> {
    let fail = |reason: String| ChannelError {
        address: address.to_string(),
        reason,
    };
    let uri = match authority {
        Some(a) => format!("http://{a}"),
        None => format!("http://{address}"),
    };
    let endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| fail(e.to_string()))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let tcp_addr = (address.host().to_string(), address.port());
    let tls = tls.cloned();
    endpoint
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let a = tcp_addr.clone();
            let tls = tls.clone();
            let facts = facts.clone();
            async move {
                let s = tokio::net::TcpStream::connect((a.0.as_str(), a.1)).await?;
                s.set_nodelay(true)?;
                let io: Box<dyn Io> = match tls {
                    None => Box::new(s),
                    Some(t) => {
                        let started = std::time::Instant::now();
                        let stream = t.connector().connect(t.server_name.clone(), s).await?;
                        if let Some(slot) = &facts {
                            let f = TlsFacts::of(stream.get_ref().1, started.elapsed());
                            if let Ok(mut g) = slot.lock() {
                                *g = Some(f);
                            }
                        }
                        Box::new(stream)
                    }
                };
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(io))
            }
        }))
        .await
        .map_err(|e| fail(error_chain(&e)))
}

/// An error and its causes on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
