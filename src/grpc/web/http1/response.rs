//! An HTTP/1.1 response as it arrives, without I/O: the head (parsed by `httparse`, bounded,
//! interim 1xx answers skipped) and the body's framing (a length, chunks, or until the
//! connection closes), so that every split of the bytes can be tested and fuzzed.

use crate::grpc::status;
use crate::grpc::unary::Outcome;

/// The largest response head taken (hyper's client takes about 400 KiB; a gRPC-Web answer's
/// head is a few hundred bytes, and gRPC's default metadata limit is 8 KiB).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The most header lines in a head or a chunked body's trailer section (hyper's: 100).
pub(crate) const MAX_HEADERS: usize = 100;
/// The longest chunk-size line (its extensions included) and trailer section taken.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILER_SECTION: usize = 64 * 1024;

/// Why the bytes are not an HTTP/1.1 response this client takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// The head is larger than [`MAX_HEAD`] or has more than [`MAX_HEADERS`] lines.
    TooLarge,
    /// Not HTTP/1.x at all (an HTTP/2 server's frames, say).
    NotHttp1(String),
    /// HTTP/1.x, but its framing cannot be trusted (conflicting lengths, a bad chunk).
    Framing(String),
}

impl Malformed {
    /// What the call reports.
    pub(crate) fn outcome(&self) -> Outcome {
        let mut o = match self {
            Self::TooLarge => Outcome::failed(
                status::UNAVAILABLE,
                format!("the server's response head is too large: more than {} KiB or {MAX_HEADERS} header lines, more than the client takes", MAX_HEAD / 1024),
            ),
            Self::NotHttp1(why) => Outcome::failed(
                status::UNAVAILABLE,
                status::not_http1(&format!("the answer is not an HTTP/1.1 response: {why}")),
            ),
            Self::Framing(why) => Outcome::failed(
                status::UNAVAILABLE,
                format!("connection failed: the server's HTTP/1.1 response is malformed: {why}"),
            ),
        };
        o.connection_failed = true;
        o
    }
}

/// What a response head says, once read.
#[derive(Debug)]
pub(crate) struct Head {
    /// How its body ends.
    pub(crate) framing: Framing,
    /// Whether the connection can carry another request after this response.
    pub(crate) keep_alive: bool,
    /// What the judge made of it (`Some`: the call ends here).
    pub(crate) verdict: Option<Outcome>,
}

/// What the bytes read so far hold.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Not a whole head yet.
    Incomplete,
    /// An interim (1xx) answer of this many bytes, to skip: the real one follows.
    Interim(usize),
    /// The head, of this many bytes.
    Final(usize, Head),
}

/// Parses a response head at the start of `buf`; `judge` is given the status and the
/// header lines (names as sent; compare without case) and says whether they end the call.
pub(crate) fn parse_head(
    buf: &[u8],
    judge: impl FnOnce(u16, &[httparse::Header<'_>]) -> Option<Outcome>,
) -> Result<Parsed, Malformed> {
    // Left uninitialised: httparse writes only the lines it finds (no 3 KB cleared a call).
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut headers,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(Malformed::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Incomplete),
        Err(httparse::Error::TooManyHeaders) => return Err(Malformed::TooLarge),
        Err(e) => return Err(Malformed::NotHttp1(e.to_string())),
    };
    if len > MAX_HEAD {
        return Err(Malformed::TooLarge);
    }
    let status = response.code.unwrap_or(0);
    if status == 101 {
        return Err(Malformed::Framing(
            "101 Switching Protocols to a POST that asked for no upgrade".into(),
        ));
    }
    if (100..200).contains(&status) {
        return Ok(Parsed::Interim(len));
    }
    let fields = &*response.headers;
    let http10 = response.version == Some(0);
    let connection = |token: &str| {
        values(fields, "connection")
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    };
    let mut keep_alive = if http10 {
        connection("keep-alive")
    } else {
        !connection("close")
    };
    let framing = framing_of(status, fields, &mut keep_alive)?;
    let verdict = judge(status, fields);
    Ok(Parsed::Final(
        len,
        Head {
            framing,
            keep_alive,
            verdict,
        },
    ))
}

/// The value of the first header named `name`.
pub(crate) fn header<'a>(fields: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    values(fields, name).next()
}

