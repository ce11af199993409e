//! Fleets: a target named by DNS (dnsmasq, a real DNS server, on a loopback port) whose
//! backends are Python grpcio servers on 127.0.0.2, 127.0.0.3, … — load spread over them,
//! following the name as it changes mid-run, every backend's count in the report equal to
//! what that server counted.

mod common;

use common::*;
use serde_json::Value;

fn hosts_file(name: &str, ips: &[&str]) -> String {
    ips.iter().map(|ip| format!("{ip} {name}\n")).collect()
}

/// The report's entry for the backend at `ip`.
fn backend<'r>(report: &'r Value, ip: &str) -> &'r Value {
    report["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| {
            b["address"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{ip}:"))
        })
        .unwrap_or_else(|| panic!("no backend {ip} in {}", report["backends"]))
}

/// Every backend's requests equal its server's count, and they sum to the totals.
fn assert_counts_match(report: &Value, counts: &[(&str, Value)], key: &str) {
    let mut sum = 0.0;
    for b in report["backends"].as_array().unwrap() {
        sum += b["requests"].as_f64().unwrap();
    }
    assert_eq!(
        sum,
        num(report, "totals.requests"),
        "{}",
        report["backends"]
    );
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
    let dns = Dnsmasq::start(dir.path(), &hosts_file("pool.fleet.test", &ips[..2]), &[]);
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
    let worst = report["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["latency"]["corrected"]["p99_us"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(num(&report, "backend_worst.p99_us"), worst);

    // The summary and the HTML page show the table, the slowest marked.
    let html = dir.path().join("fleet.html");
    let shown = loadagent(&[
        "report",
        out.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    let summary = text(&shown);
    assert_eq!(shown.status.code(), Some(0), "{summary}");
    for ip in ips {
        assert!(summary.contains(&format!("{ip}:{port}")), "{summary}");
    }
    assert!(
        summary.contains("\n  * 127.0.0."),
        "the slowest is marked: {summary}"
    );
    assert!(
        summary.contains("resolved") && summary.contains("0 failed"),
        "{summary}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<h2>Backends</h2>") && page.contains(&format!("{}:{port}", ips[2])));

    // Two reports merged: one entry per address, counts added.
    let merged = dir.path().join("merged.json");
    let m = loadagent(&[
        "merge",
        out.to_str().unwrap(),
        out.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(m.status.code(), Some(0), "{}", text(&m));
    let merged: Value = serde_json::from_str(&std::fs::read_to_string(&merged).unwrap()).unwrap();
    assert_eq!(merged["backends"].as_array().unwrap().len(), 3);
    for ip in ips {
        assert_eq!(
            backend(&merged, ip)["requests"].as_f64().unwrap(),
            2.0 * backend(&report, ip)["requests"].as_f64().unwrap()
        );
    }
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
    // The agent's config: a bad name is a config problem (exit 2, file:line, key).
    let config = scenario(
        dir.path(),
        "agent.toml",
        "[[targets]]\nname = \"x\"\naddress = \"dns+srv:///x.fleet.test\"\n\n[[targets]]\nname = \"y\"\naddress = \"127.0.0.1:1\"\nresolve_every = \"5s\"\n",
    );
    let out = loadagent(&["agent", "--check-config", config.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("agent.toml:3:")
            && t.contains("targets[0].address")
            && t.contains("an SRV name is"),
        "{t}"
    );
    assert!(
        t.contains("targets[1].resolve_every") && t.contains("applies to a DNS name only"),
        "{t}"
    );
}

#[test]
fn tls_to_a_fleet_verifies_the_dns_name_not_the_ip() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let ips = ["127.0.0.7", "127.0.0.8"];
    let (cert, key) = (pki.path("fleet.pem"), pki.path("fleet.key"));
    let (port, servers) = backends_with(&ips, &["--tls-cert", &cert, "--tls-key", &key]);
    let dns = Dnsmasq::start(dir.path(), &hosts_file("pool.fleet.test", &ips), &[]);
    let address = format!("dns://{}/pool.fleet.test:{port}", dns.server());
    let tls = format!("[target.tls]\nca = {:?}\n", pki.path("ca.pem"));
    // The certificate names pool.fleet.test only: a client verifying an IP would fail.
    let unary = scenario(
        dir.path(),
        "unary.toml",
        &format!(
            "{}{tls}",
            echo_scenario(
                &address,
                "data = { message = \"tls\" }",
                "requests = 20\nconcurrency = 2"
            )
        ),
    );
    let r = run_report(dir.path(), &unary);
    assert_eq!(
        r["status_codes"],
        serde_json::json!({"OK": 20}),
        "{}",
        r["errors"]
    );
    for ip in ips {
        assert_eq!(
            backend(&r, ip)["requests"].as_f64().unwrap(),
            10.0,
            "{}",
            r["backends"]
        );
    }
    // A threshold on the worst backend is judged like any other (exit 3 when it fails).
    let strict = scenario(
        dir.path(),
        "strict.toml",
        &std::fs::read_to_string(&unary).unwrap().replace(
            "[target.tls]",
            "[thresholds]\n\"backend_worst.p99_us\" = \"< 1us\"\n[target.tls]",
        ),
    );
    let failed = loadagent(&["run", "-q", strict.to_str().unwrap()]);
    assert_eq!(failed.status.code(), Some(3), "{}", text(&failed));
    assert!(
        text(&failed).contains("backend_worst.p99_us"),
        "{}",
        text(&failed)
    );
    // A handshake storm: a new connection per iteration, each to the next backend.
    let storm = scenario(
        dir.path(),
        "storm.toml",
        &format!(
            "name = \"storm\"\nkind = \"tls_handshake\"\n[target]\naddress = \"{address}\"\n{tls}[load]\nrequests = 10\nconcurrency = 1\n"
        ),
    );
    let r = run_report(dir.path(), &storm);
    assert_eq!(num(&r, "totals.ok"), 10.0, "{}", r["handshake_errors"]);
    for ip in ips {
        assert_eq!(
            backend(&r, ip)["requests"].as_f64().unwrap(),
            5.0,
            "{}",
            r["backends"]
        );
    }
    drop(servers);
}

/// The value of `series` in the agent's /metrics now.
fn metric(agent: &str, series: &str) -> Option<f64> {
    let (_, body) = http_get(agent, "/metrics");
    sample(&body, series)
}

fn expect_metric(agent: &str, series: &str, want: Option<f64>) -> Result<(), String> {
    match metric(agent, series) {
        v if v == want => Ok(()),
        other => Err(format!("{series} is {other:?}, want {want:?}")),
    }
}

#[test]
fn the_agent_probes_each_backend_of_a_name_and_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let ips = ["127.0.0.9", "127.0.0.10", "127.0.0.11"];
    let (port, mut servers) = backends(&ips);
    let dns = Dnsmasq::start(dir.path(), &hosts_file("pool.fleet.test", &ips), &[]);
    let agent = start_agent(
        dir.path(),
        &format!(
            "[[targets]]\nname = \"pool\"\naddress = \"dns://{}/pool.fleet.test:{port}\"\ninterval = \"300ms\"\ntimeout = \"500ms\"\nresolve_every = \"300ms\"\n",
            dns.server()
        ),
    );
    let a = agent.address();
    let success =
        |ip: &str| format!("loadagent_probe_success{{backend=\"{ip}:{port}\",target=\"pool\"}}");
    for ip in ips {
        eventually(15, || expect_metric(&a, &success(ip), Some(1.0)));
    }
    eventually(5, || {
        expect_metric(&a, "loadagent_probe_backends{target=\"pool\"}", Some(3.0))
    });
    let (code, ready) = http_get(&a, "/readyz");
    assert_eq!((code, ready.trim()), (200, "ready"));
    let (_, listed) = http_get(&a, "/api/v1/targets");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let mut backends: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["backend"].as_str().unwrap())
        .collect();
    backends.sort_unstable();
    let mut want: Vec<String> = ips.iter().map(|ip| format!("{ip}:{port}")).collect();
    want.sort_unstable();
    assert_eq!(backends, want, "{listed}");

    // One backend stops: its probe reads 0, the others still 1.
    let stopped = servers.remove(0);
    terminate(&stopped.child);
    eventually(15, || expect_metric(&a, &success(ips[0]), Some(0.0)));
    for ip in &ips[1..] {
        expect_metric(&a, &success(ip), Some(1.0)).unwrap();
    }

    // It leaves the name: its series go, the others stay.
    dns.set_hosts(&hosts_file("pool.fleet.test", &ips[1..]));
    eventually(15, || expect_metric(&a, &success(ips[0]), None));
    eventually(5, || {
        expect_metric(&a, "loadagent_probe_backends{target=\"pool\"}", Some(2.0))
    });
    let (_, body) = http_get(&a, "/metrics");
    assert!(
        !body.contains(&format!("{}:{port}", ips[0])),
        "every series of the backend that left is gone:\n{body}"
    );

    // DNS goes away: failures are counted, the last known backends are still probed.
    let before = metric(
        &a,
        "loadagent_probe_resolutions_total{result=\"failure\",target=\"pool\"}",
    )
    .unwrap_or(0.0);
    drop(dns);
    eventually(15, || {
        let now = metric(
            &a,
            "loadagent_probe_resolutions_total{result=\"failure\",target=\"pool\"}",
        )
        .unwrap_or(0.0);
        if now >= before + 2.0 {
            Ok(())
        } else {
            Err(format!("{now} resolution failures"))
        }
    });
    for ip in &ips[1..] {
        expect_metric(&a, &success(ip), Some(1.0)).unwrap();
    }
    expect_metric(&a, "loadagent_probe_backends{target=\"pool\"}", Some(2.0)).unwrap();
    let (_, body) = http_get(&a, "/metrics");
    assert!(
        sample(
            &body,
            "loadagent_errors_total{component=\"probe\",kind=\"resolve\"}"
        )
        .is_some_and(|n| n >= 2.0),
        "{body}"
    );
    drop(servers);
}

#[test]
fn a_name_from_the_systems_resolver_configuration() {
    // `dns:///` asks what /etc/resolv.conf and /etc/hosts say: localhost is in every hosts
    // file (as 127.0.0.1, and on some machines ::1 too, where nothing listens here).
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&[]);
    let name = format!("dns:///localhost:{}", server.port);
    let s = scenario(
        dir.path(),
        "system.toml",
        &echo_scenario(
            &name,
            "data = { message = \"hi\" }",
            "requests = 30\nconcurrency = 3",
        ),
    );
    let r = run_report(dir.path(), &s);
    let counts = server.stop_with_counts();
    assert_eq!(
        r["status_codes"],
        serde_json::json!({"OK": 30}),
        "{}",
        r["errors"]
    );
    assert_eq!(backend(&r, "127.0.0.1")["requests"].as_f64().unwrap(), 30.0);
    assert_eq!(counts["requests"].as_f64().unwrap(), 30.0);
    assert_eq!(r["resolution"]["name"], name.as_str());
}
