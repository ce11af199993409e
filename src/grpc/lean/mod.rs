//! A lean HTTP/2 client for unary gRPC calls under load. `h2` is general (any request, any
//! body, a connection task, a waker and a lock per stream operation); a load generator
//! sending the same call thousands of times a second needs little of it. Here a call is a
//! pre-encoded header block and a pre-framed request appended to a buffer, and its end is
//! the status read back; the load's dispatcher owns the connections and polls them itself.
//! gRPC-Web unary calls over HTTP/2 go the same way (`RequestHeaders::for_web`: another
//! content type, and the status read from the body's trailer frame). Streams and handshake
//! storms still use `h2`. Probes share one such connection per address (`SharedConnection`),
//! each call with headers of its own.

mod conn;
mod frame;
mod hpack;
mod huffman;
#[cfg(test)]
pub(crate) mod script;
mod shared;

pub use conn::{Completion, Connection, ConnectionLost, IoTally, KeepaliveTimes, Pushback};
pub use hpack::{RequestHeaders, WebFraming};
pub use shared::{Answer, SharedConnection};

use super::unary::UnaryCall;
use super::web::WebCall;

impl RequestHeaders {
    /// A unary call's request headers: the same ones `UnaryCall::request` sends through h2,
    /// in the same order. (Built here, so that `grpc::unary` does not depend on this client.)
    pub fn for_call(call: &UnaryCall, tls: bool) -> Self {
        let mut lean = Self::new(tls, headers_of(call)).with_templated(0, templated_of(call));
        lean.max_receive = call.max_receive();
        lean
    }

    /// The request headers of a mix of calls (`[[calls]]`), call `i` sent as entry `i`.
    /// They share the largest response accepted (the scenario refuses a mix that differs).
    pub fn for_mix(calls: &[&UnaryCall], tls: bool) -> Self {
        let mut lean = Self::mix(tls, calls.iter().map(|c| headers_of(c)).collect());
        for (i, c) in calls.iter().enumerate() {
            lean = lean.with_templated(i, templated_of(c));
        }
        lean.max_receive = calls.first().map_or(lean.max_receive, |c| c.max_receive());
        lean
    }
}

impl RequestHeaders {
    /// The request headers of a gRPC-Web call (`WebCall::goes_lean`), or of a mix of them;
    /// they share the largest response accepted and the framing.
    pub fn for_web(calls: &[&WebCall], tls: bool) -> Self {
        let mut lean = match calls {
            [one] => Self::new(tls, header_list(one.uri(), one.headers())),
            _ => Self::mix(
                tls,
                calls
                    .iter()
                    .map(|c| header_list(c.uri(), c.headers()))
                    .collect(),
            ),
        };
        for (i, c) in calls.iter().enumerate() {
            lean = lean.with_templated(i, names_of(c.templated()));
        }
        if let Some(first) = calls.first() {
            lean.max_receive = first.max_receive();
            lean.web = Some(WebFraming {
                text: first.text(),
                content_type: first.content_type_sent(),
            });
        }
        lean
    }
}

/// The names of the call's metadata rendered per request.
fn templated_of(call: &UnaryCall) -> Vec<Vec<u8>> {
    names_of(call.templated())
}

fn names_of(templated: &super::unary::TemplatedMetadata) -> Vec<Vec<u8>> {
    templated
        .names()
        .map(|n| n.as_str().as_bytes().to_vec())
        .collect()
}

/// `:path`, `:authority`, then the call's regular headers.
fn headers_of(call: &UnaryCall) -> Vec<(Vec<u8>, Vec<u8>)> {
    header_list(call.uri(), call.headers())
}

/// `:path` and `:authority` from `uri`, then `headers`, as `RequestHeaders::new` takes them.
fn header_list(uri: &http::Uri, headers: &http::HeaderMap) -> Vec<(Vec<u8>, Vec<u8>)> {
    let authority = uri.authority().map_or("", |a| a.as_str());
    let mut list = vec![
        (b":path".to_vec(), uri.path().as_bytes().to_vec()),
        (b":authority".to_vec(), authority.as_bytes().to_vec()),
    ];
    for (name, value) in headers {
        list.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
    }
    list
}
