//! Everything before the load: the outputs proven writable, the scenario, the target (the
//! embedded one is started here), the method's descriptor and the encoded request.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::embedded::{start_embedded, EmbeddedTarget};
use super::RunError;
use crate::discovery::Fleet;
use crate::grpc::descriptors::{resolve, ResolveError};
use crate::grpc::request::Requests;
use crate::grpc::unary::UnaryCall;
use crate::load::storm::HandshakeCall;
use crate::load::stream::StreamCall;
use crate::load::CallPlan;
use crate::load::Schedule;
use crate::report::outputs::{check_writable, Outputs};
use crate::scenario::{self, ScenarioError};
use crate::tls::ClientTls;
use crate::vocabulary::{Address, HostPort, Kind, Load, Model, Scenario, Shard};

/// What preparing finds, before it is shaped for the driver.
struct Parts {
    pub scenario: Scenario,
    /// Where to connect first (the embedded target's loopback port when embedded; a
    /// fleet's first backend): reflection asks it.
    pub address: HostPort,
    /// Every backend, as they change.
    pub fleet: Arc<Fleet>,
    pub schema_source: String,
    pub call: CallPlan,
    pub requests: Requests,
    /// `[[calls]]`: the mix, each entry's method resolved and requests built.
    pub mix: Option<crate::load::mix::Mix>,
    /// The client TLS configuration, when the scenario has `[target.tls]`.
    pub tls: Option<ClientTls>,
    /// Stops the embedded target, if one was started.
    pub embedded: Option<EmbeddedTarget>,
}

/// A scenario ready to run: what the driver takes, and what the report needs.
#[derive(Debug)]
pub struct Prepared {
    /// The scenario, checked.
    pub scenario: std::sync::Arc<Scenario>,
    /// Where the method's types came from, in words (the report's `schema_source`).
    pub schema_source: String,
    /// How to reach a backend (its `address` is the first backend's; the load sets each).
    pub endpoint: crate::grpc::channel::Endpoint,
    /// What the driver runs.
    pub plan: crate::load::Plan,
    /// Requests the schedule asks for in the measured part (open model, time-bounded).
    pub asked: Option<u64>,
    /// Keep until the run is over: dropping it stops the embedded target.
    pub embedded: Option<EmbeddedTarget>,
}

impl Parts {
    fn ready(self) -> Prepared {
        let scenario = std::sync::Arc::new(self.scenario);
        let endpoint = crate::grpc::channel::Endpoint {
            address: self.address.clone(),
            connect_timeout: scenario.target.connect_timeout,
            tls: self.tls.clone(),
        };
        let schedule = crate::load::Schedule::for_load(&scenario.load);
        let asked = asked(&scenario.load, schedule.as_ref(), Shard::WHOLE);
        let mut load = scenario.load.clone();
        if let (Some(c), None) = (&scenario.capacity, load.threads) {
            // Threads for the highest rate the search may try, not its first.
            let wanted = (c.max_rate / crate::load::driver::RATE_PER_THREAD).ceil();
            load.threads = Some(wanted.clamp(1.0, 1024.0) as u32);
        }
        let plan = crate::load::Plan {
            trace: None,
            load,
            call: self.call,
            requests: self.requests,
            mix: self.mix,
            schedule,
            shard: Shard::WHOLE,
            start_at: None,
            fleet: self.fleet,
            balance: scenario.target.balance,
            live: scenario.capacity.as_ref().map(|c| {
                std::sync::Arc::new(crate::load::live_rate::LiveRate::new(
                    c.start_rate,
                    scenario.load.warmup + c.max_duration,
                ))
            }),
        };
        Prepared {
            scenario,
            schema_source: self.schema_source,
            endpoint,
            plan,
            asked,
            embedded: self.embedded,
        }
    }
}

/// Requests the schedule asks of `shard` in the measured part (open model, time-bounded):
/// the global numbers k in the measured part with k mod count == index.
fn asked(load: &Load, schedule: Option<&Schedule>, shard: Shard) -> Option<u64> {
    let s = schedule?;
    let measured = load.measured_duration()?;
    let warm = s.warmup().as_secs_f64();
    let due = (s.arrivals_by(warm + measured.as_secs_f64()) - s.arrivals_by(warm)).round() as u64;
    let all = load.requests.map_or(due, |r| r.min(due));
    let first = s.warmup_requests();
    Some(shard.owned_below(first.saturating_add(all)) - shard.owned_below(first))
}

