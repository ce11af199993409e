//! A target's backends as they change: the current membership (a `watch` channel the
//! generator threads and probes read), every backend ever seen with when it joined and left
//! (for the report), and what re-resolution did (resolutions, failures, the last failure).
//!
//! A resolution that fails or finds nothing keeps the last good set (and is counted): a DNS
//! hiccup must not take load off every backend.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::resolver::{NameResolver, ResolveFailure, Resolved};
use crate::vocabulary::{FleetName, HostPort};

/// One backend: an address a name resolved to (or the one fixed address).
#[derive(Debug)]
pub struct Backend {
    /// Dense, in order of first appearance: index into per-backend tallies.
    pub id: u32,
    /// Where it is.
    pub address: HostPort,
    /// SRV weight and priority (0 for A/AAAA records and fixed addresses).
    pub weight: u16,
    /// SRV priority (lower first).
    pub priority: u16,
    /// Connections opened to it, by every generator thread.
    pub connections: AtomicU64,
}

/// The backends now, in resolution order (SRV priority, then address).
#[derive(Debug, Default)]
pub struct Membership {
    /// Bumped on every change.
    pub version: u64,
    /// In resolution order.
    pub backends: Vec<Arc<Backend>>,
}

/// One address's part in a run: its backend (latest weight and priority), when it first
/// joined, when it last left, and how many times it joined. An address that leaves and
/// comes back keeps its entry and its tally (one per address, however often a name flaps).
#[derive(Debug, Clone)]
pub struct BackendHistory {
    /// The address, with its latest SRV weight and priority.
    pub backend: Arc<Backend>,
    /// When it first joined.
    pub joined: SystemTime,
    /// When it last left; `None` while it is in the set.
    pub left: Option<SystemTime>,
    /// Times it joined (1 unless it left and came back).
    pub stints: u32,
}

/// Addresses a run keeps apart (a tally and a history entry each): a whole set of the most
/// backends a name may have, replaced once. A name whose answers keep naming new addresses
/// (pods replaced for hours) shares one more tally among the rest, so a run's memory stays
/// bounded (a tally is two HDR histograms, tens of KB, per generator thread and interval).
pub const MAX_ADDRESSES_KEPT: usize = 2 * super::resolver::MAX_BACKENDS;

/// The tally id the addresses past `MAX_ADDRESSES_KEPT` share.
pub const OTHER_ADDRESSES: u32 = MAX_ADDRESSES_KEPT as u32;

/// What re-resolution did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolveStats {
    /// Resolutions made.
    pub resolutions: u64,
    /// Resolutions that failed (the last backends kept).
    pub failures: u64,
    /// Why the last failure failed.
    pub last_failure: Option<String>,
    /// Resolutions that used some records and left others out (an SRV target that did not
    /// resolve, a record with port 0), and the last such note.
    pub incomplete: u64,
    /// The last note of what a resolution left out.
    pub last_left_out: Option<String>,
}

/// Every address seen, by tally id, and the ids by address.
#[derive(Debug, Default)]
struct History {
    entries: Vec<BackendHistory>,
    ids: std::collections::HashMap<HostPort, u32>,
    /// Addresses past `MAX_ADDRESSES_KEPT`, sharing `OTHER_ADDRESSES`.
    others: u64,
}

#[derive(Debug)]
/// A target's backends: one fixed address, or a DNS name resolved again every
/// `resolve_every`, its membership published to whoever follows it.
pub struct Fleet {
    /// `None` for a fixed address.
    name: Option<FleetName>,
    resolver: Option<NameResolver>,
    every: Duration,
    current: watch::Sender<Arc<Membership>>,
    /// `None` for the agent, which reports no history: nothing it keeps grows with a name's
    /// changes.
    history: Option<Mutex<History>>,
    resolutions: AtomicU64,
    failures: AtomicU64,
    last_failure: Mutex<Option<String>>,
    incomplete: AtomicU64,
    last_left_out: Mutex<Option<String>>,
    /// Round robin for callers that pick a backend per call without a pool of their own.
    next: AtomicUsize,
}

impl Fleet {
    /// One fixed address, never resolved again (a plain `host:port`).
    pub fn fixed(address: HostPort) -> Arc<Self> {
        let fleet = Self::empty(None, None, Duration::MAX, true);
        fleet.apply_addresses(vec![(address, 0, 0)]);
        Arc::new(fleet)
    }

