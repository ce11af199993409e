//! The embedded target's TLS: a certificate generated for the run (rcgen), trusted by the
//! client for that run only, and an acceptor that hands tonic finished TLS connections.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// A generated certificate and key (for `localhost` and 127.0.0.1).
#[derive(Debug)]
pub struct Generated {
    /// The certificate.
    pub cert: CertificateDer<'static>,
    /// The certificate as PEM, for clients told to trust it (`target --cert-out`).
    pub cert_pem: String,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

/// Why the embedded target's certificate could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate a certificate: {0}")]
    /// Generating failed.
    Generate(String),
    #[error("the generated certificate is unusable: {0}")]
    /// The certificate could not be used.
    Unusable(String),
}

/// A new self-signed certificate for `localhost` and 127.0.0.1.
pub fn generate() -> Result<Generated, CertError> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| CertError::Generate(e.to_string()))?;
    Ok(Generated {
        cert: certified.cert.der().clone(),
        cert_pem: certified.cert.pem(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        )),
    })
}

/// A server configuration offering h2 (then HTTP/1.1), with session tickets and session ids for resumption.
pub fn server_config(g: &Generated) -> Result<Arc<ServerConfig>, CertError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError::Unusable(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![g.cert.clone()], g.key.clone_key())
        .map_err(|e| CertError::Unusable(e.to_string()))?;
    // h2 first; HTTP/1.1 for gRPC-Web clients that speak it (tonic-web serves both).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| CertError::Unusable(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A finished server-side TLS connection, as tonic serves it.
#[derive(Debug)]
pub struct TlsConn(TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Accepts TCP connections and does each handshake in its own task (a storm is many at
/// once); finished connections go to tonic, failed handshakes are dropped.
pub fn accept_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    // Out of descriptors (EMFILE) fails at once while the connection waits
                    // in the backlog: retrying without a pause would spin a core.
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if tx.is_closed() {
                break; // the server is gone
            }
            let acceptor = acceptor.clone();
            let conn_tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(Ok(tls)) =
                    tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp))
                        .await
                {
                    let _ = conn_tx.send(Ok(TlsConn(tls))).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
