//! Per-worker recording. Each worker owns its interval data (no lock, no shared write on
//! the hot path) and hands it to the aggregator once per interval: one channel message per
//! worker per second, never one per request.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::interval::IntervalData;

/// Length of one reporting interval.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One worker's data for one interval, on its way to the aggregator.
#[derive(Debug)]
pub struct Flush {
    pub interval: u64,
    pub data: IntervalData,
}

pub struct WorkerRecorder {
    /// Start of the measured part: interval 0 begins here.
    origin: Instant,
    interval: u64,
    data: IntervalData,
    tx: UnboundedSender<Flush>,
}

impl WorkerRecorder {
    pub fn new(origin: Instant, tx: UnboundedSender<Flush>) -> Self {
        Self {
            origin,
            interval: 0,
            data: IntervalData::default(),
            tx,
        }
    }

    fn interval_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_secs()
    }

    /// Records a request that finished at `done`.
    #[inline]
    pub fn record(
        &mut self,
        done: Instant,
        corrected_us: Option<u64>,
        uncorrected_us: u64,
        code: u8,
        message: Option<&str>,
        late: bool,
    ) {
        let idx = self.interval_of(done);
        if idx != self.interval {
            self.flush();
            self.interval = idx;
        }
        self.data
            .record(corrected_us, uncorrected_us, code, message, late);
    }

    /// When this worker must wake to hand over its data even if it has nothing else to do,
    /// so an idle worker does not hold an interval back.
    pub fn flush_deadline(&self) -> Option<Instant> {
        (!self.data.is_empty()).then(|| self.origin + INTERVAL * (self.interval as u32 + 1))
    }

    /// Hands over the current interval's data if `now` is past it.
    pub fn flush_if_due(&mut self, now: Instant) {
        let idx = self.interval_of(now);
        if idx != self.interval {
            self.flush();
            self.interval = idx;
        }
    }

    fn flush(&mut self) {
        if self.data.is_empty() {
            return;
        }
        let data = std::mem::take(&mut self.data);
        // The aggregator outlives the workers; if it is gone the run is being torn down.
        let _ = self.tx.send(Flush {
            interval: self.interval,
            data,
        });
    }
}

impl Drop for WorkerRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}