fn values<'a, 'b>(
    fields: &'b [httparse::Header<'a>],
    name: &'b str,
) -> impl Iterator<Item = &'a [u8]> + 'b {
    fields
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// How the body of a response to a POST ends (RFC 9112 §6.3).
fn framing_of(
    status: u16,
    fields: &[httparse::Header<'_>],
    keep_alive: &mut bool,
) -> Result<Framing, Malformed> {
    if status == 204 || status == 304 {
        return Ok(Framing::Length(0));
    }
    let lengths = values(fields, "content-length").collect::<Vec<_>>();
    if fields
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        // A length beside the encoding may be a smuggling attempt: the encoding wins and
        // the connection carries nothing more.
        if !lengths.is_empty() {
            *keep_alive = false;
        }
        let last = values(fields, "transfer-encoding")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty())
            .last();
        if last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
            return Ok(Framing::Chunked(Chunked::default()));
        }
        *keep_alive = false;
        return Ok(Framing::UntilClose);
    }
    let mut length = None;
    for value in lengths
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
    {
        let parsed = parse_decimal(value).ok_or_else(|| {
            Malformed::Framing(format!(
                "content-length {:?} is not a number",
                String::from_utf8_lossy(value)
            ))
        })?;
        if length.is_some_and(|l| l != parsed) {
            return Err(Malformed::Framing(
                "content-length given twice, differently".into(),
            ));
        }
        length = Some(parsed);
    }
    Ok(match length {
        Some(n) => Framing::Length(n),
        None => {
            *keep_alive = false;
            Framing::UntilClose
        }
    })
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// How the body ends, and where its reading is.
#[derive(Debug)]
pub(crate) enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked transfer coding.
    Chunked(Chunked),
    /// When the server closes the connection.
    UntilClose,
}

/// Where the reading of a chunked body is.
#[derive(Debug, Default)]
pub(crate) struct Chunked {
    state: ChunkState,
    /// The chunk-size line, or the trailer section, while it arrives (bounded).
    line: Vec<u8>,
    /// Bytes left of the chunk's data.
    left: u64,
    /// The trailer section's bytes (when the body had one), after the last chunk.
    trailer: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    SizeLine,
    Data,
    /// The CRLF after a chunk's data; the number is how much of it was read.
    DataEnd(u8),
    Trailer,
    Done,
}

/// What one `decode` did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// Bytes of the input used.
    pub(crate) used: usize,
    /// Whether the body is whole.
    pub(crate) done: bool,
}

