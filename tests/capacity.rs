//! Capacity searches (`[capacity]`) against a server this project did not write: Python
//! grpcio with W worker threads and a fixed service time S per call (a sleep), whose
//! capacity is about W / S. The search finds it within its precision plus 10% for two
//! servers whose capacities differ 2×; a generator held back by its concurrency is named as
//! the limit with no capacity; bad `[capacity]` tables are refused naming the key.

mod common;

use common::*;
use serde_json::Value;

/// The searches measure a server's capacity on this machine: one at a time, so a test that
/// loads the CPU (the generator's) does not lower another's figures.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn search(
    dir: &std::path::Path,
    name: &str,
    address: &str,
    delay_ms: u32,
    extra: &str,
) -> (std::process::Output, Option<Value>) {
    let s = scenario(
        dir,
        &format!("{name}.toml"),
        &format!(
            r#"
name = "{name}"
kind = "unary"
[target]
address = "{address}"
{extra}
[call]
method = "testing.echo.v1.Echo/Say"
data = {{ message = "capacity", delay_ms = {delay_ms} }}
timeout = "5s"
[load]
# Enough for W / S (8 in flight at 400/s) with room for a queue, little enough that an
# overloaded step's calls in flight drain within the next step's settle time.
concurrency = 64
warmup = "1s"
[capacity]
slo = ["latency.p99 < 250ms", "error_rate < 1%"]
start_rate = 50
precision = 0.1
step = "3s"
settle = "1s"
confirm = "0s"
max_duration = "3m"
"#
        ),
    );
    let out = dir.join(format!("{name}.json"));
    let label = format!("workers={name}");
    let run = loadagent(&[
        "run",
        s.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--label",
        &label,
    ]);
    let report = std::fs::read_to_string(&out)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    (run, report)
}

