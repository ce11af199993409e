//! loadagent: a gRPC load generator and node observability agent.
#![forbid(unsafe_code)]
// What tests and other programs use stays `pub`; the rest is `pub(crate)` or narrower, and
// a `pub` that nothing outside can reach is an error (`unreachable_pub`); every public item
// is documented (`missing_docs`; CI's clippy runs with -D warnings).
#![warn(unreachable_pub, missing_debug_implementations, missing_docs)]

pub mod agent;
pub mod cli;
pub mod commands;
pub mod discovery;
pub mod error;
pub mod fuzzing;
pub mod grpc;
pub mod host;
pub mod http_server;
pub mod input;
pub mod load;
pub mod observe;
pub mod probe;
pub mod record;
pub mod reference;
pub mod report;
pub mod run;
pub mod scenario;
pub mod telemetry;
pub mod tls;
pub mod vocabulary;
