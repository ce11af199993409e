//! Fuzz targets for the readers of untrusted input, run for a bounded time in every test run
//! (`LOADAGENT_FUZZ_SECONDS` per target, default 5; see `loadagent::fuzzing`). Every case
//! that ever failed stays in tests/fuzz/regressions/<target>/ and is replayed first. The
//! HPACK decoder and the HTTP/2 frame reader are fuzzed in the library's own tests (they
//! are private to the lean client).

mod common;

use loadagent::fuzzing::{run, Target};
use loadagent::vocabulary::Source;

fn files(dir: &str, ext: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(common::repo().join(dir)).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == ext) {
            out.push(std::fs::read(p).unwrap());
        }
    }
    assert!(!out.is_empty(), "seeds in {dir}");
    out
}

fn fuzz(target: Target<'_>) {
    let ran = run(&common::repo(), &target);
    eprintln!(
        "fuzz {}: {} regressions replayed, {} cases (LOADAGENT_FUZZ_SEED={})",
        target.name, ran.regressions, ran.cases, ran.seed
    );
    assert!(ran.cases > 0, "the loop ran");
}

const TOML_WORDS: [&[u8]; 20] = [
    b"duration = \"3000000000000000h\"\n",
    b"[[load.stages]]\nduration = \"8760h\"\nrate = 1\n",
    b"rate = 1e308\n",
    b"requests = 18446744073709551615\n",
    b"timeout = \"0.000000001ns\"\n",
    b"[target.tls]\nca = \"/dev/zero\"\n",
    b"data_file = \"/dev/urandom\"\n",
    b"proto = [\"/dev/zero\"]\n",
    b"\"{{request_number}}\"",
    b"data = [{}, {}, {}]\n",
    b"[thresholds]\n\"latency.p99\" = \"< 1e400ms\"\n",
    b"\xff\xfe",
    b"= = =",
    b"[[targets]]\nname = \"t\"\naddress = \"127.0.0.1:1\"\n",
    b"listen = \"[::1:9\"\n",
    b"[[schedules]]\nscenario = \"/dev/urandom\"\nevery = \"1ns\"\n",
    b"[modules.m]\nmethod = \"a.B/C\"\nexpect = [\"status == OK\"]\n",
    b"[probe]\nallowed_targets = [\"10.0.0.0/8\", \"*.*.x\"]\nmax_concurrent = 99999999999\n",
    b"slo = { objective = \"99.9999999999999%\", window = \"365d\", latency = \"1ns\" }\n",
    b"[remote_write]\nurl = \"http://[::1]:0/w\"\nbearer_token_file = \"/dev/zero\"\n",
];

#[test]
fn fuzz_scenario_reader() {
    let mut seeds = files("scenarios", "toml");
    seeds.push(
        b"name = \"x\"\nkind = \"unary\"\n[target]\naddress = \"embedded\"\n[call]\nmethod = \"loadagent.bench.v1.Bench/Unary\"\ndata = { payload_size = 8 }\n[load]\nrate = 100\nduration = \"1s\"\n".to_vec(),
    );
    let check = |input: &[u8]| {
        let text = String::from_utf8_lossy(input);
        let Ok(s) = loadagent::scenario::parse(&Source::new("fuzz.toml", text.into_owned())) else {
            return;
        };
        // The instants a run computes from what was read: none may overflow.
        let now = std::time::Instant::now();
        if let Some(m) = s.load.measured_duration() {
            let _ = now + s.load.warmup + m;
        }
        if let Some(t) = s.call.as_ref().and_then(|c| c.timeout) {
            let _ = now + t + std::time::Duration::from_secs(1);
        }
        if let Some(schedule) = loadagent::load::Schedule::for_load(&s.load) {
            let _ = now + schedule.warmup();
            for n in [0, 1, 1_000, u64::from(u32::MAX), u64::MAX / 2, u64::MAX] {
                if let Some(due) = schedule.due(n) {
                    let _ = now + due;
                }
            }
        }
    };
    fuzz(Target {
        name: "scenario_reader",
        seeds,
        dictionary: TOML_WORDS.to_vec(),
        check: &check,
    });
}