impl Framing {
    /// Reads body bytes from `input`, handing the body's own bytes to `sink`; the caller
    /// keeps what was not used for the next response (none may follow on a closed one).
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), Outcome>,
    ) -> Result<Decoded, BodyError> {
        match self {
            Self::Length(left) => {
                let take = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                if take > 0 {
                    sink(&input[..take]).map_err(BodyError::Sink)?;
                }
                *left -= take as u64;
                Ok(Decoded {
                    used: take,
                    done: *left == 0,
                })
            }
            Self::UntilClose => {
                if !input.is_empty() {
                    sink(input).map_err(BodyError::Sink)?;
                }
                Ok(Decoded {
                    used: input.len(),
                    done: false,
                })
            }
            Self::Chunked(c) => c.decode(input, sink),
        }
    }

    /// The connection closed: whether that ends the body (it does for `UntilClose` only).
    pub(crate) fn ends_at_close(&self) -> bool {
        matches!(self, Self::UntilClose)
    }

    /// The trailer section's `grpc-status` and `grpc-message`, when a chunked body had them
    /// (a server may send gRPC's status as HTTP trailers instead of a trailer frame).
    pub(crate) fn with_trailers<T>(
        &self,
        f: impl FnOnce(Option<(&[u8], Option<&[u8]>)>) -> T,
    ) -> T {
        let Self::Chunked(c) = self else {
            return f(None);
        };
        if c.trailer.is_empty() {
            return f(None);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(&c.trailer, &mut headers) {
            Ok(httparse::Status::Complete((_, fields))) => {
                let status = header(fields, "grpc-status");
                f(status.map(|s| (s, header(fields, "grpc-message"))))
            }
            _ => f(None),
        }
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The framing is broken.
    Malformed(Malformed),
    /// The body's reader refused what it was given (a bad gRPC-Web frame).
    Sink(Outcome),
}

fn framing_error(why: impl Into<String>) -> BodyError {
    BodyError::Malformed(Malformed::Framing(why.into()))
}

impl Chunked {
    fn decode(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), Outcome>,
    ) -> Result<Decoded, BodyError> {
        let mut at = 0;
        while at < input.len() && self.state != ChunkState::Done {
            let rest = &input[at..];
            match self.state {
                ChunkState::SizeLine => {
                    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                        self.keep_line(rest, MAX_CHUNK_LINE, "chunk-size line")?;
                        at = input.len();
                        continue;
                    };
                    at += end + 1;
                    let size = if self.line.is_empty() && end < MAX_CHUNK_LINE {
                        // The whole line in this piece (the usual case): read where it lies.
                        chunk_size(&rest[..=end])?
                    } else {
                        self.keep_line(&rest[..=end], MAX_CHUNK_LINE, "chunk-size line")?;
                        let size = chunk_size(&self.line)?;
                        self.line.clear();
                        size
                    };
                    if size == 0 {
                        self.state = ChunkState::Trailer;
                    } else {
                        self.left = size;
                        self.state = ChunkState::Data;
                    }
                }
                ChunkState::Data => {
                    let take = usize::try_from(self.left)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    sink(&rest[..take]).map_err(BodyError::Sink)?;
                    self.left -= take as u64;
                    at += take;
                    if self.left == 0 {
                        self.state = ChunkState::DataEnd(0);
                    }
                }
                ChunkState::DataEnd(read) => {
                    let want = if read == 0 { b'\r' } else { b'\n' };
                    if rest[0] != want {
                        return Err(framing_error("a chunk's data is not followed by CRLF"));
                    }
                    at += 1;
                    self.state = if read == 0 {
                        ChunkState::DataEnd(1)
                    } else {
                        ChunkState::SizeLine
                    };
                }
                ChunkState::Trailer if self.line.is_empty() && rest.starts_with(b"\r\n") => {
                    // No trailer section (the usual case).
                    at += 2;
                    self.state = ChunkState::Done;
                }
                ChunkState::Trailer => {
                    // The trailer section ends with an empty line: at once ("\r\n"), or
                    // after its fields ("\r\n\r\n").
                    let mut end = None;
                    for (i, &b) in rest.iter().enumerate() {
                        self.keep_line(&[b], MAX_TRAILER_SECTION, "trailer section")?;
                        if b == b'\n' && (self.line == b"\r\n" || self.line.ends_with(b"\r\n\r\n"))
                        {
                            end = Some(i);
                            break;
                        }
                    }
                    match end {
                        Some(i) => {
                            at += i + 1;
                            if self.line.len() > 2 {
                                self.trailer = std::mem::take(&mut self.line);
                            }
                            self.line = Vec::new();
                            self.state = ChunkState::Done;
                        }
                        None => at = input.len(),
                    }
                }
                ChunkState::Done => {}
            }
        }
        Ok(Decoded {
            used: at,
            done: self.state == ChunkState::Done,
        })
    }

    /// Keeps part of a line that is still arriving, at most `max` bytes of it.
    fn keep_line(&mut self, part: &[u8], max: usize, what: &str) -> Result<(), BodyError> {
        if self.line.len() + part.len() > max {
            return Err(framing_error(format!(
                "the {what} is longer than {max} bytes"
            )));
        }
        self.line.extend_from_slice(part);
        Ok(())
    }
}

