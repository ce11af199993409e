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
use crate::scenario::{FleetName, HostPort};

/// One backend: an address a name resolved to (or the one fixed address).
#[derive(Debug)]
pub struct Backend {
    /// Dense, in order of first appearance: index into per-backend tallies.
    pub id: u32,
    pub address: HostPort,
    /// SRV weight and priority (0 for A/AAAA records and fixed addresses).
    pub weight: u16,
    pub priority: u16,
    /// Connections opened to it, by every generator thread.
    pub connections: AtomicU64,
}

/// The backends now, in resolution order (SRV priority, then address).
#[derive(Debug, Default)]
pub struct Membership {
    /// Bumped on every change.
    pub version: u64,
    pub backends: Vec<Arc<Backend>>,
}

/// A backend and when it was in the set.
#[derive(Debug, Clone)]
pub struct BackendHistory {
    pub backend: Arc<Backend>,
    pub joined: SystemTime,
    /// When a resolution no longer had it (it may have come back: then it has a later entry).
    pub left: Option<SystemTime>,
}

/// What re-resolution did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolveStats {
    pub resolutions: u64,
    pub failures: u64,
    pub last_failure: Option<String>,
}

pub struct Fleet {
    /// `None` for a fixed address.
    name: Option<FleetName>,
    resolver: Option<NameResolver>,
    every: Duration,
    current: watch::Sender<Arc<Membership>>,
    history: Mutex<Vec<BackendHistory>>,
    resolutions: AtomicU64,
    failures: AtomicU64,
    last_failure: Mutex<Option<String>>,
    /// Round robin for callers that pick a backend per call without a pool of their own.
    next: AtomicUsize,
}

impl Fleet {
    /// One fixed address, never resolved again (a plain `host:port`).
    pub fn fixed(address: HostPort) -> Arc<Self> {
        let fleet = Self::empty(None, None, Duration::MAX);
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
        let fleet = Self::empty(Some(name.clone()), Some(resolver), every);
        fleet.resolutions.fetch_add(1, Ordering::Relaxed);
        fleet.apply(found);
        Ok(Arc::new(fleet))
    }

    /// A fleet with no backend yet: the caller resolves with `refresh` (the agent, which
    /// must keep going when a name does not resolve at first). Fails only when no resolver
    /// can be made (the system's configuration cannot be read).
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
        )))
    }

    fn empty(name: Option<FleetName>, resolver: Option<NameResolver>, every: Duration) -> Self {
        Self {
            name,
            resolver,
            every,
            current: watch::channel(Arc::new(Membership::default())).0,
            history: Mutex::new(Vec::new()),
            resolutions: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_failure: Mutex::new(None),
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

    pub fn subscribe(&self) -> watch::Receiver<Arc<Membership>> {
        self.current.subscribe()
    }

    pub fn current(&self) -> Arc<Membership> {
        self.current.borrow().clone()
    }

    /// Every backend seen, with when it joined and left, in order of first appearance.
    pub fn history(&self) -> Vec<BackendHistory> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn stats(&self) -> ResolveStats {
        ResolveStats {
            resolutions: self.resolutions.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_failure: self
                .last_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
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
                _ = stop.cancelled() => return,
            }
        }
    }

    /// One re-resolution: the new set on success; on failure (or no records) the last
    /// good set stays and the failure is counted.
    pub async fn refresh(&self) -> Result<(), ResolveFailure> {
        let Some(resolver) = &self.resolver else {
            return Ok(());
        };
        self.resolutions.fetch_add(1, Ordering::Relaxed);
        match resolver.resolve().await {
            Ok(found) => {
                self.apply(found);
                Ok(())
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                *self
                    .last_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(e.reason.clone());
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
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
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
        // Backends that stay keep their identity (and connections); new ones join.
        let mut backends = Vec::with_capacity(found.len());
        for (address, weight, priority) in found {
            let kept = old
                .backends
                .iter()
                .find(|b| b.address == address && b.weight == weight && b.priority == priority);
            let backend = match kept {
                Some(b) => b.clone(),
                None => {
                    let b = Arc::new(Backend {
                        id: u32::try_from(history.len()).unwrap_or(u32::MAX),
                        address,
                        weight,
                        priority,
                        connections: AtomicU64::new(0),
                    });
                    history.push(BackendHistory {
                        backend: b.clone(),
                        joined: now,
                        left: None,
                    });
                    b
                }
            };
            backends.push(backend);
        }
        for gone in old
            .backends
            .iter()
            .filter(|b| !backends.iter().any(|n| Arc::ptr_eq(n, b)))
        {
            if let Some(h) = history.iter_mut().find(|h| Arc::ptr_eq(&h.backend, gone)) {
                h.left = Some(now);
            }
        }
        self.current.send_replace(Arc::new(Membership {
            version: old.version + 1,
            backends,
        }));
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
        // A backend that comes back is a new entry, its first stint still closed.
        fleet.apply(vec![at("127.0.0.2:5", 0)]);
        let history = fleet.history();
        assert_eq!(history.len(), 5);
        assert_eq!(history[4].backend.address.to_string(), "127.0.0.2:5");
        assert!(history[1].left.is_some());
    }
}
