//! Runs a plan. The load runs on generator threads, each with a single-threaded runtime that
//! owns its share of the connections and what uses them — for unary calls one dispatcher
//! (`dispatch`), for streams and handshake storms the workers (`workers`) — (thread-per-core,
//! as h2load's `-t`): a request never crosses threads, so no work-stealing and no cross-thread wake-ups on
//! the hot path. The calling runtime only aggregates, shows progress and watches for signals.
//!
//! Shutdown is two-phase: on cancellation workers stop taking new requests at once, requests
//! in flight get until their deadline to finish, then whatever is left is aborted.

use crate::grpc::unary::UnaryCall;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::admission::Shared;
use super::dispatch::{self, DispatchSetup};
use super::plan::{CallPlan, Plan, RunOutcome};
use super::stop::{StopSignal, ThreadShared};
use super::timing::Clock;
use super::workers;
use crate::discovery::Backend;
use crate::grpc::channel::{ConnectError, Endpoint, Pool};
use crate::grpc::lean::Connection;
use crate::grpc::web::WebCall;
use crate::host::process::ProcessSampler;
use crate::record::{Aggregate, Aggregator, Flush, Progress, ThreadRecorder};
use crate::vocabulary::{Balance, Load, Model};

/// How long requests in flight may take to finish after a stop when no deadline is set.
const DRAIN_WITHOUT_DEADLINE: Duration = Duration::from_secs(10);

/// Requests per second one generator thread is given before another is added. One thread
/// sustains several times this (see docs/benchmarks.md); fewer threads at a fixed rate
/// mean fewer wake-ups and context switches per request, which is most of a generator's CPU.
pub const RATE_PER_THREAD: f64 = 25_000.0;

/// Generator threads for a load: `threads` when given; otherwise enough for the open model's
/// peak rate, or one per core for the closed model (which runs as fast as it can). Never
/// more than the cores, nor than the connections (a connection is driven by one thread).
pub fn generator_threads(load: &Load) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = match (load.threads, load.model()) {
        (Some(t), _) => t as usize,
        (None, Model::Open) => {
            let peak = load
                .stages
                .iter()
                .map(|s| s.rate)
                .fold(load.rate.unwrap_or(0.0), f64::max);
            (peak / RATE_PER_THREAD).ceil() as usize
        }
        (None, Model::Closed) => cores,
    };
    wanted.min(cores).min(load.connections as usize).max(1)
}

/// One generator thread's share of the run.
struct ThreadWork {
    index: usize,
    threads: usize,
    shared: Arc<Shared>,
    endpoint: Endpoint,
    flushes: mpsc::UnboundedSender<Flush>,
    ready: mpsc::UnboundedSender<Result<(), ConnectError>>,
    go: watch::Receiver<Option<Clock>>,
    abort: CancellationToken,
}

