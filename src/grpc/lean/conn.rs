//! One HTTP/2 connection that makes unary gRPC calls and nothing else. The caller owns it
//! and polls it from one task: no connection task, no per-stream tasks, wakers, locks or
//! channels. A call is written into the connection's buffer (a pre-encoded header block and
//! the pre-framed request) and ends as a `Completion` when its status arrives; responses
//! are not decoded, only their headers and trailers.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::{self, Head};
use super::hpack::{Decoder, Indexing, RequestHeaders};
use crate::grpc::channel::{open_transport, ConnectError, Endpoint, Transport};
use crate::grpc::frame::MessageReader;
use crate::grpc::status;
use crate::grpc::unary::{code_of_reset, judge_response_head, Outcome};
use crate::grpc::web::judge_web_head;

/// What we let the server send before it must wait for a WINDOW_UPDATE, per stream and per
/// connection: a load generator should not be flow-controlled by its own defaults.
const RECEIVE_WINDOW: u32 = 1 << 30;
/// Our HPACK table for the server's encoder (the protocol's default).
const DECODER_TABLE: usize = 4096;
/// Frames larger than this are refused: we advertise no SETTINGS_MAX_FRAME_SIZE, so the
/// default 16 KiB is the most a server may send (RFC 9113 §4.2), and a hostile one cannot
/// make a connection buffer 16 MiB.
const MAX_ACCEPTED_FRAME: usize = 16_384;
/// Reads per poll before yielding, so one busy connection cannot starve the others.
const READS_PER_POLL: usize = 16;
pub(super) const READ_CHUNK: usize = 64 * 1024;
/// A shared connection's buffers (`open_shared`): its calls are rare and small (probes), and
/// a thousand of them sit idle between calls, so it reads in small chunks (a larger frame
/// grows the buffer) and gives back what a call grew once the call is done.
pub(super) const SHARED_READ_CHUNK: usize = 1024;
/// The last client stream id (odd, below 2^31).
const LAST_STREAM_ID: u32 = (1 << 31) - 1;

/// A call that ended: the caller's token and how.
#[derive(Debug)]
pub struct Completion {
    /// The caller's token for the call.
    pub token: usize,
    /// How it ended.
    pub outcome: Outcome,
    /// The server refused the stream before processing it (REFUSED_STREAM, or above a
    /// GOAWAY's last stream id): the call may be retried transparently, as gRPC does.
    pub refused: bool,
    /// The server's `grpc-retry-pushback-ms`, when its trailers carried one.
    pub pushback: Option<Pushback>,
    /// The response's message, for a call started with its own headers (`start_own`: a
    /// probe decodes it); the load's calls never keep theirs.
    pub message: Option<Vec<u8>>,
}

/// A server's retry pushback (gRFC A6): retry after this long, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// A whole number of milliseconds, 0 or more.
    After(std::time::Duration),
    /// Negative or not a number: the server asks for no retry.
    Stop,
}

impl Pushback {
    /// The header's value read as gRPC's clients read it.
    pub fn parse(value: &[u8]) -> Self {
        match std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
        {
            Some(ms) if ms >= 0 => Self::After(std::time::Duration::from_millis(ms as u64)),
            _ => Self::Stop,
        }
    }
}

/// Why the connection cannot go on; every call still on it has failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLost(pub String);

#[derive(Debug)]
struct Stream {
    token: usize,
    send_window: i64,
    /// Request bytes not yet sent (flow control).
    pending: Bytes,
    response_started: bool,
    received_unacked: u32,
    /// The response's message framing, read as DATA arrives (from its first HEADERS on).
    reader: Body,
    /// A call with headers of its own (`start_own`), whose response message is kept; `None`
    /// for the connection's calls.
    own: Option<Arc<RequestHeaders>>,
}

/// How a response's body is read.
#[derive(Debug)]
enum Body {
    /// No body expected yet (before the response headers).
    NotYet,
    /// Native gRPC: messages, then the status in the trailers.
    Native(MessageReader),
    /// gRPC-Web: messages, then the status in a trailer frame.
    Web(crate::grpc::web::WebBodyReader),
}

/// The headers a response's HEADERS frame carried that decide its outcome. One per
/// connection, cleared for each block: its buffers are reused, so judging a response
/// allocates nothing (tests/allocations.rs counts).
#[derive(Debug, Default)]
struct Heads {
    http_status: Option<u16>,
    grpc_status: Scratch,
    message: Scratch,
    content_type: Scratch,
    /// A `grpc-encoding` other than identity: compressed messages are allowed.
    encoded: bool,
    /// `grpc-retry-pushback-ms`.
    pushback: Option<Pushback>,
}

impl Heads {
    fn clear(&mut self) {
        self.http_status = None;
        self.grpc_status.present = false;
        self.message.present = false;
        self.content_type.present = false;
        self.encoded = false;
        self.pushback = None;
    }
}

/// A header value, kept in a buffer reused from block to block (its capacity is bounded by
/// the header list size the decoder accepts).
#[derive(Debug, Default)]
struct Scratch {
    value: Vec<u8>,
    present: bool,
}

impl Scratch {
    fn set(&mut self, value: &[u8]) {
        self.value.clear();
        self.value.extend_from_slice(value);
        self.present = true;
    }

    fn get(&self) -> Option<&[u8]> {
        self.present.then_some(&self.value[..])
    }
}

/// Stream ids are odd and increasing: a multiplicative hash spreads them.
#[derive(Default)]
struct StreamIdHasher(u64);

impl Hasher for StreamIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type StreamMap = HashMap<u32, Stream, BuildHasherDefault<StreamIdHasher>>;

#[derive(Debug)]
/// One HTTP/2 connection of the lean client: its buffers, HPACK state, streams and flow
/// control, driven by the thread that owns it.
pub struct Connection {
    io: Transport,
    pub(super) read: Vec<u8>,
    /// What the read buffer grows by, and (`shrink_idle`) goes back to.
    read_chunk: usize,
    pub(super) read_start: usize,
    pub(super) read_len: usize,
    pub(super) write: Vec<u8>,
    written: usize,
    decoder: Decoder,
    headers: Arc<RequestHeaders>,
    indexing: Indexing,
    block: Vec<u8>,
    /// A header block split over CONTINUATION frames: stream, flags, the block so far.
    continuation: Option<(u32, u8, Vec<u8>)>,
    streams: StreamMap,
    /// Streams with request bytes waiting for send window.
    blocked: VecDeque<u32>,
    next_id: u32,
    send_window: i64,
    received_unacked: u32,
    peer_max_streams: usize,
    peer_initial_window: i64,
    peer_max_frame: usize,
    peer_table_size: usize,
    /// The server lowered its table size: the next block opens with this size update.
    table_size_update: Option<usize>,
    peer_settings_seen: bool,
    ping_acked: bool,
    /// Whether the peer has sent any byte at all.
    heard_from_peer: bool,
    /// GOAWAY received: no new streams; those at or below this id may still finish.
    goaway: Option<u32>,
    /// The GOAWAY said ENHANCE_YOUR_CALM with `too_many_pings` (our keepalive was too eager).
    told_too_many_pings: bool,
    /// The response headers being judged (buffers reused).
    heads: Heads,
    /// When the connection was made (for `connection_max_age`).
    opened_at: std::time::Instant,
    /// When the server was last heard from (keepalive pings a quiet connection).
    last_heard: std::time::Instant,
    /// A keepalive PING sent and not yet answered: when.
    ping_out: Option<std::time::Instant>,
    /// Writes and reads made on the transport so far, handed to `tally` when dropped.
    io_calls: IoCalls,
    tally: Option<Arc<IoTally>>,
}

/// Socket writes and reads (successful ones: for plain TCP each is one system call; over
/// TLS, one per batch of records) of the connections counted into it, added as each
/// connection is dropped. Batching is what the lean client is for — a wake-up's requests in
/// one write — so the count is what guards it (tests/socket_writes.rs).
#[derive(Debug, Default)]
pub struct IoTally {
    /// Writes that moved bytes.
    pub writes: std::sync::atomic::AtomicU64,
    /// Reads that brought bytes (or the end of the stream).
    pub reads: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default, Clone, Copy)]
struct IoCalls {
    writes: u64,
    reads: u64,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(tally) = &self.tally {
            use std::sync::atomic::Ordering::Relaxed;
            tally.writes.fetch_add(self.io_calls.writes, Relaxed);
            tally.reads.fetch_add(self.io_calls.reads, Relaxed);
        }
    }
}

/// What keepalive needs to know (`[load] keepalive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveTimes {
    /// A PING after this long without hearing from the server.
    pub time: std::time::Duration,
    /// Unanswered this long: the connection is dead.
    pub timeout: std::time::Duration,
    /// Ping with no call in flight too.
    pub without_calls: bool,
}

/// A keepalive PING's payload (the connection's first PING carries `loadagnt`).
const KEEPALIVE_PING: &[u8; 8] = b"keepaliv";
/// The PING sent when a GOAWAY leaves calls on the connection.
const DRAINING_PING: &[u8; 8] = b"draining";