/// A chunk-size line's size (hex digits, then extensions, then CRLF).
fn chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let Some(line) = line.strip_suffix(b"\r\n") else {
        return Err(framing_error("a chunk-size line does not end with CRLF"));
    };
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let after = &line[digits..];
    let extension = after.trim_ascii_start();
    if digits == 0 || digits > 15 || !(extension.is_empty() || extension.starts_with(b";")) {
        return Err(framing_error(format!(
            "bad chunk-size line {:?}",
            String::from_utf8_lossy(&line[..line.len().min(40)])
        )));
    }
    let hex = std::str::from_utf8(&line[..digits]).map_err(|_| framing_error("chunk size"))?;
    u64::from_str_radix(hex, 16).map_err(|_| framing_error("chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Parsed, Malformed> {
        parse_head(text.as_bytes(), |_, _| None)
    }

    fn final_head(text: &str) -> Head {
        match head(text) {
            Ok(Parsed::Final(len, h)) => {
                assert_eq!(len, text.len());
                h
            }
            other => panic!("{other:?}"),
        }
    }

    /// The whole body of `framing` read from `wire` cut into pieces of `cut` bytes.
    fn body(mut framing: Framing, wire: &[u8], cut: usize) -> (Vec<u8>, usize, bool) {
        let mut got = Vec::new();
        let mut used = 0;
        let mut done = false;
        for piece in wire.chunks(cut) {
            let mut at = 0;
            while at < piece.len() && !done {
                let d = framing
                    .decode(&piece[at..], &mut |b| {
                        got.extend_from_slice(b);
                        Ok(())
                    })
                    .unwrap();
                at += d.used;
                used += d.used;
                done = d.done;
                if d.used == 0 {
                    break;
                }
            }
        }
        (got, used, done)
    }

    #[test]
    fn heads_say_how_their_bodies_end_and_whether_the_connection_goes_on() {
        let h = final_head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n");
        assert!(matches!(h.framing, Framing::Length(12)) && h.keep_alive);
        let h = final_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(matches!(h.framing, Framing::Chunked(_)) && h.keep_alive);
        let h = final_head("HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = final_head("HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\n");
        assert!(!h.keep_alive);
        let h =
            final_head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\ncontent-length: 3\r\n\r\n");
        assert!(h.keep_alive);
        // No length: the body ends at the close, and nothing can follow it.
        let h = final_head("HTTP/1.1 200 OK\r\n\r\n");
        assert!(matches!(h.framing, Framing::UntilClose) && !h.keep_alive);
        // Both: the coding wins, and the connection is not trusted again.
        let h = final_head(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
        );
        assert!(matches!(h.framing, Framing::Chunked(_)) && !h.keep_alive);
        let h = final_head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert!(matches!(h.framing, Framing::UntilClose) && !h.keep_alive);
        let h = final_head("HTTP/1.1 204 No Content\r\n\r\n");
        assert!(matches!(h.framing, Framing::Length(0)) && h.keep_alive);
        assert!(matches!(
            final_head("HTTP/1.1 200 OK\r\ncontent-length: 7, 7\r\n\r\n").framing,
            Framing::Length(7)
        ));
    }

    #[test]
    fn bad_heads_are_named_not_guessed() {
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\ncontent-le"),
            Ok(Parsed::Incomplete)
        ));
        assert!(matches!(
            head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
            Ok(Parsed::Interim(25))
        ));
        assert!(matches!(
            head("HTTP/1.1 101 Switching\r\n\r\n"),
            Err(Malformed::Framing(_))
        ));
        // An HTTP/2 server's SETTINGS frame.
        assert!(matches!(
            parse_head(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00", |_, _| None),
            Err(Malformed::NotHttp1(_))
        ));
        for conflict in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        ] {
            assert!(
                matches!(head(conflict), Err(Malformed::Framing(_))),
                "{conflict}"
            );
        }
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "a: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(head(&many).unwrap_err(), Malformed::TooLarge);
        let endless = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
        assert_eq!(head(&endless).unwrap_err(), Malformed::TooLarge);
        let outcome = Malformed::NotHttp1("x".into()).outcome();
        assert!(outcome.connection_failed);
        assert!(outcome.message.unwrap().contains("http_version = \"2\""));
    }

    #[test]
    fn the_judge_sees_the_status_and_fields() {
        let parsed = parse_head(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/grpc-web\r\ngrpc-status: 7\r\n\r\n",
            |status, fields| {
                assert_eq!(status, 200);
                assert_eq!(
                    header(fields, "content-type"),
                    Some(&b"application/grpc-web"[..])
                );
                header(fields, "grpc-status")
                    .map(|c| Outcome::from_status(status::parse_code(c), None))
            },
        );
        let Ok(Parsed::Final(_, h)) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(h.verdict.map(|o| o.code), Some(7));
    }

    #[test]
    fn chunked_bodies_read_the_same_however_the_bytes_are_cut() {
        let wire = b"5\r\nhello\r\n1;name=value\r\n \r\n10\r\n0123456789abcdef\r\n0\r\ngrpc-status: 3\r\ngrpc-message: no\r\n\r\nNEXT";
        for cut in 1..wire.len() {
            let (got, used, done) = body(Framing::Chunked(Chunked::default()), wire, cut);
            assert_eq!(got, b"hello 0123456789abcdef", "cut {cut}");
            assert_eq!(
                used,
                wire.len() - 4,
                "the next response's bytes are left, cut {cut}"
            );
            assert!(done);
        }
        let mut framing = Framing::Chunked(Chunked::default());
        let d = framing.decode(&wire[..], &mut |_| Ok(())).unwrap();
        assert!(d.done);
        framing.with_trailers(|t| {
            let (code, message) = t.unwrap();
            assert_eq!((code, message), (&b"3"[..], Some(&b"no"[..])));
        });
        // No trailer section.
        let (got, _, done) = body(
            Framing::Chunked(Chunked::default()),
            b"2\r\nhi\r\n0\r\n\r\n",
            1,
        );
        assert!(done && got == b"hi");
    }

    #[test]
    fn broken_chunks_are_refused_and_long_lines_bounded() {
        for wire in [
            &b"zz\r\nhi\r\n"[..],
            b"\r\n",
            b"2\r\nhiX\r\n",
            b"1234567890abcdef0\r\n",
            b"2 x\r\nhi\r\n",
            b"2\n",
        ] {
            let mut framing = Framing::Chunked(Chunked::default());
            let r = framing.decode(wire, &mut |_| Ok(()));
            assert!(
                matches!(r, Err(BodyError::Malformed(Malformed::Framing(_)))),
                "{wire:?}: {r:?}"
            );
        }
        let mut framing = Framing::Chunked(Chunked::default());
        let endless = vec![b'1'; MAX_CHUNK_LINE + 1];
        assert!(framing.decode(&endless, &mut |_| Ok(())).is_err());
        let mut framing = Framing::Chunked(Chunked::default());
        let mut trailer = b"0\r\n".to_vec();
        trailer.extend(std::iter::repeat_n(b'a', MAX_TRAILER_SECTION + 1));
        assert!(framing.decode(&trailer, &mut |_| Ok(())).is_err());
    }

    #[test]
    fn lengths_stop_at_their_end_and_close_framed_bodies_take_all() {
        let (got, used, done) = body(Framing::Length(3), b"abcdef", 2);
        assert_eq!((got.as_slice(), used, done), (&b"abc"[..], 3, true));
        let (got, _, done) = body(Framing::UntilClose, b"abcdef", 4);
        assert_eq!((got.as_slice(), done), (&b"abcdef"[..], false));
        assert!(Framing::UntilClose.ends_at_close());
        assert!(!Framing::Length(1).ends_at_close());
    }
}

