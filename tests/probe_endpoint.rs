//! `/probe?target=&module=` driven by a real Prometheus with the relabelling of
//! deploy/kubernetes/prometheus-probe-scrape.yml: its pods come from file_sd target groups
//! that carry the `__meta_kubernetes_*` labels Kubernetes discovery would, two agents on
//! 127.0.0.2 and 127.0.0.3 stand for two nodes, and the pods are grpcio servers on other
//! loopback addresses.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value};

/// An agent of `config` listening on `host:port`.
fn agent_on(dir: &Path, name: &str, config: &str, host: &str, port: u16) -> Server {
    let path = scenario(dir, name, config);
    let mut cmd = Command::new(bin());
    cmd.args(["agent", "--config", path.to_str().unwrap()])
        .args(["--listen", &format!("{host}:{port}")]);
    Server::try_start(cmd, "listening on ").expect("the agent starts")
}

const MODULES: &str = r#"
[modules.health]
timeout = "2s"

[modules.echo]
method = "testing.echo.v1.Echo/Say"
data = { message = "ping" }
expect = ['message == "ping"']
timeout = "2s"

[modules.echo_wrong]
method = "testing.echo.v1.Echo/Say"
data = { message = "ping" }
expect = ['message == "pong"']
timeout = "2s"

[probe]
allowed_targets = ["127.0.0.4/30"]
"#;

/// The job of deploy/kubernetes/prometheus-probe-scrape.yml with Kubernetes discovery
/// replaced by `file_sd` (same labels), the agents' port instead of 9477, and a fast cadence.
fn scrape_config(targets: &Path, agent_port: u16) -> String {
    let text =
        std::fs::read_to_string(repo().join("deploy/kubernetes/prometheus-probe-scrape.yml"))
            .unwrap();
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let job = &mut doc["scrape_configs"][0];
    let job = job.as_mapping_mut().unwrap();
    assert!(job.remove("kubernetes_sd_configs").is_some());
    job.insert(
        "file_sd_configs".into(),
        serde_yaml_ng::from_str(&format!(
            "[{{files: [\"{}\"], refresh_interval: 1s}}]",
            targets.display()
        ))
        .unwrap(),
    );
    job.insert("scrape_interval".into(), "1s".into());
    job.insert("scrape_timeout".into(), "1s".into());
    let text = serde_yaml_ng::to_string(&doc).unwrap();
    assert_eq!(
        text.matches(":9477").count(),
        2,
        "the agent's port, IPv4 and IPv6"
    );
    text.replace(":9477", &format!(":{agent_port}"))
}

/// A pod as Kubernetes' pod discovery describes one container port of it.
fn pod(name: &str, ip: &str, port: u16, node: &str, module: Option<&str>, phase: &str) -> Value {
    let host_ip = match node {
        "node-a" => "127.0.0.2",
        _ => "127.0.0.3",
    };
    let mut labels = json!({
        "__meta_kubernetes_namespace": "shop",
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_host_ip": host_ip,
        "__meta_kubernetes_pod_node_name": node,
        "__meta_kubernetes_pod_phase": phase,
        "__meta_kubernetes_pod_container_port_name": "grpc",
        "__meta_kubernetes_pod_container_port_number": port.to_string(),
    });
    if let Some(m) = module {
        labels["__meta_kubernetes_pod_annotation_loadagent_io_probe_module"] = json!(m);
    }
    json!({"targets": [format!("{ip}:{port}")], "labels": labels})
}

/// A port free on every one of `hosts`.
fn port_free_on(hosts: &[&str]) -> u16 {
    for _ in 0..50 {
        let port = free_port();
        if hosts
            .iter()
            .all(|h| std::net::TcpListener::bind((*h, port)).is_ok())
        {
            return port;
        }
    }
    panic!("no port free on {hosts:?}");
}

