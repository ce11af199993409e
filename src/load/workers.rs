//! The workers of streams and handshake storms (and of unary calls over pooled h2
//! connections, `[call] transport = "h2"`): take the next request (a whole stream, a storm's
//! connection, a call), wait for its time (open model), run it, record. Unary calls over
//! the lean client go through `dispatch`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::admission::{Clock, Shared};
use super::plan::CallPlan;
use super::timing::{micros, HALF_TICK, MAX_NAP};
use crate::grpc::channel::{Lease, Pool};
use crate::grpc::request::Renderer;
use crate::grpc::status;
use crate::grpc::unary::Outcome;
use crate::grpc::web::{WebCall, WebSender};
use crate::load::stream::StreamContext;
use crate::record::{Finished, SharedRecorder};
use crate::scenario::Balance;
use crate::telemetry::traces::CallSpan;

pub(super) async fn worker(
    shared: Arc<Shared>,
    clock: Clock,
    pool: Option<Arc<Pool>>,
    slot: usize,
    worker_id: usize,
    rec: SharedRecorder,
) {
    let requests = &shared.plan.requests;
    let mut renderer = Renderer::new(worker_id);
    let mut lease: Option<Lease> = match &pool {
        Some(p) => Box::pin(p.lease(slot, None)).await.ok(),
        None => None,
    };
    let mut broken: Option<Lease> = None;
    // gRPC-Web: this worker's own connection and its backend.
    let mut web: Option<(WebSender, u32)> = None;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let picked = Instant::now();
        let Some(ticket) = shared.take(&clock, picked) else {
            break;
        };
        let (intended, measured, number) = (ticket.intended, ticket.measured, ticket.number);
        let taken = Taken {
            intended,
            measured,
            late: ticket.late,
        };
        if let Some(at) = intended {
            if !wait_until(at.checked_sub(HALF_TICK).unwrap_or(at), &rec, &shared).await {
                break;
            }
        }

        // A handshake storm makes its own connection each iteration: no pool.
        if let CallPlan::Handshake(call) = &shared.plan.call {
            let mut span = shared
                .plan
                .trace
                .as_ref()
                .and_then(|t| t.sample())
                .map(Box::new);
            let Some(backend) = shared
                .plan
                .fleet
                .next_backend(shared.plan.balance == Balance::RoundRobin)
            else {
                break;
            };
            let sent = Instant::now();
            // Boxed, like connecting below: a TLS connect is a large future, and held inline
            // it would size every worker's task (10,000 streams: 7 KB each instead of 1).
            let outcome = Box::pin(call.run(
                &backend.address,
                requests,
                number,
                &mut renderer,
                measured.then_some(&rec),
                span.as_deref_mut(),
            ))
            .await;
            taken.record(&rec, sent, &outcome, backend.id);
            taken.end_span(span.map(|s| *s), &outcome);
            if outcome.connection_failed && shared.plan.schedule.is_none() {
                // Closed model out of ports or descriptors: retrying at once would spin
                // (hundreds of thousands of failures a second) and starve the handshakes
                // that did get one. Wait a timer tick for some to free up.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            continue;
        }
        if let CallPlan::Web(call) = &shared.plan.call {
            let ctx = WebTurn {
                shared: &shared,
                clock: &clock,
                rec: &rec,
                taken: &taken,
                number,
                picked,
            };
            if !Box::pin(web_turn(call, &mut web, &mut renderer, ctx)).await {
                break;
            }
            continue;
        }
        let Some(pool) = pool.as_deref() else { break };
        if lease.as_ref().is_some_and(|l| pool.lease_is_stale(l)) {
            // The next backend in turn, or the membership changed.
            lease = None;
        }
        if lease.is_none() {
            // Boxed: see the storm's call above (a lease that connects is a large future).
            match Box::pin(pool.lease(slot, broken.take().as_ref())).await {
                Ok(l) => lease = Some(l),
                Err(e) => {
                    let failed = Outcome::failed(status::UNAVAILABLE, e.to_string());
                    taken.record(&rec, picked, &failed, e.backend);
                    if shared.plan.schedule.is_none() {
                        // Closed model: wait for the next reconnect attempt instead of spinning.
                        let next = pool.next_attempt(e.backend, slot).await;
                        tokio::time::sleep_until(next.min(Instant::now() + MAX_NAP)).await;
                    }
                    continue;
                }
            }
        }
        let Some(current) = lease.as_mut() else {
            continue;
        };
        // Boxed: a span is large and rare (1% of calls by default), and held across the
        // call it would size every worker's task.
        let span = shared
            .plan
            .trace
            .as_ref()
            .and_then(|t| t.sample())
            .map(Box::new);
        let trace = span.as_ref().and_then(|s| s.traceparent.clone());
        let sent = Instant::now();
        let outcome = match &shared.plan.call {
            CallPlan::Stream(call) => {
                let ctx = StreamContext {
                    requests,
                    number,
                    renderer: &mut renderer,
                    recorder: &rec,
                    measured,
                    origin: clock.origin,
                    stop: &shared.stop_token,
                    trace,
                };
                call.run(&mut current.send, ctx).await
            }
            // `[call] transport = "h2"`: unary calls over the pooled h2 connections (the
            // lean client has its own dispatcher).
            CallPlan::Unary(call) => {
                let body = requests.body(number, &mut renderer);
                // Boxed: this path (`transport = "h2"`) allocates per call in h2 anyway,
                // and its future inline would size every stream worker's task too.
                Box::pin(call.call_timed(&mut current.send, body, trace.as_ref()))
                    .await
                    .0
            }
            // Storms are handled before leasing; kept total so no input can make a worker
            // panic.
            CallPlan::Handshake(_) | CallPlan::Web(_) => Outcome::failed(
                status::INTERNAL,
                "a plan without pooled connections given to a pooled worker",
            ),
        };
        let backend = current.backend;
        if outcome.connection_failed {
            broken = lease.take();
        }
        taken.record(&rec, sent, &outcome, backend);
        taken.end_span(span.map(|s| *s), &outcome);
    }
}

