//! Supervision: one prober task per target, or per backend of a DNS-named target — the
//! name followed (`follow`), probers started for backends that joined and stopped (their
//! series and results forgotten) for those that left; a prober that panics is counted and
//! started again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::super::config::{ProbeAddress, ProbeMode, ProbeTarget};
use super::{now_unix, ProbeContext, ProbeResult, Prober};
use crate::discovery::Fleet;
use crate::tls::ClientTls;
use crate::vocabulary::{FleetName, HostPort};

/// Starts probing `target`: one supervised prober for an address, or a supervisor that
/// follows a DNS name's backends with one prober each.
pub fn spawn(
    target: ProbeTarget,
    tls: Option<ClientTls>,
    ctx: ProbeContext,
) -> tokio::task::JoinHandle<()> {
    let first = Arc::new(AtomicBool::new(false));
    match target.address.clone() {
        ProbeAddress::Fixed(address) => {
            ctx.metrics.probes.set_backends(&target.name, 1);
            let backend = address.to_string();
            let stop = ctx.stop.clone();
            let shared = PerTarget {
                first,
                log: LogLimit::default(),
            };
            spawn_instance(ProberSeed {
                target: Arc::new(target),
                address,
                backend,
                stop,
                tls,
                ctx,
                shared,
            })
        }
        ProbeAddress::Fleet(name) => tokio::spawn(follow(target, name, tls, ctx, first)),
    }
}

/// One prober for `address` (labelled `backend`), supervised: a prober that panics (a bug)
/// is counted (`loadagent_errors_total{component="probe",kind="panic"}`), logged and started
/// again a second later, so one target's bug never silences its probes for good.
fn spawn_instance(seed: ProberSeed) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let ProberSeed {
            target,
            backend,
            stop,
            ctx,
            ..
        } = &seed;
        loop {
            let prober = seed.prober();
            if prober.checks_health() {
                prober.set_status(None);
            }
            let task = match prober.target.probe.mode {
                ProbeMode::Check => tokio::spawn(prober.run_check()),
                ProbeMode::Watch => tokio::spawn(prober.run_watch()),
            };
            match task.await {
                Err(e) if e.is_panic() && !stop.is_cancelled() => {
                    ctx.metrics
                        .errors_total
                        .with_label_values(&["probe", "panic"])
                        .inc();
                    tracing::error!(target = %target.name, backend = %backend, "prober panicked (a bug: please report it); restarting it");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => return,
                    }
                }
                _ => return,
            }
        }
    })
}

/// What a prober is made of: its supervisor keeps it to make the prober again after a panic.
struct ProberSeed {
    target: Arc<ProbeTarget>,
    address: HostPort,
    backend: String,
    stop: CancellationToken,
    tls: Option<ClientTls>,
    ctx: ProbeContext,
    shared: PerTarget,
}

impl ProberSeed {
    /// A new prober, on the heap: its task then holds a pointer between probes, not the
    /// prober (2 KB) laid out in the task's state — once more in the supervising task's —
    /// which was most of an idle target's memory (issue 28: 8 KB of task state per target).
    fn prober(&self) -> Box<Prober> {
        Box::new(Prober {
            target: self.target.clone(),
            address: self.address.clone(),
            backend: self.backend.clone(),
            first: self.shared.first.clone(),
            stop: self.stop.clone(),
            tls: self.tls.clone(),
            ctx: self.ctx.clone(),
            connection: None,
            watch_channel: None,
            check: None,
            method_headers: None,
            log: self.shared.log.clone(),
            span: None,
            method: None,
            renderer: crate::grpc::request::Renderer::new(0),
            calls: 0,
            web: None,
        })
    }
}

/// At most one log line a minute for one target, whichever of its backends' probers (or
/// its resolutions) has something to say; the lines held back are counted in the next.
#[derive(Clone, Default)]
pub(crate) struct LogLimit(Arc<std::sync::Mutex<(Option<Instant>, u64)>>);

impl LogLimit {
    /// `Some` when a line may be logged now: the text to add about the lines held back
    /// since the last one (empty when none were).
    pub(crate) fn allow(&self) -> Option<String> {
        let mut state = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (last, held) = &mut *state;
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            *held += 1;
            return None;
        }
        *last = Some(Instant::now());
        let since = match std::mem::take(held) {
            0 => String::new(),
            n => format!("; {n} held back since the last"),
        };
        Some(since)
    }
}

/// What every backend's prober of one target shares.
#[derive(Clone)]
struct PerTarget {
    /// Set by the target's first published result (`/readyz`).
    first: Arc<AtomicBool>,
    log: LogLimit,
}

/// A running prober of one backend.
struct Instance {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    address: HostPort,
}