impl Connection {
    /// Connects, exchanges SETTINGS and proves the peer answers HTTP/2 (a PING), within the
    /// endpoint's connect timeout.
    pub async fn open(
        endpoint: &Endpoint,
        headers: Arc<RequestHeaders>,
    ) -> Result<Self, ConnectError> {
        let io = open_transport(endpoint).await?;
        Self::handshake(endpoint, Self::new(io, headers, READ_CHUNK)).await
    }

    /// `open` for calls that each bring their own headers (`start_own`), with small buffers
    /// given back when idle (`shrink_idle`); also what the TLS handshake negotiated.
    pub(super) async fn open_shared(
        endpoint: &Endpoint,
    ) -> Result<(Self, Option<crate::grpc::control::TlsFacts>), ConnectError> {
        let (io, facts) = crate::grpc::channel::open_transport_with_facts(endpoint, b"h2").await?;
        let none = Arc::new(RequestHeaders::new(endpoint.tls.is_some(), Vec::new()));
        let conn = Self::handshake(endpoint, Self::new(io, none, SHARED_READ_CHUNK)).await?;
        Ok((conn, facts))
    }

    /// Exchanges SETTINGS and proves the peer answers HTTP/2 (a PING), within the endpoint's
    /// connect timeout.
    async fn handshake(endpoint: &Endpoint, mut conn: Self) -> Result<Self, ConnectError> {
        let addr = endpoint.address.to_string();
        let mut ignored = Vec::new();
        let handshake = std::future::poll_fn(|cx| {
            if let Err(ConnectionLost(why)) = conn.poll_io(cx, &mut ignored) {
                return Poll::Ready(Err(why));
            }
            if conn.peer_settings_seen && conn.ping_acked {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        });
        match tokio::time::timeout(endpoint.connect_timeout, handshake).await {
            Err(_) => Err(ConnectError::Timeout(
                addr.clone(),
                endpoint.connect_timeout,
            )),
            // Bytes that are not HTTP/2 prove the peer speaks something else; a connection
            // reset or closed before any byte (a target being killed), or after its SETTINGS
            // proved HTTP/2, proves nothing of the kind.
            Ok(Err(why)) if conn.peer_settings_seen || !conn.heard_from_peer => {
                Err(ConnectError::Lost(addr.clone(), why))
            }
            Ok(Err(why)) => Err(ConnectError::Handshake(addr.clone(), why)),
            Ok(Ok(())) => {
                conn.indexing = conn.headers.first_indexing(conn.peer_table_size);
                Ok(conn)
            }
        }
    }

    pub(super) fn new(io: Transport, headers: Arc<RequestHeaders>, read_chunk: usize) -> Self {
        let mut write = Vec::with_capacity(read_chunk);
        write.extend_from_slice(frame::PREFACE);
        let settings = [
            (frame::SETTINGS_ENABLE_PUSH, 0),
            (frame::SETTINGS_INITIAL_WINDOW_SIZE, RECEIVE_WINDOW),
        ];
        frame::put_head(&mut write, settings.len() * 6, frame::SETTINGS, 0, 0);
        for (id, value) in settings {
            write.extend_from_slice(&id.to_be_bytes());
            write.extend_from_slice(&value.to_be_bytes());
        }
        frame::put_window_update(&mut write, 0, RECEIVE_WINDOW - 65_535);
        frame::put_head(&mut write, 8, frame::PING, 0, 0);
        write.extend_from_slice(b"loadagnt");
        Self {
            io,
            read: vec![0; read_chunk],
            read_chunk,
            read_start: 0,
            read_len: 0,
            write,
            written: 0,
            decoder: Decoder::new(DECODER_TABLE),
            headers,
            indexing: Indexing::Literal,
            block: Vec::new(),
            continuation: None,
            streams: StreamMap::default(),
            blocked: VecDeque::new(),
            next_id: 1,
            send_window: 65_535,
            received_unacked: 0,
            peer_max_streams: usize::MAX,
            peer_initial_window: 65_535,
            peer_max_frame: 16_384,
            peer_settings_seen: false,
            ping_acked: false,
            heard_from_peer: false,
            goaway: None,
            told_too_many_pings: false,
            heads: Heads::default(),
            opened_at: std::time::Instant::now(),
            last_heard: std::time::Instant::now(),
            ping_out: None,
            io_calls: IoCalls::default(),
            tally: None,
            peer_table_size: 4096,
            table_size_update: None,
        }
    }

    /// Counts this connection's socket writes and reads into `tally` (when it is dropped,
    /// those before included).
    pub fn counting_io(mut self, tally: Arc<IoTally>) -> Self {
        self.tally = Some(tally);
        self
    }

    /// Whether a new call may start here now.
    pub fn can_start(&self) -> bool {
        self.goaway.is_none()
            && self.streams.len() < self.peer_max_streams
            && self.next_id < LAST_STREAM_ID
    }

    /// Whether the connection may take calls at all (it may still be finishing some).
    pub fn accepting(&self) -> bool {
        self.goaway.is_none() && self.next_id < LAST_STREAM_ID
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.streams.len()
    }

    /// How long ago the connection was made.
    pub fn age(&self, now: std::time::Instant) -> std::time::Duration {
        now.saturating_duration_since(self.opened_at)
    }

    /// Whether the server sent GOAWAY.
    pub fn went_away(&self) -> bool {
        self.goaway.is_some()
    }

    /// Whether its GOAWAY said our pings were too many (gRPC clients then double their
    /// keepalive time).
    pub fn told_too_many_pings(&self) -> bool {
        self.told_too_many_pings
    }

    /// Keepalive at `now`: a PING when the server has been quiet for `time` (with calls in
    /// flight, or always with `without_calls`); an error when one went unanswered for
    /// `timeout`. The PING goes out with the next `poll_io`; true when one was queued.
    pub fn keepalive(
        &mut self,
        now: std::time::Instant,
        k: &KeepaliveTimes,
    ) -> Result<bool, ConnectionLost> {
        if let Some(sent) = self.ping_out {
            if now.saturating_duration_since(sent) >= k.timeout {
                return Err(ConnectionLost(format!(
                    "keepalive: the server did not answer a PING within {:?}",
                    k.timeout
                )));
            }
            return Ok(false);
        }
        let quiet = now.saturating_duration_since(self.last_heard);
        if quiet >= k.time && (k.without_calls || !self.streams.is_empty()) {
            frame::put_head(&mut self.write, 8, frame::PING, 0, 0);
            self.write.extend_from_slice(KEEPALIVE_PING);
            self.ping_out = Some(now);
            return Ok(true);
        }
        Ok(false)
    }

    /// Starts a call: its header block (plus a `traceparent`) and as much of the framed
    /// request `body` as the windows allow go into the write buffer. Returns the stream id.
    pub fn start(
        &mut self,
        token: usize,
        call: usize,
        body: Bytes,
        rendered: &[String],
        trace: Option<&[u8]>,
    ) -> u32 {
        self.block.clear();
        if let Some(size) = self.table_size_update.take() {
            super::hpack::put_size_update(&mut self.block, size);
        }
        self.indexing = self
            .headers
            .encode(self.indexing, call, rendered, trace, &mut self.block);
        self.open_stream(token, None, body)
    }

    /// Starts a call with headers of its own, not the connection's (callers sharing one
    /// connection for different calls: the agent's probers). Its headers are sent as
    /// literals, never indexed, and its response message is kept (`Completion::message`).
    pub fn start_own(
        &mut self,
        token: usize,
        headers: Arc<RequestHeaders>,
        body: Bytes,
        trace: Option<&[u8]>,
    ) -> u32 {
        self.block.clear();
        if let Some(size) = self.table_size_update.take() {
            super::hpack::put_size_update(&mut self.block, size);
        }
        headers.encode(Indexing::Literal, 0, &[], trace, &mut self.block);
        self.open_stream(token, Some(headers), body)
    }

    /// Sends the header block in `self.block` on a new stream, then what the windows allow
    /// of its request.
    fn open_stream(&mut self, token: usize, own: Option<Arc<RequestHeaders>>, body: Bytes) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        let web = own.as_deref().unwrap_or(&self.headers).web.as_ref();
        let body = match web {
            Some(web) if web.text => {
                use base64::Engine;
                Bytes::from(base64::engine::general_purpose::STANDARD.encode(&body))
            }
            _ => body,
        };
        // One growth for the whole call (a shared connection's buffer is empty when idle);
        // for the load's connections, already there.
        // Frames are at least 16 KiB (the protocol's smallest maximum): at most this many.
        let frames = (self.block.len() >> 14) + (body.len() >> 14) + 2;
        self.write
            .reserve(self.block.len() + body.len() + frames * frame::HEADER_LEN);
        let mut rest = &self.block[..];
        let mut kind = frame::HEADERS;
        loop {
            let n = rest.len().min(self.peer_max_frame);
            let flags = if n == rest.len() {
                frame::END_HEADERS
            } else {
                0
            };
            frame::put_head(&mut self.write, n, kind, flags, id);
            self.write.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            kind = frame::CONTINUATION;
            if rest.is_empty() {
                break;
            }
        }
        self.streams.insert(
            id,
            Stream {
                token,
                send_window: self.peer_initial_window,
                pending: body,
                response_started: false,
                reader: Body::NotYet,
                received_unacked: 0,
                own,
            },
        );
        if !self.send_data(id) {
            self.blocked.push_back(id);
        }
        id
    }

