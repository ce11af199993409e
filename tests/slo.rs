//! SLOs per target: `loadagent alerts --config` writes recording rules, multi-window
//! multi-burn-rate alerts and promtool unit tests; promtool passes them (and fails them when a
//! burn factor or a `for` is wrong), and a real Prometheus evaluates the rules over a live
//! agent's series.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn promtool(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian package prometheus; tests/setup.sh installs it)")
}

fn config(up: &str) -> String {
    format!(
        r#"
[[targets]]
name = "payments"
address = "{up}"
interval = "200ms"
slo = {{ objective = "99.9%", window = "30d" }}

[[targets]]
name = "search"
address = "{up}"
interval = "200ms"
slo = {{ objective = "99.5%", window = "7d", latency = "300ms", latency_objective = "99%" }}

[[targets]]
name = "gone"
address = "127.0.0.1:1"
interval = "200ms"
timeout = "100ms"
slo = {{ objective = "99%" }}
"#
    )
}

fn generate(dir: &Path, agent_toml: &Path) {
    let out = loadagent(&[
        "alerts",
        "--out",
        dir.to_str().unwrap(),
        "--config",
        agent_toml.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn generated_rules_pass_their_promtool_tests_and_fail_them_when_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let agent_toml = scenario(dir.path(), "agent.toml", &config("127.0.0.1:50051"));
    generate(dir.path(), &agent_toml);
    let check = promtool(dir.path(), &["check", "rules", "loadagent-slo.rules.yml"]);
    assert!(check.status.success(), "{}", text(&check));
    let tests = promtool(dir.path(), &["test", "rules", "loadagent-slo.test.yml"]);
    assert!(tests.status.success(), "{}", text(&tests));
    let generated = std::fs::read_to_string(dir.path().join("loadagent-slo.test.yml")).unwrap();
    // Four behaviours per objective (payments, search's availability and latency, gone).
    for what in [
        "a total outage pages within 5 minutes",
        "a 2x burn opens a ticket and does not page",
        "a burn that stopped clears the page",
        "an objective met raises nothing",
    ] {
        assert_eq!(generated.matches(what).count(), 4, "{what}");
    }

    // The tests can fail: rules that page at a 1x burn, or only after 10 minutes, are caught.
    let rules = std::fs::read_to_string(dir.path().join("loadagent-slo.rules.yml")).unwrap();
    for (wrong, fails) in [
        (
            rules.replace("(14.4 * ", "(1 * ").replace("(6 * ", "(1 * "),
            "a 2x burn opens a ticket and does not page",
        ),
        (
            rules.replace("for: 2m", "for: 10m"),
            "a total outage pages within 5 minutes",
        ),
        (
            rules.replace("rate5m{", "rate1h{"),
            "a burn that stopped clears the page",
        ),
    ] {
        std::fs::write(dir.path().join("loadagent-slo.rules.yml"), &wrong).unwrap();
        let tests = promtool(dir.path(), &["test", "rules", "loadagent-slo.test.yml"]);
        assert!(!tests.status.success(), "a wrong rule passed");
        assert!(text(&tests).contains(fails), "{fails}: {}", text(&tests));
    }
}

/// The rules over a live agent's series, in a real Prometheus: a target that answers keeps
/// its budget, one that never answers burns all of it and pages.
#[test]
fn prometheus_evaluates_the_rules_over_the_agents_series() {
    let dir = tempfile::tempdir().unwrap();
    let target = Server::reference_target();
    let agent_toml = scenario(
        dir.path(),
        "agent.toml",
        &config(&format!("127.0.0.1:{}", target.port)),
    );
    generate(dir.path(), &agent_toml);
    // Faster `for` than the generated 2m, so the page is seen within the test's minute.
    let rules = std::fs::read_to_string(dir.path().join("loadagent-slo.rules.yml"))
        .unwrap()
        .replace("for: 2m", "for: 0s");
    std::fs::write(dir.path().join("fast.rules.yml"), rules).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["agent", "--config", agent_toml.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"]);
    let agent = Server::try_start(cmd, "listening on ").expect("the agent starts");
    let prometheus = Prometheus::start(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: loadagent\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            dir.path().join("fast.rules.yml").display(),
            agent.port
        ),
    );
    let one = |expr: &str| prometheus.value(expr);
    eventually(60, || {
        let checks = [
            ("loadagent:probe_slo_error_ratio:rate5m{target=\"payments\",slo=\"availability\"}", 0.0),
            ("loadagent:probe_slo_error_ratio:rate5m{target=\"search\",slo=\"latency\"}", 0.0),
            ("loadagent:probe_slo_error_ratio:rate5m{target=\"gone\",slo=\"availability\"}", 1.0),
            ("loadagent:probe_slo_error_budget_remaining{target=\"payments\",slo=\"availability\"}", 1.0),
            ("loadagent:probe_slo_objective{target=\"search\",slo=\"latency\"}", 0.99),
            ("count(ALERTS{alertname=\"LoadagentSloBurnRateFast\",alertstate=\"firing\",target=\"gone\"})", 1.0),
        ];
        for (expr, want) in checks {
            let got = one(expr)?;
            if got != want {
                return Err(format!("{expr} = {got}, want {want}"));
            }
        }
        Ok(())
    });
    let firing = prometheus
        .query("ALERTS{alertname=~\"LoadagentSloBurnRate.*\",alertstate=\"firing\"}")
        .unwrap();
    for alert in firing.as_array().unwrap() {
        assert_eq!(
            alert["metric"]["target"], "gone",
            "only the dead target: {alert}"
        );
    }
    // The latency threshold is a bucket of the agent's histogram, as the rule reads it.
    let (_, metrics) = http_get(&format!("127.0.0.1:{}", agent.port), "/metrics");
    assert!(
        metrics.contains("loadagent_probe_latency_seconds_bucket{backend=")
            && metrics.contains("target=\"search\",le=\"0.3\"}"),
        "{metrics}"
    );
    // Buckets are set at start: a reload with a new threshold is refused, and counted.
    std::fs::write(
        &agent_toml,
        config(&format!("127.0.0.1:{}", target.port)).replace("300ms", "350ms"),
    )
    .unwrap();
    let pid = nix::unistd::Pid::from_raw(agent.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    eventually(10, || {
        let (_, m) = http_get(&format!("127.0.0.1:{}", agent.port), "/metrics");
        match sample(
            &m,
            "loadagent_errors_total{component=\"config\",kind=\"reload_rejected\"}",
        ) {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn bad_slos_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let agent_toml = scenario(
        dir.path(),
        "agent.toml",
        r#"
[[targets]]
name = "a"
address = "127.0.0.1:1"
slo = { objective = "100%", window = "1d" }

[[targets]]
name = "b"
address = "127.0.0.1:1"
mode = "watch"
slo = { objective = "99%" }

[[targets]]
name = "c"
address = "127.0.0.1:1"
slo = { window = "30d", latency_objective = "99%", latency = "2m", objectve = "9" }
"#,
    );
    let out = loadagent(&["agent", "--check-config", agent_toml.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    for words in [
        "`targets[0].slo.objective`: \"100%\" is not between 0% and 100%",
        "`targets[0].slo.window`: from 3d",
        "`targets[1].slo.objective`: an SLO counts probes",
        "`targets[2].slo.objective`: missing",
        "`targets[2].slo.latency`: from 100us to 60s",
        "`targets[2].slo.objectve`: unknown key; did you mean `objective`?",
    ] {
        assert!(said.contains(words), "{words} in:\n{said}");
    }
    // `alerts --config` with no SLO anywhere says what to add.
    let plain = scenario(
        dir.path(),
        "plain.toml",
        "[[targets]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n",
    );
    let out = loadagent(&[
        "alerts",
        "--out",
        dir.path().to_str().unwrap(),
        "--config",
        plain.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no [[targets]] entry has an `slo`"),
        "{}",
        text(&out)
    );
}
