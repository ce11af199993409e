//! One probe from nothing: connect, ask, judge, close — what `loadagent probe` does and what a
//! Prometheus-driven `/probe` does per scrape. (The agent's own targets keep their
//! connections between rounds and call the same pieces — `health::Check`,
//! `MethodProbe::call`, the verdicts — on them.)

use std::time::{Duration, Instant};

use super::health::{self, HealthAnswer};
use super::method::{MethodProbe, Verdict};
use super::verdict::{Failure, HealthVerdict, MethodVerdict, Phases};
use super::NotProcessed;
use crate::grpc::control::TlsFacts;
use crate::grpc::lean::SharedConnection;
use crate::grpc::web::{WebCall, WebOptions};
use crate::tls::ClientTls;
use crate::vocabulary::HostPort;

/// Where a probe goes and how it talks.
#[derive(Debug, Clone)]
pub struct Target {
    /// The address dialled.
    pub address: HostPort,
    /// TLS, when the target speaks it.
    pub tls: Option<ClientTls>,
    /// Metadata sent with the call; keys lower case, values valid in a header (checked by
    /// whoever builds the target).
    pub metadata: Vec<(String, String)>,
    /// The whole probe's budget: connecting, and the call.
    pub timeout: Duration,
}

/// What a probe asks.
#[derive(Debug, Clone)]
pub enum Module {
    /// grpc.health.v1 Check for `service` ("" is the server as a whole), or the first status
    /// of a Watch.
    Health {
        /// The service checked; "" is the server as a whole.
        service: String,
        /// Watch's first status instead of Check.
        watch: bool,
    },
    /// One call of a unary method, judged by its checks.
    Method(MethodProbe),
    /// The method over gRPC-Web (the call made by `Module::web`).
    Web(MethodProbe, Box<WebCall>),
}

impl Module {
    /// A gRPC-Web method probe of `target` (`authority` as the user wrote the address); `Err`
    /// when its metadata cannot be sent as headers.
    pub fn web(
        probe: MethodProbe,
        target: &Target,
        authority: &str,
        options: &WebOptions,
    ) -> Result<Self, crate::grpc::unary::HeadError> {
        let call = probe.web_call(
            authority,
            &target.metadata,
            target.timeout,
            options,
            target.tls.as_ref(),
        )?;
        Ok(Self::Web(probe, Box::new(call)))
    }
}

/// How one probe went.
#[derive(Debug, Clone)]
pub struct ProbeVerdict {
    /// Why it failed, and its kind; `None`: it passed.
    pub failure: Option<(Failure, String)>,
    /// The health RPC's answer, judged (health modules).
    pub health: Option<HealthVerdict>,
    /// The method's call as it answered (method and gRPC-Web modules).
    pub call: Option<Verdict>,
    /// The call judged.
    pub method: Option<MethodVerdict>,
    /// The time each phase took — `connect`: the first connection made and its HTTP/2 proven (TCP, TLS, our preface
    /// answered); `tls`: the handshake of the connection the call went over; then `check`
    /// or `method`, the call.
    pub phases: Phases,
    /// What the TLS handshake negotiated, when the target speaks TLS and it completed (native
    /// gRPC: the gRPC-Web client does not report it).
    pub tls: Option<TlsFacts>,
}

impl ProbeVerdict {
    /// Whether the probe passed.
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    fn unreachable(why: String, phases: Phases) -> Self {
        Self {
            failure: Some((Failure::Connect, why)),
            health: None,
            call: None,
            method: None,
            phases,
            tls: None,
        }
    }

    fn of_call(probe: &MethodProbe, call: Verdict, phases: Phases, tls: Option<TlsFacts>) -> Self {
        let method = MethodVerdict::of(probe.descriptor.full_name(), &call);
        Self {
            failure: method.failure.clone(),
            health: None,
            call: Some(call),
            method: Some(method),
            phases,
            tls,
        }
    }
}