    /// With no call in flight and nothing buffered, gives back what the buffers grew to
    /// beyond one read chunk (a shared connection between its rare calls).
    pub fn shrink_idle(&mut self) {
        if !self.streams.is_empty() || self.read_len > 0 || !self.write.is_empty() {
            return;
        }
        if self.read.len() > self.read_chunk {
            self.read = vec![0; self.read_chunk];
        }
        // Nothing is written between calls but a PING's answer: the next call allocates.
        self.write = Vec::new();
        // The stream map matters too (a few hundred bytes; the header block's scratch is
        // kept: smaller, and reused by every call).
        self.streams.shrink_to_fit();
        self.blocked.shrink_to_fit();
    }

    /// Abandons a call (its deadline passed): the server is told with RST_STREAM CANCEL.
    pub fn cancel(&mut self, id: u32) {
        if self.streams.remove(&id).is_some() {
            frame::put_rst_stream(&mut self.write, id, frame::CANCEL);
        }
    }

    /// The tokens of every call still on the connection, which is being given up.
    pub fn abandon(&mut self) -> Vec<usize> {
        self.blocked.clear();
        self.streams.drain().map(|(_, s)| s.token).collect()
    }

    /// Writes what is buffered and reads what arrived, pushing the calls that ended. Wakes
    /// `cx` when there is more to read or room to write. An error means the connection is
    /// gone (the calls still on it are the caller's to fail, with `abandon`).
    pub fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        done: &mut Vec<Completion>,
    ) -> Result<(), ConnectionLost> {
        self.poll_flush(cx)?;
        for _ in 0..READS_PER_POLL {
            if self.read_len == self.read.len() {
                let grown = (self.read.len() * 2).max(self.read_chunk);
                self.read.resize(grown, 0);
            }
            let mut buf = ReadBuf::new(&mut self.read[self.read_len..]);
            match std::pin::Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Pending => return self.poll_flush(cx),
                Poll::Ready(Err(e)) => return Err(ConnectionLost(format!("connection lost: {e}"))),
                Poll::Ready(Ok(())) => {
                    self.io_calls.reads += 1;
                    let n = buf.filled().len();
                    if n == 0 {
                        return Err(ConnectionLost(match self.goaway {
                            Some(_) => "connection closed by the server (after GOAWAY)".into(),
                            None => "connection closed by the server".into(),
                        }));
                    }
                    self.read_len += n;
                    self.heard_from_peer = true;
                    self.last_heard = std::time::Instant::now();
                    self.process(done)?;
                }
            }
        }
        // More may be waiting: come back after the other connections had their turn.
        cx.waker().wake_by_ref();
        self.poll_flush(cx)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Result<(), ConnectionLost> {
        while self.written < self.write.len() {
            match std::pin::Pin::new(&mut self.io).poll_write(cx, &self.write[self.written..]) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Err(e)) => return Err(ConnectionLost(format!("connection lost: {e}"))),
                Poll::Ready(Ok(0)) => {
                    return Err(ConnectionLost("connection lost: wrote zero bytes".into()))
                }
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.io_calls.writes += 1;
                }
            }
        }
        self.write.clear();
        self.written = 0;
        // TLS keeps records in rustls until flushed; for TCP this is a no-op.
        match std::pin::Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(Err(e)) => Err(ConnectionLost(format!("connection lost: {e}"))),
            _ => Ok(()),
        }
    }

    /// Handles every whole frame in the read buffer.
    pub(super) fn process(&mut self, done: &mut Vec<Completion>) -> Result<(), ConnectionLost> {
        loop {
            let available = self.read_len - self.read_start;
            if available < frame::HEADER_LEN {
                break;
            }
            let head_bytes: &[u8; frame::HEADER_LEN] = self.read
                [self.read_start..self.read_start + frame::HEADER_LEN]
                .try_into()
                .map_err(|_| ConnectionLost("internal: frame header slice".into()))?;
            let head = Head::parse(head_bytes);
            if head.len > MAX_ACCEPTED_FRAME {
                return Err(protocol_error(
                    "a frame larger than 16 KiB (SETTINGS_MAX_FRAME_SIZE, not raised by us)",
                ));
            }
            if available < frame::HEADER_LEN + head.len {
                if self.read.len() < frame::HEADER_LEN + head.len {
                    // Make room for a frame larger than the buffer.
                    self.read.resize(frame::HEADER_LEN + head.len, 0);
                }
                break;
            }
            let start = self.read_start + frame::HEADER_LEN;
            let payload = std::mem::take(&mut self.read);
            let result = self.frame(head, &payload[start..start + head.len], done);
            self.read = payload;
            result?;
            self.read_start = start + head.len;
        }
        // Keep the unread tail at the front.
        if self.read_start > 0 {
            self.read.copy_within(self.read_start..self.read_len, 0);
            self.read_len -= self.read_start;
            self.read_start = 0;
        }
        Ok(())
    }

    fn frame(
        &mut self,
        head: Head,
        payload: &[u8],
        done: &mut Vec<Completion>,
    ) -> Result<(), ConnectionLost> {
        if self.continuation.is_some() && head.kind != frame::CONTINUATION {
            return Err(protocol_error("a frame inside a header block"));
        }
        // Frames of a stream never come on stream 0 (RFC 9113 §6.1, §6.2, §6.4).
        if head.stream == 0
            && matches!(
                head.kind,
                frame::DATA | frame::HEADERS | frame::CONTINUATION | frame::RST_STREAM
            )
        {
            return Err(protocol_error("a stream's frame on stream 0"));
        }
        match head.kind {
            frame::DATA => self.data(head, payload, done),
            frame::HEADERS => {
                let block = frame::unpadded(head.flags, head.kind, payload)
                    .ok_or_else(|| protocol_error("bad padding in HEADERS"))?;
                if head.flags & frame::END_HEADERS == 0 {
                    self.continuation = Some((head.stream, head.flags, block.to_vec()));
                    return Ok(());
                }
                self.header_block(head.stream, head.flags, block, done)
            }
            frame::CONTINUATION => {
                let Some((stream, flags, mut block)) = self.continuation.take() else {
                    return Err(protocol_error("CONTINUATION without HEADERS"));
                };
                if stream != head.stream {
                    return Err(protocol_error("CONTINUATION on another stream"));
                }
                block.extend_from_slice(payload);
                if head.flags & frame::END_HEADERS == 0 {
                    self.continuation = Some((stream, flags, block));
                    return Ok(());
                }
                self.header_block(stream, flags, &block, done)
            }
            frame::RST_STREAM => {
                let reason = be_u32(payload).ok_or_else(|| protocol_error("short RST_STREAM"))?;
                if let Some(s) = self.streams.remove(&head.stream) {
                    let answered = s.response_started;
                    let headers = s.own.as_deref().unwrap_or(&self.headers);
                    done.push(Completion {
                        token: s.token,
                        outcome: match &headers.web {
                            Some(_) if !answered => crate::grpc::web::reset_outcome(reason),
                            _ => reset_outcome(reason),
                        },
                        refused: reason == frame::REFUSED_STREAM,
                        pushback: None,
                        message: None,
                    });
                }
                Ok(())
            }
            frame::SETTINGS => self.settings(head, payload),
            frame::PUSH_PROMISE => Err(protocol_error("PUSH_PROMISE although push is disabled")),
            frame::PING => {
                if payload.len() != 8 {
                    return Err(protocol_error("PING of the wrong length"));
                }
                if head.flags & frame::ACK != 0 {
                    self.ping_acked = true;
                    if payload == KEEPALIVE_PING {
                        self.ping_out = None;
                    }
                } else {
                    frame::put_head(&mut self.write, 8, frame::PING, frame::ACK, 0);
                    self.write.extend_from_slice(payload);
                }
                Ok(())
            }
            frame::GOAWAY => {
                let last =
                    be_u32(payload).ok_or_else(|| protocol_error("short GOAWAY"))? & 0x7fff_ffff;
                let reason = payload.get(4..8).and_then(be_u32).unwrap_or(0);
                let first = self.goaway.is_none();
                self.goaway = Some(last);
                // gRPC servers say why in the debug data (gRFC A8).
                self.told_too_many_pings |= reason == frame::ENHANCE_YOUR_CALM
                    && payload.get(8..) == Some(b"too_many_pings".as_slice());
                let refused: Vec<u32> = self
                    .streams
                    .keys()
                    .copied()
                    .filter(|&id| id > last)
                    .collect();
                for id in refused {
                    if let Some(s) = self.streams.remove(&id) {
                        let mut outcome = Outcome::failed(
                            status::UNAVAILABLE,
                            format!(
                                "connection closed by the server (GOAWAY {}) before the call was processed",
                                frame::reason_name(reason)
                            ),
                        );
                        outcome.connection_failed = true;
                        done.push(Completion {
                            token: s.token,
                            outcome,
                            refused: true,
                            pushback: None,
                            message: None,
                        });
                    }
                }
                // A server draining a connection still answers PINGs (RFC 9113 §6.8: it
                // processes frames until it closes). One that stopped at its GOAWAY and
                // kept the calls at or below `last` unanswered (hypercorn) closes the
                // connection on this one, so those calls fail now rather than at their
                // deadlines; its answer is ignored.
                if first && !self.streams.is_empty() {
                    frame::put_head(&mut self.write, 8, frame::PING, 0, 0);
                    self.write.extend_from_slice(DRAINING_PING);
                }
                Ok(())
            }
            frame::WINDOW_UPDATE => {
                let increment = i64::from(
                    be_u32(payload).ok_or_else(|| protocol_error("short WINDOW_UPDATE"))?
                        & 0x7fff_ffff,
                );
                if head.stream == 0 {
                    self.send_window += increment;
                    if self.send_window > frame::MAX_WINDOW {
                        return Err(protocol_error("connection window above 2^31-1"));
                    }
                } else if let Some(s) = self.streams.get_mut(&head.stream) {
                    s.send_window += increment;
                }
                self.unblock();
                Ok(())
            }
            _ => Ok(()), // PRIORITY and unknown frame types are ignored (RFC 9113 §5.5)
        }
    }

    fn data(
        &mut self,
        head: Head,
        payload: &[u8],
        done: &mut Vec<Completion>,
    ) -> Result<(), ConnectionLost> {
        // Flow control counts the whole payload, padding included.
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        self.received_unacked = self.received_unacked.saturating_add(len);
        if self.received_unacked >= RECEIVE_WINDOW / 2 {
            frame::put_window_update(&mut self.write, 0, self.received_unacked);
            self.received_unacked = 0;
        }
        let data = frame::unpadded(head.flags, head.kind, payload)
            .ok_or_else(|| protocol_error("bad padding in DATA"))?;
        let end = head.flags & frame::END_STREAM != 0;
        let Some(stream) = self.streams.get_mut(&head.stream) else {
            return Ok(()); // a stream we gave up on
        };
        if !stream.response_started {
            return Err(protocol_error("DATA before the response headers"));
        }
        let framing = match &mut stream.reader {
            Body::Native(r) => r.feed(data).map_err(|e| Outcome::failed(e.code, e.message)),
            Body::Web(r) => r.feed(data).map(drop),
            Body::NotYet => Ok(()),
        };
        if let Err(outcome) = framing {
            self.finish(head.stream, end, outcome, done);
            return Ok(());
        }
        if end {
            // gRPC-Web's status came in the body; native gRPC's must come in trailers.
            let outcome = match &stream.reader {
                Body::Web(r) => r.finish_with(None, true),
                _ => Outcome::failed(
                    status::INTERNAL,
                    "response ended without trailers (no grpc-status)",
                ),
            };
            self.finish(head.stream, true, outcome, done);
            return Ok(());
        }
        stream.received_unacked = stream.received_unacked.saturating_add(len);
        if stream.received_unacked >= RECEIVE_WINDOW / 2 {
            let increment = stream.received_unacked;
            stream.received_unacked = 0;
            frame::put_window_update(&mut self.write, head.stream, increment);
        }
        Ok(())
    }

    fn header_block(
        &mut self,
        id: u32,
        flags: u8,
        block: &[u8],
        done: &mut Vec<Completion>,
    ) -> Result<(), ConnectionLost> {
        let mut heads = std::mem::take(&mut self.heads);
        heads.clear();
        let result = self.judge_block(&mut heads, id, flags, block, done);
        self.heads = heads;
        result
    }

    fn judge_block(
        &mut self,
        heads: &mut Heads,
        id: u32,
        flags: u8,
        block: &[u8],
        done: &mut Vec<Completion>,
    ) -> Result<(), ConnectionLost> {
        // Every block is decoded, even for streams given up on: HPACK state is shared.
        self.decoder
            .decode(block, |name, value| match name {
                b":status" => {
                    heads.http_status = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok())
                }
                b"grpc-status" => heads.grpc_status.set(value),
                b"grpc-message" => heads.message.set(value),
                b"content-type" => heads.content_type.set(value),
                b"grpc-encoding" => heads.encoded = value != b"identity",
                b"grpc-retry-pushback-ms" => heads.pushback = Some(Pushback::parse(value)),
                _ => {}
            })
            .map_err(|e| ConnectionLost(e.to_string()))?;
        let end = flags & frame::END_STREAM != 0;
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        let headers = stream.own.as_deref().unwrap_or(&self.headers);
        let outcome = if let (true, Body::Web(r)) = (stream.response_started, &stream.reader) {
            // HTTP trailers after a gRPC-Web body (some servers send those instead of, or
            // besides, the trailer frame, which wins).
            r.finish_with(
                heads.grpc_status.get().map(|c| (c, heads.message.get())),
                true,
            )
        } else if stream.response_started {
            match heads.grpc_status.get() {
                Some(code) => {
                    let outcome =
                        Outcome::from_status(status::parse_code(code), heads.message.get());
                    // An OK unary call carries exactly one whole message.
                    let framing = match &stream.reader {
                        Body::Native(r) => r.unary_end(),
                        _ => Ok(()),
                    };
                    match framing {
                        Err(e) if outcome.code == status::OK => Outcome::failed(e.code, e.message),
                        _ => outcome,
                    }
                }
                None => Outcome::failed(status::INTERNAL, "response trailers have no grpc-status"),
            }
        } else {
            stream.response_started = true;
            let judged = match &headers.web {
                None => judge_response_head(
                    heads.http_status,
                    heads.content_type.get(),
                    heads.grpc_status.get(),
                    heads.message.get(),
                ),
                Some(web) => judge_web_head(
                    heads.http_status.unwrap_or(0),
                    heads.content_type.get(),
                    heads.grpc_status.get(),
                    heads.message.get(),
                    &web.content_type,
                ),
            };
            match judged {
                Some(outcome) => outcome,
                None if end => Outcome::failed(
                    status::INTERNAL,
                    "response ended without trailers (no grpc-status)",
                ),
                None => {
                    // The message and trailers follow.
                    let max_receive = headers.max_receive;
                    let keep = stream.own.is_some();
                    stream.reader = match &headers.web {
                        None => {
                            let mut r = MessageReader::new(max_receive, heads.encoded);
                            r.keep_first = keep;
                            Body::Native(r)
                        }
                        Some(web) => {
                            let mut r = crate::grpc::web::WebBodyReader::new(web.text, max_receive);
                            r.keep_first = keep;
                            Body::Web(r)
                        }
                    };
                    return Ok(());
                }
            }
        };
        self.finish(id, end, outcome, done);
        // The call just ended carries the server's pushback, if it sent one.
        if let Some(c) = done.last_mut().filter(|_| heads.pushback.is_some()) {
            c.pushback = heads.pushback;
        }
        Ok(())
    }

    /// Ends a call; a stream the server has not ended is reset, so it stops sending.
    fn finish(
        &mut self,
        id: u32,
        server_ended: bool,
        outcome: Outcome,
        done: &mut Vec<Completion>,
    ) {
        if let Some(mut s) = self.streams.remove(&id) {
            if !server_ended || !s.pending.is_empty() {
                frame::put_rst_stream(&mut self.write, id, frame::CANCEL);
            }
            let message = match &mut s.reader {
                _ if outcome.code != status::OK => None,
                Body::Native(r) => r.take_first(),
                Body::Web(r) => r.take_first(),
                Body::NotYet => None,
            };
            done.push(Completion {
                token: s.token,
                outcome,
                refused: false,
                pushback: None,
                message,
            });
        }
    }

    fn settings(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnectionLost> {
        if head.flags & frame::ACK != 0 {
            return Ok(());
        }
        if payload.len() % 6 != 0 || head.stream != 0 {
            return Err(protocol_error("malformed SETTINGS"));
        }
        for setting in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                frame::SETTINGS_HEADER_TABLE_SIZE => {
                    // A smaller table must be acknowledged by a size update at the start of
                    // the next header block (RFC 7541 §4.2); decoders such as nghttp2's
                    // refuse a block without it.
                    if (value as usize) < self.peer_table_size {
                        let smallest = self
                            .table_size_update
                            .map_or(value as usize, |u| u.min(value as usize));
                        self.table_size_update = Some(smallest);
                    }
                    self.peer_table_size = value as usize;
                    if self.peer_settings_seen {
                        self.indexing = self
                            .headers
                            .after_table_change(self.indexing, self.peer_table_size);
                    }
                }
                frame::SETTINGS_MAX_CONCURRENT_STREAMS => self.peer_max_streams = value as usize,
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > frame::MAX_WINDOW {
                        return Err(protocol_error("initial window above 2^31-1"));
                    }
                    let delta = value - self.peer_initial_window;
                    self.peer_initial_window = value;
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(16_384..1 << 24).contains(&value) {
                        return Err(protocol_error("max frame size out of range"));
                    }
                    self.peer_max_frame = value as usize;
                }
                _ => {}
            }
        }
        self.peer_settings_seen = true;
        frame::put_head(&mut self.write, 0, frame::SETTINGS, frame::ACK, 0);
        self.unblock();
        Ok(())
    }

    /// Sends what the windows allow of stream `id`'s request; true when all of it is sent.
    fn send_data(&mut self, id: u32) -> bool {
        let Some(s) = self.streams.get_mut(&id) else {
            return true; // ended or given up
        };
        loop {
            let window = self.send_window.min(s.send_window).max(0) as usize;
            let n = s.pending.len().min(self.peer_max_frame).min(window);
            if n == 0 && !s.pending.is_empty() {
                return false;
            }
            let last = n == s.pending.len();
            let chunk = s.pending.split_to(n);
            frame::put_head(
                &mut self.write,
                n,
                frame::DATA,
                if last { frame::END_STREAM } else { 0 },
                id,
            );
            self.write.extend_from_slice(&chunk);
            self.send_window -= n as i64;
            s.send_window -= n as i64;
            if last {
                return true;
            }
        }
    }

    fn unblock(&mut self) {
        for _ in 0..self.blocked.len() {
            let Some(id) = self.blocked.pop_front() else {
                break;
            };
            if !self.send_data(id) {
                self.blocked.push_back(id);
            }
        }
    }
}

fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn protocol_error(what: &str) -> ConnectionLost {
    ConnectionLost(format!("HTTP/2 protocol error from the server: {what}"))
}

/// A stream reset by the server, mapped as for `h2` streams (`unary::code_of_reset`).
fn reset_outcome(reason: u32) -> Outcome {
    Outcome::failed(
        code_of_reset(reason).unwrap_or(status::INTERNAL),
        format!("stream reset by the server: {}", frame::reason_name(reason)),
    )
}

#[cfg(test)]
mod state_machine {
    //! The lean connection frame by frame against a scripted server (`script`), the way h2
    //! is tested: SETTINGS, CONTINUATION, padding, flow control, PING, RST_STREAM, GOAWAY,
    //! table-size changes, and peers that break the protocol (an error, never a panic).
    use super::super::script::*;
    use super::*;

    fn data_lengths(frames: &[(Head, Vec<u8>)], stream: u32) -> Vec<usize> {
        frames
            .iter()
            .filter(|(h, _)| h.kind == frame::DATA && h.stream == stream)
            .map(|(h, _)| h.len)
            .collect()
    }

    #[test]
    fn a_call_completes_through_headers_data_and_trailers() {
        let mut s = Script::ready();
        let id = s.call(7, &[0, 0, 0, 0, 1, 7]);
        let sent = s.sent();
        assert_eq!(sent[0].0.kind, frame::HEADERS);
        assert_eq!(data_lengths(&sent, id), vec![6]);
        assert!(sent
            .iter()
            .any(|(h, _)| h.kind == frame::DATA && h.flags & frame::END_STREAM != 0));
        s.server(&ok_head(id)).unwrap();
        s.server(&message(id, 3)).unwrap();
        assert!(s.ended().is_empty(), "not before the trailers");
        s.server(&trailers(id, "0", "")).unwrap();
        assert_eq!(s.ended(), vec![(7, status::OK, String::new(), false)]);
    }

