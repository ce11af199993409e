//! A scripted peer for tests: the bytes an HTTP/2 gRPC server sends (frames, header blocks
//! any decoder reads, SETTINGS, a response head, trailers, messages), and `Script`, which
//! feeds them straight into a lean connection's read buffer and reads back the frames it
//! would send from its write buffer (the loopback socket under it is never used). For the
//! lean client's state machine, and for any transport whose tests speak HTTP/2 frame by
//! frame.

use std::sync::Arc;

use bytes::Bytes;

use super::conn::*;
use super::frame::{self, Head};
use super::hpack::RequestHeaders;
use crate::grpc::channel::Transport;

/// A header block of literals without indexing (RFC 7541 §6.2.2): what any encoder may
/// send, and decodable with no table.
pub(crate) fn literal_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in headers {
        out.push(0x00);
        out.push(n.len() as u8);
        out.extend_from_slice(n.as_bytes());
        out.push(v.len() as u8);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

pub(crate) fn frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::put_head(&mut out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

pub(crate) fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in pairs {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame_bytes(frame::SETTINGS, 0, 0, &payload)
}

/// Response headers of a gRPC call, then its trailers: (headers frame, trailers frame).
pub(crate) fn ok_head(stream: u32) -> Vec<u8> {
    frame_bytes(
        frame::HEADERS,
        frame::END_HEADERS,
        stream,
        &literal_block(&[(":status", "200"), ("content-type", "application/grpc")]),
    )
}

pub(crate) fn trailers(stream: u32, status: &str, message: &str) -> Vec<u8> {
    let mut h = vec![("grpc-status", status)];
    if !message.is_empty() {
        h.push(("grpc-message", message));
    }
    frame_bytes(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        stream,
        &literal_block(&h),
    )
}

/// One gRPC message of `len` zero bytes in one DATA frame.
pub(crate) fn message(stream: u32, len: u32) -> Vec<u8> {
    let mut payload = vec![0];
    payload.extend_from_slice(&len.to_be_bytes());
    payload.resize(5 + len as usize, 0);
    frame_bytes(frame::DATA, 0, stream, &payload)
}

pub(super) struct Script {
    pub conn: Connection,
    pub done: Vec<Completion>,
    _runtime: tokio::runtime::Runtime,
}

impl Script {
    /// A connection as `open` leaves it, before the server's SETTINGS.
    pub(super) fn new() -> Self {
        Self::with_headers(vec![
            (b":path".to_vec(), b"/a.B/C".to_vec()),
            (b":authority".to_vec(), b"x".to_vec()),
            (b"content-type".to_vec(), b"application/grpc".to_vec()),
        ])
    }

    /// The same, for a call with these request headers (`:path`, `:authority`, others).
    pub(super) fn with_headers(headers: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        Self::with_request_headers(RequestHeaders::new(false, headers), super::conn::READ_CHUNK)
    }

    /// The same, for gRPC-Web calls (`text`: `grpc-web-text`), after the server's SETTINGS.
    pub(super) fn web(text: bool) -> Self {
        let content_type = if text {
            "application/grpc-web-text"
        } else {
            "application/grpc-web+proto"
        };
        let mut headers = RequestHeaders::new(
            false,
            vec![
                (b":path".to_vec(), b"/a.B/C".to_vec()),
                (b":authority".to_vec(), b"x".to_vec()),
                (b"content-type".to_vec(), content_type.as_bytes().to_vec()),
            ],
        );
        headers.web = Some(super::hpack::WebFraming {
            text,
            content_type: content_type.to_string(),
        });
        let mut s = Self::with_request_headers(headers, super::conn::READ_CHUNK);
        s.server(&settings(&[])).unwrap();
        s.sent();
        s
    }

    /// A connection as `open_shared` leaves it (small buffers), after the server's SETTINGS.
    pub(super) fn shared() -> Self {
        let mut s = Self::with_request_headers(
            RequestHeaders::new(false, Vec::new()),
            super::conn::SHARED_READ_CHUNK,
        );
        s.server(&settings(&[])).unwrap();
        s.sent();
        s
    }

    fn with_request_headers(headers: RequestHeaders, read_chunk: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let io = Transport::Tcp(tokio::net::TcpStream::from_std(tcp).unwrap());
        let mut conn = Connection::new(io, Arc::new(headers), read_chunk);
        conn.write.clear(); // the preface and our SETTINGS
        Self {
            conn,
            done: Vec::new(),
            _runtime: runtime,
        }
    }

    /// The connection after the server's (empty) SETTINGS, its frames read back.
    pub(super) fn ready() -> Self {
        let mut s = Self::new();
        s.server(&settings(&[])).unwrap();
        s.sent();
        s
    }

    pub(super) fn call(&mut self, token: usize, body: &[u8]) -> u32 {
        self.conn
            .start(token, 0, Bytes::copy_from_slice(body), &[], None)
    }

    /// Bytes from the server, as one read delivers them.
    pub(super) fn server(&mut self, bytes: &[u8]) -> Result<(), ConnectionLost> {
        let c = &mut self.conn;
        if c.read.len() < c.read_len + bytes.len() {
            c.read.resize(c.read_len + bytes.len(), 0);
        }
        c.read[c.read_len..c.read_len + bytes.len()].copy_from_slice(bytes);
        c.read_len += bytes.len();
        let result = c.process(&mut self.done);
        c.read.copy_within(c.read_start..c.read_len, 0);
        c.read_len -= c.read_start;
        c.read_start = 0;
        result
    }

    /// The frames the connection wrote since the last look: (head, payload).
    pub(super) fn sent(&mut self) -> Vec<(Head, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = &self.conn.write[..];
        while rest.len() >= frame::HEADER_LEN {
            let head = Head::parse(rest[..frame::HEADER_LEN].try_into().unwrap());
            let end = frame::HEADER_LEN + head.len;
            out.push((head, rest[frame::HEADER_LEN..end].to_vec()));
            rest = &rest[end..];
        }
        self.conn.write.clear();
        out
    }

    /// Takes the calls that ended: (token, gRPC code, message, refused).
    pub(super) fn ended(&mut self) -> Vec<(usize, u8, String, bool)> {
        self.done
            .drain(..)
            .map(|c| {
                (
                    c.token,
                    c.outcome.code,
                    c.outcome.message.unwrap_or_default(),
                    c.refused,
                )
            })
            .collect()
    }
}
