//! Generated observability artifacts: the committed alert rules are what the code generates,
//! promtool accepts them and their unit tests pass, every alert has a test and a runbook entry.

mod common;

use std::process::Command;

use common::*;

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("promtool (Debian package prometheus; tests/setup.sh installs it)")
}

#[test]
fn committed_rules_are_what_the_code_generates() {
    let dir = tempfile::tempdir().unwrap();
    let out = loadagent(&["alerts", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let generated = std::fs::read_to_string(dir.path().join("loadagent.rules.yml")).unwrap();
    let committed = std::fs::read_to_string(repo().join("alerts/loadagent.rules.yml")).unwrap();
    assert!(
        generated == committed,
        "alerts/ is stale: run `cargo run -- alerts --out alerts` and commit"
    );
}

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    let check = promtool(&["check", "rules", "alerts/loadagent.rules.yml"]);
    assert!(check.status.success(), "{}", text(&check));
    let tests = promtool(&["test", "rules", "alerts/tests/loadagent.test.yml"]);
    assert!(tests.status.success(), "{}", text(&tests));
}

#[test]
fn every_alert_has_a_unit_test_and_a_runbook_section() {
    let rules = std::fs::read_to_string(repo().join("alerts/loadagent.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(repo().join("alerts/tests/loadagent.test.yml")).unwrap();
    let runbook = std::fs::read_to_string(repo().join("docs/runbook.md")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 12, "{alerts:?}");
    for a in alerts {
        assert!(
            tests.contains(&format!("alertname: {a}\n        eval_time"))
                && tests.contains(&format!("#{}'", a.to_lowercase())),
            "{a} has no firing test"
        );
        assert!(
            runbook.contains(&format!("## {a}\n")),
            "{a} has no runbook section"
        );
    }
}

#[test]
fn generating_into_a_missing_folder_exits_2_with_the_path() {
    let out = loadagent(&["alerts", "--out", "/nonexistent/alerts"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/alerts"));
    let dir = tempfile::tempdir().unwrap();
    let out = loadagent(&[
        "alerts",
        "--out",
        dir.path().to_str().unwrap(),
        "--kubernetes",
        "/nonexistent/kube",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--kubernetes /nonexistent/kube"),
        "{}",
        text(&out)
    );
    assert!(
        !dir.path().join("loadagent.rules.yml").exists(),
        "nothing is written when one destination is wrong"
    );
    let out = loadagent(&["dashboards", "--out", "/nonexistent/dash"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("/nonexistent/dash"));
    // A folder that exists but cannot be written (even by root): /proc.
    let out = loadagent(&["alerts", "--out", "/proc"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("/proc/loadagent.rules.yml"),
        "{}",
        text(&out)
    );
}

#[test]
fn committed_dashboards_are_what_the_code_generates_and_valid() {
    let dir = tempfile::tempdir().unwrap();
    let out = loadagent(&["dashboards", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut names = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let generated = std::fs::read_to_string(&path).unwrap();
        let committed =
            std::fs::read_to_string(repo().join("dashboards").join(path.file_name().unwrap()))
                .unwrap_or_default();
        assert!(
            generated == committed,
            "dashboards/ is stale: run `cargo run -- dashboards --out dashboards` and commit"
        );
        let v: serde_json::Value = serde_json::from_str(&generated).expect("valid JSON");
        let vars: Vec<&str> = v["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap())
            .collect();
        assert!(
            vars.contains(&"datasource") && vars.contains(&"node") && vars.contains(&"arch"),
            "{vars:?}"
        );
        names += 1;
    }
    assert_eq!(names, 5, "fleet, runs, tls, node, arch");
}

/// Panels whose data this test cannot have: hardware counters (refused on VMs) and errors
/// that a healthy run does not make.
const MAY_BE_EMPTY: &[&str] = &["Instructions per cycle", "Handshake errors by class"];

#[test]
fn every_dashboard_query_and_rule_evaluates_in_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let tls_target_cert = dir.path().join("cert.pem");
    let mut cmd = Command::new(bin());
    cmd.args([
        "target",
        "--listen",
        "127.0.0.1:0",
        "--tls",
        "--cert-out",
        tls_target_cert.to_str().unwrap(),
    ]);
    let tls_target = Server::try_start(cmd, "listening on ").expect("TLS target");
    // The unary run watches a process named loadagent: the TLS target child (the agent itself
    // is never counted), so the target-side panels have data.
    scenario(dir.path(), "unary.toml", "name = \"unary\"\nkind = \"unary\"\n[target]\naddress = \"embedded\"\nprocess = \"loadagent\"\n[call]\nmethod = \"loadagent.bench.v1.Bench/Unary\"\n[load]\nrate = 100\nduration = \"1s\"\n");
    // A capacity search against the TLS target (watched as the process named loadagent), so
    // the capacity panels have data: the search passes its two steps and stops at max_rate.
    scenario(dir.path(), "capacity.toml", &format!("name = \"capacity\"\nkind = \"unary\"\n[target]\naddress = \"{}\"\nprocess = \"loadagent\"\ntls = {{ ca = {:?}, server_name = \"localhost\" }}\n[call]\nmethod = \"loadagent.bench.v1.Bench/Unary\"\n[load]\nconcurrency = 8\n[capacity]\nslo = [\"latency.p99 < 2s\"]\nstart_rate = 50\nmax_rate = 100\nstep = \"2s\"\nsettle = \"1s\"\nconfirm = \"0s\"\nmax_duration = \"20s\"\n", tls_target.address(), tls_target_cert.display().to_string()));
    scenario(dir.path(), "storm.toml", "name = \"storm\"\nkind = \"tls_handshake\"\n[target]\naddress = \"embedded\"\n[target.tls]\n[load]\nrequests = 20\nconcurrency = 2\n");
    // A target named by DNS (dnsmasq), probed per backend; and one whose DNS server never
    // answers, so the resolution-failure panel has data.
    let plain_target = Server::reference_target();
    let dns = Dnsmasq::start(dir.path(), "127.0.0.1 fleet.test\n", &[]);
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let fleets = format!(
        "[[targets]]\nname = \"fleet\"\naddress = \"dns://{}/fleet.test:{}\"\ninterval = \"1s\"\nresolve_every = \"1s\"\n\n[[targets]]\nname = \"unresolved\"\naddress = \"dns://{}/fleet.test:1\"\ninterval = \"1s\"\nresolve_every = \"1s\"\ntimeout = \"200ms\"\n\n",
        dns.server(),
        plain_target.port,
        silent.local_addr().unwrap()
    );
    let config = fleets + &format!(
        "[[targets]]\nname = \"tls\"\naddress = \"{}\"\ninterval = \"1s\"\ntls = {{ ca = {:?}, server_name = \"localhost\" }}\nslo = {{ objective = \"99%\", latency = \"300ms\" }}\n\n[[targets]]\nname = \"method\"\naddress = \"{}\"\ninterval = \"1s\"\nmethod = \"loadagent.bench.v1.Bench/Unary\"\ndata = {{ error_code = 5 }}\n\n[[schedules]]\nscenario = \"unary.toml\"\nevery = \"2s\"\nallow_overlap = true\n\n[[schedules]]\nscenario = \"storm.toml\"\nevery = \"2s\"\nallow_overlap = true\n\n[[schedules]]\nscenario = \"capacity.toml\"\nevery = \"2s\"\nallow_overlap = true\n\n[tracing]\notlp_endpoint = \"http://127.0.0.1:{}\"\nsample_ratio = 0.1\n",
        tls_target.address(),
        tls_target_cert.display().to_string(),
        // A method probe whose call fails (NOT_FOUND) while health says SERVING.
        plain_target.address(),
        // Nothing listens there: lost spans make the agent-errors panel's data.
        free_port()
    );
    let agent = start_agent(dir.path(), &config);
    // The SLO rules of that config (the error-budget panel reads them).
    let rules = loadagent(&[
        "alerts",
        "--out",
        dir.path().to_str().unwrap(),
        "--config",
        dir.path().join("agent.toml").to_str().unwrap(),
    ]);
    assert_eq!(rules.status.code(), Some(0), "{}", text(&rules));

    let prometheus = Prometheus::start(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n  - {}\nscrape_configs:\n  - job_name: loadagent\n    static_configs:\n      - targets: [\"{}\"]\n",
            repo().join("alerts/loadagent.rules.yml").display(),
            dir.path().join("loadagent-slo.rules.yml").display(),
            agent.address()
        ),
    );
    let query = |expr: &str| prometheus.query(expr);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Every dashboard query, with the variables as Grafana would fill them.
        let dashboards = std::fs::read_dir(repo().join("dashboards")).unwrap();
        let mut panels = Vec::new();
        for entry in dashboards {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap())
                    .unwrap();
            for panel in v["panels"].as_array().unwrap() {
                for t in panel["targets"].as_array().unwrap() {
                    let expr = t["expr"]
                        .as_str()
                        .unwrap()
                        .replace("$__rate_interval", "1m")
                        .replace("$__range", "5m");
                    let expr = ["$node", "$arch", "$target", "$scenario"]
                        .iter()
                        .fold(expr, |e, v| e.replace(v, ".*"));
                    panels.push((panel["title"].as_str().unwrap().to_string(), expr));
                }
            }
        }
        eventually(60, || {
            for (title, expr) in &panels {
                let result = query(expr)?;
                let empty = result.as_array().is_none_or(|r| r.is_empty());
                if empty && !MAY_BE_EMPTY.contains(&title.as_str()) {
                    return Err(format!("panel `{title}` has no data yet: {expr}"));
                }
            }
            Ok(())
        });
        // Every rule expression parses and evaluates.
        let rules = std::fs::read_to_string(repo().join("alerts/loadagent.rules.yml")).unwrap();
        for line in rules.lines() {
            if let Some(expr) = line.trim().strip_prefix("expr: '") {
                let expr = expr.trim_end_matches('\'').replace("''", "'");
                query(&expr).unwrap();
            }
        }
        // The rules are loaded in Prometheus.
        let (_, body) = http_get(&prometheus.api, "/api/v1/rules");
        assert!(
            body.contains("LoadagentTargetDown") && body.contains("loadagent:run_error_ratio:30m"),
            "rules loaded: {body}"
        );
    }));
    drop(prometheus);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn the_compose_stack_is_valid_and_points_at_files_that_exist() {
    let compose = Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config", "--quiet"])
        .current_dir(repo())
        .output()
        .expect("docker-compose (Debian package; tests/setup.sh installs it)");
    assert!(compose.status.success(), "{}", text(&compose));
    let text_yml = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let mut mounts = 0;
    for line in text_yml.lines() {
        if let Some(host) = line
            .trim()
            .strip_prefix("- ./")
            .and_then(|l| l.split(':').next())
        {
            assert!(
                repo().join(host).exists(),
                "docker-compose.yml mounts ./{host}, which does not exist"
            );
            mounts += 1;
        }
    }
    assert!(mounts >= 6, "agent config and scenarios, prometheus config and alerts, grafana provisioning and dashboards");
    assert!(repo().join("deploy/Dockerfile").is_file());

    // Prometheus's config, laid out as in its container (alerts/ beside it).
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("deploy/compose/prometheus.yml"),
        dir.path().join("prometheus.yml"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("alerts")).unwrap();
    std::fs::copy(
        repo().join("alerts/loadagent.rules.yml"),
        dir.path().join("alerts/loadagent.rules.yml"),
    )
    .unwrap();
    let check = Command::new("promtool")
        .args(["check", "config", "prometheus.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));

    // Grafana's provisioning: the datasource and the dashboards folder.
    let datasource = std::fs::read_to_string(
        repo().join("deploy/compose/grafana/provisioning/datasources/prometheus.yml"),
    )
    .unwrap();
    assert!(datasource.contains("url: http://prometheus:9090"));
    let provider = std::fs::read_to_string(
        repo().join("deploy/compose/grafana/provisioning/dashboards/loadagent.yml"),
    )
    .unwrap();
    assert!(
        provider.contains("path: /var/lib/grafana/dashboards")
            && text_yml.contains("./dashboards:/var/lib/grafana/dashboards")
    );

    let agent = loadagent(&[
        "agent",
        "--check-config",
        repo().join("deploy/compose/agent.toml").to_str().unwrap(),
    ]);
    assert_eq!(agent.status.code(), Some(0), "{}", text(&agent));
    // The storm runs against an embedded target, so it validates here (the unary scenario
    // needs the compose network's `target` for reflection).
    let storm = loadagent(&[
        "validate",
        repo()
            .join("deploy/compose/scenarios/tls-storm.toml")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(storm.status.code(), Some(0), "{}", text(&storm));
}
