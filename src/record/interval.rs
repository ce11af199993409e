//! What one worker saw in one interval: latencies, counts by status, error messages.

use hdrhistogram::Histogram;

use super::histogram::{new_histogram, record};
use crate::grpc::status::{CODE_COUNT, OK};

/// Distinct error messages a worker keeps per interval; more are counted under one entry,
/// so a server that puts request ids in its messages cannot grow memory without bound.
const MAX_DISTINCT_ERRORS: usize = 32;
/// The message error counts past `MAX_DISTINCT_ERRORS` are kept under.
pub const OTHER_MESSAGES: &str = "(other messages)";

/// One worker's (or, merged, the whole run's) data for an interval.
#[derive(Debug, Clone)]
pub struct IntervalData {
    /// From each request's intended start (open model only).
    pub corrected: Histogram<u64>,
    /// From each request's actual send.
    pub uncorrected: Histogram<u64>,
    /// Requests by gRPC code.
    pub status: [u64; CODE_COUNT],
    /// Requests sent more than `LATE_AFTER` after their intended time.
    pub sent_late: u64,
    /// (code, message, count), most recent first-seen order.
    pub errors: Vec<(u8, String, u64)>,
    /// Streams: from opening a stream to its first response message.
    pub first_message: Histogram<u64>,
    /// Streams: per-message latency (bidi) or the gap between server messages (server streams).
    pub message: Histogram<u64>,
    /// Streams on a message schedule (`message_rate`): per-message latency from each
    /// message's intended send time (coordinated omission corrected).
    pub message_corrected: Histogram<u64>,
    /// Streams opened.
    pub streams_opened: u64,
    /// Stream messages sent.
    pub messages_sent: u64,
    /// Stream messages received.
    pub messages_received: u64,
    /// Messages sent more than `LATE_AFTER` after their intended time (`message_rate`).
    pub messages_sent_late: u64,
    /// Handshake storms only, allocated on first use.
    pub tls: Option<Box<super::tls::TlsData>>,
    /// Per backend, indexed by `discovery::Backend::id` (grown as backends are seen).
    pub backends: Vec<BackendTally>,
    /// Per entry of a mix of calls (`[[calls]]`), indexed by entry; empty without a mix.
    pub methods: Vec<BackendTally>,
}

/// One finished request, as it is recorded.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'m> {
    /// From its intended start; `None` in the closed model.
    pub corrected_us: Option<u64>,
    /// From its send.
    pub uncorrected_us: u64,
    /// Its gRPC code.
    pub code: u8,
    /// Its status message, when not OK.
    pub message: Option<&'m str>,
    /// Taken more than `LATE_AFTER` after its intended time.
    pub late: bool,
    /// The backend it was sent to (`discovery::Backend::id`).
    pub backend: u32,
    /// The mix's entry it was (`[[calls]]`; 0 without a mix).
    pub method: u16,
}

/// What one backend got: the same counts and latencies as the whole, for its calls.
#[derive(Debug, Clone)]
pub struct BackendTally {
    /// Corrected latency (open model).
    pub corrected: Histogram<u64>,
    /// Uncorrected latency.
    pub uncorrected: Histogram<u64>,
    /// Requests by gRPC code.
    pub status: [u64; CODE_COUNT],
}

impl Default for BackendTally {
    fn default() -> Self {
        Self {
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            status: [0; CODE_COUNT],
        }
    }
}

/// Which tallies a finished request is recorded in besides the totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tallies {
    /// Per backend (a fleet's run).
    pub by_backend: bool,
    /// Per entry of a mix of calls.
    pub by_method: bool,
}

/// The tally at `i`, the list grown to hold it.
fn tally_at(list: &mut Vec<BackendTally>, i: usize) -> &mut BackendTally {
    if list.len() <= i {
        list.resize_with(i + 1, BackendTally::default);
    }
    &mut list[i]
}

impl BackendTally {
    /// Requests completed.
    pub fn requests(&self) -> u64 {
        self.status.iter().sum()
    }

    #[inline]
    fn add(&mut self, corrected_us: Option<u64>, uncorrected_us: u64, slot: usize) {
        if let Some(c) = corrected_us {
            record(&mut self.corrected, c);
        }
        record(&mut self.uncorrected, uncorrected_us);
        self.status[slot] += 1;
    }

    fn merge(&mut self, other: &BackendTally) {
        let _ = self.corrected.add(&other.corrected);
        let _ = self.uncorrected.add(&other.uncorrected);
        for (a, b) in self.status.iter_mut().zip(other.status.iter()) {
            *a += b;
        }
    }
}

impl Default for IntervalData {
    fn default() -> Self {
        Self {
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            status: [0; CODE_COUNT],
            sent_late: 0,
            errors: Vec::new(),
            first_message: new_histogram(),
            message: new_histogram(),
            message_corrected: new_histogram(),
            streams_opened: 0,
            messages_sent: 0,
            messages_received: 0,
            messages_sent_late: 0,
            tls: None,
            backends: Vec::new(),
            methods: Vec::new(),
        }
    }
}

impl IntervalData {
    /// Requests completed.
    pub fn requests(&self) -> u64 {
        self.status.iter().sum()
    }

    /// Of them, OK.
    pub fn ok(&self) -> u64 {
        self.status[usize::from(OK)]
    }

    /// Of them, not OK.
    pub fn errors_count(&self) -> u64 {
        self.requests() - self.ok()
    }

