//! The body of a gRPC-Web response: message frames, then the trailer frame (flag 0x80) that
//! holds the status as HTTP/1 header lines; base64 throughout for `grpc-web-text`.

use base64::Engine;
use http::HeaderMap;

use crate::grpc::status;
use crate::grpc::unary::Outcome;

/// The largest trailer frame accepted: trailers are a few header lines (gRPC's default
/// metadata limit is 8 KiB).
pub(super) const MAX_TRAILERS: u32 = 64 * 1024;

/// The trailer frame's flag bit.
pub(super) const TRAILER_FLAG: u8 = 0x80;

/// Reads a gRPC-Web response body as it arrives: counts messages without keeping them,
/// keeps the trailer frame (bounded), decodes base64 (`grpc-web-text`) a group at a time.
#[derive(Debug)]
pub struct WebBodyReader {
    text: bool,
    /// Base64 characters not decoded yet (fewer than four after each feed).
    pending: Vec<u8>,
    header: [u8; 5],
    header_len: usize,
    /// Bytes left of the frame being read (after its header).
    remaining: u32,
    in_frame: bool,
    trailer_frame: bool,
    trailer: Vec<u8>,
    max: u32,
    /// Messages read so far.
    pub messages: u64,
    status: Option<Outcome>,
    /// Keep the first message (a probe decodes it), at most `max` bytes.
    pub keep_first: bool,
    first: Option<Vec<u8>>,
    /// The message being kept, while it arrives.
    keeping: Vec<u8>,
}

impl WebBodyReader {
    /// A reader of a binary (or, `text`, base64) body taking messages of at most `max` bytes.
    pub fn new(text: bool, max: u32) -> Self {
        Self {
            text,
            pending: Vec::new(),
            header: [0; 5],
            header_len: 0,
            remaining: 0,
            in_frame: false,
            trailer_frame: false,
            trailer: Vec::new(),
            max,
            messages: 0,
            status: None,
            keep_first: false,
            first: None,
            keeping: Vec::new(),
        }
    }

    /// Reads one chunk of the body; returns how many messages it completed.
    pub fn feed(&mut self, data: &[u8]) -> Result<u64, Outcome> {
        if !self.text {
            return self.feed_binary(data);
        }
        self.pending
            .extend(data.iter().filter(|c| !c.is_ascii_whitespace()));
        let whole = self.pending.len() / 4 * 4;
        let mut decoded = Vec::with_capacity(whole / 4 * 3);
        let engine = &base64::engine::general_purpose::STANDARD;
        // Each frame may be encoded apart, padding and all: decode up to each padded group.
        let mut start = 0;
        for end in (4..=whole).step_by(4) {
            if self.pending[end - 4..end].contains(&b'=') || end == whole {
                engine
                    .decode_vec(&self.pending[start..end], &mut decoded)
                    .map_err(|e| {
                        Outcome::failed(
                            status::INTERNAL,
                            format!("the grpc-web-text body is not base64: {e}"),
                        )
                    })?;
                start = end;
            }
        }
        self.pending.drain(..whole);
        self.feed_binary(&decoded)
    }

