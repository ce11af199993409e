//! `loadagent run --repeat` and `loadagent compare` on reports of real runs against the
//! embedded target. The second architecture is stood for by copies whose fingerprint is
//! rewritten (one machine has one architecture); ratios are checked against figures computed
//! here from the input files, and the noise verdicts against groups that are the same sample
//! and groups whose throughput differs by 2x.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn scenario_at(dir: &Path, name: &str, rate: u32) -> PathBuf {
    scenario(
        dir,
        &format!("{name}.toml"),
        &format!(
            r#"
name = "cmp"
kind = "unary"
[target]
address = "embedded"
[call]
method = "loadagent.bench.v1.Bench/Unary"
data = {{ payload_size = 32 }}
[load]
rate = {rate}
duration = "2s"
"#
        ),
    )
}

/// Runs `scenario` three times with --repeat into `out` and returns the report files.
fn three_runs(scenario: &Path, out: &Path) -> Vec<PathBuf> {
    let run = loadagent(&[
        "run",
        "-q",
        scenario.to_str().unwrap(),
        "--repeat",
        "3",
        "--out-dir",
        out.to_str().unwrap(),
        "--pause",
        "100ms",
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "one report per run: {files:?}");
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("cmp-") && name.ends_with(&format!("-{:02}.json", i + 1)),
            "{name}"
        );
    }
    files
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Copies `files` into `dir` with `platform.<field>` set to `value`.
fn rewritten(files: &[PathBuf], dir: &Path, field: &str, value: &str) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    files
        .iter()
        .map(|f| {
            let mut r = read(f);
            r["platform"][field] = Value::String(value.into());
            let out = dir.join(f.file_name().unwrap());
            std::fs::write(&out, serde_json::to_string(&r).unwrap()).unwrap();
            out
        })
        .collect()
}

