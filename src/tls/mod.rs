//! TLS: client configurations from `[target.tls]`, the embedded target's generated
//! certificate, and the connector every kind uses (handshake storms measure it phase by phase).

pub mod client;
pub mod diagnose;
pub mod server;

pub use client::{ClientTls, TlsError};