/// Follows a DNS-named target: resolves it now and every `resolve_every`, probes each
/// backend, and forgets the backends that left (their probers stop, their series and results
/// go). A resolution that fails or finds nothing is counted and keeps the last backends.
async fn follow(
    target: ProbeTarget,
    name: FleetName,
    tls: Option<ClientTls>,
    ctx: ProbeContext,
    first: Arc<AtomicBool>,
) {
    let m = ctx.metrics.clone();
    let label = target.name.clone();
    // One copy of the target for all its backends' probers.
    let shared_target = Arc::new(target.clone());
    m.probes.set_backends(&label, 0);
    let fleet = match Fleet::unresolved(&name, target.resolve_every, target.probe.timeout) {
        Ok(f) => f,
        Err(e) => {
            // No resolver at all (the system's configuration cannot be read): nothing to
            // probe until the config changes.
            resolve_failed(&ctx, &target, &first, &e.to_string());
            ctx.stop.cancelled().await;
            return;
        }
    };
    let mut running: HashMap<String, Instance> = HashMap::new();
    let log = LogLimit::default();
    loop {
        let refreshed = tokio::select! {
            r = fleet.refresh() => r,
            _ = ctx.stop.cancelled() => break,
        };
        match refreshed {
            Ok(left_out) => {
                m.probes.count_resolution(&label, true);
                if !left_out.is_empty() {
                    if let Some(since) = log.allow() {
                        tracing::warn!(target = %label, "resolving {name}: left out {} (the other records are probed; logged at most once a minute per target{since})", crate::discovery::resolver::summarize(&left_out));
                    }
                }
            }
            Err(e) => {
                m.probes.count_resolution(&label, false);
                m.errors_total
                    .with_label_values(&["probe", "resolve"])
                    .inc();
                if let Some(since) = log.allow() {
                    tracing::warn!(target = %label, "{e}; probing the last known backends (logged at most once a minute per target{since})");
                }
                if running.is_empty() {
                    resolve_failed(&ctx, &target, &first, &e.to_string());
                }
            }
        }
        let now = fleet.current();
        m.probes.set_backends(&label, now.backends.len());
        let wanted: HashMap<String, HostPort> = now
            .backends
            .iter()
            .map(|b| (b.address.to_string(), b.address.clone()))
            .collect();
        let gone: Vec<String> = running
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for backend in gone {
            if let Some(i) = running.remove(&backend) {
                i.stop.cancel();
                let _ = i.task.await;
                ctx.connections.forget(&i.address);
                ctx.watch_channels.forget(&i.address);
            }
            m.probes.remove_backend(&label, &backend);
            if let Ok(mut r) = ctx.results.lock() {
                r.remove(&(label.clone(), backend));
            }
        }
        if !running.is_empty() || !wanted.is_empty() {
            // A result that said the name did not resolve is replaced by the backends'.
            if let Ok(mut r) = ctx.results.lock() {
                r.remove(&(label.clone(), String::new()));
            }
        }
        for (backend, address) in wanted {
            if running.contains_key(&backend) {
                continue;
            }
            let stop = ctx.stop.child_token();
            let task = spawn_instance(ProberSeed {
                target: shared_target.clone(),
                address: address.clone(),
                backend: backend.clone(),
                stop: stop.clone(),
                tls: tls.clone(),
                ctx: ctx.clone(),
                shared: PerTarget {
                    first: first.clone(),
                    log: log.clone(),
                },
            });
            running.insert(
                backend,
                Instance {
                    stop,
                    task,
                    address,
                },
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(target.resolve_every) => {}
            _ = ctx.stop.cancelled() => break,
        }
    }
    for (_, i) in running {
        i.stop.cancel();
        let _ = i.task.await;
    }
}

/// A name that gave no backend: listed in `/api/v1/targets` with the reason (backend ""),
/// and counted as probed for `/readyz` (there is nothing to wait for).
fn resolve_failed(ctx: &ProbeContext, target: &ProbeTarget, first: &AtomicBool, why: &str) {
    let result = ProbeResult {
        name: target.name.clone(),
        address: target.address.to_string(),
        backend: String::new(),
        mode: if target.probe.mode == ProbeMode::Watch {
            "watch"
        } else {
            "check"
        },
        success: false,
        status: None,
        grpc_status_code: None,
        duration_seconds: 0.0,
        error: Some(why.to_string()),
        checks: Vec::new(),
        at: now_unix(),
    };
    if let Ok(mut r) = ctx.results.lock() {
        r.insert((target.name.clone(), String::new()), result);
    }
    if !first.swap(true, Ordering::Relaxed) {
        ctx.first_round.fetch_add(1, Ordering::Relaxed);
    }
}