fn compare_json(files: &[&PathBuf], extra: &[&str]) -> Value {
    let mut args = vec!["compare", "--format", "json"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    args.extend(extra);
    let out = loadagent(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("compare --format json is JSON")
}

fn mean(files: &[PathBuf], f: impl Fn(&Value) -> f64) -> f64 {
    files.iter().map(|p| f(&read(p))).sum::<f64>() / files.len() as f64
}

fn cpu_per_1k(r: &Value) -> f64 {
    (num(r, "process.cpu_user_seconds") + num(r, "process.cpu_system_seconds"))
        / num(r, "totals.requests")
        * 1000.0
}

#[test]
fn compare_groups_by_arch_computes_ratios_and_judges_noise() {
    let dir = tempfile::tempdir().unwrap();
    let slow = three_runs(&scenario_at(dir.path(), "slow", 100), &dir.path().join("a"));
    let fast = three_runs(&scenario_at(dir.path(), "fast", 200), &dir.path().join("b"));
    let fast_arm = rewritten(&fast, &dir.path().join("b-arm"), "arch", "aarch64");

    // 2x the throughput: the ratios are the ones computed from the files, and beyond noise.
    let all: Vec<&PathBuf> = slow.iter().chain(&fast_arm).collect();
    let c = compare_json(&all, &[]);
    assert_eq!(c["schema"], "loadagent.compare/v1");
    assert_eq!(c["by"], "arch");
    let here = std::env::consts::ARCH;
    assert_eq!(
        c["groups"][0]["value"], here,
        "the first report's group is the baseline"
    );
    assert_eq!(c["groups"][1]["value"], "aarch64");
    let m = &c["comparisons"][0]["metrics"];
    let by_hand = |f: &dyn Fn(&Value) -> f64| mean(&fast_arm, f) / mean(&slow, f);
    for (key, want) in [
        ("rps", by_hand(&|r| num(r, "totals.rps"))),
        (
            "rps_per_core",
            by_hand(&|r| num(r, "totals.rps") / num(r, "platform.usable_cpus")),
        ),
        ("cpu_seconds_per_1k", by_hand(&cpu_per_1k)),
        (
            "peak_rss_bytes",
            by_hand(&|r| num(r, "process.peak_rss_bytes")),
        ),
    ] {
        let got = num(m, &format!("{key}.ratio"));
        assert!(
            (got - want).abs() < 1e-9,
            "{key}: compare says {got}, by hand {want}"
        );
    }
    let rps = num(m, "rps.ratio");
    assert!((1.9..2.1).contains(&rps), "asked 200 vs 100 req/s: {rps}");
    assert_eq!(m["rps"]["verdict"], "better");
    let ci = &m["rps"]["ci95"];
    assert!(
        ci[0].as_f64().unwrap() > 1.0,
        "the interval excludes 1: {ci}"
    );
    assert_eq!(
        c["groups"][0]["metrics"]["rps"]["runs"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // The same runs on both sides: every ratio is 1 and within noise.
    let slow_arm = rewritten(&slow, &dir.path().join("a-arm"), "arch", "aarch64");
    let same: Vec<&PathBuf> = slow.iter().chain(&slow_arm).collect();
    let c = compare_json(&same, &[]);
    for (key, v) in c["comparisons"][0]["metrics"].as_object().unwrap() {
        assert_eq!(v["verdict"], "within_noise", "{key}: {v}");
        if let Some(r) = v["ratio"].as_f64() {
            assert!((r - 1.0).abs() < 1e-12, "{key}: {r}");
        }
    }

    // One run per group: the difference is not established.
    let c = compare_json(&[&slow[0], &fast_arm[0]], &[]);
    assert_eq!(
        c["comparisons"][0]["metrics"]["rps"]["verdict"],
        "not_established"
    );
    assert!(c["comparisons"][0]["metrics"]["rps"]["ci95"].is_null());

    // Text, markdown and HTML say the same.
    let out = loadagent(&[
        "compare",
        slow[0].to_str().unwrap(),
        slow[1].to_str().unwrap(),
        fast_arm[0].to_str().unwrap(),
        fast_arm[1].to_str().unwrap(),
        "--format",
        "markdown",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains(&format!(
            "| metric | {here} (2 runs) | aarch64 (2 runs) | aarch64 / {here} | 95% CI | verdict |"
        )),
        "{md}"
    );
    let html = dir.path().join("compare.html");
    let out = loadagent(&[
        "compare",
        slow[0].to_str().unwrap(),
        fast_arm[0].to_str().unwrap(),
        "--format",
        "html",
        "--out",
        html.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(std::fs::read_to_string(&html).unwrap().contains("<table>"));

    // --by another field: here every report has the same hostname, so one group: exit 2.
    let mut args = vec!["compare", "--by", "hostname"];
    args.extend(all.iter().map(|p| p.to_str().unwrap()));
    let out = loadagent(&args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("only one group"), "{}", text(&out));
}

#[test]
fn compare_refuses_what_it_cannot_compare() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario_at(dir.path(), "one", 50);
    run_report(dir.path(), &s);
    let report = dir.path().join("report.json");
    let expect_2 = |args: &[&str], words: &str| {
        let out = loadagent(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(words),
            "{args:?} should say `{words}`: {}",
            text(&out)
        );
    };
    let r = report.to_str().unwrap();
    expect_2(&["compare", r], "at least two reports");

    let arm = rewritten(
        std::slice::from_ref(&report),
        &dir.path().join("arm"),
        "arch",
        "aarch64",
    );
    let arm = arm[0].to_str().unwrap();
    expect_2(
        &["compare", r, arm, "--by", "colour"],
        "not a platform field; valid:",
    );

    // Another schema.
    let mut other = read(&report);
    other["schema"] = Value::String("someone.else/v9".into());
    let other_path = dir.path().join("other.json");
    std::fs::write(&other_path, other.to_string()).unwrap();
    expect_2(
        &["compare", r, other_path.to_str().unwrap()],
        "someone.else/v9",
    );

    // A group without one successful request.
    let mut failed = read(Path::new(arm));
    failed["totals"]["ok"] = Value::from(0);
    failed["totals"]["errors"] = failed["totals"]["requests"].clone();
    let failed_path = dir.path().join("failed.json");
    std::fs::write(&failed_path, failed.to_string()).unwrap();
    expect_2(
        &["compare", r, failed_path.to_str().unwrap()],
        "has no successful requests",
    );

    // Another scenario: refused, unless --force.
    let mut renamed = read(Path::new(arm));
    renamed["name"] = Value::String("something-else".into());
    let renamed_path = dir.path().join("renamed.json");
    std::fs::write(&renamed_path, renamed.to_string()).unwrap();
    let rp = renamed_path.to_str().unwrap();
    expect_2(&["compare", r, rp], "another scenario");
    let out = loadagent(&["compare", r, rp, "--force", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["forced"], true);
}

/// Run labels: written in the scenario and on the command line (which wins), kept in the
/// report and its summary, kept by merge where the inputs agree, and grouped by in compare.
#[test]
fn labels_round_trip_through_run_merge_and_compare() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "labelled.toml",
        r#"
name = "cmp"
kind = "unary"
labels = { target_arch = "amd64", instance = "m7i.large" }
[target]
address = "embedded"
[call]
method = "loadagent.bench.v1.Bench/Unary"
data = { payload_size = 32 }
[load]
rate = 200
duration = "1s"
"#,
    );
    let mut files = Vec::new();
    for (i, arch) in ["amd64", "amd64", "arm64", "arm64"].iter().enumerate() {
        let out = dir.path().join(format!("r{i}.json"));
        let label = format!("target_arch={arch}");
        let run = loadagent(&[
            "run",
            s.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--label",
            &label,
            "--label",
            "price_per_hour=0.1",
        ]);
        let said = text(&run);
        assert_eq!(run.status.code(), Some(0), "{said}");
        assert!(
            said.contains(&format!(
                "labels    instance=m7i.large, price_per_hour=0.1, target_arch={arch}"
            )),
            "{said}"
        );
        let r = read(&out);
        assert_eq!(r["labels"]["target_arch"], *arch);
        assert_eq!(r["labels"]["instance"], "m7i.large");
        files.push(out);
    }
    let c = compare_json(
        &files.iter().collect::<Vec<_>>(),
        &["--by", "label:target_arch"],
    );
    let groups: Vec<&str> = c["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["value"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["amd64", "arm64"], "{c}");
    // A label no report has is named, with the ones they have.
    let out = loadagent(&[
        "compare",
        files[0].to_str().unwrap(),
        files[2].to_str().unwrap(),
        "--by",
        "label:zone",
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("no report has the label `zone`") && said.contains("target_arch"),
        "{said}"
    );
    // Merged: the labels all inputs agree on stay.
    let merged = dir.path().join("m.json");
    let m = loadagent(&[
        "merge",
        files[0].to_str().unwrap(),
        files[2].to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(m.status.code(), Some(0), "{}", text(&m));
    let m = read(&merged);
    assert_eq!(m["labels"]["instance"], "m7i.large");
    assert!(m["labels"].get("target_arch").is_none(), "{}", m["labels"]);
    // Bad labels are refused before any load, naming what to write.
    let bad = loadagent(&["run", s.to_str().unwrap(), "--label", "1bad=x"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("not a label name"), "{}", text(&bad));
    let file = scenario(
        dir.path(),
        "badlabel.toml",
        &std::fs::read_to_string(&s)
            .unwrap()
            .replace("instance = ", "\"bad-name\" = "),
    );
    let v = loadagent(&["validate", file.to_str().unwrap()]);
    let said = text(&v);
    assert_eq!(v.status.code(), Some(2), "{said}");
    assert!(
        said.contains("labels.bad-name") && said.contains(":4:"),
        "{said}"
    );
}

/// The regression gate: `--fail-on rps` exits 3 when a group's throughput is worse than the
/// baseline's beyond noise (with the markdown a pull request can take), 0 the other way
/// round; unknown figures and baselines are refused naming what is valid.
#[test]
fn the_regression_gate_fails_on_a_figure_worse_beyond_noise() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, (rate, speed)) in [(200, "fast"), (200, "fast"), (100, "slow"), (100, "slow")]
        .into_iter()
        .enumerate()
    {
        let s = scenario_at(dir.path(), &format!("g{i}"), rate);
        let out = dir.path().join(format!("g{i}.json"));
        let label = format!("build={speed}");
        let run = loadagent(&[
            "run",
            "-q",
            s.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--label",
            &label,
        ]);
        assert_eq!(run.status.code(), Some(0), "{}", text(&run));
        files.push(out);
    }
    let gate = |baseline: &str, figures: &str| {
        let mut args = vec!["compare", "--by", "label:build", "--format", "markdown"];
        args.extend(files.iter().map(|f| f.to_str().unwrap()));
        args.extend(["--baseline", baseline, "--fail-on", figures]);
        loadagent(&args)
    };
    let failed = gate("fast", "rps,latency_p99_us");
    let said = text(&failed);
    assert_eq!(failed.status.code(), Some(3), "{said}");
    assert!(
        said.contains("rps: label:build = slow is worse than label:build = fast beyond noise"),
        "{said}"
    );
    assert!(
        String::from_utf8_lossy(&failed.stdout).contains('|'),
        "the markdown table: {said}"
    );
    let passed = gate("slow", "rps");
    assert_eq!(passed.status.code(), Some(0), "{}", text(&passed));
    let unknown = gate("fast", "speediness");
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("--fail-on speediness")
            && text(&unknown).contains("latency_p99_us")
    );
    let nobody = gate("medium", "rps");
    assert_eq!(nobody.status.code(), Some(2), "{}", text(&nobody));
    assert!(
        text(&nobody).contains("the groups: fast, slow"),
        "{}",
        text(&nobody)
    );
}
