//! Fleets: a target named by DNS (dnsmasq, a real DNS server, on a loopback port) whose
//! backends are Python grpcio servers on 127.0.0.2, 127.0.0.3, … — load spread over them,
//! following the name as it changes mid-run, every backend's count in the report equal to
//! what that server counted.

mod common;

use common::*;
use serde_json::Value;

/// One grpcio echo server per address, all on one port (A records carry no port).
fn backends(hosts: &[&str]) -> (u16, Vec<Server>) {
    for _ in 0..20 {
        let port = free_port();
        let free = hosts
            .iter()
            .all(|h| std::net::TcpListener::bind((*h, port)).is_ok());
        if !free {
            continue;
        }
        let servers = hosts
            .iter()
            .map(|h| Server::python(&["--host", h, "--port", &port.to_string()]))
            .collect();
        return (port, servers);
    }
    panic!("no port free on every backend address");
}

fn hosts_file(name: &str, ips: &[&str]) -> String {
    ips.iter().map(|ip| format!("{ip} {name}\n")).collect()
}

/// The report's entry for the backend at `ip`.
fn backend<'r>(report: &'r Value, ip: &str) -> &'r Value {
    report["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"].as_str().unwrap().starts_with(&format!("{ip}:")))
        .unwrap_or_else(|| panic!("no backend {ip} in {}", report["backends"]))
}

/// Every backend's requests equal its server's count, and they sum to the totals.
fn assert_counts_match(report: &Value, counts: &[(&str, Value)], key: &str) {
    let mut sum = 0.0;
    for b in report["backends"].as_array().unwrap() {
        sum += b["requests"].as_f64().unwrap();
    }
    assert_eq!(sum, num(report, "totals.requests"), "{}", report["backends"]);
    for (ip, c) in counts {
        let served = c[key].as_f64().unwrap_or(0.0);
        assert_eq!(
            backend(report, ip)["requests"].as_f64().unwrap(),
            served,
            "{ip}: the report and the server disagree ({})",
            report["backends"]
        );
    }
}

#[test]
fn load_follows_a_dns_name_as_backends_join_and_leave() {
    let dir = tempfile::tempdir().unwrap();
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let (port, servers) = backends(&ips);
    let dns = Dnsmasq::start(
        dir.path(),
        &hosts_file("pool.fleet.test", &ips[..2]),
        &[],
    );
    let s = scenario(
        dir.path(),
        "fleet.toml",
        &format!(
            r#"
name = "fleet"
kind = "unary"
[target]
address = "dns://{server}/pool.fleet.test:{port}"
resolve_every = "200ms"
[call]
method = "testing.echo.v1.Echo/Say"
data = {{ message = "hi" }}
[load]
rate = 100
duration = "6s"
connections = 2
"#,
            server = dns.server()
        ),
    );
    let out = dir.path().join("report.json");
    let run = spawn_run(&s, &out);
    // Once the run is under way: 127.0.0.2 leaves, 127.0.0.4 joins.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    dns.set_hosts(&hosts_file("pool.fleet.test", &ips[1..]));
    let report = finish_run(run, &out);
    let counts: Vec<(&str, Value)> = ips
        .iter()
        .copied()
        .zip(servers.into_iter().map(Server::stop_with_counts))
        .collect();
    assert_counts_match(&report, &counts, "requests");

    let (gone, stayed, joined) = (
        backend(&report, ips[0]),
        backend(&report, ips[1]),
        backend(&report, ips[2]),
    );
    assert!(gone["left_s"].as_f64().is_some(), "{gone}");
    assert!(stayed["left_s"].is_null() && joined["left_s"].is_null());
    assert!(joined["joined_s"].as_f64().unwrap() > 0.5, "{joined}");
    for b in [gone, stayed, joined] {
        assert!(b["requests"].as_f64().unwrap() > 20.0, "{b}");
        assert_eq!(b["errors"].as_f64().unwrap(), 0.0, "{b}");
        // `[load] connections` is per backend.
        assert_eq!(b["connections"].as_f64().unwrap(), 2.0, "{b}");
    }
    // The one that stayed had load all along: about as much as the two others together.
    let (g, st, j) = (
        gone["requests"].as_f64().unwrap(),
        stayed["requests"].as_f64().unwrap(),
        joined["requests"].as_f64().unwrap(),
    );
    assert!((st - (g + j)).abs() <= 0.1 * st, "{g} {st} {j}");
    assert_eq!(report["resolution"]["failures"].as_f64().unwrap(), 0.0);
    assert!(report["resolution"]["resolutions"].as_f64().unwrap() >= 10.0);
    assert_eq!(report["backend_worst"]["error_rate"].as_f64().unwrap(), 0.0);
}

