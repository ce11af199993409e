//! Server reflection client: fetches the file descriptors that define a service.
//! Tries grpc.reflection.v1 first and falls back to v1alpha when the server answers
//! UNIMPLEMENTED. The two versions' messages are the same on the wire, so one set of
//! types serves both; only the method path differs.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::control::error_chain;
use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic_reflection::pb::v1::{
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    ServerReflectionRequest, ServerReflectionResponse,
};

const PATH_V1: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const PATH_V1ALPHA: &str = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

#[derive(Debug, thiserror::Error)]
/// Why the types could not be had by server reflection.
pub enum ReflectionError {
    #[error("cannot connect to {address}: {reason}")]
    /// No connection.
    Connect {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    #[error("the server at {address} does not offer server reflection (grpc.reflection.v1 or v1alpha answered UNIMPLEMENTED)")]
    /// The server has no reflection service.
    Unsupported {
        /// The address.
        address: String,
    },
    #[error("server reflection at {address} failed: {reason}")]
    /// The reflection call failed.
    Failed {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    #[error("the server at {address} does not know the service `{service}` ({reason})")]
    /// The server does not know the service.
    UnknownService {
        /// The address.
        address: String,
        /// The service asked for.
        service: String,
        /// What the server said.
        reason: String,
    },
}

/// Fetches every file needed to describe `service` (its file and all its imports).
/// Returns the descriptor set and the reflection version that answered.
pub async fn fetch_service_files(
    address: &crate::vocabulary::HostPort,
    authority: Option<&str>,
    service: &str,
    timeout: Duration,
    tls: Option<&crate::tls::ClientTls>,
) -> Result<(FileDescriptorSet, &'static str), ReflectionError> {
    let connect = |reason: String| ReflectionError::Connect {
        address: address.to_string(),
        reason,
    };
    let channel = super::control::channel(address, authority, timeout, tls)
        .await
        .map_err(|e| connect(e.reason))?;

    for (path, version) in [(PATH_V1, "v1"), (PATH_V1ALPHA, "v1alpha")] {
        match Session::open(channel.clone(), path).await {
            Ok(mut session) => {
                let files = session
                    .service_files(service)
                    .await
                    .map_err(|s| match s.code() {
                        tonic::Code::NotFound => ReflectionError::UnknownService {
                            address: address.to_string(),
                            service: service.to_string(),
                            reason: s.message().to_string(),
                        },
                        _ => ReflectionError::Failed {
                            address: address.to_string(),
                            reason: format!("{}: {}", s.code(), s.message()),
                        },
                    })?;
                return Ok((files, version));
            }
            Err(s) if s.code() == tonic::Code::Unimplemented => continue,
            Err(s) if s.code() == tonic::Code::Unavailable => {
                return Err(connect(s.message().to_string()))
            }
            Err(s) => {
                return Err(ReflectionError::Failed {
                    address: address.to_string(),
                    reason: format!("{}: {}", s.code(), s.message()),
                })
            }
        }
    }
    Err(ReflectionError::Unsupported {
        address: address.to_string(),
    })
}

/// One reflection stream: requests go out on `tx`, answers come back on `rx`.
struct Session {
    tx: mpsc::Sender<ServerReflectionRequest>,
    rx: tonic::Streaming<ServerReflectionResponse>,
}

impl Session {
    async fn open(
        channel: tonic::transport::Channel,
        path: &'static str,
    ) -> Result<Self, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(error_chain(&e)))?;
        let (tx, rx) = mpsc::channel(4);
        // Queue the first question before opening the stream: `streaming` waits for the
        // response headers, and some servers (Python grpcio) send them only with the first
        // answer. A server without this version answers UNIMPLEMENTED here.
        tx.send(list_services())
            .await
            .map_err(|_| tonic::Status::internal("reflection request queue closed"))?;
        let codec =
            tonic_prost::ProstCodec::<ServerReflectionRequest, ServerReflectionResponse>::default();
        let mut session = Self {
            tx,
            rx: grpc
                .streaming(
                    tonic::Request::new(ReceiverStream::new(rx)),
                    PathAndQuery::from_static(path),
                    codec,
                )
                .await?
                .into_inner(),
        };
        session.answer().await?;
        Ok(session)
    }

    async fn ask(&mut self, request: MessageRequest) -> Result<MessageResponse, tonic::Status> {
        self.tx
            .send(ServerReflectionRequest {
                host: String::new(),
                message_request: Some(request),
            })
            .await
            .map_err(|_| tonic::Status::unavailable("reflection stream closed"))?;
        self.answer().await
    }

    async fn answer(&mut self) -> Result<MessageResponse, tonic::Status> {
        let response = self
            .rx
            .message()
            .await?
            .and_then(|r| r.message_response)
            .ok_or_else(|| tonic::Status::internal("reflection stream ended without an answer"))?;
        match response {
            MessageResponse::ErrorResponse(e) => Err(tonic::Status::new(
                tonic::Code::from_i32(e.error_code),
                e.error_message,
            )),
            other => Ok(other),
        }
    }

    async fn files(
        &mut self,
        request: MessageRequest,
    ) -> Result<Vec<FileDescriptorProto>, tonic::Status> {
        match self.ask(request).await? {
            MessageResponse::FileDescriptorResponse(r) => r
                .file_descriptor_proto
                .iter()
                .map(|b| {
                    FileDescriptorProto::decode(b.as_slice()).map_err(|e| {
                        tonic::Status::internal(format!("undecodable descriptor: {e}"))
                    })
                })
                .collect(),
            _ => Err(tonic::Status::internal("unexpected reflection answer")),
        }
    }

    /// The service's file and, transitively, every file it imports, dependencies first.
    async fn service_files(&mut self, service: &str) -> Result<FileDescriptorSet, tonic::Status> {
        let mut known: HashMap<String, FileDescriptorProto> = HashMap::new();
        let mut pending = self
            .files(MessageRequest::FileContainingSymbol(service.to_string()))
            .await?;
        while let Some(file) = pending.pop() {
            let name = file.name().to_string();
            if known.contains_key(&name) {
                continue;
            }
            for dep in &file.dependency {
                if !known.contains_key(dep) && !pending.iter().any(|f| f.name() == dep) {
                    pending.extend(
                        self.files(MessageRequest::FileByFilename(dep.clone()))
                            .await?,
                    );
                }
            }
            known.insert(name, file);
        }
        Ok(FileDescriptorSet {
            file: dependency_order(known),
        })
    }
}

fn list_services() -> ServerReflectionRequest {
    ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }
}

/// Orders files so each comes after the files it imports.
fn dependency_order(mut files: HashMap<String, FileDescriptorProto>) -> Vec<FileDescriptorProto> {
    fn visit(
        name: &str,
        files: &mut HashMap<String, FileDescriptorProto>,
        seen: &mut HashSet<String>,
        out: &mut Vec<FileDescriptorProto>,
    ) {
        if !seen.insert(name.to_string()) {
            return;
        }
        if let Some(file) = files.remove(name) {
            for dep in &file.dependency {
                visit(dep, files, seen, out);
            }
            out.push(file);
        }
    }
    let mut names: Vec<String> = files.keys().cloned().collect();
    names.sort();
    let (mut seen, mut out) = (HashSet::new(), Vec::new());
    for name in names {
        visit(&name, &mut files, &mut seen, &mut out);
    }
    out
}