    /// Resolves `name` once; fails when that gives no backend (the run cannot start).
    pub async fn resolve(
        name: &FleetName,
        every: Duration,
        timeout: Duration,
    ) -> Result<Arc<Self>, ResolveFailure> {
        let resolver = NameResolver::new(name, timeout)?;
        let found = resolver.resolve().await?;
        let fleet = Self::empty(Some(name.clone()), Some(resolver), every, true);
        fleet.resolutions.fetch_add(1, Ordering::Relaxed);
        fleet.note_left_out(&found.left_out);
        fleet.apply(found.backends);
        Ok(Arc::new(fleet))
    }

    /// A fleet with no backend yet and no history: the caller resolves with `refresh` (the
    /// agent, which must keep going when a name does not resolve at first, and keeps nothing
    /// per address that left). Fails only when no resolver can be made (the system's
    /// configuration cannot be read).
    pub fn unresolved(
        name: &FleetName,
        every: Duration,
        timeout: Duration,
    ) -> Result<Arc<Self>, ResolveFailure> {
        let resolver = NameResolver::new(name, timeout)?;
        Ok(Arc::new(Self::empty(
            Some(name.clone()),
            Some(resolver),
            every,
            false,
        )))
    }

    fn empty(
        name: Option<FleetName>,
        resolver: Option<NameResolver>,
        every: Duration,
        keep_history: bool,
    ) -> Self {
        Self {
            name,
            resolver,
            every,
            current: watch::channel(Arc::new(Membership::default())).0,
            history: keep_history.then(|| Mutex::new(History::default())),
            resolutions: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            incomplete: AtomicU64::new(0),
            last_left_out: Mutex::new(None),
            next: AtomicUsize::new(0),
        }
    }

    /// The backend for the next call of a caller with no connections to keep (a handshake
    /// storm connects anew each time): the next in turn, or always the first.
    pub fn next_backend(&self, round_robin: bool) -> Option<Arc<Backend>> {
        let m = self.current();
        let i = if round_robin {
            self.next.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        m.backends.get(i % m.backends.len().max(1)).cloned()
    }

    /// The name, when the backends come from DNS.
    pub fn name(&self) -> Option<&FleetName> {
        self.name.as_ref()
    }

    /// Follows the membership as it changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Membership>> {
        self.current.subscribe()
    }

    /// The membership now.
    pub fn current(&self) -> Arc<Membership> {
        self.current.borrow().clone()
    }

    /// Every address seen, with when it first joined and last left, in order of first
    /// appearance (empty for the agent's fleets, which keep none).
    pub fn history(&self) -> Vec<BackendHistory> {
        self.history.as_ref().map_or_else(Vec::new, |h| {
            h.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entries
                .clone()
        })
    }

    /// Addresses seen past `MAX_ADDRESSES_KEPT`, whose calls share the `OTHER_ADDRESSES`
    /// tally.
    pub fn other_addresses(&self) -> u64 {
        self.history.as_ref().map_or(0, |h| {
            h.lock().unwrap_or_else(PoisonError::into_inner).others
        })
    }

    /// What re-resolution did so far.
    pub fn stats(&self) -> ResolveStats {
        let read =
            |m: &Mutex<Option<String>>| m.lock().unwrap_or_else(PoisonError::into_inner).clone();
        ResolveStats {
            resolutions: self.resolutions.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_failure: read(&self.last_failure),
            incomplete: self.incomplete.load(Ordering::Relaxed),
            last_left_out: read(&self.last_left_out),
        }
    }

    fn note_left_out(&self, left_out: &[String]) {
        if left_out.is_empty() {
            return;
        }
        self.incomplete.fetch_add(1, Ordering::Relaxed);
        let text = super::resolver::summarize(left_out);
        *self
            .last_left_out
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(text);
    }

    fn note_failure(&self, reason: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(reason.to_string());
    }