#[test]
fn fuzz_agent_config_reader() {
    let seeds = vec![
        std::fs::read(common::repo().join("deploy/compose/agent.toml")).unwrap(),
        b"[[targets]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nslo = { objective = \"99.9%\", latency = \"300ms\" }\n[modules.health]\ntimeout = \"2s\"\n[probe]\nallowed_targets = [\"127.0.0.0/8\", \"*.svc\"]\n".to_vec(),
        b"listen = \"0.0.0.0:9477\"\n[[targets]]\nname = \"a\"\naddress = \"127.0.0.1:50051\"\ninterval = \"5s\"\n".to_vec(),
    ];
    let check = |input: &[u8]| {
        let text = String::from_utf8_lossy(input);
        let _ = loadagent::agent::config::parse(&Source::new("agent.toml", text.into_owned()));
    };
    fuzz(Target {
        name: "agent_config_reader",
        seeds,
        dictionary: TOML_WORDS.to_vec(),
        check: &check,
    });
}

/// `/probe` requests as Prometheus (or anyone) sends them: any query string is answered —
/// a probe of an allowed address with a known module, or a 400 or 403 — without panicking.
#[test]
fn fuzz_probe_request() {
    let config = loadagent::agent::config::parse(&Source::new(
        "agent.toml",
        "[modules.health]\n[modules.m-2]\ntimeout = \"1s\"\n[probe]\nallowed_targets = [\"127.0.0.0/8\", \"::1\", \"*.svc.cluster.local\", \"a*b*c\"]\n".to_string(),
    ))
    .unwrap();
    let modules = loadagent::agent::probe_endpoint::Modules::of(&config);
    let seeds: Vec<Vec<u8>> = [
        "module=health&target=127.0.0.1:50051",
        "module=m-2&target=%5B%3A%3A1%5D%3A1&debug=true",
        "target=x.svc.cluster.local:80&module=health&module=nope",
        "module=health&target=dns:///a:1",
        "module=health&target=axxbyyc:1",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let check = |input: &[u8]| {
        let Ok(uri) = format!("/probe?{}", String::from_utf8_lossy(input)).parse::<http::Uri>()
        else {
            return;
        };
        match loadagent::agent::probe_endpoint::admit_uri(&modules, &uri) {
            Ok((module, address)) => {
                assert!(config.modules.contains_key(&module), "{module}");
                assert!(config.endpoint.allows(address.host()), "{address}");
            }
            Err((code, reason, why)) => {
                assert!(code == 400 || code == 403, "{code} {reason} {why}");
                assert!(!why.is_empty());
            }
        }
    };
    fuzz(Target {
        name: "probe_request",
        seeds,
        dictionary: vec![
            b"module=health".as_slice(),
            b"&target=",
            b"%5B",
            b"%3A",
            b"127.0.0.1:1",
            b"dns+srv://",
            b"*",
            b"&&==",
        ],
        check: &check,
    });
}

/// gRPC-Web response bodies, binary and text, cut into chunks anywhere: the reader neither
/// panics nor holds more than it bounds (what a hostile gRPC-Web server sends).
#[test]
fn fuzz_grpc_web_body() {
    use base64::Engine;
    let frame = |flags: u8, payload: &[u8]| {
        let mut f = vec![flags];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let mut binary = vec![0u8, 7];
    binary.extend(frame(0, b"\x0a\x02hi"));
    binary.extend(frame(
        0x80,
        b"grpc-status: 0\r\ngrpc-message: ok%20then\r\n",
    ));
    let mut text = vec![1u8, 5];
    text.extend(
        base64::engine::general_purpose::STANDARD
            .encode(frame(0x80, b"grpc-status: 5\r\n"))
            .into_bytes(),
    );
    // Byte 0: text mode when odd; byte 1: the chunk size; the rest: the body.
    let check = |input: &[u8]| {
        let (mode, chunk, body) = match input {
            [m, c, rest @ ..] => (m % 2 == 1, usize::from(*c).max(1), rest),
            _ => return,
        };
        let mut reader = loadagent::grpc::web::WebBodyReader::new(mode, 1024);
        for piece in body.chunks(chunk) {
            if reader.feed(piece).is_err() {
                return;
            }
        }
        let _ = reader.finish(None, true);
    };
    fuzz(Target {
        name: "grpc_web_body",
        seeds: vec![binary, text],
        dictionary: vec![
            b"grpc-status: ",
            b"\r\n",
            b"\x80\x00\x00\x00",
            b"==",
            b"\xff\xff\xff\xff",
        ],
        check: &check,
    });
}

/// A real report of a short embedded run, the seed of the report targets.
fn a_report() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let s = common::scenario(
        dir.path(),
        "r.toml",
        "name = \"r\"\nkind = \"unary\"\n[target]\naddress = \"embedded\"\n[call]\nmethod = \"loadagent.bench.v1.Bench/Unary\"\ndata = { payload_size = 8 }\n[load]\nrate = 200\nduration = \"300ms\"\n",
    );
    common::run_report(dir.path(), &s).to_string().into_bytes()
}

/// Loads a report's text and, when it loads, does what `report`, `merge` and `compare` do
/// with it.
fn use_report(text: &str) {
    if let Ok(report) = loadagent::report::Report::parse("fuzz.json".into(), text) {
        let _ = loadagent::report::summary::render(&report);
        let _ = loadagent::report::html::render(&report);
        let _ = loadagent::report::csv::render(&report);
        let valid = loadagent::report::figures::check(&report).is_ok();
        let pair = vec![("a".to_string(), report.clone()), ("b".to_string(), report)];
        // What merge writes of valid reports reads back (`report`, `merge` again).
        if let Ok(merged) = loadagent::report::merge::merge(&pair, true, true) {
            if valid {
                let text = serde_json::to_string(&merged).unwrap();
                let back = loadagent::report::Report::parse("merged.json".into(), &text)
                    .unwrap_or_else(|e| panic!("a merge does not read back: {e}"));
                loadagent::report::figures::check(&back)
                    .unwrap_or_else(|e| panic!("a merge does not read back: {e}"));
            }
        }
        let _ = loadagent::report::compare::compare(&pair, "arch", true, None);
    }
}

#[test]
fn fuzz_report_reader_and_its_outputs() {
    let check = |input: &[u8]| {
        let text = String::from_utf8_lossy(input);
        use_report(&text);
    };
    fuzz(Target {
        name: "report_reader",
        seeds: vec![a_report()],
        dictionary: vec![
            b"\"hdr\": \"HISTFAAAACR4nJNpmSzMwMDAxMDAwMDMwA==\"",
            b"18446744073709551615",
            b"1e308",
            b"-1",
            b"null",
            b"\"schema\": \"loadagent.report/v1\"",
        ],
        check: &check,
    });
}

/// Every leaf of a JSON value, by path.
fn leaves(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, c) in m {
                leaves(c, format!("{at}/{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                leaves(c, format!("{at}/{i}"), out);
            }
        }
        _ => out.push(at),
    }
}