    #[test]
    fn a_call_with_its_own_headers_keeps_its_message_and_an_idle_connection_gives_back_its_buffers()
    {
        let mut s = Script::shared();
        let own = Arc::new(RequestHeaders::new(
            false,
            vec![
                (b":path".to_vec(), b"/grpc.health.v1.Health/Check".to_vec()),
                (b":authority".to_vec(), b"x".to_vec()),
                (b"content-type".to_vec(), b"application/grpc".to_vec()),
            ],
        ));
        let first = s
            .conn
            .start_own(3, own.clone(), Bytes::from_static(&[0, 0, 0, 0, 0]), None);
        let second = s
            .conn
            .start_own(4, own, Bytes::from_static(&[0, 0, 0, 0, 0]), None);
        // Never indexed: every call's block is the same literals, whoever shares the
        // connection and whatever the server's table holds.
        let blocks: Vec<Vec<u8>> = s
            .sent()
            .into_iter()
            .filter(|(h, _)| h.kind == frame::HEADERS)
            .map(|(_, p)| p)
            .collect();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0], blocks[1]);
        // A response larger than any read chunk: 40,000 bytes over three DATA frames.
        let mut body = vec![0];
        body.extend_from_slice(&40_000u32.to_be_bytes());
        body.extend((0..40_000u32).map(|i| i as u8));
        s.server(&ok_head(first)).unwrap();
        for part in body.chunks(16_000) {
            s.server(&frame_bytes(frame::DATA, 0, first, part)).unwrap();
        }
        s.server(&trailers(first, "0", "")).unwrap();
        let done: Vec<Completion> = s.done.drain(..).collect();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].token, 3);
        assert_eq!(done[0].message.as_deref(), Some(&body[5..]));
        // A failed call's message is not kept.
        s.server(&ok_head(second)).unwrap();
        s.server(&message(second, 2)).unwrap();
        s.server(&trailers(second, "13", "broken")).unwrap();
        let done: Vec<Completion> = s.done.drain(..).collect();
        assert_eq!(
            (done[0].outcome.code, done[0].message.is_none()),
            (13, true)
        );
        // Idle, the connection gives back what the large response grew.
        s.sent();
        assert!(s.conn.read.len() > 16_000, "grown for the large frames");
        s.conn.shrink_idle();
        assert_eq!(
            s.conn.read.len(),
            SHARED_READ_CHUNK,
            "back to one read chunk"
        );
        assert_eq!(s.conn.in_flight(), 0);
    }

    /// A gRPC-Web response head (`content-type`), its body's frames, and trailer frames.
    fn web_head(stream: u32, content_type: &str) -> Vec<u8> {
        frame_bytes(
            frame::HEADERS,
            frame::END_HEADERS,
            stream,
            &literal_block(&[(":status", "200"), ("content-type", content_type)]),
        )
    }

    fn web_frame(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flags];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn web_data(stream: u32, body: &[u8], end: bool) -> Vec<u8> {
        let flags = if end { frame::END_STREAM } else { 0 };
        frame_bytes(frame::DATA, flags, stream, body)
    }

    #[test]
    fn grpc_web_calls_end_at_the_trailer_frame_or_the_http_trailers() {
        const BINARY: &str = "application/grpc-web+proto";
        let ok_body = [web_frame(0, b"hi"), web_frame(0x80, b"grpc-status: 0\r\n")].concat();
        // A message and the trailer frame, split over two DATA frames at any byte.
        let mut s = Script::web(false);
        let id = s.call(1, &[0, 0, 0, 0, 0]);
        s.server(&web_head(id, BINARY)).unwrap();
        s.server(&web_data(id, &ok_body[..4], false)).unwrap();
        assert!(s.ended().is_empty());
        s.server(&web_data(id, &ok_body[4..], true)).unwrap();
        assert_eq!(s.ended(), vec![(1, status::OK, String::new(), false)]);
        // A status and message in the trailer frame.
        let id = s.call(2, &[0, 0, 0, 0, 0]);
        s.server(&web_head(id, BINARY)).unwrap();
        let failed = web_frame(0x80, b"grpc-status: 5\r\ngrpc-message: gone\r\n");
        s.server(&web_data(id, &failed, true)).unwrap();
        assert_eq!(s.ended(), vec![(2, 5, "gone".into(), false)]);
        // HTTP trailers instead of a trailer frame (some servers send those).
        let id = s.call(3, &[0, 0, 0, 0, 0]);
        s.server(&web_head(id, BINARY)).unwrap();
        s.server(&web_data(id, &web_frame(0, b"hi"), false))
            .unwrap();
        s.server(&trailers(id, "0", "")).unwrap();
        assert_eq!(s.ended(), vec![(3, status::OK, String::new(), false)]);
        // No status at all; two messages for a unary call; a native server's answer.
        let id = s.call(4, &[0, 0, 0, 0, 0]);
        s.server(&web_head(id, BINARY)).unwrap();
        s.server(&web_data(id, &web_frame(0, b"hi"), true)).unwrap();
        let id = s.call(5, &[0, 0, 0, 0, 0]);
        s.server(&web_head(id, BINARY)).unwrap();
        let twice = [web_frame(0, b"a"), ok_body.clone()].concat();
        s.server(&web_data(id, &twice, true)).unwrap();
        let id = s.call(6, &[0, 0, 0, 0, 0]);
        s.server(&web_head(id, "application/grpc")).unwrap();
        let ended = s.ended();
        assert_eq!(ended.len(), 3, "{ended:?}");
        assert!(ended[0].2.contains("without a trailer frame"), "{ended:?}");
        assert!(ended[1].2.contains("2 response messages"), "{ended:?}");
        assert!(
            ended[2].2.contains("set `protocol = \"grpc\"`"),
            "{ended:?}"
        );
        assert!(ended.iter().all(|e| e.1 != status::OK));
        // A stream reset before any answer: what grpcio does to gRPC-Web's content type.
        let id = s.call(7, &[0, 0, 0, 0, 0]);
        s.server(&frame_bytes(frame::RST_STREAM, 0, id, &1u32.to_be_bytes()))
            .unwrap();
        let ended = s.ended();
        assert!(
            ended[0].2.contains("native gRPC servers (grpcio) refuse"),
            "{ended:?}"
        );
    }

    #[test]
    fn grpc_web_text_bodies_are_base64_both_ways() {
        use base64::Engine;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let mut s = Script::web(true);
        let request = [0, 0, 0, 0, 2, 8, 1];
        let id = s.call(1, &request);
        let sent = s.sent();
        let body: Vec<u8> = sent
            .iter()
            .filter(|(h, _)| h.kind == frame::DATA)
            .flat_map(|(_, p)| p.clone())
            .collect();
        assert_eq!(body, b64.encode(request).into_bytes());
        s.server(&web_head(id, "application/grpc-web-text+proto"))
            .unwrap();
        // Each frame encoded apart, padding and all, as servers do.
        let encoded = [
            b64.encode(web_frame(0, b"hi")),
            b64.encode(web_frame(0x80, b"grpc-status: 0\r\n")),
        ]
        .concat();
        s.server(&web_data(id, encoded.as_bytes(), true)).unwrap();
        assert_eq!(s.ended(), vec![(1, status::OK, String::new(), false)]);
    }

    #[test]
    fn a_goaway_that_leaves_calls_is_followed_by_a_ping() {
        let goaway = |last: u32| {
            let mut p = last.to_be_bytes().to_vec();
            p.extend_from_slice(&0u32.to_be_bytes());
            frame_bytes(frame::GOAWAY, 0, 0, &p)
        };
        let pings = |sent: &[(Head, Vec<u8>)]| {
            sent.iter()
                .filter(|(h, p)| h.kind == frame::PING && p == DRAINING_PING)
                .count()
        };
        // Nothing in flight: nothing to check.
        let mut s = Script::ready();
        s.server(&goaway(0)).unwrap();
        assert_eq!(pings(&s.sent()), 0);
        // A call the server kept: one PING, however many GOAWAYs follow.
        let mut s = Script::ready();
        let id = s.call(1, &[0, 0, 0, 0, 0]);
        s.sent();
        s.server(&goaway(id)).unwrap();
        s.server(&goaway(id)).unwrap();
        assert_eq!(pings(&s.sent()), 1);
        assert!(s.ended().is_empty(), "the call may still be answered");
    }

    #[test]
    fn statuses_and_percent_encoded_messages_come_from_trailers_or_trailers_only() {
        let mut s = Script::ready();
        let a = s.call(1, &[0, 0, 0, 0, 0]);
        let b = s.call(2, &[0, 0, 0, 0, 0]);
        s.server(&ok_head(a)).unwrap();
        s.server(&trailers(a, "5", "no%20such%20thing")).unwrap();
        // Trailers-only: status in the first and only HEADERS.
        s.server(&frame_bytes(
            frame::HEADERS,
            frame::END_HEADERS | frame::END_STREAM,
            b,
            &literal_block(&[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "14"),
            ]),
        ))
        .unwrap();
        let ended = s.ended();
        assert_eq!(ended[0], (1, 5, "no such thing".into(), false));
        assert_eq!((ended[1].0, ended[1].1), (2, status::UNAVAILABLE));
    }

    #[test]
    fn header_blocks_split_over_continuation_frames_are_joined() {
        let mut s = Script::ready();
        let id = s.call(1, &[0, 0, 0, 0, 0]);
        let block = literal_block(&[(":status", "200"), ("content-type", "application/grpc")]);
        s.server(&frame_bytes(frame::HEADERS, 0, id, &block[..4]))
            .unwrap();
        s.server(&frame_bytes(frame::CONTINUATION, 0, id, &block[4..9]))
            .unwrap();
        s.server(&frame_bytes(
            frame::CONTINUATION,
            frame::END_HEADERS,
            id,
            &block[9..],
        ))
        .unwrap();
        s.server(&message(id, 1)).unwrap();
        s.server(&trailers(id, "0", "")).unwrap();
        assert_eq!(s.ended()[0].1, status::OK);
        // A CONTINUATION for another stream, or any other frame in between, is an error.
        let mut s = Script::ready();
        let id = s.call(1, &[0, 0, 0, 0, 0]);
        s.server(&frame_bytes(frame::HEADERS, 0, id, &block[..4]))
            .unwrap();
        assert!(s
            .server(&frame_bytes(
                frame::CONTINUATION,
                frame::END_HEADERS,
                id + 2,
                &block[4..]
            ))
            .is_err());
    }

    #[test]
    fn padded_data_and_headers_are_unpadded_and_bad_padding_is_an_error() {
        let mut s = Script::ready();
        let id = s.call(1, &[0, 0, 0, 0, 0]);
        let block = literal_block(&[(":status", "200"), ("content-type", "application/grpc")]);
        let mut padded = vec![4];
        padded.extend_from_slice(&block);
        padded.extend_from_slice(&[0; 4]);
        s.server(&frame_bytes(
            frame::HEADERS,
            frame::END_HEADERS | frame::PADDED,
            id,
            &padded,
        ))
        .unwrap();
        let mut data = vec![2, 0, 0, 0, 0, 1, 9];
        data.extend_from_slice(&[0, 0]);
        s.server(&frame_bytes(frame::DATA, frame::PADDED, id, &data))
            .unwrap();
        s.server(&trailers(id, "0", "")).unwrap();
        assert_eq!(
            s.ended()[0].1,
            status::OK,
            "one whole message once unpadded"
        );
        let mut s = Script::ready();
        let id = s.call(1, &[0, 0, 0, 0, 0]);
        s.server(&ok_head(id)).unwrap();
        assert!(s
            .server(&frame_bytes(frame::DATA, frame::PADDED, id, &[9, 1, 2]))
            .is_err());
    }

    #[test]
    fn the_servers_stream_limit_is_respected_and_raised() {
        let mut s = Script::new();
        s.server(&settings(&[(frame::SETTINGS_MAX_CONCURRENT_STREAMS, 2)]))
            .unwrap();
        let acks: Vec<_> = s.sent();
        assert!(acks
            .iter()
            .any(|(h, _)| h.kind == frame::SETTINGS && h.flags & frame::ACK != 0));
        s.call(1, &[0, 0, 0, 0, 0]);
        s.call(2, &[0, 0, 0, 0, 0]);
        assert!(!s.conn.can_start(), "two in flight: the limit");
        s.server(&settings(&[(frame::SETTINGS_MAX_CONCURRENT_STREAMS, 3)]))
            .unwrap();
        assert!(s.conn.can_start());
    }

    #[test]
    fn request_data_waits_for_stream_and_connection_windows() {
        let mut s = Script::new();
        s.server(&settings(&[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 10)]))
            .unwrap();
        s.sent();
        let body = vec![0u8; 100];
        let id = s.call(1, &body);
        assert_eq!(data_lengths(&s.sent(), id), vec![10], "the stream window");
        s.server(&frame_bytes(
            frame::WINDOW_UPDATE,
            0,
            id,
            &50u32.to_be_bytes(),
        ))
        .unwrap();
        assert_eq!(data_lengths(&s.sent(), id), vec![50]);
        // A larger initial window applies to streams already open.
        s.server(&settings(&[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 1000)]))
            .unwrap();
        let sent = s.sent();
        assert_eq!(data_lengths(&sent, id), vec![40]);
        let last = sent
            .iter()
            .rev()
            .find(|(h, _)| h.kind == frame::DATA)
            .unwrap();
        assert!(
            last.0.flags & frame::END_STREAM != 0,
            "the request is whole"
        );
        // The connection window (65,535 at first) binds too.
        let mut s = Script::ready();
        let id = s.call(1, &vec![0u8; 70_000]);
        let sent: usize = data_lengths(&s.sent(), id).iter().sum();
        assert_eq!(sent, 65_535);
        s.server(&frame_bytes(
            frame::WINDOW_UPDATE,
            0,
            id,
            &10_000u32.to_be_bytes(),
        ))
        .unwrap();
        assert!(
            data_lengths(&s.sent(), id).is_empty(),
            "the connection window is still empty"
        );
        s.server(&frame_bytes(
            frame::WINDOW_UPDATE,
            0,
            0,
            &10_000u32.to_be_bytes(),
        ))
        .unwrap();
        let more: usize = data_lengths(&s.sent(), id).iter().sum();
        assert_eq!(more, 70_000 - 65_535);
        // A window pushed past 2^31-1 is the server's error.
        let mut s = Script::ready();
        assert!(s
            .server(&frame_bytes(
                frame::WINDOW_UPDATE,
                0,
                0,
                &0x7fff_ffffu32.to_be_bytes()
            ))
            .is_err());
    }

    #[test]
    fn keepalive_pings_a_quiet_connection_and_gives_up_on_an_unanswered_ping() {
        use std::time::Duration;
        let mut s = Script::ready();
        let k = KeepaliveTimes {
            time: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            without_calls: false,
        };
        let t0 = std::time::Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        // Quiet, but no call in flight: no PING unless `without_calls`.
        assert!(!s.conn.keepalive(at(11), &k).unwrap());
        assert!(s.sent().is_empty());
        let with = KeepaliveTimes {
            without_calls: true,
            ..k
        };
        assert!(s.conn.keepalive(at(11), &with).unwrap(), "a PING queued");
        let sent = s.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].0.kind, sent[0].0.flags), (frame::PING, 0));
        assert_eq!(sent[0].1, KEEPALIVE_PING);
        // One PING out at a time; answered, the next may go.
        s.conn.keepalive(at(12), &k).unwrap();
        assert!(s.sent().is_empty());
        s.server(&frame_bytes(frame::PING, frame::ACK, 0, KEEPALIVE_PING))
            .unwrap();
        s.call(1, &[0, 0, 0, 0, 0]);
        s.sent();
        s.conn.keepalive(at(20), &k).unwrap();
        assert_eq!(
            s.sent().len(),
            1,
            "a call in flight on a quiet connection: a PING"
        );
        // Unanswered within the timeout: the connection is given up.
        s.conn.keepalive(at(24), &k).unwrap();
        let lost = s.conn.keepalive(at(25), &k).unwrap_err();
        assert!(lost.0.contains("did not answer a PING"), "{lost:?}");
    }

    #[test]
    fn a_goaway_for_too_many_pings_is_told_apart() {
        let mut s = Script::ready();
        let mut payload = vec![0, 0, 0, 0];
        payload.extend_from_slice(&frame::ENHANCE_YOUR_CALM.to_be_bytes());
        payload.extend_from_slice(b"too_many_pings");
        s.server(&frame_bytes(frame::GOAWAY, 0, 0, &payload))
            .unwrap();
        assert!(s.conn.went_away() && s.conn.told_too_many_pings());
        // Another reason, or another debug text, is a plain GOAWAY.
        let mut s = Script::ready();
        s.server(&frame_bytes(
            frame::GOAWAY,
            0,
            0,
            &[0, 0, 0, 0, 0, 0, 0, 0xb],
        ))
        .unwrap();
        assert!(s.conn.went_away() && !s.conn.told_too_many_pings());
    }

    #[test]
    fn data_frames_follow_the_servers_max_frame_size() {
        let mut s = Script::new();
        s.server(&settings(&[
            (frame::SETTINGS_MAX_FRAME_SIZE, 20_000),
            (frame::SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20),
        ]))
        .unwrap();
        s.server(&frame_bytes(
            frame::WINDOW_UPDATE,
            0,
            0,
            &(1u32 << 20).to_be_bytes(),
        ))
        .unwrap();
        s.sent();
        let id = s.call(1, &vec![0u8; 50_000]);
        assert_eq!(data_lengths(&s.sent(), id), vec![20_000, 20_000, 10_000]);
        assert!(s
            .server(&settings(&[(frame::SETTINGS_MAX_FRAME_SIZE, 100)]))
            .is_err());
    }

    #[test]
    fn received_data_is_acknowledged_with_window_updates() {
        let mut s = Script::ready();
        let id = s.call(1, &[0, 0, 0, 0, 0]);
        s.sent();
        s.server(&ok_head(id)).unwrap();
        // Our windows are 1 GiB: nothing is acknowledged byte by byte, and once half of a
        // window is used, the stream and the connection are both given it back.
        let chunk = message(id, 16_000);
        let half = (RECEIVE_WINDOW / 2) as usize;
        // Windows count frame payloads, not the 9-byte frame headers.
        let payload = chunk.len() - frame::HEADER_LEN;
        let frames_before_half = half / payload - 1;
        for _ in 0..frames_before_half {
            s.server(&chunk).unwrap();
        }
        assert!(
            s.sent().iter().all(|(h, _)| h.kind != frame::WINDOW_UPDATE),
            "no update before half a window"
        );
        for _ in 0..2 {
            s.server(&chunk).unwrap();
        }
        let updates: Vec<u32> = s
            .sent()
            .iter()
            .filter(|(h, _)| h.kind == frame::WINDOW_UPDATE)
            .map(|(h, _)| h.stream)
            .collect();
        assert!(
            updates.contains(&0) && updates.contains(&id),
            "the connection and the stream get their window back: {updates:?}"
        );
        assert!(s.ended().is_empty(), "still open: no trailers yet");
    }

    #[test]
    fn pings_are_answered_with_their_payload() {
        let mut s = Script::ready();
        s.server(&frame_bytes(frame::PING, 0, 0, b"12345678"))
            .unwrap();
        let sent = s.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].0.kind, sent[0].0.flags), (frame::PING, frame::ACK));
        assert_eq!(sent[0].1, b"12345678");
        assert!(s.server(&frame_bytes(frame::PING, 0, 0, b"short")).is_err());
    }

    #[test]
    fn refused_streams_are_retryable_and_other_resets_are_not() {
        let mut s = Script::ready();
        let a = s.call(1, &[0, 0, 0, 0, 0]);
        let b = s.call(2, &[0, 0, 0, 0, 0]);
        s.server(&frame_bytes(
            frame::RST_STREAM,
            0,
            a,
            &frame::REFUSED_STREAM.to_be_bytes(),
        ))
        .unwrap();
        s.server(&frame_bytes(
            frame::RST_STREAM,
            0,
            b,
            &frame::CANCEL.to_be_bytes(),
        ))
        .unwrap();
        let ended = s.ended();
        assert_eq!(
            (ended[0].0, ended[0].1, ended[0].3),
            (1, status::UNAVAILABLE, true)
        );
        assert_eq!(
            (ended[1].0, ended[1].1, ended[1].3),
            (2, status::CANCELLED, false)
        );
    }

    #[test]
    fn goaway_refuses_the_streams_above_its_last_id_and_lets_the_others_finish() {
        let mut s = Script::ready();
        let a = s.call(1, &[0, 0, 0, 0, 0]);
        let b = s.call(2, &[0, 0, 0, 0, 0]);
        let mut payload = a.to_be_bytes().to_vec();
        payload.extend_from_slice(&0u32.to_be_bytes());
        s.server(&frame_bytes(frame::GOAWAY, 0, 0, &payload))
            .unwrap();
        let ended = s.ended();
        assert_eq!(ended.len(), 1);
        assert_eq!(
            (ended[0].0, ended[0].3),
            (2, true),
            "stream {b} refused, retryable"
        );
        assert!(!s.conn.can_start() && !s.conn.accepting());
        s.server(&ok_head(a)).unwrap();
        s.server(&message(a, 1)).unwrap();
        s.server(&trailers(a, "0", "")).unwrap();
        assert_eq!(s.ended()[0].1, status::OK, "stream {a} finishes");
    }

    #[test]
    fn request_headers_decode_with_the_table_size_the_server_announced() {
        for table in [4096u32, 256, 0] {
            let mut s = Script::new();
            s.server(&settings(&[(frame::SETTINGS_HEADER_TABLE_SIZE, table)]))
                .unwrap();
            s.sent();
            s.conn.indexing = s.conn.headers.first_indexing(s.conn.peer_table_size);
            // The server's decoder, holding at most what it announced.
            let mut server = Decoder::new(table as usize);
            for token in 0..3 {
                s.call(token, &[0, 0, 0, 0, 0]);
                let sent = s.sent();
                let mut seen = Vec::new();
                server
                    .decode(&sent[0].1, |n, v| seen.push((n.to_vec(), v.to_vec())))
                    .unwrap_or_else(|e| panic!("table {table}, call {token}: {e:?}"));
                assert!(
                    seen.contains(&(b":path".to_vec(), b"/a.B/C".to_vec())),
                    "{table}"
                );
            }
            // The server shrinks its table mid-connection: blocks still decode.
            s.server(&settings(&[(frame::SETTINGS_HEADER_TABLE_SIZE, 0)]))
                .unwrap();
            s.sent();
            let mut shrunk = Decoder::new(0);
            s.call(9, &[0, 0, 0, 0, 0]);
            let sent = s.sent();
            // What the old table held is gone on the server's side; our block must say so.
            let _ = shrunk.decode(&sent[0].1, |_, _| {});
            server
                .decode(&sent[0].1, |_, _| {})
                .unwrap_or_else(|e| panic!("after shrinking {table}: {e:?}"));
        }
    }

    proptest::proptest! {
        /// Any request headers, any sequence of the server's table-size changes: every block
        /// decodes, in a decoder that holds the server's table, to exactly the headers sent,
        /// and a lowered table is acknowledged first, as strict decoders (nghttp2) demand.
        #[test]
        fn request_headers_round_trip_through_table_size_changes(
            extra in proptest::collection::vec(("[a-z][a-z0-9-]{0,15}", "[ -~]{0,40}"), 0..6),
            ops in proptest::collection::vec(proptest::option::of(proptest::sample::select(vec![0u32, 40, 64, 256, 1024, 4096, 65_536])), 1..12),
        ) {
            let mut headers = vec![
                (b":path".to_vec(), b"/a.B/C".to_vec()),
                (b":authority".to_vec(), b"example:443".to_vec()),
            ];
            headers.extend(extra.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())));
            let mut s = Script::with_headers(headers.clone());
            s.server(&settings(&[])).unwrap();
            s.conn.indexing = s.conn.headers.first_indexing(s.conn.peer_table_size);
            s.sent();
            let mut server = Decoder::new(4096);
            let (mut server_max, mut must_update) = (4096usize, false);
            let mut want = vec![(b":method".to_vec(), b"POST".to_vec()), (b":scheme".to_vec(), b"http".to_vec())];
            want.extend(headers);
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Some(size) => {
                        s.server(&settings(&[(frame::SETTINGS_HEADER_TABLE_SIZE, size)])).unwrap();
                        s.sent();
                        server.set_limit(size as usize);
                        if (size as usize) < server_max {
                            must_update = true;
                        }
                        server_max = server_max.min(size as usize);
                    }
                    None => {
                        s.call(i, &[0, 0, 0, 0, 0]);
                        let block: Vec<u8> = s
                            .sent()
                            .into_iter()
                            .filter(|(h, _)| h.kind == frame::HEADERS || h.kind == frame::CONTINUATION)
                            .flat_map(|(_, p)| p)
                            .collect();
                        if must_update {
                            proptest::prop_assert_eq!(block[0] & 0xe0, 0x20, "a size update opens the block");
                            must_update = false;
                        }
                        let mut got = Vec::new();
                        server
                            .decode(&block, |n, v| got.push((n.to_vec(), v.to_vec())))
                            .map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e:?}")))?;
                        proptest::prop_assert_eq!(&got, &want);
                    }
                }
            }
        }
    }

    #[test]
    fn protocol_violations_are_errors_never_panics() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("DATA on stream 0", frame_bytes(frame::DATA, 0, 0, b"x")),
            (
                "PUSH_PROMISE",
                frame_bytes(frame::PUSH_PROMISE, 0, 1, &[0, 0, 0, 2]),
            ),
            (
                "SETTINGS of a bad length",
                frame_bytes(frame::SETTINGS, 0, 0, &[0, 1, 0]),
            ),
            (
                "SETTINGS on a stream",
                frame_bytes(frame::SETTINGS, 0, 1, &[]),
            ),
            ("a huge frame", {
                let mut f = Vec::new();
                frame::put_head(&mut f, (1 << 24) - 1, frame::DATA, 0, 1);
                f
            }),
            (
                "a short RST_STREAM",
                frame_bytes(frame::RST_STREAM, 0, 1, &[0, 0]),
            ),
            ("a short GOAWAY", frame_bytes(frame::GOAWAY, 0, 0, &[0])),
            (
                "a broken header block",
                frame_bytes(
                    frame::HEADERS,
                    frame::END_HEADERS,
                    1,
                    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                ),
            ),
        ];
        for (what, bytes) in cases {
            let mut s = Script::ready();
            s.call(1, &[0, 0, 0, 0, 0]);
            assert!(s.server(&bytes).is_err(), "{what} is a protocol error");
        }
    }
}

