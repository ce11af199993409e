//! deploy/kubernetes/: every manifest is valid against Kubernetes' schemas (kubernetes-validate,
//! strict), the PrometheusRule is the generated alert rules, and the pieces fit together:
//! the PodMonitor selects the DaemonSet's pods on its metrics port, the probes hit the agent's
//! endpoints, and the mounted config and scenario are ones loadagent accepts.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn k8s() -> PathBuf {
    repo().join("deploy/kubernetes")
}

/// The YAML documents of a file, as JSON (PyYAML, which kubernetes-validate brings).
fn yaml(path: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
        ])
        .arg(path)
        .output()
        .expect("python3 with PyYAML (tests/setup.sh installs kubernetes-validate, which brings it)");
    assert!(out.status.success(), "{}", text(&out));
    match serde_json::from_slice(&out.stdout).unwrap() {
        Value::Array(docs) => docs,
        other => panic!("not a list of documents: {other}"),
    }
}

fn one(file: &str) -> Value {
    let mut docs = yaml(&k8s().join(file));
    assert_eq!(docs.len(), 1, "{file} holds one resource");
    docs.remove(0)
}

fn validate(files: &[PathBuf]) -> std::process::Output {
    Command::new("kubernetes-validate")
        .arg("--strict")
        .args(files)
        .output()
        .expect("kubernetes-validate (PyPI; tests/setup.sh installs it)")
}

#[test]
fn manifests_pass_kubernetes_schemas_strictly() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "{files:?}");
    let out = validate(&files);
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);
    for kind in [
        "namespace",
        "serviceaccount",
        "configmap",
        "daemonset",
        "service",
        "job",
        "persistentvolumeclaim",
    ] {
        assert!(
            log.contains(&format!("passed for resource {kind}/")),
            "{kind} was validated: {log}"
        );
    }
    // The validator does reject: a DaemonSet with an unknown field fails.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let ds = std::fs::read_to_string(k8s().join("daemonset.yaml")).unwrap();
    std::fs::write(
        &broken,
        ds.replace(
            "terminationGracePeriodSeconds: 30",
            "terminationGracePeriod: 30",
        ),
    )
    .unwrap();
    let out = validate(&[broken]);
    assert!(
        !out.status.success(),
        "a broken manifest must fail: {}",
        text(&out)
    );

    // kustomize's list names every resource file, and each exists.
    let kustomization = one("kustomization.yaml");
    let resources = kustomization["resources"].as_array().unwrap();
    for r in resources {
        assert!(k8s().join(r.as_str().unwrap()).is_file(), "{r}");
    }
    for needed in [
        "daemonset.yaml",
        "service.yaml",
        "podmonitor.yaml",
        "prometheusrule.yaml",
    ] {
        assert!(
            resources.iter().any(|r| r == needed),
            "{needed} in kustomization"
        );
    }
}

