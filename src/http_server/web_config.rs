//! `--web.config.file`: TLS and basic auth for the agent's endpoints, in the web config
//! format that Prometheus exporters share (prometheus/exporter-toolkit), so one file and one
//! habit serve node_exporter and loadagent alike:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/loadagent/tls/tls.crt
//!   key_file: /etc/loadagent/tls/tls.key
//!   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
//!   client_ca_file: /etc/loadagent/tls/ca.crt
//!   min_version: TLS12                              # TLS12 or TLS13
//! http_server_config:
//!   headers: { X-Frame-Options: deny }
//! basic_auth_users:
//!   prometheus: $2y$10$...                           # bcrypt hashes, as htpasswd -B writes
//! ```
//!
//! What rustls cannot do (TLS 1.0 and 1.1, Go's cipher-suite names, unverified client
//! certificates) is refused by name rather than ignored.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    client_allowed_sans: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// HTTP/2 is not served here (exporters' scrapes are HTTP/1.1); `false` is accepted.
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The agent's web settings: TLS, users, extra response headers. The default is none.
#[derive(Default)]
pub struct WebConfig {
    /// The TLS server config, when the web config has `tls_server_config`.
    pub tls: Option<Arc<ServerConfig>>,
    users: BTreeMap<String, String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// (user, SHA-256 of password) pairs already verified: bcrypt costs tens of
    /// milliseconds by design, too much to pay on every scrape.
    verified: Mutex<HashSet<(String, Vec<u8>)>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Verified credentials kept at most; past that the cache starts over.
const VERIFIED_KEPT: usize = 64;

impl WebConfig {
    /// Reads and checks a web config file; the error names the file and the key.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = crate::input::read_text(path, crate::input::FileKind::WebConfig)
            .map_err(|e| e.to_string())?;
        let at = |key: &str, why: String| format!("{}: `{key}`: {why}", path.display());
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            let de = serde_yaml_ng::Deserializer::from_str(&text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner();
                let line = inner
                    .location()
                    .map(|l| format!("{}:{}:{}: ", path.display(), l.line(), l.column()))
                    .unwrap_or_default();
                format!("{line}`{key}`: {inner}; see the web config format in docs/agent.md")
            })?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = file
            .tls_server_config
            .map(|t| tls_config(&t, base, &at))
            .transpose()?;
        let mut headers = Vec::new();
        if let Some(h) = file.http_server_config {
            if h.http2 == Some(true) {
                return Err(at(
                    "http_server_config.http2",
                    "the agent serves HTTP/1.1 only; remove it or set it to false".into(),
                ));
            }
            for (name, value) in h.headers.unwrap_or_default() {
                let key = format!("http_server_config.headers.{name}");
                let n = HeaderName::try_from(name.as_str())
                    .map_err(|e| at(&key, format!("not a header name: {e}")))?;
                let v = HeaderValue::try_from(value.as_str())
                    .map_err(|e| at(&key, format!("not a header value: {e}")))?;
                headers.push((n, v));
            }
        }
        let users = file.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if user.contains(':') {
                return Err(at(
                    &format!("basic_auth_users.{user}"),
                    "a user name cannot contain `:`".into(),
                ));
            }
            hash.parse::<bcrypt::HashParts>().map_err(|e| {
                at(
                    &format!("basic_auth_users.{user}"),
                    format!("not a bcrypt hash ({e}); write one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"),
                )
            })?;
        }
        Ok(Self {
            tls,
            users,
            headers,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether `Authorization` carries a configured user and password.
    fn authorized(&self, authorization: Option<&HeaderValue>) -> bool {
        use base64::Engine;
        let Some(encoded) = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        else {
            return false;
        };
        let Some(decoded) = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
        else {
            return false;
        };
        let Some((user, password)) = decoded.split_once(':') else {
            return false;
        };
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, password.as_bytes())
            .as_ref()
            .to_vec();
        let key = (user.to_string(), digest);
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.contains(&key) {
            return true;
        }
        drop(verified);
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return false;
        }
        verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_KEPT {
            verified.clear();
        }
        verified.insert(key);
        true
    }
}

