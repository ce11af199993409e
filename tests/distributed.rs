//! Distributed runs: shard processes on this machine (as the pods of an Indexed Job would run)
//! against a Python grpcio server that counts what it serves, started together by
//! `--start-at`, merged exactly by `loadagent merge`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use loadagent::record::histogram::{decode, new_histogram, LatencySummary};

const SHARDS: u32 = 3;

/// Starts shard `index` of `SHARDS` writing its report to `out`.
fn shard(scenario: &std::path::Path, index: u32, start_at: &str, out: &std::path::Path) -> Child {
    Command::new(bin())
        .args(["run", "-q"])
        .arg(scenario)
        .args([
            "--shard",
            &format!("{index}/{SHARDS}"),
            "--start-at",
            start_at,
        ])
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a shard")
}

fn in_seconds(s: f64) -> String {
    let t = SystemTime::now() + Duration::from_secs_f64(s);
    format!("{:.3}", t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64())
}

#[test]
fn shards_started_together_merge_into_exactly_the_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&[]);
    // 300 req/s for 3 s: 900 sends, 300 per shard. The threshold holds for every shard alone
    // (300 < 500) and fails for the whole (900): only the merge can see it.
    let s = scenario(
        dir.path(),
        "dist.toml",
        &format!(
            "{}\n[thresholds]\n\"requests\" = \"< 500\"\n",
            echo_scenario(
                &server.address(),
                r#"data = { message = "n{{request_number}}" }"#,
                "rate = 300\nduration = \"3s\"\nconcurrency = 32"
            )
        ),
    );
    let start_at = in_seconds(4.0);
    let outs: Vec<_> = (0..SHARDS)
        .map(|i| dir.path().join(format!("shard-{i}.json")))
        .collect();
    let runs: Vec<_> = (0..SHARDS)
        .map(|i| shard(&s, i, &start_at, &outs[i as usize]))
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let counts = server.stop_with_counts();
    let reports: Vec<serde_json::Value> = outs
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r["shard"]["index"], i as u64);
        assert_eq!(r["shard"]["count"], SHARDS);
        // About a millisecond when the machine is quiet (benches/distributed.sh); a shared CI
        // machine may deschedule a spinning shard for a few tens.
        let skew = num(r, "shard.start_skew_ms");
        assert!(
            (0.0..50.0).contains(&skew),
            "shard {i} started {skew} ms after --start-at"
        );
        assert_eq!(num(r, "totals.requests"), 300.0, "shard {i}");
        assert_eq!(r["thresholds"][0]["passed"], true, "300 < 500 alone");
    }

    let merged_path = dir.path().join("merged.json");
    let mut args = vec!["merge".to_string()];
    args.extend(outs.iter().map(|p| p.display().to_string()));
    args.extend(["--out".into(), merged_path.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = loadagent(&args);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the whole run missed the threshold: {}",
        text(&out)
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged_path).unwrap()).unwrap();
    assert_eq!(num(&m, "totals.requests"), 900.0);
    assert_eq!(
        num(&m, "totals.requests"),
        counts["requests"].as_f64().unwrap(),
        "merged requests equal the server's count"
    );
    assert_eq!(num(&m, "load.asked_requests"), 900.0);
    assert_eq!(m["thresholds"][0]["actual"], 900.0);
    assert_eq!(m["thresholds"][0]["passed"], false);
    // Every request number 0..900 was sent exactly once, across the shards.
    let messages = counts["messages"].as_object().unwrap();
    assert_eq!(messages.len(), 900, "900 distinct request numbers");
    for k in 0..900 {
        assert_eq!(messages[&format!("n{k}")], 1, "request number {k}");
    }
    // The merged corrected histogram is the sum of the shards'.
    let mut sum = new_histogram();
    for r in &reports {
        sum.add(decode(r["latency"]["corrected"]["hdr"].as_str().unwrap()).unwrap())
            .unwrap();
    }
    let merged = decode(m["latency"]["corrected"]["hdr"].as_str().unwrap()).unwrap();
    assert_eq!(merged.len(), sum.len());
    let (a, b) = (LatencySummary::of(&merged), LatencySummary::of(&sum));
    assert_eq!(
        (a.p50_us, a.p99_us, a.max_us),
        (b.p50_us, b.p99_us, b.max_us)
    );
    assert_eq!(num(&m, "latency.corrected.p99_us"), b.p99_us as f64);
    // Interval percentiles too: each merged interval's histogram is the sum of the shards'
    // intervals at that time (all started together, so their intervals line up).
    let intervals = m["intervals"].as_array().unwrap();
    assert!(intervals.len() >= 3);
    for merged in intervals {
        let t = merged["t_seconds"].as_u64().unwrap();
        let mut sum = new_histogram();
        for r in &reports {
            for i in r["intervals"].as_array().unwrap() {
                if i["t_seconds"].as_u64() == Some(t) {
                    sum.add(decode(i["hdr"].as_str().unwrap()).unwrap())
                        .unwrap();
                }
            }
        }
        let s = LatencySummary::of(&sum);
        assert_eq!(merged["requests"].as_u64(), Some(sum.len()), "interval {t}");
        assert_eq!(merged["p99_us"].as_u64(), Some(s.p99_us), "interval {t}");
        assert_eq!(merged["p50_us"].as_u64(), Some(s.p50_us), "interval {t}");
    }

    // An incomplete set is refused, naming the missing index; --partial merges and says so.
    let two = [
        "merge",
        outs[0].to_str().unwrap(),
        outs[2].to_str().unwrap(),
        "--out",
        merged_path.to_str().unwrap(),
    ];
    let out = loadagent(&two);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("shards [1] of 3 are missing"),
        "{}",
        text(&out)
    );
    let mut partial = two.to_vec();
    partial.push("--partial");
    let out = loadagent(&partial);
    // Two shards sent 600: the threshold (< 500) fails on what there is.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged_path).unwrap()).unwrap();
    assert_eq!(m["missing_shards"], serde_json::json!([1]));
    assert!(text(&out).contains("PARTIAL"), "{}", text(&out));
    // A shard given twice is refused.
    let twice = [
        "merge",
        outs[0].to_str().unwrap(),
        outs[0].to_str().unwrap(),
        outs[1].to_str().unwrap(),
        outs[2].to_str().unwrap(),
        "--out",
        merged_path.to_str().unwrap(),
    ];
    let out = loadagent(&twice);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("shard 0 of 3 is given more than once"));
}

