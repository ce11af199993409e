//! Per-thread recording. Each generator thread owns one recorder, shared by the tasks on
//! that thread through `Rc<RefCell<_>>`: the thread's runtime is single-threaded, so there is
//! no lock and no atomic on the hot path, and memory does not grow with the number of
//! workers or streams (10,000 streams share one set of histograms per thread). It hands its
//! data to the aggregator once per interval: one channel message per thread per second,
//! never one per request.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::interval::{Finished, IntervalData};
pub use super::tls::{CertInfo, Handshake};

/// Length of one reporting interval.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One worker's data for one interval, on its way to the aggregator.
#[derive(Debug)]
pub struct Flush {
    /// The interval's number from the start of the measured part.
    pub interval: u64,
    /// What the worker recorded in it.
    pub data: IntervalData,
}

#[derive(Debug)]
/// One generator thread's recorder: no locks, flushed to the aggregator per interval.
pub struct ThreadRecorder {
    /// Start of the measured part: interval 0 begins here.
    origin: Instant,
    interval: u64,
    data: IntervalData,
    tx: UnboundedSender<Flush>,
    /// Tallies per backend (a fleet's run) and per method (a mix).
    tallies: super::Tallies,
}

impl ThreadRecorder {
    /// `tallies`: keep a tally per backend too (a fleet's run; a target of one fixed
    /// address has one backend, whose figures are the totals, so it costs nothing there),
    /// and per method (a mix of calls).
    pub fn new(origin: Instant, tx: UnboundedSender<Flush>, tallies: super::Tallies) -> Self {
        Self {
            origin,
            interval: 0,
            data: IntervalData::default(),
            tx,
            tallies,
        }
    }

    fn interval_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_secs()
    }

    /// Records a request that finished at `done`.
    #[inline]
    pub fn record(&mut self, done: Instant, finished: &Finished<'_>) {
        let idx = self.interval_of(done);
        if idx != self.interval {
            self.flush();
            self.interval = idx;
        }
        self.data.record(finished, self.tallies);
    }

    fn at(&mut self, t: Instant) -> &mut IntervalData {
        let idx = self.interval_of(t);
        if idx != self.interval {
            self.flush();
            self.interval = idx;
        }
        &mut self.data
    }

    /// A stream was opened at `t`.
    pub fn stream_opened(&mut self, t: Instant) {
        self.at(t).streams_opened += 1;
    }

    /// A stream message was sent at `t`; `late` when a message schedule (`message_rate`)
    /// had it due more than `LATE_AFTER` earlier.
    pub fn message_sent(&mut self, t: Instant, late: bool) {
        let d = self.at(t);
        d.messages_sent += 1;
        d.messages_sent_late += u64::from(late);
    }

    /// A stream message arrived at `t`; `latency_us` is its per-message latency (or gap),
    /// `corrected_us` the same from its intended send time (`message_rate`), `first_us` the
    /// stream's time to first message when it is the first.
    pub fn message_received(
        &mut self,
        t: Instant,
        latency_us: Option<u64>,
        corrected_us: Option<u64>,
        first_us: Option<u64>,
    ) {
        let d = self.at(t);
        d.messages_received += 1;
        if let Some(us) = latency_us {
            super::histogram::record(&mut d.message, us);
        }
        if let Some(us) = corrected_us {
            super::histogram::record(&mut d.message_corrected, us);
        }
        if let Some(us) = first_us {
            super::histogram::record(&mut d.first_message, us);
        }
    }

    /// A handshake-storm iteration ended at `t`.
    pub fn handshake(&mut self, t: Instant, h: Handshake) {
        self.at(t)
            .tls
            .get_or_insert_with(Default::default)
            .record(h);
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

/// The recorder of the current generator thread, as its tasks hold it.
pub type SharedRecorder = std::rc::Rc<std::cell::RefCell<ThreadRecorder>>;

impl Drop for ThreadRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}
