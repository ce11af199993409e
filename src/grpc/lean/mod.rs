//! A lean HTTP/2 client for unary gRPC calls under load. `h2` is general (any request, any
//! body, a connection task, a waker and a lock per stream operation); a load generator
//! sending the same call thousands of times a second needs little of it. Here a call is a
//! pre-encoded header block and a pre-framed request appended to a buffer, and its end is
//! the status read back; the load's dispatcher owns the connections and polls them itself.
//! Streams and handshake storms still use `h2`.

mod conn;
mod frame;
mod hpack;
mod huffman;

pub use conn::{Completion, Connection, ConnectionLost};
pub use hpack::RequestHeaders;