#[test]
fn fuzz_report_values() {
    // Structure-aware: the input picks leaves of a real report and what to put there, so
    // every case is valid JSON that reaches the histogram checks, merge and the outputs.
    let seed: serde_json::Value = serde_json::from_slice(&a_report()).unwrap();
    let mut paths = Vec::new();
    leaves(&seed, String::new(), &mut paths);
    let values: Vec<serde_json::Value> = vec![
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(u64::MAX),
        serde_json::json!(1e308),
        serde_json::json!(""),
        serde_json::json!("HISTFAAAACR4nJNpmSzMwMDAxMDAwMDMwA=="),
        serde_json::json!(null),
        serde_json::json!([]),
        serde_json::json!({}),
        serde_json::json!(true),
    ];
    let check = |input: &[u8]| {
        let mut report = seed.clone();
        for pick in input.chunks(3) {
            let index = usize::from(pick[0]) * 256 + usize::from(*pick.get(1).unwrap_or(&0));
            let path = &paths[index % paths.len()];
            let path = path.as_str();
            let value = values[usize::from(*pick.get(2).unwrap_or(&0)) % values.len()].clone();
            if let Some(slot) = report.pointer_mut(path) {
                *slot = value;
            }
        }
        use_report(&report.to_string());
    };
    fuzz(Target {
        name: "report_values",
        seeds: vec![vec![0; 3], vec![1, 2, 3, 4, 5, 6]],
        dictionary: Vec::new(),
        check: &check,
    });
}

