//! The scenario's keys, declared once: for each table, each key's type, default and one line
//! of documentation. The key tables of docs/scenarios.md are generated from this list (a test fails when
//! they differ, and `LOADAGENT_BLESS=1 cargo test --lib scenario::schema` rewrites them), and
//! a test checks that the reader asks for exactly these keys. Defaults are shown from
//! `defaults.rs`, where the reader takes them from.

use crate::vocabulary::defaults::*;
use crate::vocabulary::duration::MAX_DURATION_TEXT;

/// One key of a scenario table.
#[derive(Debug)]
pub struct Key {
    /// The key as written.
    pub name: &'static str,
    /// Its type, in words (`duration`, `integer`, …).
    pub ty: &'static str,
    /// Its default, as the docs show it.
    pub default: String,
    /// What it means.
    pub doc: &'static str,
}

/// One table of a scenario file and its keys.
#[derive(Debug)]
pub struct Table {
    /// As written in the file: `[target]`, `[[load.stages]]`; empty for the top level.
    pub header: &'static str,
    /// The dotted prefix of its keys in problems (`target`, `load.stages`).
    pub path: &'static str,
    /// Its keys, in the order the docs list them.
    pub keys: Vec<Key>,
}

fn key(name: &'static str, ty: &'static str, default: impl Into<String>, doc: &'static str) -> Key {
    Key {
        name,
        ty,
        default: default.into(),
        doc,
    }
}

fn secs(d: std::time::Duration) -> String {
    format!("`\"{}s\"`", d.as_secs())
}

/// `[call]`'s keys, which every `[[calls]]` entry takes too.
fn call_keys() -> Vec<Key> {
    vec![
                key("method", "string", "required", "`package.Service/Method` (also `/pkg.Svc/M`, `pkg.Svc.M`)"),
                key("proto", "list of paths", "none", "`.proto` files compiled at run time (protox)"),
                key("import_paths", "list of paths", "each proto file's folder", "where imports are found"),
                key("protoset", "path", "none", "a FileDescriptorSet (`protoc --include_imports -o`); without proto or protoset: server reflection"),
                key("data", "table, or list of tables", "one empty message", "the request (protobuf JSON mapping, templates allowed); a list is sent round-robin"),
                key("data_file", "path", "none", "one JSON request per line, round-robin (instead of `data`)"),
                key("data_order", "`\"round_robin\"`, `\"random\"`", "`\"round_robin\"`", "which message of the list (or file) each request sends: in turn, or a pseudo-random pick per request number"),
                key("seed", "integer", "drawn at the start of each run", "the random order's seed: the same seed sends the same sequence (`data_order = \"random\"` only)"),
                key("metadata", "table of strings", "none", "request headers (`-bin` keys take base64); a value may hold templates, as `data` does (`\"req-{{uuid}}\"`), rendered per request"),
                key("timeout", "duration", format!("{} for unary calls and storms, none for streams", secs(DEFAULT_CALL_TIMEOUT)), "each call's gRPC deadline"),
                key("compression", "`\"gzip\"`, `\"none\"`", "`\"none\"`", "request compression"),
                key("max_receive_message_size", "integer (bytes)", format!("{DEFAULT_MAX_RECEIVE_BYTES} (4 MiB, gRPC's)"), "larger response messages fail as RESOURCE_EXHAUSTED; at most 1 GiB"),
                key("transport", "`\"lean\"`, `\"h2\"`", "`\"lean\"`", "unary calls over the lean clients (native and gRPC-Web over HTTP/2: the lean HTTP/2 client; gRPC-Web over HTTP/1.1: the lean HTTP/1.1 connection) or the general ones (h2; hyper for gRPC-Web)"),
                key("retry", "table", "none (no retries)", "gRPC's retry policy (below); unary calls over native gRPC and the lean client"),
    ]
}

