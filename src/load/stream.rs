//! Streaming calls over HTTP/2: server, client and bidirectional streams, with per-message
//! timing recorded as it happens. Response messages are counted and timed, not decoded.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::OptionFuture;
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use tokio::time::Instant;

use super::stop::ThreadShared;
use super::timing::{micros, release_time, LATE_AFTER};
use crate::grpc::frame::MessageReader;
use crate::grpc::request::{Renderer, Requests};
use crate::grpc::status;
use crate::grpc::unary::{judge_response_head, status_of, Outcome, UnaryCall};
use crate::record::SharedRecorder;
use crate::vocabulary::{BidiMode, Kind, StreamOptions};

/// Pipelined streams with no `message_interval`: messages in flight per stream at most, so
/// sending is paced by the replies instead of buffering without bound.
const PIPELINE_DEPTH: u64 = 32;

/// A streaming call: the request head (shared with unary calls), the kind and its options.
#[derive(Debug, Clone)]
pub struct StreamCall {
    head: UnaryCall,
    kind: Kind,
    options: StreamOptions,
}

/// What one stream needs from its worker. Borrowed, not copied, where it can be: it is
/// kept in every open stream's state.
pub(super) struct StreamContext<'a> {
    /// The stream's request messages.
    pub(super) requests: &'a Requests,
    /// The stream's number (what its templates see as `request_number`).
    pub(super) number: u64,
    /// Renders the messages' templates.
    pub(super) renderer: &'a mut Renderer,
    /// Where the stream's figures go.
    pub(super) recorder: &'a SharedRecorder,
    /// The stream opened after the warm-up: its end (status, whole-stream latency) counts.
    pub(super) measured: bool,
    /// The run's time line and stop, as the thread has them. A message event counts after
    /// the clock's `origin`, even on a stream opened during the warm-up (long-lived streams
    /// outlast any warm-up), and before its `measured_end` in a time-bounded run, where a
    /// message schedule sends nothing due after it (the run's stop, which ends the stream,
    /// comes a timer tick or so later). Streams end gracefully when the stop comes:
    /// half-close, or cancel a server stream.
    pub(super) thread: &'a ThreadShared,
    /// The stream's place among the streams open together, for its message schedule's
    /// phase: consecutive places spread evenly over the period.
    pub(super) place: u64,
    /// The run's count of streams open now.
    pub(super) open: &'a std::sync::atomic::AtomicU64,
    /// The W3C `traceparent` of a sampled stream (borrowed from its span: a copy would
    /// take 40 bytes in every open stream's state).
    pub(super) trace: Option<&'a http::HeaderValue>,
}

impl<'a> StreamContext<'a> {
    /// Counts the stream open until the guard is dropped, and as opened in the report's
    /// figures when it is measured.
    pub(crate) fn opened(&self, at: Instant) -> OpenStream<'a> {
        if self.measured {
            self.recorder.borrow_mut().stream_opened(at);
        }
        self.open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenStream(self.open)
    }
}

/// A stream counted open, until dropped.
pub(crate) struct OpenStream<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl StreamContext<'_> {
    /// Whether `t` is in the measured part.
    fn measures(&self, t: Instant) -> bool {
        let clock = &self.thread.clock;
        t >= clock.origin && clock.measured_end.is_none_or(|end| t < end)
    }

    /// A message went out now; `due`, its turn on a message schedule. It counts when its
    /// intended time (or, off a schedule, its send) is in the measured part, so a window of
    /// s seconds on a schedule of r a second counts s·r messages a stream, wherever the
    /// timer put the sends. Returns whether it counted: its reply counts with it.
    pub(crate) fn sent(&self, due: Option<Due>) -> bool {
        let now = Instant::now();
        if !self.measures(due.map_or(now, |d| d.at)) {
            return false;
        }
        let late = due.is_some_and(|d| d.late);
        self.recorder.borrow_mut().message_sent(now, late);
        true
    }

    /// A message arrived now that answers none of ours (a server stream's): it counts in
    /// the measured part.
    pub(crate) fn received(&self, latency: Option<Duration>, first: Option<Duration>) {
        if self.measures(Instant::now()) {
            self.record_received(latency, None, first);
        }
    }

    /// The reply to `message` arrived now: it counts when the message did, whenever it
    /// arrives (a reply to a message of the measured part may come in the wind-down), so a
    /// report's received never exceeds its sent. `first`: the stream's time to it, when it
    /// is the stream's first message.
    fn replied(&self, message: Sent, first: Option<Duration>) {
        if message.counted {
            let now = Instant::now();
            self.record_received(
                Some(now - message.at),
                message.due.map(|due| now - due.min(message.at)),
                first,
            );
        }
    }

    /// `latency` from a message's send, `corrected` from its intended time (on a message
    /// schedule).
    fn record_received(
        &self,
        latency: Option<Duration>,
        corrected: Option<Duration>,
        first: Option<Duration>,
    ) {
        self.recorder.borrow_mut().message_received(
            Instant::now(),
            latency.map(micros),
            corrected.map(micros),
            first.map(micros),
        );
    }
}

