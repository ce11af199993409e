//! `loadagent agent`: probes a Python grpcio health server (this project did not write it)
//! whose status the test flips, kills and restarts; /metrics passes promtool; a real
//! Prometheus scrapes it; bad configs exit 2 with every problem.

mod common;

use std::process::Command;

use common::*;

fn expect(agent: &str, series: &str, want: f64) -> Result<(), String> {
    let (_, body) = http_get(agent, "/metrics");
    match sample(&body, series) {
        Some(v) if v == want => Ok(()),
        other => Err(format!("{series} is {other:?}, want {want}")),
    }
}

#[test]
fn metrics_follow_health_changes_kills_and_restarts_in_check_and_watch_modes() {
    let dir = tempfile::tempdir().unwrap();
    let mut py = Server::python(&[]);
    let port = py.port;
    let config = format!(
        "[[targets]]\nname = \"py-check\"\naddress = \"127.0.0.1:{port}\"\ninterval = \"300ms\"\ntimeout = \"500ms\"\n\n[[targets]]\nname = \"py-watch\"\naddress = \"127.0.0.1:{port}\"\nmode = \"watch\"\ninterval = \"300ms\"\n"
    );
    let agent = start_agent(dir.path(), &config);
    let a = agent.address();
    for t in ["py-check", "py-watch"] {
        eventually(10, || {
            expect(
                &a,
                &format!("loadagent_probe_success{{target=\"{t}\"}}"),
                1.0,
            )
        });
    }
    let (code, ready) = http_get(&a, "/readyz");
    assert_eq!((code, ready.trim()), (200, "ready"));

    py.command("NOT_SERVING");
    py.wait_for_line("OK NOT_SERVING", || false);
    for t in ["py-check", "py-watch"] {
        eventually(10, || {
            expect(&a, &format!("loadagent_probe_healthcheck_status{{serving_status=\"NOT_SERVING\",target=\"{t}\"}}"), 1.0)
        });
        eventually(10, || {
            expect(
                &a,
                &format!("loadagent_probe_success{{target=\"{t}\"}}"),
                0.0,
            )
        });
    }
    py.command("SERVING");
    py.wait_for_line("OK SERVING", || false);
    for t in ["py-check", "py-watch"] {
        eventually(10, || {
            expect(
                &a,
                &format!("loadagent_probe_success{{target=\"{t}\"}}"),
                1.0,
            )
        });
    }

    // Killed: both probes fail and the agent keeps running; restarted on the same port:
    // both recover (watch reconnects with backoff).
    py.child.kill().unwrap();
    py.child.wait().unwrap();
    for t in ["py-check", "py-watch"] {
        eventually(10, || {
            expect(
                &a,
                &format!("loadagent_probe_success{{target=\"{t}\"}}"),
                0.0,
            )
        });
    }
    assert_eq!(http_get(&a, "/healthz").0, 200, "the agent survives");
    let mut restarted = None;
    for _ in 0..50 {
        if let Some(s) = Server::try_start(
            {
                let mut c = Command::new("python3");
                c.arg(repo().join("tests/python/echo_server.py"))
                    .args(["--port", &port.to_string()]);
                c
            },
            "PORT ",
        ) {
            restarted = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _restarted = restarted.expect("the server restarts on its port");
    for t in ["py-check", "py-watch"] {
        eventually(15, || {
            expect(
                &a,
                &format!("loadagent_probe_success{{target=\"{t}\"}}"),
                1.0,
            )
        });
    }
    let (_, targets) = http_get(&a, "/api/v1/targets");
    let targets: serde_json::Value = serde_json::from_str(&targets).unwrap();
    assert_eq!(targets.as_array().unwrap().len(), 2);
    assert!(
        targets
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["success"] == true),
        "{targets}"
    );
}

#[test]
fn metrics_pass_promtool_and_a_real_prometheus_scrapes_them() {
    let dir = tempfile::tempdir().unwrap();
    let target = Server::reference_target();
    let agent = start_agent(
        dir.path(),
        &format!(
            "[[targets]]\nname = \"bench\"\naddress = \"{}\"\ninterval = \"500ms\"\n",
            target.address()
        ),
    );
    let a = agent.address();
    eventually(10, || {
        expect(&a, "loadagent_probe_success{target=\"bench\"}", 1.0)
    });
    let (_, text) = http_get(&a, "/metrics");
    for name in [
        "loadagent_build_info",
        "loadagent_node_info",
        "loadagent_host_memory_total_bytes",
        "loadagent_process_resident_memory_bytes",
        "loadagent_probe_latency_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert_promtool_accepts(&text);

    // A real Prometheus scraping the agent; the query API returns the probe's metric.
    let prometheus = Prometheus::start(
        dir.path(),
        &format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: loadagent\n    static_configs:\n      - targets: [\"{a}\"]\n"),
    );
    eventually(30, || {
        let result = prometheus.query("loadagent_probe_success")?.to_string();
        if result.contains("\"target\":\"bench\"") && result.contains("\"1\"]") {
            Ok(())
        } else {
            Err(result)
        }
    });
}

#[test]
fn bad_configs_exit_2_listing_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[[targets]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\ninterval = \"often\"\ncolour = \"red\"\n\n[[targets]]\nname = \"a\"\naddress = \"nowhere\"\ntls = { ca = \"missing.pem\", versions = [\"0.9\"] }\n\n[[targets]]\nname = \"c\"\naddress = \"127.0.0.1:2\"\ntls = { ca = \"unreadable.pem\" }\n";
    let path = scenario(dir.path(), "bad-agent.toml", config);
    let out = loadagent(&["agent", "--check-config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for (line, words) in [
        (4, "not a duration"),
        (5, "unknown key"),
        (8, "a second target named \"a\""),
        (
            9,
            "\"nowhere\" is not an address (no port); write \"host:port\"",
        ),
        (10, "is not a TLS version"),
    ] {
        assert!(
            err.contains(&format!("{}:{line}:", path.display())) && err.contains(words),
            "line {line} `{words}`:\n{err}"
        );
    }
    let good = scenario(dir.path(), "good.toml", "listen = \"127.0.0.1:0\"\n[[targets]]\nname = \"x\"\naddress = \"127.0.0.1:50051\"\nmode = \"watch\"\n");
    let out = loadagent(&["agent", "--check-config", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn sighup_reloads_a_good_config_and_rejects_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let target = Server::reference_target();
    let agent = start_agent(
        dir.path(),
        &format!(
            "[[targets]]\nname = \"first\"\naddress = \"{}\"\ninterval = \"300ms\"\n",
            target.address()
        ),
    );
    let a = agent.address();
    eventually(10, || {
        expect(&a, "loadagent_probe_success{target=\"first\"}", 1.0)
    });
    let hup = || {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(agent.child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap()
    };

    scenario(dir.path(), "agent.toml", &format!("[[targets]]\nname = \"second\"\naddress = \"{}\"\ninterval = \"300ms\"\nmode = \"watch\"\n", target.address()));
    hup();
    eventually(10, || {
        expect(&a, "loadagent_probe_success{target=\"second\"}", 1.0)
    });
    let (_, metrics) = http_get(&a, "/metrics");
    assert!(
        !metrics.contains("target=\"first\""),
        "the removed target's series are gone"
    );

    scenario(
        dir.path(),
        "agent.toml",
        "[[targets]]\nname = \"broken\"\ninterval = \"never\"\n",
    );
    hup();
    eventually(10, || {
        expect(
            &a,
            "loadagent_errors_total{component=\"config\",kind=\"reload_rejected\"}",
            1.0,
        )
    });
    assert_eq!(http_get(&a, "/healthz").0, 200);
    let (_, targets) = http_get(&a, "/api/v1/targets");
    assert!(
        targets.contains("\"second\"") && !targets.contains("broken"),
        "the old config keeps running: {targets}"
    );

    // An empty file (one being written) is refused too, rather than dropping every target.
    scenario(dir.path(), "agent.toml", "");
    hup();
    eventually(10, || {
        expect(
            &a,
            "loadagent_errors_total{component=\"config\",kind=\"reload_rejected\"}",
            2.0,
        )
    });
    let (_, targets) = http_get(&a, "/api/v1/targets");
    assert!(
        targets.contains("\"second\""),
        "the old config keeps running: {targets}"
    );

    // OpenMetrics when asked.
    let accept = ("Accept", "application/openmetrics-text; version=1.0.0");
    let (_, head, body) = http_request(&a, "/metrics", &[accept]).unwrap();
    assert!(
        head.contains("application/openmetrics-text") && body.trim_end().ends_with("# EOF"),
        "{head}\n{body}"
    );
}

fn proc_status(pid: u32, field: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn watched_processes_match_proc_by_pid_file_and_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // A child that burns a second of CPU, then waits; found through its pid file.
    let mut busy = Command::new("python3")
        .args([
            "-c",
            "import time\nt = time.time()\nwhile time.time() - t < 1.0: pass\ntime.sleep(120)",
        ])
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("busy.pid");
    std::fs::write(&pid_file, busy.id().to_string()).unwrap();
    // A child found by its (unique) name.
    let sleeper = dir.path().join("la-sleeper");
    std::fs::copy("/bin/sleep", &sleeper).unwrap();
    let mut named = Command::new(&sleeper).arg("120").spawn().unwrap();

    let agent = start_agent(
        dir.path(),
        &format!(
            "[host]\nprocesses = [{:?}, \"la-sleeper\"]\n",
            pid_file.display().to_string()
        ),
    );
    let a = agent.address();
    eventually(15, || {
        let (_, m) = http_get(&a, "/metrics");
        match sample(&m, "loadagent_process_cpu_seconds_total{process=\"busy\"}") {
            Some(v) if v >= 0.5 => Ok(()),
            other => Err(format!("busy child CPU {other:?}")),
        }
    });
    let (_, m) = http_get(&a, "/metrics");
    let pid = busy.id();
    let rss = sample(
        &m,
        "loadagent_process_resident_memory_bytes{process=\"busy\"}",
    )
    .unwrap();
    let proc_rss = proc_status(pid, "VmRSS:") * 1024.0;
    assert!(
        (rss - proc_rss).abs() <= proc_rss * 0.2,
        "RSS {rss} vs /proc {proc_rss}"
    );
    assert_eq!(
        sample(&m, "loadagent_process_threads{process=\"busy\"}"),
        Some(proc_status(pid, "Threads:"))
    );
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as f64;
    assert_eq!(
        sample(&m, "loadagent_process_open_fds{process=\"busy\"}"),
        Some(fds)
    );
    assert_eq!(
        sample(&m, "loadagent_process_threads{process=\"la-sleeper\"}"),
        Some(proc_status(named.id(), "Threads:"))
    );
    assert!(
        sample(
            &m,
            "loadagent_process_resident_memory_bytes{process=\"loadagent\"}"
        )
        .unwrap()
            > 1e6,
        "the agent itself"
    );
    let _ = busy.kill();
    let _ = named.kill();
    let _ = busy.wait();
    let _ = named.wait();
}

#[test]
fn perf_software_counters_increase_for_a_watched_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut spinner = Command::new("python3")
        .args([
            "-c",
            "import time\nt = time.time()\nwhile time.time() - t < 20: pass",
        ])
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("spinner.pid");
    std::fs::write(&pid_file, spinner.id().to_string()).unwrap();
    let agent = start_agent(
        dir.path(),
        &format!(
            "[host]\nprocesses = [{:?}]\n",
            pid_file.display().to_string()
        ),
    );
    let a = agent.address();
    let (_, m) = http_get(&a, "/metrics");
    assert_eq!(
        sample(&m, "loadagent_perf_event_supported{event=\"task_clock\"}"),
        Some(1.0),
        "software counters are allowed here"
    );
    let clock = |m: &str| {
        sample(
            m,
            "loadagent_perf_events_total{event=\"task_clock\",process=\"spinner\"}",
        )
        .unwrap_or(0.0)
    };
    let first = clock(&m);
    eventually(10, || {
        let (_, m) = http_get(&a, "/metrics");
        let now = clock(&m);
        if now > first + 1e8 {
            Ok(())
        } else {
            Err(format!("task_clock {first} → {now}"))
        }
    });
    let _ = spinner.kill();
    let _ = spinner.wait();
}

#[test]
fn tls_probes_export_the_certificate_expiry_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let (py, cert_path) = Server::python_tls_until_2030(dir.path());
    let agent = start_agent(
        dir.path(),
        &format!(
            "[[targets]]\nname = \"tls\"\naddress = \"{}\"\ninterval = \"300ms\"\ntls = {{ ca = {:?}, server_name = \"localhost\" }}\n",
            py.address(),
            cert_path.display().to_string()
        ),
    );
    let a = agent.address();
    eventually(10, || {
        expect(&a, "loadagent_probe_success{target=\"tls\"}", 1.0)
    });
    eventually(5, || {
        expect(
            &a,
            "loadagent_probe_ssl_earliest_cert_expiry{target=\"tls\"}",
            1_893_456_000.0,
        )
    });
    eventually(5, || {
        expect(
            &a,
            "loadagent_probe_tls_version_info{target=\"tls\",version=\"TLSv1_3\"}",
            1.0,
        )
    });
    let (_, m) = http_get(&a, "/metrics");
    assert!(
        sample(
            &m,
            "loadagent_probe_duration_seconds{phase=\"tls\",target=\"tls\"}"
        )
        .is_some_and(|v| v > 0.0),
        "a tls phase"
    );
}

#[test]
fn scheduled_scenarios_run_and_export_their_results() {
    let dir = tempfile::tempdir().unwrap();
    scenario(
        dir.path(),
        "sched.toml",
        "name = \"sched\"\nkind = \"unary\"\n[target]\naddress = \"embedded\"\n[call]\nmethod = \"loadagent.bench.v1.Bench/Unary\"\ndata = { delay_ms = 2 }\n[load]\nrequests = 50\nconcurrency = 5\n[thresholds]\n\"error_rate\" = \"< 0.01\"\n",
    );
    let agent = start_agent(
        dir.path(),
        "[[schedules]]\nscenario = \"sched.toml\"\nevery = \"1s\"\n",
    );
    let a = agent.address();
    eventually(30, || {
        let (_, runs) = http_get(&a, "/api/v1/runs");
        let runs: serde_json::Value = serde_json::from_str(&runs).map_err(|e| e.to_string())?;
        match runs.as_array() {
            Some(list) if !list.is_empty() => Ok(()),
            _ => Err(format!("no runs yet: {runs}")),
        }
    });
    let (_, runs) = http_get(&a, "/api/v1/runs");
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    let first = &runs[0];
    assert_eq!(first["schema"], "loadagent.report/v1");
    assert_eq!(num(first, "totals.requests"), 50.0);
    let (_, m) = http_get(&a, "/metrics");
    let done = runs.as_array().unwrap().len() as f64;
    let ok = sample(
        &m,
        "loadagent_run_requests_total{scenario=\"sched\",status=\"OK\"}",
    )
    .unwrap();
    assert!(
        ok >= 50.0 * done && ok % 50.0 == 0.0,
        "{ok} OK requests for {done}+ runs"
    );
    let observed = sample(
        &m,
        "loadagent_run_latency_seconds_count{latency=\"uncorrected\",scenario=\"sched\"}",
    )
    .unwrap();
    // A scrape can fall between a run's counters and its histogram: allow one run's worth.
    assert!(
        observed % 50.0 == 0.0 && (observed - ok).abs() <= 50.0,
        "every request's latency is in the histogram: {observed} vs {ok}"
    );
    assert_eq!(
        sample(&m, "loadagent_run_success{scenario=\"sched\"}"),
        Some(1.0)
    );
    assert!(
        sample(
            &m,
            "loadagent_runs_total{outcome=\"ok\",scenario=\"sched\"}"
        )
        .unwrap()
            >= 1.0
    );

    // A schedule whose scenario does not load is a config problem.
    let bad = scenario(
        dir.path(),
        "bad-sched.toml",
        "[[schedules]]\nscenario = \"missing.toml\"\nevery = \"1m\"\n",
    );
    let out = loadagent(&["agent", "--check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn scheduled_capacity_searches_export_their_answer_and_what_ended_them() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("echo.pid");
    let server = Server::python(&["--pid-file", pid_file.to_str().unwrap()]);
    let search = |name: &str, slo: &str| {
        format!(
            r#"name = "{name}"
kind = "unary"
[target]
address = "{}"
process = "{}"
[call]
method = "testing.echo.v1.Echo/Say"
data = {{ message = "cap", delay_ms = 5 }}
[load]
concurrency = 16
warmup = "1s"
[capacity]
slo = ["{slo}", "error_rate < 1%"]
start_rate = 20
max_rate = 40
step = "2s"
settle = "1s"
confirm = "0s"
max_duration = "30s"
"#,
            server.address(),
            pid_file.display()
        )
    };
    // One search passes every step up to max_rate; the other's SLO no step can meet.
    scenario(dir.path(), "cap.toml", &search("cap", "latency.p99 < 2s"));
    scenario(
        dir.path(),
        "never.toml",
        &search("never", "latency.p99 < 1ms"),
    );
    let agent = start_agent(
        dir.path(),
        "[[schedules]]\nscenario = \"cap.toml\"\nevery = \"1h\"\n[[schedules]]\nscenario = \"never.toml\"\nevery = \"1h\"\n",
    );
    let a = agent.address();
    eventually(60, || {
        let (_, m) = http_get(&a, "/metrics");
        match (
            sample(&m, "loadagent_run_success{scenario=\"cap\"}"),
            sample(&m, "loadagent_run_success{scenario=\"never\"}"),
        ) {
            (Some(_), Some(_)) => Ok(()),
            _ => Err("both searches not done yet".to_string()),
        }
    });
    let (_, m) = http_get(&a, "/metrics");
    assert_eq!(
        sample(&m, "loadagent_run_capacity_rps{scenario=\"cap\"}"),
        Some(40.0)
    );
    assert_eq!(
        sample(&m, "loadagent_run_success{scenario=\"cap\"}"),
        Some(1.0)
    );
    let limited = |scenario: &str, limit: &str| {
        sample(
            &m,
            &format!("loadagent_run_capacity_limited_by{{limited_by=\"{limit}\",scenario=\"{scenario}\"}}"),
        )
    };
    assert_eq!(limited("cap", "max_rate"), Some(1.0));
    assert_eq!(limited("cap", "slo"), Some(0.0));
    assert_eq!(limited("never", "slo"), Some(1.0));
    assert_eq!(limited("never", "max_rate"), Some(0.0));
    // The server's process was watched: capacity per core it used and per core it may use.
    let per_used = sample(
        &m,
        "loadagent_run_capacity_rps_per_server_core{scenario=\"cap\"}",
    )
    .unwrap();
    let per_usable = sample(
        &m,
        "loadagent_run_capacity_rps_per_usable_core{scenario=\"cap\"}",
    )
    .unwrap();
    assert!(
        per_used > 40.0,
        "a server at 40/s uses under a core: {per_used}"
    );
    assert!(per_usable > 0.0 && per_usable <= 40.0, "{per_usable}");
    // No capacity measured: no figure (an alert on a drop compares only real answers), and
    // the run failed.
    assert_eq!(
        sample(&m, "loadagent_run_capacity_rps{scenario=\"never\"}"),
        None
    );
    assert_eq!(
        sample(&m, "loadagent_run_success{scenario=\"never\"}"),
        Some(0.0)
    );
    assert_promtool_accepts(&m);
}

#[test]
fn a_scrape_storm_gets_whole_answers() {
    let dir = tempfile::tempdir().unwrap();
    let target = Server::reference_target();
    let agent = start_agent(
        dir.path(),
        &format!(
            "[[targets]]\nname = \"bench\"\naddress = \"{}\"\ninterval = \"200ms\"\n",
            target.address()
        ),
    );
    let a = agent.address();
    eventually(10, || {
        expect(&a, "loadagent_probe_success{target=\"bench\"}", 1.0)
    });
    let scrapes: Vec<_> = (0..48)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || http_get(&a, "/metrics"))
        })
        .collect();
    for s in scrapes {
        let (code, body) = s.join().unwrap();
        assert_eq!(code, 200);
        assert!(
            sample(&body, "loadagent_probe_success{target=\"bench\"}") == Some(1.0)
                && body.contains("loadagent_build_info"),
            "a whole answer"
        );
    }
    assert_eq!(http_get(&a, "/healthz").0, 200);
}

/// A health check that gets no answer in time is DEADLINE_EXCEEDED (4), as gRPC clients and
/// the runbook say, in the agent's series and in `probe` (tonic calls its own deadline
/// CANCELLED); and a method probe's answer over 4 MiB is RESOURCE_EXHAUSTED, as `run` and
/// gRPC clients say (tonic says OUT_OF_RANGE). Node's HTTP/2 server plays the server.
#[test]
fn probe_deadlines_and_oversized_answers_carry_the_codes_clients_report() {
    let dir = tempfile::tempdir().unwrap();
    let silent = Server::node_h2("silent");
    let address = silent.address();
    let config = format!(
        "[[targets]]\nname = \"silent\"\naddress = \"{address}\"\ninterval = \"300ms\"\ntimeout = \"400ms\"\n\n[[targets]]\nname = \"silent-watch\"\naddress = \"{address}\"\nmode = \"watch\"\ninterval = \"300ms\"\ntimeout = \"400ms\"\n"
    );
    let agent = start_agent(dir.path(), &config);
    let a = agent.address();
    eventually(10, || {
        expect(
            &a,
            "loadagent_probe_grpc_status_code{target=\"silent\"}",
            4.0,
        )
    });
    eventually(10, || {
        expect(
            &a,
            "loadagent_probe_grpc_status_code{target=\"silent-watch\"}",
            4.0,
        )
    });
    let out = loadagent(&["probe", &address, "--timeout", "500ms"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(
        said.contains("DeadlineExceeded") || said.contains("Deadline"),
        "{said}"
    );

    let big = Server::node_h2("size:5242880");
    let proto = repo().join("tests/python/echo.proto");
    let out = loadagent(&[
        "probe",
        &big.address(),
        "--method",
        "testing.echo.v1.Echo/Say",
        "--proto",
        proto.to_str().unwrap(),
        "--expect",
        "status == RESOURCE_EXHAUSTED",
    ]);
    let said = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the check on the status passes: {said}"
    );
}
