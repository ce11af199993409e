//! The lean connection probes share (`grpc::lean::SharedConnection`) against Python grpcio:
//! many callers on one connection within the server's stream limit (every call answered
//! and counted once by the server), a caller that stops waiting (its stream reset, the
//! connection still serving the others), and a connection the server ages out (given up,
//! and the next caller told to open another).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use loadagent::grpc::lean::SharedConnection;
use loadagent::probe::health::{Check, HealthAnswer};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn open(address: &str) -> SharedConnection {
    let endpoint = loadagent::grpc::channel::Endpoint {
        address: loadagent::vocabulary::address::HostPort::parse(address).unwrap(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    };
    SharedConnection::open(&endpoint).await.unwrap().0
}

fn check(address: &str) -> Check {
    Check::new(address, "", &[], Duration::from_secs(10), false).unwrap()
}

/// The echo service's Say, its types by reflection, asking for `json`.
/// The echo service's Say asking for one request, ready to call on a shared connection
/// (the server's deadline 10 s).
struct Say {
    probe: loadagent::probe::method::MethodProbe,
    headers: Arc<loadagent::grpc::lean::RequestHeaders>,
}

impl Say {
    /// Call `n`, its caller waiting at most `waiting`.
    async fn call(
        &self,
        conn: &SharedConnection,
        n: u64,
        waiting: Duration,
    ) -> loadagent::probe::method::Verdict {
        let mut renderer = loadagent::grpc::request::Renderer::new(0);
        self.probe
            .call(conn, &self.headers, n, &mut renderer, None, waiting)
            .await
    }
}

async fn say(address: &str, json: serde_json::Value) -> Say {
    let name = loadagent::vocabulary::model::MethodName::parse("testing.echo.v1.Echo/Say").unwrap();
    let message = loadagent::vocabulary::model::RequestMessage {
        json,
        file: "test".into(),
        key: "data".into(),
        locs: Vec::new(),
        from_data_file: false,
    };
    let probe = loadagent::probe::method::by_reflection(
        &loadagent::vocabulary::address::HostPort::parse(address).unwrap(),
        &name,
        &[message],
        &[],
        Duration::from_secs(5),
        None,
    )
    .await
    .unwrap();
    let headers = probe
        .lean_headers(address, &[], Duration::from_secs(10), false)
        .unwrap();
    Say { probe, headers }
}

#[test]
fn callers_share_one_connection_within_the_servers_stream_limit() {
    // Two streams at a time for 80 callers at once: the rest wait their turn on the
    // connection, and a stream grpcio refuses at its limit (it counts a finished one as
    // open for a moment) is sent again.
    let server = Server::python(&["--max-concurrent-streams", "2"]);
    let address = server.address();
    let (answers, verdicts) = runtime().block_on(async {
        let conn = open(&address).await;
        let check = Arc::new(check(&address));
        let say = Arc::new(say(&address, serde_json::json!({"message": "m", "delay_ms": 2})).await);
        let checks: Vec<_> = (0..40)
            .map(|_| {
                let (conn, check) = (conn.clone(), check.clone());
                async move { check.on(&conn, None, Duration::from_secs(10)).await }
            })
            .collect();
        let says: Vec<_> = (0..40)
            .map(|n| {
                let (conn, say) = (conn.clone(), say.clone());
                async move { say.call(&conn, n, Duration::from_secs(10)).await }
            })
            .collect();
        futures_util::future::join(
            futures_util::future::join_all(checks),
            futures_util::future::join_all(says),
        )
        .await
    });
    for a in &answers {
        assert!(
            matches!(a, Ok(answer) if answer.is_serving()),
            "{answers:?}"
        );
    }
    for v in &verdicts {
        assert!(v.code == 0 && v.passed(), "{v:?}");
    }
    let counts = server.stop_with_counts();
    assert_eq!(
        counts["calls"]["/grpc.health.v1.Health/Check"],
        serde_json::json!(40),
        "the server processed each call once: {counts}"
    );
    assert_eq!(counts["requests"], serde_json::json!(40), "{counts}");
}

#[test]
fn a_caller_that_stops_waiting_leaves_the_connection_serving_the_others() {
    let server = Server::python(&[]);
    let address = server.address();
    runtime().block_on(async {
        let conn = open(&address).await;
        let say = say(
            &address,
            serde_json::json!({"message": "slow", "delay_ms": 2000}),
        )
        .await;
        // The server's deadline is 10 s; this caller waits 200 ms.
        let started = Instant::now();
        let verdict = say.call(&conn, 0, Duration::from_millis(200)).await;
        assert_eq!(verdict.code, 4, "DEADLINE_EXCEEDED: {verdict:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
        // The connection serves the next call at once, while the slow one is reset.
        let answer = check(&address)
            .on(&conn, None, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(answer.is_serving(), "{answer:?}");
        assert!(!conn.is_closed());
    });
    let counts = server.stop_with_counts();
    assert_eq!(counts["requests"], serde_json::json!(1), "{counts}");
}

#[test]
fn a_connection_the_server_ages_out_is_given_up_and_the_next_caller_told() {
    let server = Server::python(&[
        "--grpc-option",
        "grpc.max_connection_age_ms=300",
        "--grpc-option",
        "grpc.max_connection_age_grace_ms=300",
    ]);
    let address = server.address();
    runtime().block_on(async {
        let conn = open(&address).await;
        let answer = check(&address)
            .on(&conn, None, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(answer.is_serving(), "{answer:?}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !conn.is_closed() {
            assert!(
                Instant::now() < deadline,
                "the aged-out connection is still taken for open"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A call on it is not processed: the caller opens another connection.
        let refused = check(&address)
            .on(&conn, None, Duration::from_secs(5))
            .await;
        assert!(refused.is_err(), "{refused:?}");
        let again = open(&address).await;
        let answer: HealthAnswer = check(&address)
            .on(&again, None, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(answer.is_serving(), "{answer:?}");
    });
}

#[test]
fn a_call_waiting_for_a_stream_starts_when_one_is_free() {
    // One stream at a time: a slow call holds it while a Check waits. When the slow call
    // ends nothing else arrives on the connection, so the Check must be started in the same
    // turn that freed the stream, or it waits out its deadline.
    let server = Server::python(&["--max-concurrent-streams", "1"]);
    let address = server.address();
    runtime().block_on(async {
        let conn = open(&address).await;
        let say = say(
            &address,
            serde_json::json!({"message": "slow", "delay_ms": 300}),
        )
        .await;
        let slow = say.call(&conn, 0, Duration::from_secs(10));
        let waiting = async {
            // Handed over after the slow call has the stream.
            tokio::time::sleep(Duration::from_millis(100)).await;
            check(&address)
                .on(&conn, None, Duration::from_secs(10))
                .await
        };
        let (slow, waiting) = tokio::join!(slow, waiting);
        assert_eq!(slow.code, 0, "{slow:?}");
        assert!(
            matches!(&waiting, Ok(a) if a.is_serving()),
            "the waiting Check: {waiting:?}"
        );
    });
}