    /// Resolves again every `resolve_every` until `stop`. A fixed address returns at once.
    pub async fn keep_resolving(self: Arc<Self>, stop: CancellationToken) {
        if self.resolver.is_none() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = stop.cancelled() => return,
            }
            tokio::select! {
                _ = self.refresh() => {}
                _ = stop.cancelled() => {
                    // Counted among the resolutions already: it must not go missing from
                    // both the successes and the failures.
                    self.note_failure("a resolution was still waiting for the DNS server when the run ended");
                    return;
                }
            }
        }
    }

    /// One re-resolution: the new set on success (with what was left out of it, in words);
    /// on failure (or no records) the last good set stays and the failure is counted.
    pub async fn refresh(&self) -> Result<Vec<String>, ResolveFailure> {
        let Some(resolver) = &self.resolver else {
            return Ok(Vec::new());
        };
        self.resolutions.fetch_add(1, Ordering::Relaxed);
        match resolver.resolve().await {
            Ok(found) => {
                self.note_left_out(&found.left_out);
                self.apply(found.backends);
                Ok(found.left_out)
            }
            Err(e) => {
                self.note_failure(&e.reason);
                Err(e)
            }
        }
    }

    /// Makes `found` the membership (a no-op when it is the same set).
    pub fn apply(&self, found: Vec<Resolved>) {
        self.apply_addresses(
            found
                .into_iter()
                .map(|r| (HostPort::from(r.address), r.weight, r.priority))
                .collect(),
        );
    }

    fn apply_addresses(&self, found: Vec<(HostPort, u16, u16)>) {
        let now = SystemTime::now();
        let mut history = self
            .history
            .as_ref()
            .map(|h| h.lock().unwrap_or_else(PoisonError::into_inner));
        let old = self.current();
        let same = old.backends.len() == found.len()
            && old
                .backends
                .iter()
                .zip(&found)
                .all(|(b, (a, w, p))| b.address == *a && b.weight == *w && b.priority == *p);
        if same && old.version > 0 {
            return;
        }
        let before: std::collections::HashMap<&HostPort, &Arc<Backend>> =
            old.backends.iter().map(|b| (&b.address, b)).collect();
        // Backends that stay keep their identity (and connections); new ones join, with the
        // tally their address had if it was here before.
        let mut backends = Vec::with_capacity(found.len());
        for (address, weight, priority) in found {
            let stayed = before
                .get(&address)
                .filter(|b| b.weight == weight && b.priority == priority);
            if let Some(b) = stayed {
                backends.push(Arc::clone(b));
                continue;
            }
            let (id, connections) = match history.as_deref_mut() {
                Some(h) => h.join(&address, now, before.contains_key(&address)),
                None => (0, 0),
            };
            let b = Arc::new(Backend {
                id,
                address,
                weight,
                priority,
                connections: AtomicU64::new(connections),
            });
            if let Some(h) = history.as_deref_mut() {
                h.update(&b);
            }
            backends.push(b);
        }
        if let Some(h) = history.as_deref_mut() {
            let staying: std::collections::HashSet<&HostPort> =
                backends.iter().map(|b| &b.address).collect();
            for gone in old
                .backends
                .iter()
                .filter(|b| !staying.contains(&b.address))
            {
                h.leave(&gone.address, now);
            }
        }
        self.current.send_replace(Arc::new(Membership {
            version: old.version + 1,
            backends,
        }));
    }
}

impl History {
    /// The tally id of `address` joining at `now`, and the connections it had opened before.
    /// `still_in` is true when it stays in the set with a new weight or priority (no new
    /// stint).
    fn join(&mut self, address: &HostPort, now: SystemTime, still_in: bool) -> (u32, u64) {
        if let Some(&id) = self.ids.get(address) {
            let e = &mut self.entries[id as usize];
            if !still_in {
                e.stints = e.stints.saturating_add(1);
                e.left = None;
            }
            return (id, e.backend.connections.load(Ordering::Relaxed));
        }
        if self.entries.len() >= MAX_ADDRESSES_KEPT {
            self.others += 1;
            return (OTHER_ADDRESSES, 0);
        }
        let id = self.entries.len() as u32;
        self.ids.insert(address.clone(), id);
        // A placeholder `update` replaces with the backend made for this id.
        self.entries.push(BackendHistory {
            backend: Arc::new(Backend {
                id,
                address: address.clone(),
                weight: 0,
                priority: 0,
                connections: AtomicU64::new(0),
            }),
            joined: now,
            left: None,
            stints: 1,
        });
        (id, 0)
    }

    /// Makes `b` the backend its address's entry reports (its latest weight and priority,
    /// and its connections from now on).
    fn update(&mut self, b: &Arc<Backend>) {
        if let Some(e) = self.entries.get_mut(b.id as usize) {
            if e.backend.address == b.address {
                e.backend = Arc::clone(b);
            }
        }
    }

