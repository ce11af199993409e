//! HPACK (RFC 7541) for the lean client: a decoder for what servers send, and the request
//! header block, encoded once per connection. The first request adds its headers to the
//! server's dynamic table; every later one is a few bytes of indices.

use std::collections::VecDeque;

use super::huffman;

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Each dynamic table entry costs its name, its value and 32 bytes (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// A header block the decoder could not read: a connection error (COMPRESSION_ERROR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HpackError(pub &'static str);

impl std::fmt::Display for HpackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad HPACK header block from the server: {}", self.0)
    }
}

/// A dynamic table entry: name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// The receiving side's HPACK state for one connection.
#[derive(Debug)]
pub(super) struct Decoder {
    /// Newest entry first.
    table: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    /// The most the server may set `max_size` to: our SETTINGS_HEADER_TABLE_SIZE.
    limit: usize,
    /// Huffman output for names and values (reused).
    scratch: Vec<u8>,
}

impl Decoder {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            table: VecDeque::new(),
            size: 0,
            max_size: limit,
            limit,
            scratch: Vec::new(),
        }
    }

    /// A new SETTINGS_HEADER_TABLE_SIZE on our side (tests play the server's decoder).
    #[cfg(test)]
    pub(super) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Decodes one whole header block, calling `each(name, value)` per header in order.
    pub(super) fn decode(
        &mut self,
        mut block: &[u8],
        mut each: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        while let Some(&first) = block.first() {
            if first & 0x80 != 0 {
                let index = integer(&mut block, 7)?;
                let (name, value) = self.entry(index)?;
                each(name, value);
            } else if first & 0x40 != 0 {
                self.literal(&mut block, 6, true, &mut each)?;
            } else if first & 0x20 != 0 {
                let size = integer(&mut block, 5)?;
                if size > self.limit {
                    return Err(HpackError("table size update above our SETTINGS"));
                }
                self.max_size = size;
                self.evict_to(size);
            } else {
                // Without indexing (0000) or never indexed (0001): the same for a decoder.
                self.literal(&mut block, 4, false, &mut each)?;
            }
        }
        Ok(())
    }

    fn literal(
        &mut self,
        block: &mut &[u8],
        prefix: u8,
        index: bool,
        each: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let name_index = integer(block, prefix)?;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let result = (|| {
            let name_at = if name_index == 0 {
                Some(string(block, &mut scratch)?)
            } else {
                None
            };
            let value_at = string(block, &mut scratch)?;
            let name: &[u8] = match name_at {
                Some(range) => &scratch[range],
                None => self.entry(name_index)?.0,
            };
            let value = &scratch[value_at];
            each(name, value);
            if index {
                let entry = (Box::from(name), Box::from(value));
                self.insert(entry);
            }
            Ok(())
        })();
        self.scratch = scratch;
        result
    }

    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match index {
            0 => Err(HpackError("index 0")),
            1..=61 => Ok(STATIC_TABLE[index - 1]),
            _ => self
                .table
                .get(index - 62)
                .map(|(n, v)| (&n[..], &v[..]))
                .ok_or(HpackError("index past the dynamic table")),
        }
    }

    fn insert(&mut self, (name, value): Entry) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            // An entry larger than the table empties it and is not added (RFC 7541 §4.4).
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max_size - size);
        self.size += size;
        self.table.push_front((name, value));
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + ENTRY_OVERHEAD,
                None => self.size = 0,
            }
        }
    }
}

