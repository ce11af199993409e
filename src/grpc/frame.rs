//! gRPC message framing: a 5-byte prefix (compressed flag, big-endian length) and the message.

use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};

use crate::vocabulary::Compression;

/// Frames one encoded message for the wire, compressing it when asked.
pub fn frame(message: &[u8], compression: Option<Compression>) -> std::io::Result<Bytes> {
    let (flag, body) = match compression {
        None => (0u8, message.to_vec()),
        Some(Compression::Gzip) => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(message)?;
            (1u8, enc.finish()?)
        }
    };
    let len = u32::try_from(body.len())
        .map_err(|_| std::io::Error::other("message larger than 4 GiB cannot be framed"))?;
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(flag);
    out.put_u32(len);
    out.put_slice(&body);
    Ok(out.freeze())
}

pub use crate::vocabulary::defaults::DEFAULT_MAX_RECEIVE_BYTES;

/// Reads the framing of a response body as it arrives, without keeping or decoding the
/// messages: it counts them and checks what a gRPC client checks (the compressed flag only
/// with a `grpc-encoding`, each message within the receive limit).
#[derive(Debug, Clone)]
pub struct MessageReader {
    prefix: [u8; 5],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
    /// Whole messages read so far.
    pub messages: u64,
    max: u32,
    encoded: bool,
    /// Keep the first message (a probe decodes it; the load never sets this).
    pub keep_first: bool,
    first: Option<Vec<u8>>,
}

/// A framing violation: the gRPC code a client reports it with, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramingError {
    /// The gRPC code.
    pub code: u8,
    /// Why.
    pub message: String,
}

impl MessageReader {
    /// `encoded`: the response named a `grpc-encoding` other than identity.
    pub fn new(max: u32, encoded: bool) -> Self {
        Self {
            prefix: [0; 5],
            prefix_len: 0,
            remaining: 0,
            messages: 0,
            max,
            encoded,
            keep_first: false,
            first: None,
        }
    }

    /// The largest message it accepts.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// The first message, when `keep_first` asked for it and it arrived whole.
    pub fn take_first(&mut self) -> Option<Vec<u8>> {
        // While the first is still arriving, `first` holds a part of it.
        (self.messages > 0).then(|| self.first.take()).flatten()
    }

    /// Whether the message being read is the first and is kept.
    fn keeping(&self) -> bool {
        self.keep_first && self.messages == 0
    }