/// Probes `target` once with `module`, on connections of its own.
pub async fn once(target: &Target, module: &Module) -> ProbeVerdict {
    let mut phases = Phases::new();
    if let Module::Web(probe, call) = module {
        let t = Instant::now();
        let mut sender = match call.connect(&call.endpoint(target.address.clone())).await {
            Ok(s) => s,
            Err(e) => return ProbeVerdict::unreachable(cannot_connect(target, e), phases),
        };
        phases.push(("connect", t.elapsed()));
        let mut renderer = crate::grpc::request::Renderer::new(0);
        let answer = probe.call_web(call, &mut sender, 0, &mut renderer).await;
        phases.push(("method", answer.took));
        return ProbeVerdict::of_call(probe, answer, phases, None);
    }
    if let Module::Health {
        service,
        watch: true,
    } = module
    {
        return watch_once(target, service, phases).await;
    }
    // The connection proves the server speaks HTTP/2 (our preface, the server's PING
    // answer): one that does not is a failed connection (as `run` says it and as
    // grpc-health-probe counts it), not an RPC whose status changes from run to run.
    let t = Instant::now();
    let endpoint = crate::grpc::channel::Endpoint {
        address: target.address.clone(),
        connect_timeout: target.timeout,
        tls: target.tls.clone(),
    };
    let (conn, tls) = match SharedConnection::open(&endpoint).await {
        Ok(opened) => opened,
        Err(e) => {
            return ProbeVerdict::unreachable(cannot_connect(target, e.first_contact()), phases)
        }
    };
    phases.push(("connect", t.elapsed()));
    if let Some(f) = &tls {
        phases.push(("tls", f.handshake));
    }
    let authority = target.address.to_string();
    let tls_on = target.tls.is_some();
    match module {
        Module::Health { service, .. } => {
            let check = match health::Check::new(
                &authority,
                service,
                &target.metadata,
                target.timeout,
                tls_on,
            ) {
                Ok(c) => c,
                Err(e) => return ProbeVerdict::unreachable(e, phases),
            };
            let t = Instant::now();
            let answer =
                check
                    .on(&conn, None, target.timeout)
                    .await
                    .unwrap_or_else(|NotProcessed(why)| {
                        HealthAnswer::Failed(tonic::Status::unavailable(why))
                    });
            phases.push(("check", t.elapsed()));
            health_verdict(&answer, phases, tls)
        }
        // (A gRPC-Web module returned above.)
        Module::Method(probe) | Module::Web(probe, _) => {
            let headers =
                match probe.lean_headers(&authority, &target.metadata, target.timeout, tls_on) {
                    Ok(h) => h,
                    Err(e) => return ProbeVerdict::unreachable(e.to_string(), phases),
                };
            let mut renderer = crate::grpc::request::Renderer::new(0);
            let answer = probe
                .call(&conn, &headers, 0, &mut renderer, None, target.timeout)
                .await;
            phases.push(("method", answer.took));
            ProbeVerdict::of_call(probe, answer, phases, tls)
        }
    }
}

/// The first status of a Watch, on a tonic channel (a stream: not the lean client's).
async fn watch_once(target: &Target, service: &str, mut phases: Phases) -> ProbeVerdict {
    // One HTTP/2 connection proven first, as above.
    let t = Instant::now();
    let proof = crate::grpc::channel::Endpoint {
        address: target.address.clone(),
        connect_timeout: target.timeout,
        tls: target.tls.clone(),
    };
    if let Err(e) = crate::grpc::channel::connect(&proof).await {
        return ProbeVerdict::unreachable(cannot_connect(target, e.first_contact()), phases);
    }
    phases.push(("connect", t.elapsed()));
    let facts: crate::grpc::control::TlsFactsSlot = Default::default();
    let channel = match crate::grpc::control::channel_with_facts(
        &target.address,
        None,
        target.timeout,
        target.tls.as_ref(),
        Some(facts.clone()),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return ProbeVerdict::unreachable(cannot_connect(target, e), phases),
    };
    let tls = facts.lock().ok().and_then(|f| f.clone());
    if let Some(f) = &tls {
        phases.push(("tls", f.handshake));
    }
    let pairs = target
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let request = health::request(service, pairs);
    let t = Instant::now();
    let answer = health::watch_first(channel, request, target.timeout).await;
    phases.push(("check", t.elapsed()));
    health_verdict(&answer, phases, tls)
}

fn health_verdict(answer: &HealthAnswer, phases: Phases, tls: Option<TlsFacts>) -> ProbeVerdict {
    let judged = answer.verdict();
    ProbeVerdict {
        failure: judged.failure.clone(),
        health: Some(judged),
        call: None,
        method: None,
        phases,
        tls,
    }
}

fn cannot_connect(target: &Target, e: impl std::fmt::Display) -> String {
    format!("cannot connect to {}: {e}", target.address)
}
