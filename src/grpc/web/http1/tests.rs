//! The lean HTTP/1.1 connection against scripted servers on loopback: what it writes, how
//! it reads answers however they are cut, and when it may carry another call.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Answer, Http1Connection};
use crate::grpc::channel::Transport;
use crate::grpc::unary::Outcome;

/// A connection to a server that runs `serve` on the one connection it accepts.
async fn connected<F, Fut>(serve: F) -> (Http1Connection, tokio::task::JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        serve(socket).await;
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    (Http1Connection::new(Transport::Tcp(tcp)), server)
}

/// Reads one request (head and `content-length` body) and returns it whole.
async fn read_request(socket: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(socket.read(&mut byte).await.unwrap(), 1, "{got:?}");
        got.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&got).to_lowercase();
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    socket.read_exact(&mut body).await.unwrap();
    got.extend(body);
    got
}

/// One call: the request written is `request`, the body goes to the returned Vec.
async fn call(
    conn: &mut Http1Connection,
    request: &'static [u8],
) -> (Result<Answer, super::Failure>, Vec<u8>) {
    let mut body = Vec::new();
    let answer = conn
        .exchange(
            |out| out.extend_from_slice(request),
            &|status, _| (status != 200).then(|| Outcome::failed(2, format!("HTTP {status}"))),
            &mut |b: &[u8]| {
                body.extend_from_slice(b);
                Ok(())
            },
        )
        .await;
    (answer, body)
}

const REQUEST: &[u8] = b"POST /s/M HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc";
const CHUNKED: &[u8] =
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nxyz\r\n2\r\n!!\r\n0\r\n\r\n";

#[tokio::test]
async fn calls_follow_each_other_on_one_connection_with_their_bytes_exact_and_buffers_given_back() {
    let (mut conn, server) = connected(|mut s| async move {
        for answer in [
            CHUNKED,
            b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nwxyz",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert_eq!(read_request(&mut s).await, REQUEST);
            s.write_all(answer).await.unwrap();
        }
    })
    .await;
    let (answer, body) = call(&mut conn, REQUEST).await;
    assert!(answer.unwrap().verdict.is_none());
    assert_eq!(body, b"xyz!!");
    assert!(!conn.is_closed());
    let (answer, body) = call(&mut conn, REQUEST).await;
    assert!(answer.is_ok());
    assert_eq!(body, b"wxyz");
    assert!(!conn.is_closed());
    // Buffers given back while idle (a probe's connection) come back for the next call;
    // an empty body is whole as soon as its head is.
    conn.shrink_idle();
    assert!(conn.buf.is_empty() && conn.out.capacity() == 0);
    let (answer, body) = call(&mut conn, REQUEST).await;
    assert!(answer.is_ok() && body.is_empty());
    assert!(!conn.is_closed());
    server.await.unwrap();
}