#[cfg(test)]
mod fuzz {
    //! The response reader under the stable fuzz loop (`crate::fuzzing`): heads, interim
    //! answers and bodies in every framing, cut into reads anywhere, judged as a gRPC-Web
    //! call's and read by the gRPC-Web body reader, as a call on the connection reads them.

    use super::*;
    use crate::grpc::web::WebBodyReader;

    /// Reads `input` as the connection does, reads cut by the input's own bytes.
    fn read_as_a_call(input: &[u8]) {
        let mut reader = WebBodyReader::new(input.len() % 2 == 1, 1024);
        let mut body_bytes = 0usize;
        let mut sink = |data: &[u8]| {
            body_bytes += data.len();
            reader.feed(data).map(drop)
        };
        let judge = |status: u16, fields: &[httparse::Header<'_>]| {
            crate::grpc::web::judge_web_head(
                status,
                header(fields, "content-type"),
                header(fields, "grpc-status"),
                header(fields, "grpc-message"),
                "application/grpc-web+proto",
            )
        };
        let (mut buf, mut at, mut fed) = (Vec::new(), 0usize, 0usize);
        let mut framing = None;
        while fed < input.len() {
            // A read: as many bytes as the next input byte says.
            let n = (usize::from(input[fed]) * 13 % 251 + 1).min(input.len() - fed);
            buf.extend_from_slice(&input[fed..fed + n]);
            fed += n;
            loop {
                let Some(body) = framing.as_mut() else {
                    match parse_head(&buf[at..], judge) {
                        Ok(Parsed::Final(len, head)) => {
                            at += len;
                            if head.verdict.is_some() {
                                return;
                            }
                            framing = Some(head.framing);
                            continue;
                        }
                        Ok(Parsed::Interim(len)) => {
                            at += len;
                            continue;
                        }
                        Ok(Parsed::Incomplete) => break,
                        Err(_) => return,
                    }
                };
                match body.decode(&buf[at..], &mut sink) {
                    Ok(d) => {
                        assert!(d.used <= buf.len() - at);
                        at += d.used;
                        if d.done {
                            body.with_trailers(|t| {
                                let kept = t.map_or(0, |(c, m)| c.len() + m.map_or(0, <[u8]>::len));
                                assert!(kept <= MAX_TRAILER_SECTION);
                            });
                            return;
                        }
                        break;
                    }
                    Err(_) => return,
                }
            }
        }
        assert!(body_bytes <= input.len());
    }