#[test]
fn bad_shards_and_start_times_exit_2_saying_how_to_fix_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "s.toml",
        &bench_scenario("embedded", "{}", "requests = 10"),
    );
    let path = s.to_str().unwrap();
    for (flags, want) in [
        (vec!["--shard", "3/3"], "INDEX/COUNT"),
        (vec!["--shard", "1/0"], "at least 1"),
        (vec!["--shard", "one/two"], "INDEX/COUNT"),
        (vec!["--start-at", "soon"], "RFC 3339"),
        (vec!["--start-at", "1000"], "ago"),
        (vec!["--start-at", "2001-01-01T00:00:00Z"], "ago"),
        (vec!["--start-at", "99999999999"], "more than 24 h ahead"),
        (vec!["--shard", "19/20"], "cannot be split over 20 shards"),
    ] {
        let mut args = vec!["run", "-q", path];
        args.extend(flags.iter().copied());
        let out = loadagent(&args);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", text(&out));
        assert!(text(&out).contains(want), "{flags:?}: {}", text(&out));
    }
}

/// The closed model splits `concurrency` and `requests`, remainders to the lowest indices, for
/// streams as for calls: 10 streams over 3 shards are 4, 3 and 3.
#[test]
fn the_closed_model_splits_counts_with_remainders_to_the_lowest_shards() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "streams.toml",
        r#"
name = "split"
kind = "bidi_stream"
[target]
address = "embedded"
[call]
method = "loadagent.bench.v1.Bench/BidiStream"
data = { payload_size = 8 }
[load]
requests = 10
concurrency = 4
[stream]
messages = 3
"#,
    );
    for (index, want) in [(0, 4.0), (1, 3.0), (2, 3.0)] {
        let out_path = dir.path().join(format!("s{index}.json"));
        let out = loadagent(&[
            "run",
            "-q",
            s.to_str().unwrap(),
            "--shard",
            &format!("{index}/3"),
            "--out",
            out_path.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
        assert_eq!(num(&r, "streams.opened"), want, "shard {index}");
        assert_eq!(num(&r, "messages.sent"), want * 3.0, "shard {index}");
        assert!(r["shard"]["start_at"].is_null());
    }
}

/// `--metrics-listen`: while a shard runs, its /metrics has the agent's run metrics with
/// `shard`, and `loadagent_node_info` for the dashboards' node filter; promtool accepts it;
/// the live request count never exceeds what the report ends with.
#[test]
fn a_shard_serves_its_metrics_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "live.toml",
        &bench_scenario("embedded", "{}", "rate = 200\nduration = \"5s\""),
    );
    let port = free_port();
    let out_path = dir.path().join("live.json");
    let run = Command::new(bin())
        .args(["run", "-q"])
        .arg(&s)
        .args([
            "--shard",
            "1/2",
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
            "--out",
        ])
        .arg(&out_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let series = "loadagent_run_requests_total{scenario=\"bench\",shard=\"1/2\",status=\"OK\"}";
    let mut live = 0.0;
    let mut page = String::new();
    eventually(15, || {
        // Not listening yet while the shard prepares: a refused connection is "not yet" (and
        // so is one reset while a loaded machine starts the server).
        let (code, body) = try_http_get(&addr, "/metrics")?;
        live = sample(&body, series).ok_or_else(|| format!("{code}: no {series} yet"))?;
        page = body;
        Ok(())
    });
    assert!(live > 0.0);
    assert_eq!(
        sample(
            &page,
            "loadagent_run_asked_rps{scenario=\"bench\",shard=\"1/2\"}"
        ),
        Some(100.0),
        "the shard's share of 200/s"
    );
    assert!(page.contains("loadagent_node_info{"), "{page}");
    assert!(page.contains(
        "loadagent_run_latency_seconds_count{latency=\"corrected\",scenario=\"bench\",shard=\"1/2\"}"
    ));
    assert_promtool_accepts(&page);
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    assert!(live <= num(&r, "totals.requests"));
    // A bad listen address is exit 2, naming the flag.
    let bad = loadagent(&[
        "run",
        "-q",
        s.to_str().unwrap(),
        "--metrics-listen",
        "nowhere",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(
        text(&bad).contains("--metrics-listen nowhere"),
        "{}",
        text(&bad)
    );
}