    fn leave(&mut self, address: &HostPort, now: SystemTime) {
        if let Some(&id) = self.ids.get(address) {
            self.entries[id as usize].left = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: &str, weight: u16) -> Resolved {
        Resolved {
            priority: 0,
            address: addr.parse().unwrap(),
            weight,
        }
    }

    #[test]
    fn joins_and_leaves_are_kept_and_identities_stay() {
        let fleet = Fleet::fixed(HostPort::parse("127.0.0.1:1").unwrap());
        assert_eq!(fleet.current().backends.len(), 1);
        assert_eq!(fleet.current().version, 1);

        fleet.apply(vec![at("127.0.0.2:5", 0), at("127.0.0.3:5", 0)]);
        let first = fleet.current();
        assert_eq!(first.version, 2);
        assert_eq!(
            first.backends.iter().map(|b| b.id).collect::<Vec<_>>(),
            [1, 2]
        );
        // The same set again is no change.
        fleet.apply(vec![at("127.0.0.2:5", 0), at("127.0.0.3:5", 0)]);
        assert_eq!(fleet.current().version, 2);
        // One leaves, one joins: the one that stays is the same backend.
        fleet.apply(vec![at("127.0.0.3:5", 0), at("127.0.0.4:5", 0)]);
        let now = fleet.current();
        assert!(Arc::ptr_eq(&now.backends[0], &first.backends[1]));
        assert_eq!(now.backends[1].id, 3);
        let history = fleet.history();
        assert_eq!(history.len(), 4);
        assert!(history[0].left.is_some(), "the fixed address left");
        assert!(history[1].left.is_some(), "127.0.0.2 left");
        assert!(history[2].left.is_none() && history[3].left.is_none());
        // An address that comes back keeps its entry and its tally id: a second stint.
        fleet.apply(vec![at("127.0.0.2:5", 0)]);
        let history = fleet.history();
        assert_eq!(history.len(), 4);
        assert_eq!(fleet.current().backends[0].id, 1);
        assert_eq!(history[1].stints, 2);
        assert!(history[1].left.is_none(), "back in the set");
        assert!(history[2].left.is_some() && history[3].left.is_some());
        // A new weight is the same address: same id, no new stint.
        fleet.apply(vec![at("127.0.0.2:5", 7)]);
        let history = fleet.history();
        assert_eq!(history.len(), 4);
        assert_eq!((history[1].stints, history[1].backend.weight), (2, 7));
        assert_eq!(fleet.current().backends[0].id, 1);
    }

    /// A name that flaps between subsets for ever keeps one entry per address, and one
    /// more for the addresses past the bound.
    #[test]
    fn a_flapping_name_keeps_one_entry_per_address_and_a_bound() {
        let fleet = Fleet::fixed(HostPort::parse("127.0.0.1:1").unwrap());
        for round in 0..1000u32 {
            let a = format!("127.0.1.{}:5", round % 4);
            let b = format!("127.0.2.{}:5", round % 3);
            fleet.apply(vec![at(&a, 0), at(&b, 0)]);
        }
        assert_eq!(fleet.history().len(), 1 + 4 + 3);
        let total: u32 = fleet.history().iter().map(|h| h.stints).sum();
        assert!(total > 500, "{total}");
        // Past the bound, new addresses share one tally.
        for i in 0..(MAX_ADDRESSES_KEPT as u32 + 10) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            fleet.apply(vec![at(&format!("{ip}:5"), 0)]);
        }
        assert_eq!(fleet.history().len(), MAX_ADDRESSES_KEPT);
        assert!(fleet.other_addresses() > 10);
        assert_eq!(fleet.current().backends[0].id, OTHER_ADDRESSES);
    }

    /// The agent's fleets keep no history at all.
    #[test]
    fn an_unresolved_fleet_keeps_no_history() {
        let name = crate::vocabulary::FleetName::parse("dns://127.0.0.1:1/x.test:5")
            .unwrap()
            .unwrap();
        let fleet =
            Fleet::unresolved(&name, Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        for round in 0..100u8 {
            fleet.apply(vec![at(&format!("127.0.3.{round}:5"), 0)]);
        }
        assert!(fleet.history().is_empty());
        assert_eq!(fleet.current().backends.len(), 1);
    }
}