/// A message's turn on a message schedule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Due {
    /// Its intended time.
    at: Instant,
    /// Its turn came more than `LATE_AFTER` after that time: the stream was behind (a
    /// reply came late, or the generator was busy). Judged when the turn comes, like a
    /// request's when it is taken: a timer's tick is not lateness.
    late: bool,
}

impl Due {
    /// Message due `at`, its turn come `now`.
    fn judged(at: Instant, now: Instant) -> Self {
        Self {
            at,
            late: now > at + LATE_AFTER,
        }
    }
}

/// A message sent and not yet answered.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// Its intended time, on a message schedule.
    due: Option<Instant>,
    /// When it went out.
    at: Instant,
    /// Whether it counted in the report (`StreamContext::sent`).
    counted: bool,
}

/// A stream's message schedule (`message_rate`): the first message at the opening, message
/// i ≥ 1 at the opening + (i + phase) / rate, whatever the replies do, so a stalled reply
/// delays no intended time and the corrected latency of the messages behind it shows the
/// stall. The phase (0 to 1, by the stream's number) spreads streams opened together — the
/// closed model opens its first 50 a millisecond — over the period instead of making all their
/// messages due in the same millisecond, a burst the generator and the server then queue.
#[derive(Debug, Clone, Copy)]
struct MessageSchedule {
    opened: Instant,
    rate: f64,
    phase: f64,
    /// The measured part's end: a message due then or later is never sent.
    until: Option<Instant>,
}

impl MessageSchedule {
    fn new(opened: Instant, rate: f64, place: u64, until: Option<Instant>) -> Self {
        // The golden ratio's fractional multiples: any run of consecutive places lands
        // evenly over [0, 1).
        const GOLDEN: f64 = 0.618_033_988_749_895;
        Self {
            opened,
            rate,
            phase: (place as f64 * GOLDEN).fract(),
            until,
        }
    }

    /// When message `i` is due; `None` when it never is (past the measured part, or past
    /// any representable instant).
    fn due(&self, i: u64) -> Option<Instant> {
        let at = if i == 0 {
            self.opened
        } else {
            let offset = Duration::try_from_secs_f64((i as f64 + self.phase) / self.rate).ok()?;
            self.opened.checked_add(offset)?
        };
        match self.until {
            Some(end) if at >= end => None,
            _ => Some(at),
        }
    }
}

/// Why a stream stopped waiting.
enum Wake {
    Message,
    End,
    Failed(Outcome),
    /// `stream_duration` passed, or the run is stopping: the client ends the stream.
    Over,
}

/// One open stream, what its mode's loop works on: kept together so each step of the
/// stream takes one reference, not six (each kept in every open stream's state).
struct Live<'a, 'c, O> {
    stream: SendStream<Bytes>,
    incoming: Incoming,
    ctx: &'a mut StreamContext<'c>,
    opened: Instant,
    /// The client's time is over: `stream_duration` passed, or the run is stopping.
    over: std::pin::Pin<&'a mut O>,
}

/// The response side of a stream: headers first, then messages counted as DATA arrives
/// (their framing checked, their bytes not kept).
struct Incoming {
    phase: Phase,
    reader: MessageReader,
    /// Messages read whole but not yet returned by `next`.
    ready: u64,
}

/// Where a stream's response is. One field, not three side by side: this state is kept for
/// every open stream.
enum Phase {
    /// Waiting for the response head.
    Head(ResponseFuture),
    /// Reading the response's messages.
    Body(RecvStream),
    /// The status came in the response head (a trailers-only response).
    Early(Outcome),
    /// The status was taken by `finish`, or the head never came.
    Done,
}