impl ThreadWork {
    /// Connections `index, index + threads, …` and the workers that use them.
    fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = self.ready.send(Err(ConnectError::Other(
                    self.endpoint.address.to_string(),
                    format!("cannot start a generator thread's runtime: {e}"),
                )));
                return;
            }
        };
        // A panic (a bug) before the thread said it is ready must still answer, or the
        // driver would wait for it forever.
        let ready = self.ready.clone();
        let address = self.endpoint.address.to_string();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(self.drive())
        }));
        if let Err(panic) = ran {
            let _ = ready.send(Err(ConnectError::Other(
                address,
                "a generator thread panicked (a bug)".into(),
            )));
            std::panic::resume_unwind(panic);
        }
    }

    async fn drive(mut self) {
        let load = &self.shared.plan.load;
        let connections = load.connections as usize;
        let my_slots = (self.index..connections).step_by(self.threads).count();
        // Handshake storms connect anew each iteration; unary calls go over the thread's
        // own lean connections; streams share pooled h2 connections. All are opened (and
        // proven) before the load starts.
        let tls = self.endpoint.tls.is_some();
        let on_lean = self.shared.plan.on_lean_client();
        let lean = match (&self.shared.plan.call, &self.shared.plan.mix) {
            _ if !on_lean => None,
            (CallPlan::Unary(_), Some(mix)) => {
                let calls: Vec<&UnaryCall> = mix.entries.iter().map(|e| &e.call).collect();
                Some(Arc::new(crate::grpc::lean::RequestHeaders::for_mix(
                    &calls, tls,
                )))
            }
            (CallPlan::Unary(call), None) => Some(Arc::new(
                crate::grpc::lean::RequestHeaders::for_call(call, tls),
            )),
            (CallPlan::Web(call), mix) => {
                let calls: Vec<&WebCall> = match mix {
                    Some(mix) => mix.entries.iter().filter_map(|e| e.web.as_ref()).collect(),
                    None => vec![call],
                };
                // The calls' own TLS: it offers HTTP/2's ALPN protocol.
                self.endpoint.tls = call.tls.clone();
                Some(Arc::new(crate::grpc::lean::RequestHeaders::for_web(
                    &calls,
                    call.tls.is_some(),
                )))
            }
            _ => None,
        };
        let plan = &self.shared.plan;
        let mut lean_connections = Vec::new();
        if let Some(headers) = &lean {
            match open_lean(&self.endpoint, headers, plan, my_slots.max(1)).await {
                Ok(c) => lean_connections = c,
                Err(e) if headers.web.is_some() => {
                    let _ = self.ready.send(Err(suggest_http1(e)));
                    return;
                }
                Err(e) => {
                    let _ = self.ready.send(Err(e));
                    return;
                }
            }
        }
        if let (CallPlan::Web(call), None) = (&plan.call, &lean) {
            // Each worker connects on its own; one connection now proves the target is
            // there and speaks the protocol's HTTP, so a wrong address fails the run at once.
            if let Err(e) = prove_web(call, &self.endpoint).await {
                let _ = self.ready.send(Err(e));
                return;
            }
        }
        let pool =
            if lean.is_some() || matches!(plan.call, CallPlan::Handshake(_) | CallPlan::Web(_)) {
                None
            } else {
                match Pool::open(
                    self.endpoint.clone(),
                    my_slots,
                    plan.fleet.clone(),
                    plan.balance,
                )
                .await
                {
                    Ok(p) => Some(Arc::new(p)),
                    Err(e) => {
                        let _ = self.ready.send(Err(e));
                        return;
                    }
                }
            };
        let _ = self.ready.send(Ok(()));
        let clock = loop {
            if let Some(clock) = *self.go.borrow_and_update() {
                break clock;
            }
            if self.go.changed().await.is_err() {
                return; // the run was called off before it began
            }
        };
        // Fault injection for the tests of what a bug does to a run: the first generator
        // thread panics as the load starts (the others run on, the report is written).
        if self.index == 0 && std::env::var_os("LOADAGENT_FAULT_GENERATOR_PANIC").is_some() {
            panic!("LOADAGENT_FAULT_GENERATOR_PANIC: the injected fault");
        }
        // Tasks share the thread's recorder (Rc<RefCell>), so they are local to this thread.
        let recorder = std::rc::Rc::new(std::cell::RefCell::new(ThreadRecorder::new(
            clock.origin,
            self.flushes,
            crate::record::Tallies {
                by_backend: self.shared.plan.fleet.name().is_some(),
                by_method: self.shared.plan.mix.is_some(),
            },
        )));
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let mut set = JoinSet::new();
                let worker_ids: Vec<usize> = (0..load.concurrency as usize)
                    .filter(|w| (w % connections) % self.threads == self.index)
                    .collect();
                // Ids are global across a distributed run's shards (`{{worker_id}}`).
                let shard = self.shared.plan.shard;
                let global = |w: usize| usize::try_from(shard.global(w as u64)).unwrap_or(w);
                let workers = if let Some(headers) = lean {
                    let worker_ids = worker_ids.into_iter().map(global).collect();
                    set.spawn_local(dispatch::run(DispatchSetup {
                        shared: self.shared.clone(),
                        clock,
                        endpoint: self.endpoint.clone(),
                        headers,
                        connections: std::mem::take(&mut lean_connections),
                        membership: self.shared.plan.fleet.subscribe(),
                        per_backend: my_slots.max(1),
                        balance: self.shared.plan.balance,
                        worker_ids,
                        recorder: recorder.clone(),
                        threads: self.threads,
                    }));
                    Vec::new()
                } else {
                    worker_ids
                };
                // gRPC-Web over HTTP/2: the workers of a slot share its connection.
                let web_slots = matches!(self.shared.plan.call, CallPlan::Web(_))
                    .then(|| std::rc::Rc::new(super::web::WebSlots::new(my_slots)));
                // Shared: a copy in each worker would size every stream's task.
                let thread = std::rc::Rc::new(ThreadShared {
                    clock,
                    stop: StopSignal::new(self.shared.stop_token.clone()),
                });
                if matches!(self.shared.plan.call, CallPlan::Stream(_)) {
                    // Not in the join set: it ends with the run's stop, which a run that
                    // ends by its count never sends.
                    tokio::task::spawn_local(thread.clone().wake_streams_on_stop());
                }
                for id in workers {
                    let local_slot = (id % connections) / self.threads;
                    set.spawn_local(workers::worker(
                        self.shared.clone(),
                        thread.clone(),
                        pool.clone(),
                        web_slots.clone(),
                        local_slot,
                        global(id),
                        recorder.clone(),
                    ));
                }
                tokio::select! {
                    _ = join_all(&mut set) => {}
                    _ = self.abort.cancelled() => {
                        set.abort_all();
                        join_all(&mut set).await;
                    }
                }
            })
            .await;
        // The last handle: dropping it hands over the thread's final interval.
        drop(recorder);
    }
}

