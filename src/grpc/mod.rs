//! gRPC: method descriptors (proto files, protosets, reflection), request encoding,
//! status codes and the HTTP/2 transport the load runs over.

pub mod channel;
pub mod control;
pub mod decode_budget;
pub mod descriptors;
pub mod frame;
pub mod lean;
pub mod reflection;
pub mod request;
pub mod status;
pub mod template;
pub mod unary;
pub mod web;