    /// Feeds the next bytes of the body.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), FramingError> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len() as u64) as usize;
                if self.keeping() {
                    if let Some(first) = &mut self.first {
                        first.extend_from_slice(&data[..take]);
                    }
                }
                self.remaining -= take as u64;
                data = &data[take..];
                if self.remaining == 0 {
                    self.messages += 1;
                }
                continue;
            }
            let take = (5 - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&data[..take]);
            self.prefix_len += take;
            data = &data[take..];
            if self.prefix_len < 5 {
                break;
            }
            self.prefix_len = 0;
            let len = u32::from_be_bytes([
                self.prefix[1],
                self.prefix[2],
                self.prefix[3],
                self.prefix[4],
            ]);
            match self.prefix[0] {
                0 => {}
                // A kept message is decoded as it is: the caller asked for no compression.
                1 if self.encoded && self.keeping() => {
                    return Err(FramingError {
                        code: super::status::INTERNAL,
                        message: "a compressed message, although this call accepts none (no grpc-accept-encoding sent)".into(),
                    })
                }
                1 if self.encoded => {}
                1 => {
                    return Err(FramingError {
                        code: super::status::INTERNAL,
                        message: "compressed message but the response has no grpc-encoding".into(),
                    })
                }
                flag => {
                    return Err(FramingError {
                        code: super::status::INTERNAL,
                        message: format!("message flag {flag} is neither 0 nor 1 (compressed)"),
                    })
                }
            }
            if len > self.max {
                return Err(FramingError {
                    code: super::status::RESOURCE_EXHAUSTED,
                    message: format!("received message larger than max ({len} vs. {})", self.max),
                });
            }
            if self.keeping() {
                // Grown as the bytes come (at most `max`), not reserved for what the prefix
                // claims.
                self.first = Some(Vec::new());
            }
            if len == 0 {
                self.messages += 1;
            } else {
                self.remaining = u64::from(len);
            }
        }
        Ok(())
    }

    /// Whether the body ended inside a message (or its prefix).
    pub fn inside_message(&self) -> bool {
        self.remaining > 0 || self.prefix_len > 0
    }

    /// The check at the end of a unary response whose status is OK: exactly one message,
    /// whole (gRPC clients fail a unary call otherwise).
    pub fn unary_end(&self) -> Result<(), FramingError> {
        let fail = |code, message: String| Err(FramingError { code, message });
        if self.inside_message() {
            return fail(
                super::status::INTERNAL,
                "response ended inside a message".into(),
            );
        }
        // No message: UNIMPLEMENTED, as grpc-js reports it (grpcio lets it pass as OK). Two
        // or more: INTERNAL, a cardinality violation (grpcio and grpc-js wait for the
        // deadline instead).
        match self.messages {
            1 => Ok(()),
            0 => fail(
                super::status::UNIMPLEMENTED,
                "no message received for a unary call (status OK)".into(),
            ),
            n => fail(
                super::status::INTERNAL,
                format!("a unary response with {n} messages (exactly one expected)"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_messages_split_anywhere() {
        let mut body = Vec::new();
        for len in [0usize, 1, 300, 70_000] {
            body.extend_from_slice(&frame(&vec![7; len], None).unwrap());
        }
        for chunk in [1, 2, 5, 7, 4096, body.len()] {
            let mut r = MessageReader::new(DEFAULT_MAX_RECEIVE_BYTES, false);
            for part in body.chunks(chunk) {
                r.feed(part).unwrap();
            }
            assert_eq!(r.messages, 4, "chunks of {chunk}");
            assert!(!r.inside_message());
        }
    }

    #[test]
    fn flags_limits_and_cardinality() {
        let gz = frame(b"hello", Some(Compression::Gzip)).unwrap();
        let e = MessageReader::new(1 << 20, false).feed(&gz).unwrap_err();
        assert_eq!(e.code, super::super::status::INTERNAL);
        assert!(MessageReader::new(1 << 20, true).feed(&gz).is_ok());
        let mut bad_flag = frame(b"x", None).unwrap().to_vec();
        bad_flag[0] = 2;
        assert!(MessageReader::new(1 << 20, true).feed(&bad_flag).is_err());
        let big = frame(&[0; 11], None).unwrap();
        let e = MessageReader::new(10, false).feed(&big).unwrap_err();
        assert_eq!(e.code, super::super::status::RESOURCE_EXHAUSTED);
        let one = frame(b"x", None).unwrap();
        let mut r = MessageReader::new(10, false);
        r.feed(&one).unwrap();
        assert!(r.unary_end().is_ok());
        r.feed(&one).unwrap();
        assert!(r.unary_end().unwrap_err().message.contains("2 messages"));
        let mut r = MessageReader::new(10, false);
        assert!(r.unary_end().is_err(), "no message");
        r.feed(&one[..3]).unwrap();
        assert!(r.unary_end().unwrap_err().message.contains("inside"));
    }

    #[test]
    fn keeps_the_first_message_whole_wherever_it_is_split() {
        let mut body = frame(b"first message", None).unwrap().to_vec();
        body.extend_from_slice(&frame(b"second", None).unwrap());
        for chunk in [1, 3, 5, 6, body.len()] {
            let mut r = MessageReader::new(1 << 20, false);
            r.keep_first = true;
            for part in body.chunks(chunk) {
                r.feed(part).unwrap();
            }
            assert_eq!(r.take_first().as_deref(), Some(&b"first message"[..]));
        }
        // An empty message is kept as empty; a half one is not kept.
        let mut r = MessageReader::new(10, false);
        r.keep_first = true;
        r.feed(&frame(b"", None).unwrap()).unwrap();
        assert_eq!(r.take_first(), Some(Vec::new()));
        let mut r = MessageReader::new(10, false);
        r.keep_first = true;
        r.feed(&frame(b"abc", None).unwrap()[..6]).unwrap();
        assert!(r.inside_message());
        assert_eq!(r.take_first(), None);
        // Compressed, although the caller asked for none: INTERNAL.
        let gz = frame(b"hello", Some(Compression::Gzip)).unwrap();
        let mut r = MessageReader::new(1 << 20, true);
        r.keep_first = true;
        assert_eq!(
            r.feed(&gz).unwrap_err().code,
            super::super::status::INTERNAL
        );
    }

    #[test]
    fn prefix_carries_flag_and_length() {
        let f = frame(b"abc", None).unwrap();
        assert_eq!(&f[..], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
        let z = frame(&[7u8; 100], Some(Compression::Gzip)).unwrap();
        assert_eq!(z[0], 1);
        let len = u32::from_be_bytes([z[1], z[2], z[3], z[4]]) as usize;
        assert_eq!(len, z.len() - 5);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&z[5..]), &mut out).unwrap();
        assert_eq!(out, vec![7u8; 100]);
    }
}
