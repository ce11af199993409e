//! How a request was taken (its intended start, whether it is measured, whether it was
//! late), and the one way its end is recorded and its span ended: shared by the workers of
//! pooled connections and of gRPC-Web.

use tokio::time::Instant;

use super::timing::micros;
use crate::grpc::unary::Outcome;
use crate::record::{Finished, SharedRecorder};
use crate::telemetry::traces::CallSpan;

/// When and how one request was taken, for recording its end.
pub(super) struct Taken {
    /// Open model: the intended start.
    pub(super) intended: Option<Instant>,
    pub(super) measured: bool,
    pub(super) late: bool,
    /// The mix's entry it is (0 without a mix).
    pub(super) method: u16,
}

impl Taken {
    /// Records a request that was sent to `backend` at `sent` and ended now with `outcome`.
    pub(super) fn record(
        &self,
        rec: &SharedRecorder,
        sent: Instant,
        outcome: &Outcome,
        backend: u32,
    ) {
        if !self.measured {
            return;
        }
        let done = Instant::now();
        // The corrected latency runs from the earlier of the intended start and the send.
        let corrected = self.intended.map(|at| micros(done - at.min(sent)));
        rec.borrow_mut().record(
            done,
            &Finished {
                corrected_us: corrected,
                uncorrected_us: micros(done - sent),
                code: outcome.code,
                message: outcome.message.as_deref(),
                late: self.late,
                backend,
                method: self.method,
            },
        );
    }
}

impl Taken {
    /// Ends a sampled call's span (after recording, so tracing never delays the figures).
    pub(super) fn end_span(&self, span: Option<CallSpan>, outcome: &Outcome) {
        if let Some(span) = span {
            span.end(
                outcome.code,
                outcome.message.as_deref(),
                self.measured,
                self.late,
            );
        }
    }
}
