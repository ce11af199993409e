//! The built-in reference target: a lean gRPC server that answers as each request asks
//! (response size, delay, error status). It is a measuring instrument that shares the
//! machine with the generator, so it does as little work per call as it can: payloads are
//! slices of one static zeroed buffer, never allocated or copied.

mod bench;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

pub use bench::BenchService;

/// The serialized FileDescriptorSet of proto/bench.proto (compiled at build time by protox).
pub const BENCH_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/bench_descriptor.bin"));

pub(crate) mod pb {
    // Generated code: its items are `pub` as prost and tonic write them.
    #![allow(
        clippy::all,
        clippy::pedantic,
        unreachable_pub,
        missing_debug_implementations
    )]
    tonic::include_proto!("loadagent.bench.v1");
}

/// Errors starting the reference target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot listen on {addr}: {source}")]
    /// The listen address could not be bound.
    Bind {
        /// The address asked for.
        addr: String,
        /// Why it could not be bound.
        source: std::io::Error,
    },
    #[error("the reference target's reflection service could not be built: {0}")]
    /// The reflection service could not be built.
    Reflection(String),
    #[error("the reference target failed while serving: {0}")]
    /// Serving failed.
    Serve(String),
}

/// A running reference target: its address and the task serving it.
#[derive(Debug)]
pub struct RunningTarget {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// The task serving it; its error, should serving fail.
    pub served: tokio::task::JoinHandle<Result<(), TargetError>>,
}

/// Binds `addr` and serves Bench, grpc.health.v1 and server reflection (v1 and v1alpha)
/// until `shutdown` is cancelled; over TLS when `tls` is given.
pub async fn serve(
    addr: &str,
    shutdown: CancellationToken,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> Result<RunningTarget, TargetError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| TargetError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| TargetError::Bind {
        addr: addr.to_string(),
        source,
    })?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::bench_server::BenchServer<BenchService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(BENCH_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| TargetError::Reflection(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(BENCH_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| TargetError::Reflection(e.to_string()))?;
    let bench = pb::bench_server::BenchServer::new(BenchService)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(usize::MAX);

    let served = tokio::spawn(async move {
        let router = tonic::transport::Server::builder()
            // gRPC-Web too (tonic-web, over HTTP/1.1 and HTTP/2): native calls pass the
            // layer untouched, so one server answers both forms and a comparison of the two
            // measures the client, not two different servers.
            .accept_http1(true)
            .layer(tonic_web::GrpcWebLayer::new())
            // Streams are cheap here, and load tests open many: do not let the server's
            // default concurrency limit be what a test measures.
            .max_concurrent_streams(None)
            .initial_stream_window_size(Some(1 << 20))
            .initial_connection_window_size(Some(16 << 20))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(bench);
        let done = shutdown.cancelled_owned();
        let served = match tls {
            Some(config) => {
                router
                    .serve_with_incoming_shutdown(
                        crate::tls::server::accept_tls(listener, config),
                        done,
                    )
                    .await
            }
            None => {
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                router.serve_with_incoming_shutdown(incoming, done).await
            }
        };
        served.map_err(|e| TargetError::Serve(e.to_string()))
    });
    Ok(RunningTarget { local_addr, served })
}
