//! What handshake storms record: phase latencies, what was negotiated, how handshakes failed.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::histogram::{new_histogram, record};
pub use crate::tls::diagnose::CertInfo;

/// One iteration's facts, handed to the recorder at its end.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    /// Name resolution.
    pub dns_us: Option<u64>,
    /// TCP connect.
    pub tcp_us: Option<u64>,
    /// The TLS handshake.
    pub tls_us: Option<u64>,
    /// From the handshake's end to the first answer (with a call).
    pub first_response_us: Option<u64>,
    /// The whole iteration.
    pub total_us: Option<u64>,
    /// The TLS version negotiated.
    pub version: Option<String>,
    /// The cipher suite.
    pub cipher_suite: Option<String>,
    /// The key exchange group.
    pub group: Option<String>,
    /// The ALPN protocol.
    pub alpn: Option<String>,
    /// Whether the session was resumed.
    pub resumed: bool,
    /// The server's leaf certificate, when it was read.
    pub certificate: Option<CertInfo>,
    /// (class, message) when the iteration failed.
    pub error: Option<(String, String)>,
    /// What did not arrive after a completed handshake (`no_settings`, `no_session_ticket`,
    /// `closed`, `read_error`): the handshake still counts.
    pub after_handshake: Option<String>,
}

/// A storm's data for one interval (or, merged, the run).
#[derive(Debug, Clone)]
pub struct TlsData {
    /// Name resolution times.
    pub dns: Histogram<u64>,
    /// TCP connect times.
    pub tcp_connect: Histogram<u64>,
    /// Handshake times.
    pub tls_handshake: Histogram<u64>,
    /// First-answer times.
    pub first_response: Histogram<u64>,
    /// Whole-iteration times.
    pub total: Histogram<u64>,
    /// Handshakes completed.
    pub handshakes: u64,
    /// Of them, resumed.
    pub resumed: u64,
    /// Handshakes by TLS version.
    pub versions: BTreeMap<String, u64>,
    /// By cipher suite.
    pub cipher_suites: BTreeMap<String, u64>,
    /// By key exchange group.
    pub groups: BTreeMap<String, u64>,
    /// By ALPN protocol.
    pub alpn: BTreeMap<String, u64>,
    /// Failed iterations by class.
    pub handshake_errors: BTreeMap<String, u64>,
    /// Completed handshakes by what did not follow them (see `Handshake::after_handshake`).
    pub after_handshake: BTreeMap<String, u64>,
    /// The first message seen for each error class (the summary's "first error").
    pub first_errors: BTreeMap<String, String>,
    /// The server's leaf certificate (the first seen).
    pub certificate: Option<CertInfo>,
}

impl Default for TlsData {
    fn default() -> Self {
        Self {
            dns: new_histogram(),
            tcp_connect: new_histogram(),
            tls_handshake: new_histogram(),
            first_response: new_histogram(),
            total: new_histogram(),
            handshakes: 0,
            resumed: 0,
            versions: BTreeMap::new(),
            cipher_suites: BTreeMap::new(),
            groups: BTreeMap::new(),
            alpn: BTreeMap::new(),
            handshake_errors: BTreeMap::new(),
            after_handshake: BTreeMap::new(),
            first_errors: BTreeMap::new(),
            certificate: None,
        }
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    match map.get_mut(key) {
        Some(v) => *v += n,
        None => {
            map.insert(key.to_string(), n);
        }
    }
}

impl TlsData {
    /// Adds one iteration.
    pub fn record(&mut self, h: Handshake) {
        for (hist, v) in [
            (&mut self.dns, h.dns_us),
            (&mut self.tcp_connect, h.tcp_us),
            (&mut self.tls_handshake, h.tls_us),
            (&mut self.first_response, h.first_response_us),
            (&mut self.total, h.total_us),
        ] {
            if let Some(v) = v {
                record(hist, v);
            }
        }
        if h.tls_us.is_some() {
            self.handshakes += 1;
            self.resumed += u64::from(h.resumed);
        }
        for (map, v) in [
            (&mut self.versions, &h.version),
            (&mut self.cipher_suites, &h.cipher_suite),
            (&mut self.groups, &h.group),
            (&mut self.alpn, &h.alpn),
        ] {
            if let Some(v) = v {
                bump(map, v, 1);
            }
        }
        if self.certificate.is_none() {
            self.certificate = h.certificate;
        }
        if let Some(class) = &h.after_handshake {
            bump(&mut self.after_handshake, class, 1);
        }
        if let Some((class, message)) = h.error {
            bump(&mut self.handshake_errors, &class, 1);
            self.first_errors.entry(class).or_insert(message);
        }
    }

    /// Adds another interval's (or thread's) data.
    pub fn merge(&mut self, o: &TlsData) {
        for (a, b) in [
            (&mut self.dns, &o.dns),
            (&mut self.tcp_connect, &o.tcp_connect),
            (&mut self.tls_handshake, &o.tls_handshake),
            (&mut self.first_response, &o.first_response),
            (&mut self.total, &o.total),
        ] {
            let _ = a.add(b);
        }
        self.handshakes += o.handshakes;
        self.resumed += o.resumed;
        for (a, b) in [
            (&mut self.versions, &o.versions),
            (&mut self.cipher_suites, &o.cipher_suites),
            (&mut self.groups, &o.groups),
            (&mut self.alpn, &o.alpn),
            (&mut self.handshake_errors, &o.handshake_errors),
            (&mut self.after_handshake, &o.after_handshake),
        ] {
            for (k, v) in b {
                bump(a, k, *v);
            }
        }
        for (k, v) in &o.first_errors {
            self.first_errors
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        if self.certificate.is_none() {
            self.certificate = o.certificate.clone();
        }
    }
}
