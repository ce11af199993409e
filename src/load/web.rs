//! gRPC-Web workers' connections and calls. Over HTTP/2 the workers of one connection slot
//! share a connection (`[load] connections`, as native streams do); over HTTP/1.1, which
//! carries one call at a time, each worker has its own. A connection is made to the next
//! backend in turn, with the CORS preflight first when the scenario asks for one.

use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

use super::admission::Shared;
use super::stop::ThreadShared;
use super::stream::StreamContext;
use super::taken::Taken;
use crate::grpc::request::Renderer;
use crate::grpc::status;
use crate::grpc::unary::Outcome;
use crate::grpc::web::{Afterwards, WebCall, WebSender};

/// Sends of one call that the server did not process before it counts as failed.
const MAX_ATTEMPTS: u32 = 3;
use crate::record::SharedRecorder;
use crate::vocabulary::{Balance, HttpVersion};

/// A worker's connection: its backend, and the generation of the slot it came from (so a
/// failure clears the slot only when no other worker has replaced its connection since).
pub(super) struct WebHandle {
    sender: WebSender,
    backend: u32,
    generation: u64,
}

/// One generator thread's shared HTTP/2 gRPC-Web connections, one per slot. The lock of a
/// slot is held only while it has no connection, so the workers that find it empty wait for
/// one connection instead of each opening their own.
pub(super) struct WebSlots {
    slots: Vec<tokio::sync::Mutex<Option<WebHandle>>>,
    generation: Cell<u64>,
}

impl WebSlots {
    pub(super) fn new(count: usize) -> Self {
        Self {
            slots: (0..count.max(1))
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            generation: Cell::new(0),
        }
    }

    fn slot(&self, i: usize) -> &tokio::sync::Mutex<Option<WebHandle>> {
        &self.slots[i % self.slots.len()]
    }

    /// Forgets slot `i`'s connection if it is still the one of `generation`.
    async fn forget(&self, i: usize, generation: u64) {
        let mut slot = self.slot(i).lock().await;
        if slot.as_ref().is_some_and(|h| h.generation == generation) {
            *slot = None;
        }
    }
}

/// What one gRPC-Web call needs from its worker.
pub(super) struct WebTurn<'a> {
    pub shared: &'a Shared,
    pub thread: &'a ThreadShared,
    pub rec: &'a SharedRecorder,
    pub taken: &'a Taken,
    pub number: u64,
    pub picked: Instant,
    /// The thread's shared connections (HTTP/2), and this worker's slot.
    pub slots: Option<&'a WebSlots>,
    pub slot: usize,
}

/// A new connection to the next backend in turn (preflight included); `Err` is the failed
/// call to record, with the backend.
async fn open(call: &WebCall, shared: &Shared) -> Option<Result<(WebSender, u32), (Outcome, u32)>> {
    let backend = shared
        .plan
        .fleet
        .next_backend(shared.plan.balance == Balance::RoundRobin)?;
    let endpoint = call.endpoint(backend.address.clone());
    let connected = match call.connect(&endpoint).await {
        Ok(mut s) => match call.preflight(&mut s).await {
            Ok(()) => Ok((s, backend.id)),
            Err(refused) => Err((refused, backend.id)),
        },
        Err(e) => Err((
            Outcome::failed(status::UNAVAILABLE, e.to_string()),
            backend.id,
        )),
    };
    Some(connected)
}

/// The connection for the worker's next call: its own, the slot's (HTTP/2), or a new one.
/// `None` when the run has no backend left; `Some(Err)` is a failed connection to record.
async fn connection(
    call: &WebCall,
    shared: &Shared,
    slots: Option<&WebSlots>,
    slot: usize,
) -> Option<Result<WebHandle, (Outcome, u32)>> {
    let Some(slots) = slots.filter(|_| call.version == HttpVersion::Http2) else {
        return Some(
            open(call, shared)
                .await?
                .map(|(sender, backend)| WebHandle {
                    sender,
                    backend,
                    generation: 0,
                }),
        );
    };
    let mut held = slots.slot(slot).lock().await;
    if let Some(h) = held.as_ref().filter(|h| !h.sender.is_closed()) {
        if let Some(sender) = h.sender.try_clone() {
            return Some(Ok(WebHandle {
                sender,
                backend: h.backend,
                generation: h.generation,
            }));
        }
    }
    let (sender, backend) = match open(call, shared).await? {
        Ok(pair) => pair,
        Err(failed) => return Some(Err(failed)),
    };
    let generation = slots.generation.get() + 1;
    slots.generation.set(generation);
    let Some(copy) = sender.try_clone() else {
        // Not shareable (HTTP/1.1): the worker keeps it alone.
        return Some(Ok(WebHandle {
            sender,
            backend,
            generation: 0,
        }));
    };
    *held = Some(WebHandle {
        sender: copy,
        backend,
        generation,
    });
    Some(Ok(WebHandle {
        sender,
        backend,
        generation,
    }))
}

/// One gRPC-Web call. Returns false when the run has no backend left.
pub(super) async fn web_turn(
    call: &WebCall,
    requests: &crate::grpc::request::Requests,
    web: &mut Option<Box<WebHandle>>,
    renderer: &mut Renderer,
    t: WebTurn<'_>,
) -> bool {
    let shared = t.shared;
    let span = shared.plan.sampled_span();
    let trace = span.as_ref().and_then(|s| s.traceparent.clone());
    let body = requests.body(t.number, renderer);
    let per_call = call.templated().per_call(t.number, renderer, trace.clone());
    // A call the server never processed (its connection was closing) goes again on a new
    // connection, as clients do; a few times at most, then it counts as failed.
    let mut attempts = 0;
    let started = Instant::now();
    let (outcome, backend) = loop {
        attempts += 1;
        if web.as_ref().is_some_and(|h| h.sender.is_closed()) {
            *web = None;
        }
        if web.is_none() {
            match connection(call, shared, t.slots, t.slot).await {
                None => return false,
                Some(Ok(h)) => *web = Some(Box::new(h)),
                Some(Err((failed, backend))) => {
                    t.taken.record(t.rec, t.picked, &failed, backend);
                    t.taken.end_span(span.map(|s| *s), &failed);
                    if shared.plan.schedule.is_none() {
                        // Closed model and the target down: wait instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    return true;
                }
            }
        }
        let Some(handle) = web.as_mut() else {
            return true;
        };
        let (backend, generation) = (handle.backend, handle.generation);
        let sent = Instant::now();
        let (outcome, after) = if call.streaming {
            let ctx = StreamContext {
                requests,
                number: t.number,
                renderer,
                recorder: t.rec,
                measured: t.taken.measured,
                thread: t.thread,
                place: t.number,
                open: &shared.open_streams,
                trace: trace.as_ref(),
            };
            let _open = ctx.opened(sent);
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
                &mut handle.sender,
                body.clone(),
                &per_call,
                Some(&shared.stop_token),
                &mut on_message,
            )
            .await
        } else {
            call.call(
                &mut handle.sender,
                body.clone(),
                &per_call,
                None,
                &mut || {},
            )
            .await
        };
        if after != Afterwards::Reusable || outcome.connection_failed {
            *web = None;
            if let (Some(slots), true) = (t.slots, generation > 0) {
                slots.forget(t.slot, generation).await;
            }
        }
        if after != Afterwards::NotProcessed || attempts >= MAX_ATTEMPTS {
            break (outcome, backend);
        }
    };
    // From the first send: a call sent again took that long for the client.
    t.taken.record(t.rec, started, &outcome, backend);
    t.taken.end_span(span.map(|s| *s), &outcome);
    true
}
