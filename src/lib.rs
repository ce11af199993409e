//! loadagent: a gRPC load generator and node observability agent.
#![forbid(unsafe_code)]

pub mod target;
pub mod scenario;
pub mod grpc;
