//! gRPC status codes by number and canonical name.

/// The canonical names, indexed by code number (grpc/doc/statuscodes.md).
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// OK.
pub const OK: u8 = 0;
/// CANCELLED.
pub const CANCELLED: u8 = 1;
/// UNKNOWN.
pub const UNKNOWN: u8 = 2;
/// DEADLINE_EXCEEDED.
pub const DEADLINE_EXCEEDED: u8 = 4;
/// PERMISSION_DENIED.
pub const PERMISSION_DENIED: u8 = 7;
/// RESOURCE_EXHAUSTED.
pub const RESOURCE_EXHAUSTED: u8 = 8;
/// UNIMPLEMENTED.
pub const UNIMPLEMENTED: u8 = 12;
/// INTERNAL.
pub const INTERNAL: u8 = 13;
/// UNAVAILABLE.
pub const UNAVAILABLE: u8 = 14;
/// UNAUTHENTICATED.
pub const UNAUTHENTICATED: u8 = 16;

/// Number of codes a status table holds; codes past 16 are folded into UNKNOWN.
pub const CODE_COUNT: usize = CODE_NAMES.len();

/// How the message of a call begins when the server speaks another protocol (native gRPC and
/// gRPC-Web, either way): a run in which no call succeeds and such a message comes stops and
/// fails with it (exit 1), as a target that does not speak HTTP/2 does.
pub const WRONG_PROTOCOL: &str = "wrong protocol: ";

/// How the message of a call begins when the run ended while it still waited for the
/// server's first answer (no response head): a run in which no call succeeded and such a
/// call was left fails (exit 1) — the target never answered, nothing was measured.
pub const NO_ANSWER: &str = "no answer: ";

/// What to say of a gRPC-Web server that does not speak HTTP/1.1 (`why`: what showed it).
pub fn not_http1(why: &str) -> String {
    format!("{WRONG_PROTOCOL}the server does not speak HTTP/1.1 ({why}): it may speak HTTP/2 only, as native gRPC servers do; set `http_version = \"2\"`, or `protocol = \"grpc\"` for native gRPC")
}

/// A tonic status as gRPC clients report it: tonic's channel reports its own deadline
/// (`Endpoint::timeout`) as CANCELLED "Timeout expired", where a gRPC client reports a
/// passed deadline as DEADLINE_EXCEEDED; so does everything here (probes, the agent).
///
/// And tonic refuses a response message over its limit as OUT_OF_RANGE, where gRPC
/// clients (and `run`) say RESOURCE_EXHAUSTED.
pub fn as_clients_report(s: tonic::Status) -> tonic::Status {
    if is_tonic_deadline(&s) {
        tonic::Status::deadline_exceeded("no answer within the deadline (client side)")
    } else if s.code() == tonic::Code::OutOfRange
        && s.message()
            .starts_with("Error, decoded message length too large")
    {
        tonic::Status::resource_exhausted(s.message().trim_start_matches("Error, ").to_string())
    } else {
        s
    }
}

/// tonic's own deadline passed (CANCELLED "Timeout expired").
pub fn is_tonic_deadline(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::Cancelled && s.message() == tonic::TimeoutExpired(()).to_string()
}

/// A code's name (`UNAVAILABLE`), or `UNKNOWN` past 16.
pub fn code_name(code: u8) -> &'static str {
    CODE_NAMES
        .get(usize::from(code))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// Parses a `grpc-status` header value; anything unreadable or out of range is UNKNOWN.
pub fn parse_code(value: &[u8]) -> u8 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<u8>().ok())
        .filter(|c| usize::from(*c) < CODE_COUNT)
        .unwrap_or(UNKNOWN)
}

/// The gRPC code a non-200 HTTP status maps to (grpc/doc/http-grpc-status-mapping.md).
pub fn from_http_status(status: u16) -> u8 {
    match status {
        400 => INTERNAL,
        401 => UNAUTHENTICATED,
        403 => PERMISSION_DENIED,
        404 => UNIMPLEMENTED,
        429 | 502..=504 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// Decodes a `grpc-message` value (percent-encoded UTF-8).
pub fn decode_message(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%' && i + 2 < value.len() {
            let hex = std::str::from_utf8(&value[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(value[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_parsing() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(14), "UNAVAILABLE");
        assert_eq!(code_name(200), "UNKNOWN");
        assert_eq!(parse_code(b"14"), 14);
        assert_eq!(parse_code(b"99"), UNKNOWN);
        assert_eq!(parse_code(b"x"), UNKNOWN);
    }

    #[test]
    fn messages_are_percent_decoded() {
        assert_eq!(decode_message(b"no%20such%20thing"), "no such thing");
        assert_eq!(decode_message(b"100%"), "100%");
        assert_eq!(decode_message(b"%E2%9C%93 ok"), "\u{2713} ok");
    }
}
