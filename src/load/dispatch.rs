//! Unary load on one generator thread: a single task that owns the thread's connections
//! (`grpc::lean`), releases each request at its time, writes every request due in one
//! wake-up with one write per connection, and records each call as its status is read. No
//! task, timer, waker or channel message per request: a request is a slot in a table, a
//! header block and a frame appended to a buffer.
//!
//! The semantics are the workers' (`load::workers`; taking a request is `admission`): `concurrency` caps calls in flight; in
//! the open model a request is taken from the schedule as soon as a slot is free, released
//! half a timer tick before its time, and counted late when no slot was free within
//! `LATE_AFTER` of it; in the closed model a slot sends its next request when its call ends.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::admission::Shared;
use super::connections::{ConnectionEvent, ConnectionStats};
use super::retry::{Attempt, Verdict};
use super::timing::Clock;
use super::timing::{micros, release_time, MAX_NAP};
use crate::discovery::{Backend, Membership};
use crate::grpc::channel::{ConnectError, Endpoint, Reconnect};
use crate::grpc::lean::{
    Completion, Connection, ConnectionLost, IoTally, KeepaliveTimes, Pushback, RequestHeaders,
};
use crate::grpc::request::Renderer;
use crate::grpc::status;
use crate::grpc::unary::{Outcome, UnaryCall};
use crate::record::{Finished, SharedRecorder};
use crate::telemetry::traces::CallSpan;
use crate::vocabulary::Balance;

/// tokio's timer resolution.
const TICK: Duration = Duration::from_millis(1);

type Connecting = Pin<Box<dyn Future<Output = Result<Connection, ConnectError>>>>;

/// One of the thread's connections, and its replacement while it is down.
struct Slot {
    conn: Option<(u64, Connection)>,
    connecting: Option<Connecting>,
    reconnect: Reconnect,
}

impl Slot {
    fn new(conn: Option<(u64, Connection)>) -> Self {
        Self {
            conn,
            connecting: None,
            reconnect: Reconnect::default(),
        }
    }

    fn can_start(&self) -> bool {
        self.conn.as_ref().is_some_and(|(_, c)| c.can_start())
    }

    /// Up, or being made.
    fn alive(&self) -> bool {
        self.conn.is_some() || self.connecting.is_some()
    }

    /// Up, being made, or to be made this turn: a connection the server closed with GOAWAY
    /// (its MAX_CONNECTION_AGE) or that aged out is replaced at once, and the requests due
    /// meanwhile wait for it, as gRPC queues picks while a subchannel connects.
    fn alive_or_due(&self, now: Instant) -> bool {
        self.alive() || self.reconnect.may_try(now)
    }
}

/// One backend's connections on this thread (`[load] connections` per backend).
struct Group {
    backend: Arc<Backend>,
    endpoint: Endpoint,
    slots: Vec<Slot>,
    /// The slot this wake-up's requests to this backend go on, while it takes them.
    batch: Option<usize>,
    /// Round robin over the slots, for the next batch.
    next_slot: usize,
}

impl Group {
    /// A slot that can start a call now: this wake-up's, or the next in turn.
    fn usable_slot(&mut self) -> Option<usize> {
        if let Some(b) = self.batch.filter(|&b| self.slots[b].can_start()) {
            return Some(b);
        }
        let n = self.slots.len();
        let found = (0..n)
            .map(|i| (self.next_slot + i) % n)
            .find(|&s| self.slots[s].can_start())?;
        self.next_slot = found + 1;
        self.batch = Some(found);
        Some(found)
    }

    fn up(&self) -> bool {
        self.slots.iter().any(|s| s.conn.is_some())
    }
}

/// A request taken from the schedule (or, closed model, for a free slot), not yet sent.
struct Due {
    number: u64,
    intended: Option<Instant>,
    measured: bool,
    late: bool,
    /// Set when the server refused an earlier attempt.
    retry: Option<Retry>,
}

/// What a call sent again keeps: its latency and span run from the first send.
struct Retry {
    attempts: u8,
    /// The attempt this send is, by the retry policy's count (1: the first). A stream the
    /// server refused unprocessed is sent again as the same attempt.
    tried: u8,
    /// Sent by the retry policy: a new attempt, counted as one.
    new_attempt: bool,
    sent: Instant,
    span: Option<CallSpan>,
    /// Backoff: not sent again before this.
    not_before: Instant,
}

/// A call waiting out its retry policy's backoff (or the server's pushback): it keeps its
/// place among the calls (closed model: its worker waits), not a stream.
struct BackingOff {
    call: Call,
    /// The failure it ends with if it is not sent again (the run stops, its deadline).
    last: Outcome,
    until: Instant,
}

/// Attempts a call gets when the server refuses its stream before processing it. gRPC
/// clients retry those transparently; grpcio, for one, refuses a new stream that arrives
/// while it still counts a finished one against its MAX_CONCURRENT_STREAMS. With the
/// backoff doubling from 1 ms, ten attempts span about a second.
const MAX_ATTEMPTS: u8 = 10;
const FIRST_RETRY_BACKOFF: Duration = Duration::from_millis(1);

/// The longest a call waits for its retry, whatever a server's pushback asks (a day: longer
/// than any run worth having; a stop ends the wait anyway).
const MAX_BACKOFF: Duration = Duration::from_secs(86_400);

