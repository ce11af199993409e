//! What a TLS connection attempt says about itself: failures classified (connect phase, TLS
//! phase, alert names as RFC 8446 spells them), described in rustls's words, and what the
//! server's certificate holds. Used by every connection the client opens.

use std::io;
use std::time::Duration;

use rustls::CertificateError;

use serde::{Deserialize, Serialize};

/// The server's leaf certificate, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// Its subject.
    pub subject: String,
    /// Its issuer.
    pub issuer: String,
    /// When it expires (RFC 3339).
    pub not_after: String,
    /// Days until then (negative: expired).
    pub days_to_expiry: i64,
    /// Its SHA-256 fingerprint.
    pub sha256_fingerprint: String,
}

/// The rustls error inside an I/O error from tokio-rustls, if there is one.
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// `CertificateRequired` → `certificate_required`: the TLS alert names of RFC 8446.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The class of a connect-phase failure.
pub fn classify_connect(e: &io::Error) -> &'static str {
    match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::ConnectionRefused, _) => "connect_refused",
        (io::ErrorKind::TimedOut, _) => "connect_timeout",
        // Out of ephemeral ports (EADDRNOTAVAIL) or descriptors (EMFILE, ENFILE).
        (io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse, _)
        | (_, Some(23 | 24 | 99)) => "address_unavailable",
        (io::ErrorKind::ConnectionReset, _) => "reset",
        _ => "other",
    }
}

/// The class of a TLS-phase failure.
pub fn classify_tls(e: &io::Error) -> String {
    match rustls_error(e) {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer => "cert_unknown_issuer".into(),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "cert_expired".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "cert_name_mismatch".into()
            }
            _ => "other".into(),
        },
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("alert:{}", snake(&format!("{alert:?}")))
        }
        Some(_) => "other".into(),
        None => match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe => "reset".into(),
            io::ErrorKind::TimedOut => "handshake_timeout".into(),
            _ => "other".into(),
        },
    }
}

/// A TLS failure in words: rustls says what was presented and what was expected.
pub fn describe(e: &io::Error) -> String {
    match rustls_error(e) {
        Some(r) => r.to_string(),
        None => e.to_string(),
    }
}

/// A duration in whole microseconds.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A certificate's `not_after`, Unix seconds.
pub fn not_after_unix(der: &[u8]) -> Option<i64> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// What the server's leaf certificate says.
pub fn cert_info(der: &[u8]) -> Option<CertInfo> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let fingerprint = ring::digest::digest(&ring::digest::SHA256, der);
    Some(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after: ::time::OffsetDateTime::from_unix_timestamp(not_after)
            .ok()
            .and_then(|t| {
                t.format(&::time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default(),
        days_to_expiry: (not_after - now) / 86_400,
        sha256_fingerprint: fingerprint
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_names_are_snake_case() {
        assert_eq!(snake("CertificateRequired"), "certificate_required");
        assert_eq!(snake("HandshakeFailure"), "handshake_failure");
    }

    #[test]
    fn connect_failures_are_classified() {
        assert_eq!(
            classify_connect(&io::Error::from(io::ErrorKind::ConnectionRefused)),
            "connect_refused"
        );
        assert_eq!(
            classify_connect(&io::Error::from_raw_os_error(24)),
            "address_unavailable"
        );
        assert_eq!(
            classify_connect(&io::Error::from_raw_os_error(99)),
            "address_unavailable"
        );
    }
}