impl Incoming {
    fn new(response: ResponseFuture, max_receive: u32) -> Self {
        Self {
            phase: Phase::Head(response),
            reader: MessageReader::new(max_receive, false),
            ready: 0,
        }
    }

    /// Still waiting for the response head.
    fn awaits_head(&self) -> bool {
        matches!(self.phase, Phase::Head(_))
    }

    /// The next complete message; `Ok(false)` at the end of the stream. Cancel-safe: a
    /// select that drops it loses neither the response future nor a received frame.
    async fn next(&mut self) -> Result<bool, Outcome> {
        loop {
            if self.ready > 0 {
                self.ready -= 1;
                return Ok(true);
            }
            let body = match &mut self.phase {
                Phase::Early(_) | Phase::Done => return Ok(false),
                Phase::Head(response) => {
                    let response = response.await.map_err(|e| {
                        self.phase = Phase::Done;
                        Outcome::from_h2(&e)
                    });
                    let (head, body) = response?.into_parts();
                    let header =
                        |name: &str| head.headers.get(name).map(http::HeaderValue::as_bytes);
                    if let Some(outcome) = judge_response_head(
                        Some(head.status.as_u16()),
                        header("content-type"),
                        header("grpc-status"),
                        header("grpc-message"),
                    ) {
                        if outcome.code == status::OK || head.headers.contains_key("grpc-status") {
                            self.phase = Phase::Early(outcome);
                            return Ok(false);
                        }
                        self.phase = Phase::Done;
                        return Err(outcome);
                    }
                    let encoded = header("grpc-encoding").is_some_and(|e| e != b"identity");
                    self.reader = MessageReader::new(self.reader.max(), encoded);
                    self.phase = Phase::Body(body);
                    continue;
                }
                Phase::Body(body) => body,
            };
            match body.data().await {
                Some(Ok(chunk)) => {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    let before = self.reader.messages;
                    self.reader
                        .feed(&chunk)
                        .map_err(|e| Outcome::failed(e.code, e.message))?;
                    self.ready += self.reader.messages - before;
                }
                Some(Err(e)) => return Err(Outcome::from_h2(&e)),
                None => {
                    if self.reader.inside_message() {
                        return Err(Outcome::failed(
                            status::INTERNAL,
                            "stream ended inside a message",
                        ));
                    }
                    return Ok(false);
                }
            }
        }
    }

    /// Reads to the end of the stream and returns its status; messages still arriving are
    /// counted by `on_message`.
    async fn finish(&mut self, mut on_message: impl FnMut()) -> Outcome {
        loop {
            match self.next().await {
                Ok(true) => on_message(),
                Ok(false) => break,
                Err(o) => return o,
            }
        }
        let body = match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Early(o) => return o,
            Phase::Body(body) => body,
            Phase::Head(_) | Phase::Done => {
                return Outcome::failed(status::INTERNAL, "stream ended without a response")
            }
        };
        let mut body = body;
        match body.trailers().await {
            Ok(Some(t)) => match t.get("grpc-status") {
                Some(code) => status_of(code.as_bytes(), t.get("grpc-message")),
                None => Outcome::failed(status::INTERNAL, "response trailers have no grpc-status"),
            },
            Ok(None) => Outcome::failed(
                status::INTERNAL,
                "response ended without trailers (no grpc-status)",
            ),
            Err(e) => Outcome::from_h2(&e),
        }
    }
}

/// Waits for the next message, the end of the client's time, or the run's stop.
async fn wait_message(incoming: &mut Incoming, over: impl Future<Output = ()>) -> Wake {
    tokio::select! {
        biased;
        r = incoming.next() => match r {
            Ok(true) => Wake::Message,
            Ok(false) => Wake::End,
            Err(o) => Wake::Failed(o),
        },
        _ = over => Wake::Over,
    }
}

fn send(stream: &mut SendStream<Bytes>, body: Bytes, end: bool) -> Result<(), Outcome> {
    stream
        .send_data(body, end)
        .map_err(|e| Outcome::from_h2(&e))
}

