//! `[stream]`: the streaming kinds' options (messages per stream, message rate, bidi mode).

use std::time::Duration;

use super::reader::TableReader;
use crate::vocabulary::*;

/// `[stream]`, for the streaming kinds only. `messages` defaults to the number of messages in
/// `data` for client and bidi streams (ghz's convention), and to 0 (until the server closes
/// the stream) for server streams.
pub(super) fn read_stream(
    root: &TableReader<'_, '_, '_>,
    kind: Option<Kind>,
    data_messages: u64,
) -> Option<StreamOptions> {
    let kind = kind.unwrap_or(Kind::Unary);
    let default_messages = if kind == Kind::ServerStream {
        0
    } else {
        data_messages.max(1)
    };
    let mut options = StreamOptions {
        messages: default_messages,
        message_interval: Duration::ZERO,
        message_rate: None,
        stream_duration: None,
        mode: BidiMode::PingPong,
    };
    let Some(t) = root.table("stream") else {
        return Some(options);
    };
    if !kind.is_stream() {
        root.ctx().report_at(t.loc(), "stream", "[stream] applies to the streaming kinds (server_stream, client_stream, bidi_stream); remove it or change `kind`");
    }
    let min_messages = if kind == Kind::ServerStream { 0 } else { 1 };
    if let Some(m) = t.integer("messages", min_messages) {
        options.messages = m.value;
    }
    let interval = t.duration("message_interval", false);
    if let Some(d) = &interval {
        options.message_interval = d.value;
    }
    if let Some(r) = t.number("message_rate", true) {
        if interval.is_some() {
            root.ctx().report_at(
                r.loc,
                &t.key_path("message_rate"),
                "give `message_rate` (a schedule: messages per second per stream) or `message_interval` (a pause after each message), not both",
            );
        } else if kind == Kind::ServerStream {
            root.ctx().report_at(
                r.loc,
                &t.key_path("message_rate"),
                "a server stream sends one request; `message_rate` paces the client's messages (client_stream, bidi_stream)",
            );
        } else if 1.0 / r.value > duration::MAX_DURATION.as_secs_f64() {
            root.ctx().report_at(
                r.loc,
                &t.key_path("message_rate"),
                format!(
                    "{} is too slow: one message at most every {}",
                    r.value,
                    duration::MAX_DURATION_TEXT
                ),
            );
        } else {
            options.message_rate = Some(r.value);
        }
    }
    options.stream_duration = t.duration("stream_duration", true).map(|d| d.value);
    if let Some(mode) = t.choice("mode", &["ping_pong", "pipelined"]) {
        if kind != Kind::BidiStream {
            root.ctx().report_at(
                mode.loc,
                &t.key_path("mode"),
                "`mode` applies to bidi_stream only",
            );
        }
        options.mode = if mode.value == "pipelined" {
            BidiMode::Pipelined
        } else {
            BidiMode::PingPong
        };
    }
    t.finish();
    Some(options)
}