/// A call in flight.
struct Call {
    serial: u64,
    number: u64,
    /// The mix's entry it is (0 without a mix).
    method: u16,
    attempts: u8,
    /// The retry policy's attempt number (1: the first).
    tried: u8,
    /// This attempt's send (`sent` is the first's).
    attempt_sent: Instant,
    connection: u64,
    /// The backend's id, for its tally.
    backend: u32,
    stream: u32,
    intended: Option<Instant>,
    sent: Instant,
    measured: bool,
    late: bool,
    span: Option<CallSpan>,
}

/// What the dispatcher of one generator thread is given.
pub(super) struct DispatchSetup {
    pub shared: Arc<Shared>,
    pub clock: Clock,
    /// How to reach a backend (its address is replaced by each backend's).
    pub endpoint: Endpoint,
    pub headers: Arc<RequestHeaders>,
    /// The thread's connections to each backend of the first membership.
    pub connections: Vec<(Arc<Backend>, Vec<Connection>)>,
    /// The membership as it changes, and this thread's connections per backend.
    pub membership: tokio::sync::watch::Receiver<Arc<Membership>>,
    pub per_backend: usize,
    pub balance: Balance,
    /// The worker ids this thread stands for: its share of `concurrency` (and the
    /// `{{worker_id}}` of a call is the id of the slot it occupies).
    pub worker_ids: Vec<usize>,
    pub recorder: SharedRecorder,
    /// Generator threads: each takes its share of `connection_churn`.
    pub threads: usize,
}

/// `[load] connection_churn`: every `every`, a new connection is made and the next request
/// due goes on it alone; the connection is closed once that call has ended.
struct Churn {
    every: Duration,
    next_at: Instant,
    connecting: Option<(Arc<Backend>, Connecting)>,
    ready: Option<(Arc<Backend>, Connection)>,
    /// Round robin over the backends, apart from the pooled requests' turn.
    next_group: usize,
}

pub(super) async fn run(setup: DispatchSetup) {
    let mut d = Dispatcher::new(setup);
    std::future::poll_fn(|cx| d.poll(cx)).await;
}

struct Dispatcher {
    shared: Arc<Shared>,
    clock: Clock,
    endpoint: Endpoint,
    headers: Arc<RequestHeaders>,
    timeout: Option<Duration>,
    /// The templated metadata of the call being sent, rendered (reused strings).
    rendered: Vec<String>,
    /// `[load] keepalive`; its time doubles when a server says `too_many_pings`.
    keepalive: Option<KeepaliveTimes>,
    /// `[load] connection_max_age`.
    max_age: Option<Duration>,
    /// Per backend, in the membership's order.
    groups: Vec<Group>,
    membership: tokio::sync::watch::Receiver<Arc<Membership>>,
    per_backend: usize,
    balance: Balance,
    /// Connections finishing the calls they still carry: the server sent GOAWAY, or their
    /// backend left the membership (drained: no new calls).
    draining: Vec<(u64, u32, Connection)>,
    connection_ids: u64,
    /// Round robin over the backends.
    next_group: usize,
    worker_ids: Vec<usize>,
    /// In-flight calls by token; `free` lists the empty entries.
    calls: Vec<Option<Call>>,
    free: Vec<usize>,
    serial: u64,
    /// (deadline, token, serial), in sending order: deadlines are sent + timeout.
    deadlines: VecDeque<(Instant, usize, u64)>,
    due: VecDeque<Due>,
    /// No more requests will be taken (schedule exhausted, time or count reached, stop).
    finished: bool,
    renderer: Renderer,
    recorder: SharedRecorder,
    completions: Vec<Completion>,
    /// Wakes for deadlines, interval ends, reconnects and to notice a stop.
    timer: Pin<Box<Sleep>>,
    /// Wakes for the next release (open model); see `may_release`.
    release_timer: Pin<Box<Sleep>>,
    /// What `release_timer` is set to, once set.
    release_at: Option<Instant>,
    /// A live schedule's next request may not be taken before this (`Shared::not_before`).
    take_again_at: Option<Instant>,
    /// Some call has a retry policy (`[call.retry]`).
    retrying: bool,
    /// Calls between a failed attempt and the next.
    backing_off: Vec<BackingOff>,
    /// The backoff's jitter.
    rng: rand::rngs::StdRng,
    churn: Option<Churn>,
}