#[test]
fn fuzz_histogram_decoder() {
    use base64::Engine;
    let mut h = loadagent::record::histogram::new_histogram();
    let mut seeds = Vec::new();
    for v in [1u64, 100, 10_000, 3_600_000_000] {
        loadagent::record::histogram::record(&mut h, v);
        let text = loadagent::record::histogram::encode(&h);
        seeds.push(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap(),
        );
    }
    let check = |input: &[u8]| {
        // As bytes (mutated below base64) and as text (mutated base64).
        let text = base64::engine::general_purpose::STANDARD.encode(input);
        if let Ok(h) = loadagent::record::histogram::decode(&text) {
            let _ = loadagent::record::histogram::LatencySummary::of(&h);
        }
        let _ = loadagent::record::histogram::decode(&String::from_utf8_lossy(input));
    };
    fuzz(Target {
        name: "histogram_decoder",
        seeds,
        dictionary: vec![
            b"\xff\xff\xff\xff",
            b"\x1c\x84\x93\x13",
            b"\x1c\x84\x93\x14",
            b"\x78\x9c",
        ],
        check: &check,
    });
}

#[test]
fn fuzz_exposition_parser() {
    let seeds = vec![
        b"# HELP process_cpu_seconds_total CPU\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\nprocess_resident_memory_bytes 1.2e+07\nhttp_requests_total{code=\"200\",method=\"get\"} 1027 1395066363000\n".to_vec(),
        b"# TYPE h histogram\nh_bucket{le=\"0.1\"} 3\nh_bucket{le=\"+Inf\"} 4\nh_sum 0.5\nh_count 4\n# EOF\n".to_vec(),
    ];
    let check = |input: &[u8]| {
        let _ = loadagent::host::exposition::parse(&String::from_utf8_lossy(input));
    };
    fuzz(Target {
        name: "exposition_parser",
        seeds,
        dictionary: vec![
            b"{a=\"\\\"\"}",
            b" NaN",
            b" +Inf",
            b"\\n",
            b"# TYPE x untyped\n",
        ],
        check: &check,
    });
}

#[test]
fn fuzz_grpc_message_framing_and_durations() {
    let seeds = vec![
        vec![0, 0, 0, 0, 2, 8, 1, 0, 0, 0, 0, 0],
        vec![1, 0, 0, 0, 1, 7],
        b"1m30s".to_vec(),
    ];
    let check = |input: &[u8]| {
        let mut reader =
            loadagent::grpc::frame::MessageReader::new(1 << 20, input.first() == Some(&1));
        // A probe's reader keeps the first message.
        reader.keep_first = input.get(1).is_some_and(|b| b & 1 == 1);
        // Fed in chunks the input itself picks, as DATA frames split a body.
        let mut rest = input;
        while !rest.is_empty() {
            let n = (usize::from(rest[0]) % 7 + 1).min(rest.len());
            if reader.feed(&rest[..n]).is_err() {
                break;
            }
            rest = &rest[n..];
        }
        let _ = reader.unary_end();
        if let Some(first) = reader.take_first() {
            assert!(first.len() <= 1 << 20, "a kept message within the limit");
        }
        let _ = loadagent::vocabulary::duration::parse_duration(&String::from_utf8_lossy(input));
    };
    fuzz(Target {
        name: "grpc_framing",
        seeds,
        dictionary: vec![
            b"\x00\xff\xff\xff\xff",
            b"\x01",
            b"8760h",
            b"9999999999999999999h",
        ],
        check: &check,
    });
}
