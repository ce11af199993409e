//! A fleet's name to its backends' addresses, through hickory-resolver: A/AAAA records of
//! a name, or SRV records and their targets' addresses. No cache: each resolution asks the
//! server (a load run re-resolves every `resolve_every`, and a backend removed from DNS
//! must stop getting load then, not when a TTL ends).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

use crate::vocabulary::{FleetName, Lookup};

/// Backends one name may have; more are left out and the resolution says so. A DNS answer is
/// bounded by its message size anyway; this bounds the SRV targets resolved in turn.
pub const MAX_BACKENDS: usize = 1024;

/// One backend as resolved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resolved {
    /// SRV priority (lower first); 0 for A/AAAA records.
    pub priority: u16,
    /// The backend's address.
    pub address: SocketAddr,
    /// SRV weight (reported; round robin treats backends equally, as gRPC's does).
    pub weight: u16,
}

/// Why a name gave no backends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resolving {name}: {reason}")]
pub struct ResolveFailure {
    /// The name, as written.
    pub name: String,
    /// Why it gave no backends.
    pub reason: String,
}

/// A resolver for one name.
#[derive(Debug)]
pub struct NameResolver {
    name: FleetName,
    resolver: TokioResolver,
    /// A whole resolution (an SRV query and its targets' lookups) at most: a server that
    /// answers slowly, or with many targets, cannot hold a run's start or a probe round.
    deadline: Duration,
    /// One lookup's attempts, at most (an SRV target's).
    query_budget: Duration,
    /// The DNS server named in the address, when one is.
    server: Option<SocketAddr>,
}