    /// Records one finished request; in its backend's tally too when `tallies.by_backend`
    /// (a fleet: a target of one fixed address has one backend, whose figures are the
    /// totals), in its method's when `tallies.by_method` (a mix).
    #[inline]
    pub fn record(&mut self, f: &Finished<'_>, tallies: Tallies) {
        let Finished {
            corrected_us,
            uncorrected_us,
            code,
            message,
            late,
            backend,
            method,
        } = *f;
        let slot = usize::from(code).min(CODE_COUNT - 1);
        if tallies.by_backend {
            self.backend(backend)
                .add(corrected_us, uncorrected_us, slot);
        }
        if tallies.by_method {
            tally_at(&mut self.methods, usize::from(method)).add(
                corrected_us,
                uncorrected_us,
                slot,
            );
        }
        if let Some(c) = corrected_us {
            record(&mut self.corrected, c);
        }
        record(&mut self.uncorrected, uncorrected_us);
        self.status[slot] += 1;
        self.sent_late += u64::from(late);
        if code != OK {
            self.count_error(code, message.unwrap_or(""), 1);
        }
    }

    fn backend(&mut self, id: u32) -> &mut BackendTally {
        tally_at(&mut self.backends, id as usize)
    }

    fn count_error(&mut self, code: u8, message: &str, n: u64) {
        if let Some(e) = self
            .errors
            .iter_mut()
            .find(|e| e.0 == code && e.1 == message)
        {
            e.2 += n;
            return;
        }
        if self.errors.len() < MAX_DISTINCT_ERRORS {
            self.errors.push((code, message.to_string(), n));
        } else if let Some(e) = self
            .errors
            .iter_mut()
            .find(|e| e.0 == code && e.1 == OTHER_MESSAGES)
        {
            e.2 += n;
        } else {
            self.errors.push((code, OTHER_MESSAGES.to_string(), n));
        }
    }

    /// Adds another interval's data into this one.
    pub fn merge(&mut self, other: &IntervalData) {
        // Both histograms auto-resize, so `add` cannot run out of range.
        let _ = self.corrected.add(&other.corrected);
        let _ = self.uncorrected.add(&other.uncorrected);
        for (a, b) in self.status.iter_mut().zip(other.status.iter()) {
            *a += b;
        }
        self.sent_late += other.sent_late;
        let _ = self.first_message.add(&other.first_message);
        let _ = self.message.add(&other.message);
        let _ = self.message_corrected.add(&other.message_corrected);
        self.streams_opened += other.streams_opened;
        self.messages_sent += other.messages_sent;
        self.messages_received += other.messages_received;
        self.messages_sent_late += other.messages_sent_late;
        if let Some(o) = &other.tls {
            self.tls.get_or_insert_with(Default::default).merge(o);
        }
        for (code, msg, n) in &other.errors {
            self.count_error(*code, msg, *n);
        }
        for (id, tally) in other.backends.iter().enumerate() {
            if tally.requests() > 0 {
                self.backend(u32::try_from(id).unwrap_or(u32::MAX))
                    .merge(tally);
            }
        }
        for (i, tally) in other.methods.iter().enumerate() {
            if tally.requests() > 0 {
                tally_at(&mut self.methods, i).merge(tally);
            }
        }
    }

    /// Nothing recorded at all (no finished call, no stream or message event).
    pub fn is_empty(&self) -> bool {
        self.requests() == 0
            && self.streams_opened == 0
            && self.messages_sent == 0
            && self.messages_received == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BY_BACKEND: Tallies = Tallies {
        by_backend: true,
        by_method: false,
    };

    #[test]
    fn counts_and_merges() {
        let mut a = IntervalData::default();
        a.record(
            &Finished {
                corrected_us: Some(100),
                uncorrected_us: 50,
                code: OK,
                message: None,
                late: false,
                backend: 0,
                method: 0,
            },
            BY_BACKEND,
        );
        a.record(
            &Finished {
                corrected_us: Some(200),
                uncorrected_us: 60,
                code: 14,
                message: Some("down"),
                late: true,
                backend: 2,
                method: 0,
            },
            BY_BACKEND,
        );
        let mut b = IntervalData::default();
        b.record(
            &Finished {
                corrected_us: None,
                uncorrected_us: 70,
                code: 14,
                message: Some("down"),
                late: false,
                backend: 2,
                method: 0,
            },
            BY_BACKEND,
        );
        b.record(
            &Finished {
                corrected_us: None,
                uncorrected_us: 80,
                code: 4,
                message: Some("slow"),
                late: false,
                backend: 1,
                method: 0,
            },
            BY_BACKEND,
        );
        a.merge(&b);
        // Per backend: the same counts, split, and their sum is the whole.
        let per: Vec<u64> = a.backends.iter().map(BackendTally::requests).collect();
        assert_eq!(per, [1, 1, 2]);
        assert_eq!(a.backends[2].status[14], 2);
        assert_eq!(a.backends[0].corrected.len(), 1);
        assert_eq!(
            (a.requests(), a.ok(), a.errors_count(), a.sent_late),
            (4, 1, 3, 1)
        );
        assert_eq!(
            a.errors,
            vec![(14, "down".into(), 2), (4, "slow".into(), 1)]
        );
        assert_eq!(a.uncorrected.len(), 4);
        assert_eq!(a.corrected.len(), 2);
    }

    #[test]
    fn distinct_messages_are_bounded() {
        let mut a = IntervalData::default();
        for i in 0..100 {
            a.record(
                &Finished {
                    corrected_us: None,
                    uncorrected_us: 1,
                    code: 2,
                    message: Some(&format!("request {i} failed")),
                    late: false,
                    backend: 0,
                    method: 0,
                },
                Tallies::default(),
            );
        }
        assert_eq!(a.errors.len(), MAX_DISTINCT_ERRORS + 1);
        assert!(a.backends.is_empty(), "no tally per backend asked");
        assert_eq!(a.errors.iter().map(|e| e.2).sum::<u64>(), 100);
    }
}