fn value(result: &Value) -> f64 {
    result["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn prometheus_discovers_pods_and_each_is_probed_by_the_agent_on_its_node() {
    let dir = tempfile::tempdir().unwrap();
    // Pods: grpcio echo servers on 127.0.0.4, .5, .6 (allowed) and .8 (outside
    // allowed_targets), all on one port.
    let (pod_port, _pods) = backends(&["127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.8"]);
    let agent_port = port_free_on(&["127.0.0.2", "127.0.0.3"]);
    let node_a = agent_on(dir.path(), "a.toml", MODULES, "127.0.0.2", agent_port);
    let node_b = agent_on(dir.path(), "b.toml", MODULES, "127.0.0.3", agent_port);
    let pods = json!([
        pod(
            "healthy",
            "127.0.0.4",
            pod_port,
            "node-a",
            Some("health"),
            "Running"
        ),
        pod(
            "called",
            "127.0.0.5",
            pod_port,
            "node-b",
            Some("echo"),
            "Running"
        ),
        pod(
            "wrong",
            "127.0.0.6",
            pod_port,
            "node-a",
            Some("echo_wrong"),
            "Running"
        ),
        pod(
            "outside",
            "127.0.0.8",
            pod_port,
            "node-b",
            Some("health"),
            "Running"
        ),
        pod(
            "unknown",
            "127.0.0.4",
            pod_port,
            "node-a",
            Some("nosuch"),
            "Running"
        ),
        // Not asking to be probed, or not running: relabelled away.
        pod("quiet", "127.0.0.5", pod_port, "node-b", None, "Running"),
        pod(
            "starting",
            "127.0.0.6",
            pod_port,
            "node-a",
            Some("health"),
            "Pending"
        ),
    ]);
    let targets = dir.path().join("pods.json");
    std::fs::write(&targets, pods.to_string()).unwrap();
    let prometheus = Prometheus::start(dir.path(), &scrape_config(&targets, agent_port));

    let expected_up = [
        ("healthy", 1.0),
        ("called", 1.0),
        ("wrong", 1.0),
        ("outside", 0.0),
        ("unknown", 0.0),
    ];
    let expected_success = [("healthy", 1.0), ("called", 1.0), ("wrong", 0.0)];
    eventually(60, || {
        let up = prometheus.query("up{job=\"loadagent-probe\"}")?;
        let up = up.as_array().unwrap();
        if up.len() != expected_up.len() {
            return Err(format!("targets: {up:?}"));
        }
        for (pod, want) in expected_up {
            let got = up
                .iter()
                .find(|r| r["metric"]["pod"] == pod)
                .ok_or(format!("no `up` of {pod}: {up:?}"))?;
            if value(got) != want {
                return Err(format!("up of {pod}: {got}"));
            }
        }
        let success = prometheus.query("probe_success")?;
        let success = success.as_array().unwrap();
        for (pod, want) in expected_success {
            let got = success
                .iter()
                .find(|r| r["metric"]["pod"] == pod)
                .ok_or(format!("no probe_success of {pod}: {success:?}"))?;
            if value(got) != want {
                return Err(format!("probe_success of {pod}: {got}"));
            }
        }
        Ok(())
    });

    // Series named after the pod; the method's failed check named.
    let checks = prometheus
        .query("probe_grpc_check_failed{pod=\"wrong\"}")
        .unwrap();
    assert_eq!(
        checks[0]["metric"]["check"], "message == \"pong\"",
        "{checks}"
    );
    assert_eq!(value(&checks[0]), 1.0);
    let health = prometheus
        .query("probe_grpc_healthcheck_response{pod=\"healthy\",serving_status=\"SERVING\"}")
        .unwrap();
    assert_eq!(value(&health[0]), 1.0, "{health}");
    assert_eq!(
        health[0]["metric"]["instance"],
        format!("127.0.0.4:{pod_port}")
    );

    // Prometheus' own view: each pod scraped through the agent its node label names.
    let body = http_get(&prometheus.api, "/api/v1/targets?state=active").1;
    let body: Value = serde_json::from_str(&body).unwrap();
    let active = body["data"]["activeTargets"].as_array().unwrap();
    let probes: Vec<&Value> = active
        .iter()
        .filter(|t| t["labels"]["job"] == "loadagent-probe")
        .collect();
    assert_eq!(probes.len(), 5, "{probes:?}");
    for t in probes {
        let node_ip = match t["labels"]["node"].as_str().unwrap() {
            "node-a" => "127.0.0.2",
            _ => "127.0.0.3",
        };
        let url = t["scrapeUrl"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("http://{node_ip}:{agent_port}/probe?")),
            "{url} for {}",
            t["labels"]
        );
    }

    // Each agent counted only its own node's probes and refusals.
    let a = http_get(&format!("127.0.0.2:{agent_port}"), "/metrics").1;
    let b = http_get(&format!("127.0.0.3:{agent_port}"), "/metrics").1;
    let probes = |m: &str, module: &str| {
        ["success", "failure"]
            .iter()
            .map(|r| {
                sample(
                    m,
                    &format!(
                        "loadagent_probe_endpoint_probes_total{{module=\"{module}\",result=\"{r}\"}}"
                    ),
                )
                .unwrap_or(0.0)
            })
            .sum::<f64>()
    };
    assert!(
        probes(&a, "health") >= 1.0 && probes(&a, "echo_wrong") >= 1.0,
        "{a}"
    );
    assert_eq!(probes(&a, "echo"), 0.0, "node-a's pods do not use echo");
    assert!(probes(&b, "echo") >= 1.0, "{b}");
    assert_eq!(probes(&b, "echo_wrong"), 0.0);
    let refused = |m: &str, reason: &str| {
        sample(
            m,
            &format!("loadagent_probe_endpoint_refused_total{{reason=\"{reason}\"}}"),
        )
        .unwrap()
    };
    assert!(refused(&a, "unknown_module") >= 1.0, "{a}");
    assert_eq!(refused(&a, "not_allowed"), 0.0);
    assert!(refused(&b, "not_allowed") >= 1.0, "{b}");
    assert_eq!(refused(&b, "unknown_module"), 0.0);
    assert_promtool_accepts(&a);
    drop((node_a, node_b));
}