/// One gRPC-Web connection, made and dropped: the target is there and takes the protocol's
/// HTTP version.
async fn prove_web(
    call: &crate::grpc::web::WebCall,
    endpoint: &Endpoint,
) -> Result<(), crate::grpc::channel::ConnectError> {
    let endpoint = Endpoint {
        tls: call.tls.clone(),
        ..endpoint.clone()
    };
    if call.version == crate::vocabulary::HttpVersion::Http2 {
        // hyper's HTTP/2 handshake returns once our preface is written, so an HTTP/1.1-only
        // server's answer came as the first call's failure — and when the server closed
        // before answering, as a broken pipe, a run that failed its thresholds rather than
        // one told what to change. The h2 proof waits for the server's PING answer.
        return crate::grpc::channel::connect(&endpoint)
            .await
            .map(drop)
            .map_err(suggest_http1);
    }
    crate::grpc::web::connect(&endpoint, call.version)
        .await
        .map(drop)
}

/// gRPC-Web over HTTP/2 at a server that does not speak HTTP/2: say what to change.
fn suggest_http1(e: ConnectError) -> ConnectError {
    match e.first_contact() {
        ConnectError::Handshake(addr, why) => ConnectError::Handshake(
            addr,
            format!("{why}: it may speak HTTP/1.1 only; set `http_version = \"1.1\"`"),
        ),
        other => other,
    }
}

