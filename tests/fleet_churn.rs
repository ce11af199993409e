//! Fleets whose names change, and DNS servers that misbehave (issue 23): more records than a
//! run keeps, whole backend sets replaced under load, SRV answers with records that cannot be
//! used, a DNS port where nothing listens. dnsmasq and a small DNS server written here (for
//! a target whose lookup is never answered) against grpcio backends.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use loadagent::discovery::{NameResolver, MAX_BACKENDS};
use loadagent::vocabulary::FleetName;
use serde_json::Value;

fn name(text: &str) -> FleetName {
    FleetName::parse(text).unwrap().unwrap()
}

fn resolve(
    fleet: &FleetName,
    timeout: Duration,
) -> Result<loadagent::discovery::resolver::Resolution, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = NameResolver::new(fleet, timeout).map_err(|e| e.to_string())?;
        r.resolve().await.map_err(|e| e.to_string())
    })
}

/// 1,100 A records, which dnsmasq answers in a rotating order: every resolution keeps the
/// same 1,024, the sorted first.
#[test]
fn more_records_than_kept_keep_the_sorted_first_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let ips: Vec<String> = (0..1100u32)
        .map(|i| format!("127.1.{}.{}", i / 250, 1 + i % 250))
        .collect();
    let hosts: String = ips
        .iter()
        .map(|ip| format!("{ip} many.fleet.test\n"))
        .collect();
    let dns = Dnsmasq::start(dir.path(), &hosts, &[]);
    let fleet = name(&format!("dns://{}/many.fleet.test:7000", dns.server()));
    let mut want: Vec<std::net::Ipv4Addr> = ips.iter().map(|i| i.parse().unwrap()).collect();
    want.sort();
    want.truncate(MAX_BACKENDS);
    for round in 0..3 {
        let got = resolve(&fleet, Duration::from_secs(3)).unwrap();
        let kept: Vec<std::net::IpAddr> = got.backends.iter().map(|b| b.address.ip()).collect();
        assert_eq!(kept.len(), MAX_BACKENDS, "round {round}");
        let want: Vec<std::net::IpAddr> = want.iter().map(|&i| i.into()).collect();
        assert_eq!(
            kept, want,
            "round {round}: the kept set is the sorted first"
        );
    }
}

/// A DNS server of a few lines on a loopback UDP port, for 30 s: `answer` gives each
/// question's records (`None`: the query is never answered).
fn dns_server(
    mut answer: impl FnMut(&str, RecordType) -> Option<Vec<RData>> + Send + 'static,
) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 1500];
        while Instant::now() < until {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(q) = query.queries().first().cloned() else {
                continue;
            };
            let Some(records) = answer(&q.name().to_utf8(), q.query_type()) else {
                continue; // never answered
            };
            let mut reply = Message::new();
            reply.set_id(query.id());
            reply.set_message_type(MessageType::Response);
            reply.set_recursion_desired(true);
            reply.set_recursion_available(true);
            reply.set_response_code(ResponseCode::NoError);
            reply.add_query(q.clone());
            for r in records {
                reply.add_answer(Record::from_rdata(q.name().clone(), 30, r));
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = socket.send_to(&bytes, from);
            }
        }
    });
    addr
}

/// SRV records for `_grpc._tcp.svc.test` naming `good.test` (port `port`), `zero.test` (port
/// 0) and `silent.test`; A for good.test; every query for silent.test is never answered.
fn silent_target_dns(port: u16) -> SocketAddr {
    dns_server(move |name, kind| match (name, kind) {
        ("silent.test.", _) => None,
        ("_grpc._tcp.svc.test.", RecordType::SRV) => Some(
            [
                ("good.test.", port),
                ("zero.test.", 0),
                ("silent.test.", port),
            ]
            .into_iter()
            .map(|(target, p)| RData::SRV(SRV::new(0, 1, p, Name::from_ascii(target).unwrap())))
            .collect(),
        ),
        ("good.test.", RecordType::A) => Some(vec![RData::A(A::new(127, 0, 0, 1))]),
        _ => Some(Vec::new()),
    })
}

/// An SRV answer whose records cannot all be used: the record with port 0 and the target
/// whose lookup never answers are left out and named; the rest is used, in time.
#[test]
fn srv_records_that_cannot_be_used_are_left_out_and_named() {
    let dns = silent_target_dns(7001);
    let fleet = name(&format!("dns+srv://{dns}/_grpc._tcp.svc.test"));
    let started = Instant::now();
    let got = resolve(&fleet, Duration::from_millis(500)).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let kept: Vec<String> = got.backends.iter().map(|b| b.address.to_string()).collect();
    assert_eq!(kept, ["127.0.0.1:7001"]);
    let said = got.left_out.join("; ");
    assert!(
        said.contains("zero.test") && said.contains("port 0"),
        "{said}"
    );
    assert!(
        said.contains("silent.test") && said.contains("no answer"),
        "{said}"
    );
}

/// A DNS port where nothing listens refuses at once (ICMP port unreachable), rather than
/// after every attempt's timeout.
#[test]
fn a_dns_port_where_nothing_listens_fails_at_once() {
    let port = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let fleet = name(&format!("dns://127.0.0.1:{port}/pool.fleet.test:7000"));
    let started = Instant::now();
    let e = resolve(&fleet, Duration::from_secs(5)).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}: {e}",
        started.elapsed()
    );
    assert!(e.contains("refused"), "{e}");
}

