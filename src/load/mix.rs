//! A weighted mix of calls (`[[calls]]`): which entry each request is, and what each entry
//! sends. The pick is a function of the request's number only, so a distributed run's shards
//! (numbered globally) send the mix one run would, and a rerun sends the same sequence.

use crate::grpc::request::{mix, Requests};
use crate::grpc::unary::UnaryCall;

/// Keeps the pick of request n apart from `data_order = "random"`'s use of the same mixer.
const SALT: u64 = 0x6d69_785f_7069_636b;

/// One entry: its call (path, metadata, deadline) and its requests.
#[derive(Debug)]
pub struct MixEntry {
    /// `method` as written.
    pub name: String,
    /// Its weight, as written.
    pub weight: f64,
    /// What is fixed about its calls.
    pub call: UnaryCall,
    /// Its request messages.
    pub requests: Requests,
    /// Its gRPC-Web form, when the target speaks gRPC-Web.
    pub web: Option<crate::grpc::web::WebCall>,
}

/// The mix: its entries and, per entry, the top of its share of the 64-bit range.
#[derive(Debug)]
pub struct Mix {
    /// In the scenario's order: the report's `methods[]`.
    pub entries: Vec<MixEntry>,
    upper: Vec<u64>,
}

impl Mix {
    /// The mix of `entries` (at least one, weights above zero: the scenario checked).
    pub fn new(entries: Vec<MixEntry>) -> Self {
        let total: f64 = entries.iter().map(|e| e.weight).sum();
        let mut sum = 0.0;
        let mut upper: Vec<u64> = entries
            .iter()
            .map(|e| {
                sum += e.weight;
                // Saturating: the last share ends at u64::MAX whatever the rounding.
                ((sum / total) * u64::MAX as f64) as u64
            })
            .collect();
        if let Some(last) = upper.last_mut() {
            *last = u64::MAX;
        }
        Self { entries, upper }
    }

    /// The entry request `number` sends.
    pub fn pick(&self, number: u64) -> usize {
        let x = mix(number ^ SALT);
        self.upper
            .partition_point(|&u| u < x)
            .min(self.entries.len().saturating_sub(1))
    }

    /// The largest deadline of any entry (for how long a stop waits for calls in flight).
    pub fn longest_timeout(&self) -> Option<std::time::Duration> {
        self.entries.iter().filter_map(|e| e.call.timeout()).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(weight: f64) -> MixEntry {
        let call = UnaryCall::new("h:1", "/p.S/M", &[], None, None).unwrap();
        MixEntry {
            name: "p.S/M".into(),
            weight,
            call,
            requests: Requests::none(),
            web: None,
        }
    }

    #[test]
    fn requests_follow_the_weights_within_sampling_error() {
        let mix = Mix::new(vec![entry(3.0), entry(1.0), entry(0.5)]);
        let n = 90_000u64;
        let mut counts = [0u64; 3];
        for i in 0..n {
            counts[mix.pick(i)] += 1;
        }
        for (i, share) in [3.0 / 4.5, 1.0 / 4.5, 0.5 / 4.5].into_iter().enumerate() {
            let want = n as f64 * share;
            let sd = (n as f64 * share * (1.0 - share)).sqrt();
            assert!(
                (counts[i] as f64 - want).abs() < 4.0 * sd,
                "entry {i}: {} of {n}, want {want:.0} ± {:.0}",
                counts[i],
                4.0 * sd
            );
        }
        // A function of the number only: the same pick every time.
        assert!((0..1000).all(|i| mix.pick(i) == mix.pick(i)));
    }

    #[test]
    fn one_entry_takes_every_request() {
        let mix = Mix::new(vec![entry(0.001)]);
        assert!((0..1000).all(|i| mix.pick(i) == 0));
    }
}