/// This thread's lean connections to each backend of the fleet now: `per_backend` each
/// (`pick_first`: to the first backend that connects). A backend that cannot be connected to
/// gets none (its slots retry during the run); the run fails only when no backend can.
async fn open_lean(
    endpoint: &Endpoint,
    headers: &Arc<crate::grpc::lean::RequestHeaders>,
    plan: &Plan,
    per_backend: usize,
) -> Result<Vec<(Arc<Backend>, Vec<Connection>)>, ConnectError> {
    let membership = plan.fleet.current();
    let mut out = Vec::with_capacity(membership.backends.len());
    let mut first_error = None;
    let mut up = false;
    for backend in &membership.backends {
        let endpoint = Endpoint {
            address: backend.address.clone(),
            ..endpoint.clone()
        };
        let mut conns = Vec::with_capacity(per_backend);
        if !(up && plan.balance == Balance::PickFirst) {
            for _ in 0..per_backend {
                match Connection::open(&endpoint, headers.clone()).await {
                    Ok(c) => {
                        backend.connections.fetch_add(1, Ordering::Relaxed);
                        conns.push(c);
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                        break;
                    }
                }
            }
        }
        up |= !conns.is_empty();
        out.push((backend.clone(), conns));
    }
    match first_error {
        Some(e) if !up => Err(e),
        _ => Ok(out),
    }
}