#[test]
fn refusals_are_answered_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _pods) = backends(&["127.0.0.4"]);
    // A server that accepts and never answers (inside allowed_targets, 127.0.0.4/30): a
    // probe of it holds its slot for the module's timeout.
    let silent = std::net::TcpListener::bind("127.0.0.5:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let config = format!("{MODULES}max_concurrent = 1\n[modules.slow]\ntimeout = \"3s\"\n");
    let agent = start_agent(dir.path(), &config);
    let agent_addr = format!("127.0.0.1:{}", agent.port);
    let get = |q: &str| http_get(&agent_addr, &format!("/probe?{q}"));

    let (code, body) = get(&format!("module=health&target=127.0.0.4:{port}"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(sample(&body, "probe_success"), Some(1.0), "{body}");
    assert_promtool_accepts(&body);

    for (query, want, words) in [
        (
            "target=127.0.0.4:1",
            400,
            "the `module` parameter is missing",
        ),
        (
            "module=nosuch&target=127.0.0.4:1",
            400,
            "unknown module \"nosuch\"; known modules: echo, echo_wrong, health, slow",
        ),
        ("module=health", 400, "the `target` parameter is missing"),
        ("module=health&target=no%20port", 400, "target \"no port\""),
        (
            "module=health&target=dns:///a.example:5",
            400,
            "/probe probes one address",
        ),
        (
            "module=health&target=10.0.0.1:5",
            403,
            "not in [probe] allowed_targets",
        ),
        (
            "module=health&target=localhost:5",
            403,
            "not in [probe] allowed_targets",
        ),
    ] {
        let (code, body) = get(query);
        assert_eq!(code, want, "{query}: {body}");
        assert!(body.contains(words), "{query}: {body}");
    }

    // debug=true: the probe's log, the series and the module.
    let (code, body) = get(&format!(
        "module=echo_wrong&target=127.0.0.4:{port}&debug=true"
    ));
    assert_eq!(code, 200);
    for part in [
        "Logs for the probe:",
        "check `message == \"pong\"`: FAILED",
        "Metrics that would have been returned:",
        "probe_success 0",
        "Module configuration:",
        "[modules.echo_wrong]",
    ] {
        assert!(body.contains(part), "{part} in {body}");
    }

    // One slot: a probe of the silent server holds it (3 s), the next request is 503 at once.
    // The slow probe is sent alone first; only when it is seen holding the slot (still
    // running after 300 ms) is the second one sent.
    let mut busy = None;
    for _ in 0..10 {
        let slow = {
            let agent_addr = agent_addr.clone();
            let q = format!("/probe?module=slow&target={silent_addr}");
            std::thread::spawn(move || http_get(&agent_addr, &q))
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        if slow.is_finished() {
            continue;
        }
        let (code, body) = get(&format!("module=health&target=127.0.0.4:{port}"));
        assert_eq!(code, 503, "{body}");
        busy = Some(body);
        let (code, body) = slow.join().unwrap();
        assert_eq!(code, 200);
        assert_eq!(sample(&body, "probe_success"), Some(0.0), "{body}");
        break;
    }
    let busy = busy.expect("a slow probe held the slot within 10 tries");
    assert!(busy.contains("max_concurrent"), "{busy}");
    drop(silent);

    let (_, metrics) = http_get(&agent_addr, "/metrics");
    for (reason, at_least) in [
        ("unknown_module", 2.0),
        ("bad_target", 3.0),
        ("not_allowed", 2.0),
        ("busy", 1.0),
    ] {
        let got = sample(
            &metrics,
            &format!("loadagent_probe_endpoint_refused_total{{reason=\"{reason}\"}}"),
        )
        .unwrap();
        assert!(got >= at_least, "{reason}: {got}");
    }
}

#[test]
fn modules_are_checked_like_targets() {
    let dir = tempfile::tempdir().unwrap();
    let config = scenario(
        dir.path(),
        "agent.toml",
        r#"
[modules.ok]
timeout = "1s"

[modules.bad]
method = "not a method"
timeot = "1s"

[modules."a b"]

[probe]
allowed_targets = ["10.0.0.0/33"]
max_concurrent = 0
"#,
    );
    let out = loadagent(&["agent", "--check-config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    for words in [
        "agent.toml:6:10: `modules.bad.method`: \"not a method\" is not a method name",
        "`modules.bad.timeot`: unknown key; did you mean `timeout`?",
        "`modules.a b`: a module name is letters",
        "`probe.allowed_targets`: \"10.0.0.0/33\" is neither a network nor a host pattern",
        "`probe.max_concurrent`: 0 is too small",
    ] {
        assert!(said.contains(words), "{words} in:\n{said}");
    }
}

/// A TLS module: blackbox's TLS series from the handshake with grpcio.
#[test]
fn a_tls_module_reports_the_certificate_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let (py, cert_path) = Server::python_tls_until_2030(dir.path());
    let agent = start_agent(
        dir.path(),
        &format!(
            "[modules.tls]\ntimeout = \"3s\"\ntls = {{ ca = {:?}, server_name = \"localhost\" }}\n\n[modules.by_host]\ntimeout = \"3s\"\ntls = {{ ca = {:?} }}\n",
            cert_path.display().to_string(),
            cert_path.display().to_string()
        ),
    );
    let (code, body) = http_get(
        &format!("127.0.0.1:{}", agent.port),
        &format!("/probe?module=tls&target=127.0.0.1:{}", py.port),
    );
    assert_eq!(code, 200, "{body}");
    for (series, want) in [
        ("probe_success", 1.0),
        ("probe_grpc_ssl", 1.0),
        ("probe_ssl_earliest_cert_expiry", 1_893_456_000.0),
        ("probe_tls_version_info{version=\"TLS 1.3\"}", 1.0),
        ("probe_grpc_status_code", 0.0),
    ] {
        assert_eq!(sample(&body, series), Some(want), "{series} in {body}");
    }
    assert!(
        sample(&body, "probe_grpc_duration_seconds{phase=\"tls\"}").is_some(),
        "{body}"
    );
}
