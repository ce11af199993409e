//! Control-plane channels (reflection, health checks): tonic clients over our own connector,
//! so they reach a target exactly as the load does (plain TCP, or TLS with the scenario's
//! configuration). Not the hot path: the load itself talks to h2 directly.

use std::time::Duration;

use tonic::transport::Channel;

use crate::tls::ClientTls;

/// A byte stream a channel can run over: TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Connects a tonic channel to `address` (`host:port`), with `authority` as `:authority`.
/// Errors are one line, causes included (transport errors hide the useful part in a source).
pub async fn channel(
    address: &str,
    authority: Option<&str>,
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<Channel, String> {
    let uri = format!("http://{}", authority.unwrap_or(address));
    let endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| e.to_string())?
        .connect_timeout(timeout)
        .timeout(timeout);
    let tcp_addr = address.to_string();
    let tls = tls.cloned();
    endpoint
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let a = tcp_addr.clone();
            let tls = tls.clone();
            async move {
                let s = tokio::net::TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                let io: Box<dyn Io> = match tls {
                    None => Box::new(s),
                    Some(t) => Box::new(t.connector().connect(t.server_name.clone(), s).await?),
                };
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(io))
            }
        }))
        .await
        .map_err(|e| error_chain(&e))
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