/// Drives the plan until it ends or `cancel` fires. Fails only if the target cannot be
/// connected to before the load starts.
pub async fn drive(
    plan: Plan,
    endpoint: Endpoint,
    cancel: CancellationToken,
    progress: watch::Sender<Progress>,
    check: impl FnMut(&Aggregate, Duration) + Send + 'static,
) -> Result<RunOutcome, ConnectError> {
    let threads = generator_threads(&plan.load);
    let warmup = plan.load.warmup;
    let closed_duration = if plan.schedule.is_none() {
        plan.load.duration
    } else {
        None
    };
    let measured_duration = plan.load.measured_duration();
    let start_at = plan.start_at;
    let deadline = match &plan.mix {
        Some(mix) => mix.longest_timeout(),
        None => plan.call.timeout(),
    };
    let drain = deadline.unwrap_or(DRAIN_WITHOUT_DEADLINE) + Duration::from_secs(1);
    // One throttling bucket for the run (gRPC keeps one per channel): the first policy's.
    let throttling = plan
        .unary_calls()
        .iter()
        .find_map(|c| c.retry().and_then(|r| r.throttling));
    let shared = Arc::new(Shared {
        plan,
        next: AtomicU64::new(0),
        sequence: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        stop_token: CancellationToken::new(),
        open_streams: AtomicU64::new(0),
        connections: Default::default(),
        retries: super::retry::RetryStats::new(throttling),
    });

    let (flush_tx, flush_rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (go_tx, go_rx) = watch::channel(None);
    let abort = CancellationToken::new();
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let work = ThreadWork {
            index,
            threads,
            shared: shared.clone(),
            endpoint: endpoint.clone(),
            flushes: flush_tx.clone(),
            ready: ready_tx.clone(),
            go: go_rx.clone(),
            abort: abort.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("generator-{index}"))
            .spawn(move || work.run());
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                drop(go_tx);
                join_threads(handles).await;
                return Err(ConnectError::Other(
                    endpoint.address.to_string(),
                    format!("cannot start a generator thread: {e}"),
                ));
            }
        }
    }
    drop((flush_tx, ready_tx, go_rx));

    // Every thread connects first, so a target that is down fails the run before any load.
    for _ in 0..threads {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                drop(go_tx);
                join_threads(handles).await;
                return Err(e.first_contact());
            }
            None => break,
        }
    }
    if let Some(at) = start_at {
        wait_for(at, &cancel).await;
    }
    let start = Instant::now();
    let zero_at = SystemTime::now();
    let origin = start + warmup;
    let clock = Clock {
        start,
        origin,
        end: closed_duration.map(|d| origin + d),
        measured_end: measured_duration.map(|d| origin + d),
    };
    let _ = go_tx.send(Some(clock));
    let resolving = CancellationToken::new();
    let resolver = tokio::spawn(shared.plan.fleet.clone().keep_resolving(resolving.clone()));
    let stop_resolving = resolving.drop_guard();
    let aggregator = tokio::spawn(Aggregator::new(origin).run(flush_rx, progress, check));

    // Usage is measured over the measured part only: sampled when the warm-up ends.
    let mut sampler = None;
    tokio::select! {
        _ = tokio::time::sleep_until(origin) => sampler = Some(ProcessSampler::start()),
        _ = cancel.cancelled() => {}
    }
    let streams_open_at_start = shared.open_streams.load(Ordering::Relaxed);

    // A time-bounded run ends at its scheduled end: workers stop, streams end gracefully,
    // and requests still in flight get until their deadline (a target that stopped
    // answering is abandoned rather than waited for).
    let natural_end = clock.measured_end;
    let at_end = async move {
        match natural_end {
            Some(end) => tokio::time::sleep_until(end).await,
            None => std::future::pending().await,
        }
    };
    // A generator thread that panics (a bug) is counted, not re-raised: the others finish
    // and the report of what ran is still written (the panic hook makes the exit code 70).
    let mut finished = tokio::task::spawn_blocking(move || {
        handles
            .into_iter()
            .map(|h| u64::from(h.join().is_err()))
            .sum::<u64>()
    });
    let mut generator_panics = 0;
    let ended = tokio::select! {
        r = &mut finished => { generator_panics = r.unwrap_or(1); End::Done }
        _ = cancel.cancelled() => End::Cancelled,
        _ = at_end => End::Scheduled,
    };
    let streams_open_at_end = shared.open_streams.load(Ordering::Relaxed);
    shared.stop.store(true, Ordering::Relaxed);
    shared.stop_token.cancel();
    if ended != End::Done {
        generator_panics = match tokio::time::timeout(drain, &mut finished).await {
            Ok(r) => r.unwrap_or(1),
            Err(_) => {
                abort.cancel();
                finished.await.unwrap_or(1)
            }
        };
    }
    let finished_at = Instant::now();
    let process = sampler.map(ProcessSampler::finish).unwrap_or_default();
    let aggregate = match aggregator.await {
        Ok(a) => a,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let measured = finished_at.saturating_duration_since(origin);
    // Re-resolution ends before its figures are read: one still waiting is counted failed.
    drop(stop_resolving);
    let _ = resolver.await;
    let connections = shared
        .plan
        .on_lean_client()
        .then(|| shared.connections.report(aggregate.totals.requests()));
    let retries = shared
        .plan
        .unary_calls()
        .iter()
        .any(|c| c.retry().is_some())
        .then(|| shared.retries.report());
    Ok(RunOutcome {
        retries,
        aggregate,
        started_at: zero_at + warmup,
        zero_at,
        measured,
        interrupted: ended == End::Cancelled,
        process,
        threads,
        generator_panics,
        connections,
        backends: shared.plan.fleet.history(),
        resolution: shared.plan.fleet.name().map(|_| shared.plan.fleet.stats()),
        streams_open_at_start,
        streams_open_at_end,
    })
}

/// Waits until the wall clock reads `at` (`--start-at`): a timer to within a few ms, then a
/// short spin, so shards on synchronised clocks start within a millisecond of each other.
async fn wait_for(at: SystemTime, cancel: &CancellationToken) {
    const SPIN: Duration = Duration::from_millis(3);
    if let Ok(wait) = at.duration_since(SystemTime::now()) {
        if wait > SPIN {
            tokio::select! {
                _ = tokio::time::sleep(wait - SPIN) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }
    while SystemTime::now() < at && !cancel.is_cancelled() {
        std::hint::spin_loop();
    }
}

async fn join_threads(handles: Vec<std::thread::JoinHandle<()>>) {
    let _ = tokio::task::spawn_blocking(move || {
        for h in handles {
            let _ = h.join();
        }
    })
    .await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Every worker finished by itself.
    Done,
    /// A signal (or a failed `abort_on_fail` threshold).
    Cancelled,
    /// The scheduled end of a time-bounded run.
    Scheduled,
}

async fn join_all(set: &mut JoinSet<()>) {
    while let Some(res) = set.join_next().await {
        if let Err(e) = res {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}