/// A name flapping between two whole backend sets every 100 ms under load (a blue/green
/// switch over and over): no request fails though every backend is up, each address is one
/// entry however often it rejoined, every count equals its server's, and memory stays flat.
#[test]
fn a_name_flapping_between_backend_sets_under_load_loses_nothing_and_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let ips = ["127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15"];
    let (port, servers) = backends(&ips);
    let set = |pair: &[&str]| -> String {
        pair.iter()
            .map(|ip| format!("{ip} flap.fleet.test\n"))
            .collect()
    };
    let dns = Dnsmasq::start(dir.path(), &set(&ips[..2]), &[]);
    let s = scenario(
        dir.path(),
        "flap.toml",
        &format!(
            r#"
name = "flap"
kind = "unary"
[target]
address = "dns://{server}/flap.fleet.test:{port}"
resolve_every = "100ms"
[call]
method = "testing.echo.v1.Echo/Say"
data = {{ message = "hi" }}
[load]
rate = 200
duration = "20s"
warmup = "0s"
"#,
            server = dns.server()
        ),
    );
    let out = dir.path().join("flap.json");
    let run = spawn_run(&s, &out);
    let until = Instant::now() + Duration::from_secs(19);
    let mut flips = 0;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        flips += 1;
        dns.set_hosts(&set(if flips % 2 == 0 { &ips[..2] } else { &ips[2..] }));
    }
    let report = finish_run(run, &out);
    let counts: Vec<Value> = servers.into_iter().map(Server::stop_with_counts).collect();
    assert_eq!(num(&report, "totals.errors"), 0.0, "{}", report["errors"]);
    assert!(
        num(&report, "totals.requests") >= 3500.0,
        "{}",
        report["totals"]
    );
    let backends = report["backends"].as_array().unwrap();
    assert_eq!(
        backends.len(),
        4,
        "one entry per address: {}",
        report["backends"]
    );
    let mut sum = 0.0;
    for (ip, c) in ips.iter().zip(&counts) {
        let b = backends
            .iter()
            .find(|b| {
                b["address"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{ip}:"))
            })
            .unwrap();
        assert_eq!(
            b["requests"].as_f64().unwrap(),
            c["requests"].as_f64().unwrap_or(0.0),
            "{b}"
        );
        assert!(
            b["stints"].as_f64().unwrap() >= 5.0,
            "rejoined many times: {b}"
        );
        sum += b["requests"].as_f64().unwrap();
    }
    assert_eq!(sum, num(&report, "totals.requests"));
    // One entry and one tally per address: a 20 s flap holds what a steady run does.
    let rss = num(&report, "process.peak_rss_bytes");
    assert!(rss < 96.0 * 1024.0 * 1024.0, "peak RSS {rss}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.len() < 200_000, "report of {} bytes", text.len());
}

/// A name whose 40 backends all refuse connections logs one "probe failed" line a minute for
/// the target, not one per backend.
#[test]
fn the_agent_logs_a_failing_fleet_once_per_target() {
    let dir = tempfile::tempdir().unwrap();
    let hosts: String = (1..=40)
        .map(|i| format!("127.0.2.{i} dead.fleet.test\n"))
        .collect();
    let dns = Dnsmasq::start(dir.path(), &hosts, &[]);
    let port = free_port();
    let config = scenario(
        dir.path(),
        "agent.toml",
        &format!(
            "[[targets]]\nname = \"dead\"\naddress = \"dns://{}/dead.fleet.test:{port}\"\ninterval = \"200ms\"\ntimeout = \"300ms\"\n",
            dns.server()
        ),
    );
    let log = dir.path().join("agent.log");
    let mut agent = std::process::Command::new(bin())
        .args([
            "agent",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(std::fs::File::create(dir.path().join("agent.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    terminate(&agent);
    let _ = agent.wait();
    let text = std::fs::read_to_string(&log).unwrap()
        + &std::fs::read_to_string(dir.path().join("agent.out")).unwrap();
    let lines = text.lines().filter(|l| l.contains("probe failed")).count();
    assert_eq!(lines, 1, "one line for the target in 4 s:\n{text}");
}

/// A DNS server that answers A queries (127.0.0.1) for half a second from the first one, and
/// none after that.
fn answers_at_first_dns() -> SocketAddr {
    let mut first: Option<Instant> = None;
    dns_server(move |_, kind| {
        let since = *first.get_or_insert_with(Instant::now);
        (since.elapsed() <= Duration::from_millis(500) && kind == RecordType::A)
            .then(|| vec![RData::A(A::new(127, 0, 0, 1))])
    })
}

/// A resolution still waiting for the DNS server when the run ends is counted as failed
/// (every resolution counted is a success or a failure).
#[test]
fn a_resolution_pending_at_the_end_of_a_run_is_counted_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let py = Server::python(&[]);
    let dns = answers_at_first_dns();
    let s = scenario(
        dir.path(),
        "pending.toml",
        &format!(
            r#"
name = "pending"
kind = "unary"
[target]
address = "dns://{dns}/once.test:{port}"
resolve_every = "200ms"
connect_timeout = "10s"
[call]
method = "testing.echo.v1.Echo/Say"
data = {{ message = "hi" }}
[load]
rate = 50
duration = "1s"
warmup = "0s"
"#,
            port = py.port
        ),
    );
    let r = run_report(dir.path(), &s);
    let res = &r["resolution"];
    assert_eq!(num(&r, "totals.errors"), 0.0, "{}", r["errors"]);
    // The one at the start succeeded; the one waiting at the end failed.
    assert!(res["resolutions"].as_f64().unwrap() >= 2.0, "{res}");
    assert_eq!(res["failures"].as_f64(), Some(1.0), "{res}");
    assert!(
        res["last_failure"]
            .as_str()
            .unwrap()
            .contains("when the run ended"),
        "{res}"
    );
}
