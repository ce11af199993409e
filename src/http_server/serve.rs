//! The agent's HTTP listener: hyper's HTTP/1.1 server under rules that keep `/metrics`
//! answering whatever the network does.
//!
//! - A connection that has not sent a whole request head within [`HEADER_READ_TIMEOUT`] is
//!   closed; since hyper 1.6 that timer also runs while a kept-alive connection waits for
//!   its next request, so it is the idle timeout too.
//! - A TLS handshake gets [`TLS_HANDSHAKE_TIMEOUT`]; no connection lives past
//!   [`MAX_CONNECTION_AGE`] (a client that never reads its response cannot hold one).
//! - At most [`connection_cap`] connections are open. A new one beyond that evicts the
//!   oldest, so silent sockets cannot starve a scrape: an attacker must open connections
//!   faster than a scrape takes, not merely hold them.
//!
//! What is shed is counted in `loadagent_errors_total{component="http"}`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::IntCounterVec;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::web_config::WebConfig;

/// How long a connection may take to send a whole request head (and, kept alive, to start
/// the next).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The oldest a connection may grow, whatever it is doing.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);
/// How long open connections get to finish when the agent stops.
const DRAIN: Duration = Duration::from_secs(5);

/// The most connections served at once: 256, or a quarter of the open-file limit when
/// that is lower, so that probes and scheduled runs always have descriptors left.
pub fn connection_cap() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    (soft / 4).clamp(8, 256) as usize
}

/// Open connections by age (ids increase), each with the token that closes it.
#[derive(Default)]
struct Open {
    next_id: u64,
    by_age: BTreeMap<u64, CancellationToken>,
}

#[derive(Debug)]
/// One HTTP server: its routes, web config, where it counts what it sheds, and its cap.
pub struct Server {
    /// The endpoints.
    pub router: Router,
    /// TLS and basic auth (`--web.config.file`).
    pub web: Arc<WebConfig>,
    /// Counts what is shed: `loadagent_errors_total{component="http",kind}`.
    pub errors: IntCounterVec,
    /// The most connections open at once (`connection_cap`).
    pub cap: usize,
    /// When shedding was last logged: at most once a minute, with how many since.
    pub shed_log: Mutex<(Option<std::time::Instant>, u64)>,
}

impl Server {
    /// A server of `router`, with the cap this machine's descriptor limit allows.
    pub fn new(router: Router, web: Arc<WebConfig>, errors: IntCounterVec) -> Self {
        Self {
            router,
            web,
            errors,
            cap: connection_cap(),
            shed_log: Mutex::new((None, 0)),
        }
    }

    fn count(&self, kind: &str) {
        self.errors.with_label_values(&["http", kind]).inc();
    }

    fn log_shed(&self) {
        let mut log = self.shed_log.lock().unwrap_or_else(|p| p.into_inner());
        log.1 += 1;
        if log.0.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            tracing::warn!(
                shed = log.1,
                cap = self.cap,
                "agent HTTP: at the connection cap; the oldest connections were closed (idle or slow clients, or a flood)"
            );
            *log = (Some(std::time::Instant::now()), 0);
        }
    }

    /// Accepts and serves until `stop` fires, then gives open connections [`DRAIN`].
    pub async fn run(self, listener: TcpListener, stop: CancellationToken) {
        let me = Arc::new(self);
        let open: Arc<Mutex<Open>> = Default::default();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.cancelled() => break,
            };
            let (tcp, _) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (or a connection reset before accept): pause briefly
                    // rather than spin; eviction frees descriptors meanwhile.
                    me.count("accept");
                    tracing::warn!(error = %e, "agent HTTP: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (id, evict) = {
                let mut o = open.lock().unwrap_or_else(|p| p.into_inner());
                if o.by_age.len() >= me.cap {
                    if let Some((_, oldest)) = o.by_age.pop_first() {
                        oldest.cancel();
                        me.count("shed");
                        me.log_shed();
                    }
                }
                let id = o.next_id;
                o.next_id += 1;
                let token = CancellationToken::new();
                o.by_age.insert(id, token.clone());
                (id, token)
            };
            while let Some(ended) = tasks.try_join_next() {
                if ended.is_err_and(|e| e.is_panic()) {
                    me.count("panic");
                }
            }
            let (me2, open2, stop2) = (me.clone(), open.clone(), stop.clone());
            tasks.spawn(async move {
                me2.connection(tcp, evict, stop2).await;
                open2
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .by_age
                    .remove(&id);
            });
        }
        let _ = tokio::time::timeout(DRAIN + Duration::from_secs(1), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
    }

    async fn connection(
        self: Arc<Self>,
        tcp: tokio::net::TcpStream,
        evict: CancellationToken,
        stop: CancellationToken,
    ) {
        match self.web.tls.clone() {
            None => self.http(tcp, evict, stop).await,
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                let handshake = tokio::select! {
                    h = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => h,
                    _ = evict.cancelled() => return,
                };
                match handshake {
                    Ok(Ok(stream)) => self.http(stream, evict, stop).await,
                    Ok(Err(e)) => {
                        self.count("tls_handshake");
                        tracing::debug!(error = %e, "agent HTTP: TLS handshake failed");
                    }
                    Err(_) => self.count("tls_handshake_timeout"),
                }
            }
        }
    }

    async fn http<S>(self: Arc<Self>, io: S, evict: CancellationToken, stop: CancellationToken)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = hyper_util::service::TowerToHyperService::new(self.router.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(64 * 1024);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let aged = tokio::time::sleep(MAX_CONNECTION_AGE);
        tokio::pin!(aged);
        let graceful = tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    // A client that hangs up is no error of ours; a silent one is.
                    if e.is_timeout() {
                        self.count("header_timeout");
                    }
                }
                return;
            }
            _ = evict.cancelled() => return,
            _ = &mut aged => { self.count("max_age"); false }
            _ = stop.cancelled() => true,
        };
        if graceful {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, conn).await;
        }
    }
}
