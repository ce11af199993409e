//! The in-process reference target, started for `address = "embedded"`.

use tokio_util::sync::CancellationToken;

use super::RunError;
use crate::reference;
use crate::vocabulary::HostPort;

/// The in-process reference target, on a runtime of its own so the generator's tasks do
/// not queue in front of the instrument's.
#[derive(Debug)]
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

pub(super) fn start_embedded(
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> Result<(EmbeddedTarget, HostPort), RunError> {
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
                match reference::serve("127.0.0.1:0", token.clone(), tls).await {
                    Ok(running) => {
                        let _ = tx.send(Ok(HostPort::from(running.local_addr)));
                        let _ = running.served.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        })
        .map_err(|e| RunError::Failed(format!("cannot start the embedded target: {e}")))?;
    let embedded = EmbeddedTarget {
        shutdown,
        thread: Some(thread),
    };
    match rx.recv() {
        Ok(Ok(addr)) => Ok((embedded, addr)),
        Ok(Err(e)) => Err(RunError::Failed(e)),
        Err(_) => Err(RunError::Failed(
            "the embedded target stopped while starting".into(),
        )),
    }
}