#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice in its state, kept for every open stream"
)]
impl StreamCall {
    /// A streaming call of `kind` with `options`, over the request head `head`.
    pub fn new(head: UnaryCall, kind: Kind, options: StreamOptions) -> Self {
        Self {
            head,
            kind,
            options,
        }
    }

    /// The call's deadline, when it has one.
    pub fn timeout(&self) -> Option<Duration> {
        self.head.timeout()
    }

    /// The request head every stream opens with.
    pub fn head(&self) -> &UnaryCall {
        &self.head
    }

    /// Runs one stream to its end and returns how it ended.
    ///
    /// This and the stream's other steps are plain fns returning an async block, not async
    /// fns: an async fn keeps each argument twice in its state (as passed, and moved into
    /// its body), and this state is kept for every open stream.
    pub(super) fn run<'a, 'c>(
        &'a self,
        send: &'a mut SendRequest<Bytes>,
        ctx: &'a mut StreamContext<'c>,
    ) -> impl Future<Output = Outcome> + use<'a, 'c> {
        use futures_util::future::{Either, FutureExt};
        let exchange = self.exchange(send, ctx);
        match self.timeout() {
            // Not an async block around the exchange: it would keep this fn's arguments
            // beside the exchange's own copies.
            None => Either::Left(exchange),
            // Boxed (once per stream): the deadline's timer inline would size every
            // stream worker's task, deadline or not.
            Some(t) => Either::Right(Box::pin(tokio::time::timeout(t, exchange)).map(|r| {
                r.unwrap_or_else(|_| {
                    Outcome::failed(status::DEADLINE_EXCEEDED, "deadline exceeded (client side)")
                })
            })),
        }
    }

    fn exchange<'a, 'c>(
        &'a self,
        send: &'a mut SendRequest<Bytes>,
        ctx: &'a mut StreamContext<'c>,
    ) -> impl Future<Output = Outcome> + use<'a, 'c> {
        async move {
            let opened = Instant::now();
            let _open = ctx.opened(opened);
            if let Err(e) = std::future::poll_fn(|cx| send.poll_ready(cx)).await {
                return Outcome::from_h2(&e);
            }
            let (response, stream) = match self.open(send, ctx) {
                Ok(pair) => pair,
                Err(e) => return Outcome::from_h2(&e),
            };
            // The client's time is over at `stream_duration`, or when the run stops. (Not at
            // the end of the measured part: a stream open then is open at the end, in the
            // report; what it sends after it does not count, and a schedule sends nothing.)
            let stop = &ctx.thread.stop;
            let until = self.options.stream_duration.map(|d| opened + d);
            let over = pin!(async move {
                match until {
                    // Boxed: a timer inline would size every open stream's state, with a
                    // `stream_duration` or without.
                    Some(t) => {
                        Box::pin(async {
                            tokio::select! { _ = tokio::time::sleep_until(t) => {}, _ = stop.wait() => {} }
                        })
                        .await
                    }
                    None => stop.wait().await,
                }
            });
            let mut live = Live {
                incoming: Incoming::new(response, self.head.max_receive()),
                stream,
                ctx,
                opened,
                over,
            };
            let result = match (self.kind, self.options.mode) {
                (Kind::ServerStream, _) => self.server_stream(&mut live).await,
                (Kind::ClientStream, _) => self.client_stream(&mut live).await,
                (Kind::BidiStream, BidiMode::PingPong) => self.ping_pong(&mut live).await,
                (Kind::BidiStream, BidiMode::Pipelined) => self.pipelined(&mut live).await,
                (Kind::Unary | Kind::TlsHandshake, _) => Err(Outcome::failed(
                    status::INTERNAL,
                    "a non-stream call was given to the stream runner",
                )),
            };
            match result {
                Ok(o) | Err(o) => o,
            }
        }
    }

    /// Sends the stream's request head. Not async, so the per-call head is not kept in the
    /// state of every open stream.
    fn open(
        &self,
        send: &mut SendRequest<Bytes>,
        ctx: &mut StreamContext<'_>,
    ) -> Result<(ResponseFuture, SendStream<Bytes>), h2::Error> {
        let per_call = self
            .head
            .templated()
            .per_call(ctx.number, ctx.renderer, ctx.trace.cloned());
        send.send_request(self.head.request(&per_call), false)
    }