#[tokio::test]
async fn an_answer_sent_a_byte_at_a_time_reads_the_same() {
    let answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n";
    let (mut conn, server) = connected(move |mut s| async move {
        read_request(&mut s).await;
        for b in answer {
            s.write_all(&[*b]).await.unwrap();
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    })
    .await;
    let (answer, body) = call(&mut conn, REQUEST).await;
    let answer = answer.unwrap();
    assert_eq!(body, b"hello");
    answer
        .framing
        .with_trailers(|t| assert_eq!(t.map(|(code, _)| code), Some(&b"0"[..])));
    assert!(!conn.is_closed());
    server.await.unwrap();
}

#[tokio::test]
async fn an_idle_close_is_seen_before_sending_and_a_reused_close_before_any_answer_is_unsent() {
    // Closed while idle: the next call is not sent.
    let (mut conn, server) = connected(|mut s| async move {
        read_request(&mut s).await;
        s.write_all(CHUNKED).await.unwrap();
    })
    .await;
    assert!(call(&mut conn, REQUEST).await.0.is_ok());
    server.await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let failure = call(&mut conn, REQUEST).await.0.unwrap_err();
    assert!(failure.unsent && conn.is_closed(), "{failure:?}");
    assert!(failure
        .outcome
        .message
        .unwrap()
        .contains("while it was idle"));

    // A reused connection the server closes on reading the request: unsent (a browser
    // sends it again); the same on a connection's first call is a failed call.
    let (mut conn, server) = connected(|mut s| async move {
        read_request(&mut s).await;
        s.write_all(CHUNKED).await.unwrap();
        read_request(&mut s).await;
    })
    .await;
    assert!(call(&mut conn, REQUEST).await.0.is_ok());
    let failure = call(&mut conn, REQUEST).await.0.unwrap_err();
    assert!(failure.unsent, "{failure:?}");
    server.await.unwrap();
    let (mut conn, server) = connected(|mut s| async move {
        read_request(&mut s).await;
    })
    .await;
    let failure = call(&mut conn, REQUEST).await.0.unwrap_err();
    assert!(
        !failure.unsent && failure.outcome.connection_failed,
        "{failure:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn an_error_answer_that_came_whole_leaves_the_connection_to_the_next_call() {
    let (mut conn, server) = connected(|mut s| async move {
        read_request(&mut s).await;
        s.write_all(b"HTTP/1.1 503 Busy\r\ncontent-length: 4\r\n\r\nbusy")
            .await
            .unwrap();
        read_request(&mut s).await;
        s.write_all(CHUNKED).await.unwrap();
    })
    .await;
    let (answer, body) = call(&mut conn, REQUEST).await;
    assert!(answer.unwrap().verdict.is_some() && body.is_empty());
    assert!(!conn.is_closed());
    let (answer, body) = call(&mut conn, REQUEST).await;
    assert!(answer.unwrap().verdict.is_none());
    assert_eq!(body, b"xyz!!");
    server.await.unwrap();
}

#[tokio::test]
async fn a_connection_is_not_trusted_after_close_bytes_nobody_asked_for_or_a_judged_head() {
    for (answer, ended_by_head) in [
        (
            &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\nx"[..],
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n",
            false,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\nuntil the close", false),
        // Errors whose body has not all come (not waited for), or that end the connection.
        (b"HTTP/1.1 503 Busy\r\ncontent-length: 10\r\n\r\nbus", true),
        (
            b"HTTP/1.1 503 Busy\r\nconnection: close\r\ncontent-length: 4\r\n\r\nbusy",
            true,
        ),
        (b"HTTP/1.1 503 Busy\r\n\r\nuntil the close", true),
    ] {
        let (mut conn, server) = connected(move |mut s| async move {
            read_request(&mut s).await;
            s.write_all(answer).await.unwrap();
        })
        .await;
        let (result, _) = call(&mut conn, REQUEST).await;
        assert_eq!(result.unwrap().verdict.is_some(), ended_by_head);
        assert!(conn.is_closed(), "{}", String::from_utf8_lossy(answer));
        server.await.unwrap();
    }
}

#[tokio::test]
async fn a_call_given_up_halfway_leaves_its_connection_closed() {
    let (mut conn, server) = connected(|mut s| async move {
        read_request(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    })
    .await;
    let gave_up = tokio::time::timeout(Duration::from_millis(100), call(&mut conn, REQUEST)).await;
    assert!(gave_up.is_err());
    assert!(conn.is_closed());
    let failure = call(&mut conn, REQUEST).await.0.unwrap_err();
    assert!(failure.unsent);
    server.abort();
}

#[tokio::test]
async fn a_truncated_or_malformed_answer_fails_the_call_and_says_what() {
    for (answer, says) in [
        (
            &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"[..],
            "whole response body",
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-le", "whole response head"),
        (
            b"\x00\x00\x12\x04\x00\x00\x00\x00\x00",
            "does not speak HTTP/1.1",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            "chunk-size",
        ),
    ] {
        let (mut conn, server) = connected(move |mut s| async move {
            read_request(&mut s).await;
            s.write_all(answer).await.unwrap();
        })
        .await;
        let failure = call(&mut conn, REQUEST).await.0.unwrap_err();
        let message = failure.outcome.message.clone().unwrap();
        assert!(message.contains(says), "{message}");
        assert!(!failure.unsent && failure.outcome.connection_failed);
        assert!(conn.is_closed());
        server.await.unwrap();
    }
}