#[test]
fn the_prometheus_rule_is_the_generated_alerts() {
    let committed = std::fs::read_to_string(k8s().join("prometheusrule.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts");
    let kube = dir.path().join("kube");
    std::fs::create_dir_all(&alerts).unwrap();
    std::fs::create_dir_all(&kube).unwrap();
    let out = loadagent(&[
        "alerts",
        "--out",
        alerts.to_str().unwrap(),
        "--kubernetes",
        kube.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let generated = std::fs::read_to_string(kube.join("prometheusrule.yaml")).unwrap();
    assert_eq!(
        committed, generated,
        "deploy/kubernetes/prometheusrule.yaml is stale: run `loadagent alerts --out alerts/ --kubernetes deploy/kubernetes/`"
    );
    let rule = one("prometheusrule.yaml");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    let rules_file = yaml(&repo().join("alerts/loadagent.rules.yml")).remove(0);
    assert_eq!(
        rule["spec"]["groups"], rules_file["groups"],
        "the PrometheusRule holds exactly the groups of alerts/loadagent.rules.yml"
    );
}

/// The prometheus-operator ScrapeConfig relabels exactly as the plain scrape job (the one
/// tests/probe_endpoint.rs runs in a real Prometheus), and the agent is reachable on its
/// node's IP at the port both name.
#[test]
fn the_probe_scrape_config_and_its_operator_form_agree() {
    let plain = yaml(&k8s().join("prometheus-probe-scrape.yml")).remove(0);
    let job = &plain["scrape_configs"][0];
    let operator = one("scrapeconfig.yaml");
    let spec = &operator["spec"];
    assert_eq!(spec["metricsPath"], job["metrics_path"]);
    assert_eq!(spec["kubernetesSDConfigs"][0]["role"], "Pod");
    assert_eq!(job["kubernetes_sd_configs"][0]["role"], "pod");
    let plain_rules = job["relabel_configs"].as_array().unwrap();
    let operator_rules = spec["relabelings"].as_array().unwrap();
    assert_eq!(plain_rules.len(), operator_rules.len());
    for (p, o) in plain_rules.iter().zip(operator_rules) {
        assert_eq!(p["source_labels"], o["sourceLabels"], "{p} / {o}");
        assert_eq!(p["regex"], o["regex"], "{p} / {o}");
        assert_eq!(p["replacement"], o["replacement"], "{p} / {o}");
        assert_eq!(p["target_label"], o["targetLabel"], "{p} / {o}");
        let action = |v: &Value| v.as_str().map(str::to_ascii_lowercase);
        assert_eq!(action(&p["action"]), action(&o["action"]), "{p} / {o}");
    }
    let ds = one("daemonset.yaml");
    let port = &ds["spec"]["template"]["spec"]["containers"][0]["ports"][0];
    assert_eq!(port["hostPort"], 9477);
    assert_eq!(port["containerPort"], 9477);
    assert!(plain_rules
        .iter()
        .any(|r| r["replacement"] == "$1:9477" && r["target_label"] == "__address__"));
}

#[test]
fn the_pieces_fit_together() {
    let ds = one("daemonset.yaml");
    let pod = &ds["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert_eq!(&ds["spec"]["selector"]["matchLabels"], labels);
    let spec = &pod["spec"];
    let arch = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchExpressions"];
    let arch = arch
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "kubernetes.io/arch")
        .expect("an arch affinity");
    assert_eq!(arch["values"], serde_json::json!(["amd64", "arm64"]));
    let c = &spec["containers"][0];
    assert_eq!(c["args"][0], "agent");
    let env = c["env"].as_array().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "NODE_NAME"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"));
    assert_eq!(c["ports"][0]["name"], "metrics");
    assert_eq!(c["ports"][0]["containerPort"], 9477);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    for key in ["requests", "limits"] {
        assert!(c["resources"][key]["memory"].is_string(), "{key}");
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);

    // The PodMonitor and the Service select these pods on the metrics port.
    let pm = one("podmonitor.yaml");
    for (k, v) in pm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "PodMonitor label {k}");
    }
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
    let svc = one("service.yaml");
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "Service selector {k}");
    }

    // The ConfigMap's files are what loadagent accepts, at the paths the pods mount.
    let cm = one("configmap.yaml");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scenarios")).unwrap();
    let agent_toml = dir.path().join("agent.toml");
    std::fs::write(&agent_toml, cm["data"]["agent.toml"].as_str().unwrap()).unwrap();
    let bench = dir.path().join("scenarios/node-bench.toml");
    std::fs::write(&bench, cm["data"]["node-bench.toml"].as_str().unwrap()).unwrap();
    let out = loadagent(&["agent", "--check-config", agent_toml.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = loadagent(&["validate", bench.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert!(mounts.contains(&"/etc/loadagent/agent.toml"));
    assert!(mounts.contains(&"/etc/loadagent/scenarios/node-bench.toml"));

    // The Job runs that scenario repeatedly on one architecture into the results claim.
    let job = one("job.yaml");
    let jspec = &job["spec"]["template"]["spec"];
    assert_eq!(jspec["nodeSelector"]["kubernetes.io/arch"], "arm64");
    let args: Vec<&str> = jspec["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.starts_with(&["run", "/etc/loadagent/scenarios/node-bench.toml"]));
    assert!(args.contains(&"--repeat") && args.contains(&"--out-dir"));
    let pvc = one("results-pvc.yaml");
    assert_eq!(
        jspec["volumes"][1]["persistentVolumeClaim"]["claimName"],
        pvc["metadata"]["name"]
    );
}

/// `deploy/kubernetes/distributed/`: the Indexed Job, the merge Job and `run.sh`, driven
/// with a stand-in `kubectl` that records what is applied and reports the Jobs complete:
/// N reaches completions, parallelism and `--shard`, the start time is given once to every
/// shard, the merge lists one report per shard, everything applied passes Kubernetes'
/// schemas, and the script exits with the merge's code.
#[test]
fn the_distributed_run_script_applies_valid_jobs_for_n_shards() {
    let dist = k8s().join("distributed");
    let dir = tempfile::tempdir().unwrap();
    let applied = dir.path().join("applied");
    std::fs::create_dir(&applied).unwrap();
    let fake = dir.path().join("kubectl");
    std::fs::write(
        &fake,
        format!(
            r#"#!/usr/bin/env bash
case "$*" in
  *"apply -f -"*) cat > "{applied}/$(date +%s%N).yaml" ;;
  *"get job"*) echo "Complete " ;;
  *"get pods"*) echo 3 ;;
  *logs*) echo "merged" ;;
esac
"#,
            applied = applied.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    let out = Command::new("bash")
        .arg(dist.join("run.sh"))
        .args(["6", "90"])
        .env("PATH", path)
        .env(
            "REMOTE_WRITE",
            "http://receiver.monitoring.svc:9090/api/v1/write",
        )
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "the merge's exit code: {}",
        text(&out)
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&applied)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "the Indexed Job, then the merge Job");
    let mut all = files.clone();
    all.extend(
        [
            "configmap.yaml",
            "results-pvc.yaml",
            "job.yaml",
            "merge-job.yaml",
        ]
        .map(|f| dist.join(f)),
    );
    let v = validate(&all);
    assert!(v.status.success(), "{}", text(&v));

    let job = yaml(&files[0]).remove(0);
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["completions"], 6);
    assert_eq!(spec["parallelism"], 6);
    assert_eq!(spec["backoffLimitPerIndex"], 0);
    let pod = &spec["template"]["spec"];
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    let c = &pod["containers"][0];
    let env: std::collections::BTreeMap<String, String> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(env["SHARDS"], "6");
    let start_at = loadagent::vocabulary::shard::parse_start_at(&env["START_AT"]).unwrap();
    let lead = start_at
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs();
    assert!(
        (60..=90).contains(&lead),
        "START_AT about 90 s ahead: {lead}"
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    // Kubernetes expands $(VAR) from the container's env; JOB_COMPLETION_INDEX is the Job's.
    let expanded: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("$(JOB_COMPLETION_INDEX)", "5")
                .replace("$(SHARDS)", &env["SHARDS"])
                .replace("$(START_AT)", &env["START_AT"])
        })
        .collect();
    let at = |flag: &str| &expanded[expanded.iter().position(|a| a == flag).unwrap() + 1];
    assert_eq!(at("--shard"), "5/6");
    assert_eq!(
        at("--remote-write"),
        "http://receiver.monitoring.svc:9090/api/v1/write",
        "REMOTE_WRITE reaches every shard"
    );
    assert_eq!(
        loadagent::vocabulary::shard::parse_start_at(at("--start-at")).unwrap(),
        start_at,
        "every shard gets the one start time"
    );
    assert_eq!(at("--out"), "/results/shard-5.json");
    // The PodMonitor scrapes the port the shards serve their live metrics on.
    let listen = at("--metrics-listen");
    let port = &c["ports"][0];
    assert_eq!(
        listen.rsplit(':').next().unwrap(),
        port["containerPort"].to_string()
    );
    let pm = yaml(&dist.join("podmonitor.yaml")).remove(0);
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], port["name"]);
    assert_eq!(
        pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        spec["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
    );
    // The scenario the shards run is one loadagent reads.
    let cm = yaml(&dist.join("configmap.yaml")).remove(0);
    let text = cm["data"]["distributed.toml"].as_str().unwrap().to_string();
    let source = loadagent::vocabulary::Source::new(Path::new("distributed.toml"), text);
    loadagent::scenario::parse(&source).expect("the distributed scenario parses");

    let merge = yaml(&files[1]).remove(0);
    let margs: Vec<&str> = merge["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..6).map(|i| format!("/results/shard-{i}.json")).collect();
    assert_eq!(
        &margs[1..7],
        want.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(margs[0], "merge");
}