impl NameResolver {
    /// `timeout` bounds each query (two attempts): a DNS server that does not answer fails
    /// a resolution in about twice that.
    pub fn new(name: &FleetName, timeout: Duration) -> Result<Self, ResolveFailure> {
        let fail = |reason: String| ResolveFailure {
            name: name.to_string(),
            reason,
        };
        let mut named_server = None;
        let mut builder = match &name.server {
            Some(server) => {
                let ip: IpAddr = server.host().parse().map_err(|_| {
                    fail(format!(
                        "the DNS server must be an IP address, not \"{}\"",
                        server.host()
                    ))
                })?;
                let socket = SocketAddr::new(ip, server.port());
                named_server = Some(socket);
                let mut config = ResolverConfig::new();
                config.add_name_server(NameServerConfig::new(socket, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(socket, Protocol::Tcp));
                TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            }
            None => TokioResolver::builder_tokio().map_err(|e| {
                fail(format!(
                    "cannot read the system's resolver configuration (/etc/resolv.conf): {e}; name a DNS server (\"dns://SERVER:PORT/…\")"
                ))
            })?,
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.cache_size = 0;
        opts.timeout = timeout;
        opts.attempts = 2;
        // The name is written in full: no search domains.
        opts.ndots = 0;
        Ok(Self {
            name: name.clone(),
            resolver: builder.build(),
            deadline: timeout.saturating_mul(4).max(Duration::from_secs(1)),
            query_budget: timeout.saturating_mul(2).max(Duration::from_millis(100)),
            server: named_server,
        })
    }

    /// The name's backends now, sorted (SRV priority, then address), at most `MAX_BACKENDS`.
    /// No records at all is a failure, so the caller keeps its last good set. What was left
    /// out (an SRV target that did not resolve, a record with port 0) is named in
    /// `Resolution::left_out`; the rest is used.
    pub async fn resolve(&self) -> Result<Resolution, ResolveFailure> {
        let fail = |reason: String| ResolveFailure {
            name: self.name.to_string(),
            reason,
        };
        let refused = async {
            match self.server {
                Some(server) => refused_by(server, &self.name).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::time::timeout(self.deadline, self.resolve_now()) => match r {
                Ok(r) => r,
                Err(_) => Err(fail(format!(
                    "the DNS server did not answer within {:?} (the whole resolution)",
                    self.deadline
                ))),
            },
            reason = refused => Err(fail(reason)),
        }
    }

    async fn resolve_now(&self) -> Result<Resolution, ResolveFailure> {
        let fail = |reason: String| ResolveFailure {
            name: self.name.to_string(),
            reason,
        };
        let (found, left_out) = match &self.name.lookup {
            Lookup::Addresses { host, port } => {
                let found = self
                    .addresses(host)
                    .await
                    .map_err(fail)?
                    .into_iter()
                    .map(|ip| Resolved {
                        priority: 0,
                        address: SocketAddr::new(ip, *port),
                        weight: 0,
                    })
                    .collect::<Vec<_>>();
                (found, Vec::new())
            }
            Lookup::Services { name } => self.services(name).await.map_err(fail)?,
        };
        let backends = keep(found);
        if backends.is_empty() {
            let reason = match left_out.first() {
                Some(why) => format!("no usable records ({why})"),
                None => "no records".into(),
            };
            return Err(fail(reason));
        }
        Ok(Resolution { backends, left_out })
    }

    /// Every address of `host` (an answer is bounded by a DNS message's size).
    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(found) => Ok(found.iter().collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(describe(&e)),
        }
    }

    /// Every SRV record's target addresses, and what was left out: records with port 0
    /// (nothing can be reached there) and targets that did not resolve (named; the other
    /// targets are used). Targets are looked up once each, several at a time, each within
    /// its own query budget, so one that never answers holds none of the others.
    async fn services(&self, name: &str) -> Result<(Vec<Resolved>, Vec<String>), String> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let answer = match self.resolver.srv_lookup(fqdn.as_str()).await {
            Ok(r) => r,
            Err(e) if e.is_no_records_found() => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(describe(&e)),
        };
        let mut left_out = Vec::new();
        let mut records: Vec<SrvRecord> = Vec::new();
        for srv in answer.iter() {
            let target = srv.target().to_utf8();
            if target == "." {
                continue; // "service decidedly not available" (RFC 2782)
            }
            if srv.port() == 0 {
                left_out.push(format!("the SRV record for {target} has port 0"));
                continue;
            }
            records.push(SrvRecord {
                priority: srv.priority(),
                weight: srv.weight(),
                port: srv.port(),
                target,
            });
        }
        let targets: std::collections::BTreeSet<String> =
            records.iter().map(|r| r.target.clone()).collect();
        let budget = self.query_budget;
        let looked_up: std::collections::HashMap<String, Result<Vec<IpAddr>, String>> =
            futures_util::stream::iter(targets)
                .map(|target| async move {
                    let ips = match tokio::time::timeout(budget, self.addresses(&target)).await {
                        Ok(r) => r,
                        Err(_) => Err(format!("no answer within {budget:?}")),
                    };
                    (target, ips)
                })
                .buffer_unordered(TARGET_LOOKUPS_AT_ONCE)
                .collect()
                .await;
        let mut failed: Vec<String> = looked_up
            .iter()
            .filter_map(|(t, r)| r.as_ref().err().map(|e| format!("the SRV target {t}: {e}")))
            .collect();
        failed.sort();
        let mut out = Vec::new();
        for r in &records {
            if let Some(Ok(ips)) = looked_up.get(&r.target) {
                out.extend(ips.iter().map(|&ip| Resolved {
                    priority: r.priority,
                    address: SocketAddr::new(ip, r.port),
                    weight: r.weight,
                }));
            }
        }
        if out.is_empty() && !failed.is_empty() {
            // Not one target resolved: the resolution failed, and says why.
            return Err(failed.swap_remove(0));
        }
        left_out.extend(failed);
        Ok((out, left_out))
    }
}

/// What a resolution left out, in a line: the first three, and how many more.
pub fn summarize(left_out: &[String]) -> String {
    let mut text = left_out[..left_out.len().min(3)].join("; ");
    if left_out.len() > 3 {
        text.push_str(&format!("; and {} more", left_out.len() - 3));
    }
    text
}

/// SRV target names looked up at once.
const TARGET_LOOKUPS_AT_ONCE: usize = 32;

struct SrvRecord {
    priority: u16,
    weight: u16,
    port: u16,
    target: String,
}

/// What one resolution found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Sorted (SRV priority, then address), one per address, at most `MAX_BACKENDS`.
    pub backends: Vec<Resolved>,
    /// What was left out, in words (an SRV target that did not resolve, a record with
    /// port 0); the backends are the rest.
    pub left_out: Vec<String>,
}

/// The backends kept of every record found, whatever the order the server answered in
/// (servers rotate it): one per address (its lowest priority, then lowest weight), sorted
/// by priority then address, the first `MAX_BACKENDS`. Sorting comes before the cut, so the
/// same records always keep the same backends.
pub fn keep(mut found: Vec<Resolved>) -> Vec<Resolved> {
    found.sort_by_key(|r| (r.address, r.priority, r.weight));
    found.dedup_by(|later, first| later.address == first.address);
    found.sort();
    found.truncate(MAX_BACKENDS);
    found
}