    fn feed_binary(&mut self, mut data: &[u8]) -> Result<u64, Outcome> {
        let mut completed = 0;
        while !data.is_empty() {
            if self.status.is_some() {
                return Err(Outcome::failed(
                    status::INTERNAL,
                    "data after the trailer frame",
                ));
            }
            if !self.in_frame {
                let take = (5 - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
                self.header_len += take;
                data = &data[take..];
                if self.header_len < 5 {
                    break;
                }
                let flags = self.header[0];
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                self.trailer_frame = flags & TRAILER_FLAG != 0;
                if self.trailer_frame && len > MAX_TRAILERS {
                    return Err(Outcome::failed(
                        status::INTERNAL,
                        format!("a trailer frame of {len} bytes (at most {MAX_TRAILERS})"),
                    ));
                }
                if !self.trailer_frame && len > self.max {
                    return Err(Outcome::failed(
                        status::RESOURCE_EXHAUSTED,
                        format!(
                            "a response message of {len} bytes, larger than max_receive_message_size ({})",
                            self.max
                        ),
                    ));
                }
                self.in_frame = true;
                self.remaining = len;
            } else {
                let take = (self.remaining as usize).min(data.len());
                if self.trailer_frame && self.trailer.is_empty() && take == self.remaining as usize
                {
                    // The whole frame in this piece (the usual case): read where it lies,
                    // not copied.
                    self.status = Some(parse_trailers(&data[..take]));
                } else if self.trailer_frame {
                    self.trailer.extend_from_slice(&data[..take]);
                } else if self.keep_first && self.first.is_none() {
                    self.keeping.extend_from_slice(&data[..take]);
                }
                self.remaining -= take as u32;
                data = &data[take..];
            }
            if self.in_frame && self.remaining == 0 {
                self.in_frame = false;
                self.header_len = 0;
                if self.trailer_frame {
                    if self.status.is_none() {
                        self.status = Some(parse_trailers(&self.trailer));
                    }
                } else {
                    if self.keep_first && self.first.is_none() {
                        self.first = Some(std::mem::take(&mut self.keeping));
                    }
                    self.messages += 1;
                    completed += 1;
                }
            }
        }
        Ok(completed)
    }

    /// The first message, when `keep_first` asked for it and it arrived whole.
    pub fn take_first(&mut self) -> Option<Vec<u8>> {
        self.first.take()
    }

    /// The call's end: the trailer frame's status (or the HTTP trailers' when a server
    /// sends those instead). A unary call must have had exactly one message.
    pub fn finish(&self, http_trailers: Option<&HeaderMap>, unary: bool) -> Outcome {
        let header = |name| {
            http_trailers
                .and_then(|t| t.get(name))
                .map(|v| v.as_bytes())
        };
        self.finish_with(
            header("grpc-status").map(|code| (code, header("grpc-message"))),
            unary,
        )
    }

    /// `finish`, given the HTTP trailers' `grpc-status` and `grpc-message` when they came.
    pub fn finish_with(&self, trailers: Option<(&[u8], Option<&[u8]>)>, unary: bool) -> Outcome {
        if self.in_frame || self.header_len > 0 || !self.pending.is_empty() {
            return Outcome::failed(status::INTERNAL, "the response ended inside a frame");
        }
        let outcome = match (&self.status, trailers) {
            (Some(o), _) => o.clone(),
            (None, Some((code, message))) => {
                Outcome::from_status(status::parse_code(code), message)
            }
            (None, None) => {
                return Outcome::failed(
                    status::INTERNAL,
                    "the response ended without a trailer frame (no grpc-status)",
                )
            }
        };
        if unary && outcome.code == status::OK && self.messages != 1 {
            return Outcome::failed(
                status::INTERNAL,
                format!(
                    "a unary call answered OK with {} response messages, not one",
                    self.messages
                ),
            );
        }
        outcome
    }
}

/// The status in a trailer frame: HTTP/1 header lines (`grpc-status: 5\r\n`).
fn parse_trailers(block: &[u8]) -> Outcome {
    let mut code = None;
    let mut message = None;
    for line in block.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (key, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if key.trim_ascii().eq_ignore_ascii_case(b"grpc-status") {
            code = Some(value);
        } else if key.trim_ascii().eq_ignore_ascii_case(b"grpc-message") {
            message = Some(value);
        }
    }
    match code {
        Some(c) => Outcome::from_status(status::parse_code(c), message),
        None => Outcome::failed(status::INTERNAL, "the trailer frame has no grpc-status"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn frame(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![flags];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn body(messages: &[&[u8]], trailers: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for m in messages {
            b.extend(frame(0, m));
        }
        b.extend(frame(TRAILER_FLAG, trailers));
        b
    }

    #[test]
    fn reads_messages_and_the_trailer_frame_in_any_chunking() {
        let b = body(&[b"abc", b"", b"defgh"], b"grpc-status: 0\r\n");
        for chunk in 1..b.len() {
            let mut r = WebBodyReader::new(false, 1024);
            let mut got = 0;
            for c in b.chunks(chunk) {
                got += r.feed(c).unwrap();
            }
            assert_eq!(got, 3);
            assert_eq!(r.finish(None, false).code, status::OK);
            assert_eq!(
                r.finish(None, true).code,
                status::INTERNAL,
                "unary: one message"
            );
        }
    }

    #[test]
    fn text_mode_decodes_frames_encoded_apart() {
        let e = &base64::engine::general_purpose::STANDARD;
        // sonora encodes each frame on its own: padding in the middle of the body.
        let mut text = e.encode(frame(0, b"hello"));
        text.push_str(&e.encode(frame(
            TRAILER_FLAG,
            b"grpc-status: 5\r\ngrpc-message: not%20here\r\n",
        )));
        assert!(text[..text.len() - 4].contains('='), "{text}");
        for chunk in 1..text.len() {
            let mut r = WebBodyReader::new(true, 1024);
            let mut got = 0;
            for c in text.as_bytes().chunks(chunk) {
                got += r.feed(c).unwrap();
            }
            assert_eq!(got, 1);
            let o = r.finish(None, true);
            assert_eq!(o.code, 5);
            assert_eq!(o.message.as_deref(), Some("not here"));
        }
    }

    #[test]
    fn bounds_and_broken_bodies() {
        let mut r = WebBodyReader::new(false, 4);
        let e = r.feed(&frame(0, b"12345")).unwrap_err();
        assert_eq!(e.code, status::RESOURCE_EXHAUSTED);
        let mut r = WebBodyReader::new(false, 4);
        let mut big = vec![TRAILER_FLAG];
        big.extend_from_slice(&(MAX_TRAILERS + 1).to_be_bytes());
        assert_eq!(r.feed(&big).unwrap_err().code, status::INTERNAL);
        let mut r = WebBodyReader::new(false, 64);
        r.feed(&frame(0, b"ab")[..4]).unwrap();
        assert_eq!(
            r.finish(None, false).code,
            status::INTERNAL,
            "ended inside a frame"
        );
        let r = WebBodyReader::new(false, 64);
        assert_eq!(r.finish(None, false).code, status::INTERNAL, "no trailers");
        let mut http = HeaderMap::new();
        http.insert("grpc-status", HeaderValue::from_static("7"));
        assert_eq!(
            r.finish(Some(&http), false).code,
            7,
            "HTTP trailers instead"
        );
        let mut r = WebBodyReader::new(false, 64);
        r.feed(&body(&[], b"grpc-status: 0\r\n")).unwrap();
        assert_eq!(r.feed(b"x").unwrap_err().code, status::INTERNAL);
        let mut r = WebBodyReader::new(true, 64);
        assert_eq!(r.feed(b"!!!!").unwrap_err().code, status::INTERNAL);
        let mut r = WebBodyReader::new(false, 64);
        r.feed(&body(&[], b"nothing: here\r\n")).unwrap();
        assert_eq!(r.finish(None, false).code, status::INTERNAL);
    }

    proptest::proptest! {
        /// No body, binary or text, makes the reader panic, and what it holds stays bounded.
        #[test]
        fn no_body_panics_the_reader(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..8), text: bool) {
            let mut r = WebBodyReader::new(text, 16);
            for c in &chunks {
                if r.feed(c).is_err() {
                    break;
                }
                proptest::prop_assert!(r.trailer.len() <= MAX_TRAILERS as usize);
                proptest::prop_assert!(r.pending.len() < 4);
            }
            let _ = r.finish(None, true);
        }
    }
}