fn tls_config(
    t: &TlsFile,
    base: &Path,
    at: &dyn Fn(&str, String) -> String,
) -> Result<Arc<ServerConfig>, String> {
    let key_path = |k: &str| format!("tls_server_config.{k}");
    for (set, name) in [
        (t.cipher_suites.is_some(), "cipher_suites"),
        (t.curve_preferences.is_some(), "curve_preferences"),
        (
            t.prefer_server_cipher_suites.is_some(),
            "prefer_server_cipher_suites",
        ),
        (t.client_allowed_sans.is_some(), "client_allowed_sans"),
    ] {
        if set {
            return Err(at(
                &key_path(name),
                "not supported by loadagent (rustls picks safe suites and groups itself); remove it".into(),
            ));
        }
    }
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) else {
        return Err(at(
            "tls_server_config",
            "needs both `cert_file` and `key_file`".into(),
        ));
    };
    let certs = crate::tls::client::read_certs(&resolve(cert), "cert_file")
        .map_err(|e| at(&key_path(e.key), e.message))?;
    let key = crate::tls::client::read_key(&resolve(key), "key_file")
        .map_err(|e| at(&key_path(e.key), e.message))?;
    let version = |v: &Option<String>, k: &str| -> Result<Option<u8>, String> {
        match v.as_deref() {
            None => Ok(None),
            Some("TLS12") => Ok(Some(2)),
            Some("TLS13") => Ok(Some(3)),
            Some("TLS10" | "TLS11") => Err(at(
                &key_path(k),
                "TLS 1.0 and 1.1 are not offered (rustls); write TLS12 or TLS13".into(),
            )),
            Some(other) => Err(at(
                &key_path(k),
                format!("\"{other}\" is not a version; write TLS12 or TLS13"),
            )),
        }
    };
    let min = version(&t.min_version, "min_version")?.unwrap_or(2);
    let max = version(&t.max_version, "max_version")?.unwrap_or(3);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(n, _)| (min..=max).contains(n))
            .map(|(_, v)| v)
            .collect();
    if versions.is_empty() {
        return Err(at(&key_path("min_version"), "is above max_version".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| at("tls_server_config", e.to_string()))?;
    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let roots = || -> Result<Arc<rustls::RootCertStore>, String> {
        let Some(ca) = &t.client_ca_file else {
            return Err(at(
                &key_path("client_ca_file"),
                format!("needed with client_auth_type {auth}"),
            ));
        };
        let mut store = rustls::RootCertStore::empty();
        for c in crate::tls::client::read_certs(&resolve(ca), "client_ca_file")
            .map_err(|e| at(&key_path(e.key), e.message))?
        {
            store
                .add(c)
                .map_err(|e| at(&key_path("client_ca_file"), e.to_string()))?;
        }
        Ok(Arc::new(store))
    };
    let builder = match auth {
        "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots()?, provider);
            let verifier = if auth == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| at(&key_path("client_ca_file"), e.to_string()))?,
            )
        }
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(at(
                &key_path("client_auth_type"),
                format!("{auth} accepts certificates it does not verify; use RequireAndVerifyClientCert or VerifyClientCertIfGiven with client_ca_file"),
            ))
        }
        other => {
            return Err(at(
                &key_path("client_auth_type"),
                format!("\"{other}\" is not a client auth type; write NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            ))
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        at(
            &key_path("cert_file"),
            format!("the certificate and key do not fit: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Middleware: basic auth when users are configured, and the configured headers on every
/// answer. `/healthz` needs no password, so a kubelet's probe works without one.
pub async fn guard(State(web): State<Arc<WebConfig>>, request: Request, next: Next) -> Response {
    let needs_auth = !web.users.is_empty() && request.uri().path() != "/healthz";
    let mut response = if needs_auth {
        let header = request.headers().get(header::AUTHORIZATION).cloned();
        let web2 = web.clone();
        let ok = tokio::task::spawn_blocking(move || web2.authorized(header.as_ref()))
            .await
            .unwrap_or(false);
        if ok {
            next.run(request).await
        } else {
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"loadagent\"")],
                "Unauthorized\n",
            )
                .into_response()
        }
    } else {
        next.run(request).await
    };
    for (n, v) in &web.headers {
        response.headers_mut().insert(n.clone(), v.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<WebConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.yml");
        std::fs::write(&p, text).unwrap();
        WebConfig::load(&p)
    }

    #[test]
    fn basic_auth_checks_bcrypt_and_remembers_successes() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let web = load(&format!("basic_auth_users:\n  prom: {hash}\n")).unwrap();
        use base64::Engine;
        let header = |u: &str, p: &str| {
            HeaderValue::try_from(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            ))
            .unwrap()
        };
        assert!(web.authorized(Some(&header("prom", "s3cret"))));
        assert!(
            web.authorized(Some(&header("prom", "s3cret"))),
            "from the cache"
        );
        assert!(!web.authorized(Some(&header("prom", "wrong"))));
        assert!(!web.authorized(Some(&header("other", "s3cret"))));
        assert!(!web.authorized(None));
        assert!(!web.authorized(Some(&HeaderValue::from_static("Bearer x"))));
    }

    #[test]
    fn bad_files_name_the_key() {
        let e = load("basic_auth_users:\n  prom: plaintext\n").unwrap_err();
        assert!(
            e.contains("basic_auth_users.prom") && e.contains("bcrypt"),
            "{e}"
        );
        let e = load("tls_server_config:\n  cert_file: a.crt\n").unwrap_err();
        assert!(e.contains("key_file"), "{e}");
        let e = load("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n")
            .unwrap_err();
        assert!(e.contains("cert_file") || e.contains("min_version"), "{e}");
        let e = load("bogus: 1\n").unwrap_err();
        assert!(e.contains("bogus") && e.contains(":1:"), "{e}");
        let e = load("http_server_config:\n  headers:\n    \"bad name\": x\n").unwrap_err();
        assert!(e.contains("http_server_config.headers.bad name"), "{e}");
        assert!(load("").is_ok());
    }
}