/// Waits for a sign that nothing listens at the DNS server's address: a query sent on a
/// connected UDP socket, whose ICMP "port unreachable" the kernel reports as a refused
/// receive (hickory's sockets are not connected, so it waits its whole timeout instead).
/// Never returns when the server answers, or when no such sign comes.
async fn refused_by(server: SocketAddr, name: &FleetName) -> String {
    let refused = |e: std::io::Error| {
        (e.kind() == std::io::ErrorKind::ConnectionRefused).then(|| {
            format!("the DNS server {server} refused the query (nothing listens on that port)")
        })
    };
    let bind: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match tokio::net::UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    if let Err(e) = socket.connect(server).await {
        return match refused(e) {
            Some(why) => why,
            None => std::future::pending().await,
        };
    }
    let query = probe_query(name);
    if let Err(e) = socket.send(&query).await {
        if let Some(why) = refused(e) {
            return why;
        }
        return std::future::pending().await;
    }
    let mut buf = [0u8; 512];
    // An answer: the server is there, and the resolution decides the rest.
    if let Err(e) = socket.recv(&mut buf).await {
        if let Some(why) = refused(e) {
            return why;
        }
    }
    std::future::pending().await
}

/// A DNS query for the name's first label's record type (A or SRV), enough to draw
/// either an answer or a refusal.
fn probe_query(name: &FleetName) -> Vec<u8> {
    let (host, qtype): (&str, u16) = match &name.lookup {
        Lookup::Addresses { host, .. } => (host, 1),
        Lookup::Services { name } => (name, 33),
    };
    let mut q = vec![0x4c, 0x41, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in host.trim_end_matches('.').split('.') {
        let label = &label.as_bytes()[..label.len().min(63)];
        q.push(label.len() as u8);
        q.extend_from_slice(label);
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// hickory's error, in words: a server that does not answer says so.
fn describe(e: &hickory_resolver::ResolveError) -> String {
    let text = e.to_string();
    if text.contains("timed out") || text.contains("timeout") {
        format!("the DNS server did not answer ({text})")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(i: u32, priority: u16, weight: u16) -> Resolved {
        let ip = std::net::Ipv4Addr::from(0x7f00_0000 + i);
        Resolved {
            priority,
            address: SocketAddr::new(ip.into(), 50051),
            weight,
        }
    }

    proptest! {
        /// Any record set, in any order, keeps the same backends: one per address, sorted,
        /// the first `MAX_BACKENDS` (a server that rotates its answers changes nothing).
        #[test]
        fn any_order_keeps_the_same_backends(
            records in proptest::collection::vec((0u32..1500, 0u16..3, 0u16..3), 0..1600),
            seed in any::<u64>(),
        ) {
            let found: Vec<Resolved> = records.iter().map(|&(i, p, w)| record(i, p, w)).collect();
            let mut shuffled = found.clone();
            // A deterministic shuffle from the seed.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let kept = keep(found.clone());
            prop_assert_eq!(&kept, &keep(shuffled));
            prop_assert!(kept.len() <= MAX_BACKENDS);
            let distinct: std::collections::BTreeSet<_> = found.iter().map(|r| r.address).collect();
            prop_assert_eq!(kept.len(), distinct.len().min(MAX_BACKENDS));
            prop_assert!(kept.windows(2).all(|w| w[0] < w[1]));
            // An address is kept at its lowest priority.
            for k in &kept {
                let lowest = found.iter().filter(|r| r.address == k.address).map(|r| r.priority).min();
                prop_assert_eq!(Some(k.priority), lowest);
            }
        }
    }

    #[test]
    fn more_than_the_bound_keeps_the_sorted_first() {
        let found: Vec<Resolved> = (0..2000).rev().map(|i| record(i, 0, 0)).collect();
        let kept = keep(found);
        assert_eq!(kept.len(), MAX_BACKENDS);
        assert_eq!(kept[0], record(0, 0, 0));
        assert_eq!(
            kept[MAX_BACKENDS - 1],
            record(MAX_BACKENDS as u32 - 1, 0, 0)
        );
    }

    #[test]
    fn the_probe_query_is_a_dns_question() {
        let name = FleetName::parse("dns://127.0.0.1:53/pool.fleet.test:80")
            .unwrap()
            .unwrap();
        let q = probe_query(&name);
        assert_eq!(&q[4..6], &[0, 1], "one question");
        assert_eq!(&q[12..17], b"\x04pool");
        assert_eq!(&q[q.len() - 4..], &[0, 1, 0, 1], "A, IN");
    }
}