#[cfg(test)]
mod fuzz {
    //! The frame reader under the stable fuzz loop (`crate::fuzzing`): a connection with
    //! calls in flight is fed server bytes (valid frames, mutated) in pieces, as reads
    //! deliver them. Nothing may panic; a protocol error ends the connection, as it should.
    use super::super::script::{frame_bytes, literal_block, Script};
    use super::*;

    fn seeds() -> Vec<Vec<u8>> {
        let settings = frame_bytes(
            frame::SETTINGS,
            0,
            0,
            &[0, 3, 0, 0, 0, 100, 0, 1, 0, 0, 0x10, 0],
        );
        let head = literal_block(&[(":status", "200"), ("content-type", "application/grpc")]);
        let trailers = literal_block(&[("grpc-status", "0")]);
        let message = [0u8, 0, 0, 0, 2, 8, 1];
        let mut whole = settings.clone();
        whole.extend(frame_bytes(frame::SETTINGS, frame::ACK, 0, &[]));
        whole.extend(frame_bytes(frame::PING, frame::ACK, 0, b"loadagnt"));
        whole.extend(frame_bytes(frame::HEADERS, frame::END_HEADERS, 1, &head));
        whole.extend(frame_bytes(frame::DATA, 0, 1, &message));
        whole.extend(frame_bytes(
            frame::HEADERS,
            frame::END_HEADERS | frame::END_STREAM,
            1,
            &trailers,
        ));
        let mut split = settings.clone();
        split.extend(frame_bytes(frame::HEADERS, 0, 3, &head[..5]));
        split.extend(frame_bytes(
            frame::CONTINUATION,
            frame::END_HEADERS,
            3,
            &head[5..],
        ));
        let mut padded = vec![3u8];
        padded.extend_from_slice(&message);
        padded.extend_from_slice(&[0, 0, 0]);
        split.extend(frame_bytes(frame::DATA, frame::PADDED, 3, &padded));
        split.extend(frame_bytes(frame::WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        split.extend(frame_bytes(
            frame::RST_STREAM,
            0,
            5,
            &frame::REFUSED_STREAM.to_be_bytes(),
        ));
        split.extend(frame_bytes(frame::GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]));
        let mut trailers_only = settings;
        trailers_only.extend(frame_bytes(
            frame::HEADERS,
            frame::END_HEADERS | frame::END_STREAM,
            5,
            &literal_block(&[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "5"),
                ("grpc-message", "x%20y"),
            ]),
        ));
        // gRPC-Web (the input's length picks the framing): a message and the trailer
        // frame in the body, as binary and as text.
        let web_head =
            literal_block(&[(":status", "200"), ("content-type", "application/grpc-web")]);
        let web_body = b"\x00\x00\x00\x00\x02\x08\x01\x80\x00\x00\x00\x10grpc-status: 0\r\n";
        let mut web = frame_bytes(frame::HEADERS, frame::END_HEADERS, 1, &web_head);
        web.extend(frame_bytes(frame::DATA, frame::END_STREAM, 1, web_body));
        let mut web_text = frame_bytes(frame::HEADERS, frame::END_HEADERS, 1, &web_head);
        web_text.extend(frame_bytes(
            frame::DATA,
            frame::END_STREAM,
            1,
            b"AAAAAAIIAQ==gAAAABBncnBjLXN0YXR1czogMA0K",
        ));
        while web.len() % 3 != 1 {
            web.extend(frame_bytes(frame::PING, frame::ACK, 0, b"loadagnt"));
        }
        while web_text.len() % 3 != 2 {
            web_text.extend(frame_bytes(frame::PING, frame::ACK, 0, b"loadagnt"));
        }
        vec![whole, split, trailers_only, web, web_text]
    }