/// Every table, in the order docs/scenarios.md shows them.
pub fn tables() -> Vec<Table> {
    vec![
        Table {
            header: "",
            path: "",
            keys: vec![
                key("name", "string", "the file's name", "the scenario's name in reports and metrics"),
                key("kind", "`\"unary\"`, `\"server_stream\"`, `\"client_stream\"`, `\"bidi_stream\"`, `\"tls_handshake\"`", "required", "what each iteration is"),
                key("target", "table", "required", "where the load goes"),
                key("call", "table", "required (optional for `tls_handshake`)", "the method and the request"),
                key("calls", "list of tables", "none", "instead of `call`: a weighted mix of unary calls (below)"),
                key("load", "table", "the defaults below", "how much load, for how long"),
                key("stream", "table", "the defaults below", "streaming kinds: how each stream behaves"),
                key("thresholds", "table", "none", "pass/fail checks on the report (exit 3)"),
                key("tracing", "table", "none", "OTLP spans of the run and a sample of its calls"),
                key("capacity", "table", "none", "search for the highest rate within an SLO instead of running one rate (docs/capacity.md)"),
                key("labels", "table of strings", "none", "what the tool cannot see, kept in the report's `labels` (`{ target_arch = \"arm64\", instance = \"c7g.xlarge\", price_per_hour = \"0.145\" }`; names as Prometheus label names, at most 32); `run --label KEY=VALUE` adds or overrides; `compare --by label:KEY` groups by one"),
            ],
        },
        Table {
            header: "[target]",
            path: "target",
            keys: vec![
                key("address", "string", "required", "`\"host:port\"`, `\"[::1]:port\"`, `\"embedded\"` (the reference target, in-process), or a fleet's DNS name: `\"dns:///NAME:PORT\"`, `\"dns://DNS_SERVER:PORT/NAME:PORT\"`, `\"dns+srv://[DNS_SERVER:PORT]/_SERVICE._tcp.NAME\"`"),
                key("authority", "string", "the address (a fleet: `NAME:PORT`, or the SRV name's domain)", "the `:authority` header"),
                key("resolve_every", "duration", secs(DEFAULT_RESOLVE_EVERY), "a fleet's name is resolved again this often: new backends get load, removed ones drain"),
                key("balance", "`\"round_robin\"`, `\"pick_first\"`", "`\"round_robin\"`", "how calls are spread over a fleet's backends (gRPC's policies)"),
                key("protocol", "`\"grpc\"`, `\"grpc-web\"`, `\"grpc-web-text\"`", "`\"grpc\"`", "native gRPC, or gRPC-Web as browsers speak it (binary `application/grpc-web+proto`, or base64 text); gRPC-Web: `unary` and `server_stream`, types from `proto`/`protoset`"),
                key("http_version", "`\"1.1\"`, `\"2\"`", "`\"1.1\"`", "what gRPC-Web goes over (TLS offers it by ALPN); over HTTP/1.1 (a call at a time) each worker has its own connection, over HTTP/2 `[load] connections` are shared"),
                key("cors_origin", "string", "none", "gRPC-Web as a page at this origin calls: a CORS preflight on each new connection (a refusal fails the call), `Origin` on every call"),
                key("connect_timeout", "duration", secs(DEFAULT_CONNECT_TIMEOUT), "TCP (and TLS) connect deadline"),
                key("process", "string", "none", "the server's process on this node (a name, or a pid file: a path or `*.pid`), sampled during the run"),
                key("metrics_url", "string", "none", "the server's own Prometheus endpoint (`http://`), scraped before, during and after"),
                key("tls", "table", "plain text", "TLS to the target (below)"),
            ],
        },
        Table {
            header: "[target.tls]",
            path: "target.tls",
            keys: vec![
                key("ca", "path", "the system roots (embedded: the run's generated certificate)", "PEM file of trusted CAs"),
                key("server_name", "string", "the address's host (embedded: `localhost`)", "SNI and verification name"),
                key("insecure_skip_verify", "bool", "`false`, never implied", "accept any certificate; the summary and report say so loudly"),
                key("cert", "path", "none", "client certificate (PEM) for mutual TLS"),
                key("key", "path", "none", "the client certificate's key (PEM)"),
                key("versions", "list of `\"1.2\"`, `\"1.3\"`", "both", "TLS versions offered"),
                key("cipher_suites", "list of strings", "all", "rustls names, e.g. `TLS13_AES_128_GCM_SHA256`"),
                key("groups", "list of strings", "all", "key exchange, e.g. `[\"X25519\", \"secp256r1\"]`"),
                key("resumption", "`\"none\"`, `\"tickets\"`, `\"session_id\"`", "`\"none\"`", "session resumption across a storm's connections (none: every handshake full, the worst case)"),
                key("alpn", "list of strings", "`[\"h2\"]`", "protocols offered; a server that does not select `h2` is an error for gRPC calls"),
                key("close", "`\"fin\"`, `\"rst\"`", "`\"fin\"`", "how a storm closes each connection (RST keeps TIME_WAIT from filling up)"),
            ],
        },
        Table {
            header: "[call]",
            path: "call",
            keys: call_keys(),
        },
        Table {
            header: "[call.retry]",
            path: "call.retry",
            keys: vec![
                key("max_attempts", "integer", "required", "attempts in all, the first included: 2 to 5 (gRPC takes more as 5, so more is refused)"),
                key("initial_backoff", "duration", "required", "the first retry waits a random time below this"),
                key("max_backoff", "duration", "required", "the bound, which grows by `backoff_multiplier` per retry, stops here"),
                key("backoff_multiplier", "number", "required", "above 0"),
                key("retryable_status_codes", "list of strings", "required", "gRPC code names retried (`[\"UNAVAILABLE\"]`); others end the call; a server's `grpc-retry-pushback-ms` sets the delay, a negative or malformed one stops the retries"),
                key("throttling", "table", "none", "retry throttling: a token bucket for the run (below)"),
            ],
        },
        Table {
            header: "[call.retry.throttling]",
            path: "call.retry.throttling",
            keys: vec![
                key("max_tokens", "number", "required", "the bucket's size (at most 1000); a retryable failure takes a token, and retries stop while half or less is left"),
                key("token_ratio", "number", "required", "tokens each success gives back"),
            ],
        },
        Table {
            header: "[[calls]]",
            path: "calls",
            keys: {
                // Instead of `[call]`: a weighted mix for kind = "unary" over native gRPC
                // (the lean client), each entry read as `[call]` is.
                let mut keys = vec![key("weight", "number", "`1`", "instead of `[call]`, a weighted mix of unary calls (native gRPC or gRPC-Web, at most 64 entries), each entry with every `[call]` key: its share of the requests is its weight over the sum of the weights (above zero); which entry request n is depends on n only; `transport` and `max_receive_message_size` the same in every entry")];
                keys.extend(call_keys());
                keys
            },
        },
        Table {
            header: "[load]",
            path: "load",
            keys: vec![
                key("rate", "number", "none: the closed model", "open model: requests (streams, handshakes) per second on a constant arrival schedule"),
                key("concurrency", "integer", DEFAULT_CONCURRENCY.to_string(), "calls in flight at most (open); workers (closed); at most 1,000,000"),
                key("connections", "integer", DEFAULT_CONNECTIONS.to_string(), "HTTP/2 connections the load is spread over"),
                key("duration", "duration", format!("{} (when neither `requests` nor stages are given)", secs(DEFAULT_DURATION)), "the measured part's length"),
                key("requests", "integer", "none", "requests to send in the measured part (with `duration`: whichever comes first)"),
                key("warmup", "duration", "`\"0s\"`", "runs first, excluded from every figure"),
                key("threads", "integer", "one per 25,000 asked req/s (open) or per core (closed)", "generator threads; at most one per core and per connection"),
                key("stages", "list of tables", "none", "open-model ramps (below)"),
                key("keepalive", "table", "none (no PINGs)", "HTTP/2 keepalive PINGs as gRPC clients send them (below); unary calls over the lean client"),
                key("connection_churn", "number", "none", "this many requests a second each go on a new plain connection of their own, closed once its call ended (short-lived clients beside the long-lived ones; counted in `connections.churned`); 0.01 to 200 and at most the rate; unary calls over the lean client"),
                key("connection_max_age", "duration", "none (connections live as long as the run)", "a connection this old (±10%) takes no new calls, finishes its own and is replaced, as gRPC servers' MAX_CONNECTION_AGE forces; at least 1s; unary calls over the lean client"),
            ],
        },
        Table {
            header: "[load.keepalive]",
            path: "load.keepalive",
            keys: vec![
                key("time", "duration", "required", "a PING after the server has been quiet this long (at least 1s; gRPC clients use at least 10s, and servers answer eager pings with GOAWAY `too_many_pings`, after which the time doubles)"),
                key("timeout", "duration", "`\"20s\"`", "a PING unanswered this long closes the connection (counted in `connections.keepalive_failures`; its calls fail UNAVAILABLE)"),
                key("without_calls", "bool", "`false`", "ping connections with no call in flight too"),
            ],
        },
        Table {
            header: "[[load.stages]]",
            path: "load.stages",
            keys: vec![
                key("duration", "duration", "required", "the ramp's length"),
                key("rate", "number", "required", "the rate reached at its end, linear from the one before (`rate`, or 0)"),
            ],
        },
        Table {
            header: "[stream]",
            path: "stream",
            keys: vec![
                key("messages", "integer", "the number of messages in `data` (client, bidi); 0 (server)", "messages the client sends per stream; for a server stream, the client ends it after this many (0: when the server closes it)"),
                key("message_interval", "duration", "`\"0ms\"`", "a pause after each message (ping-pong: after each reply)"),
                key("message_rate", "number", "none", "messages per second per stream on the stream's own schedule (client, bidi; not with `message_interval`): late messages go at once and are counted, and `latency_message_corrected` runs from each message's intended time"),
                key("stream_duration", "duration", "none", "the client ends each stream after this long"),
                key("mode", "`\"ping_pong\"`, `\"pipelined\"`", "`\"ping_pong\"`", "bidi: send one and wait for its reply, or send on schedule and receive concurrently (replies matched by order)"),
            ],
        },
        Table {
            header: "[thresholds]",
            path: "thresholds",
            keys: vec![
                key("\"METRIC\"", "string (a condition)", "none", "e.g. `\"latency.p99\" = \"< 250ms\"`: any numeric report field by its path"),
                key("abort_on_fail", "bool", "`false`", "also judge every interval and stop at the first failure"),
            ],
        },
        Table {
            header: "[capacity]",
            path: "capacity",
            keys: vec![
                key("slo", "list of strings (a metric and a condition)", "required", "what each step must meet, judged on the step's own figures: `[\"latency.p99 < 50ms\", \"error_rate < 0.1%\"]`, in the language of `[thresholds]`"),
                key("start_rate", "number (per second)", format!("`{}`", DEFAULT_START_RATE), "the first step's rate"),
                key("growth", "number, 1.05 to 10", format!("`{}`", DEFAULT_GROWTH), "each passing step's rate times this, until one fails"),
                key("precision", "number, 0.001 to 0.5", format!("`{}`", DEFAULT_PRECISION), "bisection between the last passing and the first failing rate stops when they are this close (relative)"),
                key("step", "duration, whole seconds ≥ 2", secs(DEFAULT_STEP), "time per step"),
                key("settle", "duration, whole seconds", secs(DEFAULT_SETTLE), "the start of each step left out of its figures"),
                key("max_rate", "number (per second)", format!("`{}`", DEFAULT_MAX_RATE), "no step goes above it (`limited_by = \"max_rate\"` when it passes)"),
                key("max_duration", "duration", secs(DEFAULT_MAX_DURATION), "the whole search at most (at least two steps)"),
                key("confirm", "duration, whole seconds", "`step`", "hold the rate found this long before answering; if it fails, back off by `precision` and hold again; `\"0s\"`: no confirmation"),
            ],
        },
        Table {
            header: "[tracing]",
            path: "tracing",
            keys: vec![
                key("otlp_endpoint", "URL", "`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, then `OTEL_EXPORTER_OTLP_ENDPOINT`; none: no tracing", "where spans go (OTLP/gRPC)"),
                key("sample_ratio", "number, 0 to 1", DEFAULT_SAMPLE_RATIO.to_string(), "the fraction of calls given a span"),
            ],
        },
    ]
}

