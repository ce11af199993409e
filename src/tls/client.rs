//! rustls client configurations from a scenario's `[target.tls]`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption as RustlsResumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::vocabulary::{Resumption, TlsOptions};

/// A ready client configuration and the name it verifies.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The rustls configuration.
    pub config: Arc<ClientConfig>,
    /// The name the server's certificate is verified against.
    pub server_name: ServerName<'static>,
    /// Close connections with a TCP RST instead of a TLS close_notify.
    pub close_with_rst: bool,
    /// Whether the server's certificate is not verified.
    pub insecure: bool,
    /// With `resumption = "tickets"`: signalled as each TLS 1.3 session ticket arrives.
    pub tickets: Option<Arc<TicketStore>>,
}

/// rustls' in-memory session store, plus a signal when a TLS 1.3 ticket is stored: tickets
/// come after the handshake, and a storm waits for them (bounded) so the next handshake
/// can resume, whatever the server speaks over TLS.
#[derive(Debug)]
pub struct TicketStore {
    inner: rustls::client::ClientSessionMemoryCache,
    /// Tickets stored so far.
    pub received: std::sync::atomic::AtomicU64,
    /// Signalled as each ticket arrives.
    pub arrived: tokio::sync::Notify,
}

impl TicketStore {
    fn new() -> Self {
        Self {
            inner: rustls::client::ClientSessionMemoryCache::new(1024),
            received: std::sync::atomic::AtomicU64::new(0),
            arrived: tokio::sync::Notify::new(),
        }
    }
}

impl rustls::client::ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, value)
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.inner.insert_tls13_ticket(name, value);
        self.received
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        self.arrived.notify_waiters();
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

/// Why `[target.tls]` could not be turned into a configuration (the key, and why).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TlsError {
    /// The `[target.tls]` key at fault.
    pub key: &'static str,
    /// What is wrong, and how to fix it.
    pub message: String,
}

fn err(key: &'static str, message: impl Into<String>) -> TlsError {
    TlsError {
        key,
        message: message.into(),
    }
}

/// The PEM certificates at `path` (named `key` in errors).
pub fn read_certs(
    path: &Path,
    key: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let pem = crate::input::read_bytes(path, crate::input::FileKind::Pem)
        .map_err(|e| err(key, e.to_string()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            err(
                key,
                format!("{} is not PEM certificates: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(err(
            key,
            format!(
                "{} has no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

/// The PEM private key at `path` (named `key` in errors).
pub fn read_key(path: &Path, key: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let pem = crate::input::read_bytes(path, crate::input::FileKind::Pem)
        .map_err(|e| err(key, e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        err(
            key,
            format!("{} has no usable PEM private key: {e}", path.display()),
        )
    })
}

/// The ring provider with the suites and groups the scenario names (all when it names none).
fn provider(o: &TlsOptions) -> Result<CryptoProvider, TlsError> {
    let mut p = rustls::crypto::ring::default_provider();
    if !o.cipher_suites.is_empty() {
        let known: Vec<String> = p
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        for name in &o.cipher_suites {
            if !known.iter().any(|k| k.eq_ignore_ascii_case(name)) {
                return Err(err(
                    "cipher_suites",
                    format!("unknown cipher suite `{name}`; known: {}", known.join(", ")),
                ));
            }
        }
        p.cipher_suites.retain(|s| {
            o.cipher_suites
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&format!("{:?}", s.suite())))
        });
    }
    if !o.groups.is_empty() {
        let known: Vec<String> = p
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        for name in &o.groups {
            if !known.iter().any(|k| k.eq_ignore_ascii_case(name)) {
                return Err(err(
                    "groups",
                    format!("unknown group `{name}`; known: {}", known.join(", ")),
                ));
            }
        }
        p.kx_groups.retain(|g| {
            o.groups
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&format!("{:?}", g.name())))
        });
    }
    Ok(p)
}

impl ClientTls {
    /// Builds the configuration. `extra_root` is trusted besides `ca` (the embedded target's
    /// generated certificate, for that run only).
    pub fn build(
        o: &TlsOptions,
        default_host: &str,
        extra_root: Option<&CertificateDer<'static>>,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(provider(o)?);
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = o
            .versions
            .iter()
            .map(|v| {
                if v == "1.2" {
                    &rustls::version::TLS12
                } else {
                    &rustls::version::TLS13
                }
            })
            .collect();
        let versions = if versions.is_empty() {
            rustls::ALL_VERSIONS.to_vec()
        } else {
            versions
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| {
                err(
                    "versions",
                    format!("these versions, suites and groups cannot work together: {e}"),
                )
            })?;
        let builder = if o.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            match &o.ca {
                Some(ca) => {
                    for c in read_certs(ca, "ca")? {
                        roots.add(c).map_err(|e| {
                            err(
                                "ca",
                                format!("{}: unusable CA certificate: {e}", ca.display()),
                            )
                        })?;
                    }
                }
                None if extra_root.is_none() => {
                    let found = rustls_native_certs::load_native_certs();
                    for c in found.certs {
                        let _ = roots.add(c);
                    }
                }
                None => {}
            }
            if let Some(c) = extra_root {
                roots.add(c.clone()).map_err(|e| {
                    err("ca", format!("the generated certificate is unusable: {e}"))
                })?;
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match (&o.cert, &o.key) {
            (Some(c), Some(k)) => builder
                .with_client_auth_cert(read_certs(c, "cert")?, read_key(k, "key")?)
                .map_err(|e| {
                    err(
                        "cert",
                        format!("the client certificate and key do not go together: {e}"),
                    )
                })?,
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(err(
                    "cert",
                    "give both `cert` and `key` for mutual TLS, or neither",
                ))
            }
        };
        config.alpn_protocols = o.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
        let tickets = (o.resumption == Resumption::Tickets).then(|| Arc::new(TicketStore::new()));
        config.resumption = match (&o.resumption, &tickets) {
            (Resumption::Tickets, Some(store)) => {
                RustlsResumption::store(store.clone() as Arc<dyn rustls::client::ClientSessionStore>)
            }
            (Resumption::None, _) => RustlsResumption::disabled(),
            (Resumption::Tickets, None) => RustlsResumption::in_memory_sessions(1024),
            (Resumption::SessionId, _) => RustlsResumption::in_memory_sessions(1024)
                .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly),
        };
        let host = o
            .server_name
            .clone()
            .unwrap_or_else(|| default_host.to_string());
        let server_name = ServerName::try_from(host.clone()).map_err(|_| {
            err(
                "server_name",
                format!("`{host}` is not a DNS name or IP address"),
            )
        })?;
        Ok(Self {
            config: Arc::new(config),
            server_name,
            close_with_rst: o.close_with_rst,
            insecure: o.insecure_skip_verify,
            tickets,
        })
    }

    /// The same configuration offering other ALPN protocols (gRPC-Web over HTTP/1.1 offers
    /// `http/1.1`, not the `h2` gRPC needs).
    pub fn with_alpn(&self, protocols: &[&str]) -> Self {
        let mut config = (*self.config).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        Self {
            config: Arc::new(config),
            ..self.clone()
        }
    }

    /// The same configuration verifying `host` (a DNS name or an IP): one configuration built
    /// once (files read once) serves every host a `/probe` module is asked for.
    pub fn with_server_name(&self, host: &str) -> Result<Self, String> {
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("`{host}` is not a DNS name or IP address"))?;
        Ok(Self {
            server_name,
            ..self.clone()
        })
    }

    /// A connector with this configuration.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config.clone())
    }
}

/// `insecure_skip_verify`: accepts any certificate, still checks handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