impl Dispatcher {
    fn new(mut s: DispatchSetup) -> Self {
        let now = Instant::now();
        let mut ids = 0;
        s.membership.borrow_and_update();
        let groups = s
            .connections
            .into_iter()
            .map(|(backend, conns)| {
                let mut slots: Vec<Slot> = conns
                    .into_iter()
                    .map(|c| {
                        ids += 1;
                        Slot::new(Some((ids, c.counting_io(s.shared.connections.io_tally()))))
                    })
                    .collect();
                // A backend that could not be connected to yet gets its slots all the same.
                slots.resize_with(s.per_backend.max(1), || Slot::new(None));
                Group {
                    endpoint: Endpoint {
                        address: backend.address.clone(),
                        ..s.endpoint.clone()
                    },
                    backend,
                    slots,
                    batch: None,
                    next_slot: 0,
                }
            })
            .collect();
        let cap = s.worker_ids.len();
        // Unary calls, native or gRPC-Web (a mix's entries carry their own).
        let timeout = s.shared.plan.call.timeout();
        for _ in 0..ids {
            s.shared.connections.count(ConnectionEvent::Opened);
        }
        let load = &s.shared.plan.load;
        let keepalive = load.keepalive.map(|k| KeepaliveTimes {
            time: k.time,
            timeout: k.timeout,
            without_calls: k.without_calls,
        });
        let max_age = load.connection_max_age;
        let retrying = s
            .shared
            .plan
            .unary_calls()
            .iter()
            .any(|c| c.retry().is_some());
        let churn = load.connection_churn.map(|per_second| Churn {
            every: Duration::from_secs_f64(s.threads.max(1) as f64 / per_second),
            next_at: now,
            connecting: None,
            ready: None,
            next_group: 0,
        });
        Self {
            churn,
            retrying,
            backing_off: Vec::new(),
            rng: rand::SeedableRng::from_os_rng(),
            timeout,
            rendered: Vec::new(),
            keepalive,
            max_age,
            groups,
            membership: s.membership,
            per_backend: s.per_backend.max(1),
            balance: s.balance,
            draining: Vec::new(),
            connection_ids: ids,
            next_group: 0,
            renderer: Renderer::new(s.worker_ids.first().copied().unwrap_or(0)),
            worker_ids: s.worker_ids,
            calls: (0..cap).map(|_| None).collect(),
            free: (0..cap).rev().collect(),
            serial: 0,
            deadlines: VecDeque::new(),
            due: VecDeque::with_capacity(cap),
            finished: cap == 0,
            recorder: s.recorder,
            completions: Vec::new(),
            timer: Box::pin(tokio::time::sleep_until(now)),
            release_timer: Box::pin(tokio::time::sleep_until(now)),
            release_at: None,
            take_again_at: None,
            shared: s.shared,
            clock: s.clock,
            endpoint: s.endpoint,
            headers: s.headers,
        }
    }