impl Prepared {
    /// Makes this run shard `shard` of a distributed run starting at `start_at` (the
    /// schedule's time zero on the wall clock): the open model's sends interleaved, the closed
    /// model's `concurrency` and `requests` split (remainders to the lowest indices).
    pub fn distribute(
        mut self,
        shard: Shard,
        start_at: Option<SystemTime>,
    ) -> Result<Self, RunError> {
        let load = &mut self.plan.load;
        if load.model() == Model::Closed && shard.count > 1 {
            let split = |what: &str, total: u64| -> Result<u64, RunError> {
                match shard.share(total) {
                    0 => Err(RunError::Invalid(format!(
                        "{}: `[load] {what} = {total}` cannot be split over {} shards (each needs at least 1); use fewer shards or raise it",
                        self.scenario.path.display(),
                        shard.count
                    ))),
                    n => Ok(n),
                }
            };
            load.concurrency = u32::try_from(split("concurrency", u64::from(load.concurrency))?)
                .unwrap_or(load.concurrency);
            if let Some(r) = load.requests {
                load.requests = Some(split("requests", r)?);
            }
        }
        self.asked = asked(&self.plan.load, self.plan.schedule.as_ref(), shard);
        self.plan.shard = shard;
        self.plan.start_at = start_at;
        Ok(self)
    }
}

/// Reads the scenario file at `path` and checks it: every problem, with line and column.
pub fn load(path: &Path) -> Result<Scenario, RunError> {
    scenario::load(path).map_err(|e| match e {
        ScenarioError::Read(_) => RunError::Invalid(e.to_string()),
        ScenarioError::Invalid(problems) => {
            RunError::Invalid(problems.to_string().trim_end().to_string())
        }
    })
}

/// Proves every output writable: a run that could not write its report fails before it
/// starts, not after.
pub fn check_outputs(outputs: &Outputs) -> Result<(), RunError> {
    for out in outputs.paths() {
        check_writable(out).map_err(|e| RunError::Invalid(e.to_string()))?;
    }
    Ok(())
}

/// Checks a scenario's thresholds against the report it would make, starts or reaches its
/// target, resolves its method and encodes its request. The scenario may come from a file
/// (`load`) or be built in memory (`scenario::parse` of a `Source`): reading files and
/// checking outputs stay with the caller.
pub async fn prepare(scenario: Scenario) -> Result<Prepared, RunError> {
    Ok(parts(scenario).await?.ready())
}

