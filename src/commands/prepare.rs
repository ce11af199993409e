//! Everything before the load: the scenario, the target (the embedded one is started here),
//! the method's descriptor and the encoded request. Shared by `run` and `validate`.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::error::CommandError;
use crate::grpc::descriptors::{resolve, ResolveError};
use crate::grpc::request::Requests;
use crate::grpc::stream::StreamCall;
use crate::grpc::unary::UnaryCall;
use crate::load::CallPlan;
use crate::scenario::{self, Address, Scenario, ScenarioError};
use crate::target;

/// A scenario ready to run.
pub struct Prepared {
    pub scenario: Scenario,
    /// `host:port` to connect to (the embedded target's loopback port when embedded).
    pub address: String,
    pub schema_source: String,
    pub call: CallPlan,
    pub requests: Requests,
    /// Stops the embedded target, if one was started.
    pub embedded: Option<EmbeddedTarget>,
}

/// The in-process reference target, on a runtime of its own so the generator's tasks do
/// not queue in front of the instrument's.
pub struct EmbeddedTarget {
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EmbeddedTarget {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_embedded() -> Result<(EmbeddedTarget, String), CommandError> {
    let shutdown = CancellationToken::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let token = shutdown.clone();
    let thread = std::thread::Builder::new()
        .name("embedded-target".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .thread_name("target")
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(format!(
                        "cannot start the embedded target's runtime: {e}"
                    )));
                    return;
                }
            };
            runtime.block_on(async move {
                match target::serve("127.0.0.1:0", token.clone()).await {
                    Ok(running) => {
                        let _ = tx.send(Ok(running.local_addr.to_string()));
                        let _ = running.served.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        })
        .map_err(|e| CommandError::run_failed(format!("cannot start the embedded target: {e}")))?;
    let embedded = EmbeddedTarget {
        shutdown,
        thread: Some(thread),
    };
    match rx.recv() {
        Ok(Ok(addr)) => Ok((embedded, addr)),
        Ok(Err(e)) => Err(CommandError::run_failed(e)),
        Err(_) => Err(CommandError::run_failed(
            "the embedded target stopped while starting",
        )),
    }
}

/// Loads and checks a scenario, resolves its method and encodes its request.
pub async fn prepare(path: &Path) -> Result<Prepared, CommandError> {
    let scenario = scenario::load(path).map_err(|e| match e {
        ScenarioError::Read { .. } => CommandError::invalid(e),
        ScenarioError::Invalid(problems) => CommandError::invalid(problems.to_string().trim_end()),
    })?;
    crate::report::thresholds::check(&scenario, &crate::report::Report::probe(&scenario))
        .map_err(|p| CommandError::invalid(p.to_string().trim_end()))?;
    let (embedded, address) = match &scenario.target.address {
        Address::Embedded => {
            let (e, a) = start_embedded()?;
            (Some(e), a)
        }
        Address::Remote(a) => (None, a.clone()),
    };
    let resolved = resolve(&scenario, &address).await.map_err(|e| match e {
        ResolveError::Invalid(p) => CommandError::invalid(p.to_string().trim_end()),
        ResolveError::Unreachable(m) => CommandError::run_failed(m),
    })?;
    let requests = Requests::build(&scenario, &resolved.descriptor)
        .map_err(|p| CommandError::invalid(p.to_string().trim_end()))?;
    let authority = scenario
        .target
        .authority
        .clone()
        .unwrap_or_else(|| address.clone());
    let call = UnaryCall::new(
        &authority,
        &scenario.call.method.value.path(),
        &scenario.call.metadata,
        scenario.call.timeout,
        scenario.call.compression,
    )
    .map_err(|m| CommandError::invalid(format!("{}: {m}", path.display())))?;
    let call = if scenario.kind.is_stream() {
        CallPlan::Stream(StreamCall::new(
            call,
            scenario.kind,
            scenario.stream.clone(),
        ))
    } else {
        CallPlan::Unary(call)
    };
    Ok(Prepared {
        scenario,
        address,
        schema_source: resolved.schema_source,
        call,
        requests,
        embedded,
    })
}