    /// Calls in flight: the taken slots.
    fn in_flight(&self) -> usize {
        self.calls.len() - self.free.len()
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            // A new membership's slots first, then `now`: their first attempt is due at
            // their making, so `connect` starts it this turn and the requests due wait for
            // it rather than fail with "no connection" (gRPC's round robin queues picks
            // while a new subchannel connects).
            self.follow_membership();
            let now = Instant::now();
            if self.shared.stop.load(Ordering::Relaxed) {
                // Stop sending at once; calls in flight may finish (the driver bounds the wait).
                self.finished = true;
                self.due.clear();
                self.give_up_backing_off(now);
            }
            self.take(now);
            self.resume_backed_off(now);
            let mut progress = self.connect(cx, now);
            progress |= self.churn(cx, now);
            self.dispatch(now);
            self.expire(now);
            progress |= self.poll_connections(cx);
            self.recorder.borrow_mut().flush_if_due(now);
            if self.finished
                && self.due.is_empty()
                && self.in_flight() == 0
                && self.backing_off.is_empty()
            {
                return Poll::Ready(());
            }
            if progress {
                continue;
            }
            if let Some(at) = self.release_wanted(now) {
                self.release_timer.as_mut().reset(at);
                self.release_at = Some(at);
                if self.release_timer.as_mut().poll(cx).is_ready() {
                    continue;
                }
            }
            let wake = self.timer_wanted(now);
            // Unchanged, it stays registered as it is (a reset is a lock and two wheel
            // operations, thousands of times a second).
            if wake != self.timer.deadline() || self.timer.is_elapsed() {
                self.timer.as_mut().reset(wake);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// Takes requests for every free slot: from the schedule (open model), or to send now
    /// (closed model). A request taken more than `LATE_AFTER` after its time had to wait
    /// for a slot: it is sent late.
    fn take(&mut self, now: Instant) {
        self.take_again_at = None;
        while !self.finished
            && self.in_flight() + self.due.len() + self.backing_off.len() < self.calls.len()
        {
            if let Some(at) = self.shared.not_before(&self.clock, now) {
                self.take_again_at = Some(at);
                break;
            }
            let Some(t) = self.shared.take(&self.clock, now) else {
                self.finished = true;
                break;
            };
            self.due.push_back(Due {
                number: t.number,
                intended: t.intended,
                measured: t.measured,
                late: t.late,
                retry: None,
            });
        }
    }

    /// Sends every request whose time has come. Each goes to the next backend in turn
    /// (`round_robin`) or to the first one up (`pick_first`); on a backend, a wake-up's
    /// requests all go on one connection, the next in turn, while it can take them: the load
    /// is spread over a backend's connections wake-up by wake-up rather than call by call,
    /// so a wake-up costs one write per backend, not one per call (on loopback a write also
    /// pays for the receiver's network stack).
    fn dispatch(&mut self, now: Instant) {
        for g in &mut self.groups {
            g.batch = None;
        }
        let may_release = self.may_release(now);
        while let Some(front) = self.due.front() {
            if front
                .intended
                .is_some_and(|at| !may_release || release_time(at) > now)
                || front.retry.as_ref().is_some_and(|r| r.not_before > now)
            {
                return;
            }
            if self.churn.as_ref().is_some_and(|c| c.ready.is_some()) {
                if let Some(due) = self.due.pop_front() {
                    self.send_churned(due, now);
                }
                continue;
            }
            let Some((group, slot)) = self.pick() else {
                let waiting = self
                    .groups
                    .iter()
                    .flat_map(|g| &g.slots)
                    .any(|s| s.alive_or_due(now));
                if waiting || self.shared.plan.schedule.is_none() {
                    // Wait for a stream slot or the connection being made; in the closed
                    // model the next attempt's failure fails the requests (`connect`).
                    return;
                }
                // Every connection is down and waiting to retry: the request fails now.
                let error = self.last_error();
                if let Some(due) = self.due.pop_front() {
                    self.fail_unsent(&due, now, &error);
                }
                continue;
            };
            let Some(due) = self.due.pop_front() else {
                return;
            };
            self.send(group, slot, due, now);
        }
    }

    fn send(&mut self, group: usize, slot: usize, due: Due, now: Instant) {
        let Some(token) = self.free.pop() else {
            return; // cannot happen: `take` keeps due + in flight within the slots
        };
        let g = &mut self.groups[group];
        let backend = g.backend.id;
        let Some((connection, conn)) = g.slots[slot].conn.as_mut() else {
            self.free.push(token);
            return;
        };
        self.renderer.worker_id = self.worker_ids[token];
        let plan = &self.shared.plan;
        let (method, call, requests) = match (&plan.mix, &plan.call) {
            (Some(mix), _) => {
                let m = mix.pick(due.number);
                (m, Some(&mix.entries[m].call), &mix.entries[m].requests)
            }
            (None, super::plan::CallPlan::Unary(call)) => (0, Some(call), &plan.requests),
            (None, _) => (0, None, &plan.requests),
        };
        let body = requests.body(due.number, &mut self.renderer);
        let timeout = call.map_or(self.timeout, UnaryCall::timeout);
        let templated = match (call, &plan.call) {
            (Some(call), _) => Some(call.templated()),
            (None, super::plan::CallPlan::Web(web)) => Some(web.templated()),
            (None, _) => None,
        };
        if let Some(templated) = templated {
            templated.render_into(due.number, &mut self.renderer, &mut self.rendered);
        }
        let (sent, span, attempts, tried, new_attempt) = match due.retry {
            Some(r) => (r.sent, r.span, r.attempts + 1, r.tried, r.new_attempt),
            None => (
                now,
                self.shared.plan.trace.as_ref().and_then(|t| t.sample()),
                1,
                1,
                true,
            ),
        };
        if self.retrying && new_attempt {
            self.shared.retries.attempt_sent(due.measured, tried);
        }
        let trace = span
            .as_ref()
            .and_then(|s| s.traceparent.as_ref())
            .map(|t| t.as_bytes());
        let stream = conn.start(token, method, body, &self.rendered, trace);
        self.serial += 1;
        if let Some(t) = timeout {
            // In sending order, except a retry, which keeps its first deadline.
            let deadline = sent + t;
            let at = self.deadlines.partition_point(|&(d, _, _)| d <= deadline);
            self.deadlines.insert(at, (deadline, token, self.serial));
        }
        self.calls[token] = Some(Call {
            serial: self.serial,
            number: due.number,
            method: method as u16,
            attempts,
            tried,
            attempt_sent: now,
            connection: *connection,
            backend,
            stream,
            intended: due.intended,
            sent,
            measured: due.measured,
            late: due.late,
            span,
        });
    }

    /// The backend and connection the next call goes on, if one can start a call now:
    /// `round_robin` takes the backends in turn, skipping those that cannot; `pick_first`
    /// the first backend that is up, waiting for it rather than spilling to the next.
    fn pick(&mut self) -> Option<(usize, usize)> {
        let n = self.groups.len();
        match self.balance {
            Balance::RoundRobin => {
                for i in 0..n {
                    let g = (self.next_group + i) % n;
                    if let Some(slot) = self.groups[g].usable_slot() {
                        self.next_group = g + 1;
                        return Some((g, slot));
                    }
                }
                None
            }
            Balance::PickFirst => {
                let g = self.groups.iter().position(Group::up)?;
                self.groups[g].usable_slot().map(|slot| (g, slot))
            }
        }
    }

    /// Takes a new membership when discovery published one: new backends get their
    /// connections (opened by `connect`), backends that left are drained — their calls in
    /// flight finish, no new ones go to them.
    fn follow_membership(&mut self) {
        if !self.membership.has_changed().unwrap_or(false) {
            return;
        }
        let now = self.membership.borrow_and_update().clone();
        let mut old = std::mem::take(&mut self.groups);
        for backend in &now.backends {
            match old.iter().position(|g| Arc::ptr_eq(&g.backend, backend)) {
                Some(i) => self.groups.push(old.swap_remove(i)),
                None => self.groups.push(Group {
                    endpoint: Endpoint {
                        address: backend.address.clone(),
                        ..self.endpoint.clone()
                    },
                    backend: backend.clone(),
                    slots: (0..self.per_backend).map(|_| Slot::new(None)).collect(),
                    batch: None,
                    next_slot: 0,
                }),
            }
        }
        for gone in old {
            let id = gone.backend.id;
            for slot in gone.slots {
                if let Some((cid, conn)) = slot.conn {
                    if conn.in_flight() > 0 {
                        self.draining.push((cid, id, conn));
                    }
                }
            }
        }
        if self.next_group >= self.groups.len() {
            self.next_group = 0;
        }
    }

    /// Fails calls whose deadline passed, resetting their streams.
    fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, token, serial)) = self.deadlines.front() {
            let live = self.calls[token]
                .as_ref()
                .is_some_and(|c| c.serial == serial);
            if live && deadline > now {
                return;
            }
            self.deadlines.pop_front();
            if !live {
                continue; // ended before its deadline
            }
            if let Some(call) = &self.calls[token] {
                let (connection, stream) = (call.connection, call.stream);
                if let Some(conn) = self.connection_mut(connection) {
                    conn.cancel(stream);
                }
            }
            self.complete(
                token,
                Outcome::failed(status::DEADLINE_EXCEEDED, "deadline exceeded (client side)"),
                now,
            );
        }
    }

    fn connection_mut(&mut self, id: u64) -> Option<&mut Connection> {
        let in_slots = self
            .groups
            .iter_mut()
            .flat_map(|g| &mut g.slots)
            .filter_map(|s| s.conn.as_mut())
            .find(|(i, _)| *i == id)
            .map(|(_, c)| c);
        match in_slots {
            Some(c) => Some(c),
            None => self
                .draining
                .iter_mut()
                .find(|(i, _, _)| *i == id)
                .map(|(_, _, c)| c),
        }
    }

    /// Writes and reads on every connection and records the calls that ended. True when
    /// any did (slots were freed) or a connection was lost.
    fn poll_connections(&mut self, cx: &mut Context<'_>) -> bool {
        let mut lost = Vec::new();
        let clock = std::time::Instant::now();
        let stats = &self.shared.connections;
        for group in &mut self.groups {
            for slot in &mut group.slots {
                let Some((id, conn)) = slot.conn.as_mut() else {
                    continue;
                };
                let alive = keep_alive(conn, self.keepalive.as_ref(), stats, clock);
                if let Err(why) = alive.and_then(|()| conn.poll_io(cx, &mut self.completions)) {
                    // A GOAWAY read just before the socket closed still counts as one.
                    count_goaway(conn, stats, &mut self.keepalive);
                    lost.push((conn.abandon(), why.0));
                    slot.conn = None;
                } else if !conn.accepting() {
                    // GOAWAY, or stream ids used up: finish its calls aside, open a new one.
                    count_goaway(conn, stats, &mut self.keepalive);
                    if let Some((id, c)) = slot.conn.take() {
                        self.draining.push((id, group.backend.id, c));
                    }
                } else if self
                    .max_age
                    .is_some_and(|age| conn.age(clock) >= jittered(age, *id))
                {
                    // Aged out: no new calls; those in flight finish; a new one is opened.
                    stats.count(ConnectionEvent::ClosedByAge);
                    if let Some((id, c)) = slot.conn.take() {
                        self.draining.push((id, group.backend.id, c));
                    }
                }
            }
        }
        let mut i = 0;
        while i < self.draining.len() {
            let conn = &mut self.draining[i].2;
            let result = keep_alive(conn, self.keepalive.as_ref(), stats, clock)
                .and_then(|()| conn.poll_io(cx, &mut self.completions));
            if let Err(why) = result {
                lost.push((conn.abandon(), why.0));
                self.draining.swap_remove(i);
            } else if conn.in_flight() == 0 {
                self.draining.swap_remove(i);
            } else {
                i += 1;
            }
        }
        let progress = !self.completions.is_empty() || !lost.is_empty();
        let now = Instant::now();
        let mut completions = std::mem::take(&mut self.completions);
        for c in completions.drain(..) {
            if !(c.refused && self.retry(c.token)) {
                self.end_attempt(c.token, c.outcome, c.pushback, now);
            }
        }
        self.completions = completions;
        for (tokens, why) in lost {
            for token in tokens {
                let mut outcome = Outcome::failed(status::UNAVAILABLE, why.clone());
                outcome.connection_failed = true;
                self.end_attempt(token, outcome, None, now);
            }
        }
        progress
    }

    /// Puts a refused call back at the head of the queue, unless it has had its attempts or
    /// the run is stopping. True when it will be sent again.
    fn retry(&mut self, token: usize) -> bool {
        let retryable = self.calls[token]
            .as_ref()
            .is_some_and(|c| c.attempts < MAX_ATTEMPTS);
        if !retryable || self.finished && self.shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        let Some(call) = self.calls[token].take() else {
            return false;
        };
        self.free.push(token);
        self.due.push_front(Due {
            number: call.number,
            intended: call.intended,
            measured: call.measured,
            late: call.late,
            retry: Some(Retry {
                attempts: call.attempts,
                tried: call.tried,
                new_attempt: false,
                sent: call.sent,
                span: call.span,
                not_before: Instant::now() + FIRST_RETRY_BACKOFF * (1 << (call.attempts - 1)),
            }),
        });
        true
    }

    /// An attempt of call `token` was answered with `outcome` (or its connection lost): by
    /// the call's retry policy, it waits to be tried again, or the call ends.
    fn end_attempt(
        &mut self,
        token: usize,
        outcome: Outcome,
        pushback: Option<Pushback>,
        now: Instant,
    ) {
        if !self.retrying {
            return self.complete(token, outcome, now);
        }
        let shared = self.shared.clone();
        let Some(call) = self.calls.get(token).and_then(Option::as_ref) else {
            return;
        };
        let Some(policy_call) = shared.plan.unary_call(call.method) else {
            return self.complete(token, outcome, now);
        };
        let Some(policy) = policy_call.retry() else {
            return self.complete(token, outcome, now);
        };
        let retries = &shared.retries;
        retries.attempt_answered(call.measured, micros(now - call.attempt_sent));
        let attempt = Attempt {
            code: outcome.code,
            pushback,
            tried: call.tried,
        };
        let stopping = shared.stop.load(Ordering::Relaxed);
        // The call's deadline covers every attempt: no wait goes past it.
        let deadline = UnaryCall::timeout(policy_call).or(self.timeout);
        let deadline = deadline.and_then(|t| call.sent.checked_add(t));
        let verdict = if stopping {
            Verdict::End
        } else {
            retries.decide(policy, attempt, call.measured, &mut self.rng)
        };
        match verdict {
            Verdict::RetryAfter(delay) => {
                let Some(call) = self.calls[token].take() else {
                    return;
                };
                self.free.push(token);
                self.backing_off.push(BackingOff {
                    call,
                    last: outcome,
                    // The server's pushback may ask for any number of milliseconds.
                    until: now
                        .checked_add(delay)
                        .map_or(deadline.unwrap_or(now + MAX_BACKOFF), |at| {
                            deadline.map_or(at, |d| at.min(d))
                        })
                        .min(now + MAX_BACKOFF),
                });
            }
            Verdict::End => {
                retries.call_ended(outcome.code, call.tried, call.measured);
                self.complete(token, outcome, now);
            }
        }
    }

    /// Calls whose backoff is over go to the head of the queue, as their next attempt; one
    /// whose deadline passed meanwhile ends with DEADLINE_EXCEEDED, unsent.
    fn resume_backed_off(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.backing_off.len() {
            if self.backing_off[i].until > now {
                i += 1;
                continue;
            }
            let b = self.backing_off.swap_remove(i);
            let timeout = self
                .shared
                .plan
                .unary_call(b.call.method)
                .and_then(UnaryCall::timeout)
                .or(self.timeout);
            if timeout.is_some_and(|t| b.call.sent.checked_add(t).is_some_and(|d| d <= now)) {
                let outcome =
                    Outcome::failed(status::DEADLINE_EXCEEDED, "deadline exceeded (client side)");
                self.shared
                    .retries
                    .call_ended(outcome.code, b.call.tried, b.call.measured);
                self.record_end(b.call, outcome, now);
                continue;
            }
            let c = b.call;
            self.due.push_front(Due {
                number: c.number,
                intended: c.intended,
                measured: c.measured,
                late: c.late,
                retry: Some(Retry {
                    attempts: c.attempts,
                    tried: c.tried.saturating_add(1),
                    new_attempt: true,
                    sent: c.sent,
                    span: c.span,
                    not_before: now,
                }),
            });
        }
    }

    /// The run stops: calls waiting to be tried again end with their last failure.
    fn give_up_backing_off(&mut self, now: Instant) {
        for b in std::mem::take(&mut self.backing_off) {
            self.shared
                .retries
                .call_ended(b.last.code, b.call.tried, b.call.measured);
            self.record_end(b.call, b.last, now);
        }
    }

    /// Ends call `token` at `now` with `outcome`: records it and ends its span.
    fn complete(&mut self, token: usize, outcome: Outcome, now: Instant) {
        let Some(call) = self.calls.get_mut(token).and_then(Option::take) else {
            return;
        };
        self.free.push(token);
        self.record_end(call, outcome, now);
    }

    /// Records `call`, ended at `now` with `outcome`, and ends its span.
    fn record_end(&mut self, call: Call, outcome: Outcome, now: Instant) {
        if call.measured {
            let corrected = call.intended.map(|at| micros(now - at.min(call.sent)));
            self.recorder.borrow_mut().record(
                now,
                &Finished {
                    corrected_us: corrected,
                    uncorrected_us: micros(now - call.sent),
                    code: outcome.code,
                    message: outcome.message.as_deref(),
                    late: call.late,
                    backend: call.backend,
                    method: call.method,
                },
            );
        }
        if let Some(span) = call.span {
            span.end(
                outcome.code,
                outcome.message.as_deref(),
                call.measured,
                call.late,
            );
        }
    }

    /// Records a request that could not be sent (no connection) as failed, against the
    /// backend whose turn it was (every backend's connections were down).
    fn fail_unsent(&mut self, due: &Due, now: Instant, error: &str) {
        if !due.measured {
            return;
        }
        let backend = match self.balance {
            Balance::RoundRobin => self.groups.get(self.next_group % self.groups.len().max(1)),
            Balance::PickFirst => self.groups.first(),
        }
        .map_or(0, |g| g.backend.id);
        self.next_group += 1;
        let method = self
            .shared
            .plan
            .mix
            .as_ref()
            .map_or(0, |m| m.pick(due.number) as u16);
        let corrected = due
            .intended
            .map(|at| micros(now.saturating_duration_since(at)));
        self.recorder.borrow_mut().record(
            now,
            &Finished {
                corrected_us: corrected,
                uncorrected_us: 0,
                code: status::UNAVAILABLE,
                message: Some(error),
                late: due.late,
                backend,
                method,
            },
        );
    }

    fn last_error(&self) -> String {
        self.groups
            .iter()
            .flat_map(|g| &g.slots)
            .find_map(|s| s.reconnect.last_error())
            .map_or_else(
                || "no connection to the target".to_string(),
                |e| e.to_string(),
            )
    }

    /// Replaces lost connections (and opens a new backend's), with backoff while a backend
    /// is down. `pick_first` connects a backend only while every backend before it is down.
    /// True when a connection came up (requests may be sent on it).
    fn connect(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        let mut failed = None;
        for group in &mut self.groups {
            for slot in &mut group.slots {
                if slot.conn.is_some() {
                    continue;
                }
                if slot.connecting.is_none() {
                    // Once the schedule is done, only requests still due need a connection
                    // (one the server closed with GOAWAY at the very end, say).
                    let needed = !self.finished || !self.due.is_empty();
                    if !needed || !slot.reconnect.may_try(now) {
                        continue;
                    }
                    let (endpoint, headers) = (group.endpoint.clone(), self.headers.clone());
                    let tally = self.shared.connections.io_tally();
                    slot.connecting = Some(Box::pin(open_counted(endpoint, headers, tally)));
                }
                let Some(connecting) = slot.connecting.as_mut() else {
                    continue;
                };
                match connecting.as_mut().poll(cx) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(conn)) => {
                        self.shared.connections.count(ConnectionEvent::Opened);
                        self.connection_ids += 1;
                        slot.conn = Some((self.connection_ids, conn));
                        slot.connecting = None;
                        slot.reconnect.succeeded();
                        group.backend.connections.fetch_add(1, Ordering::Relaxed);
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => {
                        slot.connecting = None;
                        failed = Some(e.to_string());
                        slot.reconnect.failed(e);
                    }
                }
            }
            if self.balance == Balance::PickFirst && group.slots.iter().any(Slot::alive) {
                break;
            }
        }
        // Requests waiting for that attempt fail with its error, as each worker's would.
        if let Some(error) = failed {
            let usable = self
                .groups
                .iter()
                .flat_map(|g| &g.slots)
                .any(Slot::can_start);
            if !usable {
                while let Some(front) = self.due.front() {
                    if front.intended.is_some_and(|at| at > now) {
                        break;
                    }
                    if let Some(due) = self.due.pop_front() {
                        self.fail_unsent(&due, now, &error);
                    }
                }
                progress = true;
            }
        }
        progress
    }

    /// `connection_churn`: starts the next new connection when its time has come, and
    /// makes it ready for the next request due. True when one became ready.
    fn churn(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let Some(c) = self.churn.as_mut() else {
            return false;
        };
        let idle = c.connecting.is_none() && c.ready.is_none();
        // Requests are taken ahead of their time: the schedule can be done while some are
        // still due, and their share of the churn with them.
        let wanted = !self.finished || !self.due.is_empty();
        if idle && wanted && now >= c.next_at && !self.groups.is_empty() {
            // One at a time per thread; a slow connect delays the next rather than piling up.
            c.next_at = (c.next_at + c.every).max(now);
            let group = &self.groups[c.next_group % self.groups.len()];
            c.next_group += 1;
            let (endpoint, headers) = (group.endpoint.clone(), self.headers.clone());
            let tally = self.shared.connections.io_tally();
            c.connecting = Some((
                group.backend.clone(),
                Box::pin(open_counted(endpoint, headers, tally)),
            ));
        }
        let Some((_, connecting)) = c.connecting.as_mut() else {
            return false;
        };
        let stats = &self.shared.connections;
        match connecting.as_mut().poll(cx) {
            Poll::Pending => false,
            Poll::Ready(result) => {
                let Some((backend, _)) = c.connecting.take() else {
                    return false;
                };
                match result {
                    Ok(conn) => {
                        stats.count(ConnectionEvent::Opened);
                        stats.count(ConnectionEvent::Churned);
                        backend.connections.fetch_add(1, Ordering::Relaxed);
                        c.ready = Some((backend, conn));
                        true
                    }
                    Err(_) => {
                        // The request it was for goes on a pooled connection meanwhile.
                        stats.count(ConnectionEvent::ChurnFailed);
                        false
                    }
                }
            }
        }
    }

    /// Sends `due` alone on the churned connection, which then only finishes that call.
    fn send_churned(&mut self, due: Due, now: Instant) {
        let Some((backend, conn)) = self.churn.as_mut().and_then(|c| c.ready.take()) else {
            return self.due.push_front(due);
        };
        let Some(group) = self
            .groups
            .iter()
            .position(|g| Arc::ptr_eq(&g.backend, &backend))
        else {
            // Its backend left meanwhile: the request takes the usual way.
            return self.due.push_front(due);
        };
        self.connection_ids += 1;
        let slots = &mut self.groups[group].slots;
        slots.push(Slot::new(Some((self.connection_ids, conn))));
        let slot = slots.len() - 1;
        self.send(group, slot, due, now);
        if let Some((id, conn)) = self.groups[group].slots.pop().and_then(|s| s.conn) {
            self.draining.push((id, backend.id, conn));
        }
    }

    /// Whether requests may be released now (open model). Only on the release timer's
    /// firing, which tokio does on its 1 ms ticks: responses wake the dispatcher between
    /// ticks, and releasing on those wakes would send each tick's requests a few at a time,
    /// a write each. A request whose time came while the timer was not set (waiting for a
    /// free slot or a connection) goes as soon as it can.
    fn may_release(&self, now: Instant) -> bool {
        match self.release_at {
            None => true,
            Some(at) => self.release_timer.is_elapsed() || now >= at + TICK,
        }
    }

    /// The release time to set the release timer to, when it must change: the next request's,
    /// if it is in the future (one already due waits for a slot, not for the timer).
    fn release_wanted(&self, now: Instant) -> Option<Instant> {
        let at = release_time(self.due.front()?.intended?);
        (at > now && self.release_at != Some(at)).then_some(at)
    }

    /// What `timer` is set to: `next_wake`, and never after the tick that follows the
    /// release timer's. Why: tokio wakes its driver (an eventfd write, and an epoll_wait
    /// that returns at once) whenever a timer is set earlier than the earliest one it knew
    /// of when it last fired timers — always so for the release timer set anew as it fires,
    /// a thousand times a second. With `timer` standing one tick behind it, the release
    /// timer's next tick is never the earliest, and the two leap-frog without a wake-up
    /// (measured at 10,000 req/s: 871 eventfd writes a second before, 187 after).
    fn timer_wanted(&self, now: Instant) -> Instant {
        let wake = self.next_wake(now);
        match self.release_at {
            Some(at) if !self.release_timer.is_elapsed() => wake.min(at + TICK),
            _ => wake,
        }
    }

    /// When to look again: the next release, deadline, interval end or reconnect attempt,
    /// and at least every `MAX_NAP` to notice a stop.
    fn next_wake(&self, now: Instant) -> Instant {
        // Only future times: what is due already waits for I/O, which wakes us itself.
        let mut wake = now + MAX_NAP;
        let mut consider = |t: Instant| {
            if t > now {
                wake = wake.min(t);
            }
        };
        if let Some(&(deadline, _, _)) = self.deadlines.front() {
            consider(deadline);
        }
        if let Some(retry) = self.due.front().and_then(|d| d.retry.as_ref()) {
            consider(retry.not_before);
        }
        for b in &self.backing_off {
            consider(b.until);
        }
        if let Some(c) = self.churn.as_ref().filter(|c| c.connecting.is_none()) {
            if (!self.finished || !self.due.is_empty()) && c.ready.is_none() {
                consider(c.next_at);
            }
        }
        if let Some(at) = self.take_again_at {
            consider(at);
        }
        if let Some(flush) = self.recorder.borrow().flush_deadline() {
            consider(flush);
        }
        if !self.finished {
            for slot in self.groups.iter().flat_map(|g| &g.slots) {
                if !slot.alive() {
                    consider(slot.reconnect.next_attempt());
                }
            }
        }
        wake
    }
}

