//! What an adversary (or an unlucky user) gives loadagent: durations that overflow, device
//! nodes and unwritable places as outputs, devices and endless files as inputs, reports
//! crafted to exhaust memory, text that is not UTF-8, listen addresses that cannot be used.
//! Each must end in a clear message and exit 2 (never 101), and nothing may be destroyed.

mod common;

use std::path::Path;

use common::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `validate` and `run` both exit 2 and say `words` (and never 101).
fn refused_by_validate_and_run(dir: &Path, text: &str, words: &[&str]) {
    let path = scenario(dir, "s.toml", text);
    let path = path.to_str().unwrap();
    for args in [vec!["validate", path], vec!["run", "-q", path]] {
        let out = loadagent(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            common::text(&out)
        );
        for w in words {
            assert!(
                stderr(&out).contains(w),
                "{args:?} should say `{w}`: {}",
                common::text(&out)
            );
        }
    }
}

#[test]
fn durations_that_would_overflow_an_instant_are_refused_with_the_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "\"3000000000000000h\"";
    for (text, key) in [
        (
            GOOD_SCENARIO.replace("duration = \"1s\"", &format!("duration = {huge}")),
            "load.duration",
        ),
        (
            GOOD_SCENARIO.replace(
                "duration = \"1s\"",
                &format!("duration = \"1s\"\nwarmup = {huge}"),
            ),
            "load.warmup",
        ),
        (
            GOOD_SCENARIO.replace(
                "data = { payload_size = 8 }",
                &format!("data = {{ payload_size = 8 }}\ntimeout = {huge}"),
            ),
            "call.timeout",
        ),
    ] {
        refused_by_validate_and_run(dir.path(), &text, &[key, "8760h"]);
    }
    // Stages each within the maximum whose sum is not.
    let stages = GOOD_SCENARIO.replace(
        "rate = 100\nduration = \"1s\"\n",
        "[[load.stages]]\nduration = \"8000h\"\nrate = 10\n[[load.stages]]\nduration = \"8000h\"\nrate = 10\n",
    );
    refused_by_validate_and_run(dir.path(), &stages, &["load.stages", "8760h"]);
    // `requests` at a tiny rate: the run is bounded, it does not panic. Validation passes.
    let slow = GOOD_SCENARIO.replace(
        "rate = 100\nduration = \"1s\"\n",
        "rate = 0.000000000001\nrequests = 18446744073709551615\n",
    );
    let path = scenario(dir.path(), "slow.toml", &slow);
    let out = loadagent(&["validate", path.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(101), "{}", text(&out));

    // The agent: a schedule of such a scenario fails --check-config instead of panicking later.
    scenario(
        dir.path(),
        "huge.toml",
        &GOOD_SCENARIO.replace("duration = \"1s\"", &format!("duration = {huge}")),
    );
    let config = scenario(
        dir.path(),
        "agent.toml",
        "[[schedules]]\nscenario = \"huge.toml\"\nevery = \"1m\"\n",
    );
    let out = loadagent(&["agent", "--check-config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("8760h"), "{}", text(&out));
    // And intervals in the agent's own config.
    let config = scenario(
        dir.path(),
        "agent2.toml",
        &format!("[[targets]]\nname = \"t\"\naddress = \"127.0.0.1:1\"\ninterval = {huge}\n"),
    );
    let out = loadagent(&["agent", "--check-config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

fn is_char_device(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device())
}

#[test]
fn outputs_onto_device_nodes_and_links_to_them_are_written_through_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "s.toml",
        &GOOD_SCENARIO.replace("duration = \"1s\"", "duration = \"300ms\""),
    );
    // A device node of our own (a second /dev/null: major 1, minor 3), so that a bug here
    // cannot destroy the system's. Creating one needs root; every CI run here is root.
    let null = dir.path().join("null");
    let made = std::process::Command::new("mknod")
        .args([null.to_str().unwrap(), "c", "1", "3"])
        .status()
        .unwrap();
    assert!(made.success(), "mknod needs root (CI runs as root)");
    let link = dir.path().join("link-to-null");
    std::os::unix::fs::symlink(&null, &link).unwrap();
    for flag in ["--out", "--html", "--csv", "--hlog"] {
        for target in [&null, &link] {
            let out = loadagent(&[
                "run",
                "-q",
                s.to_str().unwrap(),
                flag,
                target.to_str().unwrap(),
            ]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{flag} {}: {}",
                target.display(),
                text(&out)
            );
            assert!(is_char_device(&null), "{flag} replaced the device node");
            assert!(
                std::fs::symlink_metadata(&link)
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                "{flag} replaced the link"
            );
        }
    }
    // `-` is standard output: the report alone, the summary on stderr.
    let out = loadagent(&["run", "-q", s.to_str().unwrap(), "--out", "-"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is the report alone");
    assert_eq!(report["schema"], "loadagent.report/v1");
    assert!(
        stderr(&out).contains("requests"),
        "the summary goes to stderr"
    );
    // A FIFO is written through: a reader on the other end gets the whole report.
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let out = loadagent(&[
        "run",
        "-q",
        s.to_str().unwrap(),
        "--out",
        fifo.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got: serde_json::Value = serde_json::from_slice(&reader.join().unwrap()).unwrap();
    assert_eq!(got["schema"], "loadagent.report/v1");
}

/// A tmpfs mounted at a new folder in `dir` (root only; CI runs as root), unmounted on drop.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, name: &str, options: &str) -> Self {
        let at = dir.join(name);
        std::fs::create_dir(&at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs", at.to_str().unwrap()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs needs root (CI runs as root)");
        Self(at)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn unwritable_outputs_fail_before_any_load_and_a_failed_final_write_is_kept_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    // A long run: if the check came after the load, this test would take a minute.
    let s = scenario(
        dir.path(),
        "s.toml",
        &GOOD_SCENARIO.replace("duration = \"1s\"", "duration = \"60s\""),
    );
    let read_only = Mount::tmpfs(dir.path(), "ro", "ro,size=64k");
    let on_read_only = read_only.0.join("r.json");
    for bad in [
        "/proc/r.json",
        "/sys/r.json",
        on_read_only.to_str().unwrap(),
    ] {
        for flag in ["--out", "--html", "--csv", "--hlog"] {
            let started = std::time::Instant::now();
            let out = loadagent(&["run", "-q", s.to_str().unwrap(), flag, bad]);
            assert_eq!(out.status.code(), Some(2), "{flag} {bad}: {}", text(&out));
            assert!(stderr(&out).contains(bad), "{}", text(&out));
            assert!(
                started.elapsed() < std::time::Duration::from_secs(50),
                "refused before the run"
            );
        }
    }
    // A full file system: a file can be created (so the check passes) but the report does
    // not fit. It is written elsewhere, and the message says where.
    let short = scenario(
        dir.path(),
        "short.toml",
        &GOOD_SCENARIO.replace("duration = \"1s\"", "duration = \"300ms\""),
    );
    let full = Mount::tmpfs(dir.path(), "full", "size=16k");
    let _ = std::process::Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}/fill", full.0.display()),
            "bs=4k",
        ])
        .output();
    let out_path = full.0.join("r.json");
    let out = loadagent(&[
        "run",
        "-q",
        short.to_str().unwrap(),
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    let kept = err
        .split("written to ")
        .nth(1)
        .and_then(|rest| rest.split(" instead").next())
        .unwrap_or_else(|| panic!("says where the report went: {err}"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kept).unwrap()).unwrap();
    assert_eq!(report["schema"], "loadagent.report/v1");
    std::fs::remove_file(kept).unwrap();
}

#[test]
fn device_and_endless_input_files_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let tls = GOOD_SCENARIO.replace(
        "address = \"embedded\"",
        "address = \"127.0.0.1:50051\"\n[target.tls]\nca = \"/dev/zero\"",
    );
    let path = scenario(dir.path(), "tls.toml", &tls);
    let out = loadagent(&["validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("target.tls.ca") && stderr(&out).contains("character device"),
        "{}",
        text(&out)
    );
    for (key, value) in [("data_file", "/dev/urandom"), ("protoset", "/dev/zero")] {
        let t = GOOD_SCENARIO.replace(
            "data = { payload_size = 8 }",
            &format!("{key} = \"{value}\""),
        );
        let path = scenario(dir.path(), "in.toml", &t);
        let out = loadagent(&["validate", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{key}: {}", text(&out));
        assert!(stderr(&out).contains("character device"), "{}", text(&out));
    }
    for cmd in [
        vec!["validate", "/dev/urandom"],
        vec!["run", "-q", "/dev/zero"],
        vec!["report", "/dev/zero"],
        vec!["agent", "--check-config", "/dev/urandom"],
    ] {
        let out = loadagent(&cmd);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {}", text(&out));
        assert!(stderr(&out).contains("character device"), "{}", text(&out));
    }
    let config = scenario(
        dir.path(),
        "agent.toml",
        "[[schedules]]\nscenario = \"/dev/urandom\"\nevery = \"1m\"\n",
    );
    let out = loadagent(&["agent", "--check-config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A file larger than a scenario may be.
    let big = dir.path().join("big.toml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(17 * 1024 * 1024).unwrap();
    let out = loadagent(&["validate", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("larger than"), "{}", text(&out));
}

#[test]
fn text_that_is_not_utf8_is_pointed_at_by_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.toml");
    let mut bytes = GOOD_SCENARIO
        .replace("name = \"x\"", "name = \"caf")
        .into_bytes();
    let at = bytes.iter().position(|&b| b == b'f').unwrap() + 1;
    bytes.splice(at..at, [0xe9, b'"']);
    std::fs::write(&path, bytes).unwrap();
    let out = loadagent(&["validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let want = format!("{}:1:12:", path.display());
    assert!(stderr(&out).contains(&want), "names {want}: {}", text(&out));
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, b"listen = \"127.0.0.1:0\"\n# \xff\n").unwrap();
    let out = loadagent(&["agent", "--check-config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!("{}:2:3:", config.display())),
        "{}",
        text(&out)
    );
}

#[test]
fn listen_addresses_the_agent_cannot_use_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["", "nonsense", "127.0.0.1:99999", ":9477", "[::1:9477"] {
        let config = scenario(dir.path(), "agent.toml", &format!("listen = \"{bad}\"\n"));
        let out = loadagent(&["agent", "--check-config", config.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "listen {bad:?}: {}", text(&out));
        assert!(stderr(&out).contains("`listen`"), "{}", text(&out));
        let out = loadagent(&["agent", "--listen", bad]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "--listen {bad:?}: {}",
            text(&out)
        );
    }
    for good in ["127.0.0.1:0", "[::]:9477", "localhost:9477", "0.0.0.0:9477"] {
        let config = scenario(dir.path(), "agent.toml", &format!("listen = \"{good}\"\n"));
        let out = loadagent(&["agent", "--check-config", config.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "listen {good:?}: {}",
            text(&out)
        );
    }
}

/// A real report, to be tampered with.
fn real_report(dir: &Path) -> serde_json::Value {
    let s = scenario(
        dir,
        "r.toml",
        &GOOD_SCENARIO.replace("duration = \"1s\"", "duration = \"300ms\""),
    );
    run_report(dir, &s)
}

#[test]
fn crafted_histograms_in_reports_exit_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let report = real_report(dir.path());
    let good = dir.path().join("good.json");
    std::fs::write(&good, report.to_string()).unwrap();
    // The 52 characters: a compressed histogram that declares 4 GB.
    let mut bytes = vec![0x1c, 0x84, 0x93, 0x14, 0xff, 0xff, 0xff, 0xff];
    bytes.extend_from_slice(&[0x78, 0x9c, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]);
    bytes.extend_from_slice(&[0; 20]);
    use base64::Engine;
    let bomb = base64::engine::general_purpose::STANDARD.encode(&bytes);
    assert!(bomb.len() <= 52, "{}", bomb.len());
    let mut cases = Vec::new();
    let mut tampered = report.clone();
    tampered["latency"]["uncorrected"]["hdr"] = bomb.into();
    cases.push(("bomb", tampered, "latency.uncorrected.hdr"));
    let mut tampered = report.clone();
    tampered["latency"]["corrected"]["hdr"] = "not base64!".into();
    cases.push(("garbage", tampered, "latency.corrected.hdr"));
    let mut tampered = report.clone();
    tampered["latency"]["corrected"]["count"] = (u64::MAX).into();
    cases.push(("count", tampered, "latency.corrected.hdr"));
    for (name, value, field) in cases {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, value.to_string()).unwrap();
        let p = path.to_str().unwrap();
        let html = dir.path().join("r.html");
        let merged = dir.path().join("m.json");
        for cmd in [
            vec!["report", p],
            vec!["report", p, "--html", html.to_str().unwrap()],
            vec![
                "merge",
                good.to_str().unwrap(),
                p,
                "--out",
                merged.to_str().unwrap(),
            ],
            vec!["compare", good.to_str().unwrap(), p],
        ] {
            let out = loadagent(&cmd);
            assert_eq!(out.status.code(), Some(2), "{name} {cmd:?}: {}", text(&out));
            assert!(
                stderr(&out).contains(field),
                "{name} {cmd:?} names {field}: {}",
                text(&out)
            );
        }
        assert!(!html.exists(), "no half-drawn page");
    }
}

fn metric(metrics: &str, series: &str) -> f64 {
    sample(metrics, series).unwrap_or(0.0)
}

#[test]
fn a_schedule_whose_scenario_turns_bad_is_counted_and_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let good = GOOD_SCENARIO
        .replace("name = \"x\"", "name = \"sched\"")
        .replace(
            "rate = 100\nduration = \"1s\"\n",
            "requests = 5\nconcurrency = 1\n",
        );
    scenario(dir.path(), "sched.toml", &good);
    let agent = start_agent(
        dir.path(),
        "[[schedules]]\nscenario = \"sched.toml\"\nevery = \"1s\"\n",
    );
    let a = agent.address();
    let runs = |m: &str| metric(m, "loadagent_runs_total{outcome=\"ok\",scenario=\"sched\"}");
    eventually(30, || {
        let (_, m) = http_get(&a, "/metrics");
        (runs(&m) >= 1.0)
            .then_some(())
            .ok_or_else(|| "no run yet".into())
    });
    // The file changes under the agent to one whose duration would overflow an instant.
    scenario(
        dir.path(),
        "sched.toml",
        &good.replace("requests = 5", "duration = \"3000000000000000h\""),
    );
    eventually(30, || {
        let (_, m) = http_get(&a, "/metrics");
        let failed = metric(
            &m,
            "loadagent_errors_total{component=\"schedule\",kind=\"prepare\"}",
        );
        (failed >= 1.0)
            .then_some(())
            .ok_or_else(|| format!("not counted yet: {failed}"))
    });
    // Fixed again: the same schedule runs again.
    let (_, m) = http_get(&a, "/metrics");
    let before = runs(&m);
    scenario(dir.path(), "sched.toml", &good);
    eventually(30, || {
        let (_, m) = http_get(&a, "/metrics");
        (runs(&m) > before)
            .then_some(())
            .ok_or_else(|| "the schedule did not run again".into())
    });
}

#[test]
fn a_bug_that_panics_a_generator_thread_still_reports_what_ran_and_exits_70() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "s.toml",
        &GOOD_SCENARIO.replace(
            "rate = 100\nduration = \"1s\"\n",
            "rate = 400\nduration = \"1s\"\nconnections = 2\nthreads = 2\n",
        ),
    );
    let out_path = dir.path().join("r.json");
    let out = std::process::Command::new("timeout")
        .args(["120", bin(), "run", "-q", s.to_str().unwrap(), "--out"])
        .arg(&out_path)
        .env("LOADAGENT_FAULT_GENERATOR_PANIC", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(70), "{}", text(&out));
    assert!(stderr(&out).contains("internal error"), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    assert_eq!(report["generator_panics"], 1, "{report}");
    assert!(
        num(&report, "totals.ok") > 0.0,
        "the other thread's requests are reported: {report}"
    );
}