    #[test]
    fn fuzz_http1_response_reader() {
        let seeds = vec![
            b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc-web+proto\r\ntransfer-encoding: chunked\r\n\r\n7\r\n\0\0\0\0\x02\x0a\0\r\n14\r\n\x80\0\0\0\x0fgrpc-status: 0\r\n\r\n0\r\n\r\n".to_vec(),
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-type: application/grpc-web\r\ncontent-length: 7\r\n\r\n\0\0\0\0\x02\x0a\0".to_vec(),
            b"HTTP/1.0 200 OK\r\ncontent-type: application/grpc-web-text\r\n\r\nAAAAAAIKAA==".to_vec(),
            b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc-web\r\ntransfer-encoding: chunked\r\n\r\n0\r\ngrpc-status: 5\r\ngrpc-message: gone\r\n\r\n".to_vec(),
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec(),
        ];
        let target = crate::fuzzing::Target {
            name: "http1_response_reader",
            seeds,
            dictionary: vec![
                b"\r\n",
                b"transfer-encoding: chunked\r\n",
                b"content-length: ",
                b"ffffffffffffffff\r\n",
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b";ext=1",
                b"\x80\0\0\0",
            ],
            check: &read_as_a_call,
        };
        let ran = crate::fuzzing::run(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), &target);
        assert!(ran.cases > 0);
    }
}