#[test]
fn srv_records_spread_streams_round_robin_and_pick_first_sticks() {
    let dir = tempfile::tempdir().unwrap();
    let ips = ["127.0.0.5", "127.0.0.6"];
    let (port, servers) = backends(&ips);
    let dns = Dnsmasq::start(
        dir.path(),
        &hosts_file("pool.fleet.test", &ips),
        &[("_grpc._tcp.fleet.test", "pool.fleet.test", port)],
    );
    let stream = |balance: &str| {
        format!(
            r#"
name = "srv"
kind = "bidi_stream"
[target]
address = "dns+srv://{server}/_grpc._tcp.fleet.test"
balance = "{balance}"
[call]
method = "testing.echo.v1.Echo/Chat"
data = {{ message = "hi" }}
[load]
requests = 40
concurrency = 4
[stream]
messages = 3
"#,
            server = dns.server()
        )
    };
    let rr = run_report(
        dir.path(),
        &scenario(dir.path(), "rr.toml", &stream("round_robin")),
    );
    let per: Vec<f64> = ips
        .iter()
        .map(|ip| backend(&rr, ip)["requests"].as_f64().unwrap())
        .collect();
    assert_eq!(per.iter().sum::<f64>(), 40.0);
    // Round robin: the streams alternate over the two backends.
    assert!((per[0] - per[1]).abs() <= 4.0, "{per:?}");

    let pf = run_report(
        dir.path(),
        &scenario(dir.path(), "pf.toml", &stream("pick_first")),
    );
    assert_eq!(backend(&pf, ips[0])["requests"].as_f64().unwrap(), 40.0);
    assert_eq!(backend(&pf, ips[1])["requests"].as_f64().unwrap(), 0.0);

    let counts: Vec<(&str, Value)> = ips
        .iter()
        .copied()
        .zip(servers.into_iter().map(Server::stop_with_counts))
        .collect();
    for (ip, c) in &counts {
        let reported = backend(&rr, ip)["requests"].as_f64().unwrap()
            + backend(&pf, ip)["requests"].as_f64().unwrap();
        assert_eq!(c["streams"].as_f64().unwrap_or(0.0), reported, "{ip}");
    }
}

#[test]
fn names_that_do_not_resolve_fail_with_the_key_and_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let dns = Dnsmasq::start(dir.path(), "127.0.0.2 one.fleet.test\n", &[]);
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent = silent.local_addr().unwrap();
    let run = |address: &str| {
        let s = scenario(
            dir.path(),
            "bad.toml",
            &echo_scenario(address, "", "requests = 1")
                .replace("[target]", "[target]\nconnect_timeout = \"1s\""),
        );
        loadagent(&["validate", s.to_str().unwrap()])
    };
    for (address, code, says) in [
        ("http://one.fleet.test:80", 2, "unknown scheme \"http\""),
        ("dns:///one..test:80", 2, "empty label"),
        ("dns+srv:///one.fleet.test", 2, "an SRV name is"),
        (
            &format!("dns+srv://{}/_grpc._tcp.none.fleet.test", dns.server()),
            1,
            "no records",
        ),
        (
            &format!("dns://{}/none.fleet.test:80", dns.server()),
            1,
            "no records",
        ),
        (
            &format!("dns://{silent}/one.fleet.test:80"),
            1,
            "did not answer",
        ),
    ] {
        let out = run(address);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(code), "{address}: {t}");
        assert!(t.contains("target.address"), "{address}: {t}");
        assert!(t.contains(says), "{address}: {t}");
    }
}