async fn parts(scenario: Scenario) -> Result<Parts, RunError> {
    let path = scenario.path.clone();
    crate::report::thresholds::check(&scenario, &crate::report::Report::probe(&scenario))
        .map_err(|p| RunError::Invalid(p.to_string().trim_end().to_string()))?;
    // The embedded target speaks TLS when the scenario asks for it, with a certificate
    // generated now and trusted by this run's client only.
    let generated = match (&scenario.target.address, &scenario.target.tls) {
        (Address::Embedded, Some(_)) => {
            Some(crate::tls::server::generate().map_err(|e| RunError::Failed(e.to_string()))?)
        }
        _ => None,
    };
    let (embedded, fleet) = match &scenario.target.address {
        Address::Embedded => {
            let server_tls = match &generated {
                Some(g) => Some(
                    crate::tls::server::server_config(g)
                        .map_err(|e| RunError::Failed(e.to_string()))?,
                ),
                None => None,
            };
            let (e, a) = start_embedded(server_tls)?;
            (Some(e), Fleet::fixed(a))
        }
        Address::Remote(a) => (None, Fleet::fixed(a.clone())),
        Address::Fleet(name) => {
            let timeout = scenario.target.connect_timeout;
            let fleet = Fleet::resolve(name, scenario.target.resolve_every, timeout)
                .await
                .map_err(|e| {
                    RunError::Unreachable(format!(
                        "{}: `target.address`: {e}; check the name, the DNS server and its records (e.g. `dig`), or write \"host:port\"",
                        scenario.path.display()
                    ))
                })?;
            (None, fleet)
        }
    };
    let Some(address) = fleet.current().backends.first().map(|b| b.address.clone()) else {
        return Err(RunError::Unreachable(format!(
            "{}: `target.address` has no backend",
            scenario.path.display()
        )));
    };
    // The name a fleet's backends are verified as and addressed by: the DNS name, not an IP.
    let fleet_name = fleet.name().cloned();
    let tls = match &scenario.target.tls {
        None => None,
        Some(o) => {
            let default_host = if generated.is_some() {
                "localhost"
            } else if let Some(name) = &fleet_name {
                name.host()
            } else {
                address.host()
            };
            let built = ClientTls::build(o, default_host, generated.as_ref().map(|g| &g.cert))
                .map_err(|e| {
                    RunError::Invalid(format!(
                        "{}:{}:{}: `target.tls.{}`: {}",
                        scenario.path.display(),
                        o.loc.line,
                        o.loc.column,
                        e.key,
                        e.message
                    ))
                })?;
            Some(built)
        }
    };
    let Some(call_spec) = scenario.call.clone() else {
        // A handshake storm without a call.
        let Some(tls) = tls else {
            return Err(RunError::Invalid(
                "a handshake storm needs [target.tls]".into(),
            ));
        };
        let call = CallPlan::Handshake(HandshakeCall {
            tls: tls.clone(),
            connect_timeout: scenario.target.connect_timeout,
            call: None,
        });
        return Ok(Parts {
            scenario,
            address,
            fleet,
            schema_source: "none (handshakes only)".into(),
            call,
            requests: Requests::none(),
            mix: None,
            embedded,
            tls: Some(tls),
        });
    };
    let resolved = resolve(&scenario, &call_spec, &address, tls.as_ref())
        .await
        .map_err(|e| match e {
            ResolveError::Invalid(p) => RunError::Invalid(p.to_string().trim_end().to_string()),
            ResolveError::Unreachable(m) => RunError::Unreachable(m),
        })?;
    let requests = Requests::build(&call_spec, &resolved.descriptor)
        .map_err(|p| RunError::Invalid(p.to_string().trim_end().to_string()))?;
    let authority = scenario
        .target
        .authority
        .clone()
        .unwrap_or_else(|| match &tls {
            Some(_) if generated.is_some() => {
                format!("localhost:{}", address.port())
            }
            _ => match &fleet_name {
                Some(name) => name.authority(),
                None => address.to_string(),
            },
        });
    let unary = unary_call(&call_spec, &authority)
        .map_err(|m| RunError::Invalid(format!("{}: {m}", path.display())))?;
    let mix = if scenario.calls.is_empty() {
        None
    } else {
        let mut entries = Vec::new();
        for (i, w) in scenario.calls.iter().enumerate() {
            // The first entry is `call_spec`, resolved above.
            let requests = if i == 0 {
                requests.clone()
            } else {
                let resolved = resolve(&scenario, &w.call, &address, tls.as_ref())
                    .await
                    .map_err(|e| match e {
                        ResolveError::Invalid(p) => {
                            RunError::Invalid(p.to_string().trim_end().to_string())
                        }
                        ResolveError::Unreachable(m) => RunError::Unreachable(m),
                    })?;
                Requests::build(&w.call, &resolved.descriptor)
                    .map_err(|p| RunError::Invalid(p.to_string().trim_end().to_string()))?
            };
            let call = unary_call(&w.call, &authority)
                .map_err(|m| RunError::Invalid(format!("{}: `calls[{i}]`: {m}", path.display())))?;
            let web = scenario.target.protocol.is_web().then(|| {
                let options = crate::grpc::web::WebOptions::of(&scenario.target);
                crate::grpc::web::WebCall::new(&call, &options, tls.as_ref())
            });
            entries.push(crate::load::mix::MixEntry {
                name: w.name.clone(),
                weight: w.weight,
                call,
                requests,
                web,
            });
        }
        Some(crate::load::mix::Mix::new(entries))
    };
    let protocol = scenario.target.protocol;
    let call = match (scenario.kind, &tls) {
        (kind, tls) if protocol.is_web() => {
            let options = crate::grpc::web::WebOptions::of(&scenario.target);
            let call = crate::grpc::web::WebCall::new(&unary, &options, tls.as_ref());
            CallPlan::Web(if kind == Kind::ServerStream {
                call.server_stream(scenario.stream.messages)
            } else {
                call
            })
        }
        (Kind::TlsHandshake, Some(t)) => CallPlan::Handshake(HandshakeCall {
            tls: t.clone(),
            connect_timeout: scenario.target.connect_timeout,
            call: Some(unary),
        }),
        (kind, _) if kind.is_stream() => {
            CallPlan::Stream(StreamCall::new(unary, kind, scenario.stream.clone()))
        }
        _ => CallPlan::Unary(unary),
    };
    Ok(Parts {
        scenario,
        address,
        fleet,
        schema_source: resolved.schema_source,
        call,
        requests,
        mix,
        embedded,
        tls,
    })
}

/// What is fixed about the calls `call` describes, sent with `authority`: metadata whose
/// value is a template is rendered per call, the rest is sent as written.
fn unary_call(call: &crate::vocabulary::Call, authority: &str) -> Result<UnaryCall, String> {
    let mut plain = Vec::new();
    let mut templated = Vec::new();
    for (key, value) in &call.metadata {
        match crate::grpc::template::Template::parse(value) {
            Ok(Some(t)) => templated.push((key.clone(), t)),
            Ok(None) => plain.push((key.clone(), value.clone())),
            Err(why) => return Err(format!("`metadata.{key}`: {why}")),
        }
    }
    Ok(UnaryCall::new(
        authority,
        &call.method.value.path(),
        &plain,
        call.timeout,
        call.compression,
    )
    .map_err(|e| e.to_string())?
    .with_max_receive(call.max_receive_message_size)
    .with_transport(call.transport)
    .with_templated_metadata(templated)
    .with_retry(call.retry.clone()))
}