    fn body(&self, ctx: &mut StreamContext<'_>, index: u64) -> Bytes {
        ctx.requests.message(index, ctx.number, ctx.renderer)
    }

    /// One request; responses until the server closes, `messages` arrive, or time is over.
    /// Ending the stream early is the client's choice, not an error: it resets the stream
    /// (CANCEL) and counts it OK.
    fn server_stream<'x, 'a, 'c, O: Future<Output = ()>>(
        &'x self,
        x: &'x mut Live<'a, 'c, O>,
    ) -> impl Future<Output = Result<Outcome, Outcome>> + use<'x, 'a, 'c, O> {
        async move {
            let body = self.body(x.ctx, 0);
            send(&mut x.stream, body, true)?;
            x.ctx.sent(None);
            let (mut got, mut last) = (0u64, x.opened);
            loop {
                if self.options.messages > 0 && got >= self.options.messages {
                    x.stream.send_reset(h2::Reason::CANCEL);
                    return Ok(Outcome::OK);
                }
                match wait_message(&mut x.incoming, x.over.as_mut()).await {
                    Wake::Message => {
                        let now = Instant::now();
                        let first = (got == 0).then(|| now - x.opened);
                        let gap = (got > 0).then(|| now - last);
                        x.ctx.received(gap, first);
                        last = now;
                        got += 1;
                    }
                    Wake::End => {
                        let ctx = &x.ctx;
                        return Ok(x.incoming.finish(|| ctx.received(None, None)).await);
                    }
                    Wake::Failed(o) => return Err(o),
                    Wake::Over => {
                        x.stream.send_reset(h2::Reason::CANCEL);
                        if x.incoming.awaits_head() {
                            // Still waiting for the server's first answer: nothing was
                            // measured; a failure with the reason, never a pass.
                            return Err(Outcome::failed(
                                status::CANCELLED,
                                format!("{}the run ended before the server answered the stream (no response head)", status::NO_ANSWER),
                            ));
                        }
                        return Ok(Outcome::OK);
                    }
                }
            }
        }
    }

    /// `messages` requests (on the message schedule, or paced by `message_interval`), then
    /// half-close; one response.
    fn client_stream<'x, 'a, 'c, O: Future<Output = ()>>(
        &'x self,
        x: &'x mut Live<'a, 'c, O>,
    ) -> impl Future<Output = Result<Outcome, Outcome>> + use<'x, 'a, 'c, O> {
        async move {
            let schedule = self.schedule(x.opened, x.ctx);
            for i in 0..self.options.messages {
                let Some(due) = self.turn(schedule.as_ref(), i, x.over.as_mut()).await else {
                    break;
                };
                let body = self.body(x.ctx, i);
                send(&mut x.stream, body, false)?;
                x.ctx.sent(due);
            }
            send(&mut x.stream, Bytes::new(), true)?;
            match x.incoming.next().await {
                // The stream's one answer, measured from its opening: it counts whenever it
                // comes after the warm-up, like a unary call finishing in the wind-down.
                Ok(true) if Instant::now() >= x.ctx.thread.clock.origin => {
                    x.ctx.record_received(None, None, Some(x.opened.elapsed()))
                }
                Ok(true) => {}
                Ok(false) => {}
                Err(o) => return Err(o),
            }
            let ctx = &x.ctx;
            Ok(x.incoming.finish(|| ctx.received(None, None)).await)
        }
    }

    /// Send one message, wait for one reply: the round trip is the message latency. On a
    /// message schedule each message waits for its time (or goes at once when the reply to
    /// the one before came too late), and the corrected latency runs from its time.
    fn ping_pong<'x, 'a, 'c, O: Future<Output = ()>>(
        &'x self,
        x: &'x mut Live<'a, 'c, O>,
    ) -> impl Future<Output = Result<Outcome, Outcome>> + use<'x, 'a, 'c, O> {
        async move {
            let schedule = self.schedule(x.opened, x.ctx);
            // The message whose reply the time ran out waiting for: it may still come.
            let mut unanswered = None;
            for i in 0..self.options.messages {
                let Some(due) = self.turn(schedule.as_ref(), i, x.over.as_mut()).await else {
                    break;
                };
                let body = self.body(x.ctx, i);
                let at = Instant::now();
                send(&mut x.stream, body, false)?;
                let message = Sent {
                    due: due.map(|d| d.at),
                    at,
                    counted: x.ctx.sent(due),
                };
                match wait_message(&mut x.incoming, x.over.as_mut()).await {
                    Wake::Message => x.ctx.replied(message, (i == 0).then(|| x.opened.elapsed())),
                    Wake::End => {
                        let ctx = &x.ctx;
                        return Ok(x.incoming.finish(|| ctx.received(None, None)).await);
                    }
                    Wake::Failed(o) => return Err(o),
                    Wake::Over => {
                        unanswered = Some(message);
                        break;
                    }
                }
            }
            send(&mut x.stream, Bytes::new(), true)?;
            let ctx = &x.ctx;
            Ok(x.incoming
                .finish(|| match unanswered.take() {
                    Some(message) => ctx.replied(message, None),
                    None => ctx.received(None, None),
                })
                .await)
        }
    }

    /// Send on schedule while receiving; the k-th reply is matched to the k-th message. On a
    /// message schedule message k is sent at its time whatever the replies do (at once when
    /// behind, counted late), and the corrected latency runs from its time.
    fn pipelined<'x, 'a, 'c, O: Future<Output = ()>>(
        &'x self,
        x: &'x mut Live<'a, 'c, O>,
    ) -> impl Future<Output = Result<Outcome, Outcome>> + use<'x, 'a, 'c, O> {
        async move {
            // `self` and `x` read where used, not copied into locals: each local held
            // across the loop's wait is kept in every open stream's state.
            let schedule = self.schedule(x.opened, x.ctx);
            // The messages awaiting replies, oldest first.
            let mut in_flight: VecDeque<Sent> = VecDeque::new();
            // The k-th reply answers the k-th message; a reply beyond them answers none.
            let answer = |ctx: &StreamContext<'_>, message: Option<Sent>, first| match message {
                Some(m) => ctx.replied(m, first),
                None => ctx.received(None, first),
            };
            let (mut sent, mut received) = (0u64, 0u64);
            let mut next_send = Some(x.opened);
            let mut sending = true;
            let mut half_closed = false;
            let by_replies = self.options.message_interval.is_zero() && schedule.is_none();
            while sending && (sent < self.options.messages || received < sent) {
                let may_send = sent < self.options.messages
                    && next_send.is_some()
                    && (!by_replies || sent - received < PIPELINE_DEPTH);
                // Whether the next message is already late, judged before waiting for its
                // timer. (The clock is read only on a schedule: off one this loop runs per
                // message.)
                let next_due = schedule
                    .and(next_send)
                    .map(|at| Due::judged(at, Instant::now()));
                tokio::select! {
                    biased;
                    r = x.incoming.next() => match r {
                        Ok(true) => {
                            answer(x.ctx, in_flight.pop_front(), (received == 0).then(|| x.opened.elapsed()));
                            received += 1;
                        }
                        Ok(false) => {
                            let ctx = &x.ctx;
                            return Ok(x.incoming.finish(|| ctx.received(None, None)).await);
                        }
                        Err(o) => return Err(o),
                    },
                    // With no interval and no rate, no timer either (a 1 ms tick per message
                    // would cap a stream near 1,000 messages/s): send while fewer than the
                    // depth are in flight.
                    // (No timer: ready at once. An `Option` of one, not an async block
                    // holding one: this state is kept for every open stream.)
                    _ = OptionFuture::from(
                        next_send
                            .filter(|_| !by_replies)
                            .map(|at| tokio::time::sleep_until(release_time(at))),
                    ), if may_send => {
                        let body = self.body(x.ctx, sent);
                        let at = Instant::now();
                        send(&mut x.stream, body, false)?;
                        in_flight.push_back(Sent {
                            due: next_due.map(|d| d.at),
                            at,
                            counted: x.ctx.sent(next_due),
                        });
                        sent += 1;
                        next_send = match schedule {
                            Some(s) => s.due(sent),
                            None => Some(at + self.options.message_interval),
                        };
                        // Half-close right after the last message, as gRPC clients do: a
                        // half-duplex server answers only once the client has closed.
                        if sent == self.options.messages {
                            send(&mut x.stream, Bytes::new(), true)?;
                            half_closed = true;
                        }
                    }
                    _ = x.over.as_mut() => sending = false,
                }
            }
            if !half_closed {
                send(&mut x.stream, Bytes::new(), true)?;
            }
            let ctx = &x.ctx;
            Ok(x.incoming
                .finish(|| answer(ctx, in_flight.pop_front(), None))
                .await)
        }
    }

    /// Waits for message `i`'s turn: its time on the schedule (released half a timer tick
    /// early, as requests are), or `message_interval` after the one before. `None` when the
    /// client's time ran out first; otherwise the message's turn on the schedule, if it has
    /// one. A message already due is not waited for: a stream behind its schedule sends at
    /// once and the message counts as late, never skipped. A message never due (past the
    /// measured part) waits for the time to run out: the stream stays open with nothing to
    /// send (ending it would have its worker open another at once, whose first message is
    /// due at its opening). One timer, inline: this state is kept for every open stream.
    fn turn<'x, O: Future<Output = ()>>(
        &'x self,
        schedule: Option<&'x MessageSchedule>,
        i: u64,
        over: std::pin::Pin<&'x mut O>,
    ) -> impl Future<Output = Option<Option<Due>>> + use<'x, O> {
        async move {
            let (release, due) = match schedule {
                Some(s) => {
                    let Some(at) = s.due(i) else {
                        over.await;
                        return None;
                    };
                    let (release, now) = (release_time(at), Instant::now());
                    if release <= now {
                        return Some(Some(Due::judged(at, now)));
                    }
                    (release, Some(at))
                }
                None if i == 0 || self.options.message_interval.is_zero() => return Some(None),
                None => match Instant::now().checked_add(self.options.message_interval) {
                    Some(release) => (release, None),
                    None => {
                        over.await;
                        return None;
                    }
                },
            };
            // Biased to the message: one due before the end whose timer fires with the run's
            // stop (a tick after the end) is asked for, and goes.
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(release) => Some(due.map(|at| Due { at, late: false })),
                _ = over => None,
            }
        }
    }

    /// The stream's message schedule, when `message_rate` is set.
    fn schedule(&self, opened: Instant, ctx: &StreamContext<'_>) -> Option<MessageSchedule> {
        self.options.message_rate.map(|rate| {
            MessageSchedule::new(opened, rate, ctx.place, ctx.thread.clock.measured_end)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_opened_together_fall_due_spread_over_the_period() {
        let opened = Instant::now();
        let period = Duration::from_secs(1);
        let mut seconds: Vec<f64> = (0..1000)
            .map(|n| {
                let s = MessageSchedule::new(opened, 1.0, n, None);
                assert_eq!(s.due(0), Some(opened), "the first message at the opening");
                let second = s.due(1).unwrap() - opened;
                assert!(second >= period && second < 2 * period, "{second:?}");
                // After the first, one period apart.
                assert_eq!(s.due(5).unwrap() - s.due(4).unwrap(), period);
                second.as_secs_f64() - 1.0
            })
            .collect();
        seconds.sort_by(f64::total_cmp);
        // 1,000 streams over 1 s: no millisecond holds more than a few of them.
        let most_in_a_ms = seconds
            .chunk_by(|a, b| (a * 1000.0) as u64 == (b * 1000.0) as u64)
            .map(<[f64]>::len)
            .max()
            .unwrap();
        assert!(
            most_in_a_ms <= 3,
            "{most_in_a_ms} streams due in one millisecond"
        );
        assert_eq!(MessageSchedule::new(opened, 1.0, 0, None).phase, 0.0);
    }

    #[test]
    fn no_message_is_due_at_or_after_the_end_of_the_measured_part() {
        let opened = Instant::now();
        let until = opened + Duration::from_secs(4);
        for place in 0..100 {
            let s = MessageSchedule::new(opened, 2.0, place, Some(until));
            let due: Vec<Instant> = (0..20).map_while(|i| s.due(i)).collect();
            // Two a second for four seconds: eight, every one before the end.
            assert_eq!(due.len(), 8, "place {place}");
            assert!(due.iter().all(|&at| at < until));
            assert_eq!(s.due(100), None, "nor any later one");
        }
        let at_the_end = MessageSchedule::new(until, 1.0, 0, Some(until));
        assert_eq!(
            at_the_end.due(0),
            None,
            "a stream opened at the end sends nothing"
        );
    }
}