/// The tables of docs/scenarios.md: one per scenario table.
pub fn markdown() -> String {
    let mut out = String::new();
    for t in tables() {
        out.push_str(&format!(
            "\n**{}**\n\n| key | type | default | meaning |\n|---|---|---|---|\n",
            if t.header.is_empty() {
                "top level"
            } else {
                t.header
            }
        ));
        for k in &t.keys {
            let name = if k.name.starts_with('"') {
                k.name.to_string()
            } else {
                format!("`{}`", k.name)
            };
            out.push_str(&format!(
                "| {name} | {} | {} | {} |\n",
                k.ty, k.default, k.doc
            ));
        }
    }
    out.push_str(&format!(
        "\nDurations are strings (`\"250ms\"`, `\"1m30s\"`), at most `\"{MAX_DURATION_TEXT}\"`.\n"
    ));
    out
}

/// Where the generated tables sit in docs/scenarios.md.
pub const KEY_TABLES_START: &str = "<!-- scenario-keys: generated from src/scenario/schema.rs -->";
/// Where the generated tables end.
pub const KEY_TABLES_END: &str = "<!-- /scenario-keys -->";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_documented_key_tables_are_the_schema() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/scenarios.md");
        let page = std::fs::read_to_string(&path).unwrap();
        let start = page
            .find(KEY_TABLES_START)
            .expect("docs/scenarios.md has the start marker")
            + KEY_TABLES_START.len();
        let end = page
            .find(KEY_TABLES_END)
            .expect("docs/scenarios.md has the end marker");
        let want = markdown();
        if page[start..end] != want {
            if std::env::var_os("LOADAGENT_BLESS").is_some() {
                let updated = format!("{}{want}{}", &page[..start], &page[end..]);
                std::fs::write(&path, updated).unwrap();
            } else {
                panic!("docs/scenarios.md's scenario key tables differ from src/scenario/schema.rs; run LOADAGENT_BLESS=1 cargo test --lib scenario::schema");
            }
        }
    }

    /// Every key the reader asks for, table by table, in scenarios that use every table.
    fn asked_by_the_reader() -> BTreeSet<String> {
        let tls = "[target.tls]\n";
        let mut asked = BTreeSet::new();
        for (kind, extra) in [
            ("unary", "[load]\nrate = 1\n[load.keepalive]\ntime = \"10s\"\n[[load.stages]]\nduration = \"1s\"\nrate = 2\n[thresholds]\n\"rps\" = \"> 1\"\n[tracing]\n[call.retry]\nmax_attempts = 2\n[call.retry.throttling]\n"),
            ("bidi_stream", "[stream]\n"),
            ("tls_handshake", ""),
            ("server_stream", "[capacity]\nslo = [\"rps > 1\"]\n"),
        ] {
            let text = format!(
                "name = \"x\"\nkind = \"{kind}\"\n[target]\naddress = \"embedded\"\n{tls}[call]\nmethod = \"a.B/C\"\n{extra}"
            );
            let source = crate::vocabulary::Source::new(std::path::Path::new("x.toml"), text);
            asked.extend(crate::scenario::asked_keys(&source));
        }
        let mix = "kind = \"unary\"\n[target]\naddress = \"embedded\"\n[[calls]]\nmethod = \"a.B/C\"\nweight = 2\n";
        let source =
            crate::vocabulary::Source::new(std::path::Path::new("x.toml"), mix.to_string());
        asked.extend(crate::scenario::asked_keys(&source));
        asked
    }

    #[test]
    fn the_schema_declares_exactly_the_keys_the_reader_reads() {
        let declared: BTreeSet<String> = tables()
            .iter()
            .flat_map(|t| {
                t.keys
                    .iter()
                    .filter(|k| !k.name.starts_with('"'))
                    .map(move |k| {
                        if t.path.is_empty() {
                            k.name.to_string()
                        } else {
                            format!("{}.{}", t.path, k.name)
                        }
                    })
            })
            .collect();
        let asked = asked_by_the_reader();
        let undeclared: Vec<_> = asked.difference(&declared).collect();
        let unread: Vec<_> = declared.difference(&asked).collect();
        assert!(
            undeclared.is_empty(),
            "read but not in the schema: {undeclared:?}"
        );
        assert!(
            unread.is_empty(),
            "in the schema but never read: {unread:?}"
        );
    }
}
