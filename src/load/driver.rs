//! Runs a plan: spawns the workers, the aggregator and the stop watcher, and collects the
//! result. Shutdown is two-phase: on cancellation workers stop taking new requests at once,
//! requests in flight get until their deadline to finish, then whatever is left is aborted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::schedule::Schedule;
use super::unary;
use crate::grpc::channel::Pool;
use crate::grpc::unary::UnaryCall;
use crate::record::{Aggregate, Aggregator, Progress, WorkerRecorder};
use crate::report::process::{ProcessSampler, ProcessUsage};
use crate::scenario::Load;

/// Everything the workers need, fixed before the load starts.
pub struct Plan {
    pub load: Load,
    pub call: UnaryCall,
    /// `None` for the closed model.
    pub schedule: Option<Schedule>,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub aggregate: Aggregate,
    /// Wall-clock time at which the measured part began.
    pub started_at: SystemTime,
    /// Length of the measured part (to the last completion, or to the interruption).
    pub measured: Duration,
    pub interrupted: bool,
    pub process: ProcessUsage,
}

/// State shared by all workers of one run. Only atomics are written on the hot path.
pub(super) struct Shared {
    pub plan: Plan,
    pub pool: Arc<Pool>,
    /// When the run began (time 0 of the schedule, start of the warm-up).
    pub start: Instant,
    /// When the measured part begins (start + warm-up).
    pub origin: Instant,
    /// Closed model: when to stop sending.
    pub end: Option<Instant>,
    /// The next request number. Relaxed is enough: it only has to hand out each number
    /// once, which fetch_add guarantees at any ordering; no other memory hangs on it.
    pub next: AtomicU64,
    /// Set when the run is being stopped. Relaxed: it carries no data, and a worker that
    /// sees it one request late sends one more request, which the drain then waits for.
    pub stop: AtomicBool,
}

/// How long requests in flight may take to finish after a stop when no deadline is set.
const DRAIN_WITHOUT_DEADLINE: Duration = Duration::from_secs(10);

/// Drives the plan until it ends or `cancel` fires.
pub async fn drive(
    plan: Plan,
    pool: Arc<Pool>,
    cancel: CancellationToken,
    progress: watch::Sender<Progress>,
) -> RunOutcome {
    let start = Instant::now();
    let origin = start + plan.load.warmup;
    let end = match plan.schedule {
        Some(_) => None,
        None => plan.load.duration.map(|d| origin + d),
    };
    let workers = plan.load.concurrency as usize;
    let drain = plan.call_timeout().unwrap_or(DRAIN_WITHOUT_DEADLINE) + Duration::from_secs(1);
    let shared = Arc::new(Shared {
        plan,
        pool,
        start,
        origin,
        end,
        next: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });

    let (tx, rx) = mpsc::unbounded_channel();
    let aggregator = tokio::spawn(Aggregator::new(origin).run(rx, progress));
    let mut set = JoinSet::new();
    for id in 0..workers {
        let recorder = WorkerRecorder::new(origin, tx.clone());
        set.spawn(unary::worker(shared.clone(), id, recorder));
    }
    drop(tx);

    // Usage is measured over the measured part only: sampled when the warm-up ends.
    let mut sampler = None;
    tokio::select! {
        _ = tokio::time::sleep_until(origin) => sampler = Some(ProcessSampler::start()),
        _ = cancel.cancelled() => {}
    }

    // A time-bounded run ends at its scheduled end; requests still in flight a deadline
    // later (a target that stopped answering) are abandoned rather than waited for.
    let natural_end = shared.plan.load.measured_duration().map(|d| origin + d);
    let overran = async move {
        match natural_end {
            Some(end) => tokio::time::sleep_until(end + drain).await,
            None => std::future::pending().await,
        }
    };
    let ended = tokio::select! {
        _ = join_all(&mut set) => End::Done,
        _ = cancel.cancelled() => End::Cancelled,
        _ = overran => End::Overran,
    };
    shared.stop.store(true, Ordering::Relaxed);
    match ended {
        End::Done => {}
        End::Cancelled => {
            if tokio::time::timeout(drain, join_all(&mut set))
                .await
                .is_err()
            {
                set.abort_all();
                join_all(&mut set).await;
            }
        }
        End::Overran => {
            set.abort_all();
            join_all(&mut set).await;
        }
    }
    let interrupted = ended == End::Cancelled;
    let finished = Instant::now();
    let process = sampler.map(ProcessSampler::finish).unwrap_or_default();
    let aggregate = match aggregator.await {
        Ok(a) => a,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let measured = finished.saturating_duration_since(origin);
    RunOutcome {
        aggregate,
        started_at: SystemTime::now() - measured,
        measured,
        interrupted,
        process,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Done,
    Cancelled,
    Overran,
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

impl Plan {
    fn call_timeout(&self) -> Option<Duration> {
        self.call.timeout()
    }
}
