//! `[call] data_order` and `seed`, on the record of a Python grpcio server: round-robin sends
//! the list in turn; random with a seed sends the same sequence every run, another seed
//! another one; `seed` without the random order is refused naming the key.

mod common;

use common::*;

/// The `message` of each call the server received, in order (one worker: the order sent).
fn sequence(order: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&[]);
    let s = scenario(
        dir.path(),
        "order.toml",
        &echo_scenario(
            &server.address(),
            &format!(
                "data = [{{ message = \"m0\" }}, {{ message = \"m1\" }}, {{ message = \"m2\" }}, {{ message = \"m3\" }}, {{ message = \"m4\" }}]\n{order}"
            ),
            "requests = 40\nconcurrency = 1",
        ),
    );
    run_report(dir.path(), &s);
    let counts = server.stop_with_counts();
    counts["sequence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn round_robin_and_seeded_random_orders_as_the_server_saw_them() {
    let in_turn = sequence("");
    let expected: Vec<String> = (0..40).map(|i| format!("m{}", i % 5)).collect();
    assert_eq!(in_turn, expected);
    assert_eq!(sequence("data_order = \"round_robin\""), expected);

    let seven = sequence("data_order = \"random\"\nseed = 7");
    assert_eq!(seven.len(), 40);
    assert_ne!(seven, expected, "not the round-robin order");
    assert_eq!(
        sequence("data_order = \"random\"\nseed = 7"),
        seven,
        "the same seed, the same sequence"
    );
    assert_ne!(
        sequence("data_order = \"random\"\nseed = 8"),
        seven,
        "another seed, another sequence"
    );
    // Every message is drawn (40 draws of 5: a seed that missed one would be a poor mix).
    for m in ["m0", "m1", "m2", "m3", "m4"] {
        assert!(seven.iter().any(|s| s == m), "{m} in {seven:?}");
    }
}

#[test]
fn a_seed_without_the_random_order_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        "bad.toml",
        &echo_scenario("127.0.0.1:1", "data_order = \"shuffled\"\nseed = -1", ""),
    );
    let out = loadagent(&["validate", s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("`call.data_order`"), "{}", text(&out));
    let s = scenario(
        dir.path(),
        "seed.toml",
        &echo_scenario("127.0.0.1:1", "seed = 3", ""),
    );
    let out = loadagent(&["validate", s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("`call.seed`: picks the random order's sequence"),
        "{}",
        text(&out)
    );
}
