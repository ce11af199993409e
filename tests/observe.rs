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
}