/// A new lean connection whose socket writes and reads count into the run's `connections`.
async fn open_counted(
    endpoint: Endpoint,
    headers: Arc<RequestHeaders>,
    tally: Arc<IoTally>,
) -> Result<Connection, ConnectError> {
    let made = Connection::open(&endpoint, headers).await;
    made.map(|c| c.counting_io(tally))
}

/// A connection's maximum age, `age` ±10% by its id (gRPC servers jitter
/// MAX_CONNECTION_AGE so that connections made together do not all go at once).
fn jittered(age: Duration, id: u64) -> Duration {
    let unit = crate::grpc::request::mix(id) as f64 / u64::MAX as f64;
    age.mul_f64(0.9 + 0.2 * unit)
}

/// Keepalive on `conn` (when asked), counting the PINGs sent and those unanswered.
fn keep_alive(
    conn: &mut Connection,
    keepalive: Option<&KeepaliveTimes>,
    stats: &ConnectionStats,
    clock: std::time::Instant,
) -> Result<(), ConnectionLost> {
    let Some(k) = keepalive else {
        return Ok(());
    };
    match conn.keepalive(clock, k) {
        Ok(sent) => {
            if sent {
                stats.count(ConnectionEvent::KeepalivePing);
            }
            Ok(())
        }
        Err(lost) => {
            stats.count(ConnectionEvent::KeepaliveFailed);
            Err(lost)
        }
    }
}

/// Counts a connection the server sent GOAWAY on; after `too_many_pings`, pings half as
/// often from then on, as gRPC clients do (gRFC A8).
fn count_goaway(
    conn: &Connection,
    stats: &ConnectionStats,
    keepalive: &mut Option<KeepaliveTimes>,
) {
    if conn.went_away() {
        stats.count(ConnectionEvent::ClosedByServer);
    }
    if conn.told_too_many_pings() {
        stats.count(ConnectionEvent::TooManyPings);
        if let Some(k) = keepalive.as_mut() {
            k.time = k.time.saturating_mul(2);
        }
    }
}