/// Reads an integer with an N-bit prefix (RFC 7541 §5.1), advancing `block`.
fn integer(block: &mut &[u8], prefix: u8) -> Result<usize, HpackError> {
    let (&first, mut rest) = block.split_first().ok_or(HpackError("truncated integer"))?;
    let max = (1usize << prefix) - 1;
    let mut value = usize::from(first) & max;
    if value == max {
        let mut shift = 0u32;
        loop {
            let (&b, more) = rest.split_first().ok_or(HpackError("truncated integer"))?;
            rest = more;
            if shift > 28 {
                return Err(HpackError("integer too large"));
            }
            value += usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    *block = rest;
    Ok(value)
}

/// Reads a string literal into `out` and returns where it lies there.
fn string(block: &mut &[u8], out: &mut Vec<u8>) -> Result<std::ops::Range<usize>, HpackError> {
    let huffman_coded = block.first().is_some_and(|b| b & 0x80 != 0);
    let length = integer(block, 7)?;
    if length > block.len() {
        return Err(HpackError("string longer than the block"));
    }
    let (raw, rest) = block.split_at(length);
    *block = rest;
    let start = out.len();
    if huffman_coded {
        huffman::decode(raw, out).map_err(|_| HpackError("invalid Huffman string"))?;
    } else {
        out.extend_from_slice(raw);
    }
    Ok(start..out.len())
}

fn put_integer(out: &mut Vec<u8>, first_bits: u8, prefix: u8, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(first_bits | value as u8);
        return;
    }
    out.push(first_bits | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_integer(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// The request headers of a unary call, encoded for one connection.
#[derive(Debug, Clone)]
pub struct RequestHeaders {
    /// `:method POST` and the scheme, both in the static table.
    fixed: [u8; 2],
    /// Every other header every call sends, in order: `:path` (one method), `:authority`,
    /// then the regular ones. Indexed in the server's table.
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// A mix of calls: per call, the headers it does not share with every other (its
    /// `:path`, metadata, `grpc-timeout`), sent as literals not indexed, so the table keeps
    /// the shared ones and their indices stay fixed. Empty for one method.
    own: Vec<OwnHeaders>,
    /// What indexing all of them costs in the server's dynamic table.
    table_size: usize,
    /// The largest response message a call accepts (`[call] max_receive_message_size`).
    pub max_receive: u32,
    /// The calls are gRPC-Web's: their bodies (and the status, in a trailer frame) are read
    /// as gRPC-Web frames them.
    pub web: Option<WebFraming>,
}

/// How a gRPC-Web call's bodies are framed, and what the server is told it is sent.
#[derive(Debug, Clone)]
pub struct WebFraming {
    /// `grpc-web-text`: bodies are base64, both ways.
    pub text: bool,
    /// The content type sent (named when a server refuses it).
    pub content_type: String,
}

/// One call's headers of a mix that the others do not send.
#[derive(Debug, Clone, Default)]
struct OwnHeaders {
    /// Pseudo-headers (`:path`): before every regular header.
    pseudo: Vec<(Vec<u8>, Vec<u8>)>,
    regular: Vec<(Vec<u8>, Vec<u8>)>,
    /// Names of the metadata whose values are rendered per request (templates): the values
    /// come with each request, in this order.
    templated: Vec<Vec<u8>>,
}

/// How a connection's next header block is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexing {
    /// Nothing indexed yet: the next block adds every header to the table.
    First,
    /// The table holds them: send indices.
    Indexed,
    /// The server's table is too small for them: plain literals, never indexed.
    Literal,
    /// The server shrank its table below what we indexed: empty it, then literals.
    Shrunk,
}

impl RequestHeaders {
    /// `headers` are `:path`, `:authority` and the regular headers, in that order.
    pub fn new(tls: bool, headers: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        let table_size = headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + ENTRY_OVERHEAD)
            .sum();
        Self {
            fixed: [0x83, if tls { 0x87 } else { 0x86 }],
            headers,
            own: Vec::new(),
            table_size,
            max_receive: crate::grpc::frame::DEFAULT_MAX_RECEIVE_BYTES,
            web: None,
        }
    }

    /// The headers of a mix of calls (each as `new` takes them): those every call sends
    /// are indexed once, the rest sent per call.
    pub fn mix(tls: bool, calls: Vec<Vec<(Vec<u8>, Vec<u8>)>>) -> Self {
        let Some(first) = calls.first() else {
            return Self::new(tls, Vec::new());
        };
        let shared: Vec<_> = first
            .iter()
            .filter(|h| calls.iter().all(|c| c.contains(h)))
            .cloned()
            .collect();
        let own = calls
            .iter()
            .map(|c| {
                let (pseudo, regular) = c
                    .iter()
                    .filter(|h| !shared.contains(h))
                    .cloned()
                    .partition(|(name, _)| name.starts_with(b":"));
                OwnHeaders {
                    pseudo,
                    regular,
                    templated: Vec::new(),
                }
            })
            .collect();
        Self {
            own,
            ..Self::new(tls, shared)
        }
    }

    /// Call `call` also sends the metadata `names`, its values rendered per request (they
    /// are never indexed: each request's differ).
    pub fn with_templated(mut self, call: usize, names: Vec<Vec<u8>>) -> Self {
        if names.is_empty() {
            return self;
        }
        if self.own.len() <= call {
            self.own.resize_with(call + 1, OwnHeaders::default);
        }
        self.own[call].templated = names;
        self
    }

    /// How the first block is written when the server's table holds `server_table` bytes.
    pub fn first_indexing(&self, server_table: usize) -> Indexing {
        if self.table_size <= server_table {
            Indexing::First
        } else {
            Indexing::Literal
        }
    }

    /// What the server's new SETTINGS_HEADER_TABLE_SIZE means for the next blocks.
    pub fn after_table_change(&self, now: Indexing, server_table: usize) -> Indexing {
        match now {
            Indexing::Indexed | Indexing::Shrunk if self.table_size > server_table => {
                Indexing::Shrunk
            }
            Indexing::First if self.table_size > server_table => Indexing::Literal,
            other => other,
        }
    }

    /// Appends the header block of a request of call `call` (0 for one method; a mix's
    /// entry) to `out`, plus a never-indexed `traceparent`, and returns how the next one is
    /// written.
    pub fn encode(
        &self,
        how: Indexing,
        call: usize,
        rendered: &[String],
        trace: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Indexing {
        out.extend_from_slice(&self.fixed);
        if how == Indexing::Shrunk {
            // A size update must open the block (RFC 7541 §4.2): before the fixed headers
            // just written (after any update the caller put first).
            out.truncate(out.len() - self.fixed.len());
            put_size_update(out, 0);
            out.extend_from_slice(&self.fixed);
        }
        let own = self.own.get(call);
        for (name, value) in own.map_or(&[][..], |o| &o.pseudo) {
            put_literal(out, 0x00, 4, name, value);
        }
        let next = match how {
            Indexing::Indexed => {
                let newest = (62 + self.headers.len()).saturating_sub(1);
                for i in 0..self.headers.len() {
                    // The first header added is the oldest: the highest index.
                    put_integer(out, 0x80, 7, newest - i);
                }
                Indexing::Indexed
            }
            Indexing::First => {
                for (name, value) in &self.headers {
                    put_literal(out, 0x40, 6, name, value);
                }
                Indexing::Indexed
            }
            Indexing::Literal | Indexing::Shrunk => {
                for (name, value) in &self.headers {
                    put_literal(out, 0x00, 4, name, value);
                }
                Indexing::Literal
            }
        };
        for (name, value) in own.map_or(&[][..], |o| &o.regular) {
            put_literal(out, 0x00, 4, name, value);
        }
        for (name, value) in own.map_or(&[][..], |o| &o.templated).iter().zip(rendered) {
            out.push(0x10); // never indexed: each request's value differs
            put_string(out, name);
            put_string(out, value.as_bytes());
        }
        if let Some(t) = trace {
            out.push(0x10); // never indexed, new name: unique per call, it would evict ours
            put_string(out, b"traceparent");
            put_string(out, t);
        }
        next
    }
}

/// A dynamic table size update (RFC 7541 §6.3), which must open a header block.
pub(super) fn put_size_update(out: &mut Vec<u8>, size: usize) {
    put_integer(out, 0x20, 5, size);
}

/// A literal header, naming it by its static-table index when it has one.
fn put_literal(out: &mut Vec<u8>, first_bits: u8, prefix: u8, name: &[u8], value: &[u8]) {
    let static_name = match name {
        b":path" => 4,
        b":authority" => 1,
        b"content-type" => 31,
        b"user-agent" => 58,
        _ => 0,
    };
    put_integer(out, first_bits, prefix, static_name);
    if static_name == 0 {
        put_string(out, name);
    }
    put_string(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(d: &mut Decoder, block: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        d.decode(block, |n, v| {
            out.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ))
        })
        .unwrap();
        out
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn decodes_rfc_c6_responses_with_huffman_and_eviction() {
        // RFC 7541 C.6: three responses, a 256-byte table, Huffman coding.
        let mut d = Decoder::new(256);
        let first = [
            0x48, 0x82, 0x64, 0x02, 0x58, 0x85, 0xae, 0xc3, 0x77, 0x1a, 0x4b, 0x61, 0x96, 0xd0,
            0x7a, 0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05, 0x95, 0x04, 0x0b, 0x81,
            0x66, 0xe0, 0x82, 0xa6, 0x2d, 0x1b, 0xff, 0x6e, 0x91, 0x9d, 0x29, 0xad, 0x17, 0x18,
            0x63, 0xc7, 0x8f, 0x0b, 0x97, 0xc8, 0xe9, 0xae, 0x82, 0xae, 0x43, 0xd3,
        ];
        assert_eq!(
            decoded(&mut d, &first),
            pairs(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ])
        );
        assert_eq!(d.size, 222);
        let second = [0x48, 0x83, 0x64, 0x0e, 0xff, 0xc1, 0xc0, 0xbf];
        assert_eq!(
            decoded(&mut d, &second),
            pairs(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ])
        );
        assert_eq!(d.size, 222);
        assert_eq!(&*d.table[0].1, b"307");
    }

    #[test]
    fn request_blocks_index_once_then_refer() {
        let headers = RequestHeaders::new(
            false,
            vec![
                (b":path".to_vec(), b"/p.S/M".to_vec()),
                (b":authority".to_vec(), b"h:1".to_vec()),
                (b"content-type".to_vec(), b"application/grpc".to_vec()),
                (b"te".to_vec(), b"trailers".to_vec()),
            ],
        );
        let want = pairs(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/p.S/M"),
            (":authority", "h:1"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]);
        let mut server = Decoder::new(4096);
        let mut how = headers.first_indexing(4096);
        for round in 0..3 {
            let mut block = Vec::new();
            let trace = (round == 1).then_some(&b"00-abc-def-01"[..]);
            how = headers.encode(how, 0, &[], trace, &mut block);
            let mut expected = want.clone();
            if trace.is_some() {
                expected.push(("traceparent".into(), "00-abc-def-01".into()));
            } else if round == 2 {
                assert_eq!(block.len(), 6, "two static indices and four dynamic ones");
            }
            assert_eq!(decoded(&mut server, &block), expected);
        }
        assert_eq!(server.table.len(), 4, "the traceparent is never indexed");
        // The server shrinks its table: the next block empties it and sends literals.
        how = headers.after_table_change(how, 64);
        assert_eq!(how, Indexing::Shrunk);
        let mut block = Vec::new();
        how = headers.encode(how, 0, &[], None, &mut block);
        assert_eq!(decoded(&mut server, &block), want);
        assert_eq!(server.size, 0);
        assert_eq!(how, Indexing::Literal);
        // A table too small from the start: literals only.
        assert_eq!(headers.first_indexing(100), Indexing::Literal);
    }

    #[test]
    fn a_mix_indexes_what_every_call_sends_and_sends_the_rest_per_call() {
        let h = |p: &[(&str, &str)]| -> Vec<(Vec<u8>, Vec<u8>)> {
            p.iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect()
        };
        let say = [
            (":path", "/p.S/Say"),
            (":authority", "h:1"),
            ("content-type", "application/grpc"),
            ("x-who", "say"),
            ("grpc-timeout", "5S"),
        ];
        let check = [
            (":path", "/grpc.health.v1.Health/Check"),
            (":authority", "h:1"),
            ("content-type", "application/grpc"),
            ("grpc-timeout", "1S"),
        ];
        let headers = RequestHeaders::mix(false, vec![h(&say), h(&check)])
            .with_templated(1, vec![b"x-request-id".to_vec()]);
        let mut server = Decoder::new(4096);
        let mut how = headers.first_indexing(4096);
        for (round, call) in [0, 1, 1, 0, 1].into_iter().enumerate() {
            let mut block = Vec::new();
            let rendered = [format!("req-{round}")];
            how = headers.encode(how, call, &rendered, None, &mut block);
            let mut got = decoded(&mut server, &block);
            // Pseudo-headers first (RFC 9113 §8.3), then the regular ones in any order.
            let pseudo = got.iter().take_while(|(n, _)| n.starts_with(':')).count();
            assert_eq!(pseudo, 4, "round {round}: {got:?}");
            assert!(got[pseudo..].iter().all(|(n, _)| !n.starts_with(':')));
            got.sort();
            let mut want = pairs(&[(":method", "POST"), (":scheme", "http")]);
            want.extend(pairs(if call == 0 { &say } else { &check }));
            if call == 1 {
                want.push(("x-request-id".into(), format!("req-{round}")));
            }
            want.sort();
            assert_eq!(got, want, "round {round}");
        }
        // Only what both send is in the table (the rendered values never are).
        assert_eq!(server.table.len(), 2);
    }

    #[test]
    fn bad_blocks_are_errors_not_panics() {
        let mut d = Decoder::new(4096);
        for bad in [
            &[0x80][..],             // index 0
            &[0xff, 0x80][..],       // truncated integer
            &[0xbf][..],             // index 62, empty dynamic table
            &[0x40, 0x85, 0x61][..], // string longer than the block
            &[0x3f, 0xe2, 0x1f][..], // table size 4097, above the limit
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f][..],
        ] {
            assert!(d.decode(bad, |_, _| {}).is_err(), "{bad:?}");
        }
    }
}
