//! A fleet's name to its backends' addresses, through hickory-resolver: A/AAAA records of
//! a name, or SRV records and their targets' addresses. No cache: each resolution asks the
//! server (a load run re-resolves every `resolve_every`, and a backend removed from DNS
//! must stop getting load then, not when a TTL ends).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

use crate::scenario::{FleetName, Lookup};

/// Backends one name may have; more are left out and the resolution says so. A DNS answer is
/// bounded by its message size anyway; this bounds the SRV targets resolved in turn.
pub const MAX_BACKENDS: usize = 1024;

/// One backend as resolved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resolved {
    /// SRV priority (lower first); 0 for A/AAAA records.
    pub priority: u16,
    pub address: SocketAddr,
    /// SRV weight (reported; round robin treats backends equally, as gRPC's does).
    pub weight: u16,
}

/// Why a name gave no backends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resolving {name}: {reason}")]
pub struct ResolveFailure {
    pub name: String,
    pub reason: String,
}

/// A resolver for one name.
pub struct NameResolver {
    name: FleetName,
    resolver: TokioResolver,
    /// A whole resolution (an SRV query and its targets' lookups) at most: a server that
    /// answers slowly, or with many targets, cannot hold a run's start or a probe round.
    deadline: Duration,
}

impl NameResolver {
    /// `timeout` bounds each query (two attempts): a DNS server that does not answer fails
    /// a resolution in about twice that.
    pub fn new(name: &FleetName, timeout: Duration) -> Result<Self, ResolveFailure> {
        let fail = |reason: String| ResolveFailure {
            name: name.to_string(),
            reason,
        };
        let mut builder = match &name.server {
            Some(server) => {
                let ip: IpAddr = server.host().parse().map_err(|_| {
                    fail(format!(
                        "the DNS server must be an IP address, not \"{}\"",
                        server.host()
                    ))
                })?;
                let socket = SocketAddr::new(ip, server.port());
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
        })
    }

    /// The name's backends now, sorted (SRV priority, then address), at most `MAX_BACKENDS`.
    /// No records at all is a failure, so the caller keeps its last good set.
    pub async fn resolve(&self) -> Result<Vec<Resolved>, ResolveFailure> {
        match tokio::time::timeout(self.deadline, self.resolve_now()).await {
            Ok(r) => r,
            Err(_) => Err(ResolveFailure {
                name: self.name.to_string(),
                reason: format!(
                    "the DNS server did not answer within {:?} (the whole resolution)",
                    self.deadline
                ),
            }),
        }
    }

    async fn resolve_now(&self) -> Result<Vec<Resolved>, ResolveFailure> {
        let fail = |reason: String| ResolveFailure {
            name: self.name.to_string(),
            reason,
        };
        let mut found = match &self.name.lookup {
            Lookup::Addresses { host, port } => self
                .addresses(host)
                .await
                .map_err(fail)?
                .into_iter()
                .map(|ip| Resolved {
                    priority: 0,
                    address: SocketAddr::new(ip, *port),
                    weight: 0,
                })
                .collect::<Vec<_>>(),
            Lookup::Services { name } => self.services(name).await.map_err(fail)?,
        };
        found.sort();
        found.dedup_by(|a, b| a.address == b.address);
        found.truncate(MAX_BACKENDS);
        if found.is_empty() {
            return Err(fail("no records".into()));
        }
        Ok(found)
    }

    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(found) => Ok(found.iter().take(MAX_BACKENDS).collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(describe(&e)),
        }
    }

    async fn services(&self, name: &str) -> Result<Vec<Resolved>, String> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let records = match self.resolver.srv_lookup(fqdn.as_str()).await {
            Ok(r) => r,
            Err(e) if e.is_no_records_found() => return Ok(Vec::new()),
            Err(e) => return Err(describe(&e)),
        };
        let mut out = Vec::new();
        // Each target name is looked up once, however many records name it.
        let mut looked_up: std::collections::HashMap<String, Vec<IpAddr>> = Default::default();
        for srv in records.iter().take(MAX_BACKENDS) {
            let target = srv.target().to_utf8();
            if target == "." {
                continue; // "service decidedly not available" (RFC 2782)
            }
            let ips = match looked_up.get(&target) {
                Some(ips) => ips.clone(),
                None => {
                    let ips = self
                        .addresses(&target)
                        .await
                        .map_err(|e| format!("the SRV target {target}: {e}"))?;
                    looked_up.insert(target.clone(), ips.clone());
                    ips
                }
            };
            for ip in ips {
                out.push(Resolved {
                    priority: srv.priority(),
                    address: SocketAddr::new(ip, srv.port()),
                    weight: srv.weight(),
                });
                if out.len() >= MAX_BACKENDS {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
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
