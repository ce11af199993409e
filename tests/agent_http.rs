//! The agent's HTTP server against hostile and picky clients: silent sockets beyond its
//! descriptor limit, half-sent requests, and a real Prometheus scraping it over mutual TLS
//! with basic auth configured in the exporters' web config format (checked by promtool).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The agent with at most `nofile` descriptors (soft and hard, so it cannot raise them).
fn agent_limited(dir: &Path, nofile: u32, extra: &[&str]) -> Server {
    // A module, so that /probe answers too (the web config covers it like every route).
    let config = scenario(dir, "agent.toml", "[modules.health]\ntimeout = \"200ms\"\n");
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}:{nofile}"))
        .arg(bin())
        .args(["agent", "--config", config.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .args(extra);
    Server::try_start(cmd, "listening on ").expect("the agent starts (prlimit: util-linux)")
}

fn raise_own_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

#[test]
fn silent_sockets_beyond_the_descriptor_limit_cannot_starve_scrapes() {
    raise_own_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let agent = agent_limited(dir.path(), 1024, &[]);
    let a = agent.address();
    // 1,100 connections that never send a byte: more than the agent has descriptors.
    let mut silent = Vec::new();
    for _ in 0..1100 {
        match TcpStream::connect(&a) {
            Ok(s) => silent.push(s),
            Err(e) => panic!("connect {}: {e}", silent.len()),
        }
    }
    // Scrapes still get whole answers, while every silent socket is still open.
    for _ in 0..5 {
        let (code, body) = http_get(&a, "/metrics");
        assert_eq!(code, 200);
        assert!(body.contains("loadagent_build_info"), "a whole answer");
    }
    let (_, m) = http_get(&a, "/metrics");
    let shed = sample(
        &m,
        "loadagent_errors_total{component=\"http\",kind=\"shed\"}",
    )
    .unwrap_or(0.0);
    assert!(shed >= 800.0, "the oldest silent sockets were shed: {shed}");
    // The agent closed them: reading one of the first gives end of file, not a hang.
    let mut first = silent.remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(first.read(&mut [0u8; 16]).unwrap_or(0), 0);
    drop(silent);
    assert_eq!(http_get(&a, "/healthz").0, 200);
}

#[test]
fn half_sent_requests_and_idle_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent_limited(dir.path(), 4096, &[]);
    let a = agent.address();
    let mut half = TcpStream::connect(&a).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut idle = TcpStream::connect(&a).unwrap();
    for s in [&mut half, &mut idle] {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // Closed by the agent (end of file), well before the test's own read timeout.
    let _ = half.read_to_end(&mut buf);
    let _ = idle.read_to_end(&mut Vec::new());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(8) && waited < Duration::from_secs(25),
        "closed after the 10 s header timeout, not before or never: {waited:?}"
    );
    let (_, m) = http_get(&a, "/metrics");
    let timed_out = sample(
        &m,
        "loadagent_errors_total{component=\"http\",kind=\"header_timeout\"}",
    )
    .unwrap_or(0.0);
    assert!(timed_out >= 1.0, "counted: {timed_out}");
}

#[test]
fn a_real_prometheus_scrapes_over_mutual_tls_with_basic_auth_from_a_web_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let hash = bcrypt::hash("scrape-s3cret", 6).unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS12\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\nbasic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .unwrap();
    // Prometheus' own checker reads the same file: the format is the exporters' one.
    let checked = Command::new("promtool")
        .args(["check", "web-config", web.to_str().unwrap()])
        .output()
        .expect("promtool (Debian package prometheus)");
    assert!(
        checked.status.success(),
        "promtool check web-config: {}",
        text(&checked)
    );
    let out = loadagent(&[
        "agent",
        "--check-config",
        scenario(dir.path(), "agent.toml", "").to_str().unwrap(),
        "--web.config.file",
        web.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let agent = agent_limited(
        dir.path(),
        4096,
        &["--web.config.file", web.to_str().unwrap()],
    );
    let a = agent.address();
    // Plain HTTP gets no metrics.
    let mut plain = TcpStream::connect(&a).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    write!(plain, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("loadagent_build_info"),
        "no metrics over plain HTTP"
    );

    let job = |name: &str, password: &str, cert: bool, path: &str| {
        let cert = if cert {
            format!(
                "      cert_file: {}\n      key_file: {}\n",
                pki.path("client.pem"),
                pki.path("client.key")
            )
        } else {
            String::new()
        };
        let probe = if path == "/probe" {
            // What is probed does not matter here: the scrape succeeds whatever the probe says.
            "    metrics_path: /probe\n    params:\n      module: [health]\n      target: ['127.0.0.1:1']\n"
        } else {
            ""
        };
        format!("  - job_name: {name}\n    scheme: https\n{probe}    tls_config:\n      ca_file: {}\n      server_name: localhost\n{cert}    basic_auth:\n      username: prometheus\n      password: {password}\n    static_configs:\n      - targets: [\"{a}\"]\n", pki.path("ca.pem"))
    };
    let prometheus = Prometheus::start(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n{}{}{}{}{}",
            job("good", "scrape-s3cret", true, "/metrics"),
            job("wrong_password", "guess", true, "/metrics"),
            job("no_client_cert", "scrape-s3cret", false, "/metrics"),
            job("probe_good", "scrape-s3cret", true, "/probe"),
            job("probe_wrong_password", "guess", true, "/probe"),
        ),
    );
    let up = |job: &str| -> Result<f64, String> {
        let result = prometheus.query(&format!("up{{job=\"{job}\"}}"))?;
        result[0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no sample yet: {result}"))
    };
    for job in ["good", "probe_good"] {
        eventually(40, || match up(job) {
            Ok(1.0) => Ok(()),
            other => Err(format!("{job}: {other:?}")),
        });
    }
    for job in ["wrong_password", "no_client_cert", "probe_wrong_password"] {
        eventually(20, || match up(job) {
            Ok(0.0) => Ok(()),
            other => Err(format!("{job}: {other:?}")),
        });
    }
    let result = prometheus.query("loadagent_build_info").unwrap();
    assert!(result.to_string().contains("\"job\":\"good\""), "{result}");
    let probed = prometheus.query("probe_success").unwrap();
    assert!(
        probed.to_string().contains("\"job\":\"probe_good\""),
        "{probed}"
    );
    assert!(
        !probed.to_string().contains("probe_wrong_password"),
        "{probed}"
    );
}

#[test]
fn bad_web_config_files_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = scenario(dir.path(), "agent.toml", "");
    for (text, key) in [
        ("basic_auth_users:\n  prometheus: plaintext\n", "basic_auth_users.prometheus"),
        ("tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n", "tls_server_config.cert_file"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n", "tls_server_config"),
        ("tls_srever_config: {}\n", "tls_srever_config"),
    ] {
        let web = scenario(dir.path(), "web.yml", text);
        let out = loadagent(&[
            "agent",
            "--check-config",
            config.to_str().unwrap(),
            "--web.config.file",
            web.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{text}: {}", common::text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(key),
            "{key}: {}",
            common::text(&out)
        );
    }
}