    #[test]
    fn fuzz_frame_reader() {
        let check = |input: &[u8]| {
            // The input's length picks native gRPC, gRPC-Web or gRPC-Web text.
            let mut script = match input.len() % 3 {
                0 => Script::new(),
                web => Script::web(web == 2),
            };
            // Stream 3 is a call with headers of its own, its message kept (a probe's).
            script.call(0, &[0, 0, 0, 0, 1, 7]);
            let own = Arc::new(RequestHeaders::new(
                false,
                vec![(b":path".to_vec(), b"/a".to_vec())],
            ));
            script
                .conn
                .start_own(1, own, Bytes::from_static(&[0, 0, 0, 0, 1, 7]), None);
            script.call(2, &[0, 0, 0, 0, 1, 7]);
            let mut rest = input;
            while !rest.is_empty() {
                // The input picks how reads cut it.
                let n = (usize::from(rest[0]) * 7 % 97 + 1).min(rest.len());
                if script.server(&rest[..n]).is_err() {
                    break;
                }
                rest = &rest[n..];
                script.conn.write.clear();
            }
            for c in &script.done {
                let max = crate::grpc::frame::DEFAULT_MAX_RECEIVE_BYTES as usize;
                assert!(c.message.as_ref().is_none_or(|m| m.len() <= max));
                assert!(
                    c.message.is_none() || c.token == 1,
                    "only the own call keeps"
                );
            }
            script.conn.shrink_idle();
        };
        let target = crate::fuzzing::Target {
            name: "http2_frame_reader",
            seeds: seeds(),
            dictionary: vec![
                &[0, 0, 0, 0x1, 0x4, 0, 0, 0, 0x1],
                &[0xff, 0xff, 0xff],
                &[0x3f, 0xe1, 0x1f],
                &[0x20],
                &[0x7f, 0xff, 0xff, 0xff],
            ],
            check: &check,
        };
        let ran = crate::fuzzing::run(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), &target);
        assert!(ran.cases > 0);
    }

    #[test]
    fn fuzz_hpack_decoder() {
        let check = |input: &[u8]| {
            // The first byte sets the table limit, as SETTINGS_HEADER_TABLE_SIZE would.
            let limit = usize::from(input.first().copied().unwrap_or(0)) * 64;
            let mut decoder = Decoder::new(limit);
            for block in input.split(|&b| b == 0xfe) {
                if decoder.decode(block, |_, _| {}).is_err() {
                    break;
                }
            }
        };
        let target = crate::fuzzing::Target {
            name: "hpack_decoder",
            seeds: vec![
                // RFC 7541 C.4.1-C.4.3: requests with Huffman, and a size update.
                vec![
                    64, 0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b,
                    0xa0, 0xab, 0x90, 0xf4, 0xff,
                ],
                vec![
                    64, 0x3f, 0xe1, 0x1f, 0x82, 0x86, 0x84, 0xbe, 0x58, 0x08, 0x6e, 0x6f, 0x2d,
                    0x63, 0x61, 0x63, 0x68, 0x65,
                ],
                literal_block(&[(":status", "200"), ("grpc-status", "0")]),
            ],
            dictionary: vec![
                &[0x3f, 0xe1, 0x1f],
                &[0xff, 0xff, 0xff, 0x0f],
                &[0x80],
                &[0xfe],
            ],
            check: &check,
        };
        let ran = crate::fuzzing::run(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), &target);
        assert!(ran.cases > 0);
    }
}