/// What one gRPC-Web call needs from its worker.
struct WebTurn<'a> {
    shared: &'a Shared,
    clock: &'a Clock,
    rec: &'a SharedRecorder,
    taken: &'a Taken,
    number: u64,
    picked: Instant,
}

/// One gRPC-Web call on the worker's own connection (made, or made again after a failure,
/// to the next backend in turn). Returns false when the run has no backend left.
async fn web_turn(
    call: &WebCall,
    web: &mut Option<(WebSender, u32)>,
    renderer: &mut Renderer,
    t: WebTurn<'_>,
) -> bool {
    let shared = t.shared;
    if web.as_ref().is_some_and(|(s, _)| s.is_closed()) {
        *web = None;
    }
    if web.is_none() {
        let Some(backend) = shared
            .plan
            .fleet
            .next_backend(shared.plan.balance == Balance::RoundRobin)
        else {
            return false;
        };
        let endpoint = call.endpoint(backend.address.clone());
        let connected = match crate::grpc::web::connect(&endpoint, call.version).await {
            Ok(mut s) => match call.preflight(&mut s).await {
                Ok(()) => Ok(s),
                Err(refused) => Err(refused),
            },
            Err(e) => Err(Outcome::failed(status::UNAVAILABLE, e.to_string())),
        };
        match connected {
            Ok(s) => *web = Some((s, backend.id)),
            Err(failed) => {
                t.taken.record(t.rec, t.picked, &failed, backend.id);
                if shared.plan.schedule.is_none() {
                    // Closed model and the target down: wait instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                return true;
            }
        }
    }
    let Some((sender, backend)) = web.as_mut() else {
        return true;
    };
    let backend = *backend;
    let span = shared
        .plan
        .trace
        .as_ref()
        .and_then(|s| s.sample())
        .map(Box::new);
    let trace = span.as_ref().and_then(|s| s.traceparent.clone());
    let body = shared.plan.requests.body(t.number, renderer);
    let sent = Instant::now();
    let (outcome, reusable) = if call.streaming {
        let ctx = StreamContext {
            requests: &shared.plan.requests,
            number: t.number,
            renderer,
            recorder: t.rec,
            measured: t.taken.measured,
            origin: t.clock.origin,
            stop: &shared.stop_token,
            trace: trace.clone(),
        };
        ctx.sent(None);
        let (mut got, mut last) = (0u64, sent);
        let mut on_message = || {
            let now = Instant::now();
            let first = (got == 0).then(|| now - sent);
            let gap = (got > 0).then(|| now - last);
            ctx.received(gap, first);
            last = now;
            got += 1;
        };
        call.call(
            sender,
            body,
            trace.as_ref(),
            Some(&shared.stop_token),
            &mut on_message,
        )
        .await
    } else {
        call.call(sender, body, trace.as_ref(), None, &mut || {})
            .await
    };
    if !reusable || outcome.connection_failed {
        *web = None;
    }
    t.taken.record(t.rec, sent, &outcome, backend);
    t.taken.end_span(span.map(|s| *s), &outcome);
    true
}

/// When and how one request was taken, for recording its end.
struct Taken {
    /// Open model: the intended start.
    intended: Option<Instant>,
    measured: bool,
    late: bool,
}

impl Taken {
    /// Records a request that was sent to `backend` at `sent` and ended now with `outcome`.
    fn record(&self, rec: &SharedRecorder, sent: Instant, outcome: &Outcome, backend: u32) {
        if !self.measured {
            return;
        }
        let done = Instant::now();
        // The corrected latency runs from the earlier of the intended start and the send.
        let corrected = self.intended.map(|at| micros(done - at.min(sent)));
        rec.borrow_mut().record(
            done,
            &Finished {
                corrected_us: corrected,
                uncorrected_us: micros(done - sent),
                code: outcome.code,
                message: outcome.message.as_deref(),
                late: self.late,
                backend,
            },
        );
    }
}

impl Taken {
    /// Ends a sampled call's span (after recording, so tracing never delays the figures).
    fn end_span(&self, span: Option<CallSpan>, outcome: &Outcome) {
        if let Some(span) = span {
            span.end(
                outcome.code,
                outcome.message.as_deref(),
                self.measured,
                self.late,
            );
        }
    }
}

/// Sleeps until `at`, waking at interval ends to hand over recorded data and every
/// `MAX_NAP` to notice a stop. Returns false when the run is stopping.
async fn wait_until(at: Instant, rec: &SharedRecorder, shared: &Shared) -> bool {
    loop {
        let now = Instant::now();
        if now >= at {
            return true;
        }
        if shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        let mut wake = at.min(now + MAX_NAP);
        if let Some(flush) = rec.borrow().flush_deadline() {
            wake = wake.min(flush);
        }
        tokio::time::sleep_until(wake).await;
        rec.borrow_mut().flush_if_due(Instant::now());
    }
}
