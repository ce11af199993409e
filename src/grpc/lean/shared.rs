//! One lean connection shared by callers that each make a call now and then: the agent's
//! probers (a thousand targets, each checked every few seconds) and `loadagent probe`. A
//! tonic channel holds about 40 KB per connection (h2's 16 KiB write and 8 KiB read
//! buffers, its connection task, tower's buffer); this holds a task, a 1 KiB read buffer and
//! the connection's state, and gives back what a call grew once it is done.
//!
//! The connection is owned by its task; callers hand it calls over a channel and wait for
//! the answer. A caller that stops waiting (its deadline) is noticed and its stream reset.
//! When the connection is lost every call on it fails and the task ends; `is_closed` then
//! tells the callers to open another.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::conn::{Completion, Connection, ConnectionLost};
use super::hpack::RequestHeaders;
use crate::grpc::channel::{ConnectError, Endpoint};
use crate::grpc::control::TlsFacts;
use crate::grpc::status;
use crate::grpc::unary::Outcome;

/// A handle on a shared lean connection; clones share it. The connection closes when the
/// last handle is dropped and its calls are done.
#[derive(Debug, Clone)]
pub struct SharedConnection {
    calls: mpsc::UnboundedSender<Box<Ask>>,
}

/// A call handed to the connection's task.
#[derive(Debug)]
struct Ask {
    headers: Arc<RequestHeaders>,
    body: Bytes,
    trace: Option<Vec<u8>>,
    answer: oneshot::Sender<Answer>,
    /// Times the server refused it (REFUSED_STREAM) on this connection.
    refusals: u8,
}

/// A stream refused this many times (REFUSED_STREAM: never processed) is answered as not
/// processed; before that it is sent again on the same connection after a backoff (1 ms,
/// doubling: 63 ms in all), as gRPC clients retry transparently (grpcio refuses new streams
/// for a moment at its stream limit, counting finished ones as open).
const MAX_REFUSALS: u8 = 6;

/// How a call on a shared connection ended.
#[derive(Debug)]
pub struct Answer {
    /// The status, as a gRPC client reports it.
    pub outcome: Outcome,
    /// The response message, when the call returned one with status OK.
    pub message: Option<Vec<u8>>,
    /// The server never processed the call (refused, or its connection was closing): it
    /// may be sent again on a new connection.
    pub not_processed: bool,
    /// Nothing answered within the caller's timeout (the outcome is DEADLINE_EXCEEDED).
    pub timed_out: bool,
}

impl Answer {
    fn failed(code: u8, why: String, not_processed: bool) -> Self {
        let mut outcome = Outcome::failed(code, why);
        outcome.connection_failed = true;
        Self {
            outcome,
            message: None,
            not_processed,
            timed_out: false,
        }
    }
}

impl SharedConnection {
    /// Connects, proves the peer speaks HTTP/2, and starts the connection's task; also what
    /// the TLS handshake negotiated.
    pub async fn open(endpoint: &Endpoint) -> Result<(Self, Option<TlsFacts>), ConnectError> {
        let (conn, facts) = Connection::open_shared(endpoint).await?;
        let (calls, asked) = mpsc::unbounded_channel();
        tokio::spawn(drive(conn, asked));
        Ok((Self { calls }, facts))
    }

    /// Whether the connection is gone (lost, or closed by the server): open another.
    pub fn is_closed(&self) -> bool {
        self.calls.is_closed()
    }

    /// Makes a call with `headers` (made by `RequestHeaders::for_call`) and the framed
    /// request `body`, plus a `traceparent`; no answer within `timeout` is
    /// DEADLINE_EXCEEDED (the stream is reset).
    pub async fn call(
        &self,
        headers: &Arc<RequestHeaders>,
        body: Bytes,
        trace: Option<&[u8]>,
        timeout: Duration,
    ) -> Answer {
        let (answer, answered) = oneshot::channel();
        let ask = Box::new(Ask {
            headers: headers.clone(),
            body,
            trace: trace.map(<[u8]>::to_vec),
            answer,
            refusals: 0,
        });
        if self.calls.send(ask).is_err() {
            return Answer::failed(status::UNAVAILABLE, "connection closed".into(), true);
        }
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(answer)) => answer,
            // The task ended without answering: it was lost as the call was handed over.
            Ok(Err(_)) => Answer::failed(status::UNAVAILABLE, "connection closed".into(), true),
            Err(_) => Answer {
                outcome: Outcome::failed(
                    status::DEADLINE_EXCEEDED,
                    format!("no answer within {timeout:?}"),
                ),
                message: None,
                not_processed: false,
                timed_out: true,
            },
        }
    }
}

/// A call in flight: its stream, and the call (sent again if refused).
#[derive(Debug)]
struct InFlight {
    stream: u32,
    ask: Ask,
}

