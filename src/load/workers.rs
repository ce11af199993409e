//! The workers of streams and handshake storms (and of unary calls over pooled h2
//! connections, `[call] transport = "h2"`): take the next request (a whole stream, a storm's
//! connection, a call), wait for its time (open model), run it, record. Unary calls over
//! the lean client go through `dispatch`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::admission::Shared;
use super::plan::CallPlan;
use super::stop::ThreadShared;
use super::taken::Taken;
use super::timing::{HALF_TICK, MAX_NAP};
use super::web::{web_turn, WebHandle, WebSlots, WebTurn};
use crate::grpc::channel::{Lease, Pool};
use crate::grpc::request::Renderer;
use crate::grpc::status;
use crate::grpc::unary::Outcome;
use crate::load::stream::StreamContext;
use crate::record::SharedRecorder;
use crate::vocabulary::Balance;

/// One worker: takes requests (streams, storm connections, h2 calls) and runs them until the
/// run stops. An async block, not an async fn: an async fn keeps its arguments twice in its
/// state (as taken, and as moved into its body), and a stream worker's state is kept for
/// every open stream (`-Zprint-type-sizes`: 1,960 → 1,792 bytes).
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice in its state, kept for every open stream"
)]
pub(super) fn worker(
    shared: Arc<Shared>,
    thread: std::rc::Rc<ThreadShared>,
    pool: Option<Arc<Pool>>,
    web_slots: Option<std::rc::Rc<WebSlots>>,
    slot: usize,
    worker_id: usize,
    rec: SharedRecorder,
) -> impl std::future::Future<Output = ()> {
    async move {
        let mut renderer = Renderer::new(worker_id);
        let mut lease: Option<Lease> = match &pool {
            Some(p) => Box::pin(p.lease(slot)).await.ok(),
            None => None,
        };
        // gRPC-Web: the connection this worker calls on.
        // Boxed (made once per connection): inline it would size every worker's task,
        // every stream's included.
        let mut web: Option<Box<WebHandle>> = None;
        if let Some(at) = first_stream_at(&shared, &thread.clock, worker_id) {
            if !wait_until(at, &rec, &shared).await {
                return;
            }
        }
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let picked = Instant::now();
            if let Some(at) = shared.not_before(&thread.clock, picked) {
                if !wait_until(at, &rec, &shared).await {
                    break;
                }
                continue;
            }
            let Some(ticket) = shared.take(&thread.clock, picked) else {
                break;
            };
            // The intended start stays in `taken` only: a copy beside it would take room in
            // every open stream's state.
            let (measured, number) = (ticket.measured, ticket.number);
            let taken = Taken {
                intended: ticket.intended,
                measured,
                late: ticket.late,
                method: shared
                    .plan
                    .mix
                    .as_ref()
                    .map_or(0, |m| m.pick(number) as u16),
            };
            if let Some(at) = taken.intended {
                if !wait_until(at.checked_sub(HALF_TICK).unwrap_or(at), &rec, &shared).await {
                    break;
                }
            }

            // A handshake storm makes its own connection each iteration: no pool.
            if let CallPlan::Handshake(call) = &shared.plan.call {
                let mut span = shared.plan.sampled_span();
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
                    &shared.plan.requests,
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
                // A mix: the entry's own gRPC-Web call and requests.
                let (call, requests) = match &shared.plan.mix {
                    Some(mix) => {
                        let e = &mix.entries[usize::from(taken.method)];
                        (e.web.as_ref().unwrap_or(call), &e.requests)
                    }
                    None => (call, &shared.plan.requests),
                };
                let ctx = WebTurn {
                    shared: &shared,
                    thread: &thread,
                    rec: &rec,
                    taken: &taken,
                    number,
                    picked,
                    slots: web_slots.as_deref(),
                    slot,
                };
                if !Box::pin(web_turn(call, requests, &mut web, &mut renderer, ctx)).await {
                    break;
                }
                continue;
            }
            // Used only up to the call (the failed lease below is forgotten through the
            // upvar): a local live across it would take room in every open stream's state.
            let Some(connections) = pool.as_deref() else {
                break;
            };
            if lease
                .as_ref()
                .is_some_and(|l| connections.lease_is_stale(l))
            {
                // The next backend in turn, or the membership changed.
                lease = None;
            }
            if lease.is_none() {
                // Boxed: see the storm's call above (a lease that connects is a large future).
                let failed = match Box::pin(connections.lease(slot)).await {
                    Ok(l) => {
                        lease = Some(l);
                        None
                    }
                    Err(e) => {
                        let failed = Outcome::failed(status::UNAVAILABLE, e.to_string());
                        taken.record(&rec, picked, &failed, e.backend);
                        Some(e.backend)
                    }
                };
                // The wait after a failure holds only the backend: the error and its outcome
                // held across it would take room in the state kept for every open stream.
                if let Some(backend) = failed {
                    if shared.plan.schedule.is_none() {
                        // Closed model: wait for the next reconnect attempt instead of spinning.
                        let next = connections.next_attempt(backend, slot).await;
                        tokio::time::sleep_until(next.min(Instant::now() + MAX_NAP)).await;
                    }
                    continue;
                }
            }
            let Some(current) = lease.as_mut() else {
                continue;
            };
            let span = shared.plan.sampled_span();
            let trace = span.as_ref().and_then(|s| s.traceparent.as_ref());
            let sent = Instant::now();
            let outcome = match &shared.plan.call {
                CallPlan::Stream(call) => {
                    let mut ctx = StreamContext {
                        requests: &shared.plan.requests,
                        number,
                        renderer: &mut renderer,
                        recorder: &rec,
                        measured,
                        thread: &thread,
                        // Closed-model streams are not numbered (all 0): the worker, one
                        // stream at a time, is the stream's place among those open together.
                        place: if taken.intended.is_some() {
                            number
                        } else {
                            worker_id as u64
                        },
                        open: &shared.open_streams,
                        trace,
                    };
                    call.run(&mut current.send, &mut ctx).await
                }
                // `[call] transport = "h2"`: unary calls over the pooled h2 connections (the
                // lean client has its own dispatcher).
                CallPlan::Unary(call) => {
                    // A mix: the entry's own call and requests.
                    let (call, requests) = match &shared.plan.mix {
                        Some(mix) => {
                            let e = &mix.entries[usize::from(taken.method)];
                            (&e.call, &e.requests)
                        }
                        None => (call, &shared.plan.requests),
                    };
                    let body = requests.body(number, &mut renderer);
                    let per_call = call
                        .templated()
                        .per_call(number, &mut renderer, trace.cloned());
                    // Boxed: this path (`transport = "h2"`) allocates per call in h2 anyway,
                    // and its future inline would size every stream worker's task too.
                    Box::pin(call.call_timed(&mut current.send, body, &per_call))
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
            // Read from the lease again (the call only borrowed it), not copied before the
            // call: a local held across it takes room in every open stream's state.
            let Some(backend) = lease.as_ref().map(|l| l.backend) else {
                continue;
            };
            if outcome.connection_failed {
                // Its slot reconnects at the next lease (once per generation, whichever
                // worker sees the failure first). Not kept until then: a lease held across
                // the next stream would take room in its state.
                if let (Some(broken), Some(pool)) = (lease.take(), pool.as_deref()) {
                    pool.forget(&broken, slot);
                }
            }
            taken.record(&rec, sent, &outcome, backend);
            taken.end_span(span.map(|s| *s), &outcome);
        }
    }
}

/// Closed-model streams opened in one go open this many a millisecond instead.
const STREAM_OPENINGS_PER_MS: u64 = 50;

/// When a closed-model stream worker opens its first stream: the run's streams open
/// `STREAM_OPENINGS_PER_MS` a millisecond in the order of their workers (10,000 streams over
/// 200 ms), not all in the same millisecond. Thousands opened at once have the server's
/// first answers arrive together, and h2 buffers them until each stream's task reads its
/// own: buffers it keeps for the rest of the run (10,000 streams: 0.7–1.5 MiB more,
/// docs/benchmarks.md).
/// `None` for anything else (the open model's schedule already spreads them).
fn first_stream_at(
    shared: &Shared,
    clock: &super::timing::Clock,
    worker_id: usize,
) -> Option<Instant> {
    let closed_streams =
        matches!(shared.plan.call, CallPlan::Stream(_)) && shared.plan.schedule.is_none();
    let offset = opening_offset(worker_id, shared.plan.shard.count);
    // An offset past the end of time (no worker id makes one) opens at once.
    closed_streams.then(|| clock.start.checked_add(offset).unwrap_or(clock.start))
}

/// How long after the start worker `worker_id` (numbered across a distributed run's
/// `shards`) opens its first stream: this process's own workers, numbered from 0, open
/// `STREAM_OPENINGS_PER_MS` a millisecond.
fn opening_offset(worker_id: usize, shards: u32) -> Duration {
    let local = worker_id as u64 / u64::from(shards.max(1));
    Duration::from_micros(local.saturating_mul(1_000) / STREAM_OPENINGS_PER_MS)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future a function returns, without calling it.
    fn future_size<A, B, C, D, E, G, H, F>(_: fn(A, B, C, D, E, G, H) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn closed_model_streams_open_fifty_a_millisecond_per_process() {
        // The first 50 open in the first millisecond, the next 50 in the second…
        assert_eq!(opening_offset(0, 1), Duration::ZERO);
        assert!(opening_offset(49, 1) < Duration::from_millis(1));
        assert_eq!(opening_offset(50, 1), Duration::from_millis(1));
        assert_eq!(opening_offset(10_000, 1), Duration::from_millis(200));
        // A shard's workers are numbered n·count + index: each process spreads its own.
        assert_eq!(opening_offset(2 * 50 + 1, 2), Duration::from_millis(1));
        assert_eq!(opening_offset(3, 4), Duration::ZERO);
        assert_eq!(
            opening_offset(usize::MAX, 1),
            Duration::from_micros(u64::MAX / 50)
        );
    }

    /// A worker's state is kept for every open stream (tokio allocates it with a header, in
    /// 128-byte steps): 10,000 streams cost 1.28 MB for each step. This fails when a change
    /// makes it larger; lower the budget when one makes it smaller.
    #[test]
    fn a_stream_workers_state_stays_within_its_budget() {
        // 1,048 bytes in debug and release builds alike (`-Zprint-type-sizes`): tokio's task
        // cell adds 104 bytes and rounds up to 128, so this is a 1,152-byte cell, and one
        // byte more a 1,280-byte one (1,176 bytes was a 1,280-byte cell, 1,384 a 1,536).
        let budget = 1_048;
        let size = future_size(worker);
        assert!(
            size <= budget,
            "a stream worker's state is {size} bytes, over its budget of {budget}"
        );
    }
}