#[test]
fn the_search_finds_w_over_s_for_two_servers_twice_apart() {
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut found = Vec::new();
    for workers in [4u32, 8] {
        let pid_file = dir.path().join(format!("w{workers}.pid"));
        let server = Server::python(&[
            "--workers",
            &workers.to_string(),
            "--pid-file",
            pid_file.to_str().unwrap(),
        ]);
        // The server's process watched: the CPU it used in each step.
        let process = format!("process = \"{}\"", pid_file.display());
        let (run, report) = search(
            dir.path(),
            &format!("w{workers}"),
            &server.address(),
            20,
            &process,
        );
        let said = text(&run);
        assert_eq!(run.status.code(), Some(0), "{said}");
        let report = report.unwrap();
        let c = &report["capacity"];
        let want = f64::from(workers) / 0.020;
        let rps = c["rps"]
            .as_f64()
            .unwrap_or_else(|| panic!("no capacity: {c}"));
        assert!(
            (rps - want).abs() <= 0.2 * want,
            "{workers} workers × 20 ms: found {rps}/s, want about {want}/s: {c}"
        );
        // Past W / S the service falls behind (achieved below offered) and queues (the
        // corrected p99 grows): either is what bounds it.
        let limit = c["limited_by"].as_str().unwrap();
        assert!(limit == "slo" || limit == "target_saturated", "{c}");
        // The answer's step passed; a failing step lies within the precision above it.
        let steps = c["steps"].as_array().unwrap();
        assert!(
            steps
                .iter()
                .any(|s| s["rate"].as_f64() == Some(rps) && s["passed"] == true),
            "{c}"
        );
        let above = steps
            .iter()
            .filter(|s| s["passed"] == false && s["repeated"] != true)
            .map(|s| s["rate"].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        assert!(above > rps && above <= rps * 1.1 + 1e-6, "{c}");
        // Capacity per core the server used at the found rate: that step's own figure.
        let at = steps
            .iter()
            .rev()
            .find(|s| s["rate"].as_f64() == Some(rps) && s["passed"] == true)
            .unwrap();
        let cores = at["server_cores"]
            .as_f64()
            .unwrap_or_else(|| panic!("{at}"));
        let per_core = c["per_server_core"].as_f64().unwrap();
        assert!(
            cores > 0.0 && (per_core - rps / cores).abs() <= 0.01 * per_core,
            "{c}"
        );
        // The server's platform: this node's, with the cores the server process may use
        // (its affinity and cgroup quota), and capacity per usable core from it.
        let usable = report["target_process"]["platform"]["usable_cpus"]
            .as_f64()
            .unwrap_or_else(|| panic!("{}", report["target_process"]));
        assert!(usable >= 1.0, "{usable}");
        let per_usable = c["per_usable_core"].as_f64().unwrap();
        assert!((per_usable - rps / usable).abs() <= 0.001, "{c}");
        assert!(
            said.contains("capacity  ") && said.contains(&format!("limited by {limit}")),
            "{said}"
        );
        found.push(rps);
    }
    let ratio = found[0] / found[1];
    assert!((0.4..=0.6).contains(&ratio), "{found:?}");

    // compare groups the searches by their label and compares capacities. Each search is
    // repeated here by a copy of its report with the capacity 1% off (a second search per
    // server would double the test's time), so each group has a noise estimate.
    let mut files = Vec::new();
    // The price of an hour of each server, as a person labels it: the bigger server costs
    // four times as much, so its requests per currency unit are half the smaller one's.
    for (name, price) in [("w4", "0.05"), ("w8", "0.2")] {
        let path = dir.path().join(format!("{name}.json"));
        let mut report: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        report["labels"]["price_per_hour"] = price.into();
        std::fs::write(&path, report.to_string()).unwrap();
        let mut copy = report;
        let rps = copy["capacity"]["rps"].as_f64().unwrap();
        copy["capacity"]["rps"] = (rps * 1.01).into();
        let again = dir.path().join(format!("{name}-again.json"));
        std::fs::write(&again, copy.to_string()).unwrap();
        files.push(path);
        files.push(again);
    }
    let mut args = vec![
        "compare",
        "--by",
        "label:workers",
        "--format",
        "json",
        "--force",
    ];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = loadagent(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    let capacity = &c["comparisons"][0]["metrics"]["capacity_rps"];
    let r = capacity["ratio"].as_f64().unwrap();
    assert!((1.6..=2.5).contains(&r), "w8 / w4: {capacity}");
    assert_eq!(capacity["verdict"], "better", "{capacity}");
    let per_currency = &c["comparisons"][0]["metrics"]["capacity_requests_per_currency"];
    let pr = per_currency["ratio"].as_f64().unwrap();
    assert!((pr - r / 4.0).abs() < 1e-9, "{per_currency} vs {capacity}");
    assert_eq!(per_currency["verdict"], "worse", "{per_currency}");
    assert_eq!(
        c["groups"][0]["value"], "w4",
        "the first seen is the baseline"
    );
    let w4 = &c["groups"][0]["metrics"]["capacity_requests_per_currency"]["runs"][0];
    assert!(
        (w4.as_f64().unwrap() - found[0] * 3600.0 / 0.05).abs() < 1e-6,
        "requests an hour at capacity per unit of price: {w4}"
    );
    assert!(c["groups"][0]["metrics"]["capacity_per_usable_core"].is_object());

    // The pictures: a search's HTML report has its curve with the found rate and the SLO
    // marked; compare's HTML overlays both groups' curves.
    let html = dir.path().join("w4.html");
    let out = loadagent(&[
        "report",
        files[0].to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("Capacity search: achieved vs offered rate")
            && page.contains(&format!("capacity {:.0}/s", found[0]))
            && page.contains("SLO latency.p99 &lt; 250ms"),
        "the capacity curve in the HTML report"
    );
    let mut args = vec![
        "compare",
        "--by",
        "label:workers",
        "--format",
        "html",
        "--force",
    ];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = loadagent(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.contains("Capacity searches")
            && page.contains("w4 #2")
            && page.contains("w8 #1")
            && page.contains(&format!("w8: capacity {:.0}/s", found[1])),
        "the groups' curves overlaid"
    );
}

/// A generator that cannot keep up — its concurrency far below what the rate needs while
/// it is busy — is named as the limit: no capacity, exit 4.
#[test]
fn a_generator_that_cannot_keep_up_is_the_limit_not_the_service() {
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "gen.toml",
        r#"
name = "gen"
kind = "unary"
[target]
address = "embedded"
[call]
method = "loadagent.bench.v1.Bench/Unary"
data = { payload_size = 8 }
[load]
concurrency = 4
threads = 1
warmup = "1s"
[capacity]
slo = ["latency.p99 < 1s"]
start_rate = 2000
growth = 4
step = "2s"
settle = "1s"
confirm = "0s"
max_duration = "1m"
"#,
    );
    let out = dir.path().join("gen.json");
    let run = loadagent(&["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let said = text(&run);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let c = &report["capacity"];
    assert_eq!(c["limited_by"], "generator", "{c}\n{said}");
    assert!(c["rps"].is_null(), "{c}");
    assert_eq!(run.status.code(), Some(4), "{said}");
    assert!(said.contains("the generator was the limit"), "{said}");
}

#[test]
fn bad_capacity_tables_are_refused_naming_the_key() {
    let base = |extra: &str, load: &str| {
        format!(
            "name = \"x\"\nkind = \"unary\"\n[target]\naddress = \"embedded\"\n[call]\nmethod = \"loadagent.bench.v1.Bench/Unary\"\n[load]\n{load}\n[capacity]\n{extra}\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    for (extra, load, says) in [
        ("start_rate = 10", "", "capacity.slo"),
        (
            "slo = [\"latency.p99\"]",
            "",
            "write a metric and a condition",
        ),
        (
            "slo = [\"latency.p99 < 50ms\"]\ngrowth = 1",
            "",
            "capacity.growth",
        ),
        (
            "slo = [\"latency.p99 < 50ms\"]\nprecision = 0.9",
            "",
            "capacity.precision",
        ),
        (
            "slo = [\"latency.p99 < 50ms\"]\nstep = \"10s\"\nmax_duration = \"15s\"",
            "",
            "capacity.max_duration",
        ),
        (
            "slo = [\"latency.p99 < 50ms\"]\nsettle = \"10s\"",
            "",
            "capacity.settle",
        ),
        (
            "slo = [\"latency.p99 < 50ms\"]\nmax_rate = 10",
            "",
            "capacity.max_rate",
        ),
        ("slo = [\"latency.p99 < 50ms\"]", "rate = 100", "load.rate"),
        (
            "slo = [\"latency.p99 < 50\"]",
            "",
            "is a latency: give the limit a unit",
        ),
        (
            "slo = [\"phases.tls_handshake.p99 < 5ms\"]",
            "",
            "capacity.slo",
        ),
    ] {
        let path = scenario(dir.path(), "bad.toml", &base(extra, load));
        let out = loadagent(&["validate", path.to_str().unwrap()]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{extra}: {said}");
        assert!(said.contains(says), "{extra}: should say {says}: {said}");
    }
}

/// A search that passes every step up to a high max_rate, against `address`: it runs until
/// stopped.
fn long_search(dir: &std::path::Path, name: &str, address: &str) -> std::path::PathBuf {
    scenario(
        dir,
        &format!("{name}.toml"),
        &format!(
            "name = \"{name}\"\nkind = \"unary\"\n[target]\naddress = \"{address}\"\n[call]\nmethod = \"loadagent.bench.v1.Bench/Unary\"\ntimeout = \"1s\"\n[load]\nconcurrency = 16\n[capacity]\nslo = [\"latency.p99 < 5s\"]\nstart_rate = 20\ngrowth = 1.5\nmax_rate = 100000\nstep = \"2s\"\nsettle = \"1s\"\nconfirm = \"0s\"\nmax_duration = \"5m\"\n"
        ),
    )
}

fn read_report(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Ctrl-C mid-search: the report has the steps done and says `interrupted`.
#[test]
fn ctrl_c_mid_search_writes_the_steps_done() {
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let s = long_search(dir.path(), "interrupted", "embedded");
    let out = dir.path().join("interrupted.json");
    let run = spawn_run(&s, &out);
    std::thread::sleep(std::time::Duration::from_secs(8));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let finished = run.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&finished.stderr);
    assert_eq!(finished.status.code(), Some(0), "{said}");
    let r = read_report(&out);
    assert_eq!(r["interrupted"], true);
    let c = &r["capacity"];
    assert_eq!(c["limited_by"], "interrupted", "{c}");
    assert!(c["rps"].is_null(), "{c}");
    let steps = c["steps"].as_array().unwrap();
    assert!(
        steps.len() >= 2 && steps.iter().all(|s| s["passed"] == true),
        "the steps done before Ctrl-C: {c}"
    );
}

/// The target dies mid-search: the search stops with the steps done, as a failed run.
#[test]
fn a_target_that_dies_mid_search_stops_it_as_a_failed_run() {
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut target = Server::reference_target();
    let s = long_search(dir.path(), "dies", &target.address());
    let out = dir.path().join("dies.json");
    let run = spawn_run(&s, &out);
    std::thread::sleep(std::time::Duration::from_secs(7));
    target.child.kill().unwrap();
    target.child.wait().unwrap();
    let finished = run.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&finished.stderr);
    assert_eq!(finished.status.code(), Some(1), "{said}");
    assert!(said.contains("the target failed"), "{said}");
    let c = &read_report(&out)["capacity"];
    assert_eq!(c["limited_by"], "target_failed", "{c}");
    let steps = c["steps"].as_array().unwrap();
    assert!(steps.len() >= 2, "{c}");
    assert!(
        steps[0]["passed"] == true && steps.last().unwrap()["passed"] == false,
        "{c}"
    );
}

/// Every kind with a rate searches the same way: bidi streams by streams per second against
/// grpcio, a TLS handshake storm by handshakes per second, and unary calls over gRPC-Web
/// against sonora. Each passes its two steps and stops at max_rate, having achieved what it
/// offered.
#[test]
fn streams_storms_and_grpc_web_search_by_their_own_rate() {
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let grpcio = Server::python(&[]);
    let web = Server::python_web(&[]);
    let capacity = "[capacity]\nslo = [\"latency.p99 < 2s\", \"error_rate < 1%\"]\nstart_rate = 20\nmax_rate = 40\nstep = \"2s\"\nsettle = \"1s\"\nconfirm = \"0s\"\nmax_duration = \"1m\"\n";
    let proto = repo().join("tests/python/echo.proto");
    let cases = [
        (
            "bidi",
            format!("name = \"bidi\"\nkind = \"bidi_stream\"\n[target]\naddress = \"{}\"\n[call]\nmethod = \"testing.echo.v1.Echo/Chat\"\ndata = {{ message = \"hi\" }}\n[load]\nconcurrency = 16\n[stream]\nmessages = 3\n{capacity}", grpcio.address()),
        ),
        (
            "storm",
            format!("name = \"storm\"\nkind = \"tls_handshake\"\n[target]\naddress = \"embedded\"\n[target.tls]\n[load]\nconcurrency = 16\n{capacity}"),
        ),
        (
            "web",
            format!("name = \"web\"\nkind = \"unary\"\n[target]\naddress = \"{}\"\nprotocol = \"grpc-web\"\n[call]\nmethod = \"testing.echo.v1.Echo/Say\"\nproto = [{:?}]\ndata = {{ message = \"hi\" }}\n[load]\nconcurrency = 16\n{capacity}", web.address(), proto.display().to_string()),
        ),
    ];
    let mut storm = Value::Null;
    for (name, body) in cases {
        let r = run_report(
            dir.path(),
            &scenario(dir.path(), &format!("{name}.toml"), &body),
        );
        let c = &r["capacity"];
        assert_eq!(c["limited_by"], "max_rate", "{name}: {c}");
        assert_eq!(c["rps"].as_f64(), Some(40.0), "{name}: {c}");
        for step in c["steps"].as_array().unwrap() {
            let (rate, achieved) = (
                step["rate"].as_f64().unwrap(),
                step["achieved_rps"].as_f64().unwrap(),
            );
            assert!(
                step["passed"] == true && (achieved - rate).abs() <= 0.1 * rate,
                "{name}: each step achieves what it offers: {c}"
            );
        }
        if name == "storm" {
            storm = r;
        }
    }
    // The storm's steps are handshakes: one per call it counted.
    assert_eq!(
        storm["phases"]["tls_handshake"]["count"].as_u64(),
        storm["totals"]["requests"].as_u64(),
        "{}",
        storm["phases"]
    );
}