/// The connection's task: starts the calls handed over, drives the connection, answers each
/// call as it ends. Ends when the connection is lost or closed by the server (failing what
/// is still on it), or when every handle is gone and no call is left.
async fn drive(mut conn: Connection, mut asked: mpsc::UnboundedReceiver<Box<Ask>>) {
    // Indexed by the call's token; a few at a time.
    let mut in_flight: Vec<Option<InFlight>> = Vec::new();
    // Calls beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS, in order.
    let mut waiting: VecDeque<Box<Ask>> = VecDeque::new();
    let mut done: Vec<Completion> = Vec::new();
    let mut handles_gone = false;
    // After a refusal, no call starts until this fires: the server is at its limit.
    let mut backoff: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let lost = std::future::poll_fn(|cx| {
        if backoff
            .as_mut()
            .is_some_and(|b| b.as_mut().poll(cx).is_ready())
        {
            backoff = None;
        }
        while !handles_gone {
            match asked.poll_recv(cx) {
                Poll::Ready(Some(ask)) => waiting.push_back(ask),
                Poll::Ready(None) => handles_gone = true,
                Poll::Pending => break,
            }
        }
        // Until the calls that ended leave no room for a waiting one: a call that waited for
        // a stream starts as soon as one is free, not at the connection's next wake-up.
        loop {
            while !waiting.is_empty()
                && backoff.is_none()
                && (conn.can_start() || !conn.accepting())
            {
                if let Some(ask) = waiting.pop_front() {
                    start(&mut conn, &mut in_flight, *ask);
                }
            }
            waiting.retain(|ask| !ask.answer.is_closed());
            // Callers that stopped waiting (their deadline): the server is told to stop too.
            for slot in in_flight.iter_mut() {
                if slot
                    .as_mut()
                    .is_some_and(|c| c.ask.answer.poll_closed(cx).is_ready())
                {
                    if let Some(c) = slot.take() {
                        conn.cancel(c.stream);
                    }
                }
            }
            if let Err(lost) = conn.poll_io(cx, &mut done) {
                return Poll::Ready(Some(lost));
            }
            for c in done.drain(..) {
                if let Some(mut call) = in_flight.get_mut(c.token).and_then(Option::take) {
                    if c.refused && conn.accepting() && call.ask.refusals < MAX_REFUSALS {
                        let wait = Duration::from_millis(1 << call.ask.refusals);
                        call.ask.refusals += 1;
                        waiting.push_front(Box::new(call.ask));
                        let mut sleep = Box::pin(tokio::time::sleep(wait));
                        // Registers the wake-up that ends the backoff.
                        if sleep.as_mut().poll(cx).is_pending() {
                            backoff = Some(sleep);
                        }
                        continue;
                    }
                    let _ = call.ask.answer.send(Answer {
                        not_processed: c.refused,
                        outcome: c.outcome,
                        message: c.message,
                        timed_out: false,
                    });
                }
            }
            if waiting.is_empty() || !conn.can_start() || backoff.is_some() {
                break;
            }
        }
        let idle = waiting.is_empty() && in_flight.iter().all(Option::is_none);
        if idle {
            conn.shrink_idle();
        }
        // A server that said GOAWAY takes no new calls: once the last one on it is done,
        // the connection is given up and the next caller opens another.
        if idle && (handles_gone || !conn.accepting()) {
            return Poll::Ready(None);
        }
        Poll::Pending
    });
    let why = lost.await;
    asked.close();
    let why = why.map_or_else(
        || "connection closed by the server (GOAWAY)".to_string(),
        |ConnectionLost(w)| w,
    );
    // Whether the server processed them is not known.
    for call in in_flight.into_iter().flatten() {
        let _ = call
            .ask
            .answer
            .send(Answer::failed(status::UNAVAILABLE, why.clone(), false));
    }
    // Calls not yet sent, or handed over as the connection went.
    while let Some(ask) = waiting.pop_front().or_else(|| asked.try_recv().ok()) {
        let _ = ask
            .answer
            .send(Answer::failed(status::UNAVAILABLE, why.clone(), true));
    }
}

/// Starts `ask` on `conn` (refused at once when the server is closing the connection).
fn start(conn: &mut Connection, in_flight: &mut Vec<Option<InFlight>>, ask: Ask) {
    if !conn.accepting() {
        let why = "the server is closing this connection (GOAWAY)".to_string();
        let _ = ask
            .answer
            .send(Answer::failed(status::UNAVAILABLE, why, true));
        return;
    }
    let token = match in_flight.iter().position(Option::is_none) {
        Some(free) => free,
        None => {
            in_flight.push(None);
            in_flight.len() - 1
        }
    };
    let stream = conn.start_own(
        token,
        ask.headers.clone(),
        ask.body.clone(),
        ask.trace.as_deref(),
    );
    in_flight[token] = Some(InFlight { stream, ask });
}
